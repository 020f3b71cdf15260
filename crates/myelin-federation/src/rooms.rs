//! The room endpoints of the server-server API: transactions, joins, and the reads other servers
//! fill their gaps with.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    routing::{get, post, put},
};
use myelin_core::{
    MatrixError,
    types::{OwnedEventId, OwnedRoomId, OwnedUserId},
};
use myelin_service::Services;
use serde_json::Value;

use crate::{auth::SignedRequest, error::FedResult};

type AppState = Arc<Services>;

/// Most events one backfill request may ask for.
const MAX_BACKFILL: usize = 100;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/federation/v1/send/{txn_id}", put(send_transaction))
        .route("/_matrix/federation/v1/make_join/{room_id}/{user_id}", get(make_join))
        .route("/_matrix/federation/v2/send_join/{room_id}/{event_id}", put(send_join))
        .route("/_matrix/federation/v2/invite/{room_id}/{event_id}", put(invite))
        .route("/_matrix/federation/v1/make_leave/{room_id}/{user_id}", get(make_leave))
        .route("/_matrix/federation/v2/send_leave/{room_id}/{event_id}", put(send_leave))
        .route("/_matrix/federation/v1/make_knock/{room_id}/{user_id}", get(make_knock))
        .route("/_matrix/federation/v1/send_knock/{room_id}/{event_id}", put(send_knock))
        .route("/_matrix/federation/v1/event/{event_id}", get(event))
        .route("/_matrix/federation/v1/state/{room_id}", get(state))
        .route("/_matrix/federation/v1/state_ids/{room_id}", get(state_ids))
        .route("/_matrix/federation/v1/event_auth/{room_id}/{event_id}", get(event_auth))
        .route("/_matrix/federation/v1/get_missing_events/{room_id}", post(get_missing_events))
        .route("/_matrix/federation/v1/backfill/{room_id}", get(backfill))
        .route("/_matrix/federation/v1/hierarchy/{room_id}", get(hierarchy))
}

fn room_id(raw: &str) -> FedResult<OwnedRoomId> {
    OwnedRoomId::try_from(raw).map_err(|_| MatrixError::invalid_param("Invalid room id").into())
}

/// A `true`/`false` query parameter (absent: false; anything else: `M_INVALID_PARAM`).
fn flag(query: &HashMap<String, String>, key: &str) -> FedResult<bool> {
    match query.get(key).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(MatrixError::invalid_param(format!("{key} must be true or false")).into()),
    }
}

fn event_id(raw: &str) -> FedResult<OwnedEventId> {
    OwnedEventId::try_from(raw).map_err(|_| MatrixError::invalid_param("Invalid event id").into())
}

fn user_id(raw: &str) -> FedResult<OwnedUserId> {
    OwnedUserId::try_from(raw).map_err(|_| MatrixError::invalid_param("Invalid user id").into())
}

/// The `event_id` query parameter.
fn event_id_param(query: &HashMap<String, String>) -> FedResult<OwnedEventId> {
    event_id(query.get("event_id").ok_or_else(|| MatrixError::missing_param("event_id is required"))?)
}

async fn send_transaction(
    State(state): State<AppState>,
    Path(txn_id): Path<String>,
    signed: SignedRequest,
) -> FedResult<Json<Value>> {
    if !signed.body.is_object() {
        return Err(MatrixError::bad_json("A transaction is a JSON object").into());
    }
    // It talks to us: whatever waits to be sent to it goes now.
    state.destination_is_up(&signed.origin).await?;
    Ok(Json(state.receive_transaction(&signed.origin, &txn_id, &signed.body).await?))
}

async fn make_join(
    State(state): State<AppState>,
    Path((room, user)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    signed: SignedRequest,
) -> FedResult<Json<Value>> {
    let versions: Vec<String> = query.into_iter().filter(|(k, _)| k == "ver").map(|(_, v)| v).collect();
    Ok(Json(state.make_join(&signed.origin, &room_id(&room)?, &user_id(&user)?, &versions).await?))
}

async fn send_join(
    State(state): State<AppState>,
    Path((room, event)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    signed: SignedRequest,
) -> FedResult<Json<Value>> {
    let omit_members = flag(&query, "omit_members")?;
    Ok(Json(state.send_join(&signed.origin, &room_id(&room)?, &event, &signed.body, omit_members).await?))
}

async fn invite(
    State(state): State<AppState>,
    Path((room, event)): Path<(String, String)>,
    signed: SignedRequest,
) -> FedResult<Json<Value>> {
    Ok(Json(state.federation_invite(&signed.origin, &room_id(&room)?, &event, &signed.body).await?))
}

async fn make_leave(
    State(state): State<AppState>,
    Path((room, user)): Path<(String, String)>,
    signed: SignedRequest,
) -> FedResult<Json<Value>> {
    Ok(Json(state.make_leave(&signed.origin, &room_id(&room)?, &user_id(&user)?).await?))
}

async fn send_leave(
    State(state): State<AppState>,
    Path((room, event)): Path<(String, String)>,
    signed: SignedRequest,
) -> FedResult<Json<Value>> {
    Ok(Json(state.send_leave(&signed.origin, &room_id(&room)?, &event, &signed.body).await?))
}

async fn make_knock(
    State(state): State<AppState>,
    Path((room, user)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    signed: SignedRequest,
) -> FedResult<Json<Value>> {
    let versions: Vec<String> = query.into_iter().filter(|(k, _)| k == "ver").map(|(_, v)| v).collect();
    Ok(Json(state.make_knock(&signed.origin, &room_id(&room)?, &user_id(&user)?, &versions).await?))
}

async fn send_knock(
    State(state): State<AppState>,
    Path((room, event)): Path<(String, String)>,
    signed: SignedRequest,
) -> FedResult<Json<Value>> {
    Ok(Json(state.send_knock(&signed.origin, &room_id(&room)?, &event, &signed.body).await?))
}

async fn event(
    State(state): State<AppState>,
    Path(event): Path<String>,
    signed: SignedRequest,
) -> FedResult<Json<Value>> {
    Ok(Json(state.federation_event(&signed.origin, &event_id(&event)?).await?))
}

async fn state(
    State(state): State<AppState>,
    Path(room): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    signed: SignedRequest,
) -> FedResult<Json<Value>> {
    Ok(Json(state.federation_state(&signed.origin, &room_id(&room)?, &event_id_param(&query)?).await?))
}

async fn state_ids(
    State(state): State<AppState>,
    Path(room): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    signed: SignedRequest,
) -> FedResult<Json<Value>> {
    Ok(Json(state.federation_state_ids(&signed.origin, &room_id(&room)?, &event_id_param(&query)?).await?))
}

async fn event_auth(
    State(state): State<AppState>,
    Path((room, event)): Path<(String, String)>,
    signed: SignedRequest,
) -> FedResult<Json<Value>> {
    Ok(Json(state.federation_event_auth(&signed.origin, &room_id(&room)?, &event_id(&event)?).await?))
}

async fn get_missing_events(
    State(state): State<AppState>,
    Path(room): Path<String>,
    signed: SignedRequest,
) -> FedResult<Json<Value>> {
    Ok(Json(state.federation_missing_events(&signed.origin, &room_id(&room)?, &signed.body).await?))
}

async fn backfill(
    State(state): State<AppState>,
    Path(room): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    signed: SignedRequest,
) -> FedResult<Json<Value>> {
    let mut from = Vec::new();
    let mut limit = 10;
    for (key, value) in &query {
        match key.as_str() {
            "v" => from.push(event_id(value)?),
            "limit" => {
                limit = value.parse().map_err(|_| MatrixError::invalid_param("limit must be an integer"))?;
            }
            _ => {}
        }
    }
    if from.is_empty() {
        return Err(MatrixError::missing_param("v is required").into());
    }
    Ok(Json(state.federation_backfill(&signed.origin, &room_id(&room)?, &from, limit.min(MAX_BACKFILL)).await?))
}

async fn hierarchy(
    State(state): State<AppState>,
    Path(room): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    signed: SignedRequest,
) -> FedResult<Json<Value>> {
    let suggested_only = flag(&query, "suggested_only")?;
    Ok(Json(state.federation_hierarchy(&signed.origin, &room_id(&room)?, suggested_only).await?))
}
