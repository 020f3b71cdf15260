//! MatrixRTC: transport discovery (MSC4143) and the embedded LiveKit JWT service, whose requests
//! and errors are those of element-hq/lk-jwt-service (clients talk to either the same way).

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header::AUTHORIZATION},
};
use myelin_core::{ErrorCode, MatrixError};
use myelin_service::rtc::{LeaveDelegation, LiveKitTokenRequest, OpenIdToken};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{AppState, error::ApiResult, extract::Auth};

/// `GET …/rtc/transports`.
pub async fn transports(State(state): State<AppState>, Auth(_): Auth) -> Json<Value> {
    Json(json!({ "rtc_transports": state.rtc_transports() }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenIdBody {
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    #[allow(dead_code)]
    token_type: Option<String>,
    #[serde(default)]
    matrix_server_name: String,
    #[serde(default)]
    #[allow(dead_code)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberBody {
    #[serde(default)]
    id: String,
    #[serde(default)]
    claimed_user_id: String,
    #[serde(default)]
    claimed_device_id: String,
}

/// The fields of the reference service's requests that delegate a delayed leave to it.
struct DelayFields {
    delay_id: Option<String>,
    delay_timeout: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyBody {
    #[serde(default)]
    room: String,
    openid_token: Option<OpenIdBody>,
    #[serde(default)]
    device_id: String,
    #[serde(default)]
    delay_id: Option<String>,
    #[serde(default)]
    delay_timeout: Option<u64>,
    #[serde(default)]
    #[allow(dead_code)]
    delay_cs_api_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SlotBody {
    #[serde(default)]
    room_id: String,
    #[serde(default)]
    slot_id: String,
    openid_token: Option<OpenIdBody>,
    member: Option<MemberBody>,
    #[serde(default)]
    delay_id: Option<String>,
    #[serde(default)]
    delay_timeout: Option<u64>,
    #[serde(default)]
    #[allow(dead_code)]
    delay_cs_api_url: Option<String>,
}

/// 404 when no SFU is configured (the service is off).
fn require_livekit(state: &AppState) -> Result<(), MatrixError> {
    match state.livekit() {
        Some(_) => Ok(()),
        None => Err(MatrixError::not_found("No LiveKit SFU is configured on this server")),
    }
}

/// The body, or 400 `M_NOT_JSON` for anything that is not the request's JSON (unknown fields
/// included), as the reference service answers.
fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, MatrixError> {
    serde_json::from_slice(body).map_err(|_| MatrixError::new(ErrorCode::NotJson, "Error reading request"))
}

fn openid(token: Option<OpenIdBody>) -> Result<OpenIdToken, MatrixError> {
    match token {
        Some(t) if !t.access_token.is_empty() && !t.matrix_server_name.is_empty() => {
            Ok(OpenIdToken { access_token: t.access_token, matrix_server_name: t.matrix_server_name })
        }
        _ => Err(MatrixError::bad_json("Missing OpenID token parameters")),
    }
}

/// The delayed leave a token request hands over, if it does (both fields, or neither).
fn delegation(delay: DelayFields) -> Result<Option<LeaveDelegation>, MatrixError> {
    match (delay.delay_id, delay.delay_timeout) {
        (None, None) => Ok(None),
        (Some(delay_id), Some(delay_timeout_ms)) if !delay_id.is_empty() && delay_timeout_ms > 0 => {
            Ok(Some(LeaveDelegation { delay_id, delay_timeout_ms }))
        }
        _ => Err(MatrixError::bad_json("The request body is missing `delay_id` or `delay_timeout`")),
    }
}

/// `POST /sfu/get` (legacy).
pub async fn sfu_get(State(state): State<AppState>, body: Bytes) -> ApiResult<Json<Value>> {
    require_livekit(&state)?;
    let req: LegacyBody = parse(&body)?;
    if req.room.is_empty() {
        return Err(MatrixError::bad_json("Missing room parameter").into());
    }
    let openid = openid(req.openid_token)?;
    let delegation = delegation(DelayFields { delay_id: req.delay_id, delay_timeout: req.delay_timeout })?;
    let request = LiveKitTokenRequest::Legacy { room: req.room, device_id: req.device_id, openid };
    Ok(Json(state.livekit_token(request, delegation).await?))
}

/// A slot request (`/get_token`, `/delegate_delayed_leave`), its fields checked as the reference
/// service checks them, with the delay fields it carries.
fn slot_request(req: SlotBody) -> Result<(LiveKitTokenRequest, DelayFields), MatrixError> {
    if req.room_id.is_empty() || req.slot_id.is_empty() {
        return Err(MatrixError::bad_json("The request body is missing `room_id` or `slot_id`"));
    }
    let member = match req.member {
        Some(m) if !m.id.is_empty() && !m.claimed_user_id.is_empty() && !m.claimed_device_id.is_empty() => m,
        _ => {
            return Err(MatrixError::bad_json(
                "The request body `member` is missing an `id`, `claimed_user_id` or `claimed_device_id`",
            ));
        }
    };
    let openid = openid(req.openid_token)?;
    let request = LiveKitTokenRequest::Slot {
        room_id: req.room_id,
        slot_id: req.slot_id,
        openid,
        member_id: member.id,
        claimed_user_id: member.claimed_user_id,
        claimed_device_id: member.claimed_device_id,
    };
    Ok((request, DelayFields { delay_id: req.delay_id, delay_timeout: req.delay_timeout }))
}

/// `POST /get_token`.
pub async fn get_token(State(state): State<AppState>, body: Bytes) -> ApiResult<Json<Value>> {
    require_livekit(&state)?;
    let (request, delay) = slot_request(parse(&body)?)?;
    let delegation = delegation(delay)?;
    Ok(Json(state.livekit_token(request, delegation).await?))
}

/// `POST /delegate_delayed_leave`: the delay fields are required; answers `{}`.
pub async fn delegate_delayed_leave(State(state): State<AppState>, body: Bytes) -> ApiResult<Json<Value>> {
    require_livekit(&state)?;
    let (request, delay) = slot_request(parse(&body)?)?;
    let delegation = delegation(delay)?
        .ok_or_else(|| MatrixError::bad_json("The request body is missing `delay_id` or `delay_timeout`"))?;
    state.delegate_delayed_leave(request, delegation).await?;
    Ok(Json(json!({})))
}

/// `POST /sfu_webhook`: the SFU's participant events, signed with its API key.
pub async fn sfu_webhook(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult<Json<Value>> {
    require_livekit(&state)?;
    let authorization = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    state.livekit_webhook(authorization, &body).await?;
    Ok(Json(json!({})))
}

/// `GET /healthz`: 200 while a LiveKit SFU is configured.
pub async fn healthz(State(state): State<AppState>) -> StatusCode {
    if state.livekit().is_some() { StatusCode::OK } else { StatusCode::NOT_FOUND }
}

/// `GET /voip/turnServer`: TURN servers for 1:1 calls (`{}` when none is configured).
pub async fn turn_server(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    crate::extract::Auth(r): crate::extract::Auth,
) -> crate::error::ApiResult<axum::Json<serde_json::Value>> {
    Ok(axum::Json(state.turn_server(&r.user_id)?))
}
