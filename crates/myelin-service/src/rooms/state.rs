//! Resolved state groups, cached (state groups are immutable, so a cached group is never stale).

use std::sync::Arc;

use myelin_core::{
    MatrixResult, Membership, StateGroupId, StateMap, StreamPos,
    types::{RoomId, StateEventType, UserId},
};

use crate::Services;

impl Services {
    /// The full state of a group.
    pub async fn state_group(&self, group: StateGroupId) -> MatrixResult<Arc<StateMap>> {
        if let Some(map) = self.state_groups.get(&group) {
            return Ok(map);
        }
        let epoch = self.state_groups.epoch();
        let entries = self.store.state_group(group).await?;
        let map: Arc<StateMap> = Arc::new(entries.into_iter().map(|(t, k, e)| ((t, k), e)).collect());
        self.state_groups.insert_if_current(group, map.clone(), 1, epoch);
        Ok(map)
    }

    /// The room's state after its newest event at or before `pos`.
    pub(crate) async fn state_at(&self, room_id: &RoomId, pos: StreamPos) -> MatrixResult<Arc<StateMap>> {
        match self.store.state_group_at(room_id, pos).await? {
            Some(group) => self.state_group(group).await,
            None => Ok(Default::default()),
        }
    }

    /// `user_id`'s membership in `state`, if it has one.
    pub(crate) async fn membership_in(&self, state: &StateMap, user_id: &UserId) -> MatrixResult<Option<Membership>> {
        let Some(id) = state.get(&(StateEventType::RoomMember, user_id.to_string())) else { return Ok(None) };
        Ok(self
            .event(id)
            .await?
            .and_then(|e| Self::event_content(&e)["membership"].as_str().and_then(|m| m.parse().ok())))
    }
}
