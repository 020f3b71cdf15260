//! Joining rooms across servers. As the resident server: `make_join` answers a join template
//! built on the room's head, `send_join` places the signed join like any PDU and answers the
//! state before it with its auth chain. As the joining server: ask a resident server for a
//! template, sign it, send it, check the state and auth chain that come back (stored as
//! outliers) and persist the join with that state as the state before it.

use std::collections::{HashMap, HashSet};

use myelin_core::{
    ErrorCode, MatrixError, MatrixResult, Membership, StateMap,
    types::{
        DeviceId, OwnedEventId, OwnedRoomId, OwnedServerName, OwnedUserId, RoomId, RoomVersionId, ServerName,
        StateEventType, TimelineEventType, UserId,
    },
};
use myelin_storage::{EventState, NewEvent, NewRoom, PersistOutcome, StateEntry};
use ruma::{CanonicalJsonValue, state_res};
use serde_json::{Value, json};

use super::{
    encode_component,
    incoming::{ParsedPdu, PduOutcome, membership_update, to_object},
};
use crate::{
    Services, pdu,
    rooms::{JOIN_AUTHORISED_VIA, PduFields, SUPPORTED_ROOM_VERSIONS, assemble_pdu, version_rules},
};

impl Services {
    /// `GET /make_join/{roomId}/{userId}?ver=…`: an unsigned join event for `user_id` on the
    /// room's head.
    pub async fn make_join(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        user_id: &UserId,
        versions: &[String],
    ) -> MatrixResult<Value> {
        self.make_membership(origin, room_id, user_id, Membership::Join, Some(versions)).await
    }

    /// `make_join`, `make_leave`, `make_knock`: an unsigned membership event for `user_id` on the
    /// room's head. `versions` (the joining server's `ver`) must include the room's version.
    pub(crate) async fn make_membership(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        user_id: &UserId,
        membership: Membership,
        versions: Option<&[String]>,
    ) -> MatrixResult<Value> {
        if user_id.server_name() != origin {
            return Err(MatrixError::forbidden("The user does not belong to the requesting server"));
        }
        let room = self.store.get_room(room_id).await?.ok_or_else(|| MatrixError::not_found("Unknown room"))?;
        if let Some(versions) = versions {
            // Servers that send no `ver` support only room version 1.
            let supported = if versions.is_empty() { vec!["1".to_owned()] } else { versions.to_vec() };
            if !supported.iter().any(|v| v == room.room_version.as_str()) {
                return Err(MatrixError::new(
                    ErrorCode::IncompatibleRoomVersion,
                    format!("The room is version {}, which the requesting server does not support", room.room_version),
                )
                .with_field("room_version", room.room_version.as_str().into()));
            }
        }
        self.require_resident(room_id).await?;
        self.check_server_acl(origin, room_id).await?;
        let head = self.room_head(room_id).await?;
        if membership == Membership::Knock && !head.rules.authorization.knocking {
            return Err(MatrixError::new(
                ErrorCode::IncompatibleRoomVersion,
                format!("Room version {} does not support knocking", room.room_version),
            )
            .with_field("room_version", room.room_version.as_str().into()));
        }
        let mut content = json!({ "membership": membership.as_str() });
        if membership == Membership::Join
            && let Some(authoriser) = self.join_authoriser(room_id, user_id).await?
        {
            content[JOIN_AUTHORISED_VIA] = authoriser.as_str().into();
        }
        let auth_ids = self.auth_events_for(
            &head.rules,
            &head.state,
            &TimelineEventType::RoomMember,
            user_id,
            Some(user_id.as_str()),
            &content,
        )?;
        let mut prevs = head.extremities.clone();
        prevs.sort_by_key(|(_, depth)| std::cmp::Reverse(*depth));
        prevs.truncate(super::MAX_PREV_EVENTS);
        let depth = prevs.iter().map(|(_, d)| *d).max().unwrap_or(0) + 1;
        let prev_ids: Vec<OwnedEventId> = prevs.into_iter().map(|(id, _)| id).collect();
        let template = assemble_pdu(PduFields {
            rules: &head.rules,
            room_id: Some(room_id),
            sender: user_id,
            event_type: &TimelineEventType::RoomMember,
            state_key: Some(user_id.as_str()),
            redacts: None,
            content: &content,
            auth_events: &auth_ids,
            prev_events: &prev_ids,
            depth,
            origin_server_ts: self.now_ms(),
        })?;
        Ok(json!({ "room_version": room.room_version, "event": template }))
    }

    /// `PUT /v2/send_join/{roomId}/{eventId}`: places the join and answers the room's state
    /// before it, its auth chain and the servers in the room. With `omit_members` (a joining
    /// server that takes partial state) the state leaves out member events but those of the
    /// room's heroes where the room has no name nor alias, and the auth chain leaves out what
    /// the state holds.
    pub async fn send_join(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &str,
        raw: &Value,
        omit_members: bool,
    ) -> MatrixResult<Value> {
        let parsed = self.send_membership(origin, room_id, event_id, raw, Membership::Join).await?;
        let countersigned = self.vouched_here(&content_of(&parsed));
        let stored = self
            .event(&parsed.event_id)
            .await?
            .ok_or_else(|| MatrixError::internal("the join vanished after it was stored"))?;
        let state = match stored.state_before {
            Some(group) => self.state_group(group).await?,
            None => return Err(MatrixError::internal("the join was stored without state")),
        };
        let (state_pdus, auth_chain) = if omit_members {
            let kept = self.state_without_members(&state, &pdu_sender(&parsed)?).await?;
            self.partial_state_and_auth_chain(&kept, &parsed.event_id).await?
        } else {
            self.state_and_auth_chain(&state).await?
        };
        let mut servers = self.servers_in_room(room_id).await?;
        // Those in the room before the join: the joining server knows of itself.
        servers.retain(|s| s != origin);
        if !servers.contains(&self.server_name) {
            servers.push(self.server_name.clone());
        }
        let mut answer = json!({
            "origin": self.server_name,
            "state": state_pdus,
            "auth_chain": auth_chain,
            "members_omitted": omit_members,
            "servers_in_room": servers,
        });
        // A restricted join goes back with this server's signature.
        if countersigned {
            answer["event"] = Value::from(CanonicalJsonValue::Object(parsed.object.clone()));
        }
        Ok(answer)
    }

    /// `send_join`, `send_leave`, `send_knock`: checks the requesting server's signed membership
    /// event of `membership` and places it like any PDU (relayed to the other servers in the room).
    pub(crate) async fn send_membership(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &str,
        raw: &Value,
        membership: Membership,
    ) -> MatrixResult<ParsedPdu> {
        let room = self.store.get_room(room_id).await?.ok_or_else(|| MatrixError::not_found("Unknown room"))?;
        self.require_resident(room_id).await?;
        self.check_server_acl(origin, room_id).await?;
        let mut parsed = ParsedPdu::parse(raw, &room.room_version)?;
        if parsed.event_id.as_str() != event_id || parsed.room_id != room_id {
            return Err(MatrixError::bad_json("The event id or room id does not match the request"));
        }
        let pdu = parsed.pdu()?;
        let found = membership_update(&pdu).map(|m| m.membership);
        if pdu.kind != TimelineEventType::RoomMember
            || found != Some(membership)
            || pdu.state_key.as_deref() != Some(pdu.sender.as_str())
        {
            return Err(MatrixError::bad_json(format!(
                "send_{} takes the sender's own {} event",
                membership.as_str(),
                membership.as_str()
            )));
        }
        if pdu.sender.server_name() != origin {
            return Err(MatrixError::forbidden("The user does not belong to the requesting server"));
        }
        // A restricted join that names one of our users as vouching for it: this server checks
        // the user may join and signs it (the auth rules require that signature).
        if membership == Membership::Join && self.vouched_here(&content_of(&parsed)) {
            // Refused if the user is in none of the allowed rooms.
            self.join_authoriser(room_id, &pdu.sender).await?;
            pdu::countersign(&mut parsed.object, &parsed.rules, &self.server_name, &self.keys)?;
        }
        self.verify_pdu(&mut parsed).await?;
        // Every other server in the room hears of it from us.
        let relay_to: Vec<OwnedServerName> = self
            .servers_in_room(room_id)
            .await?
            .into_iter()
            .filter(|s| s != origin && *s != self.server_name)
            .collect();
        match self.place_pdu(&parsed, &pdu, relay_to.clone()).await? {
            PduOutcome::Accepted => {}
            PduOutcome::NotAccepted(reason) => {
                return Err(MatrixError::forbidden(format!("{} refused: {reason}", membership.as_str())));
            }
        }
        self.wake_senders(&relay_to).await?;
        Ok(parsed)
    }

    /// A state without its member events, but for those of up to five heroes (joined or invited
    /// members other than `joining`) when the room has no name nor canonical alias: what a
    /// joining server needs to name the room.
    async fn state_without_members(&self, state: &StateMap, joining: &UserId) -> MatrixResult<StateMap> {
        let named = state.contains_key(&(StateEventType::RoomName, String::new()))
            || state.contains_key(&(StateEventType::RoomCanonicalAlias, String::new()));
        let mut kept: StateMap = state
            .iter()
            .filter(|((kind, _), _)| *kind != StateEventType::RoomMember)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !named {
            let mut members: Vec<_> = state
                .iter()
                .filter(|((kind, key), _)| *kind == StateEventType::RoomMember && key != joining.as_str())
                .map(|(_, id)| id.clone())
                .collect();
            members.sort();
            let mut heroes = self.events(&members).await?;
            heroes.retain(|ev| matches!(Self::event_content(ev)["membership"].as_str(), Some("join" | "invite")));
            heroes.sort_by_key(|ev| ev.stream_pos);
            for ev in heroes.into_iter().take(5) {
                kept.insert((StateEventType::RoomMember, ev.state_key.clone().unwrap_or_default()), ev.event_id);
            }
        }
        Ok(kept)
    }

    /// The PDUs of a partial state, and of the auth chains of its events and of the join, less
    /// the events the state holds.
    async fn partial_state_and_auth_chain(
        &self,
        state: &StateMap,
        join: &OwnedEventId,
    ) -> MatrixResult<(Vec<Value>, Vec<Value>)> {
        let ids: Vec<OwnedEventId> = state.values().cloned().collect();
        let mut loaded = HashMap::new();
        let roots: Vec<OwnedEventId> = ids.iter().cloned().chain([join.clone()]).collect();
        self.load_auth_closure(roots.iter().cloned(), &mut loaded).await?;
        let held: HashSet<&OwnedEventId> = ids.iter().collect();
        let chain: Vec<OwnedEventId> = super::state_resolution::auth_chain(roots.iter(), &loaded)
            .into_iter()
            .filter(|id| !held.contains(id) && id != join)
            .collect();
        let to_json = |events: Vec<myelin_storage::StoredEvent>| -> Vec<Value> {
            events.iter().filter_map(|ev| serde_json::from_str::<Value>(&ev.json).ok()).collect()
        };
        Ok((to_json(self.events(&ids).await?), to_json(self.events(&chain).await?)))
    }

    /// A state another server sent (`answer[state_key]`, with `answer.auth_chain`): every event
    /// checked and stored as an outlier; answers the state its accepted events make.
    pub(crate) async fn store_sent_state(
        &self,
        answer: &Value,
        state_key: &str,
        room_version: &RoomVersionId,
        room_id: &RoomId,
    ) -> MatrixResult<StateMap> {
        let parse_all = |key: &str| -> Vec<ParsedPdu> {
            answer
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|raw| ParsedPdu::parse(raw, room_version).ok())
                .filter(|p| p.room_id == room_id)
                .collect()
        };
        let state_events = parse_all(state_key);
        let mut everything = parse_all("auth_chain");
        everything.extend(state_events.iter().cloned());
        self.store_checked_outliers(everything).await?;
        let ids: Vec<OwnedEventId> = state_events.iter().map(|p| p.event_id.clone()).collect();
        let mut state = StateMap::new();
        for ev in self.events(&ids).await? {
            if ev.rejection.is_some() {
                continue;
            }
            if let Some(key) = ev.state_key.clone() {
                state.insert((myelin_core::types::state_event_type(&ev.event_type), key), ev.event_id.clone());
            }
        }
        Ok(state)
    }

    /// The PDUs of a state, and of the auth chain of its events.
    pub(crate) async fn state_and_auth_chain(&self, state: &StateMap) -> MatrixResult<(Vec<Value>, Vec<Value>)> {
        let ids: Vec<OwnedEventId> = state.values().cloned().collect();
        let mut loaded = HashMap::new();
        self.load_auth_closure(ids.iter().cloned(), &mut loaded).await?;
        let chain: Vec<OwnedEventId> = super::state_resolution::auth_chain(ids.iter(), &loaded).into_iter().collect();
        let to_json = |events: Vec<myelin_storage::StoredEvent>| -> Vec<Value> {
            events.iter().filter_map(|ev| serde_json::from_str::<Value>(&ev.json).ok()).collect()
        };
        Ok((to_json(self.events(&ids).await?), to_json(self.events(&chain).await?)))
    }

    /// Servers with members joined to the room (this one included if it has any), and while
    /// the room's state is partial those the resident server named.
    pub(crate) async fn servers_in_room(&self, room_id: &RoomId) -> MatrixResult<Vec<OwnedServerName>> {
        let mut servers: Vec<OwnedServerName> = self
            .store
            .room_members(room_id, Some(Membership::Join))
            .await?
            .into_iter()
            .map(|m| m.user_id.server_name().to_owned())
            .collect();
        if let Some(partial) = self.store.partial_state(room_id).await? {
            servers.extend(partial.servers);
        }
        servers.sort();
        servers.dedup();
        Ok(servers)
    }

    /// Refuses requests about a room none of this server's users are joined to, or whose state
    /// it does not wholly know yet (joined with partial state).
    pub(crate) async fn require_resident(&self, room_id: &RoomId) -> MatrixResult<()> {
        if !self.servers_in_room(room_id).await?.contains(&self.server_name) {
            return Err(MatrixError::not_found("This server has no member in the room"));
        }
        if self.store.partial_state(room_id).await?.is_some() {
            return Err(MatrixError::not_found("This server does not know the room's whole state yet"));
        }
        Ok(())
    }

    /// The auth events of a new event from a state, as the room version selects them.
    pub(crate) fn auth_events_for(
        &self,
        rules: &ruma::room_version_rules::RoomVersionRules,
        state: &StateMap,
        event_type: &TimelineEventType,
        sender: &UserId,
        state_key: Option<&str>,
        content: &Value,
    ) -> MatrixResult<Vec<OwnedEventId>> {
        let raw = serde_json::value::to_raw_value(content).map_err(|e| MatrixError::bad_json(e.to_string()))?;
        let types = state_res::auth_types_for_event(event_type, sender, state_key, &raw, &rules.authorization)
            .map_err(|e| MatrixError::bad_json(format!("Invalid event content: {e}")))?;
        Ok(types.iter().filter_map(|key| state.get(key).cloned()).collect())
    }

    /// Joins `user_id` to a room this server is not in, through the first of `servers` that
    /// lets it. Returns the room id once the join is stored.
    pub async fn join_remote_room(
        &self,
        user_id: &UserId,
        device_id: Option<&DeviceId>,
        room_id: &RoomId,
        servers: &[OwnedServerName],
        content_extra: serde_json::Map<String, Value>,
    ) -> MatrixResult<OwnedRoomId> {
        let _ = device_id;
        let mut last_error = MatrixError::not_found("No server to join the room through");
        for server in servers.iter().filter(|s| **s != self.server_name) {
            match self.join_through(user_id, room_id, server, &content_extra).await {
                Ok(room_id) => return Ok(room_id),
                Err(e) => {
                    tracing::info!(%room_id, %server, error = %e.message, "joining through a server failed");
                    last_error = e;
                }
            }
        }
        Err(last_error)
    }

    async fn join_through(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        server: &ServerName,
        content_extra: &serde_json::Map<String, Value>,
    ) -> MatrixResult<OwnedRoomId> {
        // A room this server holds no state of is joined with partial state where the resident
        // server offers it: the member events come later, in the background.
        let omit_members = self.store.get_room(room_id).await?.is_none_or(|room| room.current_state_group.is_none());
        let (join, answer) = self
            .remote_membership_through(user_id, room_id, server, Membership::Join, content_extra, omit_members)
            .await?;
        let room_version = join.room_version.clone();
        let state = self.store_sent_state(&answer, "state", &room_version, room_id).await?;
        let create = match state.get(&(StateEventType::RoomCreate, String::new())) {
            Some(id) => self.event(id).await?,
            None => None,
        }
        .ok_or_else(|| MatrixError::bad_json("send_join answered a state without a create event"))?;
        let partial = omit_members && answer.get("members_omitted").and_then(Value::as_bool) == Some(true);
        if partial {
            let mut servers: Vec<OwnedServerName> = answer
                .get("servers_in_room")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().and_then(|s| OwnedServerName::try_from(s).ok()))
                .filter(|s| *s != self.server_name)
                .collect();
            servers.push(server.to_owned());
            servers.sort();
            servers.dedup();
            self.store.mark_partial_state(room_id, &join.event_id, &servers).await?;
        }
        // The resident server relays the join to the other servers in the room.
        if let Err(e) = self.persist_remote_join(&join, &room_version, &create.sender, state).await {
            if partial {
                self.store.clear_partial_state(room_id).await?;
            }
            return Err(e);
        }
        if partial {
            self.schedule_partial_state_resync(room_id).await?;
        }
        Ok(room_id.to_owned())
    }

    /// Asks `server` for a template of `user_id`'s `membership` event (`make_join`, `make_leave`,
    /// `make_knock`), signs it and sends it back (`send_join`, `send_leave`, `send_knock`).
    /// Returns the event as the resident server answered it (countersigned for a restricted join)
    /// and its whole answer.
    pub(crate) async fn remote_membership_through(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        server: &ServerName,
        membership: Membership,
        content_extra: &serde_json::Map<String, Value>,
        omit_members: bool,
    ) -> MatrixResult<(ParsedPdu, Value)> {
        let versions: String = SUPPORTED_ROOM_VERSIONS.iter().map(|v| format!("ver={v}")).collect::<Vec<_>>().join("&");
        let (make, send) = match membership {
            Membership::Join => ("v1/make_join", "v2/send_join"),
            Membership::Leave => ("v1/make_leave", "v2/send_leave"),
            Membership::Knock => ("v1/make_knock", "v1/send_knock"),
            _ => return Err(MatrixError::internal("no remote handshake for this membership")),
        };
        let path = format!(
            "/_matrix/federation/{make}/{}/{}?{versions}",
            encode_component(room_id.as_str()),
            encode_component(user_id.as_str())
        );
        let answer = self.federation_get(server, &path).await.map_err(remote_error)?;
        let version = answer.get("room_version").and_then(Value::as_str).unwrap_or("1");
        let (room_version, rules) = version_rules(version)?;
        let template =
            answer.get("event").ok_or_else(|| MatrixError::bad_json("The resident server answered no event"))?;
        let mut object = to_object(template)?;
        // Only the fields the event takes from the template; time, content and signatures are ours.
        for key in ["signatures", "hashes", "unsigned", "event_id"] {
            object.remove(key);
        }
        let sender_ok = matches!(object.get("sender"), Some(CanonicalJsonValue::String(s)) if s == user_id.as_str());
        let key_ok = matches!(object.get("state_key"), Some(CanonicalJsonValue::String(s)) if s == user_id.as_str());
        let type_ok = matches!(object.get("type"), Some(CanonicalJsonValue::String(t)) if t == "m.room.member");
        let room_ok = matches!(object.get("room_id"), Some(CanonicalJsonValue::String(r)) if r == room_id.as_str());
        if !(sender_ok && key_ok && type_ok && room_ok) {
            return Err(MatrixError::bad_json("The resident server answered a template for another event"));
        }
        let mut content = content_extra.clone();
        content.insert("membership".into(), membership.as_str().into());
        // The user the resident server named to vouch for a restricted join.
        if let Some(CanonicalJsonValue::Object(template_content)) = object.get("content")
            && let Some(CanonicalJsonValue::String(via)) = template_content.get(JOIN_AUTHORISED_VIA)
        {
            content.insert(JOIN_AUTHORISED_VIA.into(), via.clone().into());
        }
        if membership != Membership::Leave
            && let Some(profile) = self.store.get_user(user_id).await?
        {
            if let Some(name) = profile.displayname {
                content.entry("displayname").or_insert(name.into());
            }
            if let Some(url) = profile.avatar_url {
                content.entry("avatar_url").or_insert(url.into());
            }
        }
        object.insert("content".into(), pdu::to_canonical(Value::Object(content))?);
        object.insert(
            "origin_server_ts".into(),
            CanonicalJsonValue::Integer(ruma::Int::new_saturating(i64::try_from(self.now_ms()).unwrap_or(i64::MAX))),
        );
        let event_id = pdu::sign_and_id(&mut object, &rules, &self.server_name, &self.keys, self.random.as_ref())?;
        let path = format!(
            "/_matrix/federation/{send}/{}/{}{}",
            encode_component(room_id.as_str()),
            encode_component(event_id.as_str()),
            if omit_members { "?omit_members=true" } else { "" }
        );
        let body = Value::from(CanonicalJsonValue::Object(object.clone()));
        let answer = self.federation_send(reqwest::Method::PUT, server, &path, &body).await.map_err(remote_error)?;
        // A restricted join comes back countersigned by the resident server.
        let raw = answer.get("event").cloned().unwrap_or(body);
        let event = ParsedPdu::parse(&raw, &room_version)?;
        if event.event_id != event_id {
            return Err(MatrixError::bad_json("The resident server answered another event"));
        }
        Ok((event, answer))
    }

    /// Persists our join to a room on another server with `state` as the state before it.
    async fn persist_remote_join(
        &self,
        join: &ParsedPdu,
        room_version: &RoomVersionId,
        creator: &UserId,
        state: StateMap,
    ) -> MatrixResult<()> {
        let pdu = join.pdu()?;
        let room_id = &join.room_id;
        let _room_guard = self.locks.lock(room_id.as_str()).await;
        // The join must pass the auth rules against the state the resident server gave.
        let mut known = HashMap::new();
        self.load_auth_closure(pdu.auth_events.iter().cloned().chain(state.values().cloned()), &mut known).await?;
        let rejected: HashSet<OwnedEventId> =
            known.values().filter(|p| p.rejected).map(|p| p.event_id.clone()).collect();
        super::incoming::check_against_auth_events(&join.rules, &pdu, &known, &rejected)
            .map_err(|reason| MatrixError::forbidden(format!("The join does not pass the auth rules: {reason}")))?;
        let existing = self.store.get_room(room_id).await?;
        let old_state = if existing.is_some() { self.current_state(room_id).await? } else { StateMap::new() };
        let stale_extremities: Vec<OwnedEventId> = if existing.is_some() {
            self.store.forward_extremities(room_id).await?.into_iter().map(|e| e.event_id).collect()
        } else {
            Vec::new()
        };
        let mut after = state.clone();
        after.insert((StateEventType::RoomMember, pdu.sender.to_string()), pdu.event_id.clone());
        let member_changes = self.member_changes(&old_state, &after, &pdu.event_id).await?;
        let join_rule = match state.get(&(StateEventType::RoomJoinRules, String::new())) {
            Some(id) => self
                .event(id)
                .await?
                .map(|ev| Self::event_content(&ev))
                .and_then(|c| c.get("join_rule").and_then(Value::as_str).map(str::to_owned)),
            None => None,
        };
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
            depth: match join.object.get("depth") {
                Some(CanonicalJsonValue::Integer(d)) => i64::from(*d),
                _ => 1,
            },
            json: join.json()?,
            // The join replaces the room's forward extremities: what this server had of the room
            // from an earlier stay is behind it.
            prev_events: pdu.prev_events.iter().cloned().chain(stale_extremities).collect(),
            txn: None,
            redacts: None,
            relation: None,
            membership: membership_update(&pdu),
            new_room: existing
                .is_none()
                .then(|| NewRoom { room_version: room_version.clone(), creator: creator.to_owned() }),
            join_rule,
            push_actions: Vec::new(),
            expected_extremities: None,
            state: EventState::Resolved { before: to_entries(&state), current: None },
            member_changes,
            rejection: None,
            destinations: Vec::new(),
            appservices: Vec::new(),
            sticky_until_ms: None,
            search: None,
        };
        match self.store.persist_event(new_event).await? {
            PersistOutcome::Persisted { .. } => self.metrics.events_persisted.inc(),
            PersistOutcome::DuplicateTxn { .. } => {}
            PersistOutcome::StaleHead => return Err(MatrixError::internal("the room moved while joining")),
        }
        self.heads.cache.invalidate(&room_id.to_owned());
        self.invalidate_elsewhere(&self.heads.cache, &room_id.to_owned());
        let wake: Vec<OwnedUserId> = vec![pdu.sender.clone()];
        self.notifier.notify_users(&wake);
        Ok(())
    }
}

/// A parsed PDU's sender.
fn pdu_sender(parsed: &ParsedPdu) -> MatrixResult<OwnedUserId> {
    Ok(parsed.pdu()?.sender)
}

/// A parsed PDU's content (`null` if it has none).
fn content_of(parsed: &ParsedPdu) -> Value {
    parsed.object.get("content").map_or(Value::Null, |c| Value::from(c.clone()))
}

/// A remote server's refusal, as this server answers it to its client: a refusal (403) or an
/// unknown room (404) stays one; anything else is the remote's failure (502/504).
pub(crate) fn remote_error(e: super::FederationError) -> MatrixError {
    match &e {
        super::FederationError::Status { status: 403, error, .. } => {
            MatrixError::forbidden(error.clone().unwrap_or_else(|| e.to_string()))
        }
        _ => MatrixError::from(e),
    }
}
