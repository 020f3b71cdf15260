//! Typing notifications: ephemeral, kept in memory with a serial that sync tokens carry.
//!
//! Several processes each keep the whole typing map: a change made here is broadcast with its
//! serial and applied by the others (`cluster.rs`). Serials are a hybrid clock: microseconds of
//! wall time, but always above every serial this process has seen, so a token issued by one
//! process stays meaningful on another.

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
    /// Sets or clears a user's typing state; returns the change's serial if anything changed.
    pub fn set(&self, room_id: &str, user_id: &str, timeout: Option<Duration>) -> Option<u64> {
        let Ok(mut state) = self.inner.lock() else { return None };
        state.expire();
        let serial = state.next_serial(0);
        let room = state.rooms.entry(room_id.to_owned()).or_default();
        let changed = match timeout {
            Some(t) => room.0.insert(user_id.to_owned(), Instant::now() + t).is_none(),
            None => room.0.remove(user_id).is_some(),
        };
        if changed {
            room.1 = serial;
            state.serial = serial;
        }
        changed.then_some(serial)
    }

    /// Applies a change another process made (its serial is `serial`).
    pub fn apply_remote(&self, room_id: &str, user_id: &str, timeout: Option<Duration>, serial: u64) {
        let Ok(mut state) = self.inner.lock() else { return };
        state.expire();
        // Above everything this process handed out, so no token issued here skips it.
        let serial = state.next_serial(serial);
        let room = state.rooms.entry(room_id.to_owned()).or_default();
        match timeout {
            Some(t) => room.0.insert(user_id.to_owned(), Instant::now() + t),
            None => room.0.remove(user_id),
        };
        room.1 = serial;
        state.serial = serial;
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
    /// The next serial: wall-clock microseconds, above `floor` and every serial seen so far.
    fn next_serial(&self, floor: u64) -> u64 {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
        now.max(self.serial + 1).max(floor)
    }

    fn expire(&mut self) {
        let now = Instant::now();
        let serial = self.next_serial(0);
        let mut expired_any = false;
        for (users, changed) in self.rooms.values_mut() {
            let before = users.len();
            users.retain(|_, until| *until > now);
            if users.len() != before {
                expired_any = true;
                *changed = serial;
            }
        }
        if expired_any {
            self.serial = serial;
        }
        self.rooms.retain(|_, (users, changed)| !users.is_empty() || *changed > 0);
    }
}
