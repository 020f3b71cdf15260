//! The admin API under `/_synapse/admin`, in Synapse's shapes (admin UIs speak it). Every
//! handler but `server_version` requires a server admin's access token (the services check).

mod media;
mod rooms;
mod server;

pub use media::*;
pub use rooms::*;
pub use server::*;

use axum::{
    Json,
    extract::{Path, Query, State},
};
use myelin_core::MatrixError;
use myelin_service::{
    Services,
    admin::{Page, UserListQuery},
    server_notices::Notice,
};
use ruma::events::TimelineEventType;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{QueryMap, query_bool_or, query_u64};
use ruma::OwnedDeviceId;

use crate::{
    AppState,
    error::ApiResult,
    extract::{Auth, JsonBody},
};

/// The notice a `send_server_notice` body describes: `user_id`, `content`, optional `type`.
fn notice_of(body: &Value) -> Result<(ruma::OwnedUserId, Notice), MatrixError> {
    let user =
        body.get("user_id").and_then(Value::as_str).ok_or_else(|| MatrixError::missing_param("user_id is required"))?;
    let content = body.get("content").cloned().ok_or_else(|| MatrixError::missing_param("content is required"))?;
    let event_type = match body.get("type") {
        None | Some(Value::Null) => TimelineEventType::RoomMessage,
        Some(Value::String(t)) if !t.is_empty() && t.len() <= 255 => TimelineEventType::from(t.as_str()),
        Some(_) => return Err(MatrixError::invalid_param("type must be an event type")),
    };
    if body.get("state_key").is_some_and(|k| !k.is_null()) {
        return Err(MatrixError::invalid_param("Server notices cannot be state events"));
    }
    Ok((super::user_id(user)?, Notice { event_type, content, txn: None }))
}

/// `POST /_synapse/admin/v1/send_server_notice`.
pub async fn send_server_notice(
    State(state): State<AppState>,
    Auth(r): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    Services::require_admin(&r)?;
    let (user, notice) = notice_of(&body)?;
    let event_id = state.send_server_notice(&user, notice).await?;
    Ok(Json(json!({ "event_id": event_id })))
}

/// `PUT /_synapse/admin/v1/send_server_notice/{txnId}`: the same, once per transaction id of
/// the admin's device.
pub async fn send_server_notice_txn(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(txn): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    Services::require_admin(&r)?;
    let txn = super::txn_id(&txn)?;
    let (user, mut notice) = notice_of(&body)?;
    notice.txn = Some((format!("{}|{}", r.user_id, r.device_id), txn));
    let event_id = state.send_server_notice(&user, notice).await?;
    Ok(Json(json!({ "event_id": event_id })))
}

/// `GET /_synapse/admin/v1/server_version` (no token needed, as Synapse).
pub async fn server_version() -> Json<Value> {
    Json(json!({ "server_version": format!("Myelin {}", env!("CARGO_PKG_VERSION")) }))
}

/// `GET /_synapse/admin/v2/users?from&limit&name&user_id&guests&deactivated`.
pub async fn list_users(
    State(state): State<AppState>,
    Auth(r): Auth,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    let query = UserListQuery {
        page: page(&q)?,
        name: q.get("name").or_else(|| q.get("user_id")).filter(|n| !n.is_empty()).cloned(),
        guests: query_bool_or(&q, "guests", true)?,
        deactivated: query_bool_or(&q, "deactivated", false)?,
    };
    Ok(Json(state.admin_list_users(&r, query).await?))
}

/// `GET /_synapse/admin/v2/users/{userId}`.
pub async fn user(State(state): State<AppState>, Auth(r): Auth, Path(user): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin_user(&r, &super::user_id(&user)?).await?))
}

/// `GET /_synapse/admin/v1/whois/{userId}`.
pub async fn whois(State(state): State<AppState>, Auth(r): Auth, Path(user): Path<String>) -> ApiResult<Json<Value>> {
    Services::require_admin(&r)?;
    Ok(Json(state.whois(&r, &super::user_id(&user)?).await?))
}

#[derive(Deserialize)]
pub struct DeactivateBody {
    #[serde(default)]
    erase: bool,
}

/// `POST /_synapse/admin/v1/deactivate/{userId}` (an empty body is `{}`).
pub async fn deactivate(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(user): Path<String>,
    JsonBody(body): JsonBody<DeactivateBody>,
) -> ApiResult<Json<Value>> {
    state.admin_deactivate(&r, &super::user_id(&user)?, body.erase).await?;
    Ok(Json(json!({ "id_server_unbind_result": "success" })))
}

#[derive(Deserialize)]
pub struct ResetPasswordBody {
    new_password: String,
    #[serde(default = "default_true")]
    logout_devices: bool,
}

fn default_true() -> bool {
    true
}

/// `POST /_synapse/admin/v1/reset_password/{userId}`.
pub async fn reset_password(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(user): Path<String>,
    JsonBody(body): JsonBody<ResetPasswordBody>,
) -> ApiResult<Json<Value>> {
    state.admin_reset_password(&r, &super::user_id(&user)?, body.new_password, body.logout_devices).await?;
    Ok(Json(json!({})))
}

/// The page a list request asks for (`from`, `limit`).
pub(crate) fn page(q: &QueryMap) -> Result<Page, MatrixError> {
    let from = query_u64(q, "from")?.unwrap_or(0);
    let limit = query_u64(q, "limit")?.map(|l| usize::try_from(l).unwrap_or(usize::MAX));
    Ok(Page { from, limit })
}

/// `GET /_synapse/admin/v2/users/{userId}/devices`.
pub async fn devices(State(state): State<AppState>, Auth(r): Auth, Path(user): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin_devices(&r, &super::user_id(&user)?).await?))
}

/// `GET /_synapse/admin/v2/users/{userId}/devices/{deviceId}`.
pub async fn device(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((user, device)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin_device(&r, &super::user_id(&user)?, &OwnedDeviceId::from(device)).await?))
}

#[derive(Deserialize)]
pub struct RenameBody {
    display_name: Option<String>,
}

/// `PUT /_synapse/admin/v2/users/{userId}/devices/{deviceId}`.
pub async fn rename_device(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((user, device)): Path<(String, String)>,
    JsonBody(body): JsonBody<RenameBody>,
) -> ApiResult<Json<Value>> {
    state.admin_rename_device(&r, &super::user_id(&user)?, &OwnedDeviceId::from(device), body.display_name).await?;
    Ok(Json(json!({})))
}

/// `DELETE /_synapse/admin/v2/users/{userId}/devices/{deviceId}`.
pub async fn delete_device(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((user, device)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    state.admin_delete_devices(&r, &super::user_id(&user)?, vec![OwnedDeviceId::from(device)]).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct DeleteDevicesBody {
    devices: Vec<String>,
}

/// `POST /_synapse/admin/v2/users/{userId}/delete_devices`.
pub async fn delete_devices(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(user): Path<String>,
    JsonBody(body): JsonBody<DeleteDevicesBody>,
) -> ApiResult<Json<Value>> {
    let devices = body.devices.into_iter().map(OwnedDeviceId::from).collect();
    state.admin_delete_devices(&r, &super::user_id(&user)?, devices).await?;
    Ok(Json(json!({})))
}

/// `GET /_synapse/admin/v1/users/{userId}/joined_rooms`.
pub async fn joined_rooms(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin_joined_rooms(&r, &super::user_id(&user)?).await?))
}

/// `GET /_synapse/admin/v1/users/{userId}/memberships`.
pub async fn memberships(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin_memberships(&r, &super::user_id(&user)?).await?))
}

/// `GET /_synapse/admin/v1/users/{userId}/pushers`.
pub async fn pushers(State(state): State<AppState>, Auth(r): Auth, Path(user): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin_pushers(&r, &super::user_id(&user)?).await?))
}
