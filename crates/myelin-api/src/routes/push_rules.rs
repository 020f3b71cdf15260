//! Push rules: the user's ruleset (server default until changed) and its CRUD API.

use axum::{
    Json,
    extract::{Path, Query, State},
};
use myelin_core::MatrixError;
use ruma::push::{
    Action, NewConditionalPushRule, NewPatternedPushRule, NewPushRule, NewSimplePushRule, PushCondition, RuleKind,
    Ruleset,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::QueryMap;
use crate::{
    AppState,
    error::ApiResult,
    extract::{Auth, JsonBody},
};

async fn ruleset(state: &AppState, user: &str) -> Result<Ruleset, MatrixError> {
    Ok((*state.push.ruleset(state.store.as_ref(), user).await?).clone())
}

fn kind(raw: &str) -> Result<RuleKind, MatrixError> {
    match raw {
        "override" => Ok(RuleKind::Override),
        "underride" => Ok(RuleKind::Underride),
        "sender" => Ok(RuleKind::Sender),
        "room" => Ok(RuleKind::Room),
        "content" => Ok(RuleKind::Content),
        _ => Err(MatrixError::invalid_param(format!("Unknown rule kind {raw:?}"))),
    }
}

fn rule_json(rules: &Ruleset, k: RuleKind, rule_id: &str) -> Result<Value, MatrixError> {
    use ruma::push::AnyPushRule;
    let rule = rules.get(k, rule_id).ok_or_else(|| MatrixError::not_found("Push rule not found"))?.to_owned();
    let value = match rule {
        AnyPushRule::Override(r) | AnyPushRule::Underride(r) => serde_json::to_value(r),
        AnyPushRule::Content(r) => serde_json::to_value(r),
        AnyPushRule::Room(r) => serde_json::to_value(r),
        AnyPushRule::Sender(r) => serde_json::to_value(r),
        _ => return Err(MatrixError::not_found("Push rule not found")),
    };
    value.map_err(|e| MatrixError::internal(e.to_string()))
}

pub async fn get_all(State(state): State<AppState>, Auth(r): Auth) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "global": ruleset(&state, &r.user_id).await? })))
}

pub async fn get_global(State(state): State<AppState>, Auth(r): Auth) -> ApiResult<Json<Value>> {
    Ok(Json(
        serde_json::to_value(ruleset(&state, &r.user_id).await?).map_err(|e| MatrixError::internal(e.to_string()))?,
    ))
}

pub async fn get_rule(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((k, rule_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let rules = ruleset(&state, &r.user_id).await?;
    Ok(Json(rule_json(&rules, kind(&k)?, &rule_id)?))
}

#[derive(Deserialize)]
pub struct RuleBody {
    actions: Vec<Action>,
    #[serde(default)]
    conditions: Vec<PushCondition>,
    pattern: Option<String>,
}

pub async fn put_rule(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((k, rule_id)): Path<(String, String)>,
    Query(q): Query<QueryMap>,
    JsonBody(body): JsonBody<RuleBody>,
) -> ApiResult<Json<Value>> {
    let _guard = state.locks.lock(&format!("pushrules:{}", r.user_id)).await;
    let mut rules = ruleset(&state, &r.user_id).await?;
    let new = match kind(&k)? {
        RuleKind::Override => {
            NewPushRule::Override(NewConditionalPushRule::new(rule_id, body.conditions, body.actions))
        }
        RuleKind::Underride => {
            NewPushRule::Underride(NewConditionalPushRule::new(rule_id, body.conditions, body.actions))
        }
        RuleKind::Content => {
            let pattern = body.pattern.ok_or_else(|| MatrixError::missing_param("pattern is required"))?;
            NewPushRule::Content(NewPatternedPushRule::new(rule_id, pattern, body.actions))
        }
        RuleKind::Room => {
            let room = ruma::OwnedRoomId::try_from(rule_id)
                .map_err(|_| MatrixError::invalid_param("Room rule ids are room ids"))?;
            NewPushRule::Room(NewSimplePushRule::new(room, body.actions))
        }
        RuleKind::Sender => {
            let user = ruma::OwnedUserId::try_from(rule_id)
                .map_err(|_| MatrixError::invalid_param("Sender rule ids are user ids"))?;
            NewPushRule::Sender(NewSimplePushRule::new(user, body.actions))
        }
        _ => return Err(MatrixError::invalid_param("Unknown rule kind").into()),
    };
    rules
        .insert(new, q.get("after").map(String::as_str), q.get("before").map(String::as_str))
        .map_err(|e| MatrixError::bad_json(e.to_string()))?;
    state.push.save(state.store.as_ref(), &r.user_id, &rules).await?;
    state.notifier.notify_users(std::slice::from_ref(&r.user_id));
    Ok(Json(json!({})))
}

pub async fn delete_rule(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((k, rule_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let _guard = state.locks.lock(&format!("pushrules:{}", r.user_id)).await;
    let mut rules = ruleset(&state, &r.user_id).await?;
    let k = kind(&k)?;
    if rules.get(k.clone(), &rule_id).is_none() {
        return Err(MatrixError::not_found("Push rule not found").into());
    }
    rules.remove(k, &rule_id).map_err(|e| MatrixError::bad_json(e.to_string()))?;
    state.push.save(state.store.as_ref(), &r.user_id, &rules).await?;
    state.notifier.notify_users(std::slice::from_ref(&r.user_id));
    Ok(Json(json!({})))
}

pub async fn get_enabled(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((k, rule_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let rules = ruleset(&state, &r.user_id).await?;
    let rule = rules.get(kind(&k)?, &rule_id).ok_or_else(|| MatrixError::not_found("Push rule not found"))?;
    Ok(Json(json!({ "enabled": rule.enabled() })))
}

#[derive(Deserialize)]
pub struct EnabledBody {
    enabled: bool,
}

pub async fn put_enabled(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((k, rule_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<EnabledBody>,
) -> ApiResult<Json<Value>> {
    let _guard = state.locks.lock(&format!("pushrules:{}", r.user_id)).await;
    let mut rules = ruleset(&state, &r.user_id).await?;
    rules.set_enabled(kind(&k)?, &rule_id, body.enabled).map_err(|_| MatrixError::not_found("Push rule not found"))?;
    state.push.save(state.store.as_ref(), &r.user_id, &rules).await?;
    state.notifier.notify_users(std::slice::from_ref(&r.user_id));
    Ok(Json(json!({})))
}

pub async fn get_actions(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((k, rule_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let rules = ruleset(&state, &r.user_id).await?;
    let rule = rules.get(kind(&k)?, &rule_id).ok_or_else(|| MatrixError::not_found("Push rule not found"))?;
    Ok(Json(json!({ "actions": rule.actions() })))
}

#[derive(Deserialize)]
pub struct ActionsBody {
    actions: Vec<Action>,
}

pub async fn put_actions(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((k, rule_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<ActionsBody>,
) -> ApiResult<Json<Value>> {
    let _guard = state.locks.lock(&format!("pushrules:{}", r.user_id)).await;
    let mut rules = ruleset(&state, &r.user_id).await?;
    rules.set_actions(kind(&k)?, &rule_id, body.actions).map_err(|_| MatrixError::not_found("Push rule not found"))?;
    state.push.save(state.store.as_ref(), &r.user_id, &rules).await?;
    state.notifier.notify_users(std::slice::from_ref(&r.user_id));
    Ok(Json(json!({})))
}
