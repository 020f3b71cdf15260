//! `createRoom`: the create event, the creator's join, power levels, preset state, initial state,
//! name/topic/alias and invites, each through the send pipeline.

use myelin_core::{ErrorCode, MatrixError, MatrixResult};
use myelin_storage::StorageError;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{EventSpec, send::Target, version_rules};
use crate::Services;

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
    /// Creates a room and returns its id.
    pub async fn create_room(
        &self,
        sender: &str,
        device_id: Option<&str>,
        req: CreateRoomRequest,
    ) -> MatrixResult<String> {
        let version = req.room_version.clone().unwrap_or_else(|| self.config.default_room_version.clone());
        let (_, rules) = version_rules(&version)?;
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
        for invitee in &req.invite {
            if ruma::UserId::parse(invitee).is_err() {
                return Err(MatrixError::invalid_param(format!("Invalid user id {invitee:?}")));
            }
        }
        let alias = match &req.room_alias_name {
            Some(name) => {
                if name.is_empty() || name.contains(':') || name.contains(char::is_whitespace) || name.len() > 200 {
                    return Err(MatrixError::invalid_param("Invalid room_alias_name"));
                }
                let alias = format!("#{name}:{}", self.server_name);
                if ruma::RoomAliasId::parse(&alias).is_err() {
                    return Err(MatrixError::invalid_param("Invalid room_alias_name"));
                }
                if self.store.resolve_alias(&alias).await?.is_some() {
                    return Err(MatrixError::new(ErrorCode::RoomInUse, "Room alias already taken"));
                }
                Some(alias)
            }
            None => None,
        };

        // 1. m.room.create
        let mut create_content = req.creation_content.clone().unwrap_or_default();
        create_content.insert("room_version".into(), version.clone().into());
        if !rules.authorization.use_room_create_sender {
            create_content.insert("creator".into(), sender.into());
        }
        let spec = EventSpec {
            event_type: "m.room.create".into(),
            state_key: Some(String::new()),
            content: Value::Object(create_content),
            ..Default::default()
        };
        let (_, room_id) = self.send_event(sender, device_id, Target::NewRoom { version: &version }, spec).await?;
        let state = |event_type: &str, state_key: &str, content: Value| EventSpec {
            event_type: event_type.into(),
            state_key: Some(state_key.into()),
            content,
            ..Default::default()
        };

        // 2. the creator joins
        let profile = self.store.get_user(sender).await?;
        let mut member = json!({"membership": "join"});
        if let Some(p) = &profile {
            if let Some(name) = &p.displayname {
                member["displayname"] = name.clone().into();
            }
            if let Some(avatar) = &p.avatar_url {
                member["avatar_url"] = avatar.clone().into();
            }
        }
        let mut events = vec![state("m.room.member", sender, member)];

        // 3. power levels
        let mut users = serde_json::Map::new();
        if !rules.authorization.explicitly_privilege_room_creators {
            users.insert(sender.into(), 100.into());
        }
        if preset == "trusted_private_chat" {
            for invitee in &req.invite {
                users.insert(invitee.clone(), 100.into());
            }
        }
        let mut power = json!({
            "users": users,
            "users_default": 0,
            "events": {
                "m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
                "m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": 100,
                "m.room.server_acl": 100, "m.room.encryption": 100
            },
            "events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50, "invite": 0,
            "notifications": {"room": 50}
        });
        if let Some(overrides) = &req.power_level_content_override {
            for (k, v) in overrides {
                power[k] = v.clone();
            }
        }
        events.push(state("m.room.power_levels", "", power));

        // 4. alias, preset, initial state, name, topic
        if let Some(alias) = &alias {
            events.push(state("m.room.canonical_alias", "", json!({"alias": alias})));
        }
        let (join_rule, guest) = if preset == "public_chat" { ("public", "forbidden") } else { ("invite", "can_join") };
        let overridden = |t: &str| req.initial_state.iter().any(|s| s.event_type == t && s.state_key.is_empty());
        if !overridden("m.room.join_rules") {
            events.push(state("m.room.join_rules", "", json!({"join_rule": join_rule})));
        }
        if !overridden("m.room.history_visibility") {
            events.push(state("m.room.history_visibility", "", json!({"history_visibility": "shared"})));
        }
        if !overridden("m.room.guest_access") {
            events.push(state("m.room.guest_access", "", json!({"guest_access": guest})));
        }
        for s in &req.initial_state {
            if s.event_type == "m.room.create" || s.event_type == "m.room.member" {
                return Err(MatrixError::invalid_param(format!("initial_state may not contain {}", s.event_type)));
            }
            events.push(state(&s.event_type, &s.state_key, Value::Object(s.content.clone())));
        }
        if let Some(name) = &req.name {
            events.push(state("m.room.name", "", json!({"name": name})));
        }
        if let Some(topic) = &req.topic {
            events.push(state("m.room.topic", "", json!({"topic": topic})));
        }
        for spec in events {
            self.send_event(sender, device_id, Target::Existing(&room_id), spec).await?;
        }

        if let Some(alias) = &alias {
            match self.store.create_alias(alias, &room_id, sender).await {
                Ok(()) => {}
                Err(StorageError::Conflict(_)) => {
                    return Err(MatrixError::new(ErrorCode::RoomInUse, "Room alias already taken"));
                }
                Err(e) => return Err(e.into()),
            }
        }
        if public {
            self.store.set_room_public(&room_id, true).await?;
        }
        // 5. invites
        for invitee in &req.invite {
            let mut extra = serde_json::Map::new();
            if req.is_direct {
                extra.insert("is_direct".into(), true.into());
            }
            self.update_membership(sender, device_id, &room_id, invitee, "invite", None, extra).await?;
        }
        Ok(room_id)
    }
}
