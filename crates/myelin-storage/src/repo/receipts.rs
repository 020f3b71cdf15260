use async_trait::async_trait;
use myelin_core::{
    StreamPos,
    types::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId},
};
use ruma::events::receipt::{ReceiptThread, ReceiptType};

use crate::StorageResult;

#[derive(Clone, Debug)]
pub struct ReceiptRecord {
    pub room_id: OwnedRoomId,
    pub receipt_type: ReceiptType,
    pub user_id: OwnedUserId,
    pub thread: ReceiptThread,
    pub event_id: OwnedEventId,
    pub ts: u64,
}

/// A joined member's unread notifications and highlights in a room
/// ([`ReceiptRepo::room_unread_counts`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberUnread {
    pub user_id: OwnedUserId,
    /// Where the member's count starts: their newest read receipt, or their join if later.
    pub from: StreamPos,
    pub notifications: u64,
    pub highlights: u64,
}

/// Read receipts and the unread counts derived from them.
#[async_trait]
pub trait ReceiptRepo {
    /// Stores a receipt unless the user already has one of this type and thread on a later
    /// event. Returns the new stream position, or `None` if it was older and ignored.
    async fn put_receipt(&self, receipt: ReceiptRecord, event_pos: StreamPos) -> StorageResult<Option<StreamPos>>;
    /// Receipts in these rooms changed in `(since, until]`.
    async fn receipts_since(
        &self,
        room_ids: &[OwnedRoomId],
        since: StreamPos,
        until: StreamPos,
    ) -> StorageResult<Vec<ReceiptRecord>>;
    /// (notifications, highlights) for the user in the room after their newest read receipt.
    async fn unread_counts(&self, user_id: &UserId, room_id: &RoomId, until: StreamPos) -> StorageResult<(u64, u64)>;
    /// [`unread_counts`](Self::unread_counts) of every joined member of the room, in one
    /// statement, for at most the `max_members` who joined first (a live update shares it among
    /// the room's listeners). Only what came after `after` is counted, when given: a member's
    /// count then adds to the one read at `after`, if the member counts from the same position.
    async fn room_unread_counts(
        &self,
        room_id: &RoomId,
        until: StreamPos,
        max_members: usize,
        after: Option<StreamPos>,
    ) -> StorageResult<Vec<MemberUnread>>;
    /// [`unread_counts`](Self::unread_counts) for each of `room_ids`, in their order, in one read.
    async fn unread_counts_in_rooms(
        &self,
        user_id: &UserId,
        room_ids: &[OwnedRoomId],
        until: StreamPos,
    ) -> StorageResult<Vec<(u64, u64)>>;
}
