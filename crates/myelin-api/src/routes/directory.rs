//! Room aliases, directory visibility, the public room list and the user directory.

use axum::{
    Json,
    extract::{Path, Query, State},
};
use myelin_core::{
    MatrixError,
    types::{OwnedRoomAliasId, OwnedServerName},
};
use myelin_service::rooms::{PublicRoomsRequest, RoomVisibility};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{QueryMap, query_u64, room_id};
use crate::{
    AppState,
    error::ApiResult,
    extract::{Auth, JsonBody},
};

fn alias(raw: &str) -> Result<OwnedRoomAliasId, MatrixError> {
    OwnedRoomAliasId::try_from(raw).map_err(|_| MatrixError::invalid_param("Invalid room alias"))
}

pub async fn get_alias(State(state): State<AppState>, Path(raw): Path<String>) -> ApiResult<Json<Value>> {
    let (room_id, servers) = state.resolve_alias(&alias(&raw)?).await?;
    Ok(Json(json!({ "room_id": room_id, "servers": servers })))
}

#[derive(Deserialize)]
pub struct AliasBody {
    room_id: String,
}

pub async fn put_alias(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(raw): Path<String>,
    JsonBody(body): JsonBody<AliasBody>,
) -> ApiResult<Json<Value>> {
    state.create_alias(&r, &alias(&raw)?, &room_id(&body.room_id)?).await?;
    Ok(Json(json!({})))
}

pub async fn delete_alias(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(raw): Path<String>,
) -> ApiResult<Json<Value>> {
    state.delete_alias(&r, &alias(&raw)?).await?;
    Ok(Json(json!({})))
}

pub async fn room_aliases(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
) -> ApiResult<Json<Value>> {
    let aliases = state.room_aliases(&r.user_id, &room_id(&room)?).await?;
    Ok(Json(json!({ "aliases": aliases })))
}

pub async fn get_visibility(State(state): State<AppState>, Path(room): Path<String>) -> ApiResult<Json<Value>> {
    let visibility = state.directory_visibility(&room_id(&room)?).await?;
    Ok(Json(json!({ "visibility": visibility.as_str() })))
}

#[derive(Deserialize)]
pub struct VisibilityBody {
    visibility: String,
}

pub async fn set_visibility(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    JsonBody(body): JsonBody<VisibilityBody>,
) -> ApiResult<Json<Value>> {
    let visibility = RoomVisibility::parse(&body.visibility)?;
    state.set_directory_visibility(&r, &room_id(&room)?, visibility).await?;
    Ok(Json(json!({})))
}

fn since(raw: Option<&String>) -> Result<usize, MatrixError> {
    match raw {
        None => Ok(0),
        Some(s) => s.parse().map_err(|_| MatrixError::invalid_param("Invalid since token")),
    }
}

/// The `server` query parameter: another server's directory.
fn directory_server(q: &QueryMap) -> Result<Option<OwnedServerName>, MatrixError> {
    q.get("server")
        .map(|s| OwnedServerName::try_from(s.as_str()).map_err(|_| MatrixError::invalid_param("Invalid server name")))
        .transpose()
}

pub async fn public_rooms_get(State(state): State<AppState>, Query(q): Query<QueryMap>) -> ApiResult<Json<Value>> {
    let limit = query_u64(&q, "limit")?.unwrap_or(100) as usize;
    let req = PublicRoomsRequest { since: since(q.get("since"))?, limit, filter: None, server: directory_server(&q)? };
    Ok(Json(state.public_rooms(req).await?))
}

#[derive(Deserialize, Default)]
pub struct PublicRoomsBody {
    limit: Option<u64>,
    since: Option<String>,
    filter: Option<PublicRoomsFilter>,
}

#[derive(Deserialize, Default)]
pub struct PublicRoomsFilter {
    generic_search_term: Option<String>,
}

pub async fn public_rooms_post(
    State(state): State<AppState>,
    _auth: Auth,
    Query(q): Query<QueryMap>,
    JsonBody(body): JsonBody<PublicRoomsBody>,
) -> ApiResult<Json<Value>> {
    let req = PublicRoomsRequest {
        since: since(body.since.as_ref())?,
        limit: body.limit.unwrap_or(100) as usize,
        filter: body.filter.and_then(|f| f.generic_search_term),
        server: directory_server(&q)?,
    };
    Ok(Json(state.public_rooms(req).await?))
}

#[derive(Deserialize)]
pub struct UserSearchBody {
    search_term: String,
    limit: Option<u64>,
}

pub async fn user_search(
    State(state): State<AppState>,
    Auth(r): Auth,
    JsonBody(body): JsonBody<UserSearchBody>,
) -> ApiResult<Json<Value>> {
    let limit = body.limit.unwrap_or(10) as usize;
    let (results, limited) = state.search_user_directory(&r, &body.search_term, limit).await?;
    Ok(Json(json!({ "results": results, "limited": limited })))
}

/// `GET /thirdparty/protocols`: no bridges (application services) provide any.
pub async fn thirdparty_protocols(_auth: Auth) -> Json<Value> {
    Json(json!({}))
}

/// `GET /thirdparty/{protocol,location,user}/{protocol}`: no protocol is known.
pub async fn thirdparty_unknown_protocol(_auth: Auth, Path(_protocol): Path<String>) -> ApiResult<Json<Value>> {
    Err(MatrixError::not_found("No such protocol").into())
}

/// `GET /thirdparty/location?alias=` and `GET /thirdparty/user?userid=`: no portal rooms or
/// users on other networks.
pub async fn thirdparty_lookup(_auth: Auth) -> Json<Value> {
    Json(json!([]))
}
