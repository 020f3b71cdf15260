//! `POST /search`: full-text search of the rooms a user can read.

use axum::{
    Json,
    extract::{Query, State},
};
use myelin_service::search::SearchRequest;
use serde_json::Value;

use super::QueryMap;
use crate::{
    AppState,
    error::ApiResult,
    extract::{Auth, JsonBody},
};

pub async fn search(
    State(state): State<AppState>,
    Auth(r): Auth,
    Query(q): Query<QueryMap>,
    JsonBody(body): JsonBody<SearchRequest>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.search(&r, body, q.get("next_batch").map(String::as_str)).await?))
}
