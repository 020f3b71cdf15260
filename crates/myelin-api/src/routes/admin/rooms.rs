//! Rooms: the list, one room, its members and state, blocking and deletion.

use axum::{
    Json,
    extract::{Path, Query, State},
};
use myelin_service::admin::{RoomDeletionRequest, RoomListQuery};
use serde::Deserialize;
use serde_json::{Value, json};

use super::page;
use crate::{
    AppState,
    error::ApiResult,
    extract::{Auth, JsonBody},
    routes::{QueryMap, room_id},
};

/// `GET /_synapse/admin/v1/rooms?from&limit&order_by&dir&search_term`.
pub async fn list_rooms(
    State(state): State<AppState>,
    Auth(r): Auth,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    let backwards = match q.get("dir").map(String::as_str) {
        None | Some("f") => false,
        Some("b") => true,
        Some(_) => return Err(myelin_core::MatrixError::invalid_param("dir must be f or b").into()),
    };
    let query = RoomListQuery {
        page: page(&q)?,
        order_by: q.get("order_by").cloned(),
        backwards,
        search_term: q.get("search_term").filter(|t| !t.is_empty()).cloned(),
    };
    Ok(Json(state.admin_list_rooms(&r, query).await?))
}

/// `GET /_synapse/admin/v1/rooms/{roomId}`.
pub async fn room(State(state): State<AppState>, Auth(r): Auth, Path(room): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin_room(&r, &room_id(&room)?).await?))
}

/// `GET /_synapse/admin/v1/rooms/{roomId}/members`.
pub async fn room_members(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin_room_members(&r, &room_id(&room)?).await?))
}

/// `GET /_synapse/admin/v1/rooms/{roomId}/state`.
pub async fn room_state(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin_room_state(&r, &room_id(&room)?).await?))
}

/// `GET /_synapse/admin/v1/rooms/{roomId}/forward_extremities`.
pub async fn forward_extremities(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin_forward_extremities(&r, &room_id(&room)?).await?))
}

/// `GET /_synapse/admin/v1/rooms/{roomId}/block`.
pub async fn room_block(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin_room_block(&r, &room_id(&room)?).await?))
}

#[derive(Deserialize)]
pub struct BlockBody {
    block: bool,
}

/// `PUT /_synapse/admin/v1/rooms/{roomId}/block`.
pub async fn set_room_block(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    JsonBody(body): JsonBody<BlockBody>,
) -> ApiResult<Json<Value>> {
    state.admin_set_room_block(&r, &room_id(&room)?, body.block).await?;
    Ok(Json(json!({ "block": body.block })))
}

/// `DELETE /_synapse/admin/v1/rooms/{roomId}` (done before answering).
pub async fn delete_room_now(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    JsonBody(body): JsonBody<RoomDeletionRequest>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin_delete_room_now(&r, &room_id(&room)?, body).await?))
}

/// `DELETE /_synapse/admin/v2/rooms/{roomId}` (queued; answers `delete_id`).
pub async fn delete_room(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    JsonBody(body): JsonBody<RoomDeletionRequest>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin_delete_room(&r, &room_id(&room)?, body).await?))
}

/// `GET /_synapse/admin/v2/rooms/{roomId}/delete_status`.
pub async fn room_delete_status(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin_room_deletions(&r, &room_id(&room)?).await?))
}

/// `GET /_synapse/admin/v2/rooms/delete_status/{deleteId}`.
pub async fn delete_status(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(delete_id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin_room_deletion(&r, &delete_id).await?))
}
