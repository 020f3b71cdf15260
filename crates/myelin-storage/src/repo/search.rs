use async_trait::async_trait;
use myelin_core::{
    StreamPos,
    types::{OwnedEventId, OwnedRoomId},
};

use crate::StorageResult;

/// The searchable text of an event, written with it (see `NewEvent::search`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchEntry {
    /// `content.body`, `content.name` or `content.topic`.
    pub key: String,
    /// The field's words as the search service normalised them (lowercase, separated by spaces).
    pub text: String,
}

/// One term of a query, in normalised words: a single word, or a phrase of several that must
/// follow each other. All terms must match, except negated ones, which must not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchTerm {
    /// Alphanumeric words, lowercase (never empty).
    pub words: Vec<String>,
    /// The last word also matches words it begins.
    pub prefix: bool,
    pub negated: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchOrder {
    /// Best match first (ties: newest first).
    Rank,
    /// Newest first.
    Recent,
}

/// A search over some rooms' indexed events.
#[derive(Clone, Debug)]
pub struct SearchQuery {
    /// At least one term is not negated.
    pub terms: Vec<SearchTerm>,
    pub rooms: Vec<OwnedRoomId>,
    /// Which fields (`content.body`, ...).
    pub keys: Vec<String>,
    pub order: SearchOrder,
    /// Only events before this position (paging by `Recent`).
    pub before: Option<StreamPos>,
    /// Skip this many hits first (paging by `Rank`).
    pub offset: usize,
    pub limit: usize,
}

/// An event a search found.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchHit {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub stream_pos: StreamPos,
    /// Higher is better; comparable within one backend only.
    pub rank: f64,
}

/// The full-text index of room events (SQLite FTS5, PostgreSQL tsvector).
#[async_trait]
pub trait SearchRepo {
    /// Hits in the query's order, at most `limit` after `offset`.
    async fn search_events(&self, query: &SearchQuery) -> StorageResult<Vec<SearchHit>>;
    /// How many indexed events match (ignoring `before`, `offset` and `limit`).
    async fn count_search(&self, query: &SearchQuery) -> StorageResult<u64>;
}
