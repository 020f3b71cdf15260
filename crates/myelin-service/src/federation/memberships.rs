//! Invites, leaves and knocks across servers. As the invitee's server: `/v2/invite` countersigns
//! an invite of a local user and, when this server is not in the room, keeps it (an outlier, a
//! membership row, the stripped state) so it shows in the invitee's sync. As the inviter's server:
//! a local invite of a remote user is countersigned by the invitee's server before it is stored
//! (`countersign_invite`, called by the send pipeline). As a resident server: `make_leave`,
//! `send_leave`, `make_knock`, `send_knock`. As the server of a user outside the room: rejecting an
//! invite (or withdrawing a knock) and knocking go through a resident server.

use myelin_core::{
    ErrorCode, MatrixError, MatrixResult, Membership, StateMap,
    types::{
        OwnedEventId, OwnedRoomId, OwnedServerName, OwnedUserId, RoomId, RoomVersionId, ServerName, StateEventType,
        TimelineEventType, UserId,
    },
};
use myelin_storage::OutOfRoomMembership;
use ruma::{CanonicalJsonObject, CanonicalJsonValue};
use serde_json::{Value, json};

use super::{
    encode_component,
    incoming::{ParsedPdu, membership_update},
};
use crate::{Services, rooms::version_rules};

/// State events a user outside the room sees with an invite or a knock (the membership event's
/// sender's member event is added).
const STRIPPED_STATE_TYPES: &[StateEventType] = &[
    StateEventType::RoomCreate,
    StateEventType::RoomJoinRules,
    StateEventType::RoomName,
    StateEventType::RoomAvatar,
    StateEventType::RoomCanonicalAlias,
    StateEventType::RoomEncryption,
    StateEventType::RoomTopic,
];

/// A state event in the stripped form clients see (`type`, `state_key`, `sender`, `content`).
fn stripped(event: &Value) -> Option<Value> {
    Some(json!({
        "type": event.get("type")?.as_str()?,
        "state_key": event.get("state_key")?.as_str()?,
        "sender": event.get("sender")?.as_str()?,
        "content": event.get("content")?.as_object()?,
    }))
}

impl Services {
    /// The room state a user outside it is shown with an invite or a knock, as full PDUs
    /// (MSC4311: the create event included) from `state`.
    pub(crate) async fn stripped_state_pdus(&self, state: &StateMap, sender: &UserId) -> MatrixResult<Vec<Value>> {
        let mut ids: Vec<OwnedEventId> =
            STRIPPED_STATE_TYPES.iter().filter_map(|t| state.get(&(t.clone(), String::new())).cloned()).collect();
        ids.extend(state.get(&(StateEventType::RoomMember, sender.to_string())).cloned());
        Ok(self.events(&ids).await?.iter().filter_map(|ev| serde_json::from_str(&ev.json).ok()).collect())
    }

    /// The send pipeline's step for a local invite of a remote user: the invitee's server
    /// countersigns the signed event (`PUT /v2/invite`); the answer must be the same event.
    pub(crate) async fn countersign_invite(
        &self,
        room_id: &RoomId,
        room_version: &RoomVersionId,
        event_id: &OwnedEventId,
        object: &CanonicalJsonObject,
        state: &StateMap,
        sender: &UserId,
    ) -> MatrixResult<CanonicalJsonObject> {
        let invitee = match object.get("state_key") {
            Some(CanonicalJsonValue::String(key)) => {
                UserId::parse(key).map_err(|_| MatrixError::invalid_param("Invalid member state key"))?
            }
            _ => return Err(MatrixError::bad_json("An invite needs a state key")),
        };
        let invite_room_state = self.stripped_state_pdus(state, sender).await?;
        let body = json!({
            "room_version": room_version,
            "event": Value::from(CanonicalJsonValue::Object(object.clone())),
            "invite_room_state": invite_room_state,
        });
        let path = format!(
            "/_matrix/federation/v2/invite/{}/{}",
            encode_component(room_id.as_str()),
            encode_component(event_id.as_str())
        );
        let answer = self.federation_send(reqwest::Method::PUT, invitee.server_name(), &path, &body).await.map_err(
            |e| match &e {
                super::FederationError::Status { status: 403, error, .. } => MatrixError::forbidden(
                    error.clone().unwrap_or_else(|| "The invitee's server refused the invite".to_owned()),
                ),
                _ => MatrixError::from(e),
            },
        )?;
        let raw = answer.get("event").ok_or_else(|| MatrixError::bad_json("The invite answer carries no event"))?;
        let mut signed = ParsedPdu::parse(raw, room_version)?;
        if signed.event_id != *event_id || signed.room_id != room_id {
            return Err(MatrixError::bad_json("The invitee's server answered another event"));
        }
        self.verify_pdu(&mut signed).await?;
        let countersigned = matches!(
            signed.object.get("signatures"),
            Some(CanonicalJsonValue::Object(sigs)) if sigs.contains_key(invitee.server_name().as_str())
        );
        if !countersigned {
            return Err(MatrixError::bad_json("The invitee's server did not sign the invite"));
        }
        Ok(signed.object)
    }

    /// `PUT /v2/invite/{roomId}/{eventId}`: countersigns an invite of a local user; when this
    /// server is not in the room, keeps it with the room's stripped state for the invitee.
    pub async fn federation_invite(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &str,
        body: &Value,
    ) -> MatrixResult<Value> {
        let version = body
            .get("room_version")
            .and_then(Value::as_str)
            .ok_or_else(|| MatrixError::missing_param("room_version is required"))?;
        let (room_version, _) = version_rules(version).map_err(|_| {
            MatrixError::new(ErrorCode::IncompatibleRoomVersion, format!("Room version {version:?} is not supported"))
                .with_field("room_version", version.into())
        })?;
        if self.store.get_room(room_id).await?.is_some() {
            self.check_server_acl(origin, room_id).await?;
        }
        self.check_room_not_blocked(room_id).await?;
        let raw = body.get("event").ok_or_else(|| MatrixError::missing_param("event is required"))?;
        let mut parsed = ParsedPdu::parse(raw, &room_version)?;
        if parsed.event_id.as_str() != event_id || parsed.room_id != room_id {
            return Err(MatrixError::bad_json("The event id or room id does not match the request"));
        }
        let pdu = parsed.pdu()?;
        let update = membership_update(&pdu)
            .filter(|m| pdu.kind == TimelineEventType::RoomMember && m.membership == Membership::Invite)
            .ok_or_else(|| MatrixError::bad_json("The event is not an invite"))?;
        if pdu.sender.server_name() != origin {
            return Err(MatrixError::forbidden("The inviter does not belong to the requesting server"));
        }
        if !self.is_local_user(&update.user_id) {
            return Err(MatrixError::bad_json("The invitee is not a user of this server"));
        }
        if self.store.get_user(&update.user_id).await?.is_none_or(|u| u.deactivated) {
            return Err(MatrixError::not_found("Unknown user"));
        }
        self.verify_pdu(&mut parsed).await?;
        let (_, rules) = version_rules(version)?;
        crate::pdu::countersign(&mut parsed.object, &rules, &self.server_name, &self.keys)?;
        let answer = json!({ "event": Value::from(CanonicalJsonValue::Object(parsed.object.clone())) });
        // A room this server is in hears of the invite like of any event; otherwise it is kept here.
        if self.servers_in_room(room_id).await?.contains(&self.server_name) {
            return Ok(answer);
        }
        let stripped_state: Vec<Value> = body
            .get("invite_room_state")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(stripped)
            .collect();
        let creator = stripped_state
            .iter()
            .find(|e| e["type"] == "m.room.create")
            .and_then(|e| e["sender"].as_str())
            .and_then(|s| UserId::parse(s).ok())
            .unwrap_or_else(|| pdu.sender.clone());
        self.store
            .persist_out_of_room_membership(OutOfRoomMembership {
                event: parsed.outlier(None)?,
                room_version,
                creator,
                update: update.clone(),
                stripped_state: Some(Value::Array(stripped_state).to_string()),
            })
            .await?;
        self.invalidate(&self.user_rooms.cache, &update.user_id);
        self.notifier.notify_users(&[update.user_id]);
        Ok(answer)
    }

    /// `GET /make_leave/{roomId}/{userId}`.
    pub async fn make_leave(&self, origin: &ServerName, room_id: &RoomId, user_id: &UserId) -> MatrixResult<Value> {
        self.make_membership(origin, room_id, user_id, Membership::Leave, None).await
    }

    /// `PUT /v2/send_leave/{roomId}/{eventId}`.
    pub async fn send_leave(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &str,
        raw: &Value,
    ) -> MatrixResult<Value> {
        self.send_membership(origin, room_id, event_id, raw, Membership::Leave).await?;
        Ok(json!({}))
    }

    /// `GET /make_knock/{roomId}/{userId}?ver=…`.
    pub async fn make_knock(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        user_id: &UserId,
        versions: &[String],
    ) -> MatrixResult<Value> {
        self.make_membership(origin, room_id, user_id, Membership::Knock, Some(versions)).await
    }

    /// `PUT /v1/send_knock/{roomId}/{eventId}`: places the knock and answers the stripped state
    /// the knocker may see.
    pub async fn send_knock(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &str,
        raw: &Value,
    ) -> MatrixResult<Value> {
        let parsed = self.send_membership(origin, room_id, event_id, raw, Membership::Knock).await?;
        let state = self.current_state(room_id).await?;
        let sender = parsed.pdu()?.sender;
        Ok(json!({ "knock_room_state": self.stripped_state_pdus(&state, &sender).await? }))
    }

    /// Whether `user_id`'s membership of a room this server is not in must go through another
    /// server: an invite or a knock kept here while no local user is joined.
    pub(crate) async fn outside_membership(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> MatrixResult<Option<myelin_storage::MemberRecord>> {
        if self.servers_in_room(room_id).await?.contains(&self.server_name) {
            return Ok(None);
        }
        Ok(self
            .store
            .membership(room_id, user_id)
            .await?
            .filter(|m| matches!(m.membership, Membership::Invite | Membership::Knock)))
    }

    /// Servers to reach a room through for a user outside it: those the caller names, the
    /// sender of the user's invite, the room's own server.
    pub(crate) async fn servers_for_outside_user(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        via: &[OwnedServerName],
    ) -> MatrixResult<Vec<OwnedServerName>> {
        let mut servers: Vec<OwnedServerName> = Vec::new();
        if let Some(m) = self.store.membership(room_id, user_id).await?
            && m.membership == Membership::Invite
            && let Some(invite) = self.event(&m.event_id).await?
        {
            servers.push(invite.sender.server_name().to_owned());
        }
        servers.extend(via.iter().cloned());
        servers.extend(self.servers_in_room(room_id).await?);
        servers.extend(room_id.server_name().map(ToOwned::to_owned));
        let mut seen = std::collections::HashSet::new();
        servers.retain(|s| *s != self.server_name && seen.insert(s.clone()));
        Ok(servers)
    }

    /// Leaves (rejects an invite to, withdraws a knock on) a room this server is not in, through
    /// a resident server, and records the leave.
    pub(crate) async fn leave_remote_room(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        reason: Option<String>,
    ) -> MatrixResult<()> {
        let servers = self.servers_for_outside_user(room_id, user_id, &[]).await?;
        let mut content = serde_json::Map::new();
        if let Some(reason) = reason {
            content.insert("reason".into(), reason.into());
        }
        for server in &servers {
            match self.remote_membership_through(user_id, room_id, server, Membership::Leave, &content, false).await {
                Ok((event, _)) => return self.record_outside_membership(&event, None).await,
                Err(e) => {
                    tracing::info!(%room_id, %server, error = %e.message, "leaving through a server failed");
                }
            }
        }
        // No server of the room answers: the user is not left with an invite they cannot get
        // rid of. The leave is recorded here only (an outlier on top of the invite or knock).
        self.leave_out_of_band(user_id, room_id, content).await
    }

    /// A leave event this server signs on top of the user's invite or knock, recorded here and
    /// sent nowhere (the room's servers could not be reached).
    async fn leave_out_of_band(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        mut content: serde_json::Map<String, Value>,
    ) -> MatrixResult<()> {
        let member = self
            .store
            .membership(room_id, user_id)
            .await?
            .ok_or_else(|| MatrixError::not_found("You are not invited to this room"))?;
        let previous =
            self.event(&member.event_id).await?.ok_or_else(|| MatrixError::not_found("The invite is unknown"))?;
        let room = self.store.get_room(room_id).await?.ok_or_else(|| MatrixError::not_found("Unknown room"))?;
        let (room_version, rules) = version_rules(room.room_version.as_str())?;
        content.insert("membership".into(), "leave".into());
        let ids = [previous.event_id.clone()];
        let mut object = crate::rooms::assemble_pdu(crate::rooms::PduFields {
            rules: &rules,
            room_id: Some(room_id),
            sender: user_id,
            event_type: &TimelineEventType::RoomMember,
            state_key: Some(user_id.as_str()),
            redacts: None,
            content: &Value::Object(content),
            auth_events: &ids,
            prev_events: &ids,
            depth: previous.depth + 1,
            origin_server_ts: self.now_ms(),
        })?;
        crate::pdu::sign_and_id(&mut object, &rules, &self.server_name, &self.keys, self.random.as_ref())?;
        let parsed = ParsedPdu::parse(&Value::from(CanonicalJsonValue::Object(object)), &room_version)?;
        tracing::info!(%room_id, %user_id, "no server of the room answers: the leave is recorded locally only");
        self.record_outside_membership(&parsed, None).await
    }

    /// Knocks on a room this server is not in, through the first of `via` that lets it.
    pub(crate) async fn knock_remote_room(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        reason: Option<String>,
        via: &[OwnedServerName],
    ) -> MatrixResult<OwnedRoomId> {
        let servers = self.servers_for_outside_user(room_id, user_id, via).await?;
        let mut content = serde_json::Map::new();
        if let Some(reason) = reason {
            content.insert("reason".into(), reason.into());
        }
        let mut last_error = MatrixError::not_found("No server to knock through");
        for server in &servers {
            match self.remote_membership_through(user_id, room_id, server, Membership::Knock, &content, false).await {
                Ok((event, answer)) => {
                    let stripped: Vec<Value> = answer
                        .get("knock_room_state")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(stripped)
                        .collect();
                    self.record_outside_membership(&event, Some(stripped)).await?;
                    return Ok(room_id.to_owned());
                }
                Err(e) => {
                    tracing::info!(%room_id, %server, error = %e.message, "knocking through a server failed");
                    last_error = e;
                }
            }
        }
        Err(last_error)
    }

    /// Records a local user's membership event of a room this server is not in, sent through a
    /// resident server.
    async fn record_outside_membership(&self, event: &ParsedPdu, stripped: Option<Vec<Value>>) -> MatrixResult<()> {
        let pdu = event.pdu()?;
        let update =
            membership_update(&pdu).ok_or_else(|| MatrixError::internal("a membership event without membership"))?;
        let creator = stripped
            .iter()
            .flatten()
            .find(|e| e["type"] == "m.room.create")
            .and_then(|e| e["sender"].as_str())
            .and_then(|s| UserId::parse(s).ok())
            .unwrap_or_else(|| pdu.sender.clone());
        self.store
            .persist_out_of_room_membership(OutOfRoomMembership {
                event: event.outlier(None)?,
                room_version: event.room_version.clone(),
                creator,
                update: update.clone(),
                stripped_state: stripped.map(|s| Value::Array(s).to_string()),
            })
            .await?;
        let user: OwnedUserId = update.user_id;
        self.invalidate(&self.user_rooms.cache, &user);
        self.notifier.notify_users(&[user]);
        Ok(())
    }

    /// The stripped state kept with a user's invite or knock of a room this server is not in, if
    /// it belongs to that membership event.
    pub(crate) async fn kept_stripped_state(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        membership_event_id: &ruma::EventId,
    ) -> MatrixResult<Option<Vec<Value>>> {
        Ok(self
            .store
            .remote_room_state(room_id, user_id)
            .await?
            .filter(|(event_id, _)| event_id == membership_event_id)
            .and_then(|(_, json)| serde_json::from_str::<Vec<Value>>(&json).ok()))
    }
}
