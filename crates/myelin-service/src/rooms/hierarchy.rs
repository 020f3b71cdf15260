//! Spaces: `/hierarchy` walks a space's `m.space.child` state events breadth first and answers a
//! summary of each room the user may see. A room this server is not in is asked of the servers
//! its `via` names (`GET /_matrix/federation/v1/hierarchy`), which answer the same summary for the
//! room and those of its children they may show. Pages are offsets into the walk (`next_batch`).

use std::collections::{HashMap, HashSet, VecDeque};

use myelin_core::{
    MatrixError, MatrixResult, Membership,
    types::{OwnedRoomId, OwnedServerName, RoomId, ServerName, StateEventType, UserId},
};
use serde_json::{Value, json};

use crate::{Services, federation::encode_component};

/// Rooms one page answers at most.
const MAX_PAGE: usize = 50;
/// Rooms a walk looks at at most (pages included), and the deepest it goes.
const MAX_WALK: usize = 500;
const MAX_DEPTH: usize = 10;

/// `GET /_matrix/client/v1/rooms/{roomId}/hierarchy`.
#[derive(Clone, Debug, Default)]
pub struct HierarchyRequest {
    pub from: Option<String>,
    pub limit: Option<usize>,
    pub max_depth: Option<usize>,
    pub suggested_only: bool,
}

/// Who asks: a local user, or another server.
#[derive(Clone, Copy)]
enum Asker<'a> {
    User(&'a UserId),
    Server(&'a ServerName),
    /// Someone without an access token (a room summary): open rooms only.
    Anyone,
}

/// A room's summary and its children: (child room id, servers to ask) in state order.
struct Summary {
    chunk: Value,
    children: Vec<(OwnedRoomId, Vec<OwnedServerName>)>,
}

impl Services {
    /// The client's `/hierarchy`: the space and the rooms under it the user may see.
    pub async fn hierarchy(&self, user_id: &UserId, room_id: &RoomId, req: HierarchyRequest) -> MatrixResult<Value> {
        let skip: usize = match &req.from {
            None => 0,
            Some(from) => from.parse().map_err(|_| MatrixError::invalid_param("Invalid from token"))?,
        };
        let limit = req.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
        let max_depth = req.max_depth.unwrap_or(MAX_DEPTH).min(MAX_DEPTH);
        let mut queue: VecDeque<(OwnedRoomId, usize, Vec<OwnedServerName>)> =
            VecDeque::from([(room_id.to_owned(), 0, Vec::new())]);
        let mut seen: HashSet<OwnedRoomId> = HashSet::new();
        // Summaries of rooms on other servers that came with their parent's.
        let mut fetched: HashMap<OwnedRoomId, Summary> = HashMap::new();
        let mut rooms: Vec<Value> = Vec::new();
        let mut walked = 0;
        while let Some((room, depth, via)) = queue.pop_front() {
            if rooms.len() >= skip + limit || walked >= MAX_WALK {
                queue.push_front((room, depth, via));
                break;
            }
            if !seen.insert(room.clone()) {
                continue;
            }
            walked += 1;
            let summary = match fetched.remove(&room) {
                Some(summary) => Some(summary),
                None => self.summary_for(Asker::User(user_id), &room, &via, req.suggested_only, &mut fetched).await?,
            };
            let Some(summary) = summary else {
                if depth == 0 {
                    return Err(MatrixError::forbidden("You may not see this room's hierarchy"));
                }
                continue;
            };
            if depth < max_depth {
                for (child, via) in &summary.children {
                    queue.push_back((child.clone(), depth + 1, via.clone()));
                }
            }
            rooms.push(summary.chunk);
        }
        let page: Vec<Value> = rooms.into_iter().skip(skip).collect();
        let mut out = json!({ "rooms": page });
        if !queue.is_empty() && walked < MAX_WALK {
            out["next_batch"] = (skip + limit).to_string().into();
        }
        Ok(out)
    }

    /// `GET /_matrix/federation/v1/hierarchy/{roomId}`: the room and the children of it this
    /// server knows, as `origin` may see them.
    pub async fn federation_hierarchy(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        suggested_only: bool,
    ) -> MatrixResult<Value> {
        self.check_server_acl(origin, room_id).await?;
        let asker = Asker::Server(origin);
        let Some(summary) = self.local_summary(asker, room_id, suggested_only).await? else {
            return Err(MatrixError::not_found("This server cannot show that room"));
        };
        let mut children = Vec::new();
        let mut inaccessible = Vec::new();
        for (child, _) in &summary.children {
            match self.local_summary(asker, child, suggested_only).await? {
                Some(found) => children.push(found.chunk),
                None if self.knows_state_of(child).await? => inaccessible.push(Value::from(child.as_str())),
                None => {}
            }
        }
        Ok(json!({ "room": summary.chunk, "children": children, "inaccessible_children": inaccessible }))
    }

    /// `GET /_matrix/client/v1/room_summary/{roomIdOrAlias}` (MSC3266): what a client shows of a
    /// room before joining it — to a user who may see it (joined or invited, or the room is
    /// open: public, knockable, world readable, or restricted to a room they are in), or without
    /// a token to anyone for an open room. A room this server is not in is asked of the servers
    /// `via` names (and those its alias resolved to). Unknown and hidden rooms are both 404.
    pub async fn room_summary_of(
        &self,
        user_id: Option<&UserId>,
        room_id_or_alias: &str,
        mut via: Vec<OwnedServerName>,
    ) -> MatrixResult<Value> {
        let not_found = || MatrixError::not_found("No summary of this room: it is unknown, or not visible to you");
        let room_id = if room_id_or_alias.starts_with('#') {
            let alias = ruma::RoomAliasId::parse(room_id_or_alias)
                .map_err(|_| MatrixError::invalid_param("Invalid room alias"))?;
            let (room_id, servers) = self.resolve_alias(&alias).await?;
            via.extend(servers.iter().filter_map(|s| OwnedServerName::try_from(s.as_str()).ok()));
            room_id
        } else {
            OwnedRoomId::try_from(room_id_or_alias)
                .map_err(|_| MatrixError::invalid_param("Invalid room id or alias"))?
        };
        let summary = match user_id {
            Some(user) => self.summary_for(Asker::User(user), &room_id, &via, false, &mut HashMap::new()).await?,
            None => self.local_summary(Asker::Anyone, &room_id, false).await?,
        };
        let mut chunk = summary.ok_or_else(not_found)?.chunk;
        if let Some(fields) = chunk.as_object_mut() {
            fields.remove("children_state");
        }
        if let Some(room) = self.store.get_room(&room_id).await?.filter(|r| r.current_state_group.is_some()) {
            chunk["room_version"] = room.room_version.as_str().into();
            chunk["im.nheko.summary.room_version"] = room.room_version.as_str().into();
            if let Some(encryption) =
                self.store.current_state_event(&room_id, &StateEventType::RoomEncryption, "").await?
                && let Some(algorithm) = Self::event_content(&encryption)["algorithm"].as_str()
            {
                chunk["encryption"] = algorithm.into();
                chunk["im.nheko.summary.encryption"] = algorithm.into();
            }
        }
        if let Some(user) = user_id {
            let membership = self.store.membership(&room_id, user).await?.map(|m| m.membership);
            chunk["membership"] = membership.map_or("leave", |m| m.as_str()).into();
        }
        Ok(chunk)
    }

    /// A room's summary from this server's state, or from the servers `via` names.
    async fn summary_for(
        &self,
        asker: Asker<'_>,
        room_id: &RoomId,
        via: &[OwnedServerName],
        suggested_only: bool,
        fetched: &mut HashMap<OwnedRoomId, Summary>,
    ) -> MatrixResult<Option<Summary>> {
        if self.knows_state_of(room_id).await? {
            return self.local_summary(asker, room_id, suggested_only).await;
        }
        let Asker::User(user_id) = asker else { return Ok(None) };
        for server in via.iter().filter(|s| **s != self.server_name) {
            let path = format!(
                "/_matrix/federation/v1/hierarchy/{}?suggested_only={suggested_only}",
                encode_component(room_id.as_str())
            );
            let answer = match self.federation_get(server, &path).await {
                Ok(answer) => answer,
                Err(e) => {
                    tracing::info!(%room_id, %server, error = %e, "hierarchy over federation failed");
                    continue;
                }
            };
            let Some(room) = answer.get("room").filter(|r| r["room_id"] == room_id.as_str()) else { continue };
            for child in answer.get("children").and_then(Value::as_array).into_iter().flatten() {
                if let Some(id) = child["room_id"].as_str().and_then(|r| OwnedRoomId::try_from(r).ok())
                    && self.may_see_remote(user_id, child).await?
                {
                    fetched.insert(id, remote_summary(child, suggested_only));
                }
            }
            if !self.may_see_remote(user_id, room).await? {
                return Ok(None);
            }
            return Ok(Some(remote_summary(room, suggested_only)));
        }
        Ok(None)
    }

    /// Whether this server holds the room's state (it is, or was, in it).
    async fn knows_state_of(&self, room_id: &RoomId) -> MatrixResult<bool> {
        Ok(self.store.get_room(room_id).await?.is_some_and(|r| r.current_state_group.is_some()))
    }

    /// Whether a local user may see a summary another server sent: the room is open to anyone
    /// who asks (public, knock, world readable), or the user is in one of the rooms it allows.
    async fn may_see_remote(&self, user_id: &UserId, chunk: &Value) -> MatrixResult<bool> {
        let open = matches!(chunk["join_rule"].as_str(), Some("public" | "knock") | None)
            || chunk["world_readable"].as_bool() == Some(true);
        if open {
            return Ok(true);
        }
        for allowed in chunk["allowed_room_ids"].as_array().into_iter().flatten() {
            if let Some(room) = allowed.as_str().and_then(|r| RoomId::parse(r).ok())
                && self.store.membership(&room, user_id).await?.is_some_and(|m| m.membership == Membership::Join)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A room's summary from this server's state, if `asker` may see it.
    async fn local_summary(
        &self,
        asker: Asker<'_>,
        room_id: &RoomId,
        suggested_only: bool,
    ) -> MatrixResult<Option<Summary>> {
        if !self.knows_state_of(room_id).await? {
            return Ok(None);
        }
        let state = self.current_state(room_id).await?;
        let content = |kind: StateEventType| {
            let id = state.get(&(kind, String::new())).cloned();
            async move {
                match id {
                    Some(id) => {
                        self.event(&id).await.map(|ev| ev.map(|ev| Self::event_content(&ev)).unwrap_or(Value::Null))
                    }
                    None => Ok(Value::Null),
                }
            }
        };
        let join_rules = content(StateEventType::RoomJoinRules).await?;
        let join_rule = join_rules["join_rule"].as_str().unwrap_or("invite").to_owned();
        let history = content(StateEventType::RoomHistoryVisibility).await?;
        let world_readable = history["history_visibility"].as_str() == Some("world_readable");
        let allowed: Vec<OwnedRoomId> = join_rules["allow"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["type"] == "m.room_membership")
            .filter_map(|a| a["room_id"].as_str().and_then(|r| OwnedRoomId::try_from(r).ok()))
            .collect();
        let restricted = matches!(join_rule.as_str(), "restricted" | "knock_restricted");
        let open = world_readable || matches!(join_rule.as_str(), "public" | "knock" | "knock_restricted");
        let visible = open
            || match asker {
                Asker::User(user) => {
                    let member = self.store.membership(room_id, user).await?.map(|m| m.membership);
                    let mut in_allowed = false;
                    if restricted {
                        for room in &allowed {
                            if self
                                .store
                                .membership(room, user)
                                .await?
                                .is_some_and(|m| m.membership == Membership::Join)
                            {
                                in_allowed = true;
                                break;
                            }
                        }
                    }
                    matches!(member, Some(Membership::Join | Membership::Invite)) || in_allowed
                }
                // The asking server judges its users by the allowed rooms.
                Asker::Server(server) => restricted || self.servers_in_room(room_id).await?.iter().any(|s| s == server),
                Asker::Anyone => false,
            };
        if !visible {
            return Ok(None);
        }
        let mut children_state = Vec::new();
        let mut children = Vec::new();
        for ((kind, key), id) in state.iter() {
            if *kind != StateEventType::SpaceChild {
                continue;
            }
            let Some(ev) = self.event(id).await? else { continue };
            let child_content = Self::event_content(&ev);
            let via: Vec<OwnedServerName> = child_content["via"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().and_then(|s| OwnedServerName::try_from(s).ok()))
                .collect();
            // A child without `via` is no child (the way spaces remove one).
            let Ok(child) = OwnedRoomId::try_from(key.as_str()) else { continue };
            if via.is_empty() || (suggested_only && child_content["suggested"] != true) {
                continue;
            }
            children_state.push(json!({
                "type": "m.space.child", "state_key": key, "content": child_content,
                "sender": ev.sender, "origin_server_ts": ev.origin_server_ts,
            }));
            children.push((child, via));
        }
        // Children in a stable order: `order` first where given, then room id (the spec's rule).
        let order_of = |c: &Value| c["content"]["order"].as_str().map(str::to_owned);
        let mut paired: Vec<(Value, (OwnedRoomId, Vec<OwnedServerName>))> =
            children_state.into_iter().zip(children).collect();
        paired.sort_by(|(a, (ida, _)), (b, (idb, _))| match (order_of(a), order_of(b)) {
            (Some(x), Some(y)) => x.cmp(&y).then(ida.cmp(idb)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => ida.cmp(idb),
        });
        let (children_state, children): (Vec<Value>, Vec<_>) = paired.into_iter().unzip();
        let joined = self.store.room_members(room_id, Some(Membership::Join)).await?.len();
        let mut chunk = json!({
            "room_id": room_id,
            "num_joined_members": joined,
            "world_readable": world_readable,
            "guest_can_join": content(StateEventType::RoomGuestAccess).await?["guest_access"] == "can_join",
            "join_rule": join_rule,
            "children_state": children_state,
        });
        let create = content(StateEventType::RoomCreate).await?;
        let fields: [(&str, Value); 5] = [
            ("name", content(StateEventType::RoomName).await?["name"].clone()),
            ("topic", content(StateEventType::RoomTopic).await?["topic"].clone()),
            ("canonical_alias", content(StateEventType::RoomCanonicalAlias).await?["alias"].clone()),
            ("avatar_url", content(StateEventType::RoomAvatar).await?["url"].clone()),
            ("room_type", create["type"].clone()),
        ];
        for (key, value) in fields {
            if value.is_string() {
                chunk[key] = value;
            }
        }
        if restricted && matches!(asker, Asker::Server(_)) {
            chunk["allowed_room_ids"] = allowed.iter().map(|r| Value::from(r.as_str())).collect::<Vec<_>>().into();
        }
        Ok(Some(Summary { chunk, children }))
    }
}

/// A summary another server sent: the chunk as clients see it (no `allowed_room_ids`) and its
/// children with their `via`.
fn remote_summary(chunk: &Value, suggested_only: bool) -> Summary {
    let mut chunk = chunk.clone();
    if let Some(object) = chunk.as_object_mut() {
        object.remove("allowed_room_ids");
    }
    let children = chunk["children_state"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| !suggested_only || c["content"]["suggested"] == true)
        .filter_map(|c| {
            let child = OwnedRoomId::try_from(c["state_key"].as_str()?).ok()?;
            let via: Vec<OwnedServerName> = c["content"]["via"]
                .as_array()?
                .iter()
                .filter_map(|s| s.as_str().and_then(|s| OwnedServerName::try_from(s).ok()))
                .collect();
            (!via.is_empty()).then_some((child, via))
        })
        .collect();
    Summary { chunk, children }
}
