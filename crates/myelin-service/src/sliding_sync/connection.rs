//! Per-connection memory of sliding sync: what each room was last sent up to and with which
//! config, which lazy members it already has, the list counts. Stored as JSON in the
//! connection's row (`SlidingSyncRepo`), so every process of a cluster can serve the connection.
//!
//! A room's entry encodes the MSC's three states: absent = never sent; `pos` equal to the
//! connection's token = live; lower = previously sent, with updates since `pos` still owed.

use std::collections::BTreeMap;

use myelin_core::{
    Membership, StreamPos,
    types::{OwnedRoomId, OwnedUserId},
};
use serde::{Deserialize, Serialize};

use super::request::RoomConfig;

/// Lazy members remembered per room; past this the set starts over (a repeat is harmless).
const MAX_LAZY_MEMBERS: usize = 1_000;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
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

#[derive(Clone, Debug, Serialize, Deserialize)]
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

impl ConnectionState {
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

/// `pos` as given to clients: `{generation}.{seq}`.
pub fn render_pos(generation: &str, seq: i64) -> String {
    format!("{generation}.{seq}")
}

pub fn parse_pos(pos: &str) -> Option<(&str, i64)> {
    let (generation, seq) = pos.split_once('.')?;
    let seq = seq.parse().ok().filter(|s: &i64| *s > 0)?;
    (!generation.is_empty() && generation.len() <= 32 && generation.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some((generation, seq))
}

#[cfg(test)]
mod tests {
    use myelin_core::{Membership, StreamPos};
    use ruma::{room_id, user_id};

    use super::{ConnectionState, RoomSent, parse_pos, render_pos};
    use crate::sliding_sync::request::RoomConfig;

    #[test]
    fn positions_round_trip_and_malformed_ones_are_refused() {
        assert_eq!(parse_pos(&render_pos("abc123", 7)), Some(("abc123", 7)));
        for bad in ["", "abc", "abc.", ".7", "abc.0", "abc.-1", "a-b.1", &format!("{}.1", "a".repeat(33))] {
            assert_eq!(parse_pos(bad), None, "{bad:?}");
        }
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
