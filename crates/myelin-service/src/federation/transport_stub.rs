//! Placeholder for the federation transport (replaced when the transport branch lands).

use std::collections::BTreeMap;

use myelin_core::{MatrixError, MatrixResult, types::ServerName};
use serde_json::Value;

use crate::Services;

#[derive(Debug)]
pub struct FederationError(pub String);

impl std::fmt::Display for FederationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Services {
    pub async fn federation_get(&self, destination: &ServerName, _path: &str) -> Result<Value, FederationError> {
        Err(FederationError(format!("no transport to {destination}")))
    }

    pub async fn federation_send(
        &self,
        _method: http::Method,
        destination: &ServerName,
        _path: &str,
        _body: &Value,
    ) -> Result<Value, FederationError> {
        Err(FederationError(format!("no transport to {destination}")))
    }

    pub async fn server_public_keys(
        &self,
        server: &ServerName,
        _key_ids: &[String],
        _valid_at_ms: Option<u64>,
    ) -> MatrixResult<BTreeMap<String, String>> {
        Err(MatrixError::not_found(format!("no keys for {server}")))
    }
}
