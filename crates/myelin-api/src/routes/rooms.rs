//! Rooms: create, membership, send, state, redact, history reads, relations and threads.

use axum::{
    Json,
    extract::{Path, Query, State},
};
use myelin_core::{
    MatrixError, Membership, StreamPos,
    types::{OwnedServerName, StateEventType, TimelineEventType},
};
use myelin_service::{
    accounts::Requester,
    filter::RoomEventFilter,
    rooms::{CreateRoomRequest, EventSpec, HierarchyRequest, MemberAction, MessagesRequest, RelationsRequest},
    sync::{pagination_token, parse_pagination_token},
};
use ruma::events::relation::RelationType;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{QueryMap, event_id, query_u64, room_id, txn_id, user_id};
use crate::{
    AppState,
    error::ApiResult,
    extract::{Auth, JsonBody, MaybeAuth},
};

/// Longest event type and state key accepted in a path.
const MAX_TYPE_LEN: usize = 255;
/// The query parameter that delays a send (MSC4140).
const DELAY_PARAM: &str = "org.matrix.msc4140.delay";
/// The query parameter that makes an event sticky (MSC4354).
const STICKY_PARAM: &str = "org.matrix.msc4354.sticky_duration_ms";

pub async fn create_room(
    State(state): State<AppState>,
    Auth(r): Auth,
    JsonBody(body): JsonBody<CreateRoomRequest>,
) -> ApiResult<Json<Value>> {
    let room_id = state.create_room(&r, body).await?;
    Ok(Json(json!({ "room_id": room_id })))
}

#[derive(Deserialize, Default)]
pub struct MembershipBody {
    reason: Option<String>,
    user_id: Option<String>,
}

impl MembershipBody {
    fn target(&self) -> Result<myelin_core::types::OwnedUserId, MatrixError> {
        user_id(self.user_id.as_deref().ok_or_else(|| MatrixError::missing_param("user_id is required"))?)
    }
}

/// The servers a client names to join or knock through (`via`, and the older `server_name`);
/// malformed names are skipped.
fn via_servers(query: &[(String, String)]) -> Vec<OwnedServerName> {
    query
        .iter()
        .filter(|(key, _)| key == "via" || key == "server_name")
        .filter_map(|(_, value)| OwnedServerName::try_from(value.as_str()).ok())
        .collect()
}

pub async fn join_by_id_or_alias(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    JsonBody(body): JsonBody<MembershipBody>,
) -> ApiResult<Json<Value>> {
    let room_id = state.join_or_knock(&r, &room, Membership::Join, body.reason, &via_servers(&query)).await?;
    Ok(Json(json!({ "room_id": room_id })))
}

pub async fn knock(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    JsonBody(body): JsonBody<MembershipBody>,
) -> ApiResult<Json<Value>> {
    let room_id = state.join_or_knock(&r, &room, Membership::Knock, body.reason, &via_servers(&query)).await?;
    Ok(Json(json!({ "room_id": room_id })))
}

pub async fn join(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    JsonBody(body): JsonBody<MembershipBody>,
) -> ApiResult<Json<Value>> {
    let room_id = state.join_or_knock(&r, room_id(&room)?.as_str(), Membership::Join, body.reason, &[]).await?;
    Ok(Json(json!({ "room_id": room_id })))
}

pub async fn leave(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    JsonBody(body): JsonBody<MembershipBody>,
) -> ApiResult<Json<Value>> {
    state.leave_room(&r, &room_id(&room)?, body.reason).await?;
    Ok(Json(json!({})))
}

pub async fn forget(State(state): State<AppState>, Auth(r): Auth, Path(room): Path<String>) -> ApiResult<Json<Value>> {
    state.forget_room(&r.user_id, &room_id(&room)?).await?;
    Ok(Json(json!({})))
}

async fn act_on(
    state: &AppState,
    r: &Requester,
    room: &str,
    body: MembershipBody,
    action: MemberAction,
) -> ApiResult<Json<Value>> {
    let (room, target) = (room_id(room)?, body.target()?);
    state.act_on_member(r, &room, &target, action, body.reason).await?;
    Ok(Json(json!({})))
}

pub async fn invite(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    JsonBody(body): JsonBody<MembershipBody>,
) -> ApiResult<Json<Value>> {
    act_on(&state, &r, &room, body, MemberAction::Invite).await
}

pub async fn kick(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    JsonBody(body): JsonBody<MembershipBody>,
) -> ApiResult<Json<Value>> {
    act_on(&state, &r, &room, body, MemberAction::Kick).await
}

pub async fn ban(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    JsonBody(body): JsonBody<MembershipBody>,
) -> ApiResult<Json<Value>> {
    act_on(&state, &r, &room, body, MemberAction::Ban).await
}

pub async fn unban(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    JsonBody(body): JsonBody<MembershipBody>,
) -> ApiResult<Json<Value>> {
    act_on(&state, &r, &room, body, MemberAction::Unban).await
}

pub async fn joined_rooms(State(state): State<AppState>, Auth(r): Auth) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "joined_rooms": state.joined_rooms(&r.user_id).await? })))
}

/// An event type from a path: 1 to 255 bytes.
fn event_type(raw: &str) -> Result<TimelineEventType, MatrixError> {
    if raw.is_empty() || raw.len() > MAX_TYPE_LEN {
        return Err(MatrixError::invalid_param("Invalid event type"));
    }
    Ok(TimelineEventType::from(raw))
}

/// A state event type and key from a path.
fn state_address(raw_type: &str, state_key: &str) -> Result<StateEventType, MatrixError> {
    event_type(raw_type)?;
    if state_key.len() > MAX_TYPE_LEN {
        return Err(MatrixError::invalid_param("state_key is too long"));
    }
    Ok(StateEventType::from(raw_type))
}

pub async fn send(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((room, raw_type, txn)): Path<(String, String, String)>,
    Query(query): Query<QueryMap>,
    JsonBody(content): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let spec = EventSpec::message(event_type(&raw_type)?, content).with_txn(txn_id(&txn)?);
    send_now_or_later(&state, &r, &room, spec, &query).await
}

/// `POST /rooms/{roomId}/send/{eventType}`: the old form without a transaction id (Synapse
/// still serves it; old bots use it). Each request is a new event.
pub async fn send_without_txn(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((room, raw_type)): Path<(String, String)>,
    Query(query): Query<QueryMap>,
    JsonBody(content): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let spec = EventSpec::message(event_type(&raw_type)?, content);
    send_now_or_later(&state, &r, &room, spec, &query).await
}

pub async fn put_state(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((room, raw_type, state_key)): Path<(String, String, String)>,
    Query(query): Query<QueryMap>,
    JsonBody(content): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let spec = EventSpec::state(state_address(&raw_type, &state_key)?, &state_key, content);
    send_now_or_later(&state, &r, &room, spec, &query).await
}

pub async fn put_state_empty_key(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((room, raw_type)): Path<(String, String)>,
    Query(query): Query<QueryMap>,
    JsonBody(content): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let spec = EventSpec::state(state_address(&raw_type, "")?, "", content);
    send_now_or_later(&state, &r, &room, spec, &query).await
}

/// Sends an event, or with `org.matrix.msc4140.delay=<ms>` schedules it (MSC4140): the answer is
/// then its `delay_id`, not an event id. `org.matrix.msc4354.sticky_duration_ms=<ms>` makes it
/// sticky (MSC4354).
async fn send_now_or_later(
    state: &AppState,
    r: &Requester,
    room: &str,
    spec: EventSpec,
    query: &QueryMap,
) -> ApiResult<Json<Value>> {
    let room_id = room_id(room)?;
    let sticky = query_u64(query, STICKY_PARAM)?;
    if sticky.is_some_and(|ms| ms > myelin_service::sticky_events::MAX_STICKY_DURATION_MS) {
        return Err(MatrixError::invalid_param(format!("{STICKY_PARAM} must be between 0 and 3600000")).into());
    }
    let mut spec = spec.sticky(sticky);
    // An application service bridging a message sent earlier elsewhere keeps its time (`ts`);
    // anyone else's `ts` is ignored, as Synapse does.
    if r.appservice.is_some()
        && let Some(ts) = query_u64(query, "ts")?
    {
        spec = spec.at(ts);
    }
    if let Some(delay_ms) = query_u64(query, DELAY_PARAM)? {
        let delay_id = state.schedule_delayed_event(r, &room_id, spec, delay_ms).await?;
        return Ok(Json(json!({ "delay_id": delay_id })));
    }
    let event_id = state.send_client_event(r, &room_id, spec).await?;
    Ok(Json(json!({ "event_id": event_id })))
}

/// `?format=event` (spec v1.16): the whole event rather than its content.
fn whole_event(q: &QueryMap) -> Result<bool, MatrixError> {
    match q.get("format").map(String::as_str) {
        None | Some("content") => Ok(false),
        Some("event") => Ok(true),
        Some(_) => Err(MatrixError::invalid_param("format must be content or event")),
    }
}

pub async fn get_state(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((room, raw_type, state_key)): Path<(String, String, String)>,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    let event_type = state_address(&raw_type, &state_key)?;
    let whole = whole_event(&q)?;
    Ok(Json(state.state_event_json(&r.user_id, &room_id(&room)?, &event_type, &state_key, whole).await?))
}

pub async fn get_state_empty_key(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((room, raw_type)): Path<(String, String)>,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    let event_type = state_address(&raw_type, "")?;
    let whole = whole_event(&q)?;
    Ok(Json(state.state_event_json(&r.user_id, &room_id(&room)?, &event_type, "", whole).await?))
}

pub async fn all_state(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(Value::Array(state.room_state_json(&r.user_id, &room_id(&room)?).await?)))
}

#[derive(Deserialize, Default)]
pub struct RedactBody {
    reason: Option<String>,
}

pub async fn redact(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((room, event, txn)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<RedactBody>,
) -> ApiResult<Json<Value>> {
    let id = state.redact_event(&r, &room_id(&room)?, &event_id(&event)?, body.reason, txn_id(&txn)?).await?;
    Ok(Json(json!({ "event_id": id })))
}

fn parse_filter(q: &QueryMap) -> Result<RoomEventFilter, MatrixError> {
    match q.get("filter") {
        Some(f) if !f.trim().is_empty() => {
            serde_json::from_str(f).map_err(|e| MatrixError::bad_json(format!("Invalid filter: {e}")))
        }
        _ => Ok(RoomEventFilter::default()),
    }
}

fn token(q: &QueryMap, key: &str) -> Result<Option<StreamPos>, MatrixError> {
    match q.get(key) {
        None => Ok(None),
        Some(t) => parse_pagination_token(t)
            .map(Some)
            .ok_or_else(|| MatrixError::invalid_param(format!("Invalid {key} token"))),
    }
}

/// The `dir` parameter: backward unless `f`.
fn backward(q: &QueryMap) -> Result<bool, MatrixError> {
    match q.get("dir").map(String::as_str) {
        Some("f") => Ok(false),
        Some("b") | None => Ok(true),
        Some(_) => Err(MatrixError::invalid_param("dir must be f or b")),
    }
}

pub async fn messages(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    let req = MessagesRequest {
        from: token(&q, "from")?,
        to: token(&q, "to")?,
        backward: backward(&q)?,
        limit: query_u64(&q, "limit")?.unwrap_or(10) as usize,
        filter: parse_filter(&q)?,
    };
    let page = state.messages(&r, &room_id(&room)?, req).await?;
    let mut body = json!({ "chunk": page.chunk, "start": pagination_token(page.start), "state": page.state });
    if let Some(end) = page.end {
        body["end"] = pagination_token(end).into();
    }
    Ok(Json(body))
}

pub async fn event(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((room, event)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (_, json) = state.visible_event(&r, &room_id(&room)?, &event_id(&event)?).await?;
    Ok(Json(json))
}

pub async fn context(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((room, event)): Path<(String, String)>,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    let limit = query_u64(&q, "limit")?.unwrap_or(10) as usize;
    Ok(Json(state.context(&r, &room_id(&room)?, &event_id(&event)?, limit, parse_filter(&q)?).await?))
}

/// The `membership`/`not_membership` filters of `/members`.
fn membership_param(q: &QueryMap, key: &str) -> Result<Option<Membership>, MatrixError> {
    q.get(key)
        .map(|m| m.parse::<Membership>().map_err(|_| MatrixError::invalid_param(format!("Invalid {key}"))))
        .transpose()
}

pub async fn members(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    let (membership, not_membership) = (membership_param(&q, "membership")?, membership_param(&q, "not_membership")?);
    let chunk = state.members(&r.user_id, &room_id(&room)?, membership, not_membership).await?;
    Ok(Json(json!({ "chunk": chunk })))
}

pub async fn joined_members(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "joined": state.joined_members(&r.user_id, &room_id(&room)?).await? })))
}

async fn relations_inner(
    state: &AppState,
    r: &Requester,
    (room, event): (&str, &str),
    rel_type: Option<&str>,
    event_type: Option<&str>,
    q: &QueryMap,
) -> ApiResult<Json<Value>> {
    let req = RelationsRequest {
        rel_type: rel_type.map(RelationType::from),
        event_type: event_type.map(TimelineEventType::from),
        from: token(q, "from")?,
        limit: query_u64(q, "limit")?.unwrap_or(50) as usize,
        forward: !backward(q)?,
    };
    let page = state.relations(r, &room_id(room)?, &event_id(event)?, req).await?;
    let mut body = json!({ "chunk": page.chunk });
    if let Some(next) = page.next {
        body["next_batch"] = pagination_token(next).into();
    }
    Ok(Json(body))
}

/// `GET /_matrix/client/v1/rooms/{roomId}/hierarchy`.
pub async fn hierarchy(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    let req = HierarchyRequest {
        from: q.get("from").cloned(),
        limit: query_u64(&q, "limit")?.map(|l| l as usize),
        max_depth: query_u64(&q, "max_depth")?.map(|d| d as usize),
        suggested_only: super::query_bool(&q, "suggested_only")?,
    };
    Ok(Json(state.hierarchy(&r.user_id, &room_id(&room)?, req).await?))
}

/// `GET /_matrix/client/v1/room_summary/{roomIdOrAlias}` (MSC3266; also its unstable paths):
/// with or without an access token; `via` may repeat.
pub async fn room_summary(
    State(state): State<AppState>,
    MaybeAuth(r): MaybeAuth,
    Path(room): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult<Json<Value>> {
    let mut via = Vec::new();
    for (key, value) in q.iter().filter(|(k, _)| k == "via" || k == "server_name") {
        via.push(
            OwnedServerName::try_from(value.as_str())
                .map_err(|_| MatrixError::invalid_param(format!("Invalid server name in {key}")))?,
        );
    }
    let user = r.as_ref().map(|r| r.user_id.as_ref());
    Ok(Json(state.room_summary_of(user, &room, via).await?))
}

pub async fn relations(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((room, event)): Path<(String, String)>,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    relations_inner(&state, &r, (&room, &event), None, None, &q).await
}

pub async fn relations_typed(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((room, event, rel_type)): Path<(String, String, String)>,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    relations_inner(&state, &r, (&room, &event), Some(&rel_type), None, &q).await
}

pub async fn relations_typed_evtype(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((room, event, rel_type, event_type)): Path<(String, String, String, String)>,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    relations_inner(&state, &r, (&room, &event), Some(&rel_type), Some(&event_type), &q).await
}

pub async fn threads(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    let limit = query_u64(&q, "limit")?.unwrap_or(50) as usize;
    let participated_only = match q.get("include").map(String::as_str) {
        None | Some("all") => false,
        Some("participated") => true,
        Some(_) => return Err(MatrixError::invalid_param("include must be all or participated").into()),
    };
    let page = state.threads(&r, &room_id(&room)?, token(&q, "from")?, limit, participated_only).await?;
    let mut body = json!({ "chunk": page.chunk });
    if let Some(next) = page.next {
        body["next_batch"] = pagination_token(next).into();
    }
    Ok(Json(body))
}

#[derive(Deserialize)]
pub struct UpgradeBody {
    new_version: String,
}

pub async fn upgrade(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    JsonBody(body): JsonBody<UpgradeBody>,
) -> ApiResult<Json<Value>> {
    let replacement = state.upgrade_room(&r, &room_id(&room)?, &body.new_version).await?;
    Ok(Json(json!({ "replacement_room": replacement })))
}

/// `POST /rooms/{roomId}/report/{eventId}`.
pub async fn report_event(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((room, event)): Path<(String, String)>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    state.report_event(&r, &room_id(&room)?, &event_id(&event)?, &body).await?;
    Ok(Json(json!({})))
}

/// `POST /rooms/{roomId}/report`.
pub async fn report_room(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    state.report_room(&r, &room_id(&room)?, &body).await?;
    Ok(Json(json!({})))
}

/// `POST /users/{userId}/report`.
pub async fn report_user(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(user): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    state.report_user(&r, &user_id(&user)?, &body).await?;
    Ok(Json(json!({})))
}

/// `GET /_matrix/client/v1/mutual_rooms?user_id=` (and MSC2666's unstable path).
pub async fn mutual_rooms(
    State(state): State<AppState>,
    Auth(r): Auth,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    let other = q.get("user_id").ok_or_else(|| MatrixError::missing_param("user_id is required"))?;
    let joined = state.mutual_rooms(&r, &user_id(other)?).await?;
    Ok(Json(json!({ "joined": joined, "count": joined.len() })))
}

/// `GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event?ts=&dir=f|b` (jump to date).
pub async fn timestamp_to_event(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    let ts = query_u64(&q, "ts")?.ok_or_else(|| MatrixError::missing_param("ts is required"))?;
    let forward = match q.get("dir").map(String::as_str) {
        Some("f") => true,
        Some("b") => false,
        Some(_) => return Err(MatrixError::invalid_param("dir must be f or b").into()),
        None => return Err(MatrixError::missing_param("dir is required").into()),
    };
    let (event_id, origin_server_ts) = state.timestamp_to_event(&r, &room_id(&room)?, ts, forward).await?;
    Ok(Json(json!({ "event_id": event_id, "origin_server_ts": origin_server_ts })))
}
