use async_trait::async_trait;

use crate::StorageResult;

/// A sliding sync connection as stored: its identity, the newest position and the one before
/// (each with the connection state after it), and when it was last used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredConnection {
    pub generation: String,
    pub seq: i64,
    pub state: String,
    pub prev_seq: i64,
    pub prev_state: String,
    pub last_used_ms: i64,
}

/// Per-connection state of simplified sliding sync (MSC4186), keyed by (user, device, conn_id).
#[async_trait]
pub trait SlidingSyncRepo {
    async fn sliding_sync_connection(
        &self,
        user_id: &str,
        device_id: &str,
        conn_id: &str,
    ) -> StorageResult<Option<StoredConnection>>;
    /// Stores `new` for the connection. With `expected = Some((generation, seq))` only if the
    /// stored row still has that generation and newest position (false otherwise: another
    /// request moved the connection on); with `None` the row is created or replaced.
    async fn save_sliding_sync_connection(
        &self,
        user_id: &str,
        device_id: &str,
        conn_id: &str,
        expected: Option<(String, i64)>,
        new: StoredConnection,
    ) -> StorageResult<bool>;
    async fn delete_sliding_sync_connection(&self, user_id: &str, device_id: &str, conn_id: &str) -> StorageResult<()>;
    /// Deletes connections not used since `before_ms`; returns how many.
    async fn delete_idle_sliding_sync_connections(&self, before_ms: i64) -> StorageResult<u64>;
}
