//! The server-server API: key documents and the notary, the version, and the authenticated
//! federation endpoints, served on the client listener (behind a TLS-terminating proxy) and on
//! the built-in TLS listener (`federation.listen`, `tls.rs`).
//!
//! Invariants: handlers only parse, call one service method and shape the answer; every
//! authenticated route takes a [`auth::SignedRequest`]; failures leave as `{"errcode", "error"}`.

pub mod auth;
mod error;
mod media;
mod rooms;
mod routes;
pub mod tls;

use std::sync::Arc;

use axum::{Router, response::IntoResponse};
use myelin_core::{ErrorCode, MatrixError};
use myelin_service::Services;

pub use error::FedError;

/// The federation routes, without a fallback: to merge into the client listener's router.
pub fn routes(services: Arc<Services>) -> Router {
    let max_body = services.config().limits.max_request_body_bytes;
    routes::routes()
        .merge(rooms::routes())
        .merge(media::routes())
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            tracing::error!("federation handler panicked");
            FedError::from(MatrixError::internal("Internal server error")).into_response()
        }))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(services)
}

/// The federation router of its own listener: the routes, and `M_UNRECOGNIZED` for anything else.
pub fn router(services: Arc<Services>) -> Router {
    routes(services).fallback(unrecognized)
}

async fn unrecognized() -> FedError {
    MatrixError::new(ErrorCode::Unrecognized, "Unrecognized request").into()
}
