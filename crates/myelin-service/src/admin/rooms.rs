//! Rooms as admins see them: the room list (sorted and searched as Synapse's), one room's
//! details, members and state, blocking, and deletion (everyone of this server made to leave,
//! local aliases removed, optionally blocked and purged), asked for at once (v1) or run on the
//! job queue and followed by id (v2).

use std::collections::HashMap;

use myelin_core::{
    MatrixError, MatrixResult,
    types::{OwnedRoomId, OwnedUserId, RoomId},
};
use myelin_storage::{AdminRoomRow, Membership, NewJob, RoomDeletion};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{Page, next_token};
use crate::{Services, accounts::Requester, jobs::JobKind, pdu::ClientFormat, rooms::MembershipChange};

/// The state the room list reads its columns from, by event type.
const LISTED_STATE: [&str; 8] = [
    "m.room.name",
    "m.room.canonical_alias",
    "m.room.create",
    "m.room.encryption",
    "m.room.guest_access",
    "m.room.history_visibility",
    "m.room.topic",
    "m.room.avatar",
];

/// `GET /_synapse/admin/v1/rooms`'s query.
#[derive(Clone, Debug, Default)]
pub struct RoomListQuery {
    pub page: Page,
    /// A column of the list (Synapse's names); `name` if not given.
    pub order_by: Option<String>,
    /// `dir=b`: the order reversed.
    pub backwards: bool,
    /// Part of the name, canonical alias or room id.
    pub search_term: Option<String>,
}

/// What a room deletion does (`DELETE /_synapse/admin/v1|v2/rooms/{roomId}`'s body).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct RoomDeletionRequest {
    /// Nobody of this server may join the room again.
    #[serde(default)]
    pub block: bool,
    /// Everything about the room is removed from the database (default true, as Synapse).
    #[serde(default = "yes")]
    pub purge: bool,
    /// Synapse moves the members to a new room this user makes; Myelin does not (refused).
    #[serde(default)]
    pub new_room_user_id: Option<String>,
}

fn yes() -> bool {
    true
}

/// A room deletion job's payload.
#[derive(Deserialize, Serialize)]
struct DeletionJob {
    delete_id: String,
    room_id: OwnedRoomId,
    admin: OwnedUserId,
    request: RoomDeletionRequest,
}

/// The content of a state event's JSON.
fn content_of(json: &str) -> Value {
    serde_json::from_str::<Value>(json).ok().and_then(|mut v| v.get_mut("content").map(Value::take)).unwrap_or_default()
}

/// A room's list entry: its counts and the columns its state gives.
fn room_entry(row: &AdminRoomRow, state: Option<&HashMap<String, Value>>) -> Value {
    let content = |t: &str| state.and_then(|s| s.get(t)).cloned().unwrap_or_default();
    let text = |t: &str, field: &str| content(t).get(field).and_then(Value::as_str).map(str::to_owned);
    let create = content("m.room.create");
    json!({
        "room_id": row.room_id,
        "name": text("m.room.name", "name"),
        "canonical_alias": text("m.room.canonical_alias", "alias"),
        "topic": text("m.room.topic", "topic"),
        "avatar": text("m.room.avatar", "url"),
        "joined_members": row.joined_members,
        "joined_local_members": row.joined_local_members,
        "invited_members": row.invited_members,
        "version": row.room_version,
        "creator": row.creator,
        "encryption": text("m.room.encryption", "algorithm"),
        "federatable": create.get("m.federate").and_then(Value::as_bool).unwrap_or(true),
        "public": row.is_public,
        "join_rules": row.join_rule,
        "guest_access": text("m.room.guest_access", "guest_access"),
        "history_visibility": text("m.room.history_visibility", "history_visibility"),
        "state_events": row.state_events,
        "room_type": create.get("type").and_then(Value::as_str),
    })
}

/// Orders two list entries by Synapse's column: counts largest first, text A to Z with rooms
/// lacking it last, then by room id.
fn compare_entries(a: &Value, b: &Value, column: &str) -> std::cmp::Ordering {
    let by_column = match (&a[column], &b[column]) {
        (Value::Number(x), Value::Number(y)) => y.as_u64().unwrap_or_default().cmp(&x.as_u64().unwrap_or_default()),
        (Value::Bool(x), Value::Bool(y)) => y.cmp(x),
        (Value::String(x), Value::String(y)) => x.to_lowercase().cmp(&y.to_lowercase()),
        (Value::String(_), _) => std::cmp::Ordering::Less,
        (_, Value::String(_)) => std::cmp::Ordering::Greater,
        _ => std::cmp::Ordering::Equal,
    };
    by_column.then_with(|| a["room_id"].as_str().cmp(&b["room_id"].as_str()))
}

/// The columns a room list may be ordered by.
const ORDER_COLUMNS: [&str; 13] = [
    "name",
    "canonical_alias",
    "joined_members",
    "joined_local_members",
    "version",
    "creator",
    "encryption",
    "federatable",
    "public",
    "join_rules",
    "guest_access",
    "history_visibility",
    "state_events",
];

impl Services {
    /// The list entries of every room, or of one.
    async fn room_entries(&self, room: Option<&RoomId>) -> MatrixResult<Vec<Value>> {
        let rows = self.store.admin_rooms(self.server_name.as_str(), room).await?;
        let mut state: HashMap<OwnedRoomId, HashMap<String, Value>> = HashMap::new();
        for s in self.store.room_state_contents(room, &LISTED_STATE).await? {
            state.entry(s.room_id).or_default().insert(s.event_type, content_of(&s.json));
        }
        Ok(rows.iter().map(|r| room_entry(r, state.get(&r.room_id))).collect())
    }

    /// `GET /_synapse/admin/v1/rooms`: a page of rooms in the asked order, `total_rooms`, and
    /// `next_batch`/`prev_batch` offsets.
    pub async fn admin_list_rooms(&self, requester: &Requester, query: RoomListQuery) -> MatrixResult<Value> {
        Self::require_admin(requester)?;
        let column = query.order_by.as_deref().unwrap_or("name");
        if !ORDER_COLUMNS.contains(&column) {
            return Err(MatrixError::invalid_param(format!("Unknown value for order_by: {column}")));
        }
        let mut rooms = self.room_entries(None).await?;
        if let Some(term) = query.search_term.as_deref().map(str::to_lowercase) {
            rooms.retain(|r| {
                ["name", "canonical_alias", "room_id"]
                    .iter()
                    .any(|f| r[*f].as_str().is_some_and(|v| v.to_lowercase().contains(&term)))
            });
        }
        rooms.sort_by(|a, b| compare_entries(a, b, column));
        if query.backwards {
            rooms.reverse();
        }
        let total = rooms.len() as u64;
        let size = query.page.size();
        let page: Vec<Value> =
            rooms.into_iter().skip(usize::try_from(query.page.from).unwrap_or(usize::MAX)).take(size).collect();
        let mut body = json!({ "rooms": page, "offset": query.page.from, "total_rooms": total });
        if let Some(next) = next_token(query.page, page.len(), total) {
            body["next_batch"] = next.parse::<u64>().unwrap_or_default().into();
        }
        if query.page.from > 0 {
            body["prev_batch"] = query.page.from.saturating_sub(size as u64).into();
        }
        Ok(body)
    }

    /// `GET /_synapse/admin/v1/rooms/{roomId}`: the list's columns and a few more.
    pub async fn admin_room(&self, requester: &Requester, room_id: &RoomId) -> MatrixResult<Value> {
        Self::require_admin(requester)?;
        let mut entry = self.room_entries(Some(room_id)).await?.pop().ok_or_else(unknown_room)?;
        let local_devices = {
            let mut n = 0;
            for member in self.store.room_members(room_id, Some(Membership::Join)).await? {
                if self.is_local_user(&member.user_id) {
                    n += self.store.list_devices(&member.user_id).await?.len();
                }
            }
            n
        };
        entry["joined_local_devices"] = local_devices.into();
        entry["forgotten"] = false.into();
        entry["blocked"] = self.store.room_blocked_by(room_id).await?.is_some().into();
        Ok(entry)
    }

    /// `GET /_synapse/admin/v1/rooms/{roomId}/members`: the joined members.
    pub async fn admin_room_members(&self, requester: &Requester, room_id: &RoomId) -> MatrixResult<Value> {
        Self::require_admin(requester)?;
        self.known_room(room_id).await?;
        let members: Vec<OwnedUserId> =
            self.store.room_members(room_id, Some(Membership::Join)).await?.into_iter().map(|m| m.user_id).collect();
        Ok(json!({ "total": members.len(), "members": members }))
    }

    /// `GET /_synapse/admin/v1/rooms/{roomId}/state`: the current state as client events.
    pub async fn admin_room_state(&self, requester: &Requester, room_id: &RoomId) -> MatrixResult<Value> {
        Self::require_admin(requester)?;
        self.known_room(room_id).await?;
        let ids = self.store.current_state_ids(room_id).await?.into_iter().map(|(_, _, e)| e).collect::<Vec<_>>();
        let events = self.events(&ids).await?;
        Ok(json!({ "state": self.client_events(&events, ClientFormat::Client, None).await? }))
    }

    /// `GET /_synapse/admin/v1/rooms/{roomId}/forward_extremities`: the events new ones are
    /// built on (many of them slow a room down).
    pub async fn admin_forward_extremities(&self, requester: &Requester, room_id: &RoomId) -> MatrixResult<Value> {
        Self::require_admin(requester)?;
        self.known_room(room_id).await?;
        let extremities: Vec<Value> = self
            .store
            .forward_extremities(room_id)
            .await?
            .iter()
            .map(|e| {
                json!({
                    "event_id": e.event_id,
                    "state_group": e.state_after,
                    "depth": e.depth,
                    "received_ts": e.origin_server_ts,
                })
            })
            .collect();
        Ok(json!({ "count": extremities.len(), "results": extremities }))
    }

    /// `GET /_synapse/admin/v1/rooms/{roomId}/block`.
    pub async fn admin_room_block(&self, requester: &Requester, room_id: &RoomId) -> MatrixResult<Value> {
        Self::require_admin(requester)?;
        Ok(match self.store.room_blocked_by(room_id).await? {
            Some(by) => json!({ "block": true, "user_id": by }),
            None => json!({ "block": false }),
        })
    }

    /// `PUT /_synapse/admin/v1/rooms/{roomId}/block`: blocks (any room id, known or not) or
    /// unblocks a room.
    pub async fn admin_set_room_block(&self, requester: &Requester, room_id: &RoomId, block: bool) -> MatrixResult<()> {
        Self::require_admin(requester)?;
        if block {
            self.store.block_room(room_id, &requester.user_id, self.now_ms()).await?;
        } else {
            self.store.unblock_room(room_id).await?;
        }
        tracing::warn!(admin = %requester.user_id, %room_id, block, "admin API: room block changed");
        Ok(())
    }

    /// `M_FORBIDDEN` for a membership change into a room the admins blocked.
    pub(crate) async fn check_room_not_blocked(&self, room_id: &RoomId) -> MatrixResult<()> {
        if self.store.room_blocked_by(room_id).await?.is_some() {
            return Err(MatrixError::forbidden("This room has been blocked on this server"));
        }
        Ok(())
    }

    async fn known_room(&self, room_id: &RoomId) -> MatrixResult<()> {
        self.store.get_room(room_id).await?.map(|_| ()).ok_or_else(unknown_room)
    }

    /// `DELETE /_synapse/admin/v1/rooms/{roomId}`: the deletion done before answering, with its
    /// outcome (`kicked_users`, `failed_to_kick_users`, `local_aliases`, `new_room_id`).
    pub async fn admin_delete_room_now(
        &self,
        requester: &Requester,
        room_id: &RoomId,
        request: RoomDeletionRequest,
    ) -> MatrixResult<Value> {
        let job = self.start_deletion(requester, room_id, request).await?;
        self.run_room_deletion(&job).await?;
        let record = self.store.room_deletion(&job.delete_id).await?.ok_or_else(unknown_room)?;
        match record.error {
            Some(error) => Err(MatrixError::internal(error)),
            None => Ok(record.result.and_then(|r| serde_json::from_str(&r).ok()).unwrap_or_default()),
        }
    }

    /// `DELETE /_synapse/admin/v2/rooms/{roomId}`: the deletion queued (durably, run by any
    /// process); answers its `delete_id`.
    pub async fn admin_delete_room(
        &self,
        requester: &Requester,
        room_id: &RoomId,
        request: RoomDeletionRequest,
    ) -> MatrixResult<Value> {
        let job = self.start_deletion(requester, room_id, request).await?;
        let now = self.now_ms();
        let payload = serde_json::to_string(&job).map_err(|e| MatrixError::internal(e.to_string()))?;
        let new_job = NewJob {
            kind: JobKind::RoomDeletion.as_str().to_owned(),
            dedupe_key: Some(format!("room_deletion {}", job.delete_id)),
            payload,
            run_at_ms: now,
        };
        self.store.schedule_job(new_job, now).await?;
        self.jobs_queued.notify_one();
        Ok(json!({ "delete_id": job.delete_id }))
    }

    /// Checks a deletion request and records the deletion as `shutting_down`.
    async fn start_deletion(
        &self,
        requester: &Requester,
        room_id: &RoomId,
        request: RoomDeletionRequest,
    ) -> MatrixResult<DeletionJob> {
        Self::require_admin(requester)?;
        if request.new_room_user_id.is_some() {
            return Err(MatrixError::invalid_param(
                "new_room_user_id is not supported: Myelin does not move members to a new room",
            ));
        }
        if self.store.get_room(room_id).await?.is_none() && !request.block {
            return Err(unknown_room());
        }
        tracing::warn!(admin = %requester.user_id, %room_id, block = request.block, purge = request.purge,
            "admin API: room deletion asked");
        let job = DeletionJob {
            delete_id: self.random.alphanumeric(16),
            room_id: room_id.to_owned(),
            admin: requester.user_id.clone(),
            request,
        };
        let record = RoomDeletion {
            delete_id: job.delete_id.clone(),
            room_id: job.room_id.clone(),
            status: "shutting_down".to_owned(),
            error: None,
            result: None,
            created_ms: self.now_ms(),
        };
        self.store.put_room_deletion(&record).await?;
        Ok(job)
    }

    /// The room deletion job.
    pub(crate) async fn run_room_deletion_job(&self, payload: &str) -> MatrixResult<()> {
        let job: DeletionJob = serde_json::from_str(payload)
            .map_err(|e| MatrixError::internal(format!("bad room deletion payload: {e}")))?;
        self.run_room_deletion(&job).await
    }

    /// Deletes a room, recording how it went under the deletion's id. Running it again (after
    /// a crash) finishes what is left.
    async fn run_room_deletion(&self, job: &DeletionJob) -> MatrixResult<()> {
        let room_id = &job.room_id;
        let created = self.store.room_deletion(&job.delete_id).await?.map_or(self.now_ms(), |d| d.created_ms);
        if job.request.block {
            self.store.block_room(room_id, &job.admin, self.now_ms()).await?;
        }
        let mut kicked = Vec::new();
        let mut failed = Vec::new();
        for member in self.store.room_members(room_id, None).await? {
            if !self.is_local_user(&member.user_id)
                || !matches!(member.membership, Membership::Join | Membership::Invite | Membership::Knock)
            {
                continue;
            }
            let change = MembershipChange::new(&member.user_id, room_id, &member.user_id, Membership::Leave);
            match self.update_membership(change).await {
                Ok(_) => {
                    if let Err(err) = self.forget_room(&member.user_id, room_id).await {
                        tracing::warn!(%err, user = %member.user_id, %room_id, "room deletion: could not forget");
                    }
                    kicked.push(member.user_id);
                }
                Err(err) => {
                    tracing::warn!(%err, user = %member.user_id, %room_id, "room deletion: could not remove a member");
                    failed.push(member.user_id);
                }
            }
        }
        let mut local_aliases = Vec::new();
        for alias in self.store.room_aliases(room_id).await? {
            if alias.server_name() == self.server_name {
                self.store.delete_alias(&alias).await?;
                local_aliases.push(alias);
            }
        }
        if self.store.get_room(room_id).await?.is_some() {
            self.store.set_room_public(room_id, false).await?;
        }
        let result = json!({
            "kicked_users": kicked,
            "failed_to_kick_users": failed,
            "local_aliases": local_aliases,
            "new_room_id": Value::Null,
        })
        .to_string();
        let record = |status: &str, error: Option<String>| RoomDeletion {
            delete_id: job.delete_id.clone(),
            room_id: room_id.clone(),
            status: status.to_owned(),
            error,
            result: Some(result.clone()),
            created_ms: created,
        };
        if !failed.is_empty() {
            let error = format!("{} members of this server could not be removed", failed.len());
            self.store.put_room_deletion(&record("failed", Some(error))).await?;
            return Ok(());
        }
        if job.request.purge {
            // Someone of this server who joined meanwhile would lose the room without a leave.
            let joined_meanwhile = self
                .store
                .room_members(room_id, Some(Membership::Join))
                .await?
                .iter()
                .any(|m| self.is_local_user(&m.user_id));
            if joined_meanwhile {
                let error = "a member of this server joined during the deletion: block the room and delete it again";
                self.store.put_room_deletion(&record("failed", Some(error.to_owned()))).await?;
                return Ok(());
            }
            self.store.put_room_deletion(&record("purging", None)).await?;
            self.store.purge_room(room_id).await?;
            self.invalidate(&self.heads.cache, &room_id.to_owned());
            for user in &kicked {
                self.invalidate(&self.user_rooms.cache, user);
            }
        }
        self.store.put_room_deletion(&record("complete", None)).await?;
        tracing::warn!(admin = %job.admin, %room_id, kicked = kicked.len(), purged = job.request.purge,
            "admin API: room deleted");
        Ok(())
    }

    /// `GET /_synapse/admin/v2/rooms/{roomId}/delete_status`.
    pub async fn admin_room_deletions(&self, requester: &Requester, room_id: &RoomId) -> MatrixResult<Value> {
        Self::require_admin(requester)?;
        let deletions = self.store.room_deletions(room_id).await?;
        if deletions.is_empty() {
            return Err(MatrixError::not_found("No deletion of this room"));
        }
        Ok(json!({ "results": deletions.iter().map(deletion_status).collect::<Vec<_>>() }))
    }

    /// `GET /_synapse/admin/v2/rooms/delete_status/{deleteId}`.
    pub async fn admin_room_deletion(&self, requester: &Requester, delete_id: &str) -> MatrixResult<Value> {
        Self::require_admin(requester)?;
        let deletion =
            self.store.room_deletion(delete_id).await?.ok_or_else(|| MatrixError::not_found("No such deletion"))?;
        let mut status = deletion_status(&deletion);
        if let Some(object) = status.as_object_mut() {
            object.remove("delete_id");
        }
        Ok(status)
    }
}

fn unknown_room() -> MatrixError {
    MatrixError::not_found("Room not found")
}

/// A deletion in Synapse's status shape.
fn deletion_status(d: &RoomDeletion) -> Value {
    let mut out = Map::new();
    out.insert("delete_id".into(), d.delete_id.clone().into());
    out.insert("status".into(), d.status.clone().into());
    if let Some(error) = &d.error {
        out.insert("error".into(), error.clone().into());
    }
    let shutdown = d.result.as_deref().and_then(|r| serde_json::from_str::<Value>(r).ok()).unwrap_or_else(
        || json!({ "kicked_users": [], "failed_to_kick_users": [], "local_aliases": [], "new_room_id": Value::Null }),
    );
    out.insert("shutdown_room".into(), shutdown);
    Value::Object(out)
}
