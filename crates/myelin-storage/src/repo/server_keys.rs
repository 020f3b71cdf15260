use async_trait::async_trait;
use myelin_core::types::{OwnedServerName, ServerName};

use crate::StorageResult;

/// One signing key of another server, with the key document it came in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerKeyRecord {
    pub key_id: String,
    /// Unpadded base64.
    pub public_key: String,
    /// Signatures made until then (milliseconds) are accepted.
    pub valid_until_ts: u64,
    /// Set for a key from `old_verify_keys`.
    pub expired_ts: Option<u64>,
    /// The signed key document, exactly as received.
    pub key_json: String,
    /// When this server received it (milliseconds).
    pub fetched_ms: u64,
}

/// Other servers' signing keys (federation).
#[async_trait]
pub trait ServerKeyRepo {
    /// Stores these keys of `server`, replacing stored rows of the same key ids.
    async fn put_server_keys(&self, server: &ServerName, keys: Vec<ServerKeyRecord>) -> StorageResult<()>;
    /// Every stored key of `server`, by key id.
    async fn server_keys(&self, server: &ServerName) -> StorageResult<Vec<ServerKeyRecord>>;
    /// Every server whose keys are kept here: those this server has talked with.
    async fn key_servers(&self) -> StorageResult<Vec<OwnedServerName>>;
}
