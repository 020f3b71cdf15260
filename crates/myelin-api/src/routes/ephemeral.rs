//! Typing, receipts, read markers, account data, tags and presence.

use axum::{
    Json,
    extract::{Path, State},
};
use myelin_service::presence::PresenceState;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{event_id, room_id, user_id};
use crate::{
    AppState,
    error::ApiResult,
    extract::{Auth, JsonBody},
};

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
    state.set_typing(&r, &user_id(&user)?, &room_id(&room)?, body.typing, body.timeout).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize, Default)]
pub struct ReceiptBody {
    thread_id: Option<String>,
}

pub async fn receipt(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((room, receipt_type, event)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<ReceiptBody>,
) -> ApiResult<Json<Value>> {
    state.send_receipt(&r.user_id, &room_id(&room)?, &receipt_type, &event_id(&event)?, body.thread_id).await?;
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
    let parse = |raw: &Option<String>| raw.as_deref().map(event_id).transpose();
    let (fully_read, read, read_private) = (parse(&body.fully_read)?, parse(&body.read)?, parse(&body.read_private)?);
    state
        .set_read_markers(&r.user_id, &room_id(&room)?, fully_read.as_deref(), read.as_deref(), read_private.as_deref())
        .await?;
    Ok(Json(json!({})))
}

pub async fn get_global_data(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((user, data_type)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.get_account_data(&r, &user_id(&user)?, None, &data_type).await?))
}

pub async fn put_global_data(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((user, data_type)): Path<(String, String)>,
    JsonBody(content): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    state.put_account_data(&r, &user_id(&user)?, None, &data_type, content).await?;
    Ok(Json(json!({})))
}

pub async fn get_room_data(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((user, room, data_type)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.get_account_data(&r, &user_id(&user)?, Some(&room_id(&room)?), &data_type).await?))
}

pub async fn put_room_data(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((user, room, data_type)): Path<(String, String, String)>,
    JsonBody(content): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    state.put_account_data(&r, &user_id(&user)?, Some(&room_id(&room)?), &data_type, content).await?;
    Ok(Json(json!({})))
}

pub async fn get_tags(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((user, room)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.room_tags(&r, &user_id(&user)?, &room_id(&room)?).await?))
}

pub async fn put_tag(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((user, room, tag)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    state.set_room_tag(&r, &user_id(&user)?, &room_id(&room)?, &tag, Some(body)).await?;
    Ok(Json(json!({})))
}

pub async fn delete_tag(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((user, room, tag)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    state.set_room_tag(&r, &user_id(&user)?, &room_id(&room)?, &tag, None).await?;
    Ok(Json(json!({})))
}

/// `GET /presence/{userId}/status`: oneself or a user one shares a room with.
pub async fn get_presence(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.presence(&r, &user_id(&user)?).await?))
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
    let presence = PresenceState::parse(&body.presence)?;
    state.set_presence(&r, &user_id(&user)?, presence, body.status_msg).await?;
    Ok(Json(json!({})))
}
