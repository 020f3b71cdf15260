use std::time::Duration;

use axum::{
    Json,
    extract::{Path, Query, State},
};
use myelin_core::MatrixError;
use myelin_service::{
    filter::Filter,
    presence::PresenceState,
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
    let set_presence = q.get("set_presence").map(|p| PresenceState::parse(p)).transpose()?;
    let req = SyncRequest {
        since,
        timeout: Duration::from_millis(query_u64(&q, "timeout")?.unwrap_or(0)),
        full_state: query_bool(&q, "full_state")?,
        filter: q.get("filter").cloned(),
    };
    state.presence_on_sync(&r.user_id, set_presence, req.timeout).await?;
    Ok(Json(state.sync(&r, req).await?))
}

/// `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync?pos=&timeout=`.
pub async fn sliding_sync(
    State(state): State<AppState>,
    Auth(r): Auth,
    Query(q): Query<QueryMap>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let timeout = Duration::from_millis(query_u64(&q, "timeout")?.unwrap_or(0));
    let set_presence = q.get("set_presence").map(|p| PresenceState::parse(p)).transpose()?;
    let req = SlidingSyncRequest::parse(&body, q.get("pos").cloned(), timeout)?;
    state.presence_on_sync(&r.user_id, set_presence, timeout).await?;
    Ok(Json(state.sliding_sync(&r, req).await?))
}

pub async fn create_filter(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(user): Path<String>,
    JsonBody(filter): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let filter = Filter::from_json(&filter).map_err(|e| MatrixError::bad_json(format!("Invalid filter: {e}")))?;
    let id = state.create_filter(&r, &user_id(&user)?, &filter).await?;
    Ok(Json(json!({ "filter_id": id })))
}

pub async fn get_filter(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((user, filter_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.get_filter(&r, &user_id(&user)?, &filter_id).await?))
}
