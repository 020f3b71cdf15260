//! Application services' own client endpoints.

use axum::{
    Json,
    extract::{Path, State},
};
use serde::Deserialize;
use serde_json::Value;

use crate::{
    AppState,
    error::ApiResult,
    extract::{Auth, JsonBody},
};

#[derive(Deserialize)]
pub struct PingBody {
    transaction_id: Option<String>,
}

/// `POST /_matrix/client/v1/appservice/{appserviceId}/ping`.
pub async fn ping(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path(appservice_id): Path<String>,
    JsonBody(body): JsonBody<PingBody>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.ping_appservice(&r, &appservice_id, body.transaction_id).await?))
}
