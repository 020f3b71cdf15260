use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use myelin_core::types::OwnedDeviceId;
use myelin_service::{DeviceRecord, uia::AuthData};
use serde::Deserialize;
use serde_json::{Value, json};

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
    let devices = state.devices(&r).await?;
    Ok(Json(json!({ "devices": devices.iter().map(device_json).collect::<Vec<_>>() })))
}

pub async fn get(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(device_id): Path<OwnedDeviceId>,
) -> ApiResult<Json<Value>> {
    Ok(Json(device_json(&state.device(&r.user_id, &device_id).await?)))
}

#[derive(Deserialize)]
pub struct UpdateBody {
    display_name: Option<String>,
}

pub async fn update(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(device_id): Path<OwnedDeviceId>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let created = state.put_device(&r, &device_id, body.display_name).await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(json!({}))))
}

#[derive(Deserialize)]
pub struct DeleteBody {
    auth: Option<AuthData>,
}

pub async fn delete(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(device_id): Path<OwnedDeviceId>,
    JsonBody(body): JsonBody<DeleteBody>,
) -> ApiResult<Json<Value>> {
    state.delete_device(&r, &device_id, body.auth.as_ref()).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct DeleteManyBody {
    devices: Vec<OwnedDeviceId>,
    auth: Option<AuthData>,
}

pub async fn delete_many(
    State(state): State<AppState>,
    Auth(r): Auth,
    JsonBody(body): JsonBody<DeleteManyBody>,
) -> ApiResult<Json<Value>> {
    state.delete_devices_with_auth(&r, &body.devices, body.auth.as_ref()).await?;
    Ok(Json(json!({})))
}
