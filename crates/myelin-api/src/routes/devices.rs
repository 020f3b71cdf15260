use axum::{
    Json,
    extract::{Path, State},
};
use myelin_core::MatrixError;
use myelin_service::DeviceRecord;
use serde::Deserialize;
use serde_json::{Value, json};

use super::account::{AuthData, require_password};
use crate::{
    AppState,
    error::ApiResult,
    extract::{Auth, JsonBody},
};

fn device_json(d: &DeviceRecord) -> Value {
    json!({
        "device_id": d.device_id,
        "display_name": d.display_name,
        "last_seen_ip": d.last_seen_ip,
        "last_seen_ts": d.last_seen_ms,
    })
}

pub async fn list(State(state): State<AppState>, Auth(r): Auth) -> ApiResult<Json<Value>> {
    let devices = state.store.list_devices(&r.user_id).await.map_err(MatrixError::from)?;
    Ok(Json(json!({ "devices": devices.iter().map(device_json).collect::<Vec<_>>() })))
}

pub async fn get(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(device_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let device = state.store.get_device(&r.user_id, &device_id).await.map_err(MatrixError::from)?;
    let device = device.ok_or_else(|| MatrixError::not_found("Device not found"))?;
    Ok(Json(device_json(&device)))
}

#[derive(Deserialize)]
pub struct UpdateBody {
    display_name: Option<String>,
}

pub async fn update(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(device_id): Path<String>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> ApiResult<Json<Value>> {
    if body.display_name.as_ref().is_some_and(|n| n.len() > 1024) {
        return Err(MatrixError::invalid_param("display_name is too long").into());
    }
    let found = state
        .store
        .set_device_display_name(&r.user_id, &device_id, body.display_name)
        .await
        .map_err(MatrixError::from)?;
    if !found {
        return Err(MatrixError::not_found("Device not found").into());
    }
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct DeleteBody {
    auth: Option<AuthData>,
}

pub async fn delete(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(device_id): Path<String>,
    JsonBody(body): JsonBody<DeleteBody>,
) -> ApiResult<Json<Value>> {
    if state.store.get_device(&r.user_id, &device_id).await.map_err(MatrixError::from)?.is_none() {
        return Err(MatrixError::not_found("Device not found").into());
    }
    require_password(&state, &r, body.auth).await?;
    state.delete_devices(&r.user_id, &[device_id]).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct DeleteManyBody {
    devices: Vec<String>,
    auth: Option<AuthData>,
}

pub async fn delete_many(
    State(state): State<AppState>,
    Auth(r): Auth,
    JsonBody(body): JsonBody<DeleteManyBody>,
) -> ApiResult<Json<Value>> {
    if body.devices.len() > 1000 {
        return Err(MatrixError::invalid_param("Too many devices").into());
    }
    require_password(&state, &r, body.auth).await?;
    state.delete_devices(&r.user_id, &body.devices).await?;
    Ok(Json(json!({})))
}
