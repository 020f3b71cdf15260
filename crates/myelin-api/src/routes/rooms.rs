//! Rooms: create, membership, send, state, redact, history reads, relations and threads.

use axum::{
    Json,
    extract::{Path, Query, State},
};
use myelin_core::MatrixError;
use myelin_service::Direction;
use myelin_service::{
    filter::RoomEventFilter,
    pdu::ClientFormat,
    rooms::CreateRoomRequest,
    sync::{pagination_token, parse_pagination_token},
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{QueryMap, query_u64, room_id, user_id};
use crate::{
    AppState,
    error::ApiResult,
    extract::{Auth, JsonBody},
};

const MAX_TXN_ID: usize = 255;
const MAX_TYPE_LEN: usize = 255;

pub async fn create_room(
    State(state): State<AppState>,
    Auth(r): Auth,
    JsonBody(body): JsonBody<CreateRoomRequest>,
) -> ApiResult<Json<Value>> {
    state.limits.messages.check(&r.user_id)?;
    let room_id = state.create_room(&r.user_id, Some(&r.device_id), body).await?;
    Ok(Json(json!({ "room_id": room_id })))
}

#[derive(Deserialize, Default)]
pub struct MembershipBody {
    reason: Option<String>,
    user_id: Option<String>,
}

fn reason(body: &MembershipBody) -> Result<Option<String>, MatrixError> {
    match &body.reason {
        Some(r) if r.len() > 1024 => Err(MatrixError::invalid_param("reason is too long")),
        other => Ok(other.clone()),
    }
}

pub async fn join_by_id_or_alias(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    JsonBody(body): JsonBody<MembershipBody>,
) -> ApiResult<Json<Value>> {
    let room_id = state.resolve_room(&room).await?;
    state
        .update_membership(&r.user_id, Some(&r.device_id), &room_id, &r.user_id, "join", reason(&body)?, Map::new())
        .await?;
    Ok(Json(json!({ "room_id": room_id })))
}

pub async fn knock(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    JsonBody(body): JsonBody<MembershipBody>,
) -> ApiResult<Json<Value>> {
    let room_id = state.resolve_room(&room).await?;
    state
        .update_membership(&r.user_id, Some(&r.device_id), &room_id, &r.user_id, "knock", reason(&body)?, Map::new())
        .await?;
    Ok(Json(json!({ "room_id": room_id })))
}

pub async fn join(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    JsonBody(body): JsonBody<MembershipBody>,
) -> ApiResult<Json<Value>> {
    let room = room_id(&room)?;
    state
        .update_membership(&r.user_id, Some(&r.device_id), room, &r.user_id, "join", reason(&body)?, Map::new())
        .await?;
    Ok(Json(json!({ "room_id": room })))
}

pub async fn leave(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    JsonBody(body): JsonBody<MembershipBody>,
) -> ApiResult<Json<Value>> {
    let room = room_id(&room)?;
    state
        .update_membership(&r.user_id, Some(&r.device_id), room, &r.user_id, "leave", reason(&body)?, Map::new())
        .await?;
    Ok(Json(json!({})))
}

pub async fn forget(State(state): State<AppState>, Auth(r): Auth, Path(room): Path<String>) -> ApiResult<Json<Value>> {
    state.forget_room(&r.user_id, room_id(&room)?).await?;
    Ok(Json(json!({})))
}

async fn act_on(
    state: &AppState,
    r: &myelin_service::accounts::Requester,
    room: &str,
    body: &MembershipBody,
    membership: &str,
) -> ApiResult<Json<Value>> {
    let room = room_id(room)?;
    let target = body.user_id.as_deref().ok_or_else(|| MatrixError::missing_param("user_id is required"))?;
    let target = user_id(target)?;
    state.limits.messages.check(&r.user_id)?;
    state
        .update_membership(&r.user_id, Some(&r.device_id), room, target, membership, reason(body)?, Map::new())
        .await?;
    Ok(Json(json!({})))
}

pub async fn invite(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    JsonBody(body): JsonBody<MembershipBody>,
) -> ApiResult<Json<Value>> {
    act_on(&state, &r, &room, &body, "invite").await
}

pub async fn kick(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    JsonBody(body): JsonBody<MembershipBody>,
) -> ApiResult<Json<Value>> {
    act_on(&state, &r, &room, &body, "leave").await
}

pub async fn ban(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    JsonBody(body): JsonBody<MembershipBody>,
) -> ApiResult<Json<Value>> {
    act_on(&state, &r, &room, &body, "ban").await
}

pub async fn unban(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    JsonBody(body): JsonBody<MembershipBody>,
) -> ApiResult<Json<Value>> {
    // Unbanning moves the target from ban to leave; the auth rules require the ban level.
    let room = room_id(&room)?;
    let target = user_id(body.user_id.as_deref().ok_or_else(|| MatrixError::missing_param("user_id is required"))?)?;
    match state.store.membership(room, target).await.map_err(MatrixError::from)? {
        Some(m) if m.membership == "ban" => {}
        _ => return Err(MatrixError::forbidden("The user is not banned").into()),
    }
    state.update_membership(&r.user_id, Some(&r.device_id), room, target, "leave", reason(&body)?, Map::new()).await?;
    Ok(Json(json!({})))
}

pub async fn joined_rooms(State(state): State<AppState>, Auth(r): Auth) -> ApiResult<Json<Value>> {
    let rooms = state.store.rooms_for_user(&r.user_id).await.map_err(MatrixError::from)?;
    let joined: Vec<String> = rooms.into_iter().filter(|m| m.membership == "join").map(|m| m.room_id).collect();
    Ok(Json(json!({ "joined_rooms": joined })))
}

fn check_type(event_type: &str) -> Result<(), MatrixError> {
    if event_type.is_empty() || event_type.len() > MAX_TYPE_LEN {
        return Err(MatrixError::invalid_param("Invalid event type"));
    }
    Ok(())
}

pub async fn send(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((room, event_type, txn_id)): Path<(String, String, String)>,
    JsonBody(content): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let room = room_id(&room)?;
    check_type(&event_type)?;
    if txn_id.is_empty() || txn_id.len() > MAX_TXN_ID {
        return Err(MatrixError::invalid_param("Invalid transaction id").into());
    }
    if event_type == "m.room.redaction" {
        return Err(MatrixError::invalid_param("Use the /redact endpoint to redact events").into());
    }
    if let Some(existing) =
        state.store.event_for_txn(&r.user_id, &r.device_id, &txn_id).await.map_err(MatrixError::from)?
    {
        return Ok(Json(json!({ "event_id": existing })));
    }
    state.limits.messages.check(&r.user_id)?;
    let event_id =
        state.send_message_event(&r.user_id, Some(&r.device_id), room, &event_type, content, Some(txn_id)).await?;
    Ok(Json(json!({ "event_id": event_id })))
}

pub async fn put_state(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((room, event_type, state_key)): Path<(String, String, String)>,
    JsonBody(content): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    put_state_inner(&state, &r, &room, &event_type, &state_key, content).await
}

pub async fn put_state_empty_key(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((room, event_type)): Path<(String, String)>,
    JsonBody(content): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    put_state_inner(&state, &r, &room, &event_type, "", content).await
}

async fn put_state_inner(
    state: &AppState,
    r: &myelin_service::accounts::Requester,
    room: &str,
    event_type: &str,
    state_key: &str,
    content: Value,
) -> ApiResult<Json<Value>> {
    let room = room_id(room)?;
    check_type(event_type)?;
    if state_key.len() > MAX_TYPE_LEN {
        return Err(MatrixError::invalid_param("state_key is too long").into());
    }
    if event_type == "m.room.member" {
        let target = user_id(state_key)?;
        let membership = content
            .get("membership")
            .and_then(Value::as_str)
            .ok_or_else(|| MatrixError::bad_json("membership is required"))?;
        let extra = content.as_object().cloned().unwrap_or_default();
        state.limits.messages.check(&r.user_id)?;
        let event_id =
            state.update_membership(&r.user_id, Some(&r.device_id), room, target, membership, None, extra).await?;
        return Ok(Json(json!({ "event_id": event_id })));
    }
    if event_type == "m.room.create" {
        return Err(MatrixError::forbidden("The create event cannot be replaced").into());
    }
    state.limits.messages.check(&r.user_id)?;
    let event_id = state.send_state_event(&r.user_id, Some(&r.device_id), room, event_type, state_key, content).await?;
    Ok(Json(json!({ "event_id": event_id })))
}

pub async fn get_state(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((room, event_type, state_key)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    get_state_inner(&state, &r.user_id, &room, &event_type, &state_key).await
}

pub async fn get_state_empty_key(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((room, event_type)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    get_state_inner(&state, &r.user_id, &room, &event_type, "").await
}

async fn get_state_inner(
    state: &AppState,
    user: &str,
    room: &str,
    event_type: &str,
    state_key: &str,
) -> ApiResult<Json<Value>> {
    let room = room_id(room)?;
    let events = state.room_state(user, room).await?;
    let ev = events
        .iter()
        .find(|e| e.event_type == event_type && e.state_key.as_deref() == Some(state_key))
        .ok_or_else(|| MatrixError::not_found("Event not found"))?;
    let json = state.client_events(std::slice::from_ref(ev), ClientFormat::Client, None).await?;
    Ok(Json(json.into_iter().next().and_then(|v| v.get("content").cloned()).unwrap_or(json!({}))))
}

pub async fn all_state(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
) -> ApiResult<Json<Value>> {
    let room = room_id(&room)?;
    let events = state.room_state(&r.user_id, room).await?;
    Ok(Json(Value::Array(state.client_events(&events, ClientFormat::Client, None).await?)))
}

#[derive(Deserialize, Default)]
pub struct RedactBody {
    reason: Option<String>,
}

pub async fn redact(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((room, event_id, txn_id)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<RedactBody>,
) -> ApiResult<Json<Value>> {
    let room = room_id(&room)?;
    if ruma::EventId::parse(&event_id).is_err() {
        return Err(MatrixError::invalid_param("Invalid event id").into());
    }
    if txn_id.is_empty() || txn_id.len() > MAX_TXN_ID {
        return Err(MatrixError::invalid_param("Invalid transaction id").into());
    }
    if let Some(existing) =
        state.store.event_for_txn(&r.user_id, &r.device_id, &txn_id).await.map_err(MatrixError::from)?
    {
        return Ok(Json(json!({ "event_id": existing })));
    }
    state.limits.messages.check(&r.user_id)?;
    let id = state.redact_event(&r.user_id, Some(&r.device_id), room, &event_id, body.reason, Some(txn_id)).await?;
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

fn token(q: &QueryMap, key: &str) -> Result<Option<i64>, MatrixError> {
    match q.get(key) {
        None => Ok(None),
        Some(t) => parse_pagination_token(t)
            .map(Some)
            .ok_or_else(|| MatrixError::invalid_param(format!("Invalid {key} token"))),
    }
}

pub async fn messages(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    let room = room_id(&room)?;
    let dir = match q.get("dir").map(String::as_str) {
        Some("f") => Direction::Forward,
        Some("b") | None => Direction::Backward,
        Some(_) => return Err(MatrixError::invalid_param("dir must be f or b").into()),
    };
    let limit = query_u64(&q, "limit")?.unwrap_or(10).min(1000) as usize;
    let filter = parse_filter(&q)?;
    let page = state
        .messages(&r.user_id, &r.device_id, room, token(&q, "from")?, token(&q, "to")?, dir, limit, &filter)
        .await?;
    let mut body = json!({ "chunk": page.chunk, "start": pagination_token(page.start), "state": page.state });
    if let Some(end) = page.end {
        body["end"] = pagination_token(end).into();
    }
    Ok(Json(body))
}

pub async fn event(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((room, event_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let room = room_id(&room)?;
    let (_, json) = state.visible_event(&r.user_id, &r.device_id, room, &event_id).await?;
    Ok(Json(json))
}

pub async fn context(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((room, event_id)): Path<(String, String)>,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    let room = room_id(&room)?;
    let limit = query_u64(&q, "limit")?.unwrap_or(10).min(100) as usize;
    let filter = parse_filter(&q)?;
    let (ev, json) = state.visible_event(&r.user_id, &r.device_id, room, &event_id).await?;
    let before_n = limit / 2;
    let after_n = limit - before_n;
    let before = state
        .messages(
            &r.user_id,
            &r.device_id,
            room,
            Some(ev.stream_pos - 1),
            None,
            Direction::Backward,
            before_n.max(1),
            &filter,
        )
        .await?;
    let after = state
        .messages(
            &r.user_id,
            &r.device_id,
            room,
            Some(ev.stream_pos),
            None,
            Direction::Forward,
            after_n.max(1),
            &filter,
        )
        .await?;
    let state_events = state.room_state(&r.user_id, room).await?;
    let state_json = state.client_events(&state_events, ClientFormat::Client, None).await?;
    let take = |chunk: Vec<Value>, n: usize| chunk.into_iter().take(n).collect::<Vec<_>>();
    Ok(Json(json!({
        "event": json,
        "events_before": take(before.chunk, before_n),
        "events_after": take(after.chunk, after_n),
        "start": pagination_token(before.end.unwrap_or(0)),
        "end": pagination_token(after.end.unwrap_or(state.store.stream_head())),
        "state": state_json,
    })))
}

pub async fn members(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    let room = room_id(&room)?;
    let events = state.room_state(&r.user_id, room).await?;
    let membership = q.get("membership").cloned();
    let not_membership = q.get("not_membership").cloned();
    let members: Vec<_> = events
        .into_iter()
        .filter(|e| e.event_type == "m.room.member")
        .filter(|e| {
            let m = myelin_service::Services::event_content(e)["membership"].as_str().unwrap_or("").to_owned();
            membership.as_ref().is_none_or(|w| *w == m) && not_membership.as_ref().is_none_or(|n| *n != m)
        })
        .collect();
    Ok(Json(json!({ "chunk": state.client_events(&members, ClientFormat::Client, None).await? })))
}

pub async fn joined_members(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
) -> ApiResult<Json<Value>> {
    let room = room_id(&room)?;
    state.room_visibility(&r.user_id, room).await?;
    let members = state.store.room_members(room, Some("join")).await.map_err(MatrixError::from)?;
    let joined: Map<String, Value> = members
        .into_iter()
        .map(|m| (m.user_id, json!({ "display_name": m.displayname, "avatar_url": m.avatar_url })))
        .collect();
    Ok(Json(json!({ "joined": joined })))
}

async fn relations_inner(
    state: &AppState,
    r: &myelin_service::accounts::Requester,
    room: &str,
    event_id: &str,
    rel_type: Option<&str>,
    event_type: Option<&str>,
    q: &QueryMap,
) -> ApiResult<Json<Value>> {
    let room = room_id(room)?;
    state.visible_event(&r.user_id, &r.device_id, room, event_id).await?;
    let limit = query_u64(q, "limit")?.unwrap_or(50).clamp(1, 1000) as usize;
    let from = match token(q, "from")? {
        Some(from) => from,
        None => state.store.refresh_stream_head().await.map_err(MatrixError::from)?,
    };
    let raw = state.store.relations(event_id, rel_type, from, limit).await.map_err(MatrixError::from)?;
    let next = (raw.len() == limit).then(|| raw.last().map(|e| pagination_token(e.stream_pos - 1))).flatten();
    let raw: Vec<_> =
        raw.into_iter().filter(|e| e.room_id == room && event_type.is_none_or(|t| e.event_type == t)).collect();
    let visible = state.filter_visible(&r.user_id, raw).await?;
    let mut chunk = state.client_events(&visible, ClientFormat::Client, Some((&r.user_id, &r.device_id))).await?;
    if q.get("dir").is_some_and(|d| d == "f") {
        chunk.reverse();
    }
    let mut body = json!({ "chunk": chunk });
    if let Some(next) = next {
        body["next_batch"] = next.into();
    }
    Ok(Json(body))
}

pub async fn relations(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((room, event_id)): Path<(String, String)>,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    relations_inner(&state, &r, &room, &event_id, None, None, &q).await
}

pub async fn relations_typed(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((room, event_id, rel_type)): Path<(String, String, String)>,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    relations_inner(&state, &r, &room, &event_id, Some(&rel_type), None, &q).await
}

pub async fn relations_typed_evtype(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((room, event_id, rel_type, event_type)): Path<(String, String, String, String)>,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    relations_inner(&state, &r, &room, &event_id, Some(&rel_type), Some(&event_type), &q).await
}

pub async fn threads(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    let room = room_id(&room)?;
    state.room_visibility(&r.user_id, room).await?;
    let limit = query_u64(&q, "limit")?.unwrap_or(50).clamp(1, 1000) as usize;
    let from = token(&q, "from")?.unwrap_or(state.store.stream_head());
    let roots = state.store.thread_roots(room, from, limit).await.map_err(MatrixError::from)?;
    let next = (roots.len() == limit).then(|| roots.last().map(|(_, latest)| pagination_token(latest - 1))).flatten();
    let mut chunk = Vec::new();
    for (root, _) in roots {
        let replies = state
            .store
            .relations(&root.event_id, Some("m.thread"), state.store.stream_head(), 1000)
            .await
            .map_err(MatrixError::from)?;
        let participated = root.sender == r.user_id || replies.iter().any(|e| e.sender == r.user_id);
        if q.get("include").is_some_and(|i| i == "participated") && !participated {
            continue;
        }
        let mut json = state
            .client_events(std::slice::from_ref(&root), ClientFormat::Client, None)
            .await?
            .pop()
            .unwrap_or(Value::Null);
        let latest = match replies.first() {
            Some(ev) => state
                .client_events(std::slice::from_ref(ev), ClientFormat::Client, None)
                .await?
                .pop()
                .unwrap_or(Value::Null),
            None => Value::Null,
        };
        json["unsigned"]["m.relations"] = json!({ "m.thread": { "latest_event": latest, "count": replies.len(), "current_user_participated": participated } });
        chunk.push(json);
    }
    let mut body = json!({ "chunk": chunk });
    if let Some(next) = next {
        body["next_batch"] = next.into();
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
    let room = room_id(&room)?;
    state.limits.messages.check(&r.user_id)?;
    let replacement = state.upgrade_room(&r.user_id, Some(&r.device_id), room, &body.new_version).await?;
    Ok(Json(json!({ "replacement_room": replacement })))
}
