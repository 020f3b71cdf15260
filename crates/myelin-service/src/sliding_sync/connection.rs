//! Per-connection memory of sliding sync: what each room was last sent up to and with which
//! config, which lazy members it already has, the list counts. Stored as JSON in the
//! connection's row (`SlidingSyncRepo`), so every process of a cluster can serve the connection.
//!
//! A room's entry encodes the MSC's three states: absent = never sent; `pos` equal to the
//! connection's token = live; lower = previously sent, with updates since `pos` still owed.
//!
//! Most answers change the state only by moving it forward: the new stream position, and every
//! live room live at it (a message in a busy room, to each of its listeners). Such an answer is
//! not stored: its `pos` names the stored state and the move ([`Advance`]), and any process
//! rebuilds the state from the two. Only answers that change anything else are stored.

use std::collections::BTreeMap;

use myelin_core::{
    Membership, StreamPos,
    types::{OwnedRoomId, OwnedUserId},
};
use serde::{Deserialize, Serialize};

use super::request::RoomConfig;

/// Lazy members remembered per room; past this the set starts over (a repeat is harmless).
const MAX_LAZY_MEMBERS: usize = 1_000;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectionState {
    /// Stream position everything sent so far is consistent with (`None`: nothing sent yet).
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub pos: Option<StreamPos>,
    /// Typing serial at `pos`.
    #[serde(rename = "y", default)]
    pub typing: u64,
    #[serde(rename = "r", default)]
    pub rooms: BTreeMap<OwnedRoomId, RoomSent>,
    /// The distinct room configs rooms were sent with; rooms refer to them by index.
    #[serde(rename = "c", default)]
    pub configs: Vec<RoomConfig>,
    /// Last `count` per list.
    #[serde(rename = "n", default)]
    pub list_counts: BTreeMap<String, usize>,
    /// The fingerprint of the request answered with this state (0: unknown).
    #[serde(rename = "q", default)]
    pub request: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoomSent {
    /// Everything of the room up to here has been sent.
    #[serde(rename = "p")]
    pub pos: StreamPos,
    /// The user's membership when it was sent.
    #[serde(rename = "m")]
    pub membership: Membership,
    #[serde(rename = "c")]
    pub config: usize,
    #[serde(rename = "l", default, skip_serializing_if = "Vec::is_empty")]
    pub lazy_members: Vec<OwnedUserId>,
}

/// A stored state moved forward to a newer stream position, written into `pos`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Advance {
    pub pos: StreamPos,
    pub typing: u64,
}

impl ConnectionState {
    /// This state moved forward: at `to.pos`, with every room that was live here live there too.
    /// `None` for a state with nothing sent yet, or a move backwards (a made-up `pos`).
    pub fn advanced(&self, to: Advance) -> Option<ConnectionState> {
        let from = self.pos.filter(|from| *from <= to.pos)?;
        let mut state = self.clone();
        state.pos = Some(to.pos);
        state.typing = to.typing;
        for room in state.rooms.values_mut().filter(|room| room.pos == from) {
            room.pos = to.pos;
        }
        Some(state)
    }

    /// How `next` follows from this state, if by an [`Advance`] alone.
    pub fn advance_to(&self, next: &ConnectionState) -> Option<Advance> {
        let to = Advance { pos: next.pos?, typing: next.typing };
        (self.advanced(to).as_ref() == Some(next)).then_some(to)
    }

    pub fn config_of(&self, sent: &RoomSent) -> RoomConfig {
        self.configs.get(sent.config).cloned().unwrap_or_default()
    }

    /// Index of `config`, added if new.
    pub fn intern(&mut self, config: &RoomConfig) -> usize {
        match self.configs.iter().position(|c| c == config) {
            Some(i) => i,
            None => {
                self.configs.push(config.clone());
                self.configs.len() - 1
            }
        }
    }

    /// Drops configs no room refers to any more, renumbering the rest.
    pub fn compact_configs(&mut self) {
        let mut used: Vec<usize> = self.rooms.values().map(|r| r.config).collect();
        used.sort_unstable();
        used.dedup();
        if used.len() == self.configs.len() {
            return;
        }
        let configs: Vec<RoomConfig> = used.iter().filter_map(|i| self.configs.get(*i).cloned()).collect();
        let renumber: BTreeMap<usize, usize> = used.iter().enumerate().map(|(new, old)| (*old, new)).collect();
        for room in self.rooms.values_mut() {
            room.config = renumber.get(&room.config).copied().unwrap_or(0);
        }
        self.configs = configs;
    }
}

impl RoomSent {
    pub fn remember_lazy(&mut self, members: impl IntoIterator<Item = OwnedUserId>) {
        for m in members {
            if !self.lazy_members.contains(&m) {
                self.lazy_members.push(m);
            }
        }
        if self.lazy_members.len() > MAX_LAZY_MEMBERS {
            self.lazy_members.clear();
        }
    }
}

/// `pos` as given to clients: `{generation}.{seq}` names a stored state,
/// `{generation}.{seq}.{stream position}.{typing serial}` that state advanced.
pub fn render_pos(generation: &str, seq: i64, advance: Option<Advance>) -> String {
    match advance {
        None => format!("{generation}.{seq}"),
        Some(Advance { pos, typing }) => format!("{generation}.{seq}.{}.{typing}", pos.get()),
    }
}

/// A client's `pos`, checked: generation, seq and the advance, if any.
pub fn parse_pos(pos: &str) -> Option<(&str, i64, Option<Advance>)> {
    let mut parts = pos.split('.');
    let generation = parts.next()?;
    let seq = parts.next()?.parse().ok().filter(|s: &i64| *s > 0)?;
    let advance = match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => None,
        (Some(pos), Some(typing), None) => {
            Some(Advance { pos: StreamPos(pos.parse().ok().filter(|p: &i64| *p > 0)?), typing: typing.parse().ok()? })
        }
        _ => return None,
    };
    (!generation.is_empty() && generation.len() <= 32 && generation.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some((generation, seq, advance))
}

#[cfg(test)]
mod tests {
    use myelin_core::{Membership, StreamPos};
    use ruma::{room_id, user_id};

    use super::{Advance, ConnectionState, RoomSent, parse_pos, render_pos};
    use crate::sliding_sync::request::RoomConfig;

    #[test]
    fn positions_round_trip_and_malformed_ones_are_refused() {
        assert_eq!(parse_pos(&render_pos("abc123", 7, None)), Some(("abc123", 7, None)));
        let advance = Advance { pos: StreamPos(42), typing: 3 };
        assert_eq!(parse_pos(&render_pos("abc123", 7, Some(advance))), Some(("abc123", 7, Some(advance))));
        for bad in [
            "",
            "abc",
            "abc.",
            ".7",
            "abc.0",
            "abc.-1",
            "a-b.1",
            &format!("{}.1", "a".repeat(33)),
            "abc.1.5",
            "abc.1.5.",
            "abc.1.0.1",
            "abc.1.-5.1",
            "abc.1.5.-1",
            "abc.1.5.1.1",
            "abc.1.x.1",
            "abc.1.99999999999999999999.1",
        ] {
            assert_eq!(parse_pos(bad), None, "{bad:?}");
        }
    }

    fn sent(pos: i64, config: usize) -> RoomSent {
        RoomSent { pos: StreamPos(pos), membership: Membership::Join, config, lazy_members: vec![] }
    }

    #[test]
    fn an_advance_moves_the_live_rooms_only_and_never_backwards() {
        let mut state = ConnectionState { pos: Some(StreamPos(10)), typing: 1, ..ConnectionState::default() };
        state.rooms.insert(room_id!("!live:x").to_owned(), sent(10, 0));
        state.rooms.insert(room_id!("!owed:x").to_owned(), sent(4, 0));
        let to = Advance { pos: StreamPos(12), typing: 2 };
        let moved = state.advanced(to).expect("forward");
        assert_eq!(moved.pos, Some(StreamPos(12)));
        assert_eq!(moved.typing, 2);
        assert_eq!(moved.rooms[room_id!("!live:x")].pos, StreamPos(12));
        assert_eq!(moved.rooms[room_id!("!owed:x")].pos, StreamPos(4), "a room with updates owed stays owed");
        assert_eq!(state.advance_to(&moved), Some(to));
        assert_eq!(state.advanced(Advance { pos: StreamPos(9), typing: 2 }), None, "backwards");
        assert_eq!(ConnectionState::default().advanced(to), None, "nothing sent yet");

        // Anything else that changed makes the next state one to store.
        let mut lazy = moved.clone();
        lazy.rooms.get_mut(room_id!("!live:x")).expect("room").remember_lazy([user_id!("@bob:x").to_owned()]);
        assert_eq!(state.advance_to(&lazy), None, "a new lazy member");
        let mut sent_again = moved.clone();
        sent_again.rooms.insert(room_id!("!owed:x").to_owned(), sent(12, 0));
        assert_eq!(state.advance_to(&sent_again), None, "an owed room sent");
        let mut counted = moved.clone();
        counted.list_counts.insert("all".to_owned(), 3);
        assert_eq!(state.advance_to(&counted), None, "a list count");
        let mut asked = moved;
        asked.request = 99;
        assert_eq!(state.advance_to(&asked), None, "another request");
    }

    #[test]
    fn configs_are_shared_by_index_and_unused_ones_dropped() {
        let mut state = ConnectionState::default();
        let small = RoomConfig { timeline_limit: 1, ..RoomConfig::default() };
        let large = RoomConfig { timeline_limit: 20, ..RoomConfig::default() };
        assert_eq!(state.intern(&small), 0);
        assert_eq!(state.intern(&large), 1);
        assert_eq!(state.intern(&small), 0, "an equal config is not added twice");
        let sent = |config| RoomSent { pos: StreamPos(1), membership: Membership::Join, config, lazy_members: vec![] };
        state.rooms.insert(room_id!("!a:x").to_owned(), sent(1));
        state.compact_configs();
        assert_eq!(state.configs, vec![large.clone()]);
        assert_eq!(state.config_of(&state.rooms[room_id!("!a:x")]), large);
    }

    #[test]
    fn lazy_members_are_remembered_once_and_start_over_past_the_bound() {
        let mut sent = RoomSent { pos: StreamPos(1), membership: Membership::Join, config: 0, lazy_members: vec![] };
        let alice = user_id!("@alice:x").to_owned();
        sent.remember_lazy([alice.clone(), alice.clone()]);
        assert_eq!(sent.lazy_members, vec![alice]);
        sent.remember_lazy((0..super::MAX_LAZY_MEMBERS).map(|i| format!("@u{i}:x").try_into().expect("user id")));
        assert!(sent.lazy_members.is_empty(), "past the bound the set starts over");
    }

    #[test]
    fn stored_state_keeps_its_compact_shape() {
        let mut state = ConnectionState { pos: Some(StreamPos(9)), typing: 2, ..ConnectionState::default() };
        state.rooms.insert(
            room_id!("!a:x").to_owned(),
            RoomSent { pos: StreamPos(9), membership: Membership::Invite, config: 0, lazy_members: vec![] },
        );
        let json = serde_json::to_value(&state).expect("serialise");
        assert_eq!(json["r"]["!a:x"], serde_json::json!({ "p": 9, "m": "invite", "c": 0 }));
        let back: ConnectionState = serde_json::from_value(json).expect("deserialise");
        assert_eq!(back.rooms[room_id!("!a:x")].membership, Membership::Invite);
    }
}
