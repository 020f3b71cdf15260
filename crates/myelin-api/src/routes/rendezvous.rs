//! QR login's rendezvous API: MSC4108's (ETag, If-Match, If-None-Match; what matrix-sdk uses)
//! and MSC4388's (JSON with sequence tokens), over the same sessions.

use std::time::{Duration, UNIX_EPOCH};

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use myelin_core::{ErrorCode, MatrixError};
use myelin_service::rendezvous::{Rendezvous, RendezvousOutcome};
use serde::Deserialize;
use serde_json::json;

use crate::{
    ApiError, AppState,
    extract::{ClientAddr, JsonBody},
};

pub const MSC4108_PATH: &str = "/_matrix/client/unstable/org.matrix.msc4108/rendezvous";

fn http_date(ms: u64) -> HeaderValue {
    let text = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(ms));
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
}

/// The headers every MSC4108 answer about a session carries.
fn session_headers(session: &Rendezvous) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", session.etag)) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(header::EXPIRES, http_date(session.expires_ms));
    headers.insert(header::LAST_MODIFIED, http_date(session.modified_ms));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("ETag"));
    // Anyone can write a session: it is served as inert data, never as a page of this origin.
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    headers
}

fn content_type(headers: &HeaderMap) -> String {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("text/plain").to_owned()
}

/// An ETag as the client sent it back (quoted or not).
fn etag_of(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(|v| v.trim().trim_matches('"').to_owned())
}

fn not_found() -> ApiError {
    MatrixError::not_found("No such rendezvous session, or it has expired").into()
}

/// `POST …/org.matrix.msc4108/rendezvous`: 201 with the session's URL.
pub async fn msc4108_create(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let session = state.create_rendezvous(&body, &content_type(&headers), &addr).await?;
    let url = format!("{}{}/{}", state.config().base_url().trim_end_matches('/'), MSC4108_PATH, session.session_id);
    Ok((StatusCode::CREATED, session_headers(&session), Json(json!({ "url": url }))).into_response())
}

/// `GET …/rendezvous/{id}`: the data, or 304 if the client has this version already.
pub async fn msc4108_get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let session = state.rendezvous(&id).await?.ok_or_else(not_found)?;
    let mut out = session_headers(&session);
    if etag_of(&headers, header::IF_NONE_MATCH).is_some_and(|e| e == session.etag) {
        return Ok((StatusCode::NOT_MODIFIED, out).into_response());
    }
    if let Ok(kind) = HeaderValue::from_str(&session.content_type) {
        out.insert(header::CONTENT_TYPE, kind);
    }
    Ok((StatusCode::OK, out, session.data).into_response())
}

/// `PUT …/rendezvous/{id}` with `If-Match`: 202, or 412 if another write came first.
pub async fn msc4108_put(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let expected =
        etag_of(&headers, header::IF_MATCH).ok_or_else(|| MatrixError::missing_param("If-Match is required"))?;
    match state.write_rendezvous(&id, &expected, &body, &content_type(&headers)).await? {
        RendezvousOutcome::Written(session) => Ok((StatusCode::ACCEPTED, session_headers(&session)).into_response()),
        RendezvousOutcome::Missing => Err(not_found()),
        RendezvousOutcome::Conflict => {
            let body = json!({
                "errcode": "M_UNKNOWN",
                "error": "The session was written since this version",
                "org.matrix.msc4108.errcode": "M_CONCURRENT_WRITE",
            });
            Ok((StatusCode::PRECONDITION_FAILED, Json(body)).into_response())
        }
    }
}

/// `DELETE …/rendezvous/{id}`: 204.
pub async fn msc4108_delete(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    if !state.delete_rendezvous(&id).await? {
        return Err(not_found());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET …/rendezvous` (MSC4388): whether sessions can be created here.
pub async fn msc4388_info() -> Json<serde_json::Value> {
    Json(json!({ "create_available": true }))
}

#[derive(Deserialize)]
pub struct CreateBody {
    data: String,
}

fn expires_in(state: &AppState, session: &Rendezvous) -> u64 {
    session.expires_ms.saturating_sub(state.now_ms())
}

/// `POST …/rendezvous` (MSC4388).
pub async fn msc4388_create(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let session = state.create_rendezvous(body.data.as_bytes(), "application/json", &addr).await?;
    Ok(Json(json!({
        "id": session.session_id,
        "sequence_token": session.etag,
        "expires_in_ms": expires_in(&state, &session),
    })))
}

/// `GET …/rendezvous/{id}` (MSC4388).
pub async fn msc4388_get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let session = state.rendezvous(&id).await?.ok_or_else(not_found)?;
    Ok(Json(json!({
        "data": String::from_utf8_lossy(&session.data),
        "sequence_token": session.etag,
        "expires_in_ms": expires_in(&state, &session),
    })))
}

#[derive(Deserialize)]
pub struct PutBody {
    sequence_token: String,
    data: String,
}

/// `PUT …/rendezvous/{id}` (MSC4388): compare-and-swap on the sequence token; a retry of a
/// write that went through (the same data) gets the current token.
pub async fn msc4388_put(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PutBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    match state.write_rendezvous(&id, &body.sequence_token, body.data.as_bytes(), "application/json").await? {
        RendezvousOutcome::Written(session) => Ok(Json(json!({ "sequence_token": session.etag }))),
        RendezvousOutcome::Missing => Err(not_found()),
        RendezvousOutcome::Conflict => {
            let current = state.rendezvous(&id).await?.ok_or_else(not_found)?;
            if current.data == body.data.as_bytes() {
                return Ok(Json(json!({ "sequence_token": current.etag })));
            }
            Err(MatrixError::new(ErrorCode::Other("M_CONCURRENT_WRITE"), "The session was written since this version")
                .with_status(409)
                .into())
        }
    }
}

/// `DELETE …/rendezvous/{id}` (MSC4388).
pub async fn msc4388_delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !state.delete_rendezvous(&id).await? {
        return Err(not_found());
    }
    Ok(Json(json!({})))
}
