//! PDUs from other servers: every check on receipt in the specification's order — format,
//! signatures and hashes (a bad hash keeps the redacted copy), the auth rules against the
//! event's auth events, against the state before it (the resolution of the states after its prev
//! events), against the room's current state (soft fail) — then the same atomic persist as local
//! events. Rejected and soft-failed events are kept, marked, outside the timeline.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use myelin_core::{
    ErrorCode, MatrixError, MatrixResult, Membership, StateKey, StateMap,
    types::{OwnedEventId, OwnedRoomId, OwnedServerName, OwnedUserId, RoomId, RoomVersionId, ServerName, UserId},
};
use myelin_storage::{EventState, MemberChange, MembershipUpdate, NewEvent, OutlierEvent, PersistOutcome, StateEntry};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue,
    events::{StateEventType, TimelineEventType, relation::RelationType},
    room_version_rules::RoomVersionRules,
    serde::Base64,
    signatures::{PublicKeyMap, Verified},
    state_res,
};
use serde_json::{Map, Value, json};

use super::encode_component;
use crate::{
    Services,
    pdu::Pdu,
    rooms::{RoomHead, version_rules},
};

/// Most PDUs and EDUs one transaction may carry (specification).
pub const MAX_TXN_PDUS: usize = 50;
pub const MAX_TXN_EDUS: usize = 100;
/// Events asked for at most when filling a gap before a pushed event.
const MISSING_EVENTS_LIMIT: usize = 10;
/// Rebuilds when another process keeps moving the room's head under an incoming event.
const MAX_STALE_HEAD_RETRIES: usize = 20;

/// A PDU parsed for a room whose version is known.
#[derive(Clone, Debug)]
pub struct ParsedPdu {
    pub room_id: OwnedRoomId,
    pub room_version: RoomVersionId,
    pub rules: RoomVersionRules,
    pub event_id: OwnedEventId,
    pub object: CanonicalJsonObject,
}

impl ParsedPdu {
    /// Parses `raw` as a PDU of a room of `room_version` (format checks included).
    pub fn parse(raw: &Value, room_version: &RoomVersionId) -> MatrixResult<Self> {
        let (_, rules) = version_rules(room_version.as_str())?;
        let mut object = to_object(raw)?;
        // What the sending server added outside the signed event is not kept.
        object.remove("unsigned");
        state_res::check_pdu_format(&object, &rules.event_format)
            .map_err(|e| MatrixError::bad_json(format!("Malformed PDU: {e}")))?;
        let event_id = event_id_of(&object, &rules)?;
        let room_id = match object.get("room_id") {
            Some(CanonicalJsonValue::String(id)) => {
                OwnedRoomId::try_from(id.as_str()).map_err(|_| MatrixError::bad_json("Invalid room_id"))?
            }
            // Room v12 create events carry no room id: it is the event's own hash.
            _ => OwnedRoomId::try_from(format!("!{}", event_id.as_str().trim_start_matches('$')))
                .map_err(|_| MatrixError::bad_json("PDU has no room_id"))?,
        };
        Ok(Self { room_id, room_version: room_version.clone(), rules, event_id, object })
    }

    pub fn pdu(&self) -> MatrixResult<Pdu> {
        Pdu::from_json(&self.event_id, &self.json()?)
    }

    pub fn json(&self) -> MatrixResult<String> {
        serde_json::to_string(&self.object).map_err(|e| MatrixError::internal(e.to_string()))
    }

    /// The PDU as an outlier row.
    pub fn outlier(&self, rejection: Option<String>) -> MatrixResult<OutlierEvent> {
        let pdu = self.pdu()?;
        Ok(OutlierEvent {
            event_id: self.event_id.clone(),
            room_id: self.room_id.clone(),
            sender: pdu.sender.clone(),
            event_type: pdu.kind.clone(),
            state_key: pdu.state_key.clone(),
            origin_server_ts: u64::from(pdu.origin_server_ts.0),
            depth: self.depth(),
            json: self.json()?,
            rejection,
        })
    }

    pub(crate) fn depth(&self) -> i64 {
        match self.object.get("depth") {
            Some(CanonicalJsonValue::Integer(d)) => i64::from(*d),
            _ => 0,
        }
    }
}

/// A JSON value as a canonical JSON object (`M_BAD_JSON` if it is not one).
pub fn to_object(raw: &Value) -> MatrixResult<CanonicalJsonObject> {
    match CanonicalJsonValue::try_from(raw.clone()) {
        Ok(CanonicalJsonValue::Object(object)) => Ok(object),
        Ok(_) => Err(MatrixError::bad_json("A PDU must be a JSON object")),
        Err(e) => Err(MatrixError::bad_json(format!("PDU is not canonical JSON: {e}"))),
    }
}

/// The event id of a PDU: its `event_id` field in room v1/v2, its reference hash after.
pub fn event_id_of(object: &CanonicalJsonObject, rules: &RoomVersionRules) -> MatrixResult<OwnedEventId> {
    use ruma::room_version_rules::EventIdFormatVersion;
    let id = match rules.event_id_format {
        EventIdFormatVersion::V1 => match object.get("event_id") {
            Some(CanonicalJsonValue::String(id)) => id.clone(),
            _ => return Err(MatrixError::bad_json("PDU has no event_id")),
        },
        _ => format!(
            "${}",
            ruma::signatures::reference_hash(object, rules)
                .map_err(|e| MatrixError::bad_json(format!("Cannot hash PDU: {e}")))?
        ),
    };
    OwnedEventId::try_from(id).map_err(|_| MatrixError::bad_json("Invalid event id"))
}

/// What happened to a PDU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PduOutcome {
    /// Accepted into the room (or already known).
    Accepted,
    /// Kept but not accepted: `rejected: …` or `soft_failed: …`.
    NotAccepted(String),
}

impl Services {
    /// `PUT /_matrix/federation/v1/send/{txnId}`: processes the PDUs and EDUs of a transaction
    /// and answers the result of each PDU. A transaction processed before gets its first answer.
    pub async fn receive_transaction(&self, origin: &ServerName, txn_id: &str, body: &Value) -> MatrixResult<Value> {
        if let Some(answer) = self.store.inbound_txn(origin, txn_id).await? {
            return serde_json::from_str(&answer).map_err(|e| MatrixError::internal(e.to_string()));
        }
        let pdus = body.get("pdus").map(Value::as_array).unwrap_or(Some(&Vec::new())).cloned();
        let edus = body.get("edus").map(Value::as_array).unwrap_or(Some(&Vec::new())).cloned();
        let (Some(pdus), Some(edus)) = (pdus, edus) else {
            return Err(MatrixError::bad_json("pdus and edus must be arrays"));
        };
        if pdus.len() > MAX_TXN_PDUS || edus.len() > MAX_TXN_EDUS {
            return Err(MatrixError::bad_json(format!(
                "A transaction carries at most {MAX_TXN_PDUS} PDUs and {MAX_TXN_EDUS} EDUs"
            )));
        }
        // One run of a transaction at a time (a retry waits for the first and gets its answer).
        let _guard = self.locks.lock(&format!("fedtxn\u{0}{origin}\u{0}{txn_id}")).await;
        if let Some(answer) = self.store.inbound_txn(origin, txn_id).await? {
            return serde_json::from_str(&answer).map_err(|e| MatrixError::internal(e.to_string()));
        }
        self.metrics.federation_received_transactions.inc();
        self.metrics.federation_received_pdus.add(pdus.len() as u64);
        self.metrics.federation_received_edus.add(edus.len() as u64);
        let mut results = Map::new();
        for raw in &pdus {
            let Some(room_version) = self.room_version_of_pdu(raw).await? else {
                // A room this server is not in: nothing to check it against.
                continue;
            };
            match ParsedPdu::parse(raw, &room_version) {
                Ok(parsed) => {
                    let event_id = parsed.event_id.clone();
                    if let Err(e) = self.check_server_acl(origin, &parsed.room_id).await {
                        results.insert(event_id.to_string(), json!({ "error": e.message }));
                        continue;
                    }
                    let result = match self.receive_pdu(origin, parsed, true).await {
                        Ok(PduOutcome::Accepted) => json!({}),
                        Ok(PduOutcome::NotAccepted(reason)) => json!({ "error": reason }),
                        // Our failure, not the PDU's: the whole transaction is answered with an
                        // error and not recorded, so the sender retries it (what was stored
                        // meanwhile is recognised then).
                        Err(e) if e.status >= 500 => {
                            tracing::warn!(%origin, %event_id, error = %e.message, "could not process a PDU; the transaction will be retried");
                            return Err(e);
                        }
                        Err(e) => {
                            tracing::info!(%origin, %event_id, error = %e.message, "refused a PDU");
                            json!({ "error": e.message })
                        }
                    };
                    results.insert(event_id.to_string(), result);
                }
                Err(e) => tracing::info!(%origin, error = %e.message, "dropped a malformed PDU"),
            }
        }
        for edu in &edus {
            if let Err(e) = self.receive_edu(origin, edu).await {
                tracing::info!(%origin, error = %e.message, "dropped an EDU");
            }
        }
        let answer = json!({ "pdus": results });
        tracing::debug!(%origin, %txn_id, %answer, "received a transaction");
        self.store.record_inbound_txn(origin, txn_id, &answer.to_string(), self.clock.now_ms()).await?;
        Ok(answer)
    }

    /// The version of the room a raw PDU names, if this server knows the room.
    async fn room_version_of_pdu(&self, raw: &Value) -> MatrixResult<Option<RoomVersionId>> {
        let Some(room_id) = raw.get("room_id").and_then(Value::as_str).and_then(|r| RoomId::parse(r).ok()) else {
            return Ok(None);
        };
        Ok(self.store.get_room(&room_id).await?.map(|r| r.room_version))
    }

    /// The public keys that the signatures of `object` name, valid at the event's time where the
    /// room version says so.
    pub(crate) async fn pdu_public_keys(&self, object: &CanonicalJsonObject, rules: &RoomVersionRules) -> PublicKeyMap {
        let mut map = PublicKeyMap::new();
        let Some(CanonicalJsonValue::Object(signatures)) = object.get("signatures") else { return map };
        let valid_at = match (rules.enforce_key_validity, object.get("origin_server_ts")) {
            (true, Some(&CanonicalJsonValue::Integer(ts))) => u64::try_from(i64::from(ts)).ok(),
            _ => None,
        };
        for (server, keys) in signatures.iter().take(5) {
            let CanonicalJsonValue::Object(keys) = keys else { continue };
            let Ok(server) = ServerName::parse(server) else { continue };
            let key_ids: Vec<String> = keys.keys().cloned().collect();
            let found = self.server_public_keys(&server, &key_ids, valid_at).await;
            match found {
                Ok(keys) => {
                    let set = keys.into_iter().filter_map(|(id, key)| Some((id, Base64::parse(key).ok()?))).collect();
                    map.insert(server.to_string(), set);
                }
                Err(e) => tracing::info!(%server, error = %e.message, "cannot fetch a server's keys"),
            }
        }
        map
    }

    /// Checks a PDU's signatures and hashes: a bad signature is an error (the PDU is dropped); a
    /// content hash that does not match leaves the redacted copy.
    pub(crate) async fn verify_pdu(&self, parsed: &mut ParsedPdu) -> MatrixResult<()> {
        let keys = self.pdu_public_keys(&parsed.object, &parsed.rules).await;
        match ruma::signatures::verify_event(&keys, &parsed.object, &parsed.rules) {
            Ok(Verified::All) => Ok(()),
            Ok(Verified::Signatures) => {
                parsed.object = ruma::canonical_json::redact(parsed.object.clone(), &parsed.rules.redaction, None)
                    .map_err(|e| MatrixError::bad_json(format!("Cannot redact PDU: {e}")))?;
                Ok(())
            }
            Err(e) => Err(MatrixError::forbidden(format!("Bad signature on {}: {e}", parsed.event_id))),
        }
    }

    /// Receives one PDU of a room this server is in. Missing prev events are asked of `origin`
    /// (`get_missing_events`) when `fill_gaps` is set.
    pub async fn receive_pdu(
        &self,
        origin: &ServerName,
        mut parsed: ParsedPdu,
        fill_gaps: bool,
    ) -> MatrixResult<PduOutcome> {
        if let Some(known) = self.event(&parsed.event_id).await? {
            return Ok(match known.rejection {
                Some(reason) => PduOutcome::NotAccepted(reason),
                None => PduOutcome::Accepted,
            });
        }
        self.verify_pdu(&mut parsed).await?;
        let pdu = parsed.pdu()?;
        // Fill a gap before the event from the server that sent it.
        let missing_prevs = self.missing_events(&pdu.prev_events).await?;
        if !missing_prevs.is_empty() && fill_gaps {
            self.fetch_missing_events(origin, &parsed, &pdu).await?;
        }
        let missing_prevs = self.missing_events(&pdu.prev_events).await?;
        if !missing_prevs.is_empty() {
            return Err(MatrixError::new(
                ErrorCode::NotFound,
                format!("Missing prev events {missing_prevs:?}: cannot place the event"),
            ));
        }
        // Auth events this server has not seen come from the origin.
        if !self.missing_events(&pdu.auth_events).await?.is_empty() {
            self.fetch_auth_chain(origin, &parsed).await?;
        }
        // Prev events held without state (outliers: a join's state, auth events) — an old event
        // pushed late, a sticky event for a server that joined after it: their state comes from
        // the origin.
        let prev_states =
            if fill_gaps { self.fetch_prev_states(origin, &parsed, &pdu.prev_events).await? } else { HashMap::new() };
        self.place_pdu_with(&parsed, &pdu, Vec::new(), &prev_states).await
    }

    /// The state after each of `prevs` this server holds without state: `GET /state` at the
    /// event from `origin` (the state before it; the events stored as checked outliers) plus the
    /// event itself if it is an accepted state event. Prevs the origin cannot tell of are left
    /// out (the event then cannot be placed).
    async fn fetch_prev_states(
        &self,
        origin: &ServerName,
        parsed: &ParsedPdu,
        prevs: &[OwnedEventId],
    ) -> MatrixResult<HashMap<OwnedEventId, StateMap>> {
        let mut states = HashMap::new();
        for prev in self.events(prevs).await? {
            if prev.state_after.is_some() {
                continue;
            }
            let path = format!(
                "/_matrix/federation/v1/state/{}?event_id={}",
                encode_component(parsed.room_id.as_str()),
                encode_component(prev.event_id.as_str())
            );
            let answer = match self.federation_get(origin, &path).await {
                Ok(answer) => answer,
                Err(e) => {
                    tracing::info!(%origin, error = %e, prev = %prev.event_id, "no state at a prev event");
                    continue;
                }
            };
            let parse = |key: &str| -> Vec<ParsedPdu> {
                answer
                    .get(key)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|raw| ParsedPdu::parse(raw, &parsed.room_version).ok())
                    .filter(|p| p.room_id == parsed.room_id)
                    .collect()
            };
            let (state_pdus, auth_chain) = (parse("pdus"), parse("auth_chain"));
            let state_ids: Vec<OwnedEventId> = state_pdus.iter().map(|p| p.event_id.clone()).collect();
            self.store_checked_outliers(auth_chain.into_iter().chain(state_pdus).collect()).await?;
            let mut state = StateMap::new();
            for ev in self.events(&state_ids).await? {
                if let Some(key) = &ev.state_key {
                    state.insert((state_event_type(&ev.event_type), key.clone()), ev.event_id.clone());
                }
            }
            if let Some(key) = &prev.state_key
                && !myelin_storage::is_rejection(prev.rejection.as_deref())
            {
                state.insert((state_event_type(&prev.event_type), key.clone()), prev.event_id.clone());
            }
            states.insert(prev.event_id.clone(), state);
        }
        Ok(states)
    }

    /// The ids among `ids` this server has not stored.
    pub(crate) async fn missing_events(&self, ids: &[OwnedEventId]) -> MatrixResult<Vec<OwnedEventId>> {
        let found: HashSet<OwnedEventId> = self.events(ids).await?.into_iter().map(|e| e.event_id).collect();
        Ok(ids.iter().filter(|id| !found.contains(*id)).cloned().collect())
    }

    /// `POST /get_missing_events` to `origin` for the events between the room's forward
    /// extremities and `parsed`; each one received is placed, oldest first.
    async fn fetch_missing_events(&self, origin: &ServerName, parsed: &ParsedPdu, pdu: &Pdu) -> MatrixResult<()> {
        let earliest: Vec<String> = self
            .store
            .forward_extremities(&parsed.room_id)
            .await?
            .into_iter()
            .map(|e| e.event_id.to_string())
            .collect();
        let body = json!({
            "earliest_events": earliest,
            "latest_events": [parsed.event_id],
            "limit": MISSING_EVENTS_LIMIT,
            "min_depth": 0,
        });
        let path = format!("/_matrix/federation/v1/get_missing_events/{}", encode_component(parsed.room_id.as_str()));
        let answer = match self.federation_send(reqwest::Method::POST, origin, &path, &body).await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::info!(%origin, error = %e, event_id = %pdu.event_id, "get_missing_events failed");
                return Ok(());
            }
        };
        let mut events: Vec<ParsedPdu> = answer
            .get("events")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|raw| ParsedPdu::parse(raw, &parsed.room_version).ok())
            .filter(|p| p.room_id == parsed.room_id)
            .collect();
        events.sort_by_key(ParsedPdu::depth);
        for event in events {
            let event_id = event.event_id.clone();
            // No further gap filling from here: one round per pushed event.
            if let Err(e) = Box::pin(self.receive_pdu(origin, event, false)).await {
                tracing::info!(%event_id, error = %e.message, "a missing event could not be placed");
            }
        }
        Ok(())
    }

    /// `GET /event_auth` from `origin` for `parsed`: the auth chain, checked and stored as
    /// outliers (each event against its own auth events, oldest first).
    pub(crate) async fn fetch_auth_chain(&self, origin: &ServerName, parsed: &ParsedPdu) -> MatrixResult<()> {
        let path = format!(
            "/_matrix/federation/v1/event_auth/{}/{}",
            encode_component(parsed.room_id.as_str()),
            encode_component(parsed.event_id.as_str())
        );
        let answer = self
            .federation_get(origin, &path)
            .await
            .map_err(|e| MatrixError::new(ErrorCode::NotFound, format!("Cannot fetch the auth chain: {e}")))?;
        let chain: Vec<ParsedPdu> = answer
            .get("auth_chain")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|raw| ParsedPdu::parse(raw, &parsed.room_version).ok())
            .collect();
        self.store_checked_outliers(chain).await
    }

    /// Checks events (signatures, hashes, the auth rules against their own auth events) and
    /// stores them as outliers; those that fail the auth rules are stored rejected, those with
    /// bad signatures are dropped.
    pub(crate) async fn store_checked_outliers(&self, events: Vec<ParsedPdu>) -> MatrixResult<()> {
        let mut verified: Vec<ParsedPdu> = Vec::with_capacity(events.len());
        for mut event in events {
            match self.verify_pdu(&mut event).await {
                Ok(()) => verified.push(event),
                Err(e) => tracing::info!(event_id = %event.event_id, error = %e.message, "dropped an event"),
            }
        }
        // Oldest first, so each event's auth events are decided before it.
        verified.sort_by_key(ParsedPdu::depth);
        let mut pdus: HashMap<OwnedEventId, Pdu> = HashMap::new();
        let mut rejected: HashSet<OwnedEventId> = HashSet::new();
        let given: HashSet<OwnedEventId> = verified.iter().map(|p| p.event_id.clone()).collect();
        // Auth events already stored.
        let mut wanted: Vec<OwnedEventId> = Vec::new();
        for p in &verified {
            let pdu = p.pdu()?;
            wanted.extend(
                pdu.auth_events.iter().cloned().chain(create_event_id(&p.rules, &pdu)).filter(|a| !given.contains(a)),
            );
            pdus.insert(p.event_id.clone(), pdu);
        }
        for ev in self.events(&wanted).await? {
            if myelin_storage::is_rejection(ev.rejection.as_deref()) {
                rejected.insert(ev.event_id.clone());
            }
            pdus.insert(ev.event_id.clone(), Pdu::from_stored(&ev)?);
        }
        let mut outliers = Vec::with_capacity(verified.len());
        for p in &verified {
            let Some(pdu) = pdus.get(&p.event_id) else { continue };
            let verdict = check_against_auth_events(&p.rules, pdu, &pdus, &rejected);
            if let Err(reason) = &verdict {
                rejected.insert(p.event_id.clone());
                tracing::info!(event_id = %p.event_id, %reason, "rejected an auth chain event");
            }
            outliers.push(p.outlier(verdict.err())?);
        }
        self.store.persist_outliers(outliers).await?;
        Ok(())
    }

    /// Places a checked PDU in its room: the auth checks against its auth events, the state
    /// before it and the current state, then the atomic persist. `relay_to` are servers that
    /// must receive it from us (a join accepted through `send_join`).
    pub(crate) async fn place_pdu(
        &self,
        parsed: &ParsedPdu,
        pdu: &Pdu,
        relay_to: Vec<OwnedServerName>,
    ) -> MatrixResult<PduOutcome> {
        self.place_pdu_with(parsed, pdu, relay_to, &HashMap::new()).await
    }

    /// [`Self::place_pdu`], with the state after prev events this server holds without state.
    async fn place_pdu_with(
        &self,
        parsed: &ParsedPdu,
        pdu: &Pdu,
        relay_to: Vec<OwnedServerName>,
        known_prev_states: &HashMap<OwnedEventId, StateMap>,
    ) -> MatrixResult<PduOutcome> {
        let room_id = &parsed.room_id;
        let rules = &parsed.rules;
        for attempt in 0..MAX_STALE_HEAD_RETRIES {
            let (pending, wake, outcome, joined_server, queues_jobs) = {
                let _room_guard = self.locks.lock(room_id.as_str()).await;
                // This process's queued events of the room become durable first, so the head
                // read next names only stored events (each forward extremity's state is read).
                self.store.flush_writes().await?;
                // The same event may arrive twice at once (a retried transaction beside the
                // first, or from two servers): the second placement finds it stored.
                if let Some(known) = self.store.get_event(&pdu.event_id).await? {
                    return Ok(match known.rejection {
                        Some(reason) => PduOutcome::NotAccepted(reason),
                        None => PduOutcome::Accepted,
                    });
                }
                self.heads.cache.invalidate(room_id);
                let head = self.room_head(room_id).await?;
                // The state before the event: the resolution of the states after its prevs.
                let prev_events = self.events(&pdu.prev_events).await?;
                let mut prev_states = Vec::with_capacity(prev_events.len());
                for prev in &prev_events {
                    match (prev.state_after, known_prev_states.get(&prev.event_id)) {
                        (Some(group), _) => prev_states.push(self.state_group(group).await?),
                        (None, Some(state)) => prev_states.push(Arc::new(state.clone())),
                        (None, None) => {
                            return Err(MatrixError::new(
                                ErrorCode::NotFound,
                                format!("No state known at prev event {}", prev.event_id),
                            ));
                        }
                    }
                }
                let before = self.resolve_states(rules, &prev_states, None).await?;
                let mut loaded = HashMap::new();
                let roots = pdu.auth_events.iter().cloned().chain(create_event_id(rules, pdu));
                self.load_auth_closure(roots, &mut loaded).await?;
                let rejected_ids: HashSet<OwnedEventId> =
                    loaded.values().filter(|p| p.rejected).map(|p| p.event_id.clone()).collect();
                let mut rejection = check_against_auth_events(rules, pdu, &loaded, &rejected_ids).err();
                // With partial state (members left out), the state before the event and the
                // current state cannot judge it: its auth events do, until the state is whole.
                let partial = head.partial_servers.is_some();
                if rejection.is_none() && !partial {
                    rejection = self.check_against_state(rules, pdu, &before).await?.map(|r| format!("rejected: {r}"));
                }
                if rejection.is_none() && !partial {
                    rejection =
                        self.check_against_state(rules, pdu, &head.state).await?.map(|r| format!("soft_failed: {r}"));
                }
                let accepted = rejection.is_none();
                let state_change: Option<(StateKey, OwnedEventId)> =
                    pdu.state_key.clone().map(|k| ((state_event_type(&pdu.kind), k), pdu.event_id.clone()));
                let mut after = before.clone();
                if let Some((key, id)) = &state_change {
                    after.insert(key.clone(), id.clone());
                }
                // The room's new current state: the resolution of the states after every forward
                // extremity it will have (the event's own when it follows all of them).
                let extremity_ids: Vec<OwnedEventId> = head.extremities.iter().map(|(id, _)| id.clone()).collect();
                let others: Vec<OwnedEventId> =
                    extremity_ids.iter().filter(|e| !pdu.prev_events.contains(e)).cloned().collect();
                let on_every_extremity = others.is_empty() && pdu.prev_events.len() == extremity_ids.len();
                let current = if !accepted || others.is_empty() {
                    None
                } else {
                    let mut states = vec![Arc::new(after.clone())];
                    for ev in self.events(&others).await? {
                        let group = ev.state_after.ok_or_else(|| {
                            MatrixError::internal(format!("forward extremity {} has no state", ev.event_id))
                        })?;
                        states.push(self.state_group(group).await?);
                    }
                    Some(self.resolve_states(rules, &states, Some(pdu)).await?)
                };
                let new_current = current.as_ref().unwrap_or(&after);
                tracing::debug!(
                    event_id = %pdu.event_id, kind = %pdu.kind, prevs = ?pdu.prev_events, extremities = ?extremity_ids,
                    ?rejection, resolved = current.is_some(), "placing an event"
                );
                let member_changes = if accepted {
                    self.member_changes(&head.state, new_current, &pdu.event_id).await?
                } else {
                    Vec::new()
                };
                let own_membership = if accepted
                    && new_current.get(&(StateEventType::RoomMember, pdu.state_key.clone().unwrap_or_default()))
                        == Some(&pdu.event_id)
                {
                    membership_update(pdu)
                } else {
                    None
                };
                let content: Value = serde_json::from_str(pdu.content.get()).unwrap_or(Value::Null);
                let relation = relation_of(&content);
                let json = parsed.json()?;
                let sticky_until = json
                    .contains(crate::sticky_events::PDU_FIELD)
                    .then(|| serde_json::from_str::<Value>(&json).ok())
                    .flatten()
                    .and_then(|v| crate::sticky_events::sticky_until(&v, self.now_ms()));
                let joined_members = self.store.room_members(room_id, Some(Membership::Join)).await?;
                // A remote server's first member joining: the server joins the room.
                let joined_server = own_membership
                    .as_ref()
                    .filter(|m| m.membership == Membership::Join && !self.is_local_user(&m.user_id))
                    .map(|m| m.user_id.server_name().to_owned())
                    .filter(|server| !joined_members.iter().any(|m| m.user_id.server_name() == *server));
                let member_count = joined_members.len();
                let local_joined: Vec<_> =
                    joined_members.into_iter().filter(|m| self.is_local_user(&m.user_id)).collect();
                let push_actions = if accepted {
                    let power = self.push_power_context(rules, new_current).await?;
                    let pushed = crate::rooms::PushedEvent {
                        room_id,
                        json: &json,
                        sender: &pdu.sender,
                        membership: own_membership.as_ref(),
                        relation: relation.as_ref(),
                        power_levels: power.as_ref(),
                    };
                    self.push_actions(&pushed, &local_joined, member_count).await?
                } else {
                    Vec::new()
                };
                let appservices = if accepted {
                    self.appservices_interested(room_id, &pdu.sender, pdu.state_key.as_deref(), &local_joined).await?
                } else {
                    Vec::new()
                };
                // Push and application service jobs were queued with the event: wake the runner.
                let queues_jobs = !push_actions.is_empty() || !appservices.is_empty();
                let to_entries = |map: &StateMap| -> Vec<StateEntry> {
                    map.iter().map(|((t, k), e)| (t.clone(), k.clone(), e.clone())).collect()
                };
                let new_event = NewEvent {
                    event_id: pdu.event_id.clone(),
                    room_id: room_id.clone(),
                    sender: pdu.sender.clone(),
                    event_type: pdu.kind.clone(),
                    state_key: pdu.state_key.clone(),
                    origin_server_ts: u64::from(pdu.origin_server_ts.0),
                    depth: parsed.depth(),
                    json,
                    prev_events: pdu.prev_events.clone(),
                    txn: None,
                    redacts: if accepted { pdu.redacts.clone() } else { None },
                    relation,
                    membership: own_membership.clone(),
                    new_room: None,
                    join_rule: (accepted && pdu.kind == TimelineEventType::RoomJoinRules)
                        .then(|| content.get("join_rule").and_then(Value::as_str).unwrap_or("invite").to_owned()),
                    push_actions,
                    expected_extremities: Some(extremity_ids),
                    // An event on every forward extremity and nothing else (the usual case) has
                    // the room's current state before it: its state group is reused, not copied.
                    state: if on_every_extremity {
                        EventState::Current
                    } else {
                        EventState::Resolved { before: to_entries(&before), current: current.as_ref().map(to_entries) }
                    },
                    member_changes,
                    rejection: rejection.clone(),
                    destinations: if accepted { relay_to.clone() } else { Vec::new() },
                    appservices,
                    sticky_until_ms: if accepted { sticky_until } else { None },
                    search: if accepted { crate::search::search_entry(&pdu.kind, &content) } else { None },
                };
                let mut wake: Vec<OwnedUserId> = local_joined.into_iter().map(|m| m.user_id).collect();
                if let Some(m) = &own_membership
                    && self.is_local_user(&m.user_id)
                {
                    wake.push(m.user_id.clone());
                }
                if !accepted {
                    wake.clear();
                }
                let pending = self.store.enqueue_event(new_event);
                // The room's next events (local ones too) are built on this event's outcome,
                // while its commit is pending.
                if accepted {
                    let mut extremities: Vec<(OwnedEventId, i64)> =
                        head.extremities.iter().filter(|(id, _)| !pdu.prev_events.contains(id)).cloned().collect();
                    extremities.push((pdu.event_id.clone(), parsed.depth()));
                    self.heads.replace(
                        room_id,
                        RoomHead {
                            room_version: head.room_version.clone(),
                            rules: head.rules.clone(),
                            state: Arc::new(new_current.clone()),
                            extremities,
                            partial_servers: head.partial_servers.clone(),
                        },
                    );
                    if pdu.state_key.is_some() {
                        self.heads.queue_state(pdu.clone());
                    }
                }
                (pending, wake, rejection, joined_server, queues_jobs)
            };
            let persisted = pending.await;
            if !matches!(persisted, Ok(PersistOutcome::Persisted { .. })) {
                self.heads.cache.invalidate(room_id);
            }
            self.heads.unqueue_state(&pdu.event_id);
            match persisted {
                Ok(PersistOutcome::Persisted { .. }) => {
                    self.metrics.events_persisted.inc();
                    if queues_jobs {
                        self.jobs_queued.notify_one();
                    }
                    self.invalidate_elsewhere(&self.heads.cache, room_id);
                    if let Some(redacted) = &pdu.redacts {
                        self.invalidate(&self.events_cache, redacted);
                    }
                    self.notifier.notify_users(&wake);
                    if outcome.is_none()
                        && let Some(state_key) = &pdu.state_key
                    {
                        self.state_written(room_id, &pdu.kind.to_string(), state_key, &pdu.sender).await;
                    }
                    if let Some(server) = &joined_server {
                        self.server_joined(room_id, server).await;
                    }
                    return Ok(match outcome {
                        None => PduOutcome::Accepted,
                        Some(reason) => PduOutcome::NotAccepted(reason),
                    });
                }
                Ok(PersistOutcome::StaleHead) => {
                    tracing::info!(%room_id, attempt, "room head moved under an incoming event; placing it again");
                    self.heads.cache.invalidate(room_id);
                }
                Ok(PersistOutcome::DuplicateTxn { .. }) => return Ok(PduOutcome::Accepted),
                Err(e) => {
                    self.heads.cache.invalidate(room_id);
                    return Err(e.into());
                }
            }
        }
        Err(MatrixError::new(ErrorCode::Unknown, "The room is too busy; try again").with_status(503))
    }

    /// What push rule conditions need of a room's power levels, from a state.
    async fn push_power_context(
        &self,
        rules: &RoomVersionRules,
        state: &StateMap,
    ) -> MatrixResult<Option<ruma::push::PushConditionPowerLevelsCtx>> {
        let keys = [(StateEventType::RoomCreate, String::new()), (StateEventType::RoomPowerLevels, String::new())];
        let ids: Vec<OwnedEventId> = keys.iter().filter_map(|k| state.get(k).cloned()).collect();
        let mut auth_state: HashMap<StateKey, Pdu> = HashMap::new();
        for ev in self.events(&ids).await? {
            let key = (state_event_type(&ev.event_type), ev.state_key.clone().unwrap_or_default());
            auth_state.insert(key, Pdu::from_stored(&ev)?);
        }
        Ok(crate::rooms::push_power_levels(rules, &auth_state))
    }

    /// The auth rules against a state (the state before the event, or the current state): the
    /// reason it fails, if it does.
    async fn check_against_state(
        &self,
        rules: &RoomVersionRules,
        pdu: &Pdu,
        state: &StateMap,
    ) -> MatrixResult<Option<String>> {
        let content = serde_json::value::RawValue::from_string(pdu.content.get().to_owned())
            .map_err(|e| MatrixError::internal(e.to_string()))?;
        let auth_types = state_res::auth_types_for_event(
            &pdu.kind,
            &pdu.sender,
            pdu.state_key.as_deref(),
            &content,
            &rules.authorization,
        )
        .map_err(|e| MatrixError::bad_json(format!("Invalid event content: {e}")))?;
        let mut keys: Vec<StateKey> = auth_types;
        keys.push((StateEventType::RoomCreate, String::new()));
        let ids: Vec<OwnedEventId> = keys.iter().filter_map(|k| state.get(k).cloned()).collect();
        let mut auth_state: HashMap<StateKey, Pdu> = HashMap::new();
        for ev in self.events(&ids).await? {
            let key = (state_event_type(&ev.event_type), ev.state_key.clone().unwrap_or_default());
            auth_state.insert(key, Pdu::from_stored(&ev)?);
        }
        Ok(state_res::check_state_dependent_auth_rules(&rules.authorization, pdu, |t: &StateEventType, k: &str| {
            auth_state.get(&(t.clone(), k.to_owned())).cloned()
        })
        .err()
        .map(|e| e.to_string()))
    }

    /// Membership rows that change when the room's state goes from `old` to `new` (members whose
    /// event changed), except the event `own` itself (written as the event's own membership).
    pub(crate) async fn member_changes(
        &self,
        old: &StateMap,
        new: &StateMap,
        own: &OwnedEventId,
    ) -> MatrixResult<Vec<MemberChange>> {
        let changed: Vec<OwnedEventId> = new
            .iter()
            .filter(|((t, k), e)| {
                *t == StateEventType::RoomMember && *e != own && old.get(&(t.clone(), k.clone())) != Some(*e)
            })
            .map(|(_, e)| e.clone())
            .collect();
        let mut changes = Vec::with_capacity(changed.len());
        for ev in self.events(&changed).await? {
            let pdu = Pdu::from_stored(&ev)?;
            if let Some(update) = membership_update(&pdu) {
                changes.push(MemberChange { event_id: ev.event_id.clone(), sender: ev.sender.clone(), update });
            }
        }
        Ok(changes)
    }
}

/// The membership row an `m.room.member` PDU writes.
pub(crate) fn membership_update(pdu: &Pdu) -> Option<MembershipUpdate> {
    if pdu.kind != TimelineEventType::RoomMember {
        return None;
    }
    let user_id = UserId::parse(pdu.state_key.as_deref()?).ok()?;
    let content: Value = serde_json::from_str(pdu.content.get()).ok()?;
    let membership: Membership = content.get("membership")?.as_str()?.parse().ok()?;
    Some(MembershipUpdate {
        user_id,
        membership,
        displayname: content.get("displayname").and_then(Value::as_str).map(str::to_owned),
        avatar_url: content.get("avatar_url").and_then(Value::as_str).map(str::to_owned),
    })
}

/// An event content's `m.relates_to`: (rel_type, the event it relates to).
pub(crate) fn relation_of(content: &Value) -> Option<(RelationType, OwnedEventId)> {
    let relates_to = content.get("m.relates_to")?;
    let rel_type = RelationType::from(relates_to.get("rel_type")?.as_str()?);
    let target = OwnedEventId::try_from(relates_to.get("event_id")?.as_str()?).ok()?;
    Some((rel_type, target))
}

/// The auth rules against an event's own auth events (which must be known and not rejected):
/// `Err(reason)` if they fail.
pub(crate) fn check_against_auth_events(
    rules: &RoomVersionRules,
    pdu: &Pdu,
    known: &HashMap<OwnedEventId, Pdu>,
    rejected: &HashSet<OwnedEventId>,
) -> Result<(), String> {
    let mut auth_state: HashMap<StateKey, Pdu> = HashMap::new();
    for id in &pdu.auth_events {
        let Some(auth) = known.get(id) else {
            return Err(format!("rejected: auth event {id} is unknown"));
        };
        if rejected.contains(id) {
            return Err(format!("rejected: auth event {id} was rejected"));
        }
        let key = (state_event_type(&auth.kind), auth.state_key.clone().unwrap_or_default());
        if auth_state.insert(key, auth.clone()).is_some() {
            return Err("rejected: two auth events of the same type and state key".to_owned());
        }
    }
    state_res::check_state_independent_auth_rules(&rules.authorization, pdu, |id| known.get(id).cloned())
        .map_err(|e| format!("rejected: {e}"))?;
    // Room v12: the create event is not an auth event but the rules read it.
    if let Some(create_id) = create_event_id(rules, pdu)
        && let Some(create) = known.get(&create_id)
    {
        auth_state.insert((StateEventType::RoomCreate, String::new()), create.clone());
    }
    state_res::check_state_dependent_auth_rules(&rules.authorization, pdu, |t: &StateEventType, k: &str| {
        auth_state.get(&(t.clone(), k.to_owned())).cloned()
    })
    .map_err(|e| format!("rejected: {e}"))
}

/// The create event of the event's room where the room version names it by the room id (v12),
/// rather than among the auth events.
pub(crate) fn create_event_id(rules: &RoomVersionRules, pdu: &Pdu) -> Option<OwnedEventId> {
    if !rules.authorization.room_create_event_id_as_room_id || pdu.kind == TimelineEventType::RoomCreate {
        return None;
    }
    let room_id = pdu.room_id.as_ref()?;
    OwnedEventId::try_from(format!("${}", room_id.as_str().trim_start_matches('!'))).ok()
}

fn state_event_type(kind: &TimelineEventType) -> StateEventType {
    myelin_core::types::state_event_type(kind)
}
