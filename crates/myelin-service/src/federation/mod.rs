//! The server-server API's logic: receiving PDUs and EDUs, joins across servers, the outgoing
//! queue, and state resolution. The HTTP side is the `myelin-federation` crate.

mod edus;
mod incoming;
mod joins;
mod queries;
mod sender;
mod state_resolution;
mod transport_stub;

pub(crate) use edus::receipt_edu;
pub use incoming::{MAX_TXN_EDUS, MAX_TXN_PDUS, ParsedPdu, PduOutcome};
pub use sender::destination_retry_at;
pub use transport_stub::FederationError;

use myelin_core::types::{OwnedServerName, UserId};
use myelin_storage::MemberRecord;

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
