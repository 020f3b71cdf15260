use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use myelin_core::MatrixError;
use serde_json::Value;

/// An error response: a Matrix error, or a UIA 401 body (flows, session, completed).
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub body: Value,
}

impl From<MatrixError> for ApiError {
    fn from(err: MatrixError) -> Self {
        if err.status >= 500 {
            tracing::error!(error = %err, "request failed");
        }
        Self { status: err.status, body: err.to_json() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
