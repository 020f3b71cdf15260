use async_trait::async_trait;

use crate::StorageResult;

/// User-interactive authentication sessions: which stages each has completed.
#[async_trait]
pub trait UiaRepo {
    async fn create_uia_session(&self, session_id: &str, now_ms: u64) -> StorageResult<()>;
    /// The stages a session completed, if it exists and was created at or after `created_after_ms`.
    async fn uia_session(&self, session_id: &str, created_after_ms: u64) -> StorageResult<Option<Vec<String>>>;
    /// Adds a completed stage (once); false if there is no such session.
    async fn complete_uia_stage(&self, session_id: &str, stage: &str) -> StorageResult<bool>;
    async fn delete_uia_session(&self, session_id: &str) -> StorageResult<()>;
    /// Deletes sessions created before `before_ms`; returns how many.
    async fn delete_uia_sessions_before(&self, before_ms: u64) -> StorageResult<u64>;
}
