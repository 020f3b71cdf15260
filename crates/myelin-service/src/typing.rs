//! Typing notifications: ephemeral, kept in memory with a serial that sync tokens carry.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

#[derive(Default)]
pub struct Typing {
    inner: Mutex<TypingState>,
}

#[derive(Default)]
struct TypingState {
    serial: u64,
    /// room -> (user -> until, serial of the room's last change)
    rooms: HashMap<String, (HashMap<String, Instant>, u64)>,
}

impl Typing {
    /// Sets or clears a user's typing state; returns whether anything changed.
    pub fn set(&self, room_id: &str, user_id: &str, timeout: Option<Duration>) -> bool {
        let Ok(mut state) = self.inner.lock() else { return false };
        state.expire();
        let serial = state.serial + 1;
        let room = state.rooms.entry(room_id.to_owned()).or_default();
        let changed = match timeout {
            Some(t) => room.0.insert(user_id.to_owned(), Instant::now() + t).is_none(),
            None => room.0.remove(user_id).is_some(),
        };
        if changed {
            room.1 = serial;
            state.serial = serial;
        }
        changed
    }

    pub fn serial(&self) -> u64 {
        self.inner
            .lock()
            .map(|mut s| {
                s.expire();
                s.serial
            })
            .unwrap_or(0)
    }

    /// Users typing in the room if it changed after `since` (always when `since` is 0).
    pub fn typing_since(&self, room_id: &str, since: u64) -> Option<Vec<String>> {
        let Ok(mut state) = self.inner.lock() else { return None };
        state.expire();
        let (users, changed) = state.rooms.get(room_id)?;
        (since == 0 && !users.is_empty() || *changed > since).then(|| users.keys().cloned().collect())
    }
}

impl TypingState {
    fn expire(&mut self) {
        let now = Instant::now();
        let mut serial = self.serial;
        for (users, changed) in self.rooms.values_mut() {
            let before = users.len();
            users.retain(|_, until| *until > now);
            if users.len() != before {
                serial += 1;
                *changed = serial;
            }
        }
        self.serial = serial;
        self.rooms.retain(|_, (users, changed)| !users.is_empty() || *changed > 0);
    }
}
