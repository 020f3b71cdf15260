//! The HTTP layer: axum routes for the client-server API (v3 with the r0 aliases clients still
//! call), auth extraction, JSON parsing with exact Matrix errors, body limits and error responses.
//!
//! Invariants: handlers only parse, call a service and serialise; no SQL and no Matrix rules here.
//! Every failure leaves as `{"errcode", "error"}` JSON with the spec's status, never a bare 500.

mod error;
mod extract;
mod metrics;
mod routes;
mod web;

use std::sync::Arc;

use axum::{Router, http::StatusCode, response::IntoResponse};
use myelin_core::{ErrorCode, MatrixError};
use myelin_service::Services;

pub use error::ApiError;
pub use metrics::{metrics_router, record_http_metrics};

pub type AppState = Arc<Services>;

/// The whole client-facing router.
pub fn router(services: AppState) -> Router {
    let client = routes::client_routes();
    let v1 = routes::v1_routes();
    let max_body = services.config().limits.max_request_body_bytes;
    Router::new()
        .nest("/_matrix/client/v3", client.clone())
        .nest("/_matrix/client/r0", client)
        .nest("/_matrix/client/v1", v1)
        .nest("/_matrix/media/v3", routes::media_routes())
        .nest("/_matrix/media/r0", routes::media_routes())
        .nest("/_matrix/media/v1", routes::media_routes())
        .nest("/_matrix/client/unstable/org.matrix.msc3814.v1", routes::msc3814_routes())
        .nest("/_matrix/client/unstable/org.matrix.simplified_msc3575", routes::sliding_sync_routes())
        .nest("/_matrix/client/unstable/org.matrix.msc4140", routes::msc4140_routes())
        .nest("/_matrix/client/unstable/im.nheko.summary", routes::msc3266_routes())
        .nest("/_matrix/client/unstable/uk.half-shot.msc2666", routes::msc2666_routes())
        .nest("/_matrix/client/unstable/org.matrix.msc4143", routes::msc4143_routes())
        .nest(myelin_service::rtc::LIVEKIT_SERVICE_PATH, routes::livekit_routes())
        .nest("/_synapse/admin", routes::admin_routes())
        .merge(routes::unversioned_routes())
        .fallback(unrecognized)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            tracing::error!("request handler panicked");
            ApiError::from(MatrixError::internal("Internal server error")).into_response()
        }))
        .layer(tower_http::cors::CorsLayer::very_permissive().max_age(std::time::Duration::from_secs(86400)))
        // The web pages: outside the CORS layer (no other site may read them).
        .merge(web::router(max_body))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(services)
}

async fn unrecognized() -> ApiError {
    MatrixError::new(ErrorCode::Unrecognized, "Unrecognized request").into()
}

async fn method_not_allowed() -> ApiError {
    MatrixError::new(ErrorCode::Unrecognized, "Method not allowed for this endpoint")
        .with_status(StatusCode::METHOD_NOT_ALLOWED.as_u16())
        .into()
}
