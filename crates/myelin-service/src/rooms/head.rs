//! Each room's head — forward extremities and current state — kept in memory for the send path,
//! so building an event needs no database read and the next event of a room can be built while
//! the previous one is still being committed. Every local event passes through `send_event`,
//! which advances the head under the room lock; a failed write drops it (reloaded from storage).
//! Several processes sharing PostgreSQL drop a room's head when another process writes to it
//! (`Signal::RoomHead`); the write path's extremity check (`StaleHead`) catches any race left.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use ruma::room_version_rules::RoomVersionRules;

use super::StateMap;

/// Rooms whose head is kept; past this the cache is emptied and refilled on demand.
const MAX_HEADS: usize = 10_000;

pub struct RoomHead {
    pub room_version: String,
    pub rules: RoomVersionRules,
    pub state: Arc<StateMap>,
    /// (event id, depth) of each forward extremity.
    pub extremities: Vec<(String, i64)>,
}

#[derive(Default)]
pub struct RoomHeads {
    heads: Mutex<HashMap<String, Arc<RoomHead>>>,
}

impl RoomHeads {
    pub fn get(&self, room_id: &str) -> Option<Arc<RoomHead>> {
        self.heads.lock().ok().and_then(|h| h.get(room_id).cloned())
    }

    pub fn set(&self, room_id: &str, head: Arc<RoomHead>) {
        if let Ok(mut heads) = self.heads.lock() {
            if heads.len() >= MAX_HEADS && !heads.contains_key(room_id) {
                heads.clear();
            }
            heads.insert(room_id.to_owned(), head);
        }
    }

    pub fn clear(&self) {
        if let Ok(mut heads) = self.heads.lock() {
            heads.clear();
        }
    }

    pub fn invalidate(&self, room_id: &str) {
        if let Ok(mut heads) = self.heads.lock() {
            heads.remove(room_id);
        }
    }

    /// The head after `event_id` (at `depth`, following `prevs`, maybe setting one state entry).
    pub fn advance(
        &self,
        room_id: &str,
        old: &RoomHead,
        event_id: &str,
        depth: i64,
        prevs: &[(String, i64)],
        state_change: Option<((String, String), String)>,
    ) {
        let mut state = old.state.clone();
        if let Some((key, id)) = state_change {
            Arc::make_mut(&mut state).insert(key, id);
        }
        let mut extremities: Vec<(String, i64)> =
            old.extremities.iter().filter(|(id, _)| !prevs.iter().any(|(p, _)| p == id)).cloned().collect();
        extremities.push((event_id.to_owned(), depth));
        let head = RoomHead { room_version: old.room_version.clone(), rules: old.rules.clone(), state, extremities };
        self.set(room_id, Arc::new(head));
    }
}
