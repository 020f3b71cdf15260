//! Each room's head — forward extremities and current state — kept in memory for the send path,
//! so building an event needs no database read and the next event of a room can be built while
//! the previous one is still being committed. Every local event passes through `send_event`,
//! which advances the head under the room lock; a failed write drops it (reloaded from storage).
//! Several processes sharing PostgreSQL drop a room's head when another process writes to it
//! (an invalidation of the `room_heads` cache); the write path's extremity check (`StaleHead`)
//! catches any race left.

use std::{collections::HashMap, sync::Arc};

use myelin_core::{
    Clock, StateKey, StateMap,
    types::{OwnedEventId, OwnedRoomId, OwnedServerName, RoomId, RoomVersionId},
};
use ruma::room_version_rules::RoomVersionRules;

use crate::{cache::Cache, pdu::Pdu};

/// Rooms whose head is kept (the least recently written to go first).
const HEADS_CACHED: usize = 10_000;

pub struct RoomHead {
    pub room_version: RoomVersionId,
    pub rules: RoomVersionRules,
    pub state: Arc<StateMap>,
    /// (event id, depth) of each forward extremity.
    pub extremities: Vec<(OwnedEventId, i64)>,
    /// Set while the room's state is partial (joined with `omit_members`): the servers in the
    /// room the resident server named, which events go to besides those of the members known.
    pub partial_servers: Option<Vec<OwnedServerName>>,
}

pub struct RoomHeads {
    pub(crate) cache: Cache<OwnedRoomId, Arc<RoomHead>>,
    /// State events built and queued whose commit is still pending: a head may name them before
    /// they can be read back, and the next event's auth checks need them.
    queued: std::sync::Mutex<HashMap<OwnedEventId, Pdu>>,
}

impl RoomHeads {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { cache: Cache::new("room_heads", HEADS_CACHED, None, clock), queued: Default::default() }
    }

    fn queued_map(&self) -> std::sync::MutexGuard<'_, HashMap<OwnedEventId, Pdu>> {
        // A panic while holding the lock leaves a usable map: the entries are plain data.
        self.queued.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn queue_state(&self, pdu: Pdu) {
        self.queued_map().insert(pdu.event_id.clone(), pdu);
    }

    /// The event is durable (or failed): read it from storage from now on.
    pub(crate) fn unqueue_state(&self, event_id: &OwnedEventId) {
        self.queued_map().remove(event_id);
    }

    pub(crate) fn queued_state(&self, ids: &[&OwnedEventId]) -> Vec<Pdu> {
        let queued = self.queued_map();
        ids.iter().filter_map(|id| queued.get(*id).cloned()).collect()
    }

    /// Replaces the room's head (under the room's lock): the head after an event received over
    /// federation, whose state is the resolved one.
    pub(crate) fn replace(&self, room_id: &RoomId, head: RoomHead) {
        self.cache.insert(room_id.to_owned(), Arc::new(head), 1);
    }

    /// The head after `event_id` (at `depth`, following `prevs`, maybe setting one state entry).
    /// Called under the room's lock, so it is the newest head of this process; cached only while
    /// `old` is still the cached head: a failed write that dropped it meanwhile (outside the
    /// lock) named an event never written, and the next event must reload the head from storage
    /// rather than build on one that names it.
    pub fn advance(
        &self,
        room_id: &RoomId,
        old: &Arc<RoomHead>,
        event_id: &OwnedEventId,
        depth: i64,
        prevs: &[(OwnedEventId, i64)],
        state_change: Option<(StateKey, OwnedEventId)>,
    ) {
        let mut state = old.state.clone();
        if let Some((key, id)) = state_change {
            Arc::make_mut(&mut state).insert(key, id);
        }
        let mut extremities: Vec<(OwnedEventId, i64)> =
            old.extremities.iter().filter(|(id, _)| !prevs.iter().any(|(p, _)| p == id)).cloned().collect();
        extremities.push((event_id.clone(), depth));
        let head = RoomHead {
            room_version: old.room_version.clone(),
            rules: old.rules.clone(),
            state,
            extremities,
            partial_servers: old.partial_servers.clone(),
        };
        self.cache.replace_if(room_id.to_owned(), Arc::new(head), 1, |current| Arc::ptr_eq(current, old));
    }
}
