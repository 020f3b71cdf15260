//! The send pipeline: every local event goes through `send_event`, which holds the room's lock
//! while it builds the PDU on the forward extremities, signs it, checks it against the auth rules
//! with ruma's state resolution crate, persists it atomically and wakes the syncs that must see it.

use std::collections::HashMap;

use myelin_core::{ErrorCode, MatrixError, MatrixResult, time::now_ms};
use myelin_storage::{
    MembershipUpdate, NewEvent, NewRoom, PendingPersist, PersistOutcome, PushActionRecord, Signal, StorageError,
    StoredEvent,
};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, UserId,
    events::{StateEventType, TimelineEventType},
    room_version_rules::RoomVersionRules,
    state_res,
};
use serde_json::Value;

use super::{RoomHead, StateMap, version_rules};
use crate::{
    Services,
    pdu::{self, Pdu},
    push,
};

/// Maximum size of an event's JSON, from the specification.
const MAX_PDU_BYTES: usize = 65_536;
/// Prev events referenced at most (the newest extremities win).
const MAX_PREV_EVENTS: usize = 10;
/// Rebuilds of one event when other processes keep moving the room's head under it.
const MAX_STALE_HEAD_RETRIES: usize = 20;

/// What a client asks to send.
#[derive(Clone, Debug, Default)]
pub struct EventSpec {
    pub event_type: String,
    pub state_key: Option<String>,
    pub content: Value,
    pub redacts: Option<String>,
    pub txn_id: Option<String>,
}

/// An event built, authorised and queued for persistence.
pub(super) struct Built {
    event_id: String,
    room_id: String,
    pending: PendingPersist,
    /// Users whose syncs must wake once it is durable.
    wake: Vec<String>,
    /// The state entry it sets, if it is a state event.
    state_change: Option<((String, String), String)>,
}

/// Where a new event goes: an existing room, or the create event of a new one.
pub(super) enum Target<'a> {
    Existing(&'a str),
    NewRoom { version: &'a str },
}

impl Services {
    /// Sends a message-like event. Returns the event id (the earlier one for a repeated txn id).
    pub async fn send_message_event(
        &self,
        sender: &str,
        device_id: Option<&str>,
        room_id: &str,
        event_type: &str,
        content: Value,
        txn_id: Option<String>,
    ) -> MatrixResult<String> {
        let spec = EventSpec { event_type: event_type.to_owned(), content, txn_id, ..Default::default() };
        Ok(self.send_event(sender, device_id, Target::Existing(room_id), spec).await?.0)
    }

    pub async fn send_state_event(
        &self,
        sender: &str,
        device_id: Option<&str>,
        room_id: &str,
        event_type: &str,
        state_key: &str,
        content: Value,
    ) -> MatrixResult<String> {
        let spec = EventSpec {
            event_type: event_type.to_owned(),
            state_key: Some(state_key.to_owned()),
            content,
            ..Default::default()
        };
        Ok(self.send_event(sender, device_id, Target::Existing(room_id), spec).await?.0)
    }

    /// Redacts `target` in `room_id` if the sender sent it or has the `redact` power level.
    pub async fn redact_event(
        &self,
        sender: &str,
        device_id: Option<&str>,
        room_id: &str,
        target: &str,
        reason: Option<String>,
        txn_id: Option<String>,
    ) -> MatrixResult<String> {
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
            event_type: "m.room.redaction".to_owned(),
            content,
            redacts: Some(target.to_owned()),
            txn_id,
            ..Default::default()
        };
        Ok(self.send_event(sender, device_id, Target::Existing(room_id), spec).await?.0)
    }

    /// The pipeline. Returns (event id, room id) once the event is durable.
    pub(super) async fn send_event(
        &self,
        sender: &str,
        device_id: Option<&str>,
        target: Target<'_>,
        spec: EventSpec,
    ) -> MatrixResult<(String, String)> {
        let sender_id = UserId::parse(sender).map_err(|_| MatrixError::invalid_param("Invalid sender"))?;
        match target {
            Target::NewRoom { version } => {
                let (_, rules) = version_rules(version)?;
                // In room v12 the room id is the create event's hash: two identical create
                // events in the same millisecond would collide, so retry one millisecond later.
                for attempt in 0..5 {
                    let built = self
                        .build_and_enqueue(
                            &rules,
                            version,
                            None,
                            &sender_id,
                            device_id,
                            spec.clone(),
                            &StateMap::new(),
                            Vec::new(),
                            0,
                            attempt,
                            None,
                        )
                        .await?;
                    match built.pending.await {
                        Ok(PersistOutcome::Persisted { .. }) => {
                            self.notifier.notify_users(&built.wake);
                            return Ok((built.event_id, built.room_id));
                        }
                        Ok(PersistOutcome::DuplicateTxn { event_id }) => return Ok((event_id, built.room_id)),
                        Ok(PersistOutcome::StaleHead) | Err(StorageError::Conflict(_)) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(MatrixError::new(ErrorCode::RoomInUse, "Could not allocate a room id; try again"))
            }
            Target::Existing(room_id) => {
                // One request per transaction id at a time, from the check until the commit.
                let _txn_guard = match (device_id, &spec.txn_id) {
                    (Some(device), Some(txn)) => {
                        Some(self.locks.lock(&format!("txn\u{0}{sender}\u{0}{device}\u{0}{txn}")).await)
                    }
                    _ => None,
                };
                if let (Some(device), Some(txn)) = (device_id, &spec.txn_id)
                    && let Some(existing) = self.store.event_for_txn(sender, device, txn).await?
                {
                    return Ok((existing, room_id.to_owned()));
                }
                for attempt in 0..MAX_STALE_HEAD_RETRIES {
                    if attempt >= 3 {
                        // Another process keeps winning the room: back off a little.
                        let jitter = u64::from(rand::random::<u8>() % 20);
                        tokio::time::sleep(std::time::Duration::from_millis(jitter + attempt as u64)).await;
                    }
                    let built = {
                        // The room lock covers building and queuing only: the commit is awaited
                        // outside it, so a busy room's events share one group commit.
                        let _room_guard = self.locks.lock(room_id).await;
                        let head = self.room_head(room_id).await?;
                        let mut extremities = head.extremities.clone();
                        extremities.sort_by_key(|(_, depth)| std::cmp::Reverse(*depth));
                        let prevs: Vec<(String, i64)> = extremities.iter().take(MAX_PREV_EVENTS).cloned().collect();
                        let depth = prevs.iter().map(|(_, d)| *d).max().unwrap_or(0);
                        let prev_ids = prevs.iter().map(|(id, _)| id.clone()).collect();
                        let expected = head.extremities.iter().map(|(id, _)| id.clone()).collect();
                        let built = self
                            .build_and_enqueue(
                                &head.rules,
                                &head.room_version,
                                Some(room_id),
                                &sender_id,
                                device_id,
                                spec.clone(),
                                &head.state,
                                prev_ids,
                                depth,
                                0,
                                Some(expected),
                            )
                            .await?;
                        self.heads.advance(
                            room_id,
                            &head,
                            &built.event_id,
                            depth + 1,
                            &prevs,
                            built.state_change.clone(),
                        );
                        built
                    };
                    match built.pending.await {
                        Ok(PersistOutcome::Persisted { .. }) => {
                            self.drop_redacted_from_caches(&spec);
                            self.store.broadcast(Signal::RoomHead { room_id: room_id.to_owned() });
                            self.notifier.notify_users(&built.wake);
                            return Ok((built.event_id, built.room_id));
                        }
                        Ok(PersistOutcome::DuplicateTxn { event_id }) => {
                            self.heads.invalidate(room_id);
                            return Ok((event_id, built.room_id));
                        }
                        // Another process wrote to the room since our head was loaded: reload
                        // the head and build the event again (auth included) on the new one.
                        Ok(PersistOutcome::StaleHead) => {
                            tracing::info!(
                                room_id,
                                attempt,
                                "room head moved under the event (another process wrote); rebuilding"
                            );
                            self.heads.invalidate(room_id);
                        }
                        Err(e) => {
                            self.heads.invalidate(room_id);
                            // The commit may have happened (a connection lost during COMMIT).
                            self.drop_redacted_from_caches(&spec);
                            return Err(e.into());
                        }
                    }
                }
                Err(MatrixError::new(ErrorCode::Unknown, "The room is too busy; try again").with_status(503))
            }
        }
    }

    /// A redaction changes its target's row: this process and the others drop it from their
    /// event caches.
    fn drop_redacted_from_caches(&self, spec: &EventSpec) {
        if let Some(redacted) = &spec.redacts {
            self.event_cache.invalidate(redacted);
            self.store.broadcast(Signal::Redacted { event_id: redacted.clone() });
        }
    }

    /// `origin_server_ts` for a new event. Create events get strictly increasing timestamps in
    /// this process, because in room v12 the room id is the create event's hash and two identical
    /// create events in one millisecond would name the same room.
    fn event_timestamp(&self, event_type: &str, bump: u64) -> u64 {
        use std::sync::atomic::Ordering;
        let now = now_ms() + bump;
        if event_type != "m.room.create" {
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
    async fn room_head(&self, room_id: &str) -> MatrixResult<std::sync::Arc<RoomHead>> {
        if let Some(head) = self.heads.get(room_id) {
            return Ok(head);
        }
        let room = self.store.get_room(room_id).await?.ok_or_else(|| MatrixError::not_found("Unknown room"))?;
        let (_, rules) = version_rules(&room.room_version)?;
        let state = self.current_state(room_id).await?;
        let extremities =
            self.store.forward_extremities(room_id).await?.into_iter().map(|e| (e.event_id, e.depth)).collect();
        let head = std::sync::Arc::new(RoomHead {
            room_version: room.room_version,
            rules,
            state: std::sync::Arc::new(state),
            extremities,
        });
        self.heads.set(room_id, head.clone());
        Ok(head)
    }

    pub async fn current_state(&self, room_id: &str) -> MatrixResult<StateMap> {
        Ok(self.store.current_state_ids(room_id).await?.into_iter().map(|(t, k, e)| ((t, k), e)).collect())
    }

    #[allow(clippy::too_many_arguments)]
    async fn build_and_enqueue(
        &self,
        rules: &RoomVersionRules,
        room_version: &str,
        room_id: Option<&str>,
        sender: &UserId,
        device_id: Option<&str>,
        spec: EventSpec,
        state: &StateMap,
        prev_events: Vec<String>,
        prev_depth: i64,
        ts_bump: u64,
        expected_extremities: Option<Vec<String>>,
    ) -> MatrixResult<Built> {
        let kind = TimelineEventType::from(spec.event_type.as_str());
        let mut content = spec.content;
        if !content.is_object() {
            return Err(MatrixError::bad_json("Event content must be a JSON object"));
        }
        if let Some(redacts) = &spec.redacts
            && rules.redaction.content_field_redacts
        {
            content["redacts"] = redacts.clone().into();
        }
        let content_raw =
            serde_json::value::to_raw_value(&content).map_err(|e| MatrixError::bad_json(e.to_string()))?;
        let auth_types = state_res::auth_types_for_event(
            &kind,
            sender,
            spec.state_key.as_deref(),
            &content_raw,
            &rules.authorization,
        )
        .map_err(|e| MatrixError::bad_json(format!("Invalid event content: {e}")))?;
        let mut auth_state: HashMap<(String, String), Pdu> = HashMap::new();
        let auth_ids: Vec<String> =
            auth_types.iter().filter_map(|(t, k)| state.get(&(t.to_string(), k.clone())).cloned()).collect();
        for ev in self.events(&auth_ids).await? {
            let key = (ev.event_type.clone(), ev.state_key.clone().unwrap_or_default());
            auth_state.insert(key, Pdu::from_stored(&ev)?);
        }
        // The create event is needed by the state-dependent rules even where it is not an auth event (v12).
        if let Some(create_id) = state.get(&("m.room.create".to_owned(), String::new()))
            && !auth_state.contains_key(&("m.room.create".to_owned(), String::new()))
            && let Some(ev) = self.event(create_id).await?
        {
            auth_state.insert(("m.room.create".to_owned(), String::new()), Pdu::from_stored(&ev)?);
        }

        let mut object = CanonicalJsonObject::new();
        object.insert("auth_events".into(), pdu::event_refs(&auth_ids, rules));
        object.insert("content".into(), pdu::to_canonical(content.clone())?);
        object.insert("depth".into(), CanonicalJsonValue::Integer(ruma::Int::new_saturating(prev_depth + 1)));
        object.insert(
            "origin_server_ts".into(),
            CanonicalJsonValue::Integer(ruma::Int::new_saturating(
                self.event_timestamp(&spec.event_type, ts_bump) as i64
            )),
        );
        object.insert("prev_events".into(), pdu::event_refs(&prev_events, rules));
        if let Some(room_id) = room_id {
            object.insert("room_id".into(), CanonicalJsonValue::String(room_id.to_owned()));
        } else if !rules.authorization.room_create_event_id_as_room_id {
            let room_id = format!("!{}:{}", myelin_core::random::alphanumeric(18), self.server_name);
            object.insert("room_id".into(), CanonicalJsonValue::String(room_id));
        }
        object.insert("sender".into(), CanonicalJsonValue::String(sender.to_string()));
        object.insert("type".into(), CanonicalJsonValue::String(spec.event_type.clone()));
        if let Some(state_key) = &spec.state_key {
            object.insert("state_key".into(), CanonicalJsonValue::String(state_key.clone()));
        }
        if let Some(redacts) = &spec.redacts
            && !rules.redaction.content_field_redacts
        {
            object.insert("redacts".into(), CanonicalJsonValue::String(redacts.clone()));
        }
        let event_id = pdu::sign_and_id(&mut object, rules, self.server_name.as_str(), &self.keys)?;
        let room_id = match room_id {
            Some(id) => id.to_owned(),
            None => match object.get("room_id") {
                Some(CanonicalJsonValue::String(id)) => id.clone(),
                // v12: the room id is the create event's reference hash.
                _ => format!("!{}", event_id.trim_start_matches('$')),
            },
        };
        let json = serde_json::to_string(&object).map_err(|e| MatrixError::internal(e.to_string()))?;
        if json.len() > MAX_PDU_BYTES {
            return Err(MatrixError::new(ErrorCode::TooLarge, "Event is larger than 64 KiB"));
        }
        let pdu = Pdu::from_json(&event_id, &json)?;
        state_res::check_state_independent_auth_rules(&rules.authorization, &pdu, |id| {
            auth_state.values().find(|p| p.event_id == *id).cloned()
        })
        .map_err(|e| MatrixError::forbidden(format!("Event not allowed: {e}")))?;
        state_res::check_state_dependent_auth_rules(&rules.authorization, &pdu, |t: &StateEventType, k: &str| {
            auth_state.get(&(t.to_string(), k.to_owned())).cloned()
        })
        .map_err(|e| MatrixError::forbidden(format!("Event not allowed: {e}")))?;

        let membership = if spec.event_type == "m.room.member" {
            spec.state_key.as_ref().map(|user_id| MembershipUpdate {
                user_id: user_id.clone(),
                membership: content.get("membership").and_then(Value::as_str).unwrap_or("leave").to_owned(),
                displayname: content.get("displayname").and_then(Value::as_str).map(str::to_owned),
                avatar_url: content.get("avatar_url").and_then(Value::as_str).map(str::to_owned),
            })
        } else {
            None
        };
        let relation = content
            .get("m.relates_to")
            .and_then(|r| Some((r.get("rel_type")?.as_str()?.to_owned(), r.get("event_id")?.as_str()?.to_owned())));
        let joined = if spec.event_type == "m.room.create" {
            Vec::new()
        } else {
            self.store.room_members(&room_id, Some("join")).await?
        };
        let power_ctx = push_power_levels(rules, &auth_state);
        let push_actions =
            self.push_actions(&room_id, &json, sender.as_str(), &joined, relation.as_ref(), power_ctx.as_ref()).await?;
        let new_event = NewEvent {
            event_id: event_id.clone(),
            room_id: room_id.clone(),
            sender: sender.to_string(),
            event_type: spec.event_type.clone(),
            state_key: spec.state_key.clone(),
            origin_server_ts: u64::from(pdu.origin_server_ts.0),
            depth: prev_depth + 1,
            json,
            prev_events,
            txn: device_id.zip(spec.txn_id.clone()).map(|(d, t)| (d.to_owned(), t)),
            redacts: spec.redacts.clone(),
            relation,
            membership: membership.clone(),
            new_room: (spec.event_type == "m.room.create")
                .then(|| NewRoom { room_version: room_version.to_owned(), creator: sender.to_string() }),
            join_rule: (spec.event_type == "m.room.join_rules")
                .then(|| content.get("join_rule").and_then(Value::as_str).unwrap_or("invite").to_owned()),
            push_actions,
            expected_extremities,
        };
        let state_change = spec.state_key.clone().map(|k| ((spec.event_type.clone(), k), event_id.clone()));
        let pending = self.store.enqueue_event(new_event);
        let mut wake: Vec<String> = joined.into_iter().map(|m| m.user_id).collect();
        wake.push(sender.to_string());
        if let Some(m) = membership {
            wake.push(m.user_id);
        }
        Ok(Built { event_id, room_id, pending, wake, state_change })
    }

    async fn push_actions(
        &self,
        room_id: &str,
        json: &str,
        sender: &str,
        joined: &[myelin_storage::MemberRecord],
        relation: Option<&(String, String)>,
        power_levels: Option<&ruma::push::PushConditionPowerLevelsCtx>,
    ) -> MatrixResult<Vec<PushActionRecord>> {
        let thread_id = relation.filter(|(rel, _)| rel == "m.thread").map(|(_, root)| root.clone());
        let mut actions = Vec::new();
        for member in joined.iter().filter(|m| m.user_id != sender) {
            let ruleset = self.push.ruleset(self.store.as_ref(), &member.user_id).await?;
            let name = member.displayname.clone().unwrap_or_else(|| member.user_id.clone());
            let (notify, highlight) =
                push::evaluate(&ruleset, json, room_id, &member.user_id, &name, joined.len() as u64, power_levels)
                    .await;
            if notify {
                actions.push(PushActionRecord {
                    user_id: member.user_id.clone(),
                    highlight,
                    thread_id: thread_id.clone(),
                });
            }
        }
        Ok(actions)
    }

    /// The power levels of a room, with creators privileged where the room version says so.
    pub async fn power_levels(&self, room_id: &str) -> MatrixResult<super::PowerLevels> {
        let pl = self.store.current_state_event(room_id, "m.room.power_levels", "").await?;
        let content =
            pl.and_then(|ev| serde_json::from_str::<Value>(&ev.json).ok()).and_then(|v| v.get("content").cloned());
        let mut creators = Vec::new();
        if let Some(room) = self.store.get_room(room_id).await? {
            let privileged = version_rules(&room.room_version)
                .is_ok_and(|(_, r)| r.authorization.explicitly_privilege_room_creators);
            if privileged || content.is_none() {
                creators.push(room.creator.clone());
                if privileged
                    && let Some(create) = self.store.current_state_event(room_id, "m.room.create", "").await?
                    && let Ok(v) = serde_json::from_str::<Value>(&create.json)
                    && let Some(extra) = v["content"]["additional_creators"].as_array()
                {
                    creators.extend(extra.iter().filter_map(|c| c.as_str().map(str::to_owned)));
                }
            }
        }
        Ok(super::PowerLevels::new(content, creators))
    }

    /// A stored event's content as JSON.
    pub fn event_content(ev: &StoredEvent) -> Value {
        serde_json::from_str::<Value>(&ev.json).ok().and_then(|v| v.get("content").cloned()).unwrap_or(Value::Null)
    }
}

/// The room's power levels as push rule conditions need them (`sender_notification_permission`,
/// e.g. who may notify `@room`), built from the event's auth state.
fn push_power_levels(
    rules: &RoomVersionRules,
    auth_state: &HashMap<(String, String), Pdu>,
) -> Option<ruma::push::PushConditionPowerLevelsCtx> {
    use ruma::events::room::power_levels::{RoomPowerLevels, RoomPowerLevelsEventContent, RoomPowerLevelsSource};
    let create = auth_state.get(&("m.room.create".to_owned(), String::new()))?;
    let mut creators = vec![create.sender.clone()];
    if rules.authorization.additional_room_creators
        && let Ok(content) = serde_json::from_str::<Value>(create.content.get())
        && let Some(extra) = content.get("additional_creators").and_then(Value::as_array)
    {
        creators.extend(extra.iter().filter_map(|c| c.as_str().and_then(|c| ruma::OwnedUserId::try_from(c).ok())));
    }
    let source = match auth_state.get(&("m.room.power_levels".to_owned(), String::new())) {
        Some(pl) => serde_json::from_str::<RoomPowerLevelsEventContent>(pl.content.get())
            .map(RoomPowerLevelsSource::Original)
            .unwrap_or_default(),
        None => RoomPowerLevelsSource::None,
    };
    Some(RoomPowerLevels::new(source, &rules.authorization, creators).into())
}
