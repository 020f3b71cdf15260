use async_trait::async_trait;
use myelin_core::types::{OwnedEventId, OwnedRoomId, OwnedUserId};

use crate::StorageResult;

/// A report of content, a room or a user, made to the server's admins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportRecord {
    /// Given by the store.
    pub id: i64,
    pub reporter: OwnedUserId,
    pub room_id: Option<OwnedRoomId>,
    pub event_id: Option<OwnedEventId>,
    pub user_id: Option<OwnedUserId>,
    pub reason: Option<String>,
    pub score: Option<i64>,
    pub created_ms: u64,
}

/// Reports for the admins.
#[async_trait]
pub trait ReportRepo {
    /// Stores a report (its `id` is ignored); answers its id.
    async fn add_report(&self, report: &ReportRecord) -> StorageResult<i64>;
    /// Reports, newest first, at most `limit`, before id `before` if given.
    async fn reports(&self, before: Option<i64>, limit: usize) -> StorageResult<Vec<ReportRecord>>;
}
