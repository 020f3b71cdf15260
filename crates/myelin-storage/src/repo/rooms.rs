use async_trait::async_trait;
use myelin_core::{
    Membership, StateGroupId, StreamPos,
    types::{
        OwnedEventId, OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomAliasId, RoomId, RoomVersionId, StateEventType,
        TimelineEventType, UserId,
    },
};

use crate::{StorageResult, StoredEvent};

#[derive(Clone, Debug)]
pub struct RoomRecord {
    pub room_id: OwnedRoomId,
    pub room_version: RoomVersionId,
    pub creator: OwnedUserId,
    pub is_public: bool,
    pub current_state_group: Option<StateGroupId>,
    pub last_event_pos: StreamPos,
}

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

/// Whether an event of this type moves its room up the room list ([`BUMP_EVENT_TYPES`]).
pub fn is_bump_event(event_type: &TimelineEventType) -> bool {
    match event_type {
        TimelineEventType::RoomCreate
        | TimelineEventType::RoomMessage
        | TimelineEventType::RoomEncrypted
        | TimelineEventType::Sticker
        | TimelineEventType::CallInvite => true,
        // Polls and live locations have stable and unstable names, behind ruma features.
        other => BUMP_EVENT_TYPES.contains(&other.to_string().as_str()),
    }
}

/// A room in a user's room list, with its sort key.
#[derive(Clone, Debug)]
pub struct UserRoom {
    pub room_id: OwnedRoomId,
    pub membership: Membership,
    pub membership_event_id: OwnedEventId,
    pub membership_pos: StreamPos,
    pub last_event_pos: StreamPos,
    /// Position of the room's newest "bump" event ([`is_bump_event`]): the room list's sort key.
    pub bump_pos: StreamPos,
    pub forgotten: bool,
    /// Who set the membership (e.g. the inviter).
    pub membership_sender: OwnedUserId,
}

/// Where a room's newest event and newest "bump" event are (the room list's sort keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomPositions {
    pub room_id: OwnedRoomId,
    pub last_event_pos: StreamPos,
    pub bump_pos: StreamPos,
}

#[derive(Clone, Debug)]
pub struct MemberRecord {
    pub user_id: OwnedUserId,
    pub membership: Membership,
    pub event_id: OwnedEventId,
    /// Stream position of the membership event.
    pub stream_pos: StreamPos,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

#[derive(Clone, Debug)]
pub struct PublicRoomRecord {
    pub room_id: OwnedRoomId,
    pub joined_members: u64,
}

/// Rooms, current state, memberships, aliases and the public directory.
#[async_trait]
pub trait RoomRepo {
    async fn get_room(&self, room_id: &RoomId) -> StorageResult<Option<RoomRecord>>;
    /// Every room the user has a membership row in.
    async fn rooms_for_user(&self, user_id: &UserId) -> StorageResult<Vec<UserRoom>>;
    /// The user's rooms whose membership or newest event is after `since` (at most `limit`, in
    /// no particular order): what changed in [`rooms_for_user`](Self::rooms_for_user) since then,
    /// forgetting aside (it takes no position).
    async fn rooms_for_user_since(
        &self,
        user_id: &UserId,
        since: StreamPos,
        limit: usize,
    ) -> StorageResult<Vec<UserRoom>>;
    /// Rooms with an event after `since` (at most `limit`, in no particular order), with their
    /// newest positions: the part of every user's [`rooms_for_user_since`](Self::rooms_for_user_since)
    /// that memberships do not move, read once for all of them.
    async fn rooms_with_events_since(&self, since: StreamPos, limit: usize) -> StorageResult<Vec<RoomPositions>>;
    /// Current members, optionally only with one membership, by user id.
    async fn room_members(&self, room_id: &RoomId, membership: Option<Membership>) -> StorageResult<Vec<MemberRecord>>;
    /// Members whose membership changed at a position in `(since, until]`.
    async fn membership_changes(
        &self,
        room_id: &RoomId,
        since: StreamPos,
        until: StreamPos,
    ) -> StorageResult<Vec<MemberRecord>>;
    async fn membership(&self, room_id: &RoomId, user_id: &UserId) -> StorageResult<Option<MemberRecord>>;
    /// Current state as (type, state key, event id).
    async fn current_state_ids(&self, room_id: &RoomId) -> StorageResult<Vec<(StateEventType, String, OwnedEventId)>>;
    async fn current_state_event(
        &self,
        room_id: &RoomId,
        event_type: &StateEventType,
        state_key: &str,
    ) -> StorageResult<Option<StoredEvent>>;
    async fn forget_room(&self, user_id: &UserId, room_id: &RoomId) -> StorageResult<()>;
    /// Users joined to or invited into a room the user is joined to (the user included if joined
    /// anywhere): whoever must hear of the user's device changes.
    async fn room_mates(&self, user_id: &UserId) -> StorageResult<Vec<OwnedUserId>>;
    /// Which of `others` share a room with the user (as in `room_mates`).
    async fn sharing_rooms_with(&self, user_id: &UserId, others: &[OwnedUserId]) -> StorageResult<Vec<OwnedUserId>>;
    /// Creates an alias; `StorageError::Conflict` if taken.
    async fn create_alias(&self, alias: &RoomAliasId, room_id: &RoomId, creator: &UserId) -> StorageResult<()>;
    async fn delete_alias(&self, alias: &RoomAliasId) -> StorageResult<bool>;
    /// (room id, creator) of an alias.
    async fn resolve_alias(&self, alias: &RoomAliasId) -> StorageResult<Option<(OwnedRoomId, OwnedUserId)>>;
    async fn room_aliases(&self, room_id: &RoomId) -> StorageResult<Vec<OwnedRoomAliasId>>;
    async fn set_room_public(&self, room_id: &RoomId, public: bool) -> StorageResult<()>;
    /// Public rooms ordered by joined members, `offset`/`limit` paged, and how many there are.
    async fn public_rooms(&self, offset: usize, limit: usize) -> StorageResult<(Vec<PublicRoomRecord>, usize)>;
}
