//! Room aliases, the public room directory and the user directory.

use myelin_core::{
    ErrorCode, MatrixError, MatrixResult, Membership,
    types::{OwnedRoomAliasId, OwnedRoomId, RoomAliasId, RoomId, StateEventType, UserId},
};
use serde_json::{Value, json};

use crate::{Services, accounts::Requester};

/// Longest user directory search term.
const MAX_SEARCH_TERM: usize = 256;
/// Rooms a public directory page holds at most.
const MAX_DIRECTORY_PAGE: usize = 500;

/// A room's listing in the public directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomVisibility {
    Public,
    Private,
}

impl RoomVisibility {
    pub fn parse(raw: &str) -> MatrixResult<Self> {
        match raw {
            "public" => Ok(Self::Public),
            "private" => Ok(Self::Private),
            _ => Err(MatrixError::invalid_param("visibility must be public or private")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
        }
    }
}

/// One page of the public room directory: offset `since`, at most `limit`, matching `filter`.
#[derive(Debug, Default)]
pub struct PublicRoomsRequest {
    pub since: usize,
    pub limit: usize,
    pub filter: Option<String>,
    /// Another server whose directory to read (over federation); `None` or this server: ours.
    pub server: Option<myelin_core::types::OwnedServerName>,
}

impl Services {
    /// `PUT /directory/room/{alias}`.
    pub async fn create_alias(&self, requester: &Requester, alias: &RoomAliasId, room_id: &RoomId) -> MatrixResult<()> {
        if alias.server_name() != self.server_name {
            return Err(MatrixError::invalid_param("Alias must be on this server"));
        }
        self.check_alias_namespace(alias, requester.appservice.as_deref())?;
        if self.store.get_room(room_id).await?.is_none() {
            return Err(MatrixError::not_found("Unknown room"));
        }
        let member = self.store.membership(room_id, &requester.user_id).await?;
        if member.is_none_or(|m| m.membership != Membership::Join) {
            return Err(MatrixError::forbidden("You are not joined to this room"));
        }
        match self.store.create_alias(alias, room_id, &requester.user_id).await {
            Ok(()) => Ok(()),
            Err(err) if err.is_conflict() => {
                Err(MatrixError::new(ErrorCode::Other("M_ROOM_IN_USE"), "Room alias already exists").with_status(409))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `DELETE /directory/room/{alias}`: by its creator, a moderator of the room or an admin.
    pub async fn delete_alias(&self, requester: &Requester, alias: &RoomAliasId) -> MatrixResult<()> {
        let Some((room_id, creator)) = self.store.resolve_alias(alias).await? else {
            return Err(MatrixError::not_found("Room alias not found"));
        };
        self.check_alias_namespace(alias, requester.appservice.as_deref())?;
        if creator != requester.user_id && !requester.is_admin {
            let power = self.power_levels(&room_id).await?;
            let needed = power.event_level(StateEventType::RoomCanonicalAlias.to_string().as_str(), true);
            if power.user_level(&requester.user_id) < needed {
                return Err(MatrixError::forbidden("You may not delete this alias"));
            }
        }
        self.store.delete_alias(alias).await?;
        Ok(())
    }

    /// `GET /directory/room/{alias}`: the room, and the servers that know it.
    /// An alias of another server is asked of that server.
    pub async fn resolve_alias(&self, alias: &RoomAliasId) -> MatrixResult<(OwnedRoomId, Vec<String>)> {
        if alias.server_name() != self.server_name {
            let path = format!(
                "/_matrix/federation/v1/query/directory?room_alias={}",
                crate::federation::encode_component(alias.as_str())
            );
            let answer = self.federation_get(alias.server_name(), &path).await?;
            let room_id = answer
                .get("room_id")
                .and_then(serde_json::Value::as_str)
                .and_then(|r| OwnedRoomId::try_from(r).ok())
                .ok_or_else(|| {
                    MatrixError::internal(format!("{} sent no room id", alias.server_name())).with_status(502)
                })?;
            let servers = answer
                .get("servers")
                .and_then(serde_json::Value::as_array)
                .map(|s| s.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            return Ok((room_id, servers));
        }
        self.query_directory(alias).await
    }

    /// `GET /_matrix/federation/v1/query/directory`: one of our aliases, for another server.
    pub async fn query_directory(&self, alias: &RoomAliasId) -> MatrixResult<(OwnedRoomId, Vec<String>)> {
        if alias.server_name() != self.server_name {
            return Err(MatrixError::not_found("Room alias not found"));
        }
        let (room_id, _) =
            self.local_alias(alias).await?.ok_or_else(|| MatrixError::not_found("Room alias not found"))?;
        Ok((room_id, vec![self.server_name.to_string()]))
    }

    /// A local alias's room and creator; one not found is asked of the application services
    /// whose namespace holds it (one of them may make it).
    pub(crate) async fn local_alias(
        &self,
        alias: &RoomAliasId,
    ) -> MatrixResult<Option<(myelin_core::types::OwnedRoomId, myelin_core::types::OwnedUserId)>> {
        if let Some(found) = self.store.resolve_alias(alias).await? {
            return Ok(Some(found));
        }
        if self.query_appservices_for_alias(alias).await {
            return Ok(self.store.resolve_alias(alias).await?);
        }
        Ok(None)
    }

    /// `/rooms/{id}/aliases`, for users who may read the room.
    pub async fn room_aliases(&self, user_id: &UserId, room_id: &RoomId) -> MatrixResult<Vec<OwnedRoomAliasId>> {
        self.room_visibility(user_id, room_id).await?;
        Ok(self.store.room_aliases(room_id).await?)
    }

    pub async fn directory_visibility(&self, room_id: &RoomId) -> MatrixResult<RoomVisibility> {
        let room = self.store.get_room(room_id).await?.ok_or_else(|| MatrixError::not_found("Unknown room"))?;
        Ok(if room.is_public { RoomVisibility::Public } else { RoomVisibility::Private })
    }

    pub async fn set_directory_visibility(
        &self,
        requester: &Requester,
        room_id: &RoomId,
        visibility: RoomVisibility,
    ) -> MatrixResult<()> {
        if self.store.get_room(room_id).await?.is_none() {
            return Err(MatrixError::not_found("Unknown room"));
        }
        let power = self.power_levels(room_id).await?;
        let needed = power.event_level(StateEventType::RoomCanonicalAlias.to_string().as_str(), true);
        if power.user_level(&requester.user_id) < needed {
            return Err(MatrixError::forbidden("You may not change the room's directory visibility"));
        }
        self.store.set_room_public(room_id, visibility == RoomVisibility::Public).await?;
        Ok(())
    }

    /// One page of the public room directory as the spec's `PublicRoomsChunk`s.
    pub async fn public_rooms(&self, req: PublicRoomsRequest) -> MatrixResult<Value> {
        if let Some(server) = req.server.as_ref().filter(|s| **s != self.server_name) {
            return self.remote_public_rooms(server, &req).await;
        }
        let limit = req.limit.clamp(1, MAX_DIRECTORY_PAGE);
        let since = req.since;
        let (rooms, total) = self.store.public_rooms(0, 10_000).await?;
        let mut chunk = Vec::new();
        for room in rooms {
            let state = |t: StateEventType| {
                let room_id = room.room_id.clone();
                async move {
                    self.store
                        .current_state_event(&room_id, &t, "")
                        .await
                        .ok()
                        .flatten()
                        .map(|ev| Services::event_content(&ev))
                        .unwrap_or(Value::Null)
                }
            };
            let name = state(StateEventType::RoomName).await["name"].as_str().map(str::to_owned);
            let topic = state(StateEventType::RoomTopic).await["topic"].as_str().map(str::to_owned);
            let alias = state(StateEventType::RoomCanonicalAlias).await["alias"].as_str().map(str::to_owned);
            let avatar = state(StateEventType::RoomAvatar).await["url"].as_str().map(str::to_owned);
            let join_rule =
                state(StateEventType::RoomJoinRules).await["join_rule"].as_str().unwrap_or("public").to_owned();
            let history = state(StateEventType::RoomHistoryVisibility).await["history_visibility"]
                .as_str()
                .unwrap_or("shared")
                .to_owned();
            let guest = state(StateEventType::RoomGuestAccess).await["guest_access"].as_str() == Some("can_join");
            let room_type = state(StateEventType::RoomCreate).await["type"].as_str().map(str::to_owned);
            if let Some(term) = req.filter.as_deref().map(str::to_lowercase).filter(|t| !t.is_empty()) {
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

    /// `/user_directory/search`: users the searcher may see, and whether there were more.
    pub async fn search_user_directory(
        &self,
        requester: &Requester,
        term: &str,
        limit: usize,
    ) -> MatrixResult<(Vec<Value>, bool)> {
        if term.len() > MAX_SEARCH_TERM {
            return Err(MatrixError::invalid_param("search_term is too long"));
        }
        let limit = limit.clamp(1, 100);
        let hits = self.store.search_users(&requester.user_id, term, limit + 1).await?;
        let limited = hits.len() > limit;
        let results = hits
            .into_iter()
            .take(limit)
            .map(|h| json!({ "user_id": h.user_id, "display_name": h.displayname, "avatar_url": h.avatar_url }))
            .collect();
        Ok((results, limited))
    }
}
