//! End-to-end encryption endpoints: keys, cross-signing, device-list changes, to-device.

use axum::{
    Json,
    extract::{Path, Query, State},
};
use myelin_core::MatrixError;
use myelin_service::sync::SyncToken;
use serde_json::{Value, json};

use super::{
    QueryMap,
    account::{AuthData, require_password},
};
use crate::{
    AppState,
    error::ApiResult,
    extract::{Auth, JsonBody},
};

pub async fn upload(
    State(state): State<AppState>,
    Auth(r): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    if !body.is_object() || body.get("device_keys").is_some_and(Value::is_null) {
        return Err(MatrixError::bad_json("Expected an object without null device_keys").into());
    }
    Ok(Json(state.upload_keys(&r, &body).await?))
}

pub async fn query(
    State(state): State<AppState>,
    Auth(r): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.query_keys(&r, &body).await?))
}

pub async fn claim(
    State(state): State<AppState>,
    Auth(_r): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.claim_keys(&body).await?))
}

/// `GET /keys/changes?from=&to=`: device-list changes between two sync tokens.
pub async fn changes(
    State(state): State<AppState>,
    Auth(r): Auth,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    let parse = |key: &str| -> Result<SyncToken, MatrixError> {
        let raw = q.get(key).ok_or_else(|| MatrixError::missing_param(format!("{key} is required")))?;
        SyncToken::parse(raw).ok_or_else(|| MatrixError::invalid_param(format!("{key} is not a sync token")))
    };
    let (from, to) = (parse("from")?, parse("to")?);
    let to_pos = to.pos.min(state.store.refresh_stream_head().await.map_err(MatrixError::from)?);
    let rooms = state.store.rooms_for_user(&r.user_id).await.map_err(MatrixError::from)?;
    let delta = state.device_list_delta(&r.user_id, &rooms, from.pos, to_pos.max(from.pos)).await?;
    Ok(Json(json!({ "changed": delta.changed, "left": delta.left })))
}

pub async fn device_signing_upload(
    State(state): State<AppState>,
    Auth(r): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    if !body.is_object() {
        return Err(MatrixError::bad_json("Expected an object").into());
    }
    if state.device_signing_needs_auth(&r, &body).await? {
        let auth = body.get("auth").and_then(|a| serde_json::from_value::<AuthData>(a.clone()).ok());
        require_password(&state, &r, auth).await?;
    }
    state.upload_cross_signing_keys(&r, &body).await?;
    Ok(Json(json!({})))
}

pub async fn signatures_upload(
    State(state): State<AppState>,
    Auth(r): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.upload_signatures(&r, &body).await?))
}

pub async fn send_to_device(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((event_type, txn_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    if txn_id.is_empty() || txn_id.len() > 255 {
        return Err(MatrixError::invalid_param("Invalid transaction id").into());
    }
    state.send_to_device(&r, &event_type, &txn_id, &body).await?;
    Ok(Json(json!({})))
}
