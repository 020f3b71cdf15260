//! Simplified sliding sync (MSC4186, the unstable `org.matrix.simplified_msc3575` endpoint that
//! Element X uses): a client asks for windows of its room list plus subscriptions, and gets only
//! what it has not yet seen on this connection.
//!
//! - `request.rs`: the request, parsed and bounded.
//! - `connection.rs`: what each connection remembers; stored per (user, device, conn_id) in the
//!   database, the newest and the previous position, so a lost response can be replayed and any
//!   process of a cluster can serve the next request.
//! - `room_list.rs`: the lists: the user's rooms, filtered, sorted by `bump_stamp`, cut to ranges.
//! - `room_result.rs`: one room's entry. `extensions.rs`: to-device, e2ee, account data,
//!   receipts, typing.
//!
//! `pos` is `{generation}.{seq}`, or `{generation}.{seq}.{stream pos}.{typing}` for a stored state
//! moved forward (`connection::Advance`): `generation` is random per connection (a new connection
//! makes every older `pos` unknown), `seq` counts its stored states.

mod connection;
mod extensions;
mod request;
mod room_list;
mod room_result;
mod summaries;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use futures_util::StreamExt;
use myelin_core::{
    ErrorCode, MatrixError, MatrixResult, Membership, StreamPos,
    json::object,
    types::{OwnedEventId, OwnedRoomId, RoomId, UserId},
};
use myelin_storage::{ConnectionKey, StoredConnection, TimelineRequest, UserRoom};
pub use request::SlidingSyncRequest;
pub(crate) use room_list::CachedKind;
use serde_json::{Map, Value, json};
pub(crate) use summaries::CachedMembers;

use self::{
    connection::{Advance, ConnectionState, parse_pos, render_pos},
    extensions::{ExtensionInput, WindowRoom},
    request::RoomConfig,
    room_list::{bump_stamp, in_ranges, listed, matches},
    room_result::{Prefetched, RoomInput, initial_state_ids, timeline_bounds},
    summaries::RoomSummary,
};
use crate::{Services, accounts::Requester};

/// An idle long-poll that returns nothing rewrites the connection row (its `last_used_ms`) at
/// most this often, and at least four times per idle expiry (`limits.sliding_sync_connection_idle_ms`).
const TOUCH_EVERY_MS: i64 = 3600 * 1000;
const ROOM_CONCURRENCY: usize = 16;

pub fn unknown_pos(message: &str) -> MatrixError {
    MatrixError::new(ErrorCode::Other("M_UNKNOWN_POS"), message).with_status(400)
}

/// Which connection a request continues.
fn connection_key(r: &Requester, req: &SlidingSyncRequest) -> ConnectionKey {
    ConnectionKey { user_id: r.user_id.clone(), device_id: r.device_id.clone(), conn_id: req.conn_id.clone() }
}

/// Joined rooms, and rooms left or banned from (shown up to the leave), have a timeline; invites
/// and knocks show stripped state only.
fn has_timeline(room: &UserRoom) -> bool {
    matches!(room.membership, Membership::Join | Membership::Leave | Membership::Ban)
}

/// One computed response, before it is stored.
struct Computed {
    body: Value,
    state: ConnectionState,
    news: bool,
}

/// Where the request starts from: the stored row and which of its two states it continues.
struct Base {
    row: Option<StoredConnection>,
    /// `row` is this process's kept copy, not read from the database for this request.
    kept: bool,
    seq: i64,
    /// How far the client's `pos` moved the stored state forward.
    advance: Option<Advance>,
    state: ConnectionState,
}

impl Services {
    pub async fn sliding_sync(&self, r: &Requester, req: SlidingSyncRequest) -> MatrixResult<Value> {
        // The steps are boxed: a long-poll waits holding only what it needs, not room for them.
        let base = Box::pin(self.sliding_base(r, &req)).await?;
        // Subscribe before reading, so a write between the read and the wait still wakes us.
        let mut wake = self.notifier.subscribe(&r.user_id);
        let timeout = req.timeout.min(std::time::Duration::from_millis(self.config.limits.max_sync_timeout_ms));
        let deadline = tokio::time::Instant::now() + timeout;
        let wait = base.row.is_some() && !timeout.is_zero();
        let mut first_counts: Option<Value> = None;
        // The same request again from the newest position, with everything up to the stream
        // head sent, typing unchanged and the to-device messages all delivered, can have nothing
        // new: it waits before computing anything (as sync v2 does; in a busy room that is every
        // listener's request after each message).
        if wait
            && base.row.as_ref().is_some_and(|row| row.seq == base.seq)
            && base.state.request == req.fingerprint
            && base.state.pos == Some(self.store.stream_head())
            && base.state.typing == self.typing.serial()
            && req.extensions.to_device.as_ref().is_none_or(|t| t.since.is_some() && t.since >= base.state.pos)
        {
            // One-time key counts move without a stream position: their change is news too.
            if req.extensions.e2ee {
                first_counts = Some(self.one_time_key_counts(&r.user_id, &r.device_id).await?);
            }
            tokio::select! {
                _ = wake.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
        loop {
            let started = std::time::Instant::now();
            let computed = Box::pin(self.sliding_once(r, &req, &base.state)).await?;
            let computed_in = started.elapsed();
            let counts = computed.body["extensions"]["e2ee"]["device_one_time_keys_count"].clone();
            let counts_moved = first_counts.as_ref().is_some_and(|first| *first != counts);
            first_counts.get_or_insert(counts);
            if !wait || computed.news || counts_moved || tokio::time::Instant::now() >= deadline {
                let rooms = computed.body["rooms"].as_object().map_or(0, serde_json::Map::len);
                let body = Box::pin(self.sliding_store(r, &req, base, computed)).await?;
                self.metrics.sync_build_time.with(&["sliding_sync"]).observe(started.elapsed());
                tracing::debug!(
                    conn_id = %req.conn_id,
                    rooms,
                    compute_us = computed_in.as_micros() as u64,
                    total_us = started.elapsed().as_micros() as u64,
                    "sliding sync response"
                );
                return Ok(body);
            }
            tokio::select! {
                _ = wake.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// How long a connection may stay unused (`limits.sliding_sync_connection_idle_ms`).
    pub fn sliding_idle_expiry_ms(&self) -> i64 {
        i64::try_from(self.config.limits.sliding_sync_connection_idle_ms).unwrap_or(i64::MAX)
    }

    async fn sliding_base(&self, r: &Requester, req: &SlidingSyncRequest) -> MatrixResult<Base> {
        let Some(pos) = &req.pos else {
            return Ok(Base { row: None, kept: false, seq: 0, advance: None, state: ConnectionState::default() });
        };
        let (generation, seq, advance) = parse_pos(pos).ok_or_else(|| unknown_pos("Malformed pos"))?;
        let key = connection_key(r, req);
        let idle_since = self.now_ms() as i64 - self.sliding_idle_expiry_ms();
        // The row this process last read or saved stands in for the database while it knows the
        // position and has not gone idle: a position's state never changes once stored. A save
        // by another process drops it here (by signal); whether the stored row is still this one
        // is also checked when an answer is stored (`sliding_store`).
        let kept = self
            .sliding_connections
            .get(&key)
            .filter(|row| row.generation == generation && seq == row.seq && row.last_used_ms >= idle_since);
        let from_cache = kept.is_some();
        let row = match kept {
            Some(row) => StoredConnection::clone(&row),
            None => {
                let epoch = self.sliding_connections.epoch();
                let row = self
                    .store
                    .sliding_sync_connection(&key)
                    .await?
                    .filter(|row| row.generation == generation)
                    .ok_or_else(|| unknown_pos("Unknown pos"))?;
                if row.last_used_ms < idle_since {
                    self.sliding_connections.invalidate(&key);
                    self.store.delete_sliding_sync_connection(&key).await?;
                    return Err(unknown_pos("The connection expired"));
                }
                self.keep_connection(key, row.clone(), epoch);
                row
            }
        };
        let json = if seq == row.seq {
            &row.state
        } else if seq == row.prev_seq {
            &row.prev_state // the client lost the newest response: replay from the one before
        } else {
            return Err(unknown_pos("Unknown pos"));
        };
        let stored: ConnectionState =
            serde_json::from_str(json).map_err(|_| unknown_pos("The connection state is unreadable"))?;
        let state = match advance {
            None => stored,
            Some(advance) => stored.advanced(advance).ok_or_else(|| unknown_pos("Unknown pos"))?,
        };
        Ok(Base { seq, advance, state, row: Some(row), kept: from_cache })
    }

    /// Stores the new connection state (unless nothing changed) and finishes the body with `pos`.
    async fn sliding_store(
        &self,
        r: &Requester,
        req: &SlidingSyncRequest,
        base: Base,
        computed: Computed,
    ) -> MatrixResult<Value> {
        let Computed { mut body, state, news } = computed;
        let now_ms = self.now_ms() as i64;
        let key = connection_key(r, req);
        // A row not touched for this long is written again, news or not, so that it never looks
        // idle while in use.
        let touch_every_ms = TOUCH_EVERY_MS.min(self.sliding_idle_expiry_ms() / 4);
        let recently_touched = |row: &StoredConnection| now_ms - row.last_used_ms < touch_every_ms;
        // News that only moves the state forward is not stored: the `pos` says how far (and any
        // process can rebuild the state from it). A live update in a busy room is such news.
        let advance = match &base.row {
            Some(row) if news && (base.seq == row.seq || base.seq == row.prev_seq) && recently_touched(row) => {
                base.state.advance_to(&state)
            }
            _ => None,
        };
        let state_json = || serde_json::to_string(&state).map_err(|e| MatrixError::internal(e.to_string()));
        let mut row = base.row;
        if base.kept && !news {
            // An answer without news writes nothing, and so checks nothing: the kept row is
            // checked against the stored one first. An answer with news is stored with a
            // compare-and-swap on the row, which checks it, or only moves the state forward:
            // then the kept row stands unchecked, as every save elsewhere drops it here (by
            // signal) and the row is touched at least four times per idle expiry.
            let generation = row.as_ref().map(|row| row.generation.clone());
            let epoch = self.sliding_connections.epoch();
            let stored = self
                .store
                .sliding_sync_connection(&key)
                .await?
                .filter(|stored| Some(&stored.generation) == generation.as_ref())
                .ok_or_else(|| unknown_pos("The connection was replaced"))?;
            self.keep_connection(key.clone(), stored.clone(), epoch);
            row = Some(stored);
        }
        let pos = match row {
            Some(row) if advance.is_some() => render_pos(&row.generation, base.seq, advance),
            None => {
                let generation = self.random.alphanumeric(8);
                let new = StoredConnection {
                    generation: generation.clone(),
                    seq: 1,
                    state: state_json()?,
                    prev_seq: 0,
                    prev_state: "{}".to_owned(),
                    last_used_ms: now_ms,
                };
                let epoch = self.sliding_connections.epoch();
                self.store.save_sliding_sync_connection(&key, None, new.clone()).await?;
                self.invalidate_elsewhere(&self.sliding_connections, &key);
                self.keep_connection(key, new, epoch);
                render_pos(&generation, 1, None)
            }
            Some(row) if !news && base.seq == row.seq && recently_touched(&row) => {
                // Nothing new: the same position stays valid, no write.
                render_pos(&row.generation, row.seq, base.advance)
            }
            Some(mut row) => {
                let state_json = state_json()?;
                let mut attempts = 0;
                loop {
                    // From the newest position the old newest becomes the previous one; a replay
                    // of the previous one keeps it and replaces the lost newest.
                    let (prev_seq, prev_state) = if base.seq == row.seq {
                        (row.seq, row.state.clone())
                    } else if base.seq == row.prev_seq {
                        (row.prev_seq, row.prev_state.clone())
                    } else {
                        return Err(unknown_pos("The connection moved on"));
                    };
                    let new = StoredConnection {
                        generation: row.generation.clone(),
                        seq: row.seq + 1,
                        state: state_json.clone(),
                        prev_seq,
                        prev_state,
                        last_used_ms: now_ms,
                    };
                    let expected = Some((row.generation.clone(), row.seq));
                    let epoch = self.sliding_connections.epoch();
                    if self.store.save_sliding_sync_connection(&key, expected, new.clone()).await? {
                        self.invalidate_elsewhere(&self.sliding_connections, &key);
                        self.keep_connection(key, new, epoch);
                        break render_pos(&row.generation, row.seq + 1, None);
                    }
                    // Another request on this connection (a client retry) stored first.
                    attempts += 1;
                    let epoch = self.sliding_connections.epoch();
                    row = match self.store.sliding_sync_connection(&key).await? {
                        Some(fresh) if fresh.generation == row.generation && attempts < 5 => {
                            self.keep_connection(key.clone(), fresh.clone(), epoch);
                            fresh
                        }
                        _ => return Err(unknown_pos("The connection was replaced")),
                    };
                }
            }
        };
        body["pos"] = pos.into();
        if let Some(txn_id) = &req.txn_id {
            body["txn_id"] = txn_id.clone().into();
        }
        Ok(body)
    }

    /// Keeps `row` as this connection's newest known row (not over a newer one of the same
    /// connection kept meanwhile by a concurrent request). Only the newest position is kept: a
    /// replay of the previous one (a lost response, rare) reads the row.
    fn keep_connection(&self, key: ConnectionKey, mut row: StoredConnection, epoch: u64) {
        row.prev_seq = i64::MIN;
        row.prev_state = String::new();
        let weight = row.state.len() + row.generation.len() + 64;
        let newer = |kept: &Arc<StoredConnection>, new: &Arc<StoredConnection>| {
            kept.generation == new.generation && kept.seq > new.seq
        };
        self.sliding_connections.insert_unless_newer(key, Arc::new(row), weight, epoch, None, newer);
    }

    async fn sliding_once(
        &self,
        r: &Requester,
        req: &SlidingSyncRequest,
        base: &ConnectionState,
    ) -> MatrixResult<Computed> {
        let user_id: &UserId = &r.user_id;
        let mut now = self.store.stream_head();
        if base.pos.is_some_and(|p| p > now) {
            // A position from another process that has heard of newer commits than this one.
            now = self.store.refresh_stream_head().await?;
        }
        let typing_now = self.typing.serial();
        let t0 = std::time::Instant::now();
        let rooms = self.user_rooms.get(self.store.as_ref(), user_id, now).await?;
        let t_rooms = t0.elapsed();
        let ignored = self.ignored_users(user_id).await?;

        // Lists: eligible rooms newest first, each list filtered and cut to its ranges.
        let mut eligible: Vec<&UserRoom> =
            rooms.iter().filter(|room| listed(room, user_id, base.pos, now, &ignored)).collect();
        eligible.sort_by(|a, b| bump_stamp(b).cmp(&bump_stamp(a)).then_with(|| a.room_id.cmp(&b.room_id)));
        let facts = self.room_facts(user_id, &eligible, &req.lists, now).await?;
        let mut selected: BTreeMap<&RoomId, (&UserRoom, RoomConfig)> = BTreeMap::new();
        let mut lists = Map::new();
        let mut list_counts = BTreeMap::new();
        // Room → the lists whose ranges hold it (the receipts and typing extensions' scopes).
        let mut in_lists: HashMap<&RoomId, Vec<String>> = HashMap::new();
        for (name, list) in &req.lists {
            let members: Vec<&UserRoom> =
                eligible.iter().copied().filter(|room| matches(&list.filters, room, &facts)).collect();
            for i in in_ranges(&list.ranges, members.len()) {
                let room = members[i];
                in_lists.entry(&room.room_id).or_default().push(name.clone());
                selected
                    .entry(&room.room_id)
                    .and_modify(|(_, config)| config.merge(&list.config))
                    .or_insert_with(|| (room, list.config.clone()));
            }
            lists.insert(name.clone(), json!({ "count": members.len() }));
            list_counts.insert(name.clone(), members.len());
        }
        // Subscriptions: any room the user can see, in a list or not; others are ignored.
        for (room_id, config) in &req.room_subscriptions {
            let Some(room) = rooms.iter().find(|room| &room.room_id == room_id && room.membership_pos <= now) else {
                continue;
            };
            if room.forgotten {
                continue;
            }
            selected
                .entry(&room.room_id)
                .and_modify(|(_, c)| c.merge(config))
                .or_insert_with(|| (room, config.clone()));
        }

        // `m.direct` is read once: by the facts when a list filters on it, here otherwise.
        let dm_rooms = match facts.dm_rooms {
            Some(dm_rooms) => dm_rooms,
            None if selected.is_empty() => Default::default(),
            None => self.dm_rooms(user_id).await?,
        };
        let mut state = ConnectionState {
            pos: Some(now),
            typing: typing_now,
            rooms: base.rooms.clone(),
            configs: base.configs.clone(),
            list_counts,
            request: req.fingerprint,
        };
        let summary_ids: Vec<OwnedRoomId> =
            selected.values().filter(|(room, _)| has_timeline(room)).map(|(room, _)| room.room_id.clone()).collect();
        let summaries = self.room_summaries(user_id, &summary_ids, now).await?;
        let t_summaries = t0.elapsed();
        let prefetched = self.sliding_prefetch(user_id, &selected, base, &summaries, now).await?;
        let t_prefetch = t0.elapsed();
        let mut work = Vec::with_capacity(selected.len());
        for (room, config) in selected.values() {
            let previous = base.rooms.get(&room.room_id).map(|sent| (sent, base.config_of(sent)));
            let input = RoomInput {
                room,
                config,
                previous,
                connection_pos: base.pos,
                now,
                is_dm: dm_rooms.contains(&room.room_id),
                summary: summaries.get(&room.room_id),
                prefetched: &prefetched,
            };
            work.push(
                async move { MatrixResult::Ok((room.room_id.clone(), config, self.sliding_room(r, input).await?)) },
            );
        }
        let mut results = futures_util::stream::iter(work).buffer_unordered(ROOM_CONCURRENCY);
        let mut out_rooms = Map::new();
        let mut new_rooms: HashMap<OwnedRoomId, Vec<OwnedEventId>> = HashMap::new();
        let mut timelines: HashMap<OwnedRoomId, Vec<OwnedEventId>> = HashMap::new();
        while let Some(result) = results.next().await {
            let (room_id, config, mut output) = result?;
            // The timeline the client holds: a smaller limit than before only counts when the
            // room was sent with a gap; otherwise the client still has the larger timeline.
            let previous_limit = base.rooms.get(&room_id).map_or(0, |sent| base.config_of(sent).timeline_limit);
            let kept = if output.entry.is_some() && output.limited { config.timeline_limit } else { previous_limit };
            if kept > config.timeline_limit {
                output.sent.config = state.intern(&RoomConfig { timeline_limit: kept, ..config.clone() });
            } else {
                output.sent.config = state.intern(config);
            }
            if let Some(entry) = output.entry {
                if output.initial {
                    new_rooms.insert(room_id.clone(), output.timeline_ids.clone());
                }
                timelines.insert(room_id.clone(), output.timeline_ids);
                out_rooms.insert(room_id.to_string(), entry);
            }
            state.rooms.insert(room_id, output.sent);
        }
        // Rooms the user no longer has at all (forgotten) are dropped from the connection.
        let present: std::collections::HashSet<&RoomId> =
            rooms.iter().filter(|room| !room.forgotten).map(|room| room.room_id.as_ref()).collect();
        state.rooms.retain(|id, _| present.contains::<RoomId>(id));
        state.compact_configs();

        let t_rooms_done = t0.elapsed();
        let window: Vec<WindowRoom> = selected
            .values()
            .filter(|(room, _)| has_timeline(room))
            .map(|(room, _)| WindowRoom {
                room_id: room.room_id.clone(),
                lists: in_lists.remove::<RoomId>(&room.room_id).unwrap_or_default(),
                subscribed: req.room_subscriptions.contains_key(&room.room_id),
                joined: room.membership == Membership::Join,
            })
            .collect();
        let (extensions, extension_news) = self
            .sliding_extensions(
                r,
                ExtensionInput {
                    requested: &req.extensions,
                    since: base.pos.map(|p| (p, base.typing)),
                    now,
                    rooms: &rooms,
                    window: &window,
                    new_rooms: &new_rooms,
                    timelines: &timelines,
                    previously_sent: &base.rooms,
                },
            )
            .await?;
        tracing::debug!(
            rooms_for_user_us = t_rooms.as_micros() as u64,
            lists_and_summaries_us = t_summaries.as_micros() as u64,
            prefetch_us = t_prefetch.as_micros() as u64,
            room_results_us = t_rooms_done.as_micros() as u64,
            extensions_us = t0.elapsed().as_micros() as u64,
            "sliding sync phases (cumulative)"
        );
        let news = !out_rooms.is_empty() || extension_news || state.list_counts != base.list_counts;
        let body = object([("lists", lists.into()), ("rooms", out_rooms.into()), ("extensions", extensions)]);
        Ok(Computed { body, state, news })
    }

    /// Reads the timelines of every room of the window that has news, and the state events of
    /// the rooms new on the connection, in two reads instead of a few per room.
    async fn sliding_prefetch(
        &self,
        user_id: &UserId,
        selected: &BTreeMap<&RoomId, (&UserRoom, RoomConfig)>,
        base: &ConnectionState,
        summaries: &HashMap<OwnedRoomId, RoomSummary>,
        now: StreamPos,
    ) -> MatrixResult<Prefetched> {
        let mut requests = Vec::new();
        let mut configs = Vec::new();
        for (room, config) in selected.values() {
            if !has_timeline(room) || config.timeline_limit == 0 {
                continue;
            }
            let previous = base.rooms.get(&room.room_id).map(|sent| (sent, base.config_of(sent)));
            let bounds = timeline_bounds(room, previous.as_ref().map(|(s, c)| (*s, c)), config, now);
            let (initial, since, upper) = (bounds.initial, bounds.timeline_since, bounds.upper);
            if since.is_some_and(|s| room.last_event_pos <= s || s >= upper) {
                continue; // nothing new in it
            }
            requests.push(TimelineRequest {
                room_id: room.room_id.clone(),
                upper,
                since,
                limit: config.timeline_limit + 1,
            });
            configs.push((*room, config, initial, upper));
        }
        let mut prefetched = Prefetched::default();
        if requests.is_empty() {
            return Ok(prefetched);
        }
        let timelines = match requests.as_slice() {
            // One room with news, the live update: every listener the event woke asks the same,
            // and while the head stands still the answer cannot change.
            [request] => {
                let key = (request.clone(), self.store.stream_head());
                let timeline = self
                    .sliding_timelines
                    .get_or_read(key, || async {
                        let mut read = self.store.room_timelines(std::slice::from_ref(request)).await?;
                        Ok::<_, MatrixError>(Arc::new(read.pop().unwrap_or_default()))
                    })
                    .await?;
                vec![timeline.as_ref().clone()]
            }
            _ => self.store.room_timelines(&requests).await?,
        };
        let mut ids = Vec::new();
        for ((room, config, initial, upper), timeline) in configs.into_iter().zip(timelines) {
            if initial {
                let state = self.window_state(room, summaries.get(&room.room_id), upper).await?;
                let senders = timeline.iter().map(|e| e.sender.clone()).collect();
                ids.extend(initial_state_ids(config, user_id, &state, &senders));
            }
            prefetched.timelines.insert(room.room_id.clone(), timeline);
        }
        prefetched.events = self.events(&ids).await?.into_iter().map(|e| (e.event_id.clone(), e)).collect();
        Ok(prefetched)
    }
}
