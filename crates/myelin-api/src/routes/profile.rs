use axum::{
    Json,
    extract::{Path, State},
};
use myelin_core::MatrixError;
use myelin_service::accounts::{Profile, ProfileField};
use serde_json::{Value, json};

use super::user_id;
use crate::{
    AppState,
    error::ApiResult,
    extract::{Auth, JsonBody},
};

fn profile_json(profile: Profile) -> Value {
    let mut body = json!({});
    if let Some(n) = profile.displayname {
        body["displayname"] = n.into();
    }
    if let Some(a) = profile.avatar_url {
        body["avatar_url"] = a.into();
    }
    body
}

pub async fn get_profile(State(state): State<AppState>, Path(user): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(profile_json(state.profile(&user_id(&user)?).await?)))
}

pub async fn get_field(
    State(state): State<AppState>,
    Path((user, field)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let body = profile_json(state.profile(&user_id(&user)?).await?);
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
    let user_id = user_id(&user)?;
    let field_kind = ProfileField::parse(&field)
        .ok_or_else(|| MatrixError::invalid_param("Only displayname and avatar_url can be set"))?;
    let value = match body.get(&field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(MatrixError::bad_json(format!("{field} must be a string")).into()),
    };
    state.set_profile_field(&r, &user_id, field_kind, value).await?;
    Ok(Json(json!({})))
}

/// `DELETE /profile/{userId}/{keyName}`: unsets a field.
pub async fn delete_field(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((user, field)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let user_id = user_id(&user)?;
    let field_kind = ProfileField::parse(&field)
        .ok_or_else(|| MatrixError::invalid_param("Only displayname and avatar_url can be set"))?;
    state.set_profile_field(&r, &user_id, field_kind, None).await?;
    Ok(Json(json!({})))
}
