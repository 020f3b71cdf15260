//! What other servers may read of a room to fill their gaps: single events, the state at an
//! event (full or as ids) with its auth chain, an event's auth chain, the events missing between
//! two points of the DAG, and history before some events (backfill). Only a server with members
//! in the room may read it, and an event from a time when the room's history visibility kept it
//! from every user of that server is sent redacted (as is one redacted since), so the server
//! learns its place in the DAG and not its content.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use myelin_core::{
    MatrixError, MatrixResult, StateGroupId, StateMap,
    types::{EventId, OwnedEventId, RoomId, ServerName, TimelineEventType, UserId},
};
use myelin_storage::StoredEvent;
use ruma::events::StateEventType;
use serde_json::{Value, json};

use crate::{Services, pdu::Pdu};

/// Most events one `get_missing_events` or `backfill` answer carries.
const MAX_EVENTS_PER_ANSWER: usize = 100;

impl Services {
    /// Refuses a server the room's ACL denies, or with no member (joined, invited or knocking)
    /// in the room.
    pub(crate) async fn require_server_in_room(&self, origin: &ServerName, room_id: &RoomId) -> MatrixResult<()> {
        self.check_server_acl(origin, room_id).await?;
        let members = self.store.room_members(room_id, None).await?;
        if members.iter().any(|m| m.user_id.server_name() == origin && m.membership.is_current()) {
            Ok(())
        } else {
            Err(MatrixError::forbidden("The requesting server has no member in this room"))
        }
    }

    /// A stored, accepted event of `room_id`, or `M_NOT_FOUND`.
    async fn room_event(&self, room_id: &RoomId, event_id: &EventId) -> MatrixResult<StoredEvent> {
        self.event(event_id)
            .await?
            .filter(|ev| ev.room_id == room_id)
            .ok_or_else(|| MatrixError::not_found("Event not found"))
    }

    /// `GET /event/{eventId}`.
    pub async fn federation_event(&self, origin: &ServerName, event_id: &EventId) -> MatrixResult<Value> {
        let ev = self.event(event_id).await?.ok_or_else(|| MatrixError::not_found("Event not found"))?;
        self.require_server_in_room(origin, &ev.room_id).await?;
        Ok(json!({
            "origin": self.server_name,
            "origin_server_ts": self.now_ms(),
            "pdus": self.pdus_for_server(origin, std::slice::from_ref(&ev)).await?,
        }))
    }

    /// The state before an event of the room (not while this server knows only part of the
    /// room's state: it would answer a partial state as whole).
    async fn state_before(&self, room_id: &RoomId, event_id: &EventId) -> MatrixResult<std::sync::Arc<StateMap>> {
        if self.store.partial_state(room_id).await?.is_some() {
            return Err(MatrixError::not_found("This server does not know the room's whole state yet"));
        }
        let ev = self.room_event(room_id, event_id).await?;
        match ev.state_before {
            Some(group) => self.state_group(group).await,
            None => Err(MatrixError::not_found("No state is known at this event")),
        }
    }

    /// `GET /state_ids/{roomId}?event_id=`: the state before the event and its auth chain, as ids.
    pub async fn federation_state_ids(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> MatrixResult<Value> {
        self.require_server_in_room(origin, room_id).await?;
        let state = self.state_before(room_id, event_id).await?;
        let ids: Vec<OwnedEventId> = state.values().cloned().collect();
        let mut loaded = HashMap::new();
        self.load_auth_closure(ids.iter().cloned(), &mut loaded).await?;
        let chain = super::state_resolution::auth_chain(ids.iter(), &loaded);
        Ok(json!({ "pdu_ids": ids, "auth_chain_ids": chain }))
    }

    /// `GET /state/{roomId}?event_id=`: the same, as PDUs.
    pub async fn federation_state(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> MatrixResult<Value> {
        self.require_server_in_room(origin, room_id).await?;
        let state = self.state_before(room_id, event_id).await?;
        let (pdus, auth_chain) = self.state_and_auth_chain(&state).await?;
        Ok(json!({ "pdus": pdus, "auth_chain": auth_chain }))
    }

    /// `GET /event_auth/{roomId}/{eventId}`: the event's auth chain.
    pub async fn federation_event_auth(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> MatrixResult<Value> {
        self.require_server_in_room(origin, room_id).await?;
        let ev = self.room_event(room_id, event_id).await?;
        let mut loaded = HashMap::new();
        self.load_auth_closure([ev.event_id.clone()], &mut loaded).await?;
        let chain: Vec<OwnedEventId> =
            super::state_resolution::auth_chain([&ev.event_id], &loaded).into_iter().collect();
        let events = self.events(&chain).await?;
        Ok(json!({ "auth_chain": events.iter().map(pdu_json).collect::<Vec<_>>() }))
    }

    /// `POST /get_missing_events/{roomId}`: events before `latest` (walking prev events), not
    /// before `earliest`, at or above `min_depth`, at most `limit`, oldest first.
    pub async fn federation_missing_events(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        body: &Value,
    ) -> MatrixResult<Value> {
        self.require_server_in_room(origin, room_id).await?;
        let ids = |key: &str| -> Vec<OwnedEventId> {
            body.get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().and_then(|s| OwnedEventId::try_from(s).ok()))
                .collect()
        };
        let earliest: HashSet<OwnedEventId> = ids("earliest_events").into_iter().collect();
        let latest = ids("latest_events");
        let limit = body.get("limit").and_then(Value::as_u64).unwrap_or(10).min(MAX_EVENTS_PER_ANSWER as u64) as usize;
        let min_depth = body.get("min_depth").and_then(Value::as_i64).unwrap_or(0);
        let mut seen: HashSet<OwnedEventId> = latest.iter().cloned().collect();
        let mut found: Vec<StoredEvent> = Vec::new();
        let mut frontier: VecDeque<OwnedEventId> = VecDeque::new();
        for ev in self.events(&latest).await? {
            if ev.room_id == room_id {
                frontier.extend(Pdu::from_stored(&ev)?.prev_events);
            }
        }
        while let Some(id) = frontier.pop_front() {
            if found.len() >= limit {
                break;
            }
            if earliest.contains(&id) || !seen.insert(id.clone()) {
                continue;
            }
            let Some(ev) = self.event(&id).await?.filter(|e| e.room_id == room_id && !e.outlier) else { continue };
            if ev.depth < min_depth {
                continue;
            }
            frontier.extend(Pdu::from_stored(&ev)?.prev_events);
            found.push(ev);
        }
        found.sort_by_key(|e| (e.depth, e.stream_pos));
        Ok(json!({ "events": self.pdus_for_server(origin, &found).await? }))
    }

    /// `GET /backfill/{roomId}?v=…&limit=`: the given events and those before them, newest
    /// first by depth, at most `limit`.
    pub async fn federation_backfill(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        from: &[OwnedEventId],
        limit: usize,
    ) -> MatrixResult<Value> {
        self.require_server_in_room(origin, room_id).await?;
        let limit = limit.clamp(1, MAX_EVENTS_PER_ANSWER);
        // Deepest first, so the newest history is answered before older.
        let mut queue: BTreeSet<(i64, OwnedEventId)> = BTreeSet::new();
        let mut seen: HashSet<OwnedEventId> = HashSet::new();
        for ev in self.events(from).await? {
            if ev.room_id == room_id && seen.insert(ev.event_id.clone()) {
                queue.insert((ev.depth, ev.event_id.clone()));
            }
        }
        let mut found: Vec<StoredEvent> = Vec::new();
        while let Some((_, id)) = queue.pop_last() {
            if found.len() >= limit {
                break;
            }
            let Some(ev) = self.event(&id).await? else { continue };
            let prevs = Pdu::from_stored(&ev)?.prev_events;
            for prev in self.events(&prevs).await? {
                if prev.room_id == room_id && !prev.outlier && seen.insert(prev.event_id.clone()) {
                    queue.insert((prev.depth, prev.event_id.clone()));
                }
            }
            found.push(ev);
        }
        Ok(json!({
            "origin": self.server_name,
            "origin_server_ts": self.now_ms(),
            "pdus": self.pdus_for_server(origin, &found).await?,
        }))
    }
}

/// A stored event as a PDU for another server.
fn pdu_json(ev: &StoredEvent) -> Value {
    serde_json::from_str(&ev.json).unwrap_or(Value::Null)
}

impl Services {
    /// Events as PDUs for `origin`, redacted where its users may not see them or where they were
    /// redacted.
    async fn pdus_for_server(&self, origin: &ServerName, events: &[StoredEvent]) -> MatrixResult<Vec<Value>> {
        let mut verdicts: HashMap<StateGroupId, bool> = HashMap::new();
        // The events are of one room (every caller reads one): its rules, read once if needed.
        let mut rules = None;
        let mut out = Vec::with_capacity(events.len());
        for ev in events {
            let own_member = ev.event_type == TimelineEventType::RoomMember
                && ev
                    .state_key
                    .as_deref()
                    .and_then(|k| UserId::parse(k).ok())
                    .is_some_and(|u| u.server_name() == origin);
            let visible = match ev.state_before.filter(|_| !own_member) {
                None => true,
                Some(group) => match verdicts.get(&group) {
                    Some(verdict) => *verdict,
                    None => {
                        let verdict = self.server_sees(origin, group).await?;
                        verdicts.insert(group, verdict);
                        verdict
                    }
                },
            };
            if visible && ev.redacted_by.is_none() {
                out.push(pdu_json(ev));
                continue;
            }
            let rules = match &rules {
                Some(rules) => rules,
                None => {
                    let room =
                        self.store.get_room(&ev.room_id).await?.ok_or_else(|| MatrixError::not_found("No room"))?;
                    rules.insert(crate::rooms::version_rules(room.room_version.as_str())?.1)
                }
            };
            let object = super::incoming::to_object(&pdu_json(ev))?;
            let redacted = ruma::canonical_json::redact(object, &rules.redaction, None)
                .map_err(|e| MatrixError::internal(format!("cannot redact {}: {e}", ev.event_id)))?;
            out.push(serde_json::to_value(redacted).map_err(|e| MatrixError::internal(e.to_string()))?);
        }
        Ok(out)
    }

    /// Whether a server's users could see events sent in a state: the history visibility is
    /// `shared` or `world_readable`, or one of them was joined (or invited, where that is
    /// enough).
    async fn server_sees(&self, origin: &ServerName, group: StateGroupId) -> MatrixResult<bool> {
        let state = self.state_group(group).await?;
        let visibility = match state.get(&(StateEventType::RoomHistoryVisibility, String::new())) {
            Some(id) => self
                .event(id)
                .await?
                .and_then(|e| Self::event_content(&e)["history_visibility"].as_str().map(str::to_owned)),
            None => None,
        };
        let visibility = visibility.as_deref().unwrap_or("shared");
        if !matches!(visibility, "joined" | "invited") {
            return Ok(true);
        }
        let members: Vec<OwnedEventId> = state
            .iter()
            .filter(|((kind, key), _)| {
                *kind == StateEventType::RoomMember && UserId::parse(key).is_ok_and(|u| u.server_name() == origin)
            })
            .map(|(_, id)| id.clone())
            .collect();
        for member in self.events(&members).await? {
            match Self::event_content(&member)["membership"].as_str() {
                Some("join") => return Ok(true),
                Some("invite") if visibility == "invited" => return Ok(true),
                _ => {}
            }
        }
        Ok(false)
    }
}

impl Services {
    /// `GET /query/profile?user_id=&field=`: a local user's profile, or one field of it.
    pub async fn query_profile(&self, user_id: &ruma::UserId, field: Option<&str>) -> MatrixResult<Value> {
        if !self.is_local_user(user_id) {
            return Err(MatrixError::invalid_param("The user does not belong to this server"));
        }
        let profile = self.profile(user_id).await?;
        let mut answer = serde_json::Map::new();
        if field.is_none_or(|f| f == "displayname")
            && let Some(name) = profile.displayname
        {
            answer.insert("displayname".into(), name.into());
        }
        if field.is_none_or(|f| f == "avatar_url")
            && let Some(url) = profile.avatar_url
        {
            answer.insert("avatar_url".into(), url.into());
        }
        Ok(Value::Object(answer))
    }

    /// A remote user's profile, asked of their server.
    pub(crate) async fn remote_profile(&self, user_id: &ruma::UserId) -> MatrixResult<crate::accounts::Profile> {
        let path =
            format!("/_matrix/federation/v1/query/profile?user_id={}", super::encode_component(user_id.as_str()));
        let answer = match self.federation_get(user_id.server_name(), &path).await {
            Ok(answer) => answer,
            Err(super::FederationError::Status { status: 404, .. }) => {
                return Err(MatrixError::not_found("Profile not found"));
            }
            Err(e) => return Err(MatrixError::from(e)),
        };
        let text = |key: &str| answer.get(key).and_then(Value::as_str).map(str::to_owned);
        Ok(crate::accounts::Profile { displayname: text("displayname"), avatar_url: text("avatar_url") })
    }
}

impl Services {
    /// Another server's public room directory (`POST /publicRooms` over federation), as it answers.
    pub(crate) async fn remote_public_rooms(
        &self,
        server: &ServerName,
        req: &crate::rooms::PublicRoomsRequest,
    ) -> MatrixResult<Value> {
        let mut body = json!({ "limit": req.limit });
        if req.since > 0 {
            body["since"] = req.since.to_string().into();
        }
        if let Some(term) = &req.filter {
            body["filter"] = json!({ "generic_search_term": term });
        }
        let answer = self
            .federation_send(reqwest::Method::POST, server, "/_matrix/federation/v1/publicRooms", &body)
            .await
            .map_err(MatrixError::from)?;
        if !answer.get("chunk").is_some_and(Value::is_array) {
            return Err(MatrixError::new(myelin_core::ErrorCode::Unknown, "The server answered no room directory")
                .with_status(502));
        }
        Ok(answer)
    }
}
