use async_trait::async_trait;
use myelin_core::types::{OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, UserId};

use crate::StorageResult;

/// A room as the admins' room list shows it, before its state's contents are read.
#[derive(Clone, Debug)]
pub struct AdminRoomRow {
    pub room_id: OwnedRoomId,
    pub room_version: RoomVersionId,
    pub creator: OwnedUserId,
    pub is_public: bool,
    pub join_rule: String,
    pub joined_members: u64,
    pub invited_members: u64,
    /// Joined members of this server.
    pub joined_local_members: u64,
    /// Entries of its current state.
    pub state_events: u64,
}

/// One current state event's content, for the room list's columns.
#[derive(Clone, Debug)]
pub struct RoomStateContent {
    pub room_id: OwnedRoomId,
    pub event_type: String,
    /// The event's JSON (its `content` is what the list needs).
    pub json: String,
}

/// A room deletion asked for through the admin API, and how it went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomDeletion {
    pub delete_id: String,
    pub room_id: OwnedRoomId,
    /// `shutting_down`, `purging`, `complete` or `failed`.
    pub status: String,
    pub error: Option<String>,
    /// The shutdown's outcome as JSON (`kicked_users`, `local_aliases`, ...).
    pub result: Option<String>,
    pub created_ms: u64,
}

/// Rooms as admins handle them: the full list, blocking, deletion.
#[async_trait]
pub trait RoomAdminRepo {
    /// Every room this server knows (or only `room`), with the counts the admin list shows
    /// (`server` names this server, to count its members).
    async fn admin_rooms(&self, server: &str, room: Option<&RoomId>) -> StorageResult<Vec<AdminRoomRow>>;
    /// The current state events of these types (state key `""`) of every room, or of one.
    async fn room_state_contents(
        &self,
        room: Option<&RoomId>,
        event_types: &[&str],
    ) -> StorageResult<Vec<RoomStateContent>>;
    /// Blocks a room: this server's users may not join it.
    async fn block_room(&self, room_id: &RoomId, by: &UserId, now_ms: u64) -> StorageResult<()>;
    async fn unblock_room(&self, room_id: &RoomId) -> StorageResult<()>;
    /// Who blocked the room, if it is blocked.
    async fn room_blocked_by(&self, room_id: &RoomId) -> StorageResult<Option<OwnedUserId>>;
    /// Records a deletion or its progress (by `delete_id`).
    async fn put_room_deletion(&self, deletion: &RoomDeletion) -> StorageResult<()>;
    async fn room_deletion(&self, delete_id: &str) -> StorageResult<Option<RoomDeletion>>;
    /// The room's deletions, oldest first.
    async fn room_deletions(&self, room_id: &RoomId) -> StorageResult<Vec<RoomDeletion>>;
    /// Removes everything this server holds about a room (events, current state, memberships,
    /// receipts, push actions, search entries, ...). Deletions and blocks stay, and so do its
    /// state groups (ids must not be reused) and the events still queued for other servers or
    /// application services.
    async fn purge_room(&self, room_id: &RoomId) -> StorageResult<()>;
}
