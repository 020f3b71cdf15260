//! What a room list entry shows of a room: member counts, heroes and the current state group,
//! the same for every viewer, and the viewer's own unread counts.
//!
//! The part every viewer shares is kept per room, with the stream head it was read at. It stays
//! good while no membership or state moved after that (the change marks of `myelin_storage::db::
//! changes`): a message in a busy room wakes its listeners, and each of them finds the room's
//! summary in memory. Their unread counts in that one room are read once for all of them
//! (`Services::unread_counts`, `ephemeral.rs`).

use std::{collections::HashMap, sync::Arc};

use myelin_core::{
    MatrixResult, StateGroupId, StreamPos,
    types::{OwnedRoomId, UserId},
};
use myelin_storage::{Change, MemberRecord, RoomMembersSummary};

use crate::Services;

/// Heroes a room entry names (MSC4186: "up to 5").
const HEROES: usize = 5;

/// One room's summary as one viewer sees it.
#[derive(Clone, Debug)]
pub(crate) struct RoomSummary {
    pub joined: u64,
    pub invited: u64,
    /// Up to five joined or invited members other than the viewer, earliest first.
    pub heroes: Vec<MemberRecord>,
    /// The viewer's unread notifications and highlights.
    pub notifications: u64,
    pub highlights: u64,
    pub current_state_group: Option<StateGroupId>,
}

/// A room's shared summary and the stream head it was read at.
pub(crate) type CachedMembers = (StreamPos, Arc<RoomMembersSummary>);

impl Services {
    /// The summaries of `room_ids` as `user_id` sees them, unread counts up to `now`.
    pub(super) async fn room_summaries(
        &self,
        user_id: &UserId,
        room_ids: &[OwnedRoomId],
        now: StreamPos,
    ) -> MatrixResult<HashMap<OwnedRoomId, RoomSummary>> {
        if room_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let shared = self.member_summaries(room_ids).await?;
        let unread = match room_ids {
            [room_id] => vec![self.unread_counts(user_id, room_id, now).await?],
            _ => self.store.unread_counts_in_rooms(user_id, room_ids, now).await?,
        };
        Ok(room_ids
            .iter()
            .zip(unread)
            .filter_map(|(room_id, (notifications, highlights))| {
                let members = shared.get(room_id)?;
                let heroes =
                    members.first_members.iter().filter(|m| m.user_id != user_id).take(HEROES).cloned().collect();
                let summary = RoomSummary {
                    joined: members.joined,
                    invited: members.invited,
                    heroes,
                    notifications,
                    highlights,
                    current_state_group: members.current_state_group,
                };
                Some((room_id.clone(), summary))
            })
            .collect())
    }

    /// The shared member summaries of `room_ids`: kept ones while no membership moved since they
    /// were read, the rest read (and kept).
    pub(crate) async fn member_summaries(
        &self,
        room_ids: &[OwnedRoomId],
    ) -> MatrixResult<HashMap<OwnedRoomId, Arc<RoomMembersSummary>>> {
        let mut shared: HashMap<OwnedRoomId, Arc<RoomMembersSummary>> = HashMap::with_capacity(room_ids.len());
        let mut missing = Vec::new();
        for room_id in room_ids {
            match self.room_members_summaries.get_unchanged(room_id, self.store.as_ref(), Change::Membership) {
                Some((_, summary)) => {
                    shared.insert(room_id.clone(), summary);
                }
                None => missing.push(room_id.clone()),
            }
        }
        if !missing.is_empty() {
            // Whatever committed up to the head known now is in what the read finds.
            let read_at = self.store.stream_head();
            let epoch = self.room_members_summaries.epoch();
            for summary in self.store.room_member_summaries(&missing).await? {
                let summary = Arc::new(summary);
                self.room_members_summaries.insert_if_current(
                    summary.room_id.clone(),
                    (read_at, summary.clone()),
                    1,
                    epoch,
                );
                shared.insert(summary.room_id.clone(), summary);
            }
        }
        Ok(shared)
    }
}
