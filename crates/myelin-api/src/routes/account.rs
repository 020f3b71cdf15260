//! Registration, login, logout, refresh, whoami, password change, deactivation.

use axum::{
    Json,
    extract::{Query, State},
};
use myelin_core::{ErrorCode, MatrixError};
use myelin_service::accounts::{IssuedSession, Requester};
use serde::Deserialize;
use serde_json::{Value, json};

use super::QueryMap;
use crate::{
    AppState,
    error::{ApiError, ApiResult},
    extract::{Auth, ClientAddr, JsonBody},
};

#[derive(Deserialize, Default)]
pub struct AuthData {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub session: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    pub identifier: Option<Identifier>,
    pub user: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct Identifier {
    #[serde(rename = "type")]
    pub kind: String,
    pub user: Option<String>,
}

/// A 401 asking the client to authenticate with these flows.
fn uia_challenge(
    state: &AppState,
    flows: Vec<Vec<&str>>,
    session: Option<String>,
    error: Option<MatrixError>,
) -> ApiError {
    let session = session.filter(|s| state.uia.exists(s)).unwrap_or_else(|| state.uia.create());
    let completed = state.uia.completed(&session);
    let mut body = json!({
        "flows": flows.iter().map(|stages| json!({ "stages": stages })).collect::<Vec<_>>(),
        "params": {},
        "session": session,
        "completed": completed,
    });
    if let Some(err) = error {
        body["errcode"] = err.code.as_str().into();
        body["error"] = err.message.into();
    }
    ApiError { status: 401, body }
}

/// User-interactive auth with the account password, for sensitive endpoints.
pub(crate) async fn require_password(state: &AppState, requester: &Requester, auth: Option<AuthData>) -> ApiResult<()> {
    let Some(auth) = auth else { return Err(uia_challenge(state, vec![vec!["m.login.password"]], None, None)) };
    if auth.kind.as_deref() != Some("m.login.password") {
        return Err(uia_challenge(state, vec![vec!["m.login.password"]], auth.session, None));
    }
    let claimed = auth.identifier.as_ref().and_then(|i| i.user.clone()).or(auth.user.clone());
    if let Some(claimed) = claimed
        && state.login_user_id(&claimed).ok().as_deref() != Some(requester.user_id.as_str())
    {
        return Err(MatrixError::forbidden("You can only authenticate as yourself").into());
    }
    let password = auth.password.unwrap_or_default();
    match state.check_password(&requester.user_id, &password).await {
        Ok(_) => {
            if let Some(s) = &auth.session {
                state.uia.finish(s);
            }
            Ok(())
        }
        Err(err) => Err(uia_challenge(state, vec![vec!["m.login.password"]], auth.session, Some(err))),
    }
}

fn session_json(s: &IssuedSession, server_name: &str) -> Value {
    let mut body = json!({
        "user_id": s.user_id,
        "access_token": s.access_token,
        "device_id": s.device_id,
        "home_server": server_name,
    });
    if let Some(r) = &s.refresh_token {
        body["refresh_token"] = r.clone().into();
    }
    if let Some(e) = s.expires_in_ms {
        body["expires_in_ms"] = e.into();
    }
    body
}

#[derive(Deserialize)]
pub struct RegisterBody {
    username: Option<String>,
    password: Option<String>,
    auth: Option<AuthData>,
    device_id: Option<String>,
    initial_device_display_name: Option<String>,
    #[serde(default)]
    inhibit_login: bool,
    #[serde(default)]
    refresh_token: bool,
}

pub async fn register(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    Query(query): Query<QueryMap>,
    JsonBody(body): JsonBody<RegisterBody>,
) -> ApiResult<Json<Value>> {
    if query.get("kind").is_some_and(|k| k == "guest") {
        return Err(MatrixError::new(ErrorCode::GuestAccessForbidden, "Guest access is not allowed").into());
    }
    let open = state.config.open_registration();
    let tokens = &state.config.registration.tokens;
    if !open && tokens.is_empty() {
        return Err(MatrixError::forbidden("Registration has been disabled").into());
    }
    state.limits.registration.check(&addr)?;
    let localpart = match &body.username {
        Some(name) => {
            let name = name.to_lowercase();
            state.username_available(&name).await?;
            Some(name)
        }
        None => None,
    };
    if let Some(p) = &body.password
        && p.len() > 512
    {
        return Err(MatrixError::invalid_param("Password is too long").into());
    }
    let mut flows = Vec::new();
    if open {
        flows.push(vec!["m.login.dummy"]);
    }
    if !tokens.is_empty() {
        flows.push(vec!["m.login.registration_token"]);
    }
    let Some(auth) = body.auth else { return Err(uia_challenge(&state, flows, None, None)) };
    let passed = match auth.kind.as_deref() {
        Some("m.login.dummy") => open,
        Some("m.login.registration_token") => auth.token.as_ref().is_some_and(|t| tokens.contains(t)),
        _ => false,
    };
    if !passed {
        let err = (auth.kind.as_deref() == Some("m.login.registration_token"))
            .then(|| MatrixError::new(ErrorCode::Unauthorized, "Invalid registration token"));
        return Err(uia_challenge(&state, flows, auth.session, err));
    }
    if let Some(s) = &auth.session {
        state.uia.finish(s);
    }
    let localpart = localpart.unwrap_or_else(|| myelin_core::random::alphanumeric(12).to_lowercase());
    let user_id = state.create_user(&localpart, body.password, false).await?;
    if body.inhibit_login {
        return Ok(Json(json!({ "user_id": user_id, "home_server": state.server_name.as_str() })));
    }
    let session =
        state.issue_session(&user_id, body.device_id, body.initial_device_display_name, body.refresh_token).await?;
    Ok(Json(session_json(&session, state.server_name.as_str())))
}

pub async fn available(State(state): State<AppState>, Query(query): Query<QueryMap>) -> ApiResult<Json<Value>> {
    let name = query.get("username").ok_or_else(|| MatrixError::missing_param("username is required"))?;
    state.username_available(&name.to_lowercase()).await?;
    Ok(Json(json!({ "available": true })))
}

pub async fn login_flows() -> Json<Value> {
    Json(json!({ "flows": [
        { "type": "m.login.password" },
        { "type": "m.login.token", "get_login_token": true },
    ]}))
}

#[derive(Deserialize)]
pub struct LoginBody {
    #[serde(rename = "type")]
    kind: String,
    identifier: Option<Identifier>,
    user: Option<String>,
    password: Option<String>,
    token: Option<String>,
    device_id: Option<String>,
    initial_device_display_name: Option<String>,
    #[serde(default)]
    refresh_token: bool,
}

pub async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    JsonBody(body): JsonBody<LoginBody>,
) -> ApiResult<Json<Value>> {
    state.limits.login.check(&addr)?;
    let user_id = match body.kind.as_str() {
        "m.login.password" => {
            let user = match &body.identifier {
                Some(id) if id.kind == "m.id.user" => id.user.clone(),
                Some(_) => {
                    return Err(MatrixError::new(ErrorCode::Unknown, "Only m.id.user identifiers are supported")
                        .with_status(400)
                        .into());
                }
                None => body.user.clone(),
            }
            .ok_or_else(|| MatrixError::missing_param("identifier.user is required"))?;
            let password =
                body.password.as_deref().ok_or_else(|| MatrixError::missing_param("password is required"))?;
            let user_id = state.login_user_id(&user)?;
            state.check_password(&user_id, password).await?;
            user_id
        }
        "m.login.token" => {
            let token = body.token.as_deref().ok_or_else(|| MatrixError::missing_param("token is required"))?;
            let user =
                state.store.take_login_token(token, myelin_core::time::now_ms()).await.map_err(MatrixError::from)?;
            user.ok_or_else(|| MatrixError::forbidden("Invalid or expired login token"))?
        }
        other => {
            return Err(MatrixError::new(ErrorCode::Unknown, format!("Unsupported login type {other:?}"))
                .with_status(400)
                .into());
        }
    };
    let session =
        state.issue_session(&user_id, body.device_id, body.initial_device_display_name, body.refresh_token).await?;
    Ok(Json(session_json(&session, state.server_name.as_str())))
}

#[derive(Deserialize)]
pub struct RefreshBody {
    refresh_token: String,
}

pub async fn refresh(State(state): State<AppState>, JsonBody(body): JsonBody<RefreshBody>) -> ApiResult<Json<Value>> {
    let s = state.refresh(&body.refresh_token).await?;
    Ok(Json(json!({
        "access_token": s.access_token,
        "refresh_token": s.refresh_token,
        "expires_in_ms": s.expires_in_ms,
    })))
}

pub async fn logout(State(state): State<AppState>, Auth(r): Auth) -> ApiResult<Json<Value>> {
    state.delete_devices(&r.user_id, std::slice::from_ref(&r.device_id)).await?;
    Ok(Json(json!({})))
}

pub async fn logout_all(State(state): State<AppState>, Auth(r): Auth) -> ApiResult<Json<Value>> {
    state.delete_all_devices(&r.user_id, None).await?;
    Ok(Json(json!({})))
}

pub async fn whoami(Auth(r): Auth) -> Json<Value> {
    Json(json!({ "user_id": r.user_id, "device_id": r.device_id, "is_guest": false }))
}

#[derive(Deserialize)]
pub struct PasswordBody {
    new_password: String,
    #[serde(default = "yes")]
    logout_devices: bool,
    auth: Option<AuthData>,
}

fn yes() -> bool {
    true
}

pub async fn change_password(
    State(state): State<AppState>,
    Auth(r): Auth,
    JsonBody(body): JsonBody<PasswordBody>,
) -> ApiResult<Json<Value>> {
    require_password(&state, &r, body.auth).await?;
    if body.new_password.is_empty() || body.new_password.len() > 512 {
        return Err(MatrixError::new(ErrorCode::WeakPassword, "Password must be 1 to 512 bytes").into());
    }
    state.set_password(&r.user_id, body.new_password).await?;
    if body.logout_devices {
        state.delete_all_devices(&r.user_id, Some(&r.device_id)).await?;
    }
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct DeactivateBody {
    auth: Option<AuthData>,
}

pub async fn deactivate(
    State(state): State<AppState>,
    Auth(r): Auth,
    JsonBody(body): JsonBody<DeactivateBody>,
) -> ApiResult<Json<Value>> {
    require_password(&state, &r, body.auth).await?;
    state.deactivate(&r.user_id).await?;
    Ok(Json(json!({ "id_server_unbind_result": "no-support" })))
}

#[derive(Deserialize)]
pub struct GetTokenBody {
    auth: Option<AuthData>,
}

pub async fn get_login_token(
    State(state): State<AppState>,
    Auth(r): Auth,
    JsonBody(body): JsonBody<GetTokenBody>,
) -> ApiResult<Json<Value>> {
    require_password(&state, &r, body.auth).await?;
    let token = myelin_core::random::alphanumeric(32);
    let lifetime = 120_000;
    state
        .store
        .create_login_token(&token, &r.user_id, myelin_core::time::now_ms() + lifetime)
        .await
        .map_err(MatrixError::from)?;
    Ok(Json(json!({ "login_token": token, "expires_in_ms": lifetime })))
}
