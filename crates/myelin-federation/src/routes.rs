//! The federation endpoints.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    routing::get,
};
use myelin_core::{
    MatrixError,
    types::{OwnedRoomAliasId, OwnedServerName, OwnedUserId},
};
use myelin_service::{Services, rooms::PublicRoomsRequest};
use serde_json::{Value, json};

use crate::{auth::SignedRequest, error::FedResult};

type AppState = Arc<Services>;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/key/v2/server", get(own_keys))
        .route("/_matrix/key/v2/server/{key_id}", get(own_keys))
        .route("/_matrix/key/v2/query", axum::routing::post(notary_query))
        .route("/_matrix/key/v2/query/{server_name}", get(notary_server))
        .route("/_matrix/key/v2/query/{server_name}/{key_id}", get(notary_server_key))
        .route("/_matrix/federation/v1/version", get(version))
        .route("/_matrix/federation/v1/query/directory", get(query_directory))
        .route("/_matrix/federation/v1/query/profile", get(query_profile))
        .route("/_matrix/federation/v1/publicRooms", get(public_rooms_get).post(public_rooms_post))
        .route("/_matrix/federation/v1/user/keys/query", axum::routing::post(user_keys_query))
        .route("/_matrix/federation/v1/user/keys/claim", axum::routing::post(user_keys_claim))
        .route("/_matrix/federation/v1/user/devices/{user_id}", get(user_devices))
        .route("/_matrix/federation/v1/openid/userinfo", get(openid_userinfo))
}

async fn own_keys(State(state): State<AppState>) -> FedResult<Json<Value>> {
    Ok(Json(state.own_server_keys()?))
}

fn minimum_valid_until(query: &HashMap<String, String>) -> FedResult<Option<u64>> {
    query
        .get("minimum_valid_until_ts")
        .map(|v| v.parse().map_err(|_| MatrixError::invalid_param("minimum_valid_until_ts must be an integer").into()))
        .transpose()
}

fn server_name(raw: &str) -> FedResult<OwnedServerName> {
    OwnedServerName::try_from(raw).map_err(|_| MatrixError::invalid_param("Invalid server name").into())
}

async fn notary_server(
    State(state): State<AppState>,
    Path(server): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> FedResult<Json<Value>> {
    let keys = state.notary_server_keys(&server_name(&server)?, minimum_valid_until(&query)?).await?;
    Ok(Json(json!({ "server_keys": keys })))
}

async fn notary_server_key(
    State(state): State<AppState>,
    Path((server, _key_id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> FedResult<Json<Value>> {
    let keys = state.notary_server_keys(&server_name(&server)?, minimum_valid_until(&query)?).await?;
    Ok(Json(json!({ "server_keys": keys })))
}

async fn notary_query(State(state): State<AppState>, body: axum::body::Bytes) -> FedResult<Json<Value>> {
    let body: Value = serde_json::from_slice(&body)
        .map_err(|_| MatrixError::new(myelin_core::ErrorCode::NotJson, "The request body is not JSON"))?;
    Ok(Json(state.notary_query(&body).await?))
}

async fn version() -> Json<Value> {
    Json(json!({ "server": { "name": "Myelin", "version": env!("CARGO_PKG_VERSION") } }))
}

async fn query_directory(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    signed: SignedRequest,
) -> FedResult<Json<Value>> {
    tracing::debug!(origin = %signed.origin, "directory query");
    let raw = query.get("room_alias").ok_or_else(|| MatrixError::missing_param("room_alias is required"))?;
    let alias =
        OwnedRoomAliasId::try_from(raw.as_str()).map_err(|_| MatrixError::invalid_param("Invalid room alias"))?;
    let (room_id, servers) = state.query_directory(&alias).await?;
    Ok(Json(json!({ "room_id": room_id, "servers": servers })))
}

async fn query_profile(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    signed: SignedRequest,
) -> FedResult<Json<Value>> {
    tracing::debug!(origin = %signed.origin, "profile query");
    let raw = query.get("user_id").ok_or_else(|| MatrixError::missing_param("user_id is required"))?;
    let user_id = OwnedUserId::try_from(raw.as_str()).map_err(|_| MatrixError::invalid_param("Invalid user id"))?;
    Ok(Json(state.query_profile(&user_id, query.get("field").map(String::as_str)).await?))
}

/// Most rooms one federation directory page carries.
const MAX_DIRECTORY_PAGE: u64 = 500;

fn directory_since(raw: Option<&str>) -> FedResult<usize> {
    raw.map_or(Ok(0), |s| s.parse().map_err(|_| MatrixError::invalid_param("Invalid since token").into()))
}

async fn public_rooms_get(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    signed: SignedRequest,
) -> FedResult<Json<Value>> {
    tracing::debug!(origin = %signed.origin, "public rooms");
    let limit = match query.get("limit") {
        Some(l) => l.parse::<u64>().map_err(|_| MatrixError::invalid_param("limit must be an integer"))?,
        None => 100,
    };
    let req = PublicRoomsRequest {
        since: directory_since(query.get("since").map(String::as_str))?,
        limit: limit.min(MAX_DIRECTORY_PAGE) as usize,
        filter: None,
        server: None,
    };
    Ok(Json(state.public_rooms(req).await?))
}

async fn public_rooms_post(State(state): State<AppState>, signed: SignedRequest) -> FedResult<Json<Value>> {
    let body = &signed.body;
    if !body.is_object() {
        return Err(MatrixError::bad_json("The body must be a JSON object").into());
    }
    let limit = body
        .get("limit")
        .map_or(Ok(100), |l| l.as_u64().ok_or_else(|| MatrixError::bad_json("limit must be a non-negative integer")))?;
    let req = PublicRoomsRequest {
        since: directory_since(body.get("since").and_then(Value::as_str))?,
        limit: limit.min(MAX_DIRECTORY_PAGE) as usize,
        filter: body
            .get("filter")
            .and_then(|f| f.get("generic_search_term"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        server: None,
    };
    Ok(Json(state.public_rooms(req).await?))
}

async fn user_keys_query(State(state): State<AppState>, signed: SignedRequest) -> FedResult<Json<Value>> {
    Ok(Json(state.federation_query_keys(&signed.origin, &signed.body).await?))
}

async fn user_keys_claim(State(state): State<AppState>, signed: SignedRequest) -> FedResult<Json<Value>> {
    Ok(Json(state.federation_claim_keys(&signed.origin, &signed.body).await?))
}

async fn user_devices(
    State(state): State<AppState>,
    Path(user): Path<String>,
    signed: SignedRequest,
) -> FedResult<Json<Value>> {
    let user = OwnedUserId::try_from(user.as_str()).map_err(|_| MatrixError::invalid_param("Invalid user id"))?;
    Ok(Json(state.federation_user_devices(&signed.origin, &user).await?))
}

/// Not signed: the caller is any service holding a token a user gave it.
async fn openid_userinfo(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> FedResult<Json<Value>> {
    let token = query.get("access_token").ok_or_else(|| MatrixError::unknown_token("access_token is required"))?;
    Ok(Json(state.openid_userinfo(token).await?))
}
