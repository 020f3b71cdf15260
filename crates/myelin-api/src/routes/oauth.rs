//! The OAuth 2.0 authorization server's endpoints that clients call (discovery, registration,
//! token, revocation, device authorization, keys, userinfo). Cross-origin like the rest of the
//! client API; the pages a person sees are in `web/`, without CORS.

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use myelin_core::{ErrorCode, MatrixError};
use myelin_service::oauth::{OAuthError, TokenRequest};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};

use crate::{
    ApiError, AppState,
    extract::{Auth, ClientAddr},
};

/// 404 `M_UNRECOGNIZED` while OAuth is off, as a server without next-gen auth answers.
fn require_enabled(state: &AppState) -> Result<(), ApiError> {
    if state.oauth_enabled() {
        Ok(())
    } else {
        Err(MatrixError::new(ErrorCode::Unrecognized, "OAuth 2.0 is not enabled on this server").into())
    }
}

/// `GET /_matrix/client/v1/auth_metadata` (and the MSC2965 path).
pub async fn auth_metadata(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    require_enabled(&state)?;
    Ok(Json(state.auth_metadata()))
}

/// `GET /_matrix/client/unstable/org.matrix.msc2965/auth_issuer` (the older discovery).
pub async fn auth_issuer(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    require_enabled(&state)?;
    Ok(Json(json!({ "issuer": state.oauth_issuer() })))
}

/// An OAuth error answer: `{"error", "error_description"}`, never cached.
pub enum OAuthReply {
    OAuth(OAuthError),
    Api(ApiError),
}

impl From<OAuthError> for OAuthReply {
    fn from(err: OAuthError) -> Self {
        Self::OAuth(err)
    }
}

impl From<ApiError> for OAuthReply {
    fn from(err: ApiError) -> Self {
        Self::Api(err)
    }
}

impl IntoResponse for OAuthReply {
    fn into_response(self) -> Response {
        match self {
            Self::OAuth(OAuthError::Protocol { error, description, status }) => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
                let body = Json(json!({ "error": error, "error_description": description }));
                (status, [(header::CACHE_CONTROL, "no-store")], body).into_response()
            }
            Self::OAuth(OAuthError::Matrix(err)) => ApiError::from(err).into_response(),
            Self::Api(err) => err.into_response(),
        }
    }
}

/// A form body (`application/x-www-form-urlencoded`), as RFC 6749 sends to the token endpoint.
fn form<T: DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> Result<T, OAuthError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(OAuthError::new("invalid_request", "the body must be application/x-www-form-urlencoded"));
    }
    serde_urlencoded::from_bytes(body).map_err(|e| OAuthError::new("invalid_request", format!("bad form: {e}")))
}

fn no_store(body: Value) -> Response {
    ([(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(body)).into_response()
}

/// `POST /oauth2/registration`: 201 with the client's metadata and `client_id`.
pub async fn register_client(State(state): State<AppState>, body: Bytes) -> Result<Response, OAuthReply> {
    require_enabled(&state)?;
    let body: Value = serde_json::from_slice(&body)
        .map_err(|_| OAuthError::new("invalid_client_metadata", "the body is not JSON"))?;
    let client = state.register_oauth_client(&body).await?;
    Ok((StatusCode::CREATED, [(header::CACHE_CONTROL, "no-store")], Json(client)).into_response())
}

/// `POST /oauth2/token`.
pub async fn token(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthReply> {
    require_enabled(&state)?;
    let req: TokenRequest = form(&headers, &body)?;
    Ok(no_store(state.oauth_token(req, &addr).await?))
}

#[derive(Deserialize)]
struct RevokeForm {
    token: Option<String>,
    client_id: Option<String>,
}

/// `POST /oauth2/revoke` (RFC 7009): 200 whether or not the token was known.
pub async fn revoke(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, OAuthReply> {
    require_enabled(&state)?;
    let req: RevokeForm = form(&headers, &body)?;
    let token = req.token.ok_or_else(|| OAuthError::new("invalid_request", "token is required"))?;
    state.oauth_revoke(&token, req.client_id.as_deref()).await?;
    Ok(no_store(json!({})))
}

#[derive(Deserialize)]
struct DeviceAuthorizationForm {
    client_id: Option<String>,
    scope: Option<String>,
}

/// `POST /oauth2/device_authorization` (RFC 8628).
pub async fn device_authorization(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthReply> {
    require_enabled(&state)?;
    let req: DeviceAuthorizationForm = form(&headers, &body)?;
    let client_id = req.client_id.ok_or_else(|| OAuthError::new("invalid_request", "client_id is required"))?;
    let answer = state.start_device_authorization(&client_id, req.scope.as_deref().unwrap_or_default()).await?;
    Ok(no_store(answer))
}

/// `GET /oauth2/keys.json`: the key ID tokens are signed with.
pub async fn jwks(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    require_enabled(&state)?;
    Ok(Json(state.oauth_jwks()))
}

/// `GET /oauth2/userinfo` (OpenID Connect).
pub async fn userinfo(State(state): State<AppState>, Auth(requester): Auth) -> Result<Json<Value>, ApiError> {
    require_enabled(&state)?;
    Ok(Json(state.oauth_userinfo(&requester.access_token).await?))
}
