//! Media: one media, quarantine, protection, deletion, the remote cache and statistics.

use axum::{
    Json,
    extract::{Path, Query, State},
};
use myelin_core::MatrixError;
use myelin_service::admin::MediaDeletion;
use serde_json::{Value, json};

use super::page;
use crate::{
    AppState,
    error::ApiResult,
    extract::Auth,
    routes::{QueryMap, query_bool_or, query_u64, room_id, user_id},
};

/// `GET /_synapse/admin/v1/media/{serverName}/{mediaId}`.
pub async fn media_info(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((server, media)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin_media_info(&r, &server, &media).await?))
}

/// `DELETE /_synapse/admin/v1/media/{serverName}/{mediaId}`.
pub async fn delete_media(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((server, media)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin_delete_media(&r, &server, &media).await?))
}

/// `POST /_synapse/admin/v1/media/quarantine/{serverName}/{mediaId}`.
pub async fn quarantine_media(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((server, media)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    state.admin_quarantine_media(&r, &server, &media).await?;
    Ok(Json(json!({})))
}

/// `POST /_synapse/admin/v1/media/unquarantine/{serverName}/{mediaId}`.
pub async fn unquarantine_media(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((server, media)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    state.admin_unquarantine_media(&r, &server, &media).await?;
    Ok(Json(json!({})))
}

/// `POST /_synapse/admin/v1/media/protect/{mediaId}`.
pub async fn protect_media(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(media): Path<String>,
) -> ApiResult<Json<Value>> {
    state.admin_protect_media(&r, &media, true).await?;
    Ok(Json(json!({})))
}

/// `POST /_synapse/admin/v1/media/unprotect/{mediaId}`.
pub async fn unprotect_media(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(media): Path<String>,
) -> ApiResult<Json<Value>> {
    state.admin_protect_media(&r, &media, false).await?;
    Ok(Json(json!({})))
}

/// `GET /_synapse/admin/v1/room/{roomId}/media`.
pub async fn room_media(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin_room_media(&r, &room_id(&room)?).await?))
}

/// `POST /_synapse/admin/v1/room/{roomId}/media/quarantine`.
pub async fn quarantine_room_media(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin_quarantine_room_media(&r, &room_id(&room)?).await?))
}

/// `POST /_synapse/admin/v1/user/{userId}/media/quarantine`.
pub async fn quarantine_user_media(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin_quarantine_user_media(&r, &user_id(&user)?).await?))
}

/// `GET /_synapse/admin/v1/users/{userId}/media`.
pub async fn user_media(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(user): Path<String>,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin_user_media(&r, &user_id(&user)?, page(&q)?).await?))
}

/// `DELETE /_synapse/admin/v1/users/{userId}/media`.
pub async fn delete_user_media(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin_delete_user_media(&r, &user_id(&user)?).await?))
}

/// `POST /_synapse/admin/v1/media/delete?before_ts&size_gt&keep_profiles` (and the older
/// `/media/{serverName}/delete`).
pub async fn delete_old_media(
    State(state): State<AppState>,
    Auth(r): Auth,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    let before_ms = query_u64(&q, "before_ts")?.ok_or_else(|| MatrixError::missing_param("before_ts is required"))?;
    let query = MediaDeletion {
        before_ms,
        size_gt: query_u64(&q, "size_gt")?.unwrap_or(0),
        keep_profiles: query_bool_or(&q, "keep_profiles", true)?,
    };
    Ok(Json(state.admin_delete_old_media(&r, query).await?))
}

/// `POST /_synapse/admin/v1/purge_media_cache?before_ts`.
pub async fn purge_media_cache(
    State(state): State<AppState>,
    Auth(r): Auth,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    let before_ms = query_u64(&q, "before_ts")?.ok_or_else(|| MatrixError::missing_param("before_ts is required"))?;
    Ok(Json(state.admin_purge_media_cache(&r, before_ms).await?))
}

/// `GET /_synapse/admin/v1/statistics/users/media?from&limit`.
pub async fn media_statistics(
    State(state): State<AppState>,
    Auth(r): Auth,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin_media_statistics(&r, page(&q)?).await?))
}
