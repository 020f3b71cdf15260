//! Push rules (the user's ruleset, server default until changed, and its CRUD API) and pushers.

use axum::{
    Json,
    extract::{Path, Query, State},
};
use myelin_core::MatrixError;
use myelin_service::push::{Placement, RuleBody, RuleChange, rule_json, rule_kind};
use ruma::push::Action;
use serde::Deserialize;
use serde_json::{Value, json};

use super::QueryMap;
use crate::{
    AppState,
    error::ApiResult,
    extract::{Auth, JsonBody},
};

pub async fn get_all(State(state): State<AppState>, Auth(r): Auth) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "global": *state.push_ruleset(&r.user_id).await? })))
}

pub async fn get_global(State(state): State<AppState>, Auth(r): Auth) -> ApiResult<Json<Value>> {
    let rules = state.push_ruleset(&r.user_id).await?;
    Ok(Json(serde_json::to_value(&*rules).map_err(|e| MatrixError::internal(e.to_string()))?))
}

pub async fn get_rule(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((kind, rule_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let rules = state.push_ruleset(&r.user_id).await?;
    Ok(Json(rule_json(&rules, rule_kind(&kind)?, &rule_id)?))
}

pub async fn put_rule(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((kind, rule_id)): Path<(String, String)>,
    Query(q): Query<QueryMap>,
    JsonBody(rule): JsonBody<RuleBody>,
) -> ApiResult<Json<Value>> {
    let placement = Placement { before: q.get("before").cloned(), after: q.get("after").cloned() };
    state.change_push_rule(&r, &kind, &rule_id, RuleChange::Put { rule, placement }).await?;
    Ok(Json(json!({})))
}

pub async fn delete_rule(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((kind, rule_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    state.change_push_rule(&r, &kind, &rule_id, RuleChange::Delete).await?;
    Ok(Json(json!({})))
}

pub async fn get_enabled(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((kind, rule_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let rules = state.push_ruleset(&r.user_id).await?;
    let rule = rules.get(rule_kind(&kind)?, &rule_id).ok_or_else(|| MatrixError::not_found("Push rule not found"))?;
    Ok(Json(json!({ "enabled": rule.enabled() })))
}

#[derive(Deserialize)]
pub struct EnabledBody {
    enabled: bool,
}

pub async fn put_enabled(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((kind, rule_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<EnabledBody>,
) -> ApiResult<Json<Value>> {
    state.change_push_rule(&r, &kind, &rule_id, RuleChange::Enable(body.enabled)).await?;
    Ok(Json(json!({})))
}

pub async fn get_actions(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((kind, rule_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let rules = state.push_ruleset(&r.user_id).await?;
    let rule = rules.get(rule_kind(&kind)?, &rule_id).ok_or_else(|| MatrixError::not_found("Push rule not found"))?;
    Ok(Json(json!({ "actions": rule.actions() })))
}

#[derive(Deserialize)]
pub struct ActionsBody {
    actions: Vec<Action>,
}

pub async fn put_actions(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((kind, rule_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<ActionsBody>,
) -> ApiResult<Json<Value>> {
    state.change_push_rule(&r, &kind, &rule_id, RuleChange::Actions(body.actions)).await?;
    Ok(Json(json!({})))
}

/// `GET /pushers`.
pub async fn get_pushers(State(state): State<AppState>, Auth(r): Auth) -> ApiResult<Json<Value>> {
    Ok(Json(state.get_pushers(&r).await?))
}

/// `POST /pushers/set`.
pub async fn set_pusher(
    State(state): State<AppState>,
    Auth(r): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    state.set_pusher(&r, &body).await?;
    Ok(Json(json!({})))
}

/// `GET /notifications`.
pub async fn notifications(
    State(state): State<AppState>,
    Auth(r): Auth,
    Query(q): Query<QueryMap>,
) -> ApiResult<Json<Value>> {
    let limit = super::query_u64(&q, "limit")?;
    Ok(Json(
        state.notifications(&r, q.get("from").map(String::as_str), limit, q.get("only").map(String::as_str)).await?,
    ))
}
