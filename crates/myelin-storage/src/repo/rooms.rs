use async_trait::async_trait;

use crate::{StorageResult, StoredEvent, StreamPos};

#[derive(Clone, Debug)]
pub struct RoomRecord {
    pub room_id: String,
    pub room_version: String,
    pub creator: String,
    pub is_public: bool,
    pub current_state_group: Option<i64>,
    pub last_event_pos: StreamPos,
}

/// A room in a user's room list, with its sort key.
/// Event types that move a room up the room list (sliding sync's `bump_stamp`): what a user
/// would call activity, not every state change.
pub const BUMP_EVENT_TYPES: [&str; 9] = [
    "m.room.create",
    "m.room.message",
    "m.room.encrypted",
    "m.sticker",
    "m.call.invite",
    "m.poll.start",
    "org.matrix.msc3381.poll.start",
    "m.beacon_info",
    "org.matrix.msc3672.beacon_info",
];

pub fn is_bump_event(event_type: &str) -> bool {
    BUMP_EVENT_TYPES.contains(&event_type)
}

#[derive(Clone, Debug)]
pub struct UserRoom {
    pub room_id: String,
    pub membership: String,
    pub membership_event_id: String,
    pub membership_pos: StreamPos,
    pub last_event_pos: StreamPos,
    /// Position of the room's newest "bump" event ([`is_bump_event`]): the room list's sort key.
    pub bump_pos: StreamPos,
    pub forgotten: bool,
    /// Who set the membership (e.g. the inviter).
    pub membership_sender: String,
}

#[derive(Clone, Debug)]
pub struct MemberRecord {
    pub user_id: String,
    pub membership: String,
    pub event_id: String,
    /// Stream position of the membership event.
    pub stream_pos: StreamPos,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

#[derive(Clone, Debug)]
pub struct PublicRoomRecord {
    pub room_id: String,
    pub joined_members: u64,
}

/// Rooms, current state, memberships, aliases and the public directory.
#[async_trait]
pub trait RoomRepo {
    async fn get_room(&self, room_id: &str) -> StorageResult<Option<RoomRecord>>;
    /// Every room the user has a membership row in.
    async fn rooms_for_user(&self, user_id: &str) -> StorageResult<Vec<UserRoom>>;
    /// The user's rooms whose membership or newest event is after `since` (at most `limit`, in
    /// no particular order): what changed in [`rooms_for_user`](Self::rooms_for_user) since then,
    /// forgetting aside (it takes no position).
    async fn rooms_for_user_since(&self, user_id: &str, since: StreamPos, limit: usize)
    -> StorageResult<Vec<UserRoom>>;
    /// Current members, optionally only with one membership.
    async fn room_members(&self, room_id: &str, membership: Option<&str>) -> StorageResult<Vec<MemberRecord>>;
    /// Members whose membership changed at a position in `(since, until]`.
    async fn membership_changes(
        &self,
        room_id: &str,
        since: StreamPos,
        until: StreamPos,
    ) -> StorageResult<Vec<MemberRecord>>;
    async fn membership(&self, room_id: &str, user_id: &str) -> StorageResult<Option<MemberRecord>>;
    /// Current state as (type, state_key, event_id).
    async fn current_state_ids(&self, room_id: &str) -> StorageResult<Vec<(String, String, String)>>;
    async fn current_state_event(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
    ) -> StorageResult<Option<StoredEvent>>;
    async fn forget_room(&self, user_id: &str, room_id: &str) -> StorageResult<()>;
    /// Users joined to or invited into a room the user is joined to (the user included if joined
    /// anywhere): whoever must hear of the user's device changes.
    async fn room_mates(&self, user_id: &str) -> StorageResult<Vec<String>>;
    /// Which of `others` share a room with the user (as in `room_mates`).
    async fn sharing_rooms_with(&self, user_id: &str, others: &[String]) -> StorageResult<Vec<String>>;
    /// Creates an alias; `StorageError::Conflict` if taken.
    async fn create_alias(&self, alias: &str, room_id: &str, creator: &str) -> StorageResult<()>;
    async fn delete_alias(&self, alias: &str) -> StorageResult<bool>;
    /// (room id, creator) of an alias.
    async fn resolve_alias(&self, alias: &str) -> StorageResult<Option<(String, String)>>;
    async fn room_aliases(&self, room_id: &str) -> StorageResult<Vec<String>>;
    async fn set_room_public(&self, room_id: &str, public: bool) -> StorageResult<()>;
    /// Public rooms ordered by joined members, `offset`/`limit` paged.
    async fn public_rooms(&self, offset: usize, limit: usize) -> StorageResult<(Vec<PublicRoomRecord>, usize)>;
}
