use myelin_core::{
    StreamPos,
    types::{OwnedRoomId, OwnedUserId},
};
use serde::{Deserialize, Serialize};

/// A message between the Myelin processes that share one database: what one process changed
/// that the others keep in memory (sync waiters, caches, typing).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k")]
pub enum Signal {
    /// Syncs of these users must wake once the stream head reaches `pos`.
    Wake { users: Vec<OwnedUserId>, pos: StreamPos },
    /// An entry of a cache (named `cache`) is stale: drop `key` from it.
    Invalidate { cache: String, key: String },
    /// A user started (`timeout_ms` set) or stopped typing; `serial` orders typing updates.
    Typing { room_id: OwnedRoomId, user_id: OwnedUserId, timeout_ms: Option<u64>, serial: u64 },
    /// The link to the other processes was lost and re-established: drop every cache and wake
    /// every waiter, since signals may have been missed meanwhile.
    Resync,
}

/// The channel between processes. A single-process backend (SQLite) sends nowhere and never
/// receives; the PostgreSQL backend uses `LISTEN`/`NOTIFY`.
#[async_trait::async_trait]
pub trait ClusterBus {
    /// Sends a signal to every other process (never back to this one). Fire and forget: it is
    /// queued and sent in order.
    fn broadcast(&self, signal: Signal);
    /// Returns once every signal broadcast before it has been sent, or sending them has been
    /// given up (a process about to exit, such as an admin command, calls it last).
    async fn flush_signals(&self);
    /// Signals sent by other processes, in the order they were sent.
    fn signals(&self) -> tokio::sync::broadcast::Receiver<Signal>;
}
