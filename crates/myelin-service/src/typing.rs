//! Typing notifications: ephemeral, kept in memory with a serial that sync tokens carry.
//!
//! Several processes each keep the whole typing map: a change made here is broadcast with its
//! serial and applied by the others (`cluster.rs`). Serials are a hybrid clock: microseconds of
//! wall time, but always above every serial this process has seen, so a token issued by one
//! process stays meaningful on another.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use myelin_core::{
    Clock,
    types::{OwnedRoomId, OwnedUserId, RoomId, UserId},
};

pub struct Typing {
    inner: Mutex<TypingState>,
    clock: Arc<dyn Clock>,
}

#[derive(Default)]
struct TypingState {
    serial: u64,
    /// room -> (user -> until, serial of the room's last change)
    rooms: HashMap<OwnedRoomId, (HashMap<OwnedUserId, Instant>, u64)>,
}

impl Typing {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { inner: Mutex::new(TypingState::default()), clock }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, TypingState> {
        match self.inner.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The next serial: wall-clock microseconds, above `floor` and every serial seen so far.
    fn next_serial(&self, state: &TypingState, floor: u64) -> u64 {
        let now = self.clock.now_ms().saturating_mul(1000);
        now.max(state.serial + 1).max(floor)
    }

    fn expire(&self, state: &mut TypingState) {
        let now = self.clock.now();
        let serial = self.next_serial(state, 0);
        let mut expired_any = false;
        for (users, changed) in state.rooms.values_mut() {
            let before = users.len();
            users.retain(|_, until| *until > now);
            if users.len() != before {
                expired_any = true;
                *changed = serial;
            }
        }
        if expired_any {
            state.serial = serial;
        }
        state.rooms.retain(|_, (users, changed)| !users.is_empty() || *changed > 0);
    }

    /// Sets or clears a user's typing state; returns the change's serial if anything changed.
    pub fn set(&self, room_id: &RoomId, user_id: &UserId, timeout: Option<Duration>) -> Option<u64> {
        let mut state = self.state();
        self.expire(&mut state);
        let serial = self.next_serial(&state, 0);
        let until = timeout.map(|t| self.clock.now() + t);
        let room = state.rooms.entry(room_id.to_owned()).or_default();
        let changed = match until {
            Some(until) => room.0.insert(user_id.to_owned(), until).is_none(),
            None => room.0.remove(user_id).is_some(),
        };
        if changed {
            room.1 = serial;
            state.serial = serial;
        }
        changed.then_some(serial)
    }

    /// Applies a change another process made (its serial is `serial`).
    pub fn apply_remote(&self, room_id: &RoomId, user_id: &UserId, timeout: Option<Duration>, serial: u64) {
        let mut state = self.state();
        self.expire(&mut state);
        // Above everything this process handed out, so no token issued here skips it.
        let serial = self.next_serial(&state, serial);
        let until = timeout.map(|t| self.clock.now() + t);
        let room = state.rooms.entry(room_id.to_owned()).or_default();
        match until {
            Some(until) => room.0.insert(user_id.to_owned(), until),
            None => room.0.remove(user_id),
        };
        room.1 = serial;
        state.serial = serial;
    }

    pub fn serial(&self) -> u64 {
        let mut state = self.state();
        self.expire(&mut state);
        state.serial
    }

    /// Users typing in the room if it changed after `since` (always when `since` is 0).
    pub fn typing_since(&self, room_id: &RoomId, since: u64) -> Option<Vec<OwnedUserId>> {
        let mut state = self.state();
        self.expire(&mut state);
        let (users, changed) = state.rooms.get(room_id)?;
        (since == 0 && !users.is_empty() || *changed > since).then(|| users.keys().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use myelin_core::{ManualClock, types::UserId};
    use ruma::{room_id, user_id};

    use super::Typing;

    #[test]
    fn typing_expires_and_moves_the_serial() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let typing = Typing::new(clock.clone());
        let room = room_id!("!r:x");
        let alice: &UserId = user_id!("@alice:x");
        let start = typing.serial();
        let serial = typing.set(room, alice, Some(Duration::from_secs(30))).expect("changed");
        assert!(serial > start);
        assert_eq!(typing.typing_since(room, start), Some(vec![alice.to_owned()]));
        assert_eq!(typing.typing_since(room, serial), None, "nothing new after the serial");
        assert_eq!(typing.set(room, alice, Some(Duration::from_secs(30))), None, "still typing: no change");
        clock.advance(Duration::from_secs(31));
        let after = typing.serial();
        assert!(after > serial, "expiry is a change");
        assert_eq!(typing.typing_since(room, serial), Some(vec![]), "nobody types any more");

        // A remote change stays above every serial handed out here.
        typing.apply_remote(room, user_id!("@bob:x"), Some(Duration::from_secs(5)), after + 1_000_000);
        assert!(typing.serial() >= after + 1_000_000);
    }
}
