//! Sync v2 (`/sync`): initial and incremental, long-polling through the notifier.
//!
//! Tokens: `s{pos}_{typing}[_{to_device}]` — a position on the global stream, the typing serial
//! and, when a device had more than 100 to-device messages waiting, the position of the last one
//! delivered. Everything else with a position `<= pos` has been delivered. Pagination tokens
//! (`prev_batch`) are `t{pos}`.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use futures_util::StreamExt;
use myelin_core::{
    MatrixError, MatrixResult, Membership, StateMap,
    json::object,
    types::{EventId, OwnedEventId, OwnedRoomId, RoomId, StateEventType, TimelineEventType, UserId},
};
use myelin_storage::{Change, Direction, StoredEvent, StreamPos, UserRoom};
use ruma::events::receipt::{ReceiptThread, ReceiptType};
use serde_json::{Map, Value, json};

use crate::{
    Services,
    accounts::Requester,
    filter::Filter,
    pdu::{ClientFormat, Viewer},
};

/// Largest filter stored.
const MAX_FILTER_BYTES: usize = 65_536;
/// Default number of timeline events per room when the filter gives none.
const DEFAULT_TIMELINE_LIMIT: usize = 10;
const MAX_TIMELINE_LIMIT: usize = 500;
/// Older pages read at most when the filter or history visibility leaves a timeline short.
const TIMELINE_REFILL_PAGES: usize = 5;
/// Rooms of one sync computed at the same time.
const ROOM_CONCURRENCY: usize = 16;

/// What a joined room's entry is built from.
struct RoomSection<'a> {
    since: Option<SyncToken>,
    now: SyncToken,
    /// Send the room whole (new to the client, or `full_state`).
    full: bool,
    filter: &'a Filter,
    room_account_data: Vec<Value>,
    /// The room's unexpired sticky events (MSC4354).
    sticky: Vec<myelin_storage::StickyEvent>,
}

/// A room's timeline for one response.
#[derive(Default)]
struct Timeline {
    /// Oldest first.
    events: Vec<StoredEvent>,
    /// Events before the first are not in the response (a gap).
    limited: bool,
    /// State events in the range were left out (by the filter or history visibility).
    state_skipped: bool,
}

/// The section of the response a room goes into.
enum Section {
    Join,
    Invite,
    Knock,
    Leave,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncToken {
    pub pos: StreamPos,
    pub typing: u64,
    /// To-device messages delivered up to here (when below `pos`: more are waiting).
    pub to_device: Option<StreamPos>,
}

impl SyncToken {
    pub fn parse(token: &str) -> Option<Self> {
        let rest = token.strip_prefix('s')?;
        let mut parts = rest.split('_');
        let pos: StreamPos = parts.next()?.parse().ok().filter(|p: &StreamPos| *p >= StreamPos::ZERO)?;
        let typing = match parts.next() {
            Some(t) => t.parse().ok()?,
            None => 0,
        };
        let to_device = match parts.next() {
            Some(t) => Some(t.parse().ok().filter(|t: &StreamPos| (StreamPos::ZERO..=pos).contains(t))?),
            None => None,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Self { pos, typing, to_device })
    }
    pub fn render(&self) -> String {
        match self.to_device {
            Some(td) if td < self.pos => format!("s{}_{}_{td}", self.pos, self.typing),
            _ => format!("s{}_{}", self.pos, self.typing),
        }
    }
    /// Where this token's to-device delivery stands.
    pub fn to_device_acked(&self) -> StreamPos {
        self.to_device.unwrap_or(self.pos)
    }
}

/// The content of an `m.receipt` event for `receipts`, hiding others' private receipts.
pub fn receipt_content<'a>(
    receipts: impl Iterator<Item = &'a myelin_storage::ReceiptRecord>,
    user_id: &UserId,
) -> BTreeMap<String, Map<String, Value>> {
    let mut content: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for r in receipts {
        if r.receipt_type == ReceiptType::ReadPrivate && r.user_id != user_id {
            continue;
        }
        let by_type = content.entry(r.event_id.to_string()).or_default();
        let users = by_type.entry(r.receipt_type.to_string()).or_insert_with(|| json!({}));
        let mut receipt = json!({ "ts": r.ts });
        if r.thread != ReceiptThread::Unthreaded
            && let Some(thread) = r.thread.as_str()
        {
            receipt["thread_id"] = thread.into();
        }
        users[r.user_id.as_str()] = receipt;
    }
    content
}

/// Parses a pagination token: `t{pos}` or a sync token.
pub fn parse_pagination_token(token: &str) -> Option<StreamPos> {
    match token.strip_prefix('t') {
        Some(pos) => pos.parse().ok(),
        None => SyncToken::parse(token).map(|t| t.pos),
    }
}

pub fn pagination_token(pos: StreamPos) -> String {
    format!("t{pos}")
}

pub struct SyncRequest {
    pub since: Option<SyncToken>,
    pub timeout: Duration,
    pub full_state: bool,
    /// The `filter` parameter: a filter id or inline JSON.
    pub filter: Option<String>,
}

/// A device's key in per-device caches.
fn device_key(requester: &Requester) -> String {
    format!("{}|{}", requester.user_id, requester.device_id)
}

impl Services {
    pub async fn sync(&self, requester: &Requester, req: SyncRequest) -> MatrixResult<Value> {
        let response = self.sync_answer(requester, req).await?;
        // The counts this answer gave, for the next request from its `next_batch` (see below).
        if let Some(next_batch) = response["next_batch"].as_str().and_then(SyncToken::parse) {
            let answered = Arc::new((next_batch, response["device_one_time_keys_count"].clone()));
            self.answered_key_counts.insert(device_key(requester), answered, 1);
        }
        Ok(response)
    }

    async fn sync_answer(&self, requester: &Requester, req: SyncRequest) -> MatrixResult<Value> {
        // Subscribe before reading, so a write between the read and the wait still wakes us.
        let filter = self.resolve_filter(&requester.user_id, req.filter.as_deref()).await?;
        if req.since.is_none() && filter.room.state.lazy_load_members {
            // A new start: the device holds no member events.
            self.lazy_members.forget_device(&requester.user_id, &requester.device_id);
        }
        let mut wake = self.notifier.subscribe(&requester.user_id);
        let timeout = req.timeout.min(Duration::from_millis(self.config.limits.max_sync_timeout_ms));
        let deadline = tokio::time::Instant::now() + timeout;
        let mut first_counts: Option<Value> = None;
        // A long-poll whose token is at the head, with the typing serial unchanged and its
        // to-device messages all delivered, can have nothing new: it waits before building
        // anything. (Half the answers a busy room's listeners asked for were such empty checks:
        // one after each message, from every listener.)
        if let Some(since) = req.since.filter(|_| !req.full_state)
            && since.pos == self.store.stream_head()
            && since.typing == self.typing.serial()
            && since.to_device_acked() >= since.pos
            && timeout > Duration::ZERO
        {
            // One-time key counts move without a stream position: their change is news too. The
            // counts to compare with are those the answer that gave this token had (a claim
            // since then is news as well), else the present ones.
            let answered = self.answered_key_counts.get(&device_key(requester)).filter(|answered| answered.0 == since);
            first_counts = Some(match answered {
                Some(answered) => answered.1.clone(),
                None => self.one_time_key_counts(&requester.user_id, &requester.device_id).await?,
            });
            tokio::select! {
                _ = wake.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
        loop {
            let since = req.since.filter(|s| !req.full_state || s.pos > StreamPos::ZERO);
            let mut head = self.store.stream_head();
            if since.is_some_and(|s| s.pos > head) {
                // A token from another process that has heard of newer commits than this one.
                head = self.store.refresh_stream_head().await?;
            }
            let now = SyncToken { pos: head, typing: self.typing.serial(), to_device: None };
            let started = std::time::Instant::now();
            // Boxed: a long-poll waits holding only what it needs, not room for building an answer
            // (which made each of 2 000 waiting listeners hold about 150 KiB).
            let (response, has_updates) =
                Box::pin(self.sync_once(requester, since, now, req.full_state, &filter)).await?;
            self.metrics.sync_build_time.with(&["v2"]).observe(started.elapsed());
            // One-time keys claimed while the device waits: the new count is news by itself.
            let counts = response["device_one_time_keys_count"].clone();
            let counts_moved = first_counts.as_ref().is_some_and(|first| *first != counts);
            first_counts.get_or_insert(counts);
            if since.is_none()
                || req.full_state
                || has_updates
                || counts_moved
                || tokio::time::Instant::now() >= deadline
            {
                return Ok(response);
            }
            if since.is_some_and(|s| s.pos > now.pos) {
                // A token from the future even for the database (e.g. it was reset): answer with
                // the present.
                return Ok(response);
            }
            tokio::select! {
                _ = wake.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    let now = SyncToken { pos: self.store.stream_head(), typing: self.typing.serial(), to_device: None };
                    return Ok(Box::pin(self.sync_once(requester, since, now, false, &filter)).await?.0);
                }
            }
        }
    }

    async fn sync_once(
        &self,
        requester: &Requester,
        since: Option<SyncToken>,
        now: SyncToken,
        full_state: bool,
        filter: &Filter,
    ) -> MatrixResult<(Value, bool)> {
        let user_id: &UserId = &requester.user_id;
        let since_pos = since.map(|s| s.pos);
        let mut has_updates = false;
        let mut join = Map::new();
        let mut invite = Map::new();
        let mut leave = Map::new();
        let mut knock = Map::new();
        let rooms = self.user_rooms.get(self.store.as_ref(), user_id, now.pos).await?;
        let ignored = self.ignored_users(user_id).await?;
        let mut room_account_data: HashMap<OwnedRoomId, Vec<Value>> = HashMap::new();
        let mut account_data = Vec::new();
        for a in self.store.account_data_since(user_id, since_pos.unwrap_or(StreamPos::ZERO), now.pos).await? {
            let content = serde_json::from_str::<Value>(&a.content).unwrap_or(Value::Null);
            let event = json!({ "type": a.data_type, "content": content });
            match a.room_id {
                None => {
                    if filter.account_data.type_allowed(&a.data_type) {
                        account_data.push(event);
                    }
                }
                Some(room_id) => {
                    if filter.room.account_data.type_allowed(&a.data_type) {
                        room_account_data.entry(room_id).or_default().push(event);
                    }
                }
            }
        }
        // Sticky events come with events: only rooms with news since the token (or sent whole)
        // can have new ones, so a quiet sync asks for none; nor does one when no sticky event
        // was written since the token (a room the user joined since is sent whole all the same).
        let sticky_news = since_pos.is_none_or(|s| self.store.may_have_changed(Change::Sticky, s));
        let sticky_rooms: Vec<OwnedRoomId> = rooms
            .iter()
            .filter(|r| r.membership == Membership::Join)
            .filter(|r| {
                full_state || since_pos.is_none_or(|s| (sticky_news && r.last_event_pos > s) || r.membership_pos > s)
            })
            .map(|r| r.room_id.clone())
            .collect();
        let mut sticky_by_room = self.sticky_events_by_room(&sticky_rooms, now.pos).await?;
        // Rooms are independent: build their sections concurrently (reads overlap on the pool).
        let mut work = Vec::new();
        for room in rooms.iter().filter(|r| filter.room.room_allowed(r.room_id.as_str())) {
            if room.membership_pos > now.pos {
                continue; // committed after our snapshot: the next sync has it
            }
            let data = room_account_data.remove(&room.room_id).unwrap_or_default();
            let sticky = sticky_by_room.remove(&room.room_id).unwrap_or_default();
            let ignored = ignored.clone();
            work.push(async move {
                let changed_membership = since_pos.is_none_or(|s| room.membership_pos > s);
                let entry = match room.membership {
                    Membership::Join => {
                        let full = full_state || changed_membership;
                        let section = RoomSection { since, now, full, filter, room_account_data: data, sticky };
                        self.joined_room(requester, room, section).await?.map(|e| (Section::Join, e))
                    }
                    Membership::Invite if ignored.contains(&room.membership_sender) => None,
                    Membership::Invite | Membership::Knock if changed_membership || full_state => {
                        let stripped = self.stripped_state(&room.room_id, &room.membership_event_id).await?;
                        Some(if room.membership == Membership::Invite {
                            (Section::Invite, json!({ "invite_state": { "events": stripped } }))
                        } else {
                            (Section::Knock, json!({ "knock_state": { "events": stripped } }))
                        })
                    }
                    Membership::Leave | Membership::Ban => {
                        let newly_left = since_pos.is_some_and(|s| room.membership_pos > s);
                        let wanted = newly_left
                            || (filter.room.include_leave && !room.forgotten && (since.is_none() || full_state));
                        if wanted {
                            self.left_room(requester, room, since_pos, filter).await?.map(|e| (Section::Leave, e))
                        } else {
                            None
                        }
                    }
                    _ => None,
                };
                MatrixResult::Ok(entry.map(|(section, value)| (section, room.room_id.clone(), value)))
            });
        }
        let mut results = futures_util::stream::iter(work).buffer_unordered(ROOM_CONCURRENCY);
        while let Some(result) = results.next().await {
            if let Some((section, room_id, value)) = result? {
                has_updates = true;
                match section {
                    Section::Join => join.insert(room_id.to_string(), value),
                    Section::Invite => invite.insert(room_id.to_string(), value),
                    Section::Knock => knock.insert(room_id.to_string(), value),
                    Section::Leave => leave.insert(room_id.to_string(), value),
                };
            }
        }
        has_updates |= !account_data.is_empty();
        // End-to-end encryption: this device's inbox, whose devices changed, key counts.
        let device_id = &requester.device_id;
        let (to_device, to_device_next) = self
            .to_device_for_sync(
                user_id,
                device_id,
                since.map(|s| s.to_device_acked()),
                now.pos,
                crate::e2ee::to_device::TO_DEVICE_BATCH,
            )
            .await?;
        let device_lists = match since {
            Some(since) => self.device_list_delta(user_id, &rooms, since.pos, now.pos).await?,
            None => Default::default(),
        };
        let presence = self.presence_for_sync(user_id, since_pos, now.pos, &filter.presence).await?;
        has_updates |= !to_device.is_empty() || !device_lists.is_empty() || !presence.is_empty();
        let next_batch = SyncToken { to_device: Some(to_device_next), ..now };
        let (one_time_counts, unused_fallback) = self.key_counts(user_id, device_id).await?;
        let mut body = object([
            ("next_batch", next_batch.render().into()),
            (
                "rooms",
                object([
                    ("join", join.into()),
                    ("invite", invite.into()),
                    ("leave", leave.into()),
                    ("knock", knock.into()),
                ]),
            ),
            ("account_data", object([("events", account_data.into())])),
            ("presence", object([("events", presence.into())])),
            ("to_device", object([("events", to_device.into())])),
            ("device_lists", json!({ "changed": device_lists.changed, "left": device_lists.left })),
            ("device_one_time_keys_count", one_time_counts),
            ("device_unused_fallback_key_types", unused_fallback),
        ]);
        if since.is_none() {
            // Initial sync: include the push rules the client needs even if never set.
            let push_rules_type = crate::push::push_rules_type();
            let has_rules = body["account_data"]["events"]
                .as_array()
                .is_some_and(|a| a.iter().any(|e| e["type"] == push_rules_type.as_str()));
            if !has_rules && filter.account_data.type_allowed(&push_rules_type) {
                let rules = self.push_ruleset(user_id).await?;
                if let Some(events) = body["account_data"]["events"].as_array_mut() {
                    events.push(json!({ "type": push_rules_type, "content": { "global": *rules } }));
                }
            }
        }
        Ok((body, has_updates))
    }

    fn timeline_limit(filter: &Filter) -> usize {
        filter.room.timeline.limit.map_or(DEFAULT_TIMELINE_LIMIT, |l| (l as usize).clamp(1, MAX_TIMELINE_LIMIT))
    }

    /// Timeline of a room in `(since, until]`: (events oldest first, limited). When the filter
    /// or history visibility drops events, older pages are read to fill the limit (a few at
    /// most, as Synapse does), so a reader back after an absence still gets a timeline. With
    /// `joined_since` (the user is joined, since that position), state that is still current
    /// shows whatever the history visibility.
    async fn timeline(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        span: (Option<StreamPos>, StreamPos),
        filter: &Filter,
        joined_since: Option<StreamPos>,
    ) -> MatrixResult<Timeline> {
        let (since, until) = span;
        let limit = Self::timeline_limit(filter);
        let mut kept: Vec<StoredEvent> = Vec::new();
        let mut state_skipped = false;
        let mut upper = until;
        let mut page = limit;
        let mut more = true;
        for _ in 0..=TIMELINE_REFILL_PAGES {
            if !more || kept.len() >= limit {
                break;
            }
            let mut events = match since {
                // The first page of a live update: every listener the event woke asks the same,
                // and what is at or below the head cannot change.
                Some(since) if upper == until => {
                    let key = (room_id.to_owned(), upper, since, page + 1);
                    let read = || async {
                        let page = self.store.room_events(room_id, upper, Some(since), Direction::Backward, key.3);
                        Ok::<_, MatrixError>(std::sync::Arc::new(page.await?))
                    };
                    self.sync_timelines.get_or_read(key.clone(), read).await?.as_ref().clone()
                }
                _ => self.store.room_events(room_id, upper, since, Direction::Backward, page + 1).await?,
            };
            more = events.len() > page;
            events.truncate(page);
            let Some(oldest) = events.last() else { break };
            upper = oldest.stream_pos.prev();
            events.reverse();
            let state_read = events.iter().filter(|e| e.state_key.is_some()).count();
            let matching: Vec<StoredEvent> = events.into_iter().filter(|e| filter.room.timeline.matches(e)).collect();
            let mut visible = if let Some(joined_since) = joined_since {
                self.visible_in_timeline(user_id, room_id, joined_since, matching).await?
            } else {
                self.filter_visible(user_id, matching).await?
            };
            state_skipped |= visible.iter().filter(|e| e.state_key.is_some()).count() < state_read;
            visible.append(&mut kept);
            kept = visible;
            page = (2 * limit).max(DEFAULT_TIMELINE_LIMIT);
        }
        let limited = more || kept.len() > limit;
        if kept.len() > limit {
            kept.drain(..kept.len() - limit);
        }
        Ok(Timeline { events: kept, limited, state_skipped })
    }

    /// What of a room's timeline events the user sees: what history visibility allows, and
    /// state events that are still the room's current state even where it hides them (somebody
    /// who joined while the reader was away is part of the room they come back to).
    async fn visible_in_timeline(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        joined_since: StreamPos,
        events: Vec<StoredEvent>,
    ) -> MatrixResult<Vec<StoredEvent>> {
        let state_events: Vec<StoredEvent> = events.iter().filter(|e| e.state_key.is_some()).cloned().collect();
        let mut visible = self.filter_visible_knowing(user_id, events, Some((room_id, Some(joined_since)))).await?;
        if state_events.is_empty() {
            return Ok(visible);
        }
        let shown: HashSet<OwnedEventId> = visible.iter().map(|e| e.event_id.clone()).collect();
        let mut current = Vec::new();
        for ev in state_events.into_iter().filter(|e| !shown.contains(&e.event_id)) {
            let Some(state_key) = ev.state_key.as_deref() else { continue };
            let event_type = StateEventType::from(ev.event_type.to_string());
            let now = self.store.current_state_event(room_id, &event_type, state_key).await?;
            if now.is_some_and(|now| now.event_id == ev.event_id) {
                current.push(ev);
            }
        }
        if !current.is_empty() {
            visible.extend(current);
            visible.sort_by_key(|e| e.stream_pos);
        }
        Ok(visible)
    }

    /// The state section: entries of `state` not in `previous`, filtered and lazy-loaded.
    async fn state_section(
        &self,
        user_id: &UserId,
        state: &StateMap,
        previous: Option<&StateMap>,
        timeline: &[StoredEvent],
        filter: &Filter,
    ) -> MatrixResult<Vec<StoredEvent>> {
        let state_filter = &filter.room.state;
        let senders: HashSet<&str> =
            timeline.iter().map(|e| e.sender.as_str()).chain(std::iter::once(user_id.as_str())).collect();
        let timeline_ids: HashSet<&EventId> = timeline.iter().map(|e| e.event_id.as_ref()).collect();
        let ids: Vec<OwnedEventId> = state
            .iter()
            .filter(|(key, id)| {
                let (t, k) = key;
                // Lazy loading sends the timeline's senders, and every membership that changed
                // in a gap (a leave the client must not miss, a join it would not know of).
                previous.is_none_or(|p| p.get(*key) != Some(*id))
                    && !timeline_ids.contains::<EventId>(id.as_ref())
                    && state_filter.allows_type(t)
                    && (!state_filter.lazy_load_members
                        || *t != StateEventType::RoomMember
                        || previous.is_some()
                        || senders.contains(k.as_str()))
            })
            .map(|(_, id)| id.clone())
            .collect();
        let mut events = self.events(&ids).await?;
        events.sort_by_key(|e| e.stream_pos);
        Ok(events)
    }

    /// Lazy loading: the membership, as of `state`, of the timeline's senders that the device
    /// lacks — not among `have`, and not sent to it before unless the filter asks for repeats —
    /// in a stable order.
    fn unsent_sender_members(
        &self,
        requester: &Requester,
        state: &StateMap,
        timeline: &[StoredEvent],
        have: &HashSet<&EventId>,
        filter: &Filter,
    ) -> Vec<OwnedEventId> {
        let senders: HashSet<&str> = timeline.iter().map(|e| e.sender.as_str()).collect();
        let mut ids: Vec<OwnedEventId> = senders
            .into_iter()
            .filter_map(|sender| state.get(&(StateEventType::RoomMember, sender.to_owned())))
            .filter(|id| !have.contains::<EventId>(id.as_ref()))
            .cloned()
            .collect();
        ids.sort();
        if filter.room.state.include_redundant_members {
            return ids;
        }
        self.lazy_members.unsent(&requester.user_id, &requester.device_id, ids)
    }

    async fn joined_room(
        &self,
        requester: &Requester,
        room: &UserRoom,
        section: RoomSection<'_>,
    ) -> MatrixResult<Option<Value>> {
        let RoomSection { since, now, full, filter, room_account_data, sticky } = section;
        let user_id: &UserId = &requester.user_id;
        let room_id: &RoomId = &room.room_id;
        let since_pos = if full { None } else { since.map(|s| s.pos) };
        let new_events = since_pos.is_none_or(|s| room.last_event_pos > s);
        let Timeline { events: timeline, limited, state_skipped } = if new_events {
            // Joined as of `now` (the room list says since when): no membership read to judge
            // the timeline's visibility.
            self.timeline(user_id, room_id, (since_pos, now.pos), filter, Some(room.membership_pos)).await?
        } else {
            Timeline::default()
        };

        let mut state_events = Vec::new();
        // State changes the timeline does not show (a gap, or state the filter left out) go in
        // the state section.
        if since_pos.is_none() || limited || state_skipped {
            // State as of the timeline's start; when the filter dropped state events (which may
            // come after the start), as of its end: what changed and is not in the timeline.
            let start = timeline.first().map_or(now.pos, |e| e.stream_pos.prev());
            let state = self.state_at(room_id, if state_skipped { now.pos } else { start }).await?;
            let previous = match since_pos {
                Some(s) => Some(self.state_at(room_id, s).await?),
                None => None,
            };
            state_events = self.state_section(user_id, &state, previous.as_deref(), &timeline, filter).await?;
            if filter.room.state.lazy_load_members && previous.is_some() {
                // After a gap: a sender whose membership did not change in it may still never
                // have been sent to this device (they were quiet until now).
                let have: HashSet<&EventId> =
                    state_events.iter().chain(&timeline).map(|e| e.event_id.as_ref()).collect();
                let quiet = self.unsent_sender_members(requester, &state, &timeline, &have, filter);
                if !quiet.is_empty() {
                    state_events.extend(self.events(&quiet).await?);
                    state_events.sort_by_key(|e| e.stream_pos);
                }
            }
        } else if filter.room.state.lazy_load_members && !timeline.is_empty() {
            // Lazy loading: the client may never have seen these senders. Send their membership
            // as of the timeline start, unless this device was sent it already.
            let start = timeline.first().map_or(now.pos, |e| e.stream_pos.prev());
            let state = self.state_at(room_id, start).await?;
            let in_timeline: HashSet<&EventId> = timeline.iter().map(|e| e.event_id.as_ref()).collect();
            let ids = self.unsent_sender_members(requester, &state, &timeline, &in_timeline, filter);
            state_events = self.events(&ids).await?;
        }
        if filter.room.state.lazy_load_members {
            let members =
                state_events.iter().chain(&timeline).filter(|e| e.event_type == TimelineEventType::RoomMember);
            self.lazy_members.record(user_id, &requester.device_id, members.map(|e| e.event_id.clone()));
        }

        let mut ephemeral = Vec::new();
        if filter.room.ephemeral.room_allowed(room_id.as_str()) {
            if filter.room.ephemeral.type_allowed("m.typing")
                && let Some(users) =
                    self.typing.typing_since(room_id, if full { 0 } else { since.map_or(0, |s| s.typing) })
            {
                ephemeral.push(json!({ "type": "m.typing", "content": { "user_ids": users } }));
            }
            if filter.room.ephemeral.type_allowed("m.receipt") {
                let receipts = self
                    .store
                    .receipts_since(std::slice::from_ref(&room.room_id), since_pos.unwrap_or(StreamPos::ZERO), now.pos)
                    .await?;
                let content = receipt_content(receipts.iter(), user_id);
                if !content.is_empty() {
                    ephemeral.push(json!({ "type": "m.receipt", "content": content }));
                }
            }
        }
        let viewer = Some(Viewer { user_id, device_id: &requester.device_id });
        let in_timeline: HashSet<&EventId> = timeline.iter().map(|e| e.event_id.as_ref()).collect();
        let sticky = self.sticky_section(&sticky, since_pos, &in_timeline, viewer).await?;
        if since_pos.is_some()
            && timeline.is_empty()
            && state_events.is_empty()
            && ephemeral.is_empty()
            && room_account_data.is_empty()
            && sticky.is_empty()
            && !limited
        {
            return Ok(None);
        }
        let prev_batch = timeline.first().map(|e| crate::sync::pagination_token(e.stream_pos.prev()));
        // A live update shares the room's read with its other listeners; a first sync reads its own.
        let (notifications, highlights) = if since_pos.is_some() {
            self.unread_counts(user_id, room_id, now.pos).await?
        } else {
            self.store.unread_counts(user_id, room_id, now.pos).await?
        };
        // The summary reads the whole member list: send it when it can have changed (a full
        // room, or membership events in this response); clients keep the previous one otherwise.
        let membership_changed =
            timeline.iter().chain(state_events.iter()).any(|e| e.event_type == TimelineEventType::RoomMember);
        let summary = if since_pos.is_none() || membership_changed {
            self.room_summary(room_id, user_id).await?
        } else {
            json!({})
        };
        let (timeline_section, state_section) =
            self.timeline_and_state(&timeline, limited, &state_events, viewer).await?;
        let mut entry = object([
            ("timeline", timeline_section),
            ("state", state_section),
            ("ephemeral", object([("events", ephemeral.into())])),
            ("account_data", object([("events", room_account_data.into())])),
            ("unread_notifications", json!({ "notification_count": notifications, "highlight_count": highlights })),
            ("summary", summary),
        ]);
        if let Some(prev) = prev_batch {
            entry["timeline"]["prev_batch"] = prev.into();
        }
        if !sticky.is_empty() {
            entry[crate::sticky_events::SYNC_SECTION] = json!({ "events": sticky });
        }
        Ok(Some(entry))
    }

    /// A room's `timeline` (`events`, `limited`) and `state` (`events`) sections, in client format.
    async fn timeline_and_state(
        &self,
        timeline: &[StoredEvent],
        limited: bool,
        state_events: &[StoredEvent],
        viewer: Option<Viewer<'_>>,
    ) -> MatrixResult<(Value, Value)> {
        let events = self.client_events(timeline, ClientFormat::Sync, viewer).await?;
        let state = self.client_events(state_events, ClientFormat::Sync, None).await?;
        Ok((object([("events", events.into()), ("limited", limited.into())]), object([("events", state.into())])))
    }

    async fn left_room(
        &self,
        requester: &Requester,
        room: &UserRoom,
        since: Option<StreamPos>,
        filter: &Filter,
    ) -> MatrixResult<Option<Value>> {
        let user_id: &UserId = &requester.user_id;
        let mut since = since;
        let mut previous = None;
        if let Some(s) = since {
            let at_since = self.state_at(&room.room_id, s).await?;
            let before_leaving = self.state_at(&room.room_id, room.membership_pos.prev()).await?;
            if self.membership_in(&at_since, user_id).await? != Some(Membership::Join)
                && self.membership_in(&before_leaving, user_id).await? == Some(Membership::Join)
            {
                // Joined and left since the token: the client never had this room, so it
                // comes whole, as a newly joined room would.
                since = None;
            } else {
                previous = Some(at_since);
            }
        }
        let Timeline { events: timeline, limited, .. } =
            self.timeline(user_id, &room.room_id, (since, room.membership_pos), filter, None).await?;
        let start = timeline.first().map_or(room.membership_pos, |e| e.stream_pos.prev());
        let state = self.state_at(&room.room_id, start).await?;
        let state_events = self.state_section(user_id, &state, previous.as_deref(), &timeline, filter).await?;
        let viewer = Some(Viewer { user_id, device_id: &requester.device_id });
        let (timeline_section, state_section) =
            self.timeline_and_state(&timeline, limited, &state_events, viewer).await?;
        let mut entry = object([
            ("timeline", timeline_section),
            ("state", state_section),
            ("account_data", json!({ "events": [] })),
        ]);
        if let Some(first) = timeline.first() {
            entry["timeline"]["prev_batch"] = pagination_token(first.stream_pos.prev()).into();
        }
        Ok(Some(entry))
    }

    /// `m.heroes` and member counts, for clients that compute room names.
    async fn room_summary(&self, room_id: &RoomId, user_id: &UserId) -> MatrixResult<Value> {
        let members = self.store.room_members(room_id, None).await?;
        let joined = members.iter().filter(|m| m.membership == Membership::Join).count();
        let invited = members.iter().filter(|m| m.membership == Membership::Invite).count();
        let heroes: Vec<&str> = members
            .iter()
            .filter(|m| m.user_id != user_id && matches!(m.membership, Membership::Join | Membership::Invite))
            .take(5)
            .map(|m| m.user_id.as_str())
            .collect();
        Ok(json!({ "m.heroes": heroes, "m.joined_member_count": joined, "m.invited_member_count": invited }))
    }

    /// Stripped state for invites and knocks, plus the membership event itself.
    pub async fn stripped_state(&self, room_id: &RoomId, membership_event_id: &EventId) -> MatrixResult<Vec<Value>> {
        // A room this server is not in: the state another server sent with the invite or knock.
        if let Some(ev) = self.event(membership_event_id).await?
            && let Some(user_id) = ev.state_key.as_deref().and_then(|k| UserId::parse(k).ok())
            && let Some(mut kept) = self.kept_stripped_state(room_id, &user_id, membership_event_id).await?
        {
            let v: Value = serde_json::from_str(&ev.json).unwrap_or(Value::Null);
            kept.push(json!({
                "type": ev.event_type, "state_key": ev.state_key, "sender": ev.sender,
                "content": v.get("content").cloned().unwrap_or(Value::Null),
            }));
            return Ok(kept);
        }
        let state = self.current_state(room_id).await?;
        let mut ids: Vec<OwnedEventId> = [
            StateEventType::RoomCreate,
            StateEventType::RoomJoinRules,
            StateEventType::RoomName,
            StateEventType::RoomAvatar,
            StateEventType::RoomCanonicalAlias,
            StateEventType::RoomEncryption,
            StateEventType::RoomTopic,
        ]
        .into_iter()
        .filter_map(|t| state.get(&(t, String::new())).cloned())
        .collect();
        let membership_event = self.event(membership_event_id).await?;
        if let Some(ev) = &membership_event
            && let Some(sender_member) = state.get(&(StateEventType::RoomMember, ev.sender.to_string()))
        {
            ids.push(sender_member.clone());
        }
        ids.push(membership_event_id.to_owned());
        let events = self.events(&ids).await?;
        Ok(events
            .iter()
            .filter_map(|ev| {
                let v: Value = serde_json::from_str(&ev.json).ok()?;
                Some(json!({
                    "type": ev.event_type, "state_key": ev.state_key, "sender": ev.sender, "content": v.get("content")?,
                }))
            })
            .collect())
    }

    /// `POST /user/{userId}/filter`: stores a filter of the requester; returns its id.
    pub async fn create_filter(
        &self,
        requester: &Requester,
        user_id: &UserId,
        filter: &Filter,
    ) -> MatrixResult<String> {
        requester.require_self(user_id, "create filters")?;
        let json = serde_json::to_string(filter).map_err(|e| MatrixError::bad_json(e.to_string()))?;
        if json.len() > MAX_FILTER_BYTES {
            return Err(MatrixError::new(myelin_core::ErrorCode::TooLarge, "Filter is too large"));
        }
        Ok(self.store.create_filter(user_id, json).await?.to_string())
    }

    /// `GET /user/{userId}/filter/{filterId}`.
    pub async fn get_filter(&self, requester: &Requester, user_id: &UserId, filter_id: &str) -> MatrixResult<Value> {
        requester.require_self(user_id, "read filters")?;
        let id: i64 = filter_id.parse().map_err(|_| MatrixError::not_found("No such filter"))?;
        let json = self.store.get_filter(user_id, id).await?.ok_or_else(|| MatrixError::not_found("No such filter"))?;
        serde_json::from_str(&json).map_err(|e| MatrixError::internal(e.to_string()))
    }

    /// Loads a filter given inline (`{...}`) or by id.
    pub async fn resolve_filter(&self, user_id: &UserId, filter: Option<&str>) -> MatrixResult<Filter> {
        let Some(filter) = filter.map(str::trim).filter(|f| !f.is_empty()) else { return Ok(Filter::default()) };
        let json = if filter.starts_with('{') {
            filter.to_owned()
        } else {
            let id: i64 = filter.parse().map_err(|_| MatrixError::invalid_param("Invalid filter id"))?;
            self.store.get_filter(user_id, id).await?.ok_or_else(|| MatrixError::not_found("No such filter"))?
        };
        serde_json::from_str(&json).map_err(|e| MatrixError::bad_json(format!("Invalid filter: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use myelin_core::StreamPos;

    use super::{SyncToken, pagination_token, parse_pagination_token};

    #[test]
    fn sync_tokens_round_trip_and_refuse_what_this_server_never_wrote() {
        let plain = SyncToken { pos: StreamPos(42), typing: 7, to_device: None };
        assert_eq!(plain.render(), "s42_7");
        assert_eq!(SyncToken::parse("s42_7"), Some(plain));
        // To-device behind the stream: kept in the token until delivery catches up.
        let behind = SyncToken { pos: StreamPos(42), typing: 7, to_device: Some(StreamPos(40)) };
        assert_eq!(behind.render(), "s42_7_40");
        assert_eq!(SyncToken::parse("s42_7_40"), Some(behind));
        assert_eq!(behind.to_device_acked(), StreamPos(40));
        let caught_up = SyncToken { to_device: Some(StreamPos(42)), ..behind };
        assert_eq!(caught_up.render(), "s42_7", "to-device at the head needs no third part");
        assert_eq!(SyncToken::parse("s5"), Some(SyncToken { pos: StreamPos(5), typing: 0, to_device: None }));
        for bad in ["", "42_7", "s", "s-1_0", "sx_1", "s4_x", "s4_1_5", "s4_1_-1", "s4_1_2_3", "t4"] {
            assert_eq!(SyncToken::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn pagination_tokens_accept_their_own_form_and_sync_tokens() {
        assert_eq!(pagination_token(StreamPos(17)), "t17");
        assert_eq!(parse_pagination_token("t17"), Some(StreamPos(17)));
        assert_eq!(parse_pagination_token("s17_3"), Some(StreamPos(17)), "a sync's prev_batch and next_batch");
        assert_eq!(parse_pagination_token("tx"), None);
        assert_eq!(parse_pagination_token("17"), None);
    }
}
