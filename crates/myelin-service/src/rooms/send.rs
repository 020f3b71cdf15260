//! The send pipeline: every local event goes through `send_event`, which holds the room's lock
//! while it builds the PDU on the forward extremities, signs it, checks it against the auth rules
//! with ruma's state resolution crate, persists it atomically and wakes the syncs that must see it.

use std::{collections::HashMap, sync::Arc};

use myelin_core::{
    ErrorCode, MatrixError, MatrixResult, Membership, StateKey, StateMap,
    types::{
        DeviceId, EventId, OwnedEventId, OwnedRoomId, OwnedServerName, OwnedTransactionId, OwnedUserId, RoomId,
        RoomVersionId, StateEventType, TimelineEventType, UserId, state_event_type,
    },
};
use myelin_storage::{
    Change, EventState, MemberRecord, MembershipUpdate, NewEvent, NewRoom, PendingPersist, PersistOutcome,
    PushActionRecord, StoredEvent,
};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, events::relation::RelationType, room_version_rules::RoomVersionRules,
    state_res,
};
use serde_json::Value;

use super::{RoomHead, version_rules};
use crate::{
    Services,
    accounts::Requester,
    pdu::{self, Pdu},
    push,
    ratelimit::Limit,
};

/// Maximum size of an event's JSON, from the specification.
const MAX_PDU_BYTES: usize = 65_536;
/// Prev events referenced at most (the newest extremities win).
const MAX_PREV_EVENTS: usize = 10;
/// Rebuilds of one event when other processes keep moving the room's head under it.
const MAX_STALE_HEAD_RETRIES: usize = 20;

/// What a client (or the server on its behalf) asks to send.
#[derive(Clone, Debug)]
pub struct EventSpec {
    pub event_type: TimelineEventType,
    pub state_key: Option<String>,
    pub content: Value,
    pub redacts: Option<OwnedEventId>,
    pub txn_id: Option<OwnedTransactionId>,
    /// Sent as a sticky event (MSC4354) for this long (at most an hour).
    pub sticky_duration_ms: Option<u64>,
    /// The `origin_server_ts` an application service asked for (`ts`), else now.
    pub origin_server_ts: Option<u64>,
}

impl EventSpec {
    /// A message-like event.
    pub fn message(event_type: TimelineEventType, content: Value) -> Self {
        Self {
            event_type,
            state_key: None,
            content,
            redacts: None,
            txn_id: None,
            sticky_duration_ms: None,
            origin_server_ts: None,
        }
    }

    /// A state event.
    pub fn state(event_type: StateEventType, state_key: impl Into<String>, content: Value) -> Self {
        Self {
            event_type: event_type.into(),
            state_key: Some(state_key.into()),
            content,
            redacts: None,
            txn_id: None,
            sticky_duration_ms: None,
            origin_server_ts: None,
        }
    }

    /// The same, sent under a client's transaction id.
    pub fn with_txn(mut self, txn_id: OwnedTransactionId) -> Self {
        self.txn_id = Some(txn_id);
        self
    }

    /// The same, sticky for `duration_ms` (MSC4354; capped at an hour).
    pub fn sticky(mut self, duration_ms: Option<u64>) -> Self {
        self.sticky_duration_ms = duration_ms.map(|d| d.min(crate::sticky_events::MAX_STICKY_DURATION_MS));
        self
    }

    /// The same, with this `origin_server_ts` (an application service's `ts`, bridging a
    /// message sent earlier elsewhere).
    pub fn at(mut self, origin_server_ts: u64) -> Self {
        self.origin_server_ts = Some(origin_server_ts);
        self
    }
}

/// An event built, authorised and queued for persistence.
pub(super) struct Built {
    event_id: OwnedEventId,
    room_id: OwnedRoomId,
    pending: PendingPersist,
    /// Users whose syncs must wake once it is durable.
    wake: Vec<OwnedUserId>,
    /// The state entry it sets, if it is a state event.
    state_change: Option<(StateKey, OwnedEventId)>,
    /// Other servers it goes to (queued in the federation outbox with it).
    destinations: Vec<OwnedServerName>,
    /// A state event, known to the room's next events until it is durable.
    queued_state: Option<Pdu>,
    /// It notifies someone: their push job may have been queued with it.
    notifies: bool,
}

/// Everything an event is built from (`build_and_enqueue`).
struct Draft<'a> {
    rules: &'a RoomVersionRules,
    room_version: &'a RoomVersionId,
    /// `None` for the create event of a new room.
    room_id: Option<&'a RoomId>,
    sender: &'a UserId,
    device_id: Option<&'a DeviceId>,
    spec: EventSpec,
    /// The room state the event is authorised against.
    state: &'a StateMap,
    prev_events: Vec<OwnedEventId>,
    prev_depth: i64,
    /// Milliseconds added to the timestamp (a retried create event must hash differently).
    ts_bump: u64,
    /// The extremities the event was built on, checked again when it is written.
    expected_extremities: Option<Vec<OwnedEventId>>,
    /// The head's servers of a room with partial state (events go to them too).
    partial_servers: Option<&'a [OwnedServerName]>,
    /// Read the joined members from the database, not from memory (a retry after another
    /// process wrote to the room: its membership changes may not have been heard of yet).
    fresh_members: bool,
}

impl Services {
    /// Sends an event for a client: a repeated transaction id answers the first event (and takes
    /// no rate-limit token); otherwise the sender's message rate limit applies.
    pub async fn send_client_event(
        &self,
        requester: &Requester,
        room_id: &RoomId,
        spec: EventSpec,
    ) -> MatrixResult<OwnedEventId> {
        self.send_event_for(requester, room_id, spec, true).await
    }

    /// Sends an event for a user's device as a client request would (membership changes
    /// included); `rate_limited` is false for what the server sends for them later (delayed
    /// events, whose scheduling was rate-limited).
    pub(crate) async fn send_event_for(
        &self,
        requester: &Requester,
        room_id: &RoomId,
        spec: EventSpec,
        rate_limited: bool,
    ) -> MatrixResult<OwnedEventId> {
        if spec.event_type == TimelineEventType::RoomRedaction {
            return Err(MatrixError::invalid_param("Use the /redact endpoint to redact events"));
        }
        if spec.event_type == TimelineEventType::RoomCreate {
            return Err(MatrixError::forbidden("The create event cannot be replaced"));
        }
        if spec.event_type == TimelineEventType::RoomCanonicalAlias {
            self.check_canonical_aliases(room_id, &spec.content).await?;
        }
        if spec.event_type == TimelineEventType::RoomMember {
            let target =
                spec.state_key.as_deref().ok_or_else(|| MatrixError::bad_json("A member event needs a state key"))?;
            let target =
                UserId::parse(target).map_err(|_| MatrixError::invalid_param("Invalid user id in state key"))?;
            let membership = spec
                .content
                .get("membership")
                .and_then(Value::as_str)
                .ok_or_else(|| MatrixError::bad_json("membership is required"))?
                .parse::<Membership>()
                .map_err(|e| MatrixError::bad_json(e.to_string()))?;
            let change = super::MembershipChange::new(&requester.user_id, room_id, &target, membership)
                .from_device(&requester.device_id)
                .with_content(spec.content.as_object().cloned().unwrap_or_default());
            if rate_limited {
                self.check_rate_limit(Limit::Messages, requester.user_id.as_str())?;
            }
            return self.update_membership(change).await;
        }
        let closes_to_guests = spec.event_type == TimelineEventType::RoomGuestAccess
            && spec.content.get("guest_access").and_then(Value::as_str) != Some("can_join");
        let event_id = self
            .send_event(&requester.user_id, Some(&requester.device_id), Target::Existing(room_id), spec, rate_limited)
            .await?
            .0;
        if closes_to_guests {
            self.remove_guests(room_id).await;
        }
        Ok(event_id)
    }

    /// Sends an event on behalf of the server (no rate limit): profile propagation, room set-up.
    pub async fn send(
        &self,
        sender: &UserId,
        device_id: Option<&DeviceId>,
        room_id: &RoomId,
        spec: EventSpec,
    ) -> MatrixResult<OwnedEventId> {
        Ok(self.send_event(sender, device_id, Target::Existing(room_id), spec, false).await?.0)
    }

    /// Redacts `target` in `room_id` if the sender sent it or has the `redact` power level.
    pub async fn redact_event(
        &self,
        requester: &Requester,
        room_id: &RoomId,
        target: &EventId,
        reason: Option<String>,
        txn_id: OwnedTransactionId,
    ) -> MatrixResult<OwnedEventId> {
        let sender = requester.user_id.as_ref();
        let target_event = self.event(target).await?;
        if let Some(ev) = &target_event
            && ev.room_id != room_id
        {
            return Err(MatrixError::not_found("Event not found in this room"));
        }
        if let Some(ev) = &target_event
            && ev.sender != sender
        {
            let power = self.power_levels(room_id).await?;
            if power.user_level(sender) < power.action_level("redact") {
                return Err(MatrixError::forbidden("You don't have permission to redact this event"));
            }
        }
        let mut content = serde_json::json!({});
        if let Some(reason) = reason {
            content["reason"] = reason.into();
        }
        let spec = EventSpec {
            event_type: TimelineEventType::RoomRedaction,
            state_key: None,
            content,
            redacts: Some(target.to_owned()),
            txn_id: Some(txn_id),
            sticky_duration_ms: None,
            origin_server_ts: None,
        };
        Ok(self.send_event(sender, Some(&requester.device_id), Target::Existing(room_id), spec, true).await?.0)
    }

    /// The pipeline. Returns (event id, room id) once the event is durable.
    pub(super) async fn send_event(
        &self,
        sender: &UserId,
        device_id: Option<&DeviceId>,
        target: Target<'_>,
        spec: EventSpec,
        rate_limited: bool,
    ) -> MatrixResult<(OwnedEventId, OwnedRoomId)> {
        match target {
            Target::NewRoom { version } => self.send_create_event(sender, device_id, version, spec).await,
            Target::Existing(room_id) => {
                // One request per transaction id at a time, from the check until the commit.
                let txn_key = match (device_id, &spec.txn_id) {
                    (Some(device), Some(txn)) => Some(format!("{sender}\u{0}{device}\u{0}{txn}")),
                    _ => None,
                };
                let _txn_guard = match &txn_key {
                    Some(key) => Some(self.locks.lock(&format!("txn\u{0}{key}")).await),
                    None => None,
                };
                // A retry of a transaction this process sent is answered from memory. Any other
                // (one sent through another process, or long ago) is found when the event is
                // written, which answers with the event first sent (`DuplicateTxn`).
                if let Some(key) = &txn_key
                    && let Some(existing) = self.sent_txns.get(key)
                {
                    return Ok((existing, room_id.to_owned()));
                }
                if rate_limited {
                    self.check_rate_limit(Limit::Messages, sender.as_str())?;
                }
                let sent = self.send_to_room(sender, device_id, room_id, spec).await?;
                if let Some(key) = txn_key {
                    self.sent_txns.insert(key, sent.0.clone(), 1);
                }
                // A user's own send (not the server's on their behalf) is activity.
                if rate_limited && let Err(err) = self.presence_active(sender).await {
                    tracing::warn!(%err, "could not record presence activity");
                }
                Ok(sent)
            }
        }
    }

    /// The create event of a new room. In room v12 the room id is the create event's hash: two
    /// identical create events in the same millisecond would collide, so a retry is one
    /// millisecond later.
    async fn send_create_event(
        &self,
        sender: &UserId,
        device_id: Option<&DeviceId>,
        version: &RoomVersionId,
        spec: EventSpec,
    ) -> MatrixResult<(OwnedEventId, OwnedRoomId)> {
        let (_, rules) = version_rules(version.as_str())?;
        for attempt in 0..5 {
            let draft = Draft {
                rules: &rules,
                room_version: version,
                room_id: None,
                sender,
                device_id,
                spec: spec.clone(),
                state: &StateMap::new(),
                prev_events: Vec::new(),
                prev_depth: 0,
                ts_bump: attempt,
                expected_extremities: None,
                partial_servers: None,
                fresh_members: true,
            };
            let built = self.build_and_enqueue(draft).await?;
            match built.pending.await {
                Ok(PersistOutcome::Persisted { .. }) => {
                    self.metrics.events_persisted.inc();
                    self.notifier.notify_users(&built.wake);
                    return Ok((built.event_id, built.room_id));
                }
                Ok(PersistOutcome::DuplicateTxn { event_id }) => return Ok((event_id, built.room_id)),
                Ok(PersistOutcome::StaleHead) => continue,
                Err(err) if err.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(MatrixError::new(ErrorCode::RoomInUse, "Could not allocate a room id; try again"))
    }

    /// An event of an existing room, built on its head (retried when another process moved it).
    async fn send_to_room(
        &self,
        sender: &UserId,
        device_id: Option<&DeviceId>,
        room_id: &RoomId,
        spec: EventSpec,
    ) -> MatrixResult<(OwnedEventId, OwnedRoomId)> {
        for attempt in 0..MAX_STALE_HEAD_RETRIES {
            if attempt >= 3 {
                // Another process keeps winning the room: back off a little.
                let jitter = self.random.next_u64() % 20;
                tokio::time::sleep(std::time::Duration::from_millis(jitter + attempt as u64)).await;
            }
            let built = {
                // The room lock covers building and queuing only: the commit is awaited outside
                // it, so a busy room's events share one group commit.
                let _room_guard = self.locks.lock(room_id.as_str()).await;
                let (head, head_read) = self.room_head_and_whether_read(room_id).await?;
                if let Some(existing) = self.same_state_again(&head, sender, &spec).await? {
                    return Ok((existing, room_id.to_owned()));
                }
                let mut extremities = head.extremities.clone();
                extremities.sort_by_key(|(_, depth)| std::cmp::Reverse(*depth));
                let prevs: Vec<(OwnedEventId, i64)> = extremities.iter().take(MAX_PREV_EVENTS).cloned().collect();
                let depth = prevs.iter().map(|(_, d)| *d).max().unwrap_or(0);
                let draft = Draft {
                    rules: &head.rules,
                    room_version: &head.room_version,
                    room_id: Some(room_id),
                    sender,
                    device_id,
                    spec: spec.clone(),
                    state: &head.state,
                    prev_events: prevs.iter().map(|(id, _)| id.clone()).collect(),
                    prev_depth: depth,
                    ts_bump: 0,
                    expected_extremities: Some(head.extremities.iter().map(|(id, _)| id.clone()).collect()),
                    partial_servers: head.partial_servers.as_deref(),
                    // A head just read may hold another process's membership change that this
                    // one has not heard of yet: its members are read too.
                    fresh_members: attempt > 0 || head_read,
                };
                let built = self.build_and_enqueue(draft).await?;
                self.heads.advance(room_id, &head, &built.event_id, depth + 1, &prevs, built.state_change.clone());
                if let Some(pdu) = &built.queued_state {
                    self.heads.queue_state(pdu.clone());
                }
                built
            };
            let outcome = built.pending.await;
            if !matches!(outcome, Ok(PersistOutcome::Persisted { .. })) {
                // The cached head names the event that was not written: drop the head before
                // the event stops being readable from the queue.
                self.heads.cache.invalidate(&room_id.to_owned());
            }
            if built.queued_state.is_some() {
                self.heads.unqueue_state(&built.event_id);
            }
            match outcome {
                Ok(PersistOutcome::Persisted { .. }) => {
                    self.metrics.events_persisted.inc();
                    self.drop_redacted_from_caches(&spec);
                    // Other processes drop their copy of the room's head.
                    self.invalidate_elsewhere(&self.heads.cache, &room_id.to_owned());
                    self.notifier.notify_users(&built.wake);
                    self.wake_senders(&built.destinations).await?;
                    if built.notifies {
                        self.jobs_queued.notify_one();
                    }
                    if let Some(state_key) = &spec.state_key {
                        self.state_written(room_id, &spec.event_type.to_string(), state_key, sender).await;
                    }
                    return Ok((built.event_id, built.room_id));
                }
                Ok(PersistOutcome::DuplicateTxn { event_id }) => {
                    self.heads.cache.invalidate(&room_id.to_owned());
                    return Ok((event_id, built.room_id));
                }
                // Another process wrote to the room since our head was loaded: reload the head
                // and build the event again (auth included) on the new one.
                Ok(PersistOutcome::StaleHead) => {
                    tracing::info!(%room_id, attempt, "room head moved under the event (another process wrote); rebuilding");
                    self.heads.cache.invalidate(&room_id.to_owned());
                }
                Err(e) => {
                    self.heads.cache.invalidate(&room_id.to_owned());
                    // The commit may have happened (a connection lost during COMMIT).
                    self.drop_redacted_from_caches(&spec);
                    return Err(e.into());
                }
            }
        }
        Err(MatrixError::new(ErrorCode::Unknown, "The room is too busy; try again").with_status(503))
    }

    /// A redaction changes its target's row: this process and the others drop it from their
    /// event caches.
    fn drop_redacted_from_caches(&self, spec: &EventSpec) {
        if let Some(redacted) = &spec.redacts {
            self.invalidate(&self.events_cache, redacted);
        }
    }

    /// `origin_server_ts` for a new event. Create events get strictly increasing timestamps in
    /// this process, because in room v12 the room id is the create event's hash and two identical
    /// create events in one millisecond would name the same room.
    fn event_timestamp(&self, event_type: &TimelineEventType, bump: u64) -> u64 {
        use std::sync::atomic::Ordering;
        let now = self.clock.now_ms() + bump;
        if *event_type != TimelineEventType::RoomCreate {
            return now;
        }
        let mut last = self.last_create_ts.load(Ordering::Relaxed);
        loop {
            let next = now.max(last + 1);
            match self.last_create_ts.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return next,
                Err(current) => last = current,
            }
        }
    }

    /// The room's forward extremities and current state, from the cache or storage.
    pub(crate) async fn room_head(&self, room_id: &RoomId) -> MatrixResult<Arc<RoomHead>> {
        Ok(self.room_head_and_whether_read(room_id).await?.0)
    }

    /// The room's head, and whether it was read from the database just now (rather than kept).
    async fn room_head_and_whether_read(&self, room_id: &RoomId) -> MatrixResult<(Arc<RoomHead>, bool)> {
        let key = room_id.to_owned();
        if let Some(head) = self.heads.cache.get(&key) {
            return Ok((head, false));
        }
        let epoch = self.heads.cache.epoch();
        let room = self.store.get_room(room_id).await?.ok_or_else(|| MatrixError::not_found("Unknown room"))?;
        let (_, rules) = version_rules(room.room_version.as_str())?;
        let state = self.current_state(room_id).await?;
        let extremities =
            self.store.forward_extremities(room_id).await?.into_iter().map(|e| (e.event_id, e.depth)).collect();
        let partial_servers = self.store.partial_state(room_id).await?.map(|p| p.servers);
        let head = Arc::new(RoomHead {
            room_version: room.room_version,
            rules,
            state: Arc::new(state),
            extremities,
            partial_servers,
        });
        self.heads.cache.insert_if_current(key, head.clone(), 1, epoch);
        Ok((head, true))
    }

    pub async fn current_state(&self, room_id: &RoomId) -> MatrixResult<StateMap> {
        Ok(self.store.current_state_ids(room_id).await?.into_iter().map(|(t, k, e)| ((t, k), e)).collect())
    }

    async fn build_and_enqueue(&self, draft: Draft<'_>) -> MatrixResult<Built> {
        let Draft {
            rules,
            room_version,
            room_id,
            sender,
            device_id,
            spec,
            state,
            prev_events,
            prev_depth,
            ts_bump,
            expected_extremities,
            partial_servers,
            fresh_members,
        } = draft;
        let mut content = spec.content;
        if !content.is_object() {
            return Err(MatrixError::bad_json("Event content must be a JSON object"));
        }
        if let Some(redacts) = &spec.redacts
            && rules.redaction.content_field_redacts
        {
            content["redacts"] = redacts.to_string().into();
        }
        let content_raw =
            serde_json::value::to_raw_value(&content).map_err(|e| MatrixError::bad_json(e.to_string()))?;
        let auth_types = state_res::auth_types_for_event(
            &spec.event_type,
            sender,
            spec.state_key.as_deref(),
            &content_raw,
            &rules.authorization,
        )
        .map_err(|e| MatrixError::bad_json(format!("Invalid event content: {e}")))?;
        let auth_ids: Vec<OwnedEventId> = auth_types.iter().filter_map(|key| state.get(key).cloned()).collect();
        // The create event is needed by the state-dependent rules even where it is not an auth
        // event (v12).
        let create_key: StateKey = (StateEventType::RoomCreate, String::new());
        let mut wanted = auth_ids.clone();
        if let Some(create_id) = state.get(&create_key)
            && !wanted.contains(create_id)
        {
            wanted.push(create_id.clone());
        }
        let auth_state: HashMap<StateKey, Pdu> = self
            .state_pdus(&wanted)
            .await?
            .into_iter()
            .map(|pdu| ((state_event_type(&pdu.kind), pdu.state_key.clone().unwrap_or_default()), pdu))
            .collect();

        let ts = match spec.origin_server_ts {
            // Never for a create event: its timestamp is part of how a room id is made unique.
            Some(ts) if spec.event_type != TimelineEventType::RoomCreate => ts,
            _ => self.event_timestamp(&spec.event_type, ts_bump),
        };
        let mut object = assemble_pdu(PduFields {
            rules,
            room_id,
            sender,
            event_type: &spec.event_type,
            state_key: spec.state_key.as_deref(),
            redacts: spec.redacts.as_deref(),
            content: &content,
            auth_events: &auth_ids,
            prev_events: &prev_events,
            depth: prev_depth + 1,
            origin_server_ts: ts,
        })?;
        if let Some(duration_ms) = spec.sticky_duration_ms {
            object.insert(crate::sticky_events::PDU_FIELD.into(), crate::sticky_events::pdu_field(duration_ms));
        }
        if room_id.is_none() && !rules.authorization.room_create_event_id_as_room_id {
            let room_id = format!("!{}:{}", self.random.alphanumeric(18), self.server_name);
            object.insert("room_id".into(), CanonicalJsonValue::String(room_id));
        }
        let event_id = pdu::sign_and_id(&mut object, rules, &self.server_name, &self.keys, self.random.as_ref())?;
        let room_id: OwnedRoomId = match room_id {
            Some(id) => id.to_owned(),
            None => {
                let id = match object.get("room_id") {
                    Some(CanonicalJsonValue::String(id)) => id.clone(),
                    // v12: the room id is the create event's reference hash.
                    _ => format!("!{}", event_id.as_str().trim_start_matches('$')),
                };
                OwnedRoomId::try_from(id).map_err(|e| MatrixError::internal(format!("made an invalid room id: {e}")))?
            }
        };
        let mut json = serde_json::to_string(&object).map_err(|e| MatrixError::internal(e.to_string()))?;
        if json.len() > MAX_PDU_BYTES {
            return Err(MatrixError::new(ErrorCode::TooLarge, "Event is larger than 64 KiB"));
        }
        let pdu = Pdu::from_json(&event_id, &json)?;
        state_res::check_state_independent_auth_rules(&rules.authorization, &pdu, |id| {
            auth_state.values().find(|p| p.event_id == *id).cloned()
        })
        .map_err(|e| MatrixError::forbidden(format!("Event not allowed: {e}")))?;
        state_res::check_state_dependent_auth_rules(&rules.authorization, &pdu, |t: &StateEventType, k: &str| {
            auth_state.get(&(t.clone(), k.to_owned())).cloned()
        })
        .map_err(|e| MatrixError::forbidden(format!("Event not allowed: {e}")))?;

        // An invite of a user of another server is countersigned by that server before it is stored.
        if spec.event_type == TimelineEventType::RoomMember
            && content.get("membership").and_then(Value::as_str) == Some("invite")
            && let Some(invitee) = spec.state_key.as_deref().and_then(|k| UserId::parse(k).ok())
            && !self.is_local_user(&invitee)
        {
            let signed = self.countersign_invite(&room_id, room_version, &event_id, &object, state, sender).await?;
            json = serde_json::to_string(&signed).map_err(|e| MatrixError::internal(e.to_string()))?;
        }

        let membership = match (&spec.event_type, &spec.state_key) {
            (TimelineEventType::RoomMember, Some(target)) => Some(MembershipUpdate {
                user_id: UserId::parse(target).map_err(|_| MatrixError::invalid_param("Invalid member state key"))?,
                // Checked by the auth rules: one of the five.
                membership: content
                    .get("membership")
                    .and_then(Value::as_str)
                    .and_then(|m| m.parse().ok())
                    .unwrap_or(Membership::Leave),
                displayname: content.get("displayname").and_then(Value::as_str).map(str::to_owned),
                avatar_url: content.get("avatar_url").and_then(Value::as_str).map(str::to_owned),
            }),
            _ => None,
        };
        let relation = crate::federation::relation_of(&content);
        let is_create = spec.event_type == TimelineEventType::RoomCreate;
        let joined = if is_create { Arc::default() } else { self.recipients_joined(&room_id, fresh_members).await? };
        let mut destinations = self.destinations_for(&joined, membership.as_ref().map(|m| m.user_id.as_ref()));
        // A room joined with partial state: the members known do not name every server.
        if let Some(servers) = partial_servers {
            destinations.extend(servers.iter().filter(|s| **s != self.server_name).cloned());
            destinations.sort();
            destinations.dedup();
        }
        let power_ctx = push_power_levels(rules, &auth_state);
        let pushed = PushedEvent {
            room_id: &room_id,
            json: &json,
            sender,
            membership: membership.as_ref(),
            relation: relation.as_ref(),
            power_levels: power_ctx.as_ref(),
        };
        let push_actions = self.push_actions(&pushed, &joined, joined.len()).await?;
        let notifies = !push_actions.is_empty();
        let appservices = self.appservices_interested(&room_id, sender, spec.state_key.as_deref(), &joined).await?;
        let notifies = notifies || !appservices.is_empty();
        let new_event = NewEvent {
            event_id: event_id.clone(),
            room_id: room_id.clone(),
            sender: sender.to_owned(),
            event_type: spec.event_type.clone(),
            state_key: spec.state_key.clone(),
            origin_server_ts: u64::from(pdu.origin_server_ts.0),
            depth: prev_depth + 1,
            json,
            prev_events,
            txn: device_id.map(ToOwned::to_owned).zip(spec.txn_id.clone()),
            redacts: spec.redacts.clone(),
            relation,
            membership: membership.clone(),
            new_room: is_create.then(|| NewRoom { room_version: room_version.clone(), creator: sender.to_owned() }),
            join_rule: (spec.event_type == TimelineEventType::RoomJoinRules)
                .then(|| content.get("join_rule").and_then(Value::as_str).unwrap_or("invite").to_owned()),
            push_actions,
            expected_extremities,
            state: EventState::Current,
            member_changes: Vec::new(),
            rejection: None,
            destinations: destinations.clone(),
            appservices,
            sticky_until_ms: spec.sticky_duration_ms.map(|d| ts.saturating_add(d)),
            search: crate::search::search_entry(&spec.event_type, &content),
        };
        let state_change = spec.state_key.clone().map(|k| ((state_event_type(&spec.event_type), k), event_id.clone()));
        let pending = self.store.enqueue_event(new_event);
        let mut wake: Vec<OwnedUserId> = joined.iter().map(|m| m.user_id.clone()).collect();
        if !wake.iter().any(|u| u == sender) {
            wake.push(sender.to_owned());
        }
        if let Some(m) = membership {
            wake.push(m.user_id);
        }
        let queued_state = spec.state_key.is_some().then_some(pdu);
        Ok(Built { event_id, room_id, pending, wake, state_change, destinations, queued_state, notifies })
    }

    /// `m.room.canonical_alias`: each alias it adds (`alias` if changed, `alt_aliases` not in
    /// the current event) must exist and point to this room (400 `M_BAD_ALIAS`), as Synapse
    /// checks; another server's aliases are asked of it.
    async fn check_canonical_aliases(&self, room_id: &RoomId, content: &Value) -> MatrixResult<()> {
        let current = self
            .store
            .current_state_event(room_id, &StateEventType::RoomCanonicalAlias, "")
            .await?
            .map(|ev| Self::event_content(&ev))
            .unwrap_or(Value::Null);
        let mut added: Vec<&str> = Vec::new();
        match content.get("alias") {
            None | Some(Value::Null) => {}
            Some(Value::String(alias)) if current.get("alias").and_then(Value::as_str) == Some(alias) => {}
            Some(Value::String(alias)) => added.push(alias),
            Some(_) => return Err(MatrixError::invalid_param("alias must be a string")),
        }
        let before: Vec<&str> = current
            .get("alt_aliases")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match content.get("alt_aliases") {
            None => {}
            Some(Value::Array(aliases)) => {
                for alias in aliases {
                    let alias =
                        alias.as_str().ok_or_else(|| MatrixError::invalid_param("alt_aliases must be strings"))?;
                    if !before.contains(&alias) {
                        added.push(alias);
                    }
                }
            }
            Some(_) => return Err(MatrixError::invalid_param("The alt_aliases property must be a list")),
        }
        for alias in added {
            let parsed = ruma::RoomAliasId::parse(alias)
                .map_err(|_| MatrixError::invalid_param(format!("{alias:?} is not a room alias")))?;
            let points_here = matches!(self.resolve_alias(&parsed).await, Ok((target, _)) if target == room_id);
            if !points_here {
                return Err(MatrixError::new(
                    ErrorCode::BadAlias,
                    format!("Room alias {alias} does not point to the room"),
                ));
            }
        }
        Ok(())
    }

    /// A state event its sender already set, with the same content, is not sent again (as
    /// Synapse does: clients and bots that re-send state in loops, or join twice, do not flood
    /// the room): the current event's id. Sticky events are always sent.
    async fn same_state_again(
        &self,
        head: &RoomHead,
        sender: &UserId,
        spec: &EventSpec,
    ) -> MatrixResult<Option<OwnedEventId>> {
        let Some(state_key) = &spec.state_key else { return Ok(None) };
        if spec.sticky_duration_ms.is_some() {
            return Ok(None);
        }
        let key = (myelin_core::types::state_event_type(&spec.event_type), state_key.clone());
        let Some(current) = head.state.get(&key) else { return Ok(None) };
        let Some(pdu) = self.state_pdus(std::slice::from_ref(current)).await?.pop() else { return Ok(None) };
        let same = pdu.sender == sender
            && serde_json::from_str::<Value>(pdu.content.get()).is_ok_and(|content| content == spec.content);
        Ok(same.then(|| current.clone()))
    }

    /// The PDUs of state events by id: stored ones, and those built and queued whose commit is
    /// still pending (the room's next event may be built on them).
    async fn state_pdus(&self, ids: &[OwnedEventId]) -> MatrixResult<Vec<Pdu>> {
        // The queue first: an event that leaves it after this look is durable by then, so the
        // store has it. (Store first would race: not yet stored, then unqueued before the queue
        // is looked at, and found in neither.)
        let mut pdus = self.heads.queued_state(&ids.iter().collect::<Vec<_>>());
        let rest: Vec<OwnedEventId> =
            ids.iter().filter(|id| !pdus.iter().any(|p| p.event_id == **id)).cloned().collect();
        if !rest.is_empty() {
            for ev in &self.events(&rest).await? {
                pdus.push(Pdu::from_stored(ev)?);
            }
        }
        Ok(pdus)
    }

    /// The room's joined members, for an event about to be sent: the ones read before while no
    /// membership moved since (the change marks), else read (and kept). Whatever committed up to
    /// the head known when reading is in what the read finds.
    async fn recipients_joined(&self, room_id: &RoomId, fresh: bool) -> MatrixResult<Arc<Vec<MemberRecord>>> {
        let key = room_id.to_owned();
        if !fresh
            && let Some((_, members)) = self.joined_members.get_unchanged(&key, self.store.as_ref(), Change::Membership)
        {
            return Ok(members);
        }
        let read_at = self.store.stream_head();
        let epoch = self.joined_members.epoch();
        let members = Arc::new(self.store.room_members(room_id, Some(Membership::Join)).await?);
        self.joined_members.insert_if_current(key, (read_at, members.clone()), members.len().max(1), epoch);
        Ok(members)
    }

    /// The push actions of an event for its local recipients: the local ones of the joined
    /// members (but its sender) and a local user it invites, each with their own rules;
    /// `member_count` is the room's joined members on every server.
    pub(crate) async fn push_actions(
        &self,
        event: &PushedEvent<'_>,
        joined: &[MemberRecord],
        member_count: usize,
    ) -> MatrixResult<Vec<PushActionRecord>> {
        let local_joined: Vec<&MemberRecord> = joined.iter().filter(|m| self.is_local_user(&m.user_id)).collect();
        let thread_id = event.relation.filter(|(rel, _)| *rel == RelationType::Thread).map(|(_, root)| root.clone());
        let invited = event
            .membership
            .filter(|m| m.membership == Membership::Invite && self.is_local_user(&m.user_id))
            .filter(|m| !local_joined.iter().any(|j| j.user_id == m.user_id))
            .map(|m| (m.user_id.as_ref(), m.displayname.as_deref()));
        let recipients = local_joined
            .iter()
            .map(|m| (m.user_id.as_ref(), m.displayname.as_deref()))
            .chain(invited)
            .filter(|(user_id, _)| *user_id != event.sender);
        let mut actions = Vec::new();
        // Flattened once for every recipient's rules.
        let Some(pushed) = push::PushedJson::parse(event.json) else { return Ok(actions) };
        for (user_id, displayname) in recipients {
            let ruleset = self.push_ruleset(user_id).await?;
            let name = displayname.map_or_else(|| user_id.to_string(), str::to_owned);
            let context = push::EvaluationContext {
                room_id: event.room_id,
                user_id,
                display_name: &name,
                member_count: member_count as u64,
                power_levels: event.power_levels,
            };
            let matched = push::evaluate_actions(&ruleset, &pushed, &context).await;
            if matched.iter().any(|a| a.should_notify()) {
                actions.push(PushActionRecord {
                    user_id: user_id.to_owned(),
                    highlight: matched.iter().any(|a| a.is_highlight()),
                    thread_id: thread_id.clone(),
                    actions: serde_json::to_string(&matched).map_err(|e| MatrixError::internal(e.to_string()))?,
                });
            }
        }
        Ok(actions)
    }

    /// The power levels of a room, with creators privileged where the room version says so.
    pub async fn power_levels(&self, room_id: &RoomId) -> MatrixResult<super::PowerLevels> {
        let pl = self.store.current_state_event(room_id, &StateEventType::RoomPowerLevels, "").await?;
        let content = pl.as_ref().map(Self::event_content);
        let mut creators = Vec::new();
        if let Some(room) = self.store.get_room(room_id).await? {
            let privileged = version_rules(room.room_version.as_str())
                .is_ok_and(|(_, r)| r.authorization.explicitly_privilege_room_creators);
            if privileged || content.is_none() {
                creators.push(room.creator.clone());
                if privileged
                    && let Some(create) =
                        self.store.current_state_event(room_id, &StateEventType::RoomCreate, "").await?
                    && let Some(extra) = Self::event_content(&create)["additional_creators"].as_array()
                {
                    creators.extend(extra.iter().filter_map(|c| c.as_str().and_then(|c| UserId::parse(c).ok())));
                }
            }
        }
        Ok(super::PowerLevels::new(content, creators))
    }

    /// A stored event's content as JSON (`null` if it has none).
    pub fn event_content(ev: &StoredEvent) -> Value {
        #[derive(serde::Deserialize)]
        struct Content {
            #[serde(default)]
            content: Value,
        }
        serde_json::from_str::<Content>(&ev.json).map(|c| c.content).unwrap_or(Value::Null)
    }
}

/// An event as the push rules see it.
pub(crate) struct PushedEvent<'a> {
    pub room_id: &'a RoomId,
    pub json: &'a str,
    pub sender: &'a UserId,
    /// The membership it changes, for a member event.
    pub membership: Option<&'a MembershipUpdate>,
    pub relation: Option<&'a (RelationType, OwnedEventId)>,
    pub power_levels: Option<&'a ruma::push::PushConditionPowerLevelsCtx>,
}

/// The fields of a new PDU, before its hashes and signatures.
pub(crate) struct PduFields<'a> {
    pub rules: &'a RoomVersionRules,
    /// `None` for a create event (its room id depends on the room version).
    pub room_id: Option<&'a RoomId>,
    pub sender: &'a UserId,
    pub event_type: &'a TimelineEventType,
    pub state_key: Option<&'a str>,
    pub redacts: Option<&'a EventId>,
    pub content: &'a Value,
    pub auth_events: &'a [OwnedEventId],
    pub prev_events: &'a [OwnedEventId],
    pub depth: i64,
    pub origin_server_ts: u64,
}

/// A new PDU in the room version's format, unsigned (a local event is signed next; a join
/// template goes to the joining server, which signs it).
pub(crate) fn assemble_pdu(f: PduFields<'_>) -> MatrixResult<CanonicalJsonObject> {
    let mut object = CanonicalJsonObject::new();
    object.insert("auth_events".into(), pdu::event_refs(f.auth_events, f.rules));
    object.insert("content".into(), pdu::to_canonical(f.content.clone())?);
    object.insert("depth".into(), CanonicalJsonValue::Integer(ruma::Int::new_saturating(f.depth)));
    object.insert(
        "origin_server_ts".into(),
        CanonicalJsonValue::Integer(ruma::Int::new_saturating(i64::try_from(f.origin_server_ts).unwrap_or(i64::MAX))),
    );
    object.insert("prev_events".into(), pdu::event_refs(f.prev_events, f.rules));
    if let Some(room_id) = f.room_id {
        object.insert("room_id".into(), CanonicalJsonValue::String(room_id.to_string()));
    }
    object.insert("sender".into(), CanonicalJsonValue::String(f.sender.to_string()));
    object.insert("type".into(), CanonicalJsonValue::String(f.event_type.to_string()));
    if let Some(state_key) = f.state_key {
        object.insert("state_key".into(), CanonicalJsonValue::String(state_key.to_owned()));
    }
    if let Some(redacts) = f.redacts
        && !f.rules.redaction.content_field_redacts
    {
        object.insert("redacts".into(), CanonicalJsonValue::String(redacts.to_string()));
    }
    Ok(object)
}

/// Where a new event goes: an existing room, or the create event of a new one.
pub(super) enum Target<'a> {
    Existing(&'a RoomId),
    NewRoom { version: &'a RoomVersionId },
}

/// The room's power levels as push rule conditions need them (`sender_notification_permission`,
/// e.g. who may notify `@room`), built from the event's auth state.
pub(crate) fn push_power_levels(
    rules: &RoomVersionRules,
    auth_state: &HashMap<StateKey, Pdu>,
) -> Option<ruma::push::PushConditionPowerLevelsCtx> {
    use ruma::events::room::power_levels::{RoomPowerLevels, RoomPowerLevelsEventContent, RoomPowerLevelsSource};
    let create = auth_state.get(&(StateEventType::RoomCreate, String::new()))?;
    let mut creators = vec![create.sender.clone()];
    if rules.authorization.additional_room_creators
        && let Ok(content) = serde_json::from_str::<Value>(create.content.get())
        && let Some(extra) = content.get("additional_creators").and_then(Value::as_array)
    {
        creators.extend(extra.iter().filter_map(|c| c.as_str().and_then(|c| ruma::OwnedUserId::try_from(c).ok())));
    }
    let source = match auth_state.get(&(StateEventType::RoomPowerLevels, String::new())) {
        Some(pl) => serde_json::from_str::<RoomPowerLevelsEventContent>(pl.content.get())
            .map(RoomPowerLevelsSource::Original)
            .unwrap_or_default(),
        None => RoomPowerLevelsSource::None,
    };
    Some(RoomPowerLevels::new(source, &rules.authorization, creators).into())
}
