//! MatrixRTC: transport discovery (MSC4143) and the embedded LiveKit JWT service, whose requests
//! and errors are those of element-hq/lk-jwt-service (clients talk to either the same way).

use axum::{Json, body::Bytes, extract::State, http::StatusCode};
use myelin_core::{ErrorCode, MatrixError};
use myelin_service::rtc::{LiveKitTokenRequest, OpenIdToken};
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

fn refuse_delegation(delay: DelayFields) -> Result<(), MatrixError> {
    match (delay.delay_id, delay.delay_timeout) {
        (None, None) => Ok(()),
        (Some(_), Some(_)) => {
            Err(MatrixError::bad_json("Delegation of delayed events is not supported by this service yet"))
        }
        _ => Err(MatrixError::bad_json("delay_id and delay_timeout go together")),
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
    refuse_delegation(DelayFields { delay_id: req.delay_id, delay_timeout: req.delay_timeout })?;
    let request = LiveKitTokenRequest::Legacy { room: req.room, device_id: req.device_id, openid };
    Ok(Json(state.livekit_token(request).await?))
}

/// `POST /get_token`.
pub async fn get_token(State(state): State<AppState>, body: Bytes) -> ApiResult<Json<Value>> {
    require_livekit(&state)?;
    let req: SlotBody = parse(&body)?;
    if req.room_id.is_empty() || req.slot_id.is_empty() {
        return Err(MatrixError::bad_json("The request body is missing `room_id` or `slot_id`").into());
    }
    let member = match req.member {
        Some(m) if !m.id.is_empty() && !m.claimed_user_id.is_empty() && !m.claimed_device_id.is_empty() => m,
        _ => {
            return Err(MatrixError::bad_json(
                "The request body `member` is missing an `id`, `claimed_user_id` or `claimed_device_id`",
            )
            .into());
        }
    };
    let openid = openid(req.openid_token)?;
    refuse_delegation(DelayFields { delay_id: req.delay_id, delay_timeout: req.delay_timeout })?;
    let request = LiveKitTokenRequest::Slot {
        room_id: req.room_id,
        slot_id: req.slot_id,
        openid,
        member_id: member.id,
        claimed_user_id: member.claimed_user_id,
        claimed_device_id: member.claimed_device_id,
    };
    Ok(Json(state.livekit_token(request).await?))
}

/// `GET /healthz`: 200 while a LiveKit SFU is configured.
pub async fn healthz(State(state): State<AppState>) -> StatusCode {
    if state.livekit().is_some() { StatusCode::OK } else { StatusCode::NOT_FOUND }
}
