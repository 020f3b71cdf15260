//! The remote side of end-to-end encryption as the client API sees it: a server that cannot
//! answer becomes its entry in `failures`, which clients show as "keys of this server
//! unavailable" instead of an error for the whole request. The federation requests themselves
//! are in `federation/e2ee.rs`.

use std::collections::BTreeMap;

use myelin_core::types::OwnedUserId;
use serde_json::{Map, Value};

use crate::federation::FederationError;

/// Why a remote server could not answer; becomes that server's entry in `failures`.
#[derive(Debug, Clone)]
pub struct RemoteFailure {
    pub errcode: &'static str,
    pub error: String,
}

impl From<FederationError> for RemoteFailure {
    fn from(err: FederationError) -> Self {
        let errcode = match &err {
            FederationError::Status { status: 404, .. } => "M_NOT_FOUND",
            _ => "M_UNKNOWN",
        };
        Self { errcode, error: err.to_string() }
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
