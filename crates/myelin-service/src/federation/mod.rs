//! Federation transport: finding other servers (`discovery`), refusing private addresses
//! (`ip_policy`), signed requests out (`client`) and in (`xmatrix`, `authenticate_federation_request`),
//! and signing keys, ours and theirs, with the notary (`server_keys`).

pub mod client;
pub mod discovery;
pub mod ip_policy;
pub mod server_keys;
pub mod xmatrix;

use std::{collections::HashMap, sync::Mutex};

use myelin_core::{ErrorCode, MatrixError, config::FederationConfig, types::OwnedServerName};

pub use client::FederationError;
pub use discovery::Destination;
pub use ip_policy::IpPolicy;

/// The federation state of the services: one HTTP client (connections are reused) and the
/// discovery cache.
pub struct Federation {
    http: reqwest::Client,
    policy: std::sync::Arc<IpPolicy>,
    /// Each server's destination and when (clock milliseconds) to look it up again.
    destinations: Mutex<HashMap<OwnedServerName, (Destination, u64)>>,
}

impl Federation {
    pub fn new(config: &FederationConfig) -> Result<Self, String> {
        let policy = std::sync::Arc::new(
            IpPolicy::new(&config.ip_range_allowlist).map_err(|e| format!("federation.ip_range_allowlist: {e}"))?,
        );
        let http = client::build_http_client(policy.clone(), config.verify_certificates)?;
        Ok(Self { http, policy, destinations: Mutex::new(HashMap::new()) })
    }
}

/// A 401 `M_UNAUTHORIZED` for a request whose signature does not hold.
fn unauthorized(message: impl Into<String>) -> MatrixError {
    MatrixError::new(ErrorCode::Unauthorized, message)
}

/// Percent-encodes a path segment or query value (aliases, ids).
pub fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
