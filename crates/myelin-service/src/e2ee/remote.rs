//! The remote side of end-to-end encryption: what key queries, claims and device-list updates
//! need from other servers. Federation implements [`RemoteKeys`]; until it exists,
//! [`Unfederated`] answers every remote request with a per-server failure, which clients show as
//! "keys of this server unavailable" instead of an error for the whole request.

use std::collections::BTreeMap;

use async_trait::async_trait;
use myelin_core::types::{OwnedUserId, UserId};
use serde_json::{Map, Value};

/// Why a remote server could not answer; becomes that server's entry in `failures`.
#[derive(Debug, Clone)]
pub struct RemoteFailure {
    pub errcode: &'static str,
    pub error: String,
}

#[async_trait]
pub trait RemoteKeys: Send + Sync {
    /// `POST /_matrix/federation/v1/user/keys/query` to `server` for `{user: [device, …]}`.
    /// Answers the same shape as the client API (`device_keys`, `master_keys`, `self_signing_keys`).
    async fn query(&self, server: &str, device_keys: &Map<String, Value>) -> Result<Value, RemoteFailure>;
    /// `POST /_matrix/federation/v1/user/keys/claim` to `server` for `{user: {device: algorithm}}`.
    /// Answers `{user: {device: {key_id: key}}}`.
    async fn claim(&self, server: &str, one_time_keys: &Map<String, Value>) -> Result<Value, RemoteFailure>;
    /// A local user's devices or cross-signing keys changed: send `m.device_list_update` /
    /// `m.signing_key_update` to every server sharing a room with them.
    async fn device_list_changed(&self, user_id: &UserId);
}

/// No federation: remote users' keys are unreachable, local changes stay local.
pub struct Unfederated;

#[async_trait]
impl RemoteKeys for Unfederated {
    async fn query(&self, _server: &str, _device_keys: &Map<String, Value>) -> Result<Value, RemoteFailure> {
        Err(Self::failure())
    }
    async fn claim(&self, _server: &str, _one_time_keys: &Map<String, Value>) -> Result<Value, RemoteFailure> {
        Err(Self::failure())
    }
    async fn device_list_changed(&self, _user_id: &UserId) {}
}

impl Unfederated {
    fn failure() -> RemoteFailure {
        RemoteFailure { errcode: "M_UNKNOWN", error: "Federation is not available".to_owned() }
    }
}

/// Groups remote users' entries by server name (`@u:server` → `server`).
pub fn by_server<'a>(
    entries: impl Iterator<Item = (&'a OwnedUserId, &'a Value)>,
) -> BTreeMap<String, Map<String, Value>> {
    let mut servers: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for (user, wanted) in entries {
        servers.entry(user.server_name().to_string()).or_default().insert(user.to_string(), wanted.clone());
    }
    servers
}
