//! Reads of room history and state, filtered by history visibility. Every read that returns
//! events — `/messages`, `/context`, `/event`, relations, threads — passes them through
//! [`Services::filter_visible`], so one rule decides what a user may see.

use std::collections::{HashMap, HashSet};

use myelin_core::{
    MatrixError, MatrixResult, Membership, StreamPos,
    types::{EventId, OwnedEventId, OwnedRoomId, RoomId, StateEventType, TimelineEventType, UserId, state_event_type},
};
use myelin_storage::{Direction, StoredEvent};
use ruma::events::relation::RelationType;
use serde_json::{Map, Value, json};

use super::version_rules;
use crate::{
    Services,
    accounts::Requester,
    filter::RoomEventFilter,
    pdu::{self, ClientFormat, Viewer},
};

/// Most events one page of `/messages`, relations or threads holds.
const MAX_PAGE: usize = 1000;
/// Most replies read to summarise a thread.
const MAX_THREAD_REPLIES: usize = 1000;

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

/// `/messages`: where to start, which way, how many, which events.
#[derive(Debug, Default)]
pub struct MessagesRequest {
    pub from: Option<StreamPos>,
    pub to: Option<StreamPos>,
    pub backward: bool,
    pub limit: usize,
    pub filter: RoomEventFilter,
}

#[derive(Debug)]
pub struct MessagesPage {
    pub chunk: Vec<Value>,
    pub start: StreamPos,
    pub end: Option<StreamPos>,
    pub state: Vec<Value>,
}

/// `/relations/{eventId}[/{relType}[/{eventType}]]`.
#[derive(Debug, Default)]
pub struct RelationsRequest {
    pub rel_type: Option<RelationType>,
    pub event_type: Option<TimelineEventType>,
    pub from: Option<StreamPos>,
    pub limit: usize,
    pub forward: bool,
}

#[derive(Debug)]
pub struct RelationsPage {
    pub chunk: Vec<Value>,
    pub next: Option<StreamPos>,
}

#[derive(Debug)]
pub struct ThreadsPage {
    pub chunk: Vec<Value>,
    pub next: Option<StreamPos>,
}

fn history_visibility(content: &Value) -> &str {
    content["history_visibility"].as_str().unwrap_or("shared")
}

impl Services {
    /// May `user_id` read the room, and how far?
    pub async fn room_visibility(&self, user_id: &UserId, room_id: &RoomId) -> MatrixResult<Visibility> {
        if self.store.get_room(room_id).await?.is_none() {
            return Err(MatrixError::forbidden("You are not a member of this room"));
        }
        match self.store.membership(room_id, user_id).await? {
            Some(m) if m.membership == Membership::Join => return Ok(Visibility::Member),
            Some(m) if m.membership.is_gone() => return Ok(Visibility::Until(m.stream_pos)),
            _ => {}
        }
        let hv = self.store.current_state_event(room_id, &StateEventType::RoomHistoryVisibility, "").await?;
        if hv.is_some_and(|ev| history_visibility(&Self::event_content(&ev)) == "world_readable") {
            return Ok(Visibility::WorldReadable);
        }
        Err(MatrixError::forbidden("You are not a member of this room"))
    }

    /// Drops the events `user_id` may not see under each event's history visibility (and the
    /// messages of users they ignore).
    pub async fn filter_visible(&self, user_id: &UserId, events: Vec<StoredEvent>) -> MatrixResult<Vec<StoredEvent>> {
        self.filter_visible_knowing(user_id, events, None).await
    }

    /// As [`filter_visible`](Self::filter_visible), for a caller that knows the user's membership
    /// in the events' room (`known`: the room, and since when the user has been joined if joined
    /// now: a sync's room list), which saves reading it.
    pub(crate) async fn filter_visible_knowing(
        &self,
        user_id: &UserId,
        events: Vec<StoredEvent>,
        known: Option<(&RoomId, Option<StreamPos>)>,
    ) -> MatrixResult<Vec<StoredEvent>> {
        let mut verdicts: HashMap<i64, bool> = HashMap::new();
        // Per state group: whether the viewer was joined then (erased users' events seen from
        // outside are redacted).
        let mut joined_at: HashMap<i64, bool> = HashMap::new();
        let mut seen_from_outside: Vec<usize> = Vec::new();
        // Per room: since which position the user has been joined without interruption, if joined now.
        let mut joined_since: HashMap<OwnedRoomId, Option<StreamPos>> =
            known.map(|(room_id, since)| (room_id.to_owned(), since)).into_iter().collect();
        let ignored = self.ignored_users(user_id).await?;
        let mut out = Vec::with_capacity(events.len());
        for ev in events {
            if ev.state_key.is_none() && ignored.contains(&ev.sender) {
                continue;
            }
            // Users always see their own membership changes (their join, invite, kick, ban).
            let own_membership =
                ev.event_type == TimelineEventType::RoomMember && ev.state_key.as_deref() == Some(user_id.as_str());
            if !joined_since.contains_key(&ev.room_id) {
                let member = self.store.membership(&ev.room_id, user_id).await?;
                let since = member.filter(|m| m.membership == Membership::Join).map(|m| m.stream_pos);
                joined_since.insert(ev.room_id.clone(), since);
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
                    let state = self.state_group(group).await?;
                    let history = match state.get(&(StateEventType::RoomHistoryVisibility, String::new())) {
                        Some(id) => {
                            self.event(id).await?.map(|e| history_visibility(&Self::event_content(&e)).to_owned())
                        }
                        None => None,
                    }
                    .unwrap_or_else(|| "shared".to_owned());
                    let membership = self.membership_in(&state, user_id).await?;
                    let joined_then = membership == Some(Membership::Join);
                    joined_at.insert(group, joined_then);
                    let verdict = match history.as_str() {
                        "world_readable" => true,
                        "joined" => joined_then,
                        "invited" => joined_then || membership == Some(Membership::Invite),
                        _ => joined_then || joined_now.is_some(),
                    };
                    verdicts.insert(group, verdict);
                    verdict
                }
            };
            if visible {
                if !joined_at.get(&group).copied().unwrap_or(false) {
                    seen_from_outside.push(out.len());
                }
                out.push(ev);
            }
        }
        self.redact_erased(&mut out, &seen_from_outside).await?;
        Ok(out)
    }

    /// Events of erased users that the viewer sees without having been in the room when they
    /// were sent (`outside`: indexes into `events`) are shown redacted, as Synapse does.
    async fn redact_erased(&self, events: &mut [StoredEvent], outside: &[usize]) -> MatrixResult<()> {
        if outside.is_empty() {
            return Ok(());
        }
        let mut senders: Vec<myelin_core::types::OwnedUserId> =
            outside.iter().filter_map(|&i| events.get(i)).map(|e| e.sender.clone()).collect();
        senders.sort();
        senders.dedup();
        let erased = self.store.erased_users_among(&senders).await?;
        if erased.is_empty() {
            return Ok(());
        }
        let mut rules_of: HashMap<OwnedRoomId, Option<ruma::room_version_rules::RoomVersionRules>> = HashMap::new();
        for &i in outside {
            let Some(ev) = events.get_mut(i) else { continue };
            if !erased.contains(&ev.sender) {
                continue;
            }
            if !rules_of.contains_key(&ev.room_id) {
                let rules = match self.store.get_room(&ev.room_id).await? {
                    Some(room) => Some(super::version_rules(room.room_version.as_str())?.1),
                    None => None,
                };
                rules_of.insert(ev.room_id.clone(), rules);
            }
            if let Some(Some(rules)) = rules_of.get(&ev.room_id)
                && let Some(json) = crate::pdu::redacted_json(&ev.json, rules)
            {
                ev.json = json;
            }
        }
        Ok(())
    }

    /// Serialises events for a client, fetching redaction events for redacted ones.
    pub async fn client_events(
        &self,
        events: &[StoredEvent],
        format: ClientFormat,
        viewer: Option<Viewer<'_>>,
    ) -> MatrixResult<Vec<Value>> {
        let now = self.clock.now_ms();
        let mut rules_by_room: HashMap<OwnedRoomId, Option<ruma::room_version_rules::RoomVersionRules>> =
            HashMap::new();
        let mut out = Vec::with_capacity(events.len());
        for ev in events {
            let redaction = match &ev.redacted_by {
                Some(id) => self
                    .store
                    .get_event(id)
                    .await?
                    .map(|r| pdu::client_event(&r, None, ClientFormat::Client, None, None, now)),
                None => None,
            };
            let rules = if redaction.is_some() {
                if !rules_by_room.contains_key(&ev.room_id) {
                    let rules = self
                        .store
                        .get_room(&ev.room_id)
                        .await?
                        .and_then(|r| version_rules(r.room_version.as_str()).ok().map(|(_, r)| r));
                    rules_by_room.insert(ev.room_id.clone(), rules);
                }
                rules_by_room.get(&ev.room_id).and_then(Option::as_ref)
            } else {
                None
            };
            out.push(pdu::client_event(ev, rules, format, viewer, redaction, now));
        }
        self.add_prev_content(events, &mut out).await?;
        Ok(out)
    }

    /// One event for a client (`Value::Null` if serialisation gave nothing).
    async fn client_event(&self, ev: &StoredEvent, viewer: Option<Viewer<'_>>) -> MatrixResult<Value> {
        Ok(self
            .client_events(std::slice::from_ref(ev), ClientFormat::Client, viewer)
            .await?
            .pop()
            .unwrap_or(Value::Null))
    }

    /// `unsigned.prev_content` / `replaces_state` for state events that replaced an earlier one.
    async fn add_prev_content(&self, events: &[StoredEvent], out: &mut [Value]) -> MatrixResult<()> {
        let mut replaced = Vec::new();
        for (index, ev) in events.iter().enumerate() {
            let (Some(key), Some(group)) = (&ev.state_key, ev.state_before) else { continue };
            let state = self.state_group(group).await?;
            if let Some(prev) = state.get(&(state_event_type(&ev.event_type), key.clone()))
                && *prev != ev.event_id
            {
                replaced.push((index, prev.clone()));
            }
        }
        if replaced.is_empty() {
            return Ok(());
        }
        let ids: Vec<OwnedEventId> = replaced.iter().map(|(_, id)| id.clone()).collect();
        let previous: HashMap<OwnedEventId, StoredEvent> =
            self.events(&ids).await?.into_iter().map(|e| (e.event_id.clone(), e)).collect();
        for (index, prev_id) in replaced {
            if let (Some(prev), Some(json)) = (previous.get(&prev_id), out.get_mut(index)) {
                json["unsigned"]["replaces_state"] = prev_id.to_string().into();
                json["unsigned"]["prev_sender"] = prev.sender.to_string().into();
                if prev.redacted_by.is_none() {
                    json["unsigned"]["prev_content"] = Self::event_content(prev);
                }
            }
        }
        Ok(())
    }

    /// `/messages`.
    pub async fn messages(
        &self,
        requester: &Requester,
        room_id: &RoomId,
        req: MessagesRequest,
    ) -> MatrixResult<MessagesPage> {
        let user_id = &requester.user_id;
        let visibility = self.room_visibility(user_id, room_id).await?;
        // The database's head, not only what this process has heard of: a client that just sent
        // through another process must find its event.
        let head = self.store.refresh_stream_head().await?;
        let cap = match visibility {
            Visibility::Until(pos) => pos,
            _ => head,
        };
        let limit = req.limit.clamp(1, MAX_PAGE);
        let dir = if req.backward { Direction::Backward } else { Direction::Forward };
        let start = match dir {
            Direction::Backward => req.from.unwrap_or(cap).min(cap),
            Direction::Forward => req.from.unwrap_or(StreamPos::MIN),
        };
        let upper = match dir {
            Direction::Forward => Some(req.to.map_or(cap, |t| t.min(cap))),
            Direction::Backward => req.to,
        };
        let mut raw = self.store.room_events(room_id, start, upper, dir, limit).await?;
        // Paging back past the oldest event this server holds: the room's other servers may
        // have history from before it joined.
        if dir == Direction::Backward && upper.is_none() && raw.len() < limit && self.backfill_room(room_id).await? {
            raw = self.store.room_events(room_id, start, upper, dir, limit).await?;
        }
        let exhausted = raw.len() < limit;
        let end = match (raw.last(), dir) {
            (_, _) if exhausted => None,
            (Some(last), Direction::Backward) => Some(last.stream_pos.prev()),
            (Some(last), Direction::Forward) => Some(last.stream_pos),
            (None, _) => None,
        };
        let filtered: Vec<StoredEvent> = raw.into_iter().filter(|e| req.filter.matches(e)).collect();
        let visible = self.filter_visible(user_id, filtered).await?;
        let mut state = Vec::new();
        if req.filter.lazy_load_members && !visible.is_empty() {
            let senders: HashSet<&UserId> = visible.iter().map(|e| e.sender.as_ref()).collect();
            let mut members = Vec::new();
            for sender in senders {
                if let Some(ev) =
                    self.store.current_state_event(room_id, &StateEventType::RoomMember, sender.as_str()).await?
                {
                    members.push(ev);
                }
            }
            state = self.client_events(&members, ClientFormat::Client, None).await?;
        }
        let viewer = Viewer { user_id, device_id: &requester.device_id };
        let chunk = self.client_events(&visible, ClientFormat::Client, Some(viewer)).await?;
        Ok(MessagesPage { chunk, start, end, state })
    }

    /// `/event/{eventId}`: one event the user may see.
    pub async fn visible_event(
        &self,
        requester: &Requester,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> MatrixResult<(StoredEvent, Value)> {
        let user_id = &requester.user_id;
        let visibility = self.room_visibility(user_id, room_id).await?;
        let not_found = || MatrixError::not_found("Event not found");
        let ev = self.store.get_event(event_id).await?.filter(|e| e.room_id == room_id).ok_or_else(not_found)?;
        if let Visibility::Until(pos) = visibility
            && ev.stream_pos > pos
        {
            return Err(not_found());
        }
        let ev = self.filter_visible(user_id, vec![ev]).await?.pop().ok_or_else(not_found)?;
        let json = self.client_event(&ev, Some(Viewer { user_id, device_id: &requester.device_id })).await?;
        Ok((ev, json))
    }

    /// `/rooms/{roomId}/timestamp_to_event` (jump to date): the event nearest `ts_ms` in that
    /// direction, if the user may see it: (event id, its timestamp).
    pub async fn timestamp_to_event(
        &self,
        requester: &Requester,
        room_id: &RoomId,
        ts_ms: u64,
        forward: bool,
    ) -> MatrixResult<(OwnedEventId, u64)> {
        let user_id = &requester.user_id;
        let cap = match self.room_visibility(user_id, room_id).await? {
            Visibility::Until(pos) => pos,
            _ => self.store.refresh_stream_head().await?,
        };
        let not_found = || MatrixError::not_found("No event found in that direction");
        let ev = self.store.event_near_timestamp(room_id, ts_ms, forward, cap).await?.ok_or_else(not_found)?;
        let ev = self.filter_visible(user_id, vec![ev]).await?.pop().ok_or_else(not_found)?;
        Ok((ev.event_id, ev.origin_server_ts))
    }

    /// `/context/{eventId}`: the event, some before and after it, and the room state.
    pub async fn context(
        &self,
        requester: &Requester,
        room_id: &RoomId,
        event_id: &EventId,
        limit: usize,
        filter: RoomEventFilter,
    ) -> MatrixResult<Value> {
        let (ev, json) = self.visible_event(requester, room_id, event_id).await?;
        let before_n = limit / 2;
        let after_n = limit - before_n;
        let page = |from: StreamPos, backward: bool, n: usize| MessagesRequest {
            from: Some(from),
            to: None,
            backward,
            limit: n.max(1),
            filter: filter.clone(),
        };
        let before = self.messages(requester, room_id, page(ev.stream_pos.prev(), true, before_n)).await?;
        let after = self.messages(requester, room_id, page(ev.stream_pos, false, after_n)).await?;
        let state = self.room_state(&requester.user_id, room_id).await?;
        let state_json = self.client_events(&state, ClientFormat::Client, None).await?;
        let take = |chunk: Vec<Value>, n: usize| chunk.into_iter().take(n).collect::<Vec<_>>();
        Ok(json!({
            "event": json,
            "events_before": take(before.chunk, before_n),
            "events_after": take(after.chunk, after_n),
            "start": crate::sync::pagination_token(before.end.unwrap_or(StreamPos::ZERO)),
            "end": crate::sync::pagination_token(after.end.unwrap_or(self.store.stream_head())),
            "state": state_json,
        }))
    }

    /// Current room state (or the state when the user left).
    pub async fn room_state(&self, user_id: &UserId, room_id: &RoomId) -> MatrixResult<Vec<StoredEvent>> {
        let ids: Vec<OwnedEventId> = match self.room_visibility(user_id, room_id).await? {
            Visibility::Until(pos) => match self.store.state_group_at(room_id, pos).await? {
                Some(group) => self.state_group(group).await?.values().cloned().collect(),
                None => Vec::new(),
            },
            _ => self.store.current_state_ids(room_id).await?.into_iter().map(|(_, _, e)| e).collect(),
        };
        self.events(&ids).await
    }

    /// `/state`: the room state as client events.
    pub async fn room_state_json(&self, user_id: &UserId, room_id: &RoomId) -> MatrixResult<Vec<Value>> {
        let events = self.room_state(user_id, room_id).await?;
        self.client_events(&events, ClientFormat::Client, None).await
    }

    /// `/state/{eventType}/{stateKey}`: one state event's content.
    pub async fn state_event_content(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        event_type: &StateEventType,
        state_key: &str,
    ) -> MatrixResult<Value> {
        self.state_event_json(user_id, room_id, event_type, state_key, false).await
    }

    /// `/state/{eventType}/{stateKey}`: one state event's content, or (`whole`, the
    /// `format=event` of spec v1.16) the whole event in client format.
    pub async fn state_event_json(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        event_type: &StateEventType,
        state_key: &str,
        whole: bool,
    ) -> MatrixResult<Value> {
        let wanted = TimelineEventType::from(event_type.clone());
        let events = self.room_state(user_id, room_id).await?;
        let ev = events
            .iter()
            .find(|e| e.event_type == wanted && e.state_key.as_deref() == Some(state_key))
            .ok_or_else(|| MatrixError::not_found("Event not found"))?;
        let json = self.client_event(ev, None).await?;
        if whole {
            return Ok(json);
        }
        Ok(json.get("content").cloned().unwrap_or_else(|| json!({})))
    }

    /// `/members`: member events, optionally of one membership or not of another.
    pub async fn members(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        membership: Option<Membership>,
        not_membership: Option<Membership>,
    ) -> MatrixResult<Vec<Value>> {
        self.room_visibility(user_id, room_id).await?;
        self.wait_for_whole_state(room_id).await?;
        let events = self.room_state(user_id, room_id).await?;
        let members: Vec<StoredEvent> = events
            .into_iter()
            .filter(|e| e.event_type == TimelineEventType::RoomMember)
            .filter(|e| {
                let m: Option<Membership> = Self::event_content(e)["membership"].as_str().and_then(|m| m.parse().ok());
                membership.is_none_or(|want| m == Some(want)) && not_membership.is_none_or(|not| m != Some(not))
            })
            .collect();
        self.client_events(&members, ClientFormat::Client, None).await
    }

    /// `/joined_members`: display name and avatar of every joined member.
    pub async fn joined_members(&self, user_id: &UserId, room_id: &RoomId) -> MatrixResult<Map<String, Value>> {
        self.room_visibility(user_id, room_id).await?;
        self.wait_for_whole_state(room_id).await?;
        let members = self.store.room_members(room_id, Some(Membership::Join)).await?;
        Ok(members
            .into_iter()
            .map(|m| (m.user_id.to_string(), json!({ "display_name": m.displayname, "avatar_url": m.avatar_url })))
            .collect())
    }

    /// `/relations`: the events relating to one the user may see, those the user may see.
    pub async fn relations(
        &self,
        requester: &Requester,
        room_id: &RoomId,
        event_id: &EventId,
        req: RelationsRequest,
    ) -> MatrixResult<RelationsPage> {
        self.visible_event(requester, room_id, event_id).await?;
        let limit = req.limit.clamp(1, MAX_PAGE);
        let from = match req.from {
            Some(from) => from,
            None => self.store.refresh_stream_head().await?,
        };
        let raw = self.store.relations(event_id, req.rel_type.as_ref(), from, limit).await?;
        let next = if raw.len() == limit { raw.last().map(|e| e.stream_pos.prev()) } else { None };
        let raw: Vec<StoredEvent> = raw
            .into_iter()
            .filter(|e| e.room_id == room_id && req.event_type.as_ref().is_none_or(|t| e.event_type == *t))
            .collect();
        let visible = self.filter_visible(&requester.user_id, raw).await?;
        let viewer = Viewer { user_id: &requester.user_id, device_id: &requester.device_id };
        let mut chunk = self.client_events(&visible, ClientFormat::Client, Some(viewer)).await?;
        if req.forward {
            chunk.reverse();
        }
        Ok(RelationsPage { chunk, next })
    }

    /// `/threads`: the room's threads the user may see, newest activity first, each with its
    /// latest reply the user may see. Roots and replies pass the same visibility rule as
    /// `/relations` and `/messages`.
    pub async fn threads(
        &self,
        requester: &Requester,
        room_id: &RoomId,
        from: Option<StreamPos>,
        limit: usize,
        participated_only: bool,
    ) -> MatrixResult<ThreadsPage> {
        let user_id = &requester.user_id;
        self.room_visibility(user_id, room_id).await?;
        let limit = limit.clamp(1, MAX_PAGE);
        let head = self.store.refresh_stream_head().await?;
        let roots = self.store.thread_roots(room_id, from.unwrap_or(head), limit).await?;
        let next = if roots.len() == limit { roots.last().map(|(_, latest)| latest.prev()) } else { None };
        let visible_roots = self.filter_visible(user_id, roots.into_iter().map(|(root, _)| root).collect()).await?;
        let viewer = Viewer { user_id, device_id: &requester.device_id };
        let mut chunk = Vec::new();
        for root in visible_roots {
            let replies =
                self.store.relations(&root.event_id, Some(&RelationType::Thread), head, MAX_THREAD_REPLIES).await?;
            let replies = self.filter_visible(user_id, replies).await?;
            let participated = root.sender == *user_id || replies.iter().any(|e| e.sender == *user_id);
            if participated_only && !participated {
                continue;
            }
            let mut json = self.client_event(&root, Some(viewer)).await?;
            let latest = match replies.first() {
                Some(ev) => self.client_event(ev, Some(viewer)).await?,
                None => Value::Null,
            };
            json["unsigned"]["m.relations"] = json!({
                "m.thread": { "latest_event": latest, "count": replies.len(), "current_user_participated": participated }
            });
            chunk.push(json);
        }
        Ok(ThreadsPage { chunk, next })
    }
}
