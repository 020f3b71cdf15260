use std::time::Duration;

use axum::{
    Json,
    extract::{Path, Query, State},
};
use myelin_core::MatrixError;
use myelin_service::{
    filter::Filter,
    sliding_sync::SlidingSyncRequest,
    sync::{SyncRequest, SyncToken},
};
use serde_json::{Value, json};

use super::{QueryMap, query_bool, query_u64, user_id};
use crate::{
    AppState,
    error::ApiResult,
    extract::{Auth, JsonBody},
};

pub async fn sync(State(state): State<AppState>, Auth(r): Auth, Query(q): Query<QueryMap>) -> ApiResult<Json<Value>> {
    let since = match q.get("since") {
        Some(t) => Some(SyncToken::parse(t).ok_or_else(|| MatrixError::invalid_param("Invalid since token"))?),
        None => None,
    };
    let timeout = query_u64(&q, "timeout")?.unwrap_or(0).min(state.config.limits.max_sync_timeout_ms);
    let filter = state.resolve_filter(&r.user_id, q.get("filter").map(String::as_str)).await?;
    if let Some(p) = q.get("set_presence")
        && !matches!(p.as_str(), "online" | "offline" | "unavailable")
    {
        return Err(MatrixError::invalid_param("set_presence must be online, offline or unavailable").into());
    }
    let req = SyncRequest {
        since,
        timeout: Duration::from_millis(timeout),
        full_state: query_bool(&q, "full_state")?,
        filter,
    };
    Ok(Json(state.sync(&r, req).await?))
}

/// `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync?pos=&timeout=`.
pub async fn sliding_sync(
    State(state): State<AppState>,
    Auth(r): Auth,
    Query(q): Query<QueryMap>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let timeout = query_u64(&q, "timeout")?.unwrap_or(0).min(state.config.limits.max_sync_timeout_ms);
    let req = SlidingSyncRequest::parse(&body, q.get("pos").cloned(), Duration::from_millis(timeout))?;
    Ok(Json(state.sliding_sync(&r, req).await?))
}

pub async fn create_filter(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(user): Path<String>,
    JsonBody(filter): JsonBody<Filter>,
) -> ApiResult<Json<Value>> {
    if user_id(&user)? != r.user_id {
        return Err(MatrixError::forbidden("You may only create filters for yourself").into());
    }
    let json = serde_json::to_string(&filter).map_err(|e| MatrixError::bad_json(e.to_string()))?;
    if json.len() > 65_536 {
        return Err(MatrixError::new(myelin_core::ErrorCode::TooLarge, "Filter is too large").into());
    }
    let id = state.store.create_filter(&r.user_id, json).await.map_err(MatrixError::from)?;
    Ok(Json(json!({ "filter_id": id.to_string() })))
}

pub async fn get_filter(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((user, filter_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    if user_id(&user)? != r.user_id {
        return Err(MatrixError::forbidden("You may only read your own filters").into());
    }
    let id: i64 = filter_id.parse().map_err(|_| MatrixError::not_found("No such filter"))?;
    let json = state
        .store
        .get_filter(&r.user_id, id)
        .await
        .map_err(MatrixError::from)?
        .ok_or_else(|| MatrixError::not_found("No such filter"))?;
    Ok(Json(serde_json::from_str(&json).map_err(|e| MatrixError::internal(e.to_string()))?))
}
