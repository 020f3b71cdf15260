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

/// Which event reports an admin lists.
#[derive(Clone, Debug, Default)]
pub struct ReportFilter {
    /// Only those of this reporter.
    pub reporter: Option<OwnedUserId>,
    /// Only those about this room.
    pub room_id: Option<OwnedRoomId>,
    /// Newest first (else oldest first).
    pub newest_first: bool,
}

/// Reports for the admins.
#[async_trait]
pub trait ReportRepo {
    /// Stores a report (its `id` is ignored); answers its id.
    async fn add_report(&self, report: &ReportRecord) -> StorageResult<i64>;
    /// Reports of events matching `filter`, `offset`/`limit` paged, and how many match.
    async fn event_reports(
        &self,
        filter: &ReportFilter,
        offset: u64,
        limit: usize,
    ) -> StorageResult<(Vec<ReportRecord>, u64)>;
    async fn report(&self, id: i64) -> StorageResult<Option<ReportRecord>>;
    /// Deletes a report; false if there was none.
    async fn delete_report(&self, id: i64) -> StorageResult<bool>;
}
