//! Typing, receipts, read markers, account data, tags and presence.

use axum::{
    Json,
    extract::{Path, State},
};
use myelin_core::MatrixError;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{room_id, user_id};
use crate::{
    AppState,
    error::ApiResult,
    extract::{Auth, JsonBody},
};

fn own(path_user: &str, requester: &str) -> Result<(), MatrixError> {
    if user_id(path_user)? != requester {
        return Err(MatrixError::forbidden("You may only act for yourself"));
    }
    Ok(())
}

#[derive(Deserialize)]
pub struct TypingBody {
    typing: bool,
    timeout: Option<u64>,
}

pub async fn typing(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((room, user)): Path<(String, String)>,
    JsonBody(body): JsonBody<TypingBody>,
) -> ApiResult<Json<Value>> {
    own(&user, &r.user_id)?;
    state.set_typing(&r.user_id, room_id(&room)?, body.typing, body.timeout).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize, Default)]
pub struct ReceiptBody {
    thread_id: Option<String>,
}

pub async fn receipt(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((room, receipt_type, event_id)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<ReceiptBody>,
) -> ApiResult<Json<Value>> {
    state.send_receipt(&r.user_id, room_id(&room)?, &receipt_type, &event_id, body.thread_id).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct ReadMarkersBody {
    #[serde(rename = "m.fully_read")]
    fully_read: Option<String>,
    #[serde(rename = "m.read")]
    read: Option<String>,
    #[serde(rename = "m.read.private")]
    read_private: Option<String>,
}

pub async fn read_markers(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    JsonBody(body): JsonBody<ReadMarkersBody>,
) -> ApiResult<Json<Value>> {
    let room = room_id(&room)?;
    if let Some(ev) = &body.read {
        state.send_receipt(&r.user_id, room, "m.read", ev, None).await?;
    }
    if let Some(ev) = &body.read_private {
        state.send_receipt(&r.user_id, room, "m.read.private", ev, None).await?;
    }
    if let Some(ev) = &body.fully_read {
        state.send_receipt(&r.user_id, room, "m.fully_read", ev, None).await?;
    }
    Ok(Json(json!({})))
}

pub async fn get_global_data(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((user, data_type)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    own(&user, &r.user_id)?;
    Ok(Json(state.get_account_data(&r.user_id, "", &data_type).await?))
}

pub async fn put_global_data(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((user, data_type)): Path<(String, String)>,
    JsonBody(content): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    own(&user, &r.user_id)?;
    state.put_account_data(&r.user_id, "", &data_type, content).await?;
    Ok(Json(json!({})))
}

pub async fn get_room_data(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((user, room, data_type)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    own(&user, &r.user_id)?;
    Ok(Json(state.get_account_data(&r.user_id, room_id(&room)?, &data_type).await?))
}

pub async fn put_room_data(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((user, room, data_type)): Path<(String, String, String)>,
    JsonBody(content): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    own(&user, &r.user_id)?;
    state.put_account_data(&r.user_id, room_id(&room)?, &data_type, content).await?;
    Ok(Json(json!({})))
}

async fn tags(state: &AppState, user: &str, room: &str) -> Result<Value, MatrixError> {
    match state.get_account_data(user, room, "m.tag").await {
        Ok(v) => Ok(v),
        Err(e) if e.status == 404 => Ok(json!({ "tags": {} })),
        Err(e) => Err(e),
    }
}

pub async fn get_tags(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((user, room)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    own(&user, &r.user_id)?;
    Ok(Json(tags(&state, &r.user_id, room_id(&room)?).await?))
}

pub async fn put_tag(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((user, room, tag)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    own(&user, &r.user_id)?;
    let room = room_id(&room)?;
    if tag.is_empty() || tag.len() > 255 {
        return Err(MatrixError::invalid_param("Invalid tag").into());
    }
    let mut current = tags(&state, &r.user_id, room).await?;
    current["tags"][tag.as_str()] = body;
    state.put_account_data(&r.user_id, room, "m.tag", current).await?;
    Ok(Json(json!({})))
}

pub async fn delete_tag(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((user, room, tag)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    own(&user, &r.user_id)?;
    let room = room_id(&room)?;
    let mut current = tags(&state, &r.user_id, room).await?;
    if let Some(t) = current["tags"].as_object_mut() {
        t.remove(&tag);
    }
    state.put_account_data(&r.user_id, room, "m.tag", current).await?;
    Ok(Json(json!({})))
}

/// Presence is basic: the server answers what the user set, without tracking activity.
pub async fn get_presence(
    State(state): State<AppState>,
    _auth: Auth,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    let user = user_id(&user)?;
    let stored = state.store.get_account_data(user, "", "org.myelin.presence").await.map_err(MatrixError::from)?;
    let stored =
        stored.and_then(|s| serde_json::from_str::<Value>(&s).ok()).unwrap_or(json!({ "presence": "offline" }));
    Ok(Json(stored))
}

#[derive(Deserialize)]
pub struct PresenceBody {
    presence: String,
    status_msg: Option<String>,
}

pub async fn put_presence(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(user): Path<String>,
    JsonBody(body): JsonBody<PresenceBody>,
) -> ApiResult<Json<Value>> {
    own(&user, &r.user_id)?;
    if !matches!(body.presence.as_str(), "online" | "offline" | "unavailable") {
        return Err(MatrixError::invalid_param("presence must be online, offline or unavailable").into());
    }
    if body.status_msg.as_ref().is_some_and(|s| s.len() > 1024) {
        return Err(MatrixError::invalid_param("status_msg is too long").into());
    }
    let content = json!({ "presence": body.presence, "status_msg": body.status_msg }).to_string();
    state.store.put_account_data(&r.user_id, "", "org.myelin.presence", content).await.map_err(MatrixError::from)?;
    Ok(Json(json!({})))
}
