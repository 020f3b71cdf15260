//! Delayed events (MSC4140) under `/_matrix/client/unstable/org.matrix.msc4140`: the list, and
//! cancel / restart / send in both path forms. The actions work without an access token (the
//! delay id is the capability, as Synapse and MatrixRTC's JWT service expect); with one, only
//! its user's delayed events are found.

use axum::{
    Json,
    extract::{Path, State},
};
use myelin_core::{ErrorCode, MatrixError};
use myelin_service::{delayed_events::DelayedAction, ratelimit::Limit};
use serde_json::{Value, json};

use crate::{
    AppState,
    error::ApiResult,
    extract::{Auth, ClientAddr, JsonBody, MaybeAuth},
};

pub async fn list(State(state): State<AppState>, Auth(r): Auth) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "delayed_events": state.delayed_events(&r).await? })))
}

/// `POST …/delayed_events/{delay_id}` with `{"action": …}`.
pub async fn update(
    State(state): State<AppState>,
    MaybeAuth(r): MaybeAuth,
    ClientAddr(addr): ClientAddr,
    Path(delay_id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let action = match body.get("action") {
        None => return Err(MatrixError::new(ErrorCode::MissingParam, "'action' is missing").into()),
        Some(Value::String(action)) => DelayedAction::parse(action)?,
        Some(_) => return Err(MatrixError::invalid_param("The action must be cancel, restart or send").into()),
    };
    apply(&state, r, &addr, &delay_id, action).await
}

/// `POST …/delayed_events/{delay_id}/{action}`.
pub async fn update_action(
    State(state): State<AppState>,
    MaybeAuth(r): MaybeAuth,
    ClientAddr(addr): ClientAddr,
    Path((delay_id, action)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let action = DelayedAction::parse(&action)
        .map_err(|_| MatrixError::new(ErrorCode::Unrecognized, "Unrecognized request").with_status(404))?;
    apply(&state, r, &addr, &delay_id, action).await
}

async fn apply(
    state: &AppState,
    r: Option<myelin_service::accounts::Requester>,
    addr: &str,
    delay_id: &str,
    action: DelayedAction,
) -> ApiResult<Json<Value>> {
    // Rate-limited per user, or per address without a token.
    let key = r.as_ref().map_or_else(|| format!("addr:{addr}"), |r| r.user_id.to_string());
    state.check_rate_limit(Limit::Messages, &key)?;
    state.update_delayed_event(r.as_ref(), delay_id, action).await?;
    Ok(Json(json!({})))
}
