use async_trait::async_trait;
use myelin_core::{
    StateGroupId,
    types::{OwnedEventId, OwnedServerName, RoomId},
};

use crate::{MemberChange, StateEntry, StorageResult};

/// A room joined with partial state, until its full state is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartialStateRoom {
    pub join_event_id: OwnedEventId,
    /// The servers in the room when it was joined, as the resident server named them.
    pub servers: Vec<OwnedServerName>,
}

/// Rooms joined with partial state (`omit_members`), and their completion once the full state
/// before the join is fetched.
#[async_trait]
pub trait PartialStateRepo {
    /// Marks a room as joined with partial state (before its join is persisted).
    async fn mark_partial_state(
        &self,
        room_id: &RoomId,
        join_event_id: &OwnedEventId,
        servers: &[OwnedServerName],
    ) -> StorageResult<()>;
    async fn partial_state(&self, room_id: &RoomId) -> StorageResult<Option<PartialStateRoom>>;
    /// Forgets the mark without completing (the join it was made for never happened).
    async fn clear_partial_state(&self, room_id: &RoomId) -> StorageResult<()>;
    /// Completes a room's state with what the partial state left out: every state group of the
    /// room gains each entry of `missing` whose (type, state key) it does not hold (a later change
    /// stays), and so does the current state; the members of `members` get their rows where they
    /// have none, at a new stream position that becomes the room's newest (a sync after it tells
    /// clients of the users they now share the room with); the member counts follow and the mark
    /// goes. Answers the room's state groups (their cached copies are stale).
    async fn complete_partial_state(
        &self,
        room_id: &RoomId,
        missing: Vec<StateEntry>,
        members: Vec<MemberChange>,
    ) -> StorageResult<Vec<StateGroupId>>;
}
