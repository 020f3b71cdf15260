//! Room aliases and the public room directory.

use myelin_core::{ErrorCode, MatrixError, MatrixResult};
use myelin_storage::StorageError;
use serde_json::{Value, json};

use crate::Services;

impl Services {
    pub async fn create_alias(&self, user_id: &str, alias: &str, room_id: &str) -> MatrixResult<()> {
        let parsed = ruma::RoomAliasId::parse(alias).map_err(|_| MatrixError::invalid_param("Invalid room alias"))?;
        if parsed.server_name() != self.server_name {
            return Err(MatrixError::invalid_param("Alias must be on this server"));
        }
        if self.store.get_room(room_id).await?.is_none() {
            return Err(MatrixError::not_found("Unknown room"));
        }
        if self.store.membership(room_id, user_id).await?.is_none_or(|m| m.membership != "join") {
            return Err(MatrixError::forbidden("You are not joined to this room"));
        }
        match self.store.create_alias(alias, room_id, user_id).await {
            Ok(()) => Ok(()),
            Err(StorageError::Conflict(_)) => {
                Err(MatrixError::new(ErrorCode::Other("M_ROOM_IN_USE"), "Room alias already exists").with_status(409))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn delete_alias(&self, user_id: &str, is_admin: bool, alias: &str) -> MatrixResult<()> {
        let Some((room_id, creator)) = self.store.resolve_alias(alias).await? else {
            return Err(MatrixError::not_found("Room alias not found"));
        };
        if creator != user_id && !is_admin {
            let power = self.power_levels(&room_id).await?;
            if power.user_level(user_id) < power.event_level("m.room.canonical_alias", true) {
                return Err(MatrixError::forbidden("You may not delete this alias"));
            }
        }
        self.store.delete_alias(alias).await?;
        Ok(())
    }

    pub async fn set_directory_visibility(&self, user_id: &str, room_id: &str, public: bool) -> MatrixResult<()> {
        if self.store.get_room(room_id).await?.is_none() {
            return Err(MatrixError::not_found("Unknown room"));
        }
        let power = self.power_levels(room_id).await?;
        if power.user_level(user_id) < power.event_level("m.room.canonical_alias", true) {
            return Err(MatrixError::forbidden("You may not change the room's directory visibility"));
        }
        self.store.set_room_public(room_id, public).await?;
        Ok(())
    }

    /// One page of the public room directory as the spec's `PublicRoomsChunk`s.
    pub async fn public_rooms(&self, since: usize, limit: usize, filter: Option<&str>) -> MatrixResult<Value> {
        let limit = limit.clamp(1, 500);
        let (rooms, total) = self.store.public_rooms(0, 10_000).await?;
        let mut chunk = Vec::new();
        for room in rooms {
            let state = |t: &'static str| {
                let room_id = room.room_id.clone();
                async move {
                    self.store
                        .current_state_event(&room_id, t, "")
                        .await
                        .ok()
                        .flatten()
                        .map(|ev| Services::event_content(&ev))
                        .unwrap_or(Value::Null)
                }
            };
            let name = state("m.room.name").await["name"].as_str().map(str::to_owned);
            let topic = state("m.room.topic").await["topic"].as_str().map(str::to_owned);
            let alias = state("m.room.canonical_alias").await["alias"].as_str().map(str::to_owned);
            let avatar = state("m.room.avatar").await["url"].as_str().map(str::to_owned);
            let join_rule = state("m.room.join_rules").await["join_rule"].as_str().unwrap_or("public").to_owned();
            let history =
                state("m.room.history_visibility").await["history_visibility"].as_str().unwrap_or("shared").to_owned();
            let guest = state("m.room.guest_access").await["guest_access"].as_str() == Some("can_join");
            let room_type = state("m.room.create").await["type"].as_str().map(str::to_owned);
            if let Some(term) = filter.map(str::to_lowercase).filter(|t| !t.is_empty()) {
                let hay = format!(
                    "{} {} {} {}",
                    room.room_id,
                    name.clone().unwrap_or_default(),
                    topic.clone().unwrap_or_default(),
                    alias.clone().unwrap_or_default()
                )
                .to_lowercase();
                if !hay.contains(&term) {
                    continue;
                }
            }
            let mut entry = json!({
                "room_id": room.room_id,
                "num_joined_members": room.joined_members,
                "world_readable": history == "world_readable",
                "guest_can_join": guest,
                "join_rule": join_rule,
            });
            for (key, value) in [
                ("name", name),
                ("topic", topic),
                ("canonical_alias", alias),
                ("avatar_url", avatar),
                ("room_type", room_type),
            ] {
                if let Some(v) = value {
                    entry[key] = v.into();
                }
            }
            chunk.push(entry);
        }
        let page: Vec<Value> = chunk.iter().skip(since).take(limit).cloned().collect();
        let mut out = json!({ "chunk": page, "total_room_count_estimate": total });
        if since + limit < chunk.len() {
            out["next_batch"] = format!("{}", since + limit).into();
        }
        if since > 0 {
            out["prev_batch"] = format!("{}", since.saturating_sub(limit)).into();
        }
        Ok(out)
    }
}
