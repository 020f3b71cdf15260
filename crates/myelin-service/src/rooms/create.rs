//! `createRoom`: the create event, the creator's join, power levels, preset state, initial state,
//! name/topic/alias and invites, each through the send pipeline.

use myelin_core::{
    ErrorCode, MatrixError, MatrixResult, Membership,
    types::{DeviceId, OwnedRoomId, RoomAliasId, StateEventType, UserId},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{EventSpec, MembershipChange, send::Target, version_rules};
use crate::{Services, accounts::Requester, ratelimit::Limit};

#[derive(Debug, Default, Deserialize, Clone)]
pub struct InitialStateEvent {
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub state_key: String,
    pub content: serde_json::Map<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
pub struct CreateRoomRequest {
    pub visibility: Option<String>,
    pub room_alias_name: Option<String>,
    pub name: Option<String>,
    pub topic: Option<String>,
    #[serde(default)]
    pub invite: Vec<String>,
    pub room_version: Option<String>,
    pub creation_content: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    pub initial_state: Vec<InitialStateEvent>,
    pub preset: Option<String>,
    #[serde(default)]
    pub is_direct: bool,
    pub power_level_content_override: Option<serde_json::Map<String, Value>>,
}

impl Services {
    /// `/createRoom` (counted against the requester's message rate limit).
    pub async fn create_room(&self, requester: &Requester, req: CreateRoomRequest) -> MatrixResult<OwnedRoomId> {
        self.check_rate_limit(Limit::Messages, requester.user_id.as_str())?;
        if let Some(alias) = req
            .room_alias_name
            .as_ref()
            .and_then(|name| RoomAliasId::parse(format!("#{name}:{}", self.server_name)).ok())
        {
            self.check_alias_namespace(&alias, requester.appservice.as_deref())?;
        }
        self.create_room_as(&requester.user_id, Some(&requester.device_id), req).await
    }

    /// Creates a room with `sender` as its creator and returns its id.
    pub(crate) async fn create_room_as(
        &self,
        sender: &UserId,
        device_id: Option<&DeviceId>,
        req: CreateRoomRequest,
    ) -> MatrixResult<OwnedRoomId> {
        let version = req.room_version.clone().unwrap_or_else(|| self.config.default_room_version.clone());
        let (version, rules) = version_rules(&version)?;
        let public = match req.visibility.as_deref() {
            None | Some("private") => false,
            Some("public") => true,
            Some(other) => return Err(MatrixError::invalid_param(format!("Unknown visibility {other:?}"))),
        };
        let preset =
            req.preset.clone().unwrap_or_else(|| if public { "public_chat" } else { "private_chat" }.to_owned());
        if !matches!(preset.as_str(), "public_chat" | "private_chat" | "trusted_private_chat") {
            return Err(MatrixError::invalid_param(format!("Unknown preset {preset:?}")));
        }
        let invitees = req
            .invite
            .iter()
            .map(|invitee| {
                UserId::parse(invitee).map_err(|_| MatrixError::invalid_param(format!("Invalid user id {invitee:?}")))
            })
            .collect::<MatrixResult<Vec<_>>>()?;
        let alias = match &req.room_alias_name {
            Some(name) => {
                if name.is_empty() || name.contains(':') || name.contains(char::is_whitespace) || name.len() > 200 {
                    return Err(MatrixError::invalid_param("Invalid room_alias_name"));
                }
                let alias = RoomAliasId::parse(format!("#{name}:{}", self.server_name))
                    .map_err(|_| MatrixError::invalid_param("Invalid room_alias_name"))?;
                if self.store.resolve_alias(&alias).await?.is_some() {
                    return Err(MatrixError::new(ErrorCode::RoomInUse, "Room alias already taken"));
                }
                Some(alias)
            }
            None => None,
        };

        // 1. m.room.create
        let mut create_content = req.creation_content.clone().unwrap_or_default();
        create_content.insert("room_version".into(), version.as_str().into());
        if !rules.authorization.use_room_create_sender {
            create_content.insert("creator".into(), sender.as_str().into());
        }
        let spec = EventSpec::state(StateEventType::RoomCreate, "", Value::Object(create_content));
        let (_, room_id) =
            self.send_event(sender, device_id, Target::NewRoom { version: &version }, spec, false).await?;
        let state = |event_type: StateEventType, state_key: &str, content: Value| {
            EventSpec::state(event_type, state_key, content)
        };

        // 2. the creator joins
        let profile = self.store.get_user(sender).await?;
        let mut member = json!({"membership": Membership::Join});
        if let Some(p) = &profile {
            if let Some(name) = &p.displayname {
                member["displayname"] = name.clone().into();
            }
            if let Some(avatar) = &p.avatar_url {
                member["avatar_url"] = avatar.clone().into();
            }
        }
        let mut events = vec![state(StateEventType::RoomMember, sender.as_str(), member)];

        // 3. power levels
        let mut users = serde_json::Map::new();
        if !rules.authorization.explicitly_privilege_room_creators {
            users.insert(sender.to_string(), 100.into());
        }
        if preset == "trusted_private_chat" {
            for invitee in &invitees {
                users.insert(invitee.to_string(), 100.into());
            }
        }
        let mut power = json!({
            "users": users,
            "users_default": 0,
            "events": {
                "m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
                "m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": 100,
                "m.room.server_acl": 100, "m.room.encryption": 100,
                // Every member may join a call (MatrixRTC membership is a state event per device).
                "org.matrix.msc3401.call.member": 0
            },
            "events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50, "invite": 0,
            "notifications": {"room": 50}
        });
        if let Some(overrides) = &req.power_level_content_override {
            for (k, v) in overrides {
                power[k] = v.clone();
            }
        }
        events.push(state(StateEventType::RoomPowerLevels, "", power));

        // 4. alias, preset, initial state, name, topic
        if let Some(alias) = &alias {
            events.push(state(StateEventType::RoomCanonicalAlias, "", json!({"alias": alias})));
        }
        let (join_rule, guest) = if preset == "public_chat" { ("public", "forbidden") } else { ("invite", "can_join") };
        let initial: Vec<(StateEventType, &InitialStateEvent)> =
            req.initial_state.iter().map(|s| (StateEventType::from(s.event_type.as_str()), s)).collect();
        let overridden = |t: &StateEventType| initial.iter().any(|(kind, s)| kind == t && s.state_key.is_empty());
        if !overridden(&StateEventType::RoomJoinRules) {
            events.push(state(StateEventType::RoomJoinRules, "", json!({"join_rule": join_rule})));
        }
        if !overridden(&StateEventType::RoomHistoryVisibility) {
            events.push(state(StateEventType::RoomHistoryVisibility, "", json!({"history_visibility": "shared"})));
        }
        if !overridden(&StateEventType::RoomGuestAccess) {
            events.push(state(StateEventType::RoomGuestAccess, "", json!({"guest_access": guest})));
        }
        for (kind, s) in &initial {
            if matches!(kind, StateEventType::RoomCreate | StateEventType::RoomMember) {
                return Err(MatrixError::invalid_param(format!("initial_state may not contain {}", s.event_type)));
            }
            events.push(state(kind.clone(), &s.state_key, Value::Object(s.content.clone())));
        }
        if let Some(name) = &req.name {
            events.push(state(StateEventType::RoomName, "", json!({"name": name})));
        }
        if let Some(topic) = &req.topic {
            events.push(state(StateEventType::RoomTopic, "", json!({"topic": topic})));
        }
        for spec in events {
            self.send_event(sender, device_id, Target::Existing(&room_id), spec, false).await?;
        }

        if let Some(alias) = &alias {
            match self.store.create_alias(alias, &room_id, sender).await {
                Ok(()) => {}
                Err(err) if err.is_conflict() => {
                    return Err(MatrixError::new(ErrorCode::RoomInUse, "Room alias already taken"));
                }
                Err(e) => return Err(e.into()),
            }
        }
        if public {
            self.store.set_room_public(&room_id, true).await?;
        }
        // 5. invites
        for invitee in &invitees {
            let mut extra = serde_json::Map::new();
            if req.is_direct {
                extra.insert("is_direct".into(), true.into());
            }
            let mut change = MembershipChange::new(sender, &room_id, invitee, Membership::Invite).with_content(extra);
            change.device_id = device_id;
            self.update_membership(change).await?;
        }
        Ok(room_id)
    }
}
