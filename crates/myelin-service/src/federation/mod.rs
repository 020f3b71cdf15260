//! Federation: the server-server API's logic. Transport — finding other servers
//! (`discovery`), refusing private addresses (`ip_policy`), signed requests out (`client`) and
//! in (`xmatrix`, `authenticate_federation_request`), signing keys, ours and theirs, with the
//! notary (`server_keys`). Rooms — receiving PDUs in the specification's order of checks
//! (`incoming`), state resolution (`state_resolution`), joins both ways (`joins`), what other
//! servers may read (`queries`), history from before a join (`backfill`), EDUs (`edus`) and the durable outgoing queue (`sender`).
//! End-to-end encryption across servers (`e2ee`). The HTTP side is the `myelin-federation` crate.

mod acl;
mod backfill;
pub mod client;
pub mod discovery;
pub mod dns;
mod e2ee;
mod edus;
mod incoming;
pub mod ip_policy;
mod joins;
mod memberships;
mod partial_state;
mod queries;
mod sender;
pub mod server_keys;
mod state_resolution;
pub mod xmatrix;

use std::{collections::HashMap, sync::Mutex};

use myelin_core::{
    ErrorCode, MatrixError,
    config::FederationConfig,
    types::{OwnedRoomId, OwnedServerName, RoomId, UserId},
};
use myelin_storage::MemberRecord;

pub use acl::ServerAcl;
pub use client::FederationError;
pub use discovery::Destination;
pub(crate) use edus::receipt_edu;
pub(crate) use incoming::relation_of;
pub use incoming::{MAX_TXN_EDUS, MAX_TXN_PDUS, ParsedPdu, PduOutcome};
pub use ip_policy::IpPolicy;
pub use sender::{destination_backoff_ms, destination_retry_at};
pub(crate) use sender::{sender_key, sender_key_prefix};

/// The federation state of the services: one HTTP client (connections are reused) and the
/// discovery cache.
pub struct Federation {
    http: reqwest::Client,
    /// Hosts whose connections go elsewhere (an SRV target), as the HTTP client resolves them.
    connect_aliases: std::sync::Arc<Mutex<HashMap<String, String>>>,
    /// The DNS server SRV records are asked of (`federation.dns_server`, else resolv.conf's).
    nameserver: Option<std::net::SocketAddr>,
    policy: std::sync::Arc<IpPolicy>,
    /// Each server's destination and when (clock milliseconds) to look it up again.
    destinations: Mutex<HashMap<OwnedServerName, (Destination, u64)>>,
    /// Rooms whose servers had no history to give: until when (clock milliseconds) they are not
    /// asked again.
    backfill_quiet: Mutex<HashMap<OwnedRoomId, u64>>,
}

impl Federation {
    pub fn new(config: &FederationConfig) -> Result<Self, String> {
        let policy = std::sync::Arc::new(
            IpPolicy::new(&config.ip_range_allowlist).map_err(|e| format!("federation.ip_range_allowlist: {e}"))?,
        );
        let connect_aliases = std::sync::Arc::new(Mutex::new(HashMap::new()));
        let http = client::build_http_client(policy.clone(), connect_aliases.clone(), config.verify_certificates)?;
        let nameserver = config
            .dns_server
            .or_else(|| std::fs::read_to_string("/etc/resolv.conf").ok().and_then(|conf| dns::nameserver_of(&conf)));
        Ok(Self {
            http,
            connect_aliases,
            nameserver,
            policy,
            destinations: Mutex::new(HashMap::new()),
            backfill_quiet: Mutex::new(HashMap::new()),
        })
    }

    fn backfill_quiet_until(&self, room_id: &RoomId) -> u64 {
        let quiet = self.backfill_quiet.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        quiet.get(room_id).copied().unwrap_or(0)
    }

    fn set_backfill_quiet_until(&self, room_id: &RoomId, until: u64) {
        let mut quiet = self.backfill_quiet.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if quiet.len() > 10_000 {
            quiet.clear();
        }
        quiet.insert(room_id.to_owned(), until);
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

use crate::Services;

/// Prev events a new event references at most.
pub(crate) const MAX_PREV_EVENTS: usize = 10;

impl Services {
    /// Other servers that must receive a local event: those with members joined to the room, and
    /// the server of a member event's target.
    pub(crate) fn destinations_for(&self, joined: &[MemberRecord], target: Option<&UserId>) -> Vec<OwnedServerName> {
        let mut servers: Vec<OwnedServerName> = joined
            .iter()
            .map(|m| m.user_id.server_name())
            .chain(target.map(UserId::server_name))
            .filter(|s| *s != self.server_name)
            .map(ToOwned::to_owned)
            .collect();
        servers.sort();
        servers.dedup();
        servers
    }
}
