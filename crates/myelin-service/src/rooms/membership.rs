//! Membership changes: join, leave, invite, kick, ban, unban, knock, forget. Permission checks
//! are the room version's auth rules, applied in the send pipeline.

use myelin_core::{MatrixError, MatrixResult};
use serde_json::{Map, Value};

use super::{EventSpec, send::Target};
use crate::Services;

impl Services {
    /// Sets `target`'s membership in `room_id` to `membership`, sent by `actor`.
    #[allow(clippy::too_many_arguments)]
    pub async fn update_membership(
        &self,
        actor: &str,
        device_id: Option<&str>,
        room_id: &str,
        target: &str,
        membership: &str,
        reason: Option<String>,
        extra: Map<String, Value>,
    ) -> MatrixResult<String> {
        if ruma::UserId::parse(target).is_err() {
            return Err(MatrixError::invalid_param(format!("Invalid user id {target:?}")));
        }
        if self.store.get_room(room_id).await?.is_none() {
            return Err(MatrixError::not_found("Unknown room; joining rooms on other servers is not supported yet"));
        }
        if membership == "invite" {
            if !self.is_local_user(target) {
                return Err(MatrixError::forbidden("Inviting users of other servers is not supported yet"));
            }
            if self.store.get_user(target).await?.is_none_or(|u| u.deactivated) {
                return Err(MatrixError::not_found("Unknown user"));
            }
        }
        let mut content = extra;
        content.insert("membership".into(), membership.into());
        if let Some(reason) = reason {
            content.insert("reason".into(), reason.into());
        }
        if matches!(membership, "join" | "knock")
            && let Some(profile) = self.store.get_user(target).await?
        {
            if let Some(name) = profile.displayname {
                content.entry("displayname").or_insert(name.into());
            }
            if let Some(url) = profile.avatar_url {
                content.entry("avatar_url").or_insert(url.into());
            }
        }
        let spec = EventSpec {
            event_type: "m.room.member".into(),
            state_key: Some(target.to_owned()),
            content: Value::Object(content),
            ..Default::default()
        };
        Ok(self.send_event(actor, device_id, Target::Existing(room_id), spec).await?.0)
    }

    /// Resolves `#alias:server` or `!room` to a local room id.
    pub async fn resolve_room(&self, room_id_or_alias: &str) -> MatrixResult<String> {
        if room_id_or_alias.starts_with('#') {
            if ruma::RoomAliasId::parse(room_id_or_alias).is_err() {
                return Err(MatrixError::invalid_param("Invalid room alias"));
            }
            let resolved = self.store.resolve_alias(room_id_or_alias).await?;
            resolved.map(|(room, _)| room).ok_or_else(|| MatrixError::not_found("Room alias not found"))
        } else if ruma::RoomId::parse(room_id_or_alias).is_ok() {
            Ok(room_id_or_alias.to_owned())
        } else {
            Err(MatrixError::invalid_param("Invalid room id or alias"))
        }
    }

    pub async fn forget_room(&self, user_id: &str, room_id: &str) -> MatrixResult<()> {
        match self.store.membership(room_id, user_id).await? {
            Some(m) if matches!(m.membership.as_str(), "join" | "invite" | "knock") => {
                Err(MatrixError::bad_json("You must leave the room before forgetting it").with_status(400))
            }
            Some(_) => {
                self.store.forget_room(user_id, room_id).await?;
                // Forgetting takes no stream position, so cached room lists cannot catch up on it.
                self.user_rooms.invalidate(user_id);
                self.store.broadcast(myelin_storage::Signal::RoomsOfUser { user_id: user_id.to_owned() });
                Ok(())
            }
            None => Err(MatrixError::not_found("You are not a member of this room")),
        }
    }
}
