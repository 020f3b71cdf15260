//! The extensions of a sliding sync response: `to_device`, `e2ee`, `account_data`, `receipts`,
//! `typing`, sticky events (MSC4354). Each says whether it carries news, which decides whether a
//! long-poll returns.

use std::collections::{BTreeMap, HashMap, HashSet};

use myelin_core::{
    MatrixResult, StreamPos,
    json::object,
    types::{EventId, OwnedEventId, OwnedRoomId},
};
use myelin_storage::{Change, UserRoom};
use serde_json::{Map, Value, json};

use super::request::{ExtensionScope, Extensions};
use crate::{Services, accounts::Requester, sync::receipt_content};

/// A room of the response (joined, or left/banned and shown up to the leave): the lists whose
/// ranges hold it, and whether it is subscribed.
pub struct WindowRoom {
    pub room_id: OwnedRoomId,
    pub lists: Vec<String>,
    pub subscribed: bool,
    pub joined: bool,
}

/// The window's rooms `scope` covers.
fn scoped<'a>(window: &'a [WindowRoom], scope: &'a ExtensionScope) -> impl Iterator<Item = &'a WindowRoom> {
    window.iter().filter(|w| scope.covers(&w.room_id, &w.lists, w.subscribed))
}

pub struct ExtensionInput<'a> {
    pub requested: &'a Extensions,
    /// The connection's position and typing serial before this response.
    pub since: Option<(StreamPos, u64)>,
    pub now: StreamPos,
    pub rooms: &'a [UserRoom],
    /// Rooms with a timeline in the lists' ranges or subscribed (not invites).
    pub window: &'a [WindowRoom],
    /// Rooms sent as new in this response, with the timeline event ids sent.
    pub new_rooms: &'a HashMap<OwnedRoomId, Vec<OwnedEventId>>,
    /// Every room with an entry in this response, with the timeline event ids sent.
    pub timelines: &'a HashMap<OwnedRoomId, Vec<OwnedEventId>>,
    /// What the connection had sent of each room before this response (a room back in the
    /// window after a while out of it was sent up to its own position, not the connection's).
    pub previously_sent: &'a BTreeMap<OwnedRoomId, super::connection::RoomSent>,
}

impl Services {
    /// (the `extensions` object, whether it carries news).
    pub(crate) async fn sliding_extensions(
        &self,
        r: &Requester,
        input: ExtensionInput<'_>,
    ) -> MatrixResult<(Value, bool)> {
        let ExtensionInput { requested, since, now, rooms, window, new_rooms, timelines, previously_sent } = input;
        let user_id = &r.user_id;
        let device_id = &r.device_id;
        let mut out = Map::new();
        let mut news = false;

        if let Some(to_device) = &requested.to_device {
            let (events, next) =
                self.to_device_for_sync(user_id, device_id, to_device.since, now, to_device.limit).await?;
            news |= !events.is_empty();
            out.insert(
                "to_device".into(),
                object([("next_batch", next.to_string().into()), ("events", events.into())]),
            );
        }

        if requested.e2ee {
            let (one_time_counts, unused_fallback) = self.key_counts(user_id, device_id).await?;
            let mut e2ee = json!({
                "device_one_time_keys_count": one_time_counts,
                "device_unused_fallback_key_types": unused_fallback,
            });
            if let Some((pos, _)) = since {
                let delta = self.device_list_delta(user_id, rooms, pos, now).await?;
                news |= !delta.is_empty();
                e2ee["device_lists"] = json!({ "changed": delta.changed, "left": delta.left });
            }
            out.insert("e2ee".into(), e2ee);
        }

        if requested.account_data {
            // New rooms get all their room account data (tags!), known rooms what changed.
            let from = match since {
                Some((pos, _)) if new_rooms.is_empty() => pos,
                _ => StreamPos::ZERO,
            };
            let since_pos = since.map(|s| s.0);
            let mut global = Vec::new();
            let mut by_room: BTreeMap<OwnedRoomId, Vec<Value>> = BTreeMap::new();
            for data in self.store.account_data_since(user_id, from, now).await? {
                let fresh = since_pos.is_none_or(|s| data.stream_pos > s);
                let content = serde_json::from_str::<Value>(&data.content).unwrap_or(Value::Null);
                let event = object([("type", data.data_type.into()), ("content", content)]);
                match data.room_id {
                    None if fresh => global.push(event),
                    None => {}
                    Some(room_id) if fresh || new_rooms.contains_key(&room_id) => {
                        by_room.entry(room_id).or_default().push(event);
                    }
                    Some(_) => {}
                }
            }
            let push_rules_type = crate::push::push_rules_type();
            if since.is_none() && !global.iter().any(|e| e["type"] == push_rules_type.as_str()) {
                let rules = self.push_ruleset(user_id).await?;
                global.push(json!({ "type": push_rules_type, "content": { "global": *rules } }));
            }
            news |= !global.is_empty() || !by_room.is_empty();
            out.insert(
                "account_data".into(),
                object([
                    ("global", global.into()),
                    (
                        "rooms",
                        Value::Object(by_room.into_iter().map(|(room, events)| (room.into(), events.into())).collect()),
                    ),
                ]),
            );
        }

        if let Some(scope) = &requested.receipts {
            let covered: Vec<&WindowRoom> = scoped(window, scope).collect();
            let mut receipts = Map::new();
            // Rooms new on the connection: receipts on the events sent, and the user's own.
            let new_ids: Vec<OwnedRoomId> =
                covered.iter().filter(|w| new_rooms.contains_key(&w.room_id)).map(|w| w.room_id.clone()).collect();
            if !new_ids.is_empty() {
                let all = self.store.receipts_since(&new_ids, StreamPos::ZERO, now).await?;
                for room_id in &new_ids {
                    let Some(timeline) = new_rooms.get(room_id) else { continue };
                    let timeline: HashSet<&EventId> = timeline.iter().map(|id| id.as_ref()).collect();
                    let content = receipt_content(
                        all.iter().filter(|r| {
                            &r.room_id == room_id
                                && (timeline.contains::<EventId>(&r.event_id) || &r.user_id == user_id)
                        }),
                        user_id,
                    );
                    if !content.is_empty() {
                        receipts.insert(room_id.to_string(), json!({ "type": "m.receipt", "content": content }));
                    }
                }
            }
            if let Some((pos, _)) = since {
                // Known rooms: what changed since, in the rooms the user is still in.
                let known: Vec<OwnedRoomId> = covered
                    .iter()
                    .filter(|w| w.joined && !new_rooms.contains_key(&w.room_id))
                    .map(|w| w.room_id.clone())
                    .collect();
                let changed = self.store.receipts_since(&known, pos, now).await?;
                for room_id in &known {
                    let content = receipt_content(changed.iter().filter(|r| &r.room_id == room_id), user_id);
                    if !content.is_empty() {
                        receipts.insert(room_id.to_string(), json!({ "type": "m.receipt", "content": content }));
                    }
                }
            }
            news |= !receipts.is_empty();
            out.insert("receipts".into(), object([("rooms", receipts.into())]));
        }

        if let Some(scope) = &requested.typing {
            let mut typing = Map::new();
            for room_id in scoped(window, scope).filter(|w| w.joined).map(|w| &w.room_id) {
                let from = if new_rooms.contains_key(room_id) { 0 } else { since.map_or(0, |s| s.1) };
                if let Some(users) = self.typing.typing_since(room_id, from) {
                    typing.insert(room_id.to_string(), json!({ "type": "m.typing", "content": { "user_ids": users } }));
                }
            }
            news |= !typing.is_empty();
            out.insert("typing".into(), object([("rooms", typing.into())]));
        }

        if let Some(limit) = requested.sticky_events {
            // The response's joined rooms: new ones get every unexpired sticky event, known ones
            // those written since; none that the room's timeline in this response carries.
            let since_of = |room_id: &OwnedRoomId| match previously_sent.get(room_id) {
                _ if new_rooms.contains_key(room_id) => None,
                Some(sent) => Some(sent.pos),
                None => since.map(|s| s.0),
            };
            // Known rooms only ask when a sticky event was written since they were sent.
            let joined: Vec<OwnedRoomId> = window
                .iter()
                .filter(|w| w.joined)
                .filter(|w| since_of(&w.room_id).is_none_or(|pos| self.store.may_have_changed(Change::Sticky, pos)))
                .map(|w| w.room_id.clone())
                .collect();
            let mut by_room = self.sticky_events_by_room(&joined, now).await?;
            let viewer = Some(crate::pdu::Viewer { user_id, device_id });
            let mut sticky = Map::new();
            for room_id in &joined {
                let Some(events) = by_room.remove(room_id) else { continue };
                let since_pos = since_of(room_id);
                let sent: HashSet<&EventId> =
                    timelines.get(room_id).map(|ids| ids.iter().map(|id| id.as_ref()).collect()).unwrap_or_default();
                let mut section = self.sticky_section(&events, since_pos, &sent, viewer).await?;
                let excess = section.len().saturating_sub(limit);
                section.drain(..excess);
                if !section.is_empty() {
                    sticky.insert(room_id.to_string(), json!({ "events": section }));
                }
            }
            news |= !sticky.is_empty();
            out.insert(
                super::request::STICKY_EXTENSION.into(),
                object([("next_batch", now.to_string().into()), ("rooms", sticky.into())]),
            );
        }
        Ok((Value::Object(out), news))
    }
}
