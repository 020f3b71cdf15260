//! End-to-end encryption endpoints: keys, cross-signing, device-list changes, to-device.

use axum::{
    Json,
    extract::{Path, Query, State},
};
use myelin_core::{MatrixError, types::OwnedDeviceId};
use myelin_service::{e2ee::backup::KeyScope, sync::SyncToken};
use serde_json::{Value, json};

use super::{QueryMap, room_id, txn_id};
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
    let delta = state.key_changes(&r, from.pos, to.pos).await?;
    Ok(Json(json!({ "changed": delta.changed, "left": delta.left })))
}

pub async fn device_signing_upload(
    State(state): State<AppState>,
    Auth(r): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    state.device_signing_upload(&r, &body).await?;
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
    Path((event_type, txn)): Path<(String, String)>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    state.send_to_device(&r, &event_type, &txn_id(&txn)?, &body).await?;
    Ok(Json(json!({})))
}

// Key backup -------------------------------------------------------------------------------------

/// The `version` query parameter the `/room_keys/keys` endpoints require.
fn backup_version_param(q: &QueryMap) -> Result<String, MatrixError> {
    q.get("version").cloned().ok_or_else(|| MatrixError::missing_param("version is required"))
}

pub async fn backup_create(
    State(state): State<AppState>,
    Auth(r): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.create_backup_version(&r, &body).await?))
}

pub async fn backup_current(State(state): State<AppState>, Auth(r): Auth) -> ApiResult<Json<Value>> {
    Ok(Json(state.backup_version(&r, None).await?))
}

pub async fn backup_get(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(version): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.backup_version(&r, Some(&version)).await?))
}

pub async fn backup_update(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(version): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    state.update_backup_version(&r, &version, &body).await?;
    Ok(Json(json!({})))
}

pub async fn backup_delete(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(version): Path<String>,
) -> ApiResult<Json<Value>> {
    state.delete_backup_version(&r, &version).await?;
    Ok(Json(json!({})))
}

pub async fn backup_keys_put(
    State(state): State<AppState>,
    Auth(r): Auth,
    Query(q): Query<QueryMap>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.put_backup_keys(&r, &backup_version_param(&q)?, KeyScope::All, &body).await?))
}

pub async fn backup_keys_get(
    State(state): State<AppState>,
    Auth(r): Auth,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.backup_keys(&r, &backup_version_param(&q)?, KeyScope::All).await?))
}

pub async fn backup_keys_delete(
    State(state): State<AppState>,
    Auth(r): Auth,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.delete_backup_keys(&r, &backup_version_param(&q)?, KeyScope::All).await?))
}

pub async fn backup_room_put(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    Query(q): Query<QueryMap>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.put_backup_keys(&r, &backup_version_param(&q)?, KeyScope::Room(&room_id(&room)?), &body).await?))
}

pub async fn backup_room_get(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.backup_keys(&r, &backup_version_param(&q)?, KeyScope::Room(&room_id(&room)?)).await?))
}

pub async fn backup_room_delete(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.delete_backup_keys(&r, &backup_version_param(&q)?, KeyScope::Room(&room_id(&room)?)).await?))
}

pub async fn backup_session_put(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((room, session)): Path<(String, String)>,
    Query(q): Query<QueryMap>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        state
            .put_backup_keys(&r, &backup_version_param(&q)?, KeyScope::Session(&room_id(&room)?, &session), &body)
            .await?,
    ))
}

pub async fn backup_session_get(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((room, session)): Path<(String, String)>,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.backup_keys(&r, &backup_version_param(&q)?, KeyScope::Session(&room_id(&room)?, &session)).await?))
}

pub async fn backup_session_delete(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((room, session)): Path<(String, String)>,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        state.delete_backup_keys(&r, &backup_version_param(&q)?, KeyScope::Session(&room_id(&room)?, &session)).await?,
    ))
}

// Dehydrated devices (MSC3814) --------------------------------------------------------------------

pub async fn dehydrated_put(
    State(state): State<AppState>,
    Auth(r): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.put_dehydrated_device(&r, &body).await?))
}

pub async fn dehydrated_get(State(state): State<AppState>, Auth(r): Auth) -> ApiResult<Json<Value>> {
    Ok(Json(state.dehydrated_device(&r).await?))
}

pub async fn dehydrated_delete(State(state): State<AppState>, Auth(r): Auth) -> ApiResult<Json<Value>> {
    Ok(Json(state.delete_dehydrated_device(&r).await?))
}

/// The current form: `GET …/events?next_batch=`.
pub async fn dehydrated_events_get(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(device_id): Path<OwnedDeviceId>,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.dehydrated_device_events(&r, &device_id, q.get("next_batch").map(String::as_str)).await?))
}

/// The older form: `POST …/events` with `{"next_batch": …}` in the body.
pub async fn dehydrated_events_post(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(device_id): Path<OwnedDeviceId>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let next_batch = body.get("next_batch").and_then(Value::as_str);
    Ok(Json(state.dehydrated_device_events(&r, &device_id, next_batch).await?))
}
