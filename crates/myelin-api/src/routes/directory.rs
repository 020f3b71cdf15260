//! Room aliases, directory visibility, the public room list and the user directory.

use axum::{
    Json,
    extract::{Path, Query, State},
};
use myelin_core::MatrixError;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{QueryMap, query_u64, room_id};
use crate::{
    AppState,
    error::ApiResult,
    extract::{Auth, JsonBody},
};

pub async fn get_alias(State(state): State<AppState>, Path(alias): Path<String>) -> ApiResult<Json<Value>> {
    if ruma::RoomAliasId::parse(&alias).is_err() {
        return Err(MatrixError::invalid_param("Invalid room alias").into());
    }
    let (room_id, _) = state
        .store
        .resolve_alias(&alias)
        .await
        .map_err(MatrixError::from)?
        .ok_or_else(|| MatrixError::not_found("Room alias not found"))?;
    Ok(Json(json!({ "room_id": room_id, "servers": [state.server_name.as_str()] })))
}

#[derive(Deserialize)]
pub struct AliasBody {
    room_id: String,
}

pub async fn put_alias(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(alias): Path<String>,
    JsonBody(body): JsonBody<AliasBody>,
) -> ApiResult<Json<Value>> {
    state.create_alias(&r.user_id, &alias, room_id(&body.room_id)?).await?;
    Ok(Json(json!({})))
}

pub async fn delete_alias(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(alias): Path<String>,
) -> ApiResult<Json<Value>> {
    state.delete_alias(&r.user_id, r.is_admin, &alias).await?;
    Ok(Json(json!({})))
}

pub async fn room_aliases(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
) -> ApiResult<Json<Value>> {
    let room = room_id(&room)?;
    state.room_visibility(&r.user_id, room).await?;
    let aliases = state.store.room_aliases(room).await.map_err(MatrixError::from)?;
    Ok(Json(json!({ "aliases": aliases })))
}

pub async fn get_visibility(State(state): State<AppState>, Path(room): Path<String>) -> ApiResult<Json<Value>> {
    let room = state
        .store
        .get_room(room_id(&room)?)
        .await
        .map_err(MatrixError::from)?
        .ok_or_else(|| MatrixError::not_found("Unknown room"))?;
    Ok(Json(json!({ "visibility": if room.is_public { "public" } else { "private" } })))
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
    let public = match body.visibility.as_str() {
        "public" => true,
        "private" => false,
        _ => return Err(MatrixError::invalid_param("visibility must be public or private").into()),
    };
    state.set_directory_visibility(&r.user_id, room_id(&room)?, public).await?;
    Ok(Json(json!({})))
}

fn since(raw: Option<&String>) -> Result<usize, MatrixError> {
    match raw {
        None => Ok(0),
        Some(s) => s.parse().map_err(|_| MatrixError::invalid_param("Invalid since token")),
    }
}

pub async fn public_rooms_get(State(state): State<AppState>, Query(q): Query<QueryMap>) -> ApiResult<Json<Value>> {
    let limit = query_u64(&q, "limit")?.unwrap_or(100) as usize;
    Ok(Json(state.public_rooms(since(q.get("since"))?, limit, None).await?))
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
    JsonBody(body): JsonBody<PublicRoomsBody>,
) -> ApiResult<Json<Value>> {
    let limit = body.limit.unwrap_or(100) as usize;
    let term = body.filter.and_then(|f| f.generic_search_term);
    Ok(Json(state.public_rooms(since(body.since.as_ref())?, limit, term.as_deref()).await?))
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
    let limit = body.limit.unwrap_or(10).clamp(1, 100) as usize;
    if body.search_term.len() > 256 {
        return Err(MatrixError::invalid_param("search_term is too long").into());
    }
    let hits = state.store.search_users(&r.user_id, &body.search_term, limit + 1).await.map_err(MatrixError::from)?;
    let limited = hits.len() > limit;
    let results: Vec<Value> = hits
        .into_iter()
        .take(limit)
        .map(|h| json!({ "user_id": h.user_id, "display_name": h.displayname, "avatar_url": h.avatar_url }))
        .collect();
    Ok(Json(json!({ "results": results, "limited": limited })))
}
