use async_trait::async_trait;

use crate::StorageResult;

/// A rendezvous session of QR login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RendezvousRecord {
    pub session_id: String,
    /// Base64 of the bytes last written.
    pub data: String,
    pub content_type: String,
    pub etag: String,
    pub modified_ms: u64,
    pub expires_ms: u64,
}

/// What a conditional write did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RendezvousWrite {
    Written,
    /// The session's etag was not the one the writer had read.
    Conflict,
    Missing,
}

/// QR login's rendezvous sessions.
#[async_trait]
pub trait RendezvousRepo {
    /// Stores a new session unless `max_live` sessions are live at `now_ms`; false then.
    async fn create_rendezvous(&self, session: &RendezvousRecord, now_ms: u64, max_live: u64) -> StorageResult<bool>;
    /// A session that has not expired at `now_ms`.
    async fn rendezvous(&self, session_id: &str, now_ms: u64) -> StorageResult<Option<RendezvousRecord>>;
    /// Replaces the data if the session is live and its etag is `expected_etag`.
    async fn write_rendezvous(
        &self,
        session_id: &str,
        expected_etag: &str,
        new: &RendezvousRecord,
        now_ms: u64,
    ) -> StorageResult<RendezvousWrite>;
    async fn delete_rendezvous(&self, session_id: &str) -> StorageResult<bool>;
    async fn delete_expired_rendezvous(&self, now_ms: u64) -> StorageResult<u64>;
}
