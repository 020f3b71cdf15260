//! One room of a sliding sync response: its timeline since it was last sent on this connection
//! (or the newest events when it is new), the state the config asks for, and the summary fields
//! (name, avatar, heroes, counts, `bump_stamp`) when they can have changed.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use myelin_core::{
    MatrixResult, Membership, StateMap, StreamPos,
    json::object,
    types::{EventId, OwnedEventId, OwnedRoomId, OwnedUserId, StateEventType, TimelineEventType, UserId},
};
use myelin_storage::{Change, Direction, StoredEvent, UserRoom};
use serde_json::{Value, json};

use super::{connection::RoomSent, request::RoomConfig, room_list::bump_stamp, summaries::RoomSummary};
use crate::{
    Services,
    accounts::Requester,
    pdu::{ClientFormat, Viewer},
    sync::pagination_token,
};

/// Everything one room's result depends on.
pub struct RoomInput<'a> {
    pub room: &'a UserRoom,
    pub config: &'a RoomConfig,
    /// What this connection sent of the room before, with the config it used.
    pub previous: Option<(&'a RoomSent, RoomConfig)>,
    /// The connection's position before this response (`None` on its first response).
    pub connection_pos: Option<StreamPos>,
    pub now: StreamPos,
    pub is_dm: bool,
    /// Counts, heroes, unread counts and current state group (joined and left rooms).
    pub summary: Option<&'a RoomSummary>,
    /// Reads done for the whole window at once.
    pub prefetched: &'a Prefetched,
}

/// Timelines and events read for all rooms of a response in one go, so that each room does not
/// need its own reads.
#[derive(Default)]
pub struct Prefetched {
    /// Room → its timeline read with the bounds [`timeline_bounds`] gives, newest first.
    pub timelines: HashMap<OwnedRoomId, Vec<StoredEvent>>,
    pub events: HashMap<OwnedEventId, StoredEvent>,
}

/// Where a room's timeline and state deltas start and end in this response.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// New on the connection (or newly joined): everything is sent afresh.
    pub initial: bool,
    /// Known, but asked for with a larger `timeline_limit` than it was sent with: its newest
    /// events are sent again (`unstable_expanded_timeline`), state still as a delta.
    pub expanded: bool,
    /// The timeline starts after this position (`None`: the newest events).
    pub timeline_since: Option<StreamPos>,
    /// State is sent as the change since this position (`None`: all of it).
    pub state_since: Option<StreamPos>,
    /// The end: now, or the leave for a room the user is no longer in.
    pub upper: StreamPos,
}

pub fn timeline_bounds(
    room: &UserRoom,
    previous: Option<(&RoomSent, &RoomConfig)>,
    config: &RoomConfig,
    now: StreamPos,
) -> Bounds {
    let joined = room.membership == Membership::Join;
    let initial = previous.is_none_or(|(p, _)| joined && p.membership != Membership::Join);
    let upper = if joined { now } else { room.membership_pos.min(now) };
    let state_since = if initial { None } else { previous.map(|(p, _)| p.pos) };
    let expanded = !initial && previous.is_some_and(|(_, c)| config.timeline_limit > c.timeline_limit);
    let timeline_since = if expanded { None } else { state_since };
    Bounds { initial, expanded, timeline_since, state_since, upper }
}

/// The state event ids a room new on the connection sends: what `config` wants of `state`,
/// `$LAZY` standing for the timeline's `senders`.
pub fn initial_state_ids(
    config: &RoomConfig,
    user_id: &UserId,
    state: &StateMap,
    senders: &HashSet<OwnedUserId>,
) -> Vec<OwnedEventId> {
    let lazy = |k: &str| <&UserId>::try_from(k).is_ok_and(|k| senders.contains(k));
    state.iter().filter(|((t, k), _)| config.wants(user_id, &lazy, t, k)).map(|(_, id)| id.clone()).collect()
}

/// A room's entry (`None` when there is nothing new to say) and what the connection remembers.
pub struct RoomOutput {
    pub entry: Option<Value>,
    pub sent: RoomSent,
    /// Event ids of the timeline sent (the receipts extension looks at them for new rooms).
    pub timeline_ids: Vec<OwnedEventId>,
    pub initial: bool,
    /// The timeline sent stopped short of what the client had before (a gap): a later, larger
    /// `timeline_limit` has older events to send.
    pub limited: bool,
}

fn content_of(events: &[StoredEvent], event_type: &TimelineEventType) -> Option<Value> {
    let ev = events.iter().find(|e| e.event_type == *event_type && e.state_key.as_deref() == Some(""))?;
    let v: Value = serde_json::from_str(&ev.json).ok()?;
    v.get("content").cloned()
}

impl Services {
    /// The room's state at `upper` (the end of its timeline): the current state group, from the
    /// cache, for a joined room; the state at the leave for a room the user is no longer in.
    pub(crate) async fn window_state(
        &self,
        room: &UserRoom,
        summary: Option<&RoomSummary>,
        upper: StreamPos,
    ) -> MatrixResult<Arc<StateMap>> {
        match summary.and_then(|s| s.current_state_group).filter(|_| room.membership == Membership::Join) {
            Some(group) => self.state_group(group).await,
            None => self.state_at(&room.room_id, upper).await,
        }
    }

    pub(crate) async fn sliding_room(&self, r: &Requester, input: RoomInput<'_>) -> MatrixResult<RoomOutput> {
        let RoomInput { room, config, previous, connection_pos, now, is_dm, summary, prefetched } = input;
        let previous = previous.as_ref().map(|(sent, config)| (*sent, config));
        let user_id: &UserId = &r.user_id;
        let membership = room.membership;
        let Bounds { initial, expanded, timeline_since, state_since: since, upper } =
            timeline_bounds(room, previous, config, now);
        let mut sent = RoomSent {
            pos: now,
            membership,
            config: 0,
            lazy_members: if initial {
                Vec::new()
            } else {
                previous.map(|(p, _)| p.lazy_members.clone()).unwrap_or_default()
            },
        };
        let nothing =
            |sent: RoomSent| RoomOutput { entry: None, sent, timeline_ids: Vec::new(), initial: false, limited: false };

        if matches!(membership, Membership::Invite | Membership::Knock) {
            if previous.is_some_and(|(p, _)| p.membership == membership) {
                return Ok(nothing(sent));
            }
            let stripped = self.stripped_state(&room.room_id, &room.membership_event_id).await?;
            let name = stripped
                .iter()
                .find(|e| e["type"] == "m.room.name")
                .and_then(|e| e["content"]["name"].as_str())
                .map(str::to_owned);
            let mut entry = object([
                ("initial", true.into()),
                ("invite_state", stripped.into()),
                ("bump_stamp", bump_stamp(room).get().into()),
                ("timeline", Value::Array(Vec::new())),
                ("required_state", Value::Array(Vec::new())),
            ]);
            if let Some(name) = name {
                entry["name"] = name.into();
            }
            if is_dm {
                entry["is_dm"] = true.into();
            }
            return Ok(RoomOutput {
                entry: Some(entry),
                sent,
                timeline_ids: Vec::new(),
                initial: true,
                limited: false,
            });
        }

        // Joined, or left/banned: nothing after the membership change is visible (`upper`).
        let added = match previous {
            Some((_, previous_config)) if !initial => config.added_since(previous_config),
            _ => Vec::new(),
        };
        let membership_changed = previous.is_some_and(|(p, _)| p.membership != membership);
        if let Some(since) = since
            && (room.last_event_pos <= since || since >= upper)
            && added.is_empty()
            && !membership_changed
            && !expanded
        {
            return Ok(nothing(sent));
        }

        // Timeline: the newest `timeline_limit` events after `since`, oldest first.
        let limit = config.timeline_limit;
        let mut events = match prefetched.timelines.get(&room.room_id) {
            Some(events) => events.clone(),
            None if limit > 0 => {
                self.store.room_events(&room.room_id, upper, timeline_since, Direction::Backward, limit + 1).await?
            }
            None => Vec::new(),
        };
        let limited = events.len() > limit;
        events.truncate(limit);
        events.reverse();
        // Events after the user joined are all visible (but for ignored senders); anything older
        // goes through the history visibility rules.
        let timeline = if membership == Membership::Join && events.iter().all(|e| e.stream_pos > room.membership_pos) {
            let ignored = self.ignored_users(user_id).await?;
            events.into_iter().filter(|e| e.state_key.is_some() || !ignored.contains(&e.sender)).collect()
        } else {
            self.filter_visible(user_id, events).await?
        };

        // State: all wanted state for a new room; what changed since, plus what a grown config
        // or a new lazy member needs, for a known one.
        let senders: HashSet<OwnedUserId> = timeline.iter().map(|e| e.sender.clone()).collect();
        let sender_strs: HashSet<&str> = senders.iter().map(|s| s.as_str()).collect();
        let known_lazy: HashSet<&str> = sent.lazy_members.iter().map(|m| m.as_str()).collect();
        let state = self.window_state(room, summary, upper).await?;
        let mut ids: Vec<OwnedEventId> = Vec::new();
        let mut touched: HashSet<StateEventType> = HashSet::new();
        match since {
            None => {
                ids = initial_state_ids(config, user_id, &state, &senders);
            }
            Some(since) => {
                // No state event since `since` (it would have marked every kind): the state
                // then is the state now, and only lazy members can be news.
                let old = if since <= upper && !self.store.may_have_changed(Change::Membership, since) {
                    state.clone()
                } else {
                    self.state_at(&room.room_id, since).await?
                };
                let lazy_known = |k: &str| known_lazy.contains(k) || sender_strs.contains(k);
                let lazy_new = |k: &str| sender_strs.contains(k) && !known_lazy.contains(k);
                let grown = RoomConfig { required_state: added.clone(), timeline_limit: 0 };
                if Arc::ptr_eq(&old, &state) && added.is_empty() {
                    // The same state and the same config (a message in a busy room): only the
                    // members of new senders can be news, found without walking the whole state.
                    if config.wants_lazy_members() {
                        let new_senders = sender_strs.iter().filter(|k| lazy_new(k));
                        ids.extend(
                            new_senders
                                .filter_map(|k| state.get(&(StateEventType::RoomMember, (*k).to_owned())).cloned()),
                        );
                    }
                } else {
                    for (key, id) in state.iter() {
                        let (t, k) = key;
                        let changed = old.get(key) != Some(id);
                        if changed {
                            touched.insert(t.clone());
                        }
                        let want = (changed && config.wants(user_id, &lazy_known, t, k))
                            || grown.wants(user_id, &lazy_known, t, k)
                            || (*t == StateEventType::RoomMember && config.wants_lazy_members() && lazy_new(k));
                        if want {
                            ids.push(id.clone());
                        }
                    }
                }
            }
        }
        if config.wants_lazy_members() {
            sent.remember_lazy(senders.iter().cloned());
        }
        ids.sort();
        ids.dedup();
        let missing: Vec<OwnedEventId> =
            ids.iter().filter(|id| !prefetched.events.contains_key::<EventId>(id)).cloned().collect();
        let mut state_events: Vec<StoredEvent> =
            ids.iter().filter_map(|id| prefetched.events.get(id).cloned()).collect();
        state_events.extend(self.events(&missing).await?);
        state_events.sort_by_key(|e| e.stream_pos);

        if since.is_some() && timeline.is_empty() && state_events.is_empty() && !membership_changed && !expanded {
            return Ok(nothing(sent));
        }

        let viewer = Some(Viewer { user_id, device_id: &r.device_id });
        let mut entry = object([
            ("timeline", self.client_events(&timeline, ClientFormat::Sync, viewer).await?.into()),
            ("required_state", self.client_events(&state_events, ClientFormat::Sync, None).await?.into()),
            ("limited", limited.into()),
            ("bump_stamp", bump_stamp(room).get().into()),
        ]);
        if initial {
            entry["initial"] = true.into();
        }
        if expanded {
            entry["unstable_expanded_timeline"] = true.into();
        }
        if is_dm {
            entry["is_dm"] = true.into();
        }
        if let Some(first) = timeline.first() {
            entry["prev_batch"] = pagination_token(first.stream_pos.prev()).into();
        }
        if let Some(pos) = connection_pos {
            entry["num_live"] = timeline.iter().filter(|e| e.stream_pos > pos).count().into();
        } else {
            entry["num_live"] = 0.into();
        }

        // Name and avatar when new or changed (never null); heroes and counts when the
        // membership can have changed.
        let name_or_avatar = since.is_none()
            || touched.contains(&StateEventType::RoomName)
            || touched.contains(&StateEventType::RoomAvatar);
        let mut has_name = state.contains_key(&(StateEventType::RoomName, String::new()));
        if name_or_avatar {
            // Usually already among the required state just read.
            let wanted: Vec<OwnedEventId> = [StateEventType::RoomName, StateEventType::RoomAvatar]
                .into_iter()
                .filter_map(|t| state.get(&(t, String::new())).cloned())
                .filter(|id| !state_events.iter().any(|e| &e.event_id == id))
                .collect();
            let mut summary_events = if wanted.is_empty() { Vec::new() } else { self.events(&wanted).await? };
            summary_events.extend(
                state_events
                    .iter()
                    .filter(|e| matches!(e.event_type, TimelineEventType::RoomName | TimelineEventType::RoomAvatar))
                    .cloned(),
            );
            let name = content_of(&summary_events, &TimelineEventType::RoomName)
                .and_then(|c| c["name"].as_str().map(str::to_owned));
            has_name = name.as_deref().is_some_and(|n| !n.is_empty());
            if let Some(name) = name.filter(|n| !n.is_empty()) {
                entry["name"] = name.into();
            }
            if let Some(url) = content_of(&summary_events, &TimelineEventType::RoomAvatar)
                .and_then(|c| c["url"].as_str().map(str::to_owned))
            {
                entry["avatar"] = url.into();
            }
        }
        if let Some(summary) = summary
            && (since.is_none() || touched.contains(&StateEventType::RoomMember))
        {
            entry["joined_count"] = summary.joined.into();
            entry["invited_count"] = summary.invited.into();
            if !has_name {
                let heroes: Vec<Value> = summary
                    .heroes
                    .iter()
                    .map(|m| {
                        let mut hero = json!({ "user_id": m.user_id });
                        if let Some(name) = &m.displayname {
                            hero["displayname"] = name.clone().into();
                        }
                        if let Some(url) = &m.avatar_url {
                            hero["avatar_url"] = url.clone().into();
                        }
                        hero
                    })
                    .collect();
                entry["heroes"] = heroes.into();
            }
        }
        if membership == Membership::Join
            && let Some(summary) = summary
        {
            entry["notification_count"] = summary.notifications.into();
            entry["highlight_count"] = summary.highlights.into();
        }
        let timeline_ids = timeline.iter().map(|e| e.event_id.clone()).collect();
        Ok(RoomOutput { entry: Some(entry), sent, timeline_ids, initial, limited })
    }
}
