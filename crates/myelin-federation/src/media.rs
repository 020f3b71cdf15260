//! Media for other servers (`/_matrix/federation/v1/media/…`): this server's own media, as
//! `multipart/mixed` — an empty JSON part, then the file's bytes, streamed from the blob store.

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    extract::{Path, Query, State},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};
use myelin_core::MatrixError;
use myelin_service::{
    Services,
    media::{Download, thumbnail::Method},
};

use crate::{auth::SignedRequest, error::FedResult};

type AppState = Arc<Services>;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/federation/v1/media/download/{media_id}", get(download))
        .route("/_matrix/federation/v1/media/thumbnail/{media_id}", get(thumbnail))
}

fn timeout_of(query: &HashMap<String, String>) -> FedResult<Option<Duration>> {
    match query.get("timeout_ms") {
        None => Ok(None),
        Some(v) => Ok(Some(Duration::from_millis(
            v.parse().map_err(|_| MatrixError::invalid_param("timeout_ms must be a non-negative integer"))?,
        ))),
    }
}

async fn download(
    State(state): State<AppState>,
    Path(media_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    signed: SignedRequest,
) -> FedResult<Response> {
    tracing::debug!(origin = %signed.origin, media_id, "media download");
    let own = state.server_name().to_string();
    let download = state.download_media(&own, &media_id, timeout_of(&query)?).await?;
    Ok(multipart_response(&state, download))
}

async fn thumbnail(
    State(state): State<AppState>,
    Path(media_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    signed: SignedRequest,
) -> FedResult<Response> {
    tracing::debug!(origin = %signed.origin, media_id, "media thumbnail");
    let dimension = |key: &str| -> FedResult<u32> {
        let raw = query.get(key).ok_or_else(|| MatrixError::missing_param(format!("{key} is required")))?;
        raw.parse::<u32>()
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| MatrixError::invalid_param(format!("Invalid {key}")).into())
    };
    let (width, height) = (dimension("width")?, dimension("height")?);
    let method = Method::parse(query.get("method").map(String::as_str))
        .ok_or_else(|| MatrixError::invalid_param("method must be crop or scale"))?;
    let own = state.server_name().to_string();
    let download = state.thumbnail_media(&own, &media_id, width, height, method, timeout_of(&query)?).await?;
    Ok(multipart_response(&state, download))
}

fn multipart_response(state: &Services, download: Download) -> Response {
    let (content_type, body) = state.media_as_multipart(download);
    let mut response = Body::from_stream(body).into_response();
    if let Ok(value) = HeaderValue::from_str(&content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}
