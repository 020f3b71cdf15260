use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use myelin_core::MatrixError;

/// A Matrix error as an HTTP answer (`{"errcode", "error"}` with its status).
#[derive(Debug)]
pub struct FedError(pub MatrixError);

impl From<MatrixError> for FedError {
    fn from(err: MatrixError) -> Self {
        if err.status >= 500 {
            tracing::error!(error = %err, "federation request failed");
        }
        Self(err)
    }
}

impl IntoResponse for FedError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0.to_json())).into_response()
    }
}

pub type FedResult<T> = Result<T, FedError>;
