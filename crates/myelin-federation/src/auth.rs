//! The authenticated federation request: its `X-Matrix` signature checked by the services over
//! the method, the path and query as received, and the JSON body.

use std::sync::Arc;

use axum::{
    extract::{FromRequest, Request},
    http::header::AUTHORIZATION,
};
use myelin_core::{ErrorCode, MatrixError, types::OwnedServerName};
use myelin_service::Services;
use serde_json::Value;

use crate::FedError;

/// A request whose signature holds: the server it comes from and its JSON body (`Null` when it
/// has none).
#[derive(Debug)]
pub struct SignedRequest {
    pub origin: OwnedServerName,
    pub body: Value,
}

impl FromRequest<Arc<Services>> for SignedRequest {
    type Rejection = FedError;

    async fn from_request(req: Request, services: &Arc<Services>) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let method = parts.method.as_str().to_owned();
        let uri = parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
        let headers: Vec<&str> = parts.headers.get_all(AUTHORIZATION).iter().filter_map(|v| v.to_str().ok()).collect();
        let limit = services.config().limits.max_request_body_bytes;
        let bytes = axum::body::to_bytes(body, limit)
            .await
            .map_err(|_| MatrixError::new(ErrorCode::TooLarge, "Request body too large"))?;
        let body: Option<Value> = if bytes.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            Some(
                serde_json::from_slice(&bytes)
                    .map_err(|_| MatrixError::new(ErrorCode::NotJson, "The request body is not JSON"))?,
            )
        };
        let origin = services.authenticate_federation_request(&method, &uri, &headers, body.as_ref()).await?;
        Ok(Self { origin, body: body.unwrap_or(Value::Null) })
    }
}
