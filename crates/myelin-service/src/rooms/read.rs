//! Reads of room history and state, filtered by history visibility.

use std::collections::{HashMap, HashSet};

use myelin_core::{MatrixError, MatrixResult};
use myelin_storage::{Direction, StoredEvent, StreamPos};
use serde_json::Value;

use super::version_rules;
use crate::{
    Services,
    filter::RoomEventFilter,
    pdu::{self, ClientFormat},
};

/// How far into a room's history a user may read.
#[derive(Clone, Copy, Debug)]
pub enum Visibility {
    /// Joined now: everything the history visibility rules allow.
    Member,
    /// Left or banned: up to the position of their membership change.
    Until(StreamPos),
    /// Not a member, but the room is world readable.
    WorldReadable,
}

pub struct MessagesPage {
    pub chunk: Vec<Value>,
    pub start: StreamPos,
    pub end: Option<StreamPos>,
    pub state: Vec<Value>,
}

impl Services {
    /// May `user_id` read the room, and how far?
    pub async fn room_visibility(&self, user_id: &str, room_id: &str) -> MatrixResult<Visibility> {
        if self.store.get_room(room_id).await?.is_none() {
            return Err(MatrixError::forbidden("You are not a member of this room"));
        }
        match self.store.membership(room_id, user_id).await? {
            Some(m) if m.membership == "join" => return Ok(Visibility::Member),
            Some(m) if matches!(m.membership.as_str(), "leave" | "ban") => {
                if let Some(ev) = self.event(&m.event_id).await? {
                    return Ok(Visibility::Until(ev.stream_pos));
                }
            }
            _ => {}
        }
        let hv = self.store.current_state_event(room_id, "m.room.history_visibility", "").await?;
        if hv.is_some_and(|ev| Self::event_content(&ev)["history_visibility"] == "world_readable") {
            return Ok(Visibility::WorldReadable);
        }
        Err(MatrixError::forbidden("You are not a member of this room"))
    }

    /// Drops the events `user_id` may not see under each event's history visibility.
    pub async fn filter_visible(&self, user_id: &str, events: Vec<StoredEvent>) -> MatrixResult<Vec<StoredEvent>> {
        let mut verdicts: HashMap<i64, bool> = HashMap::new();
        // Per room: since which position the user has been joined without interruption, if joined now.
        let mut joined_since: HashMap<String, Option<StreamPos>> = HashMap::new();
        let ignored = self.ignored_users(user_id).await?;
        let mut out = Vec::with_capacity(events.len());
        for ev in events {
            if ev.state_key.is_none() && ignored.contains(&ev.sender) {
                continue;
            }
            // Users always see their own membership changes (their join, invite, kick, ban).
            let own_membership = ev.event_type == "m.room.member" && ev.state_key.as_deref() == Some(user_id);
            if !joined_since.contains_key(&ev.room_id) {
                let member = self.store.membership(&ev.room_id, user_id).await?;
                joined_since
                    .insert(ev.room_id.clone(), member.filter(|m| m.membership == "join").map(|m| m.stream_pos));
            }
            let joined_now = joined_since.get(&ev.room_id).copied().flatten();
            // Joined now and since before this event: joined when it was sent, so visible
            // whatever the history visibility.
            if joined_now.is_some_and(|since| since < ev.stream_pos) {
                out.push(ev);
                continue;
            }
            // Visibility is judged on the state in force when the event was sent.
            let Some(group) = ev.state_before.or(ev.state_after).filter(|_| !own_membership) else {
                out.push(ev);
                continue;
            };
            let visible = match verdicts.get(&group) {
                Some(v) => *v,
                None => {
                    let state = self.state_cache.group(self.store.as_ref(), group).await?;
                    let history = match state.get(&("m.room.history_visibility".to_owned(), String::new())) {
                        Some(id) => self.event(id).await?.map(|e| {
                            Self::event_content(&e)["history_visibility"].as_str().unwrap_or("shared").to_owned()
                        }),
                        None => None,
                    }
                    .unwrap_or_else(|| "shared".to_owned());
                    let membership = match state.get(&("m.room.member".to_owned(), user_id.to_owned())) {
                        Some(id) => self
                            .store
                            .get_event(id)
                            .await?
                            .and_then(|e| Self::event_content(&e)["membership"].as_str().map(str::to_owned)),
                        None => None,
                    };
                    let joined_then = membership.as_deref() == Some("join");
                    let verdict = match history.as_str() {
                        "world_readable" => true,
                        "joined" => joined_then,
                        "invited" => joined_then || membership.as_deref() == Some("invite"),
                        _ => joined_then || joined_now.is_some(),
                    };
                    verdicts.insert(group, verdict);
                    verdict
                }
            };
            if visible {
                out.push(ev);
            }
        }
        Ok(out)
    }

    /// Serialises events for a client, fetching redaction events for redacted ones.
    pub async fn client_events(
        &self,
        events: &[StoredEvent],
        format: ClientFormat,
        viewer: Option<(&str, &str)>,
    ) -> MatrixResult<Vec<Value>> {
        let mut rules_by_room: HashMap<String, Option<ruma::room_version_rules::RoomVersionRules>> = HashMap::new();
        let mut out = Vec::with_capacity(events.len());
        for ev in events {
            let redaction = match &ev.redacted_by {
                Some(id) => self
                    .store
                    .get_event(id)
                    .await?
                    .map(|r| pdu::client_event(&r, None, ClientFormat::Client, None, None)),
                None => None,
            };
            let rules = if redaction.is_some() {
                if !rules_by_room.contains_key(&ev.room_id) {
                    let rules = self
                        .store
                        .get_room(&ev.room_id)
                        .await?
                        .and_then(|r| version_rules(&r.room_version).ok().map(|(_, r)| r));
                    rules_by_room.insert(ev.room_id.clone(), rules);
                }
                rules_by_room.get(&ev.room_id).and_then(Option::as_ref)
            } else {
                None
            };
            out.push(pdu::client_event(ev, rules, format, viewer, redaction));
        }
        self.add_prev_content(events, &mut out).await?;
        Ok(out)
    }

    /// `unsigned.prev_content` / `replaces_state` for state events that replaced an earlier one.
    async fn add_prev_content(&self, events: &[StoredEvent], out: &mut [Value]) -> MatrixResult<()> {
        let mut replaced = Vec::new();
        for (index, ev) in events.iter().enumerate() {
            let (Some(key), Some(group)) = (&ev.state_key, ev.state_before) else { continue };
            let state = self.state_cache.group(self.store.as_ref(), group).await?;
            if let Some(prev) = state.get(&(ev.event_type.clone(), key.clone()))
                && *prev != ev.event_id
            {
                replaced.push((index, prev.clone()));
            }
        }
        if replaced.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = replaced.iter().map(|(_, id)| id.clone()).collect();
        let previous: HashMap<String, StoredEvent> =
            self.events(&ids).await?.into_iter().map(|e| (e.event_id.clone(), e)).collect();
        for (index, prev_id) in replaced {
            if let (Some(prev), Some(json)) = (previous.get(&prev_id), out.get_mut(index)) {
                json["unsigned"]["replaces_state"] = prev_id.clone().into();
                json["unsigned"]["prev_sender"] = prev.sender.clone().into();
                if prev.redacted_by.is_none() {
                    json["unsigned"]["prev_content"] = Self::event_content(prev);
                }
            }
        }
        Ok(())
    }

    /// `/messages`.
    #[allow(clippy::too_many_arguments)]
    pub async fn messages(
        &self,
        user_id: &str,
        device_id: &str,
        room_id: &str,
        from: Option<StreamPos>,
        to: Option<StreamPos>,
        dir: Direction,
        limit: usize,
        filter: &RoomEventFilter,
    ) -> MatrixResult<MessagesPage> {
        let visibility = self.room_visibility(user_id, room_id).await?;
        // The database's head, not only what this process has heard of: a client that just sent
        // through another process must find its event.
        let head = self.store.refresh_stream_head().await?;
        let cap = match visibility {
            Visibility::Until(pos) => pos,
            _ => head,
        };
        let limit = limit.clamp(1, 1000);
        let start = match dir {
            Direction::Backward => from.unwrap_or(cap).min(cap),
            Direction::Forward => from.unwrap_or(0),
        };
        let upper = match dir {
            Direction::Forward => Some(to.map_or(cap, |t| t.min(cap))),
            Direction::Backward => to,
        };
        let raw = self.store.room_events(room_id, start, upper, dir, limit).await?;
        let exhausted = raw.len() < limit;
        let end = match (raw.last(), dir) {
            (_, _) if exhausted => None,
            (Some(last), Direction::Backward) => Some(last.stream_pos - 1),
            (Some(last), Direction::Forward) => Some(last.stream_pos),
            (None, _) => None,
        };
        let filtered: Vec<StoredEvent> = raw.into_iter().filter(|e| filter.matches(e)).collect();
        let visible = self.filter_visible(user_id, filtered).await?;
        let mut state = Vec::new();
        if filter.lazy_load_members && !visible.is_empty() {
            let senders: HashSet<&str> = visible.iter().map(|e| e.sender.as_str()).collect();
            let mut members = Vec::new();
            for sender in senders {
                if let Some(ev) = self.store.current_state_event(room_id, "m.room.member", sender).await? {
                    members.push(ev);
                }
            }
            state = self.client_events(&members, ClientFormat::Client, None).await?;
        }
        let chunk = self.client_events(&visible, ClientFormat::Client, Some((user_id, device_id))).await?;
        Ok(MessagesPage { chunk, start, end, state })
    }

    /// `/event/{eventId}`: one event the user may see.
    pub async fn visible_event(
        &self,
        user_id: &str,
        device_id: &str,
        room_id: &str,
        event_id: &str,
    ) -> MatrixResult<(StoredEvent, Value)> {
        let visibility = self.room_visibility(user_id, room_id).await?;
        let ev = self
            .store
            .get_event(event_id)
            .await?
            .filter(|e| e.room_id == room_id)
            .ok_or_else(|| MatrixError::not_found("Event not found"))?;
        if let Visibility::Until(pos) = visibility
            && ev.stream_pos > pos
        {
            return Err(MatrixError::not_found("Event not found"));
        }
        let mut visible = self.filter_visible(user_id, vec![ev]).await?;
        let ev = visible.pop().ok_or_else(|| MatrixError::not_found("Event not found"))?;
        let json =
            self.client_events(std::slice::from_ref(&ev), ClientFormat::Client, Some((user_id, device_id))).await?;
        let json = json.into_iter().next().unwrap_or(Value::Null);
        Ok((ev, json))
    }

    /// Current room state (or the state when the user left) as client events.
    pub async fn room_state(&self, user_id: &str, room_id: &str) -> MatrixResult<Vec<StoredEvent>> {
        let ids: Vec<String> = match self.room_visibility(user_id, room_id).await? {
            Visibility::Until(pos) => match self.store.state_group_at(room_id, pos).await? {
                Some(group) => self.state_cache.group(self.store.as_ref(), group).await?.values().cloned().collect(),
                None => Vec::new(),
            },
            _ => self.store.current_state_ids(room_id).await?.into_iter().map(|(_, _, e)| e).collect(),
        };
        self.events(&ids).await
    }
}
