use serde::{Deserialize, Serialize};

use crate::StreamPos;

/// A message between the Myelin processes that share one database: what one process changed
/// that the others keep in memory (sync waiters, room heads, caches, typing).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k")]
pub enum Signal {
    /// Syncs of these users must wake: something they see committed at or before `pos`.
    Wake { users: Vec<String>, pos: StreamPos },
    /// A room got a new event: its cached head (extremities, current state) is stale.
    RoomHead { room_id: String },
    /// An event was redacted: its cached row is stale.
    Redacted { event_id: String },
    /// A user's room list changed without a stream position (a room was forgotten).
    RoomsOfUser { user_id: String },
    /// A user's account data changed (push rules, ignored users).
    AccountData { user_id: String },
    /// A user started (`timeout_ms` set) or stopped typing; `serial` orders typing updates.
    Typing { room_id: String, user_id: String, timeout_ms: Option<u64>, serial: u64 },
    /// The link to the other processes was lost and re-established: drop every cache and wake
    /// every waiter, since signals may have been missed meanwhile.
    Resync,
}

/// The channel between processes. A single-process backend (SQLite) sends nowhere and never
/// receives; the PostgreSQL backend uses `LISTEN`/`NOTIFY`.
pub trait ClusterBus {
    /// Sends a signal to every other process (never back to this one). Fire and forget: it is
    /// queued and sent in order.
    fn broadcast(&self, signal: Signal);
    /// Signals sent by other processes, in the order they were sent.
    fn signals(&self) -> tokio::sync::broadcast::Receiver<Signal>;
}
