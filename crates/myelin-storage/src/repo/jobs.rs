use async_trait::async_trait;

use crate::StorageResult;

/// Background jobs that one process of a deployment runs per interval, and the clean-ups they do.
#[async_trait]
pub trait JobRepo {
    /// Claims `job` if it last ran before `now_ms - interval_ms`. Of several processes asking at
    /// once, exactly one gets `true`.
    async fn claim_job(&self, job: &str, now_ms: u64, interval_ms: u64) -> StorageResult<bool>;
    /// Deletes login tokens that expired before `now_ms`; returns how many.
    async fn delete_expired_login_tokens(&self, now_ms: u64) -> StorageResult<u64>;
    /// Forgets transaction ids recorded before `before_ms` (retries older than that are new sends).
    async fn delete_txn_ids_before(&self, before_ms: u64) -> StorageResult<u64>;
}
