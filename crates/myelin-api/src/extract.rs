//! Request extractors: the authenticated requester, JSON bodies and the client address.

use std::net::SocketAddr;

use axum::{
    body::Bytes,
    extract::{ConnectInfo, FromRequest, FromRequestParts, Request},
    http::{header, request::Parts},
};
use myelin_core::{ErrorCode, MatrixError};
use myelin_service::accounts::Requester;
use serde::de::DeserializeOwned;

use crate::{AppState, error::ApiError};

/// The access token from `Authorization: Bearer` or the deprecated `access_token` query parameter.
fn access_token(parts: &Parts) -> Result<Option<String>, MatrixError> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let value =
            value.to_str().map_err(|_| MatrixError::new(ErrorCode::MissingToken, "Malformed Authorization header"))?;
        return match value.strip_prefix("Bearer ") {
            Some(token) if !token.trim().is_empty() => Ok(Some(token.trim().to_owned())),
            _ => Err(MatrixError::new(ErrorCode::MissingToken, "Authorization header must be `Bearer <token>`")),
        };
    }
    let query = parts.uri.query().unwrap_or("");
    Ok(query.split('&').find_map(|kv| kv.strip_prefix("access_token=")).map(str::to_owned).filter(|t| !t.is_empty()))
}

/// An authenticated request.
pub struct Auth(pub Requester);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token =
            access_token(parts)?.ok_or_else(|| MatrixError::new(ErrorCode::MissingToken, "Missing access token"))?;
        Ok(Auth(state.resolve_token(&token).await?))
    }
}

/// A request that may come with an access token (a wrong token is still refused).
pub struct MaybeAuth(pub Option<Requester>);

impl FromRequestParts<AppState> for MaybeAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match access_token(parts)? {
            Some(token) => Ok(MaybeAuth(Some(state.resolve_token(&token).await?))),
            None => Ok(MaybeAuth(None)),
        }
    }
}

/// The client's address (for rate limits): the peer, or the client a trusted proxy names in
/// `X-Forwarded-For` (`trusted_proxies`); "unknown" when not served over a socket.
pub struct ClientAddr(pub String);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(peer) = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()) else {
            return Ok(ClientAddr("unknown".to_owned()));
        };
        let forwarded = parts.headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
        Ok(ClientAddr(state.trusted_proxies().client_address(peer, forwarded).to_string()))
    }
}

/// A JSON body: `M_NOT_JSON` if it is not JSON at all, `M_BAD_JSON` if it has the wrong shape,
/// `M_TOO_LARGE` (413) past the configured limit. An empty body reads as `{}`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.config().limits.max_request_body_bytes;
        let too_large = || MatrixError::new(ErrorCode::TooLarge, format!("Request body is larger than {limit} bytes"));
        if let Some(len) =
            req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
            && len > limit
        {
            return Err(too_large().into());
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                MatrixError::new(ErrorCode::NotJson, "Could not read request body")
            }
        })?;
        let value: serde_json::Value = if bytes.iter().all(u8::is_ascii_whitespace) {
            serde_json::Value::Object(Default::default())
        } else {
            serde_json::from_slice(&bytes).map_err(|_| MatrixError::new(ErrorCode::NotJson, "Content not JSON."))?
        };
        if !value.is_object() {
            return Err(MatrixError::new(ErrorCode::BadJson, "Request body must be a JSON object").into());
        }
        serde_json::from_value(value)
            .map(JsonBody)
            .map_err(|e| MatrixError::bad_json(format!("Invalid request body: {e}")).into())
    }
}
