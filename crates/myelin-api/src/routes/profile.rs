use axum::{
    Json,
    extract::{Path, State},
};
use myelin_core::MatrixError;
use serde_json::{Value, json};

use super::user_id;
use crate::{
    AppState,
    error::ApiResult,
    extract::{Auth, JsonBody},
};

const MAX_PROFILE_FIELD: usize = 1024;

async fn profile(state: &AppState, user: &str) -> ApiResult<Value> {
    let record = state.store.get_user(user_id(user)?).await.map_err(MatrixError::from)?;
    let record = record.filter(|u| !u.deactivated).ok_or_else(|| MatrixError::not_found("Profile not found"))?;
    let mut body = json!({});
    if let Some(n) = record.displayname {
        body["displayname"] = n.into();
    }
    if let Some(a) = record.avatar_url {
        body["avatar_url"] = a.into();
    }
    Ok(body)
}

pub async fn get_profile(State(state): State<AppState>, Path(user): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(profile(&state, &user).await?))
}

pub async fn get_field(
    State(state): State<AppState>,
    Path((user, field)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let body = profile(&state, &user).await?;
    match body.get(&field) {
        Some(v) => Ok(Json(json!({ field: v }))),
        None => Err(MatrixError::not_found("Profile field not set").into()),
    }
}

pub async fn set_field(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((user, field)): Path<(String, String)>,
    JsonBody(body): JsonBody<serde_json::Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    if user_id(&user)? != r.user_id {
        return Err(MatrixError::forbidden("You may only change your own profile").into());
    }
    if field != "displayname" && field != "avatar_url" {
        return Err(MatrixError::invalid_param("Only displayname and avatar_url can be set").into());
    }
    let value = match body.get(&field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() <= MAX_PROFILE_FIELD => Some(s.clone()),
        Some(Value::String(_)) => return Err(MatrixError::invalid_param(format!("{field} is too long")).into()),
        Some(_) => return Err(MatrixError::bad_json(format!("{field} must be a string")).into()),
    };
    state.set_profile_field(&r.user_id, &field, value).await?;
    Ok(Json(json!({})))
}
