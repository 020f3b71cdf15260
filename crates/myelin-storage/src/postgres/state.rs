use std::collections::HashMap;

use async_trait::async_trait;

use super::{PgStore, conn::PgConn};
use crate::{MAX_STATE_DELTA_HOPS, StateEntry, StateRepo, StorageError, StorageResult};

/// Resolves a state group into its full state by walking the delta chain to its snapshot.
pub async fn load_state_group(conn: &mut PgConn, group_id: i64) -> StorageResult<Vec<StateEntry>> {
    // The chain in one query: the group, its prev_group, and so on up to the snapshot.
    let chain = conn
        .query(
            "WITH RECURSIVE chain(id, prev_group, n) AS (
                 SELECT id, prev_group, 0::BIGINT FROM state_groups WHERE id = $1
                 UNION ALL
                 SELECT g.id, g.prev_group, c.n + 1 FROM state_groups g JOIN chain c ON g.id = c.prev_group
                 WHERE c.n <= $2)
             SELECT id, prev_group FROM chain ORDER BY n",
            &[&group_id, &(MAX_STATE_DELTA_HOPS + 1)],
        )
        .await?;
    let ids: Vec<i64> = chain.iter().map(|r| r.get(0)).collect();
    match chain.last() {
        None => return Err(StorageError::Corrupt(format!("state group {group_id} missing"))),
        Some(last) if last.get::<_, Option<i64>>(1).is_some() => {
            return Err(StorageError::Corrupt(format!("state group {group_id}: delta chain broken or too long")));
        }
        Some(_) => {}
    }
    let rows = conn
        .query(
            "SELECT group_id, event_type, state_key, event_id FROM state_group_entries WHERE group_id = ANY($1)",
            &[&ids],
        )
        .await?;
    // Apply from the snapshot (last in the chain) to the group itself.
    let rank: HashMap<i64, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let mut rows: Vec<(usize, String, String, String)> = rows
        .iter()
        .map(|r| (rank.get(&r.get::<_, i64>(0)).copied().unwrap_or(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    rows.sort_by_key(|(rank, ..)| std::cmp::Reverse(*rank));
    let mut state: HashMap<(String, String), String> = HashMap::new();
    for (_, t, k, e) in rows {
        state.insert((t, k), e);
    }
    Ok(state.into_iter().map(|((t, k), e)| (t, k, e)).collect())
}

/// Creates the group after `prev` with one entry changed; returns its id.
pub async fn create_state_group(
    conn: &mut PgConn,
    room_id: &str,
    prev: Option<i64>,
    event_type: &str,
    state_key: &str,
    event_id: &str,
) -> StorageResult<i64> {
    let prev_hops: Option<i64> = match prev {
        Some(id) => conn.query_opt("SELECT hops FROM state_groups WHERE id = $1", &[&id]).await?.map(|r| r.get(0)),
        None => None,
    };
    let snapshot = match (prev, prev_hops) {
        (Some(_), Some(hops)) => hops + 1 >= MAX_STATE_DELTA_HOPS,
        _ => true,
    };
    const INSERT_ENTRY: &str =
        "INSERT INTO state_group_entries (group_id, event_type, state_key, event_id) VALUES ($1, $2, $3, $4)";
    if snapshot {
        let mut entries = match prev {
            Some(id) if prev_hops.is_some() => load_state_group(conn, id).await?,
            _ => Vec::new(),
        };
        entries.retain(|(t, k, _)| !(t == event_type && k == state_key));
        entries.push((event_type.to_owned(), state_key.to_owned(), event_id.to_owned()));
        let id: i64 = conn
            .query_one(
                "INSERT INTO state_groups (room_id, prev_group, hops) VALUES ($1, NULL, 0) RETURNING id",
                &[&room_id],
            )
            .await?
            .get(0);
        let (types, keys, ids): (Vec<String>, Vec<String>, Vec<String>) =
            entries.into_iter().fold((vec![], vec![], vec![]), |(mut a, mut b, mut c), (t, k, e)| {
                a.push(t);
                b.push(k);
                c.push(e);
                (a, b, c)
            });
        conn.execute(
            "INSERT INTO state_group_entries (group_id, event_type, state_key, event_id)
             SELECT $1, * FROM UNNEST($2::TEXT[], $3::TEXT[], $4::TEXT[])",
            &[&id, &types, &keys, &ids],
        )
        .await?;
        Ok(id)
    } else {
        let hops = prev_hops.unwrap_or(0) + 1;
        let id: i64 = conn
            .query_one(
                "INSERT INTO state_groups (room_id, prev_group, hops) VALUES ($1, $2, $3) RETURNING id",
                &[&room_id, &prev, &hops],
            )
            .await?
            .get(0);
        conn.execute(INSERT_ENTRY, &[&id, &event_type, &state_key, &event_id]).await?;
        Ok(id)
    }
}

#[async_trait]
impl StateRepo for PgStore {
    async fn state_group(&self, group_id: i64) -> StorageResult<Vec<StateEntry>> {
        let mut conn = self.pool.get().await?;
        load_state_group(&mut conn, group_id).await
    }
}
