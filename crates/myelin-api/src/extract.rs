//! Request extractors: the authenticated requester, JSON bodies and the client address.

use std::net::SocketAddr;

use axum::{
    body::Bytes,
    extract::{ConnectInfo, FromRequest, FromRequestParts, Request},
    http::{header, request::Parts},
};
use myelin_core::{ErrorCode, MatrixError};
use myelin_service::{accounts::Requester, appservices::Masquerade};
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

/// What guest accounts may use (the spec's guest access module, plus what a client needs to
/// run: filters, push rules, capabilities, typing, receipts), as route templates after the
/// `/_matrix/client/{version}` prefix.
const GUEST_ROUTES: &[&str] = &[
    "/account/whoami",
    "/capabilities",
    "/devices",
    "/devices/{device_id}",
    "/join/{room}",
    "/keys/changes",
    "/keys/claim",
    "/keys/query",
    "/keys/upload",
    "/logout",
    "/media/config",
    "/media/download/{server_name}/{media_id}",
    "/media/download/{server_name}/{media_id}/{file_name}",
    "/media/thumbnail/{server_name}/{media_id}",
    "/profile/{user_id}",
    "/profile/{user_id}/{field}",
    "/pushrules/",
    "/pushrules/global/",
    "/rooms/{room_id}/context/{event_id}",
    "/rooms/{room_id}/event/{event_id}",
    "/rooms/{room_id}/join",
    "/rooms/{room_id}/joined_members",
    "/rooms/{room_id}/leave",
    "/rooms/{room_id}/members",
    "/rooms/{room_id}/messages",
    "/rooms/{room_id}/read_markers",
    "/rooms/{room_id}/receipt/{receipt_type}/{event_id}",
    "/rooms/{room_id}/send/{event_type}/{txn_id}",
    "/rooms/{room_id}/state",
    "/rooms/{room_id}/state/{event_type}",
    "/rooms/{room_id}/state/{event_type}/",
    "/rooms/{room_id}/state/{event_type}/{state_key}",
    "/rooms/{room_id}/typing/{user_id}",
    "/sendToDevice/{event_type}/{txn_id}",
    "/sync",
    "/user/{user_id}/filter",
    "/user/{user_id}/filter/{filter_id}",
    "/voip/turnServer",
];

/// Whether a guest may call the route `template` (as axum matched it).
fn guest_may_call(template: &str) -> bool {
    let rest = ["/_matrix/client/v3", "/_matrix/client/r0", "/_matrix/client/v1"]
        .iter()
        .find_map(|prefix| template.strip_prefix(prefix));
    rest.is_some_and(|rest| GUEST_ROUTES.contains(&rest))
}

/// Who an application service's request acts as: its `user_id` and `device_id` (or
/// `org.matrix.msc3202.device_id`) query parameters. (`/register` reads the token itself: the
/// user it names is the one being registered.)
fn masquerade(parts: &Parts) -> Masquerade {
    let Ok(axum::extract::Query(mut query)) =
        axum::extract::Query::<std::collections::HashMap<String, String>>::try_from_uri(&parts.uri)
    else {
        return Masquerade::default();
    };
    Masquerade {
        user_id: query.remove("user_id"),
        device_id: query.remove("device_id").or_else(|| query.remove("org.matrix.msc3202.device_id")),
    }
}

/// The requester a token names; a guest only on the routes open to guests.
async fn requester(parts: &Parts, state: &AppState, token: &str) -> Result<Requester, ApiError> {
    let requester = state.resolve_token_masquerading(token, &masquerade(parts)).await?;
    if requester.is_guest {
        let template = parts.extensions.get::<axum::extract::MatchedPath>().map(|m| m.as_str()).unwrap_or_default();
        if !guest_may_call(template) {
            return Err(MatrixError::new(ErrorCode::GuestAccessForbidden, "Guest access is not allowed here").into());
        }
    }
    Ok(requester)
}

/// An authenticated request.
pub struct Auth(pub Requester);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token =
            access_token(parts)?.ok_or_else(|| MatrixError::new(ErrorCode::MissingToken, "Missing access token"))?;
        Ok(Auth(requester(parts, state, &token).await?))
    }
}

/// A request that may come with an access token (a wrong token is still refused).
pub struct MaybeAuth(pub Option<Requester>);

impl FromRequestParts<AppState> for MaybeAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match access_token(parts)? {
            Some(token) => Ok(MaybeAuth(Some(requester(parts, state, &token).await?))),
            None => Ok(MaybeAuth(None)),
        }
    }
}

/// The access token a request carries, not yet resolved: for endpoints that look at it only in
/// some cases (`/register` and `/login` by an application service), so a stale token a client
/// sends along does not fail an ordinary registration or login.
pub struct RawToken(pub Option<String>);

impl FromRequestParts<AppState> for RawToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(RawToken(access_token(parts)?))
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

#[cfg(test)]
mod tests {
    use super::guest_may_call;

    #[test]
    fn guests_reach_only_their_routes() {
        assert!(guest_may_call("/_matrix/client/v3/sync"));
        assert!(guest_may_call("/_matrix/client/r0/rooms/{room_id}/send/{event_type}/{txn_id}"));
        assert!(guest_may_call("/_matrix/client/v1/media/download/{server_name}/{media_id}"));
        assert!(!guest_may_call("/_matrix/client/v3/createRoom"));
        assert!(!guest_may_call("/_matrix/client/v3/rooms/{room_id}/invite"));
        assert!(!guest_may_call("/_matrix/media/v3/upload"));
        assert!(!guest_may_call(""));
    }
}
