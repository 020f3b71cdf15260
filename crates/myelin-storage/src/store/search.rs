//! The full-text index: the one repository whose reads are written per backend (SQLite's FTS5
//! `MATCH` with `bm25`, PostgreSQL's `@@` with `ts_rank`). Rows are written with their event
//! (`events.rs`) in SQL both share; the FTS5 index follows by trigger, the tsvector is a
//! generated column (migration 0021).

use async_trait::async_trait;

use crate::{
    Database, SearchHit, SearchOrder, SearchQuery, SearchRepo, SearchTerm, StorageResult, StreamPos,
    db::{Conn, Dialect},
};

/// An FTS5 query: `("a" AND "b c"*) NOT "d"`. Words are alphanumeric, so quoting them is safe.
fn fts5_query(terms: &[SearchTerm]) -> String {
    let quoted = |t: &SearchTerm| format!("\"{}\"{}", t.words.join(" "), if t.prefix { "*" } else { "" });
    let positive: Vec<String> = terms.iter().filter(|t| !t.negated).map(quoted).collect();
    let mut query = format!("({})", positive.join(" AND "));
    for term in terms.iter().filter(|t| t.negated) {
        query.push_str(" NOT ");
        query.push_str(&quoted(term));
    }
    query
}

/// A `to_tsquery` text: `'a' & 'b' <-> 'c':* & !('d')`.
fn tsquery(terms: &[SearchTerm]) -> String {
    terms
        .iter()
        .map(|t| {
            let phrase = t.words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" <-> ");
            let phrase = if t.prefix { format!("{phrase}:*") } else { phrase };
            if t.negated { format!("!({phrase})") } else { phrase }
        })
        .collect::<Vec<_>>()
        .join(" & ")
}

/// The `FROM … WHERE …` part shared by the search and its count, and the match text to bind
/// as `$1` (rooms `$2`, keys `$3`, upper position `$4`).
fn from_where(dialect: Dialect, terms: &[SearchTerm]) -> (&'static str, String) {
    match dialect {
        Dialect::Sqlite => (
            "FROM event_search_fts JOIN event_search s ON s.id = event_search_fts.rowid
             WHERE event_search_fts MATCH $1 AND s.room_id = ANY($2) AND s.search_key = ANY($3)
               AND s.stream_pos < $4",
            fts5_query(terms),
        ),
        Dialect::Postgres => (
            "FROM event_search s
             WHERE s.vector @@ to_tsquery('simple', $1) AND s.room_id = ANY($2) AND s.search_key = ANY($3)
               AND s.stream_pos < $4",
            tsquery(terms),
        ),
    }
}

async fn search(c: &mut Conn<'_>, q: &SearchQuery) -> StorageResult<Vec<SearchHit>> {
    let dialect = c.dialect();
    let (from_where, matching) = from_where(dialect, &q.terms);
    let rank = match dialect {
        Dialect::Sqlite => "-bm25(event_search_fts)",
        Dialect::Postgres => "CAST(ts_rank(s.vector, to_tsquery('simple', $1)) AS DOUBLE PRECISION)",
    };
    let order = match q.order {
        SearchOrder::Rank => "4 DESC, s.stream_pos DESC",
        SearchOrder::Recent => "s.stream_pos DESC",
    };
    let sql = format!(
        "SELECT s.event_id, s.room_id, s.stream_pos, {rank} {from_where} ORDER BY {order} LIMIT {} OFFSET {}",
        q.limit, q.offset
    );
    let before = q.before.unwrap_or(StreamPos::MAX);
    c.query(&sql, &[&matching, &q.rooms, &q.keys, &before], |r| {
        Ok(SearchHit { event_id: r.get(0)?, room_id: r.get(1)?, stream_pos: r.get(2)?, rank: r.get(3)? })
    })
    .await
}

async fn count(c: &mut Conn<'_>, q: &SearchQuery) -> StorageResult<u64> {
    let (from_where, matching) = from_where(c.dialect(), &q.terms);
    let sql = format!("SELECT COUNT(*) {from_where}");
    let upper = StreamPos::MAX;
    c.query_one(&sql, &[&matching, &q.rooms, &q.keys, &upper], |r| r.get(0)).await
}

#[async_trait]
impl SearchRepo for Database {
    async fn search_events(&self, query: &SearchQuery) -> StorageResult<Vec<SearchHit>> {
        if query.rooms.is_empty() || query.keys.is_empty() || query.terms.iter().all(|t| t.negated) {
            return Ok(Vec::new());
        }
        let query = query.clone();
        self.read(move |c| Box::pin(async move { search(c, &query).await })).await
    }

    async fn count_search(&self, query: &SearchQuery) -> StorageResult<u64> {
        if query.rooms.is_empty() || query.keys.is_empty() || query.terms.iter().all(|t| t.negated) {
            return Ok(0);
        }
        let query = query.clone();
        self.read(move |c| Box::pin(async move { count(c, &query).await })).await
    }
}

#[cfg(test)]
mod tests {
    use super::{SearchTerm, fts5_query, tsquery};

    fn term(words: &[&str], prefix: bool, negated: bool) -> SearchTerm {
        SearchTerm { words: words.iter().map(|w| (*w).to_owned()).collect(), prefix, negated }
    }

    #[test]
    fn queries_are_spelled_for_each_backend() {
        let terms = [term(&["cake"], true, false), term(&["蛋", "糕"], false, false), term(&["lie"], false, true)];
        assert_eq!(fts5_query(&terms), "(\"cake\"* AND \"蛋 糕\") NOT \"lie\"");
        assert_eq!(tsquery(&terms), "'cake':* & '蛋' <-> '糕' & !('lie')");
    }
}
