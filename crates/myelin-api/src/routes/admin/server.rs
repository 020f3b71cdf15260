//! Event reports, registration tokens and federation destinations.

use axum::{
    Json,
    extract::{Path, Query, State},
};
use myelin_core::{MatrixError, types::ServerName};
use myelin_service::admin::{NewRegistrationToken, ReportQuery};
use serde_json::{Value, json};

use super::page;
use crate::{
    AppState,
    error::ApiResult,
    extract::{Auth, JsonBody},
    routes::{QueryMap, query_bool, room_id, user_id},
};

/// `GET /_synapse/admin/v1/event_reports?from&limit&dir&user_id&room_id`.
pub async fn event_reports(
    State(state): State<AppState>,
    Auth(r): Auth,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    let oldest_first = match q.get("dir").map(String::as_str) {
        None | Some("b") => false,
        Some("f") => true,
        Some(_) => return Err(MatrixError::invalid_param("dir must be f or b").into()),
    };
    let query = ReportQuery {
        page: page(&q)?,
        oldest_first,
        reporter: q.get("user_id").map(|u| user_id(u)).transpose()?,
        room_id: q.get("room_id").map(|r| room_id(r)).transpose()?,
    };
    Ok(Json(state.admin_event_reports(&r, query).await?))
}

fn report_id(raw: &str) -> Result<i64, MatrixError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(|| MatrixError::invalid_param("The report id must be a non-negative integer"))
}

/// `GET /_synapse/admin/v1/event_reports/{reportId}`.
pub async fn event_report(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin_event_report(&r, report_id(&id)?).await?))
}

/// `DELETE /_synapse/admin/v1/event_reports/{reportId}`.
pub async fn delete_event_report(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    state.admin_delete_event_report(&r, report_id(&id)?).await?;
    Ok(Json(json!({})))
}

/// A body field that is absent (`None`), `null` (`Some(None)`) or a non-negative integer.
fn optional_count(body: &Value, key: &str) -> Result<Option<Option<u64>>, MatrixError> {
    match body.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => v
            .as_u64()
            .map(|n| Some(Some(n)))
            .ok_or_else(|| MatrixError::invalid_param(format!("{key} must be a non-negative integer or null"))),
    }
}

/// `GET /_synapse/admin/v1/registration_tokens?valid`.
pub async fn registration_tokens(
    State(state): State<AppState>,
    Auth(r): Auth,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    let valid = if q.contains_key("valid") { Some(query_bool(&q, "valid")?) } else { None };
    Ok(Json(state.admin_registration_tokens(&r, valid).await?))
}

/// `POST /_synapse/admin/v1/registration_tokens/new`.
pub async fn new_registration_token(
    State(state): State<AppState>,
    Auth(r): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let token = match body.get("token") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => return Err(MatrixError::invalid_param("token must be a string").into()),
    };
    let length = optional_count(&body, "length")?.flatten().map(|l| usize::try_from(l).unwrap_or(usize::MAX));
    let new = NewRegistrationToken {
        token,
        length,
        uses_allowed: optional_count(&body, "uses_allowed")?.flatten(),
        expiry_time: optional_count(&body, "expiry_time")?.flatten(),
    };
    Ok(Json(state.admin_create_registration_token(&r, new).await?))
}

/// `GET /_synapse/admin/v1/registration_tokens/{token}`.
pub async fn registration_token(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(token): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin_registration_token(&r, &token).await?))
}

/// `PUT /_synapse/admin/v1/registration_tokens/{token}`.
pub async fn update_registration_token(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(token): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let uses = optional_count(&body, "uses_allowed")?;
    let expiry = optional_count(&body, "expiry_time")?;
    Ok(Json(state.admin_update_registration_token(&r, &token, uses, expiry).await?))
}

/// `DELETE /_synapse/admin/v1/registration_tokens/{token}`.
pub async fn delete_registration_token(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(token): Path<String>,
) -> ApiResult<Json<Value>> {
    state.admin_delete_registration_token(&r, &token).await?;
    Ok(Json(json!({})))
}

fn destination(raw: &str) -> Result<&ServerName, MatrixError> {
    <&ServerName>::try_from(raw).map_err(|_| MatrixError::invalid_param("Invalid server name"))
}

/// `GET /_synapse/admin/v1/federation/destinations?from&limit&destination`.
pub async fn destinations(
    State(state): State<AppState>,
    Auth(r): Auth,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    let name = q.get("destination").map(String::as_str).filter(|n| !n.is_empty());
    Ok(Json(state.admin_destinations(&r, page(&q)?, name).await?))
}

/// `GET /_synapse/admin/v1/federation/destinations/{destination}`.
pub async fn destination_info(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin_destination(&r, destination(&name)?).await?))
}

/// `POST /_synapse/admin/v1/federation/destinations/{destination}/reset_connection`.
pub async fn reset_destination(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    state.admin_reset_destination(&r, destination(&name)?).await?;
    Ok(Json(json!({})))
}
