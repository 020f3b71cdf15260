//! The content repository: uploads under `/_matrix/media`, authenticated downloads under
//! `/_matrix/client/v1/media` (MSC3916), and the frozen unauthenticated paths.

use std::time::Duration;

use axum::{
    body::Body,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures_util::TryStreamExt;
use myelin_core::MatrixError;
use myelin_service::media::{Download, Upload, multipart::content_disposition, thumbnail::Method};
use serde_json::{Value, json};

use super::{QueryMap, query_u64};
use crate::{ApiError, AppState, extract::Auth};

/// What a downloaded file may do in a browser: nothing (Synapse's policy).
const MEDIA_CSP: &str = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; \
                         style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

fn upload_of(headers: &HeaderMap, q: &QueryMap, body: Body) -> Upload {
    let header_str = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    Upload {
        content_type: header_str(header::CONTENT_TYPE),
        filename: q.get("filename").cloned(),
        declared_length: header_str(header::CONTENT_LENGTH).and_then(|v| v.parse().ok()),
        bytes: Box::pin(body.into_data_stream().map_err(std::io::Error::other)),
    }
}

/// `POST /_matrix/media/{v3,r0,v1}/upload`.
pub async fn upload(
    State(state): State<AppState>,
    Auth(r): Auth,
    Query(q): Query<QueryMap>,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::Json<Value>, ApiError> {
    let uri = state.upload_media(&r, upload_of(&headers, &q, body)).await?;
    Ok(axum::Json(json!({ "content_uri": uri })))
}

/// `POST /_matrix/media/v1/create` (MSC2246).
pub async fn create(State(state): State<AppState>, Auth(r): Auth) -> Result<axum::Json<Value>, ApiError> {
    Ok(axum::Json(state.create_media(&r).await?))
}

/// `PUT /_matrix/media/v3/upload/{serverName}/{mediaId}` (MSC2246).
pub async fn upload_reserved(
    State(state): State<AppState>,
    Auth(r): Auth,
    Path((server_name, media_id)): Path<(String, String)>,
    Query(q): Query<QueryMap>,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::Json<Value>, ApiError> {
    state.upload_reserved_media(&r, &server_name, &media_id, upload_of(&headers, &q, body)).await?;
    Ok(axum::Json(json!({})))
}

/// `GET /_matrix/client/v1/media/config`.
pub async fn config(State(state): State<AppState>, Auth(_): Auth) -> axum::Json<Value> {
    axum::Json(state.media_config())
}

fn wait_of(q: &QueryMap) -> Result<Option<Duration>, ApiError> {
    Ok(query_u64(q, "timeout_ms")?.map(Duration::from_millis))
}

/// `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}`.
pub async fn download(
    State(state): State<AppState>,
    Auth(_): Auth,
    Path((server_name, media_id)): Path<(String, String)>,
    Query(q): Query<QueryMap>,
) -> Result<Response, ApiError> {
    let download = state.download_media(&server_name, &media_id, wait_of(&q)?).await?;
    Ok(media_response(download, None))
}

/// `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}/{fileName}`: the file name is
/// the one given.
pub async fn download_named(
    State(state): State<AppState>,
    Auth(_): Auth,
    Path((server_name, media_id, file_name)): Path<(String, String, String)>,
    Query(q): Query<QueryMap>,
) -> Result<Response, ApiError> {
    let download = state.download_media(&server_name, &media_id, wait_of(&q)?).await?;
    Ok(media_response(download, Some(file_name)))
}

/// `GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}?width&height&method`.
pub async fn thumbnail(
    State(state): State<AppState>,
    Auth(_): Auth,
    Path((server_name, media_id)): Path<(String, String)>,
    Query(q): Query<QueryMap>,
) -> Result<Response, ApiError> {
    let dimension = |key: &str| -> Result<u32, ApiError> {
        let value = query_u64(&q, key)?.ok_or_else(|| MatrixError::missing_param(format!("{key} is required")))?;
        u32::try_from(value)
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| MatrixError::invalid_param(format!("Invalid {key}")).into())
    };
    let (width, height) = (dimension("width")?, dimension("height")?);
    let method = Method::parse(q.get("method").map(String::as_str))
        .ok_or_else(|| MatrixError::invalid_param("method must be crop or scale"))?;
    let download = state.thumbnail_media(&server_name, &media_id, width, height, method, wait_of(&q)?).await?;
    Ok(media_response(download, None))
}

/// `GET /_matrix/client/v1/media/preview_url?url=…[&ts=…]`.
pub async fn preview_url(
    State(state): State<AppState>,
    Auth(_): Auth,
    Query(q): Query<QueryMap>,
) -> Result<axum::Json<Value>, ApiError> {
    let url = q.get("url").ok_or_else(|| MatrixError::missing_param("url is required"))?;
    query_u64(&q, "ts")?;
    Ok(axum::Json(state.preview_url(url).await?))
}

/// The unauthenticated media paths, frozen by MSC3916: this server has no media from before the
/// freeze, so there is nothing to serve there.
pub async fn frozen() -> ApiError {
    MatrixError::not_found("Media is served at /_matrix/client/v1/media with authentication").into()
}

fn media_response(download: Download, file_name: Option<String>) -> Response {
    let Download { content_type, filename, length, inline, bytes } = download;
    let name = file_name.or(filename);
    let mut response = Body::from_stream(bytes).into_response();
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    let content_type =
        HeaderValue::from_str(&content_type).unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Ok(value) = HeaderValue::from_str(&content_disposition(inline, name.as_deref())) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(MEDIA_CSP));
    headers.insert("cross-origin-resource-policy", HeaderValue::from_static("cross-origin"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=86400, immutable"));
    response
}
