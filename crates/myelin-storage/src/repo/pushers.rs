use async_trait::async_trait;
use myelin_core::types::{OwnedDeviceId, OwnedEventId, OwnedRoomId, OwnedUserId, UserId};

use crate::{StorageResult, StreamPos};

/// The job kind that delivers a user's notifications to their pushers.
pub const PUSH_JOB: &str = "push";

/// The job queue key of a user's push job.
pub fn push_job_key(user_id: &UserId) -> String {
    format!("{PUSH_JOB}:{user_id}")
}

/// A pusher as `/pushers/set` sets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PusherRecord {
    pub user_id: OwnedUserId,
    pub app_id: String,
    pub pushkey: String,
    pub kind: String,
    pub app_display_name: String,
    pub device_display_name: String,
    pub profile_tag: Option<String>,
    pub lang: String,
    /// JSON.
    pub data: String,
    pub device_id: Option<OwnedDeviceId>,
    pub created_ms: u64,
    /// Push actions up to here are delivered.
    pub pushed_pos: StreamPos,
}

/// A notifying push action not yet delivered to a pusher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingPush {
    pub room_id: OwnedRoomId,
    pub event_id: OwnedEventId,
    pub stream_pos: StreamPos,
    pub highlight: bool,
    /// The actions of the rule that matched (JSON); `None` for rows older than that record.
    pub actions: Option<String>,
}

/// A notification as `/notifications` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationRecord {
    pub room_id: OwnedRoomId,
    pub event_id: OwnedEventId,
    pub stream_pos: StreamPos,
    pub highlight: bool,
    /// At or before the user's read receipt in the room.
    pub read: bool,
    /// The actions of the rule that matched (JSON); `None` for rows older than that record.
    pub actions: Option<String>,
}

/// Pushers and what they have been sent.
#[async_trait]
pub trait PusherRepo {
    /// Adds or replaces (same app id and pushkey for the user) a pusher; a replaced one keeps
    /// its delivery position. Without `append`, the same app id and pushkey of other users go.
    async fn put_pusher(&self, pusher: &PusherRecord, append: bool) -> StorageResult<()>;
    /// Removes a pusher; false if there was none.
    async fn delete_pusher(&self, user_id: &UserId, app_id: &str, pushkey: &str) -> StorageResult<bool>;
    async fn pushers(&self, user_id: &UserId) -> StorageResult<Vec<PusherRecord>>;
    /// Records delivery up to `pos` (never moves back).
    async fn set_pusher_position(
        &self,
        user_id: &UserId,
        app_id: &str,
        pushkey: &str,
        pos: StreamPos,
    ) -> StorageResult<()>;
    /// The user's notifying push actions after `after`, oldest first, at most `limit`.
    async fn pending_pushes(&self, user_id: &UserId, after: StreamPos, limit: usize)
    -> StorageResult<Vec<PendingPush>>;
    /// The user's notifications before `before` (all if `None`), newest first, at most `limit`,
    /// only highlights if asked.
    async fn notifications(
        &self,
        user_id: &UserId,
        before: Option<StreamPos>,
        limit: usize,
        highlights_only: bool,
    ) -> StorageResult<Vec<NotificationRecord>>;
    /// Unread notifications over all of the user's rooms (a pusher's badge).
    async fn unread_notification_total(&self, user_id: &UserId) -> StorageResult<u64>;
}
