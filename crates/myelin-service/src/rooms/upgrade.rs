//! Room upgrades: a new room of the requested version that names its predecessor, the old room's
//! important state copied over, a tombstone in the old room, and the old room frozen.

use myelin_core::{
    MatrixError, MatrixResult,
    types::{OwnedRoomId, RoomId, StateEventType},
};
use serde_json::{Value, json};

use super::{CreateRoomRequest, EventSpec, version_rules};
use crate::{Services, accounts::Requester, ratelimit::Limit};

/// State copied into the replacement room.
fn copied_state() -> [StateEventType; 9] {
    [
        StateEventType::RoomJoinRules,
        StateEventType::RoomName,
        StateEventType::RoomTopic,
        StateEventType::RoomAvatar,
        StateEventType::RoomHistoryVisibility,
        StateEventType::RoomGuestAccess,
        StateEventType::RoomEncryption,
        StateEventType::RoomServerAcl,
        StateEventType::from("m.room.related_groups"),
    ]
}

impl Services {
    /// `/upgrade`: a new room of `new_version` replacing `old_room` (counted against the
    /// requester's message rate limit).
    pub async fn upgrade_room(
        &self,
        requester: &Requester,
        old_room: &RoomId,
        new_version: &str,
    ) -> MatrixResult<OwnedRoomId> {
        self.check_rate_limit(Limit::Messages, requester.user_id.as_str())?;
        let (sender, device_id) = (requester.user_id.as_ref(), Some(requester.device_id.as_ref()));
        version_rules(new_version)?;
        let room = self.store.get_room(old_room).await?.ok_or_else(|| MatrixError::not_found("Unknown room"))?;
        let power = self.power_levels(old_room).await?;
        if power.user_level(sender) < power.event_level(StateEventType::RoomTombstone.to_string().as_str(), true) {
            return Err(MatrixError::forbidden("You may not upgrade this room"));
        }
        let old_create = self.store.current_state_event(old_room, &StateEventType::RoomCreate, "").await?;
        // The last event of the old room before the upgrade (the specification's meaning of
        // `predecessor.event_id`: clients link to the old room there, at its end).
        let last_event = self
            .room_head(old_room)
            .await?
            .extremities
            .iter()
            .max_by_key(|(_, depth)| *depth)
            .map(|(id, _)| id.to_string());
        let mut predecessor = json!({ "room_id": old_room.as_str() });
        if let Some(last_event) = last_event {
            predecessor["event_id"] = last_event.into();
        }
        let mut creation = serde_json::Map::new();
        creation.insert("predecessor".into(), predecessor);
        if let Some(create) = &old_create
            && let Some(kind) = Self::event_content(create).get("type").cloned()
        {
            creation.insert("type".into(), kind);
        }
        let mut initial_state = Vec::new();
        for event_type in copied_state() {
            if let Some(ev) = self.store.current_state_event(old_room, &event_type, "").await? {
                let content = Self::event_content(&ev);
                if let Value::Object(content) = content {
                    initial_state.push(super::create::InitialStateEvent {
                        event_type: event_type.to_string(),
                        state_key: String::new(),
                        content,
                    });
                }
            }
        }
        // Power levels carry over; the new room's version decides how creators are privileged.
        let mut power_override = self
            .store
            .current_state_event(old_room, &StateEventType::RoomPowerLevels, "")
            .await?
            .map(|ev| Self::event_content(&ev))
            .and_then(|v| v.as_object().cloned());
        let (_, new_rules) = version_rules(new_version)?;
        if let Some(pl) = power_override.as_mut() {
            let users = pl.entry("users").or_insert_with(|| json!({}));
            if let Some(users) = users.as_object_mut() {
                if new_rules.authorization.explicitly_privilege_room_creators {
                    // The new room privileges its creator by itself and forbids listing them.
                    users.remove(sender.as_str());
                } else {
                    // The old room may have privileged the creator implicitly (v12): keep their power.
                    let pl_level = power.event_level(StateEventType::RoomPowerLevels.to_string().as_str(), true);
                    let level = power.user_level(sender).min(100).max(pl_level);
                    users.insert(sender.to_string(), level.into());
                }
            }
        }
        let request = CreateRoomRequest {
            room_version: Some(new_version.to_owned()),
            creation_content: Some(creation),
            initial_state,
            power_level_content_override: power_override,
            preset: Some("private_chat".into()),
            ..Default::default()
        };
        let new_room = self.create_room_as(sender, device_id, request).await?;
        if room.is_public {
            self.store.set_room_public(&new_room, true).await?;
            self.store.set_room_public(old_room, false).await?;
        }
        for alias in self.store.room_aliases(old_room).await? {
            self.store.delete_alias(&alias).await?;
            self.store.create_alias(&alias, &new_room, sender).await?;
        }
        let tombstone = json!({ "body": "This room has been replaced", "replacement_room": new_room.as_str() });
        self.send(sender, device_id, old_room, EventSpec::state(StateEventType::RoomTombstone, "", tombstone)).await?;
        // Freeze the old room: only moderators may speak or invite.
        if let Some(pl) = self.store.current_state_event(old_room, &StateEventType::RoomPowerLevels, "").await? {
            let mut content = Self::event_content(&pl);
            let restricted = power.action_level("kick").max(50);
            content["events_default"] = restricted.into();
            content["invite"] = restricted.into();
            let spec = EventSpec::state(StateEventType::RoomPowerLevels, "", content);
            if let Err(err) = self.send(sender, device_id, old_room, spec).await {
                tracing::warn!(%err, "could not restrict the old room after an upgrade");
            }
        }
        Ok(new_room)
    }
}
