use async_trait::async_trait;
use myelin_core::{
    StreamPos,
    types::{OwnedUserId, UserId},
};

use crate::StorageResult;

/// What is known of a user's presence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceRecord {
    pub user_id: OwnedUserId,
    /// `online`, `unavailable` or `offline`.
    pub state: String,
    pub status_msg: Option<String>,
    pub last_active_ms: u64,
    /// Present (not offline) until then unless activity moves it.
    pub alive_until_ms: u64,
    /// This server's user (its timers run here).
    pub local: bool,
    /// Of the last change others see (given by the store).
    pub stream_pos: StreamPos,
}

/// Presence states and the times that drive them.
#[async_trait]
pub trait PresenceRepo {
    /// Stores a change others see (its `stream_pos` is ignored): answers the new position.
    async fn put_presence(&self, record: PresenceRecord) -> StorageResult<StreamPos>;
    async fn get_presence(&self, user_id: &UserId) -> StorageResult<Option<PresenceRecord>>;
    /// The rows of these users.
    async fn presence_of(&self, user_ids: &[OwnedUserId]) -> StorageResult<Vec<PresenceRecord>>;
    /// Rows changed in `(since, until]` that `viewer` sees: its own, and those of users who are
    /// joined to or invited into a room the viewer is joined to. Newest first, at most `limit` (a
    /// sync far behind gets the newest changes). The rooms are looked at in the query, so a sync
    /// reads its room mates' changes, not every change on the server (5 000 users coming online
    /// made each of their syncs read and sort thousands of others' rows).
    async fn presence_changes_seen_by(
        &self,
        viewer: &UserId,
        since: StreamPos,
        until: StreamPos,
        limit: usize,
    ) -> StorageResult<Vec<PresenceRecord>>;
    /// Activity that changes nothing others see: raises the user's `last_active_ms` and
    /// `alive_until_ms` to these (never lowers them). No position; a user without a row is left
    /// alone.
    async fn touch_presence(&self, user_id: &UserId, last_active_ms: u64, alive_until_ms: u64) -> StorageResult<()>;
    /// The timers, as one change each: local `online` users inactive since before `idle_before_ms`
    /// become `unavailable`; users present whose `alive_until_ms` is before `now_ms` become
    /// `offline`. Answers the changed rows (at most `limit`).
    async fn expire_presence(
        &self,
        idle_before_ms: u64,
        now_ms: u64,
        limit: usize,
    ) -> StorageResult<Vec<PresenceRecord>>;
}
