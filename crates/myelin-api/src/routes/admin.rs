//! The admin API under `/_synapse/admin`, in Synapse's shapes (admin UIs speak it). Every
//! handler requires a server admin's access token.

use axum::{Json, extract::Path, extract::State};
use myelin_core::MatrixError;
use myelin_service::{accounts::Requester, server_notices::Notice};
use ruma::events::TimelineEventType;
use serde_json::{Value, json};

use crate::{
    AppState,
    error::ApiResult,
    extract::{Auth, JsonBody},
};

fn require_admin(r: &Requester) -> Result<(), MatrixError> {
    if r.is_admin { Ok(()) } else { Err(MatrixError::forbidden("You are not a server admin")) }
}

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
    require_admin(&r)?;
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
    require_admin(&r)?;
    let txn = super::txn_id(&txn)?;
    let (user, mut notice) = notice_of(&body)?;
    notice.txn = Some((format!("{}|{}", r.user_id, r.device_id), txn));
    let event_id = state.send_server_notice(&user, notice).await?;
    Ok(Json(json!({ "event_id": event_id })))
}
