//! Registration, login, logout, refresh, whoami, password change, deactivation, OpenID tokens.

use axum::{
    Json,
    extract::{Path, Query, State},
};
use myelin_core::{ErrorCode, MatrixError};
use myelin_service::{
    accounts::{IssuedSession, LoginRequest, RegisterRequest},
    uia::AuthData,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::QueryMap;
use crate::{
    AppState,
    error::ApiResult,
    extract::{Auth, ClientAddr, JsonBody, RawToken},
};

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

pub async fn register(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    RawToken(token): RawToken,
    Query(query): Query<QueryMap>,
    JsonBody(body): JsonBody<RegisterRequest>,
) -> ApiResult<Json<Value>> {
    let requester = match (&token, body.kind.as_deref()) {
        (Some(token), Some(myelin_service::accounts::APPSERVICE_LOGIN)) => Some(state.resolve_token(token).await?),
        _ => None,
    };
    let registered = match query.get("kind").map(String::as_str) {
        None | Some("user") => state.register(body, &addr, requester.as_ref()).await?,
        Some("guest") => state.register_guest(&addr, body.initial_device_display_name).await?,
        Some(_) => return Err(MatrixError::invalid_param("kind must be user or guest").into()),
    };
    let server_name = state.server_name().as_str();
    Ok(Json(match registered.session {
        Some(session) => session_json(&session, server_name),
        None => json!({ "user_id": registered.user_id, "home_server": server_name }),
    }))
}

pub async fn available(State(state): State<AppState>, Query(query): Query<QueryMap>) -> ApiResult<Json<Value>> {
    let name = query.get("username").ok_or_else(|| MatrixError::missing_param("username is required"))?;
    state.username_available(name).await?;
    Ok(Json(json!({ "available": true })))
}

pub async fn login_flows(State(state): State<AppState>) -> Json<Value> {
    let mut flows = vec![
        json!({ "type": "m.login.password" }),
        json!({ "type": "m.login.token", "get_login_token": true }),
        json!({ "type": "m.login.application_service" }),
    ];
    if state.oauth_enabled() {
        // Legacy clients sign in through the web pages too; OAuth-aware ones are told to use
        // OAuth itself (MSC3824).
        flows.push(json!({
            "type": "m.login.sso",
            "identity_providers": [],
            "oauth_aware_preferred": true,
            "org.matrix.msc3824.delegated_oidc_compatibility": true,
        }));
    }
    Json(json!({ "flows": flows }))
}

pub async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    RawToken(token): RawToken,
    JsonBody(body): JsonBody<LoginRequest>,
) -> ApiResult<Json<Value>> {
    let requester = match (&token, body.kind.as_str()) {
        (Some(token), myelin_service::accounts::APPSERVICE_LOGIN) => Some(state.resolve_token(token).await?),
        _ => None,
    };
    let session = state.login(body, &addr, requester.as_ref()).await?;
    Ok(Json(session_json(&session, state.server_name().as_str())))
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
    state.logout(&r).await?;
    Ok(Json(json!({})))
}

pub async fn logout_all(State(state): State<AppState>, Auth(r): Auth) -> ApiResult<Json<Value>> {
    state.logout_all(&r).await?;
    Ok(Json(json!({})))
}

pub async fn whoami(Auth(r): Auth) -> Json<Value> {
    Json(json!({ "user_id": r.user_id, "device_id": r.device_id, "is_guest": r.is_guest }))
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

/// `POST /account/password`: with an access token, a change (the current password as UIA);
/// without one, a reset proved by a validated email address (`m.login.email.identity`).
pub async fn change_password(
    State(state): State<AppState>,
    crate::extract::MaybeAuth(r): crate::extract::MaybeAuth,
    JsonBody(body): JsonBody<PasswordBody>,
) -> ApiResult<Json<Value>> {
    match r {
        Some(r) => state.change_password(&r, body.new_password, body.logout_devices, body.auth.as_ref()).await?,
        None => state.reset_password_by_email(body.new_password, body.logout_devices, body.auth.as_ref()).await?,
    }
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct AuthOnlyBody {
    auth: Option<AuthData>,
}

#[derive(Deserialize)]
pub struct DeactivateBody {
    auth: Option<AuthData>,
    #[serde(default)]
    erase: bool,
}

pub async fn deactivate(
    State(state): State<AppState>,
    Auth(r): Auth,
    JsonBody(body): JsonBody<DeactivateBody>,
) -> ApiResult<Json<Value>> {
    state.deactivate_account(&r, body.auth.as_ref(), body.erase).await?;
    Ok(Json(json!({ "id_server_unbind_result": "no-support" })))
}

pub async fn get_login_token(
    State(state): State<AppState>,
    Auth(r): Auth,
    JsonBody(body): JsonBody<AuthOnlyBody>,
) -> ApiResult<Json<Value>> {
    let token = state.create_login_token(&r, body.auth.as_ref()).await?;
    Ok(Json(json!({ "login_token": token, "expires_in_ms": myelin_service::accounts::LOGIN_TOKEN_LIFETIME_MS })))
}

/// `POST /user/{userId}/openid/request_token` (the body is `{}`).
pub async fn openid_request_token(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(user): Path<String>,
    JsonBody(_body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.request_openid_token(&r, &super::user_id(&user)?).await?))
}

/// `GET /account/3pid`: the requester's email addresses.
pub async fn threepids(State(state): State<AppState>, Auth(r): Auth) -> ApiResult<Json<Value>> {
    Ok(Json(state.threepids(&r).await?))
}

/// The `msisdn` `requestToken` endpoints: refused — the server sends no SMS.
pub async fn threepid_request_token() -> ApiResult<Json<Value>> {
    Err(MatrixError::new(ErrorCode::Other("M_THREEPID_DENIED"), "This server does not send SMS")
        .with_status(403)
        .into())
}

/// `POST /account/3pid/email/requestToken`.
pub async fn add_email_request_token(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    JsonBody(body): JsonBody<myelin_service::email::EmailTokenRequest>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.request_email_token(myelin_service::email::EmailPurpose::Add, body, &addr).await?))
}

/// `POST /register/email/requestToken` (with `registration.require_email`; refused otherwise).
pub async fn register_email_request_token(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    JsonBody(body): JsonBody<myelin_service::email::EmailTokenRequest>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.request_email_token(myelin_service::email::EmailPurpose::Register, body, &addr).await?))
}

/// `POST /account/password/email/requestToken`.
pub async fn password_email_request_token(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    JsonBody(body): JsonBody<myelin_service::email::EmailTokenRequest>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.request_email_token(myelin_service::email::EmailPurpose::Password, body, &addr).await?))
}

#[derive(Deserialize)]
pub struct AddThreepidBody {
    sid: String,
    client_secret: String,
    auth: Option<AuthData>,
}

/// `POST /account/3pid/add`.
pub async fn add_threepid(
    State(state): State<AppState>,
    Auth(r): Auth,
    JsonBody(body): JsonBody<AddThreepidBody>,
) -> ApiResult<Json<Value>> {
    state.add_email(&r, &body.sid, &body.client_secret, body.auth.as_ref()).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct DeleteThreepidBody {
    medium: String,
    address: String,
}

/// `POST /account/3pid/delete`.
pub async fn delete_threepid(
    State(state): State<AppState>,
    Auth(r): Auth,
    JsonBody(body): JsonBody<DeleteThreepidBody>,
) -> ApiResult<Json<Value>> {
    state.delete_email(&r, &body.medium, &body.address).await?;
    Ok(Json(json!({ "id_server_unbind_result": "no-support" })))
}

/// The link in a validation email (`/_myelin/email/validate?sid=&client_secret=&token=`): a
/// small page saying whether it worked.
pub async fn validate_email_link(State(state): State<AppState>, Query(q): Query<QueryMap>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let param = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    let validated = state.submit_email_token(param("sid"), param("client_secret"), param("token")).await;
    let (status, message) = match validated {
        Ok(true) => {
            (axum::http::StatusCode::OK, "Your email address is validated. You can return to your Matrix client.")
        }
        Ok(false) => (axum::http::StatusCode::BAD_REQUEST, "This link is not valid, or it has expired."),
        Err(_) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong; try again later."),
    };
    let page = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Email validation</title></head>\
         <body><main><p>{message}</p></main></body></html>"
    );
    (
        status,
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (axum::http::header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'"),
            (axum::http::header::REFERRER_POLICY, "no-referrer"),
        ],
        page,
    )
        .into_response()
}

/// `GET /admin/whois/{userId}`.
pub async fn whois(State(state): State<AppState>, Auth(r): Auth, Path(user): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(state.whois(&r, &super::user_id(&user)?).await?))
}

/// `GET /_matrix/client/v1/register/m.login.registration_token/validity?token=`.
pub async fn registration_token_validity(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    state.check_rate_limit(myelin_service::ratelimit::Limit::Registration, &addr)?;
    let token = q.get("token").ok_or_else(|| MatrixError::missing_param("token is required"))?;
    Ok(Json(json!({ "valid": state.registration_token_valid(token).await? })))
}
