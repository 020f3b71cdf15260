//! HTTP metrics (every matched route's requests, status codes and latency, labelled by its
//! route template, never by what the path names) and the Prometheus endpoint.

use std::time::Instant;

use axum::{
    Router,
    extract::{MatchedPath, Request, State},
    http::{Method, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};

use crate::AppState;

/// A method as a label: the standard ones, anything else as `OTHER` (a client's made-up
/// methods must not make new series).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::HEAD => "HEAD",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}

/// Middleware (a route layer, so the route template is known): counts the request and times
/// it to its response's head.
pub async fn record_http_metrics(State(services): State<AppState>, request: Request, next: Next) -> Response {
    let method = method_label(request.method());
    let servlet = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let servlet = servlet.as_deref().unwrap_or("unmatched");
    services.metrics().http_request(method, servlet, response.status().as_u16(), started.elapsed());
    response
}

/// The metrics listener's router: Prometheus text at `/metrics` (and Synapse's
/// `/_synapse/metrics`).
pub fn metrics_router(services: AppState) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/_synapse/metrics", get(serve_metrics))
        .with_state(services)
}

async fn serve_metrics(State(services): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], services.render_metrics().await)
}
