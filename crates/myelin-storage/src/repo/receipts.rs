use async_trait::async_trait;

use crate::{StorageResult, StreamPos};

#[derive(Clone, Debug)]
pub struct ReceiptRecord {
    pub room_id: String,
    pub receipt_type: String,
    pub user_id: String,
    /// Empty for an unthreaded receipt.
    pub thread_id: String,
    pub event_id: String,
    pub ts: u64,
}

/// Read receipts and the unread counts derived from them.
#[async_trait]
pub trait ReceiptRepo {
    /// Stores a receipt unless the user already has one of this type and thread on a later
    /// event. Returns the new stream position, or `None` if it was older and ignored.
    async fn put_receipt(&self, receipt: ReceiptRecord, event_pos: StreamPos) -> StorageResult<Option<StreamPos>>;
    /// Receipts in the rooms changed in `(since, until]`.
    async fn receipts_since(
        &self,
        room_ids: &[String],
        since: StreamPos,
        until: StreamPos,
    ) -> StorageResult<Vec<ReceiptRecord>>;
    /// (notifications, highlights) for the user in the room after their newest read receipt.
    async fn unread_counts(&self, user_id: &str, room_id: &str, until: StreamPos) -> StorageResult<(u64, u64)>;
}
