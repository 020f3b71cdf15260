//! Background jobs. Every process runs the scheduler; each run of a job is claimed in the
//! database first (`JobRepo::claim_job`), so a deployment of several processes runs it once per
//! interval, not once per process.

use std::{sync::Arc, time::Duration};

use myelin_core::time::now_ms;

use crate::Services;

/// How often each process checks whether a job is due.
const TICK: Duration = Duration::from_secs(60);
/// The clean-up job runs once an hour per deployment.
const CLEANUP_INTERVAL_MS: u64 = 60 * 60 * 1000;
/// Transaction ids are remembered for a day (like Synapse): a retry after that is a new send.
const TXN_ID_LIFETIME_MS: u64 = 24 * 60 * 60 * 1000;

/// Spawns the scheduler; it stops when the services are dropped.
pub fn spawn(services: &Arc<Services>) {
    let services = Arc::downgrade(services);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        loop {
            tick.tick().await;
            let Some(services) = services.upgrade() else { return };
            if let Err(err) = services.run_due_jobs().await {
                tracing::warn!(%err, "background job failed; it will be retried");
            }
        }
    });
}

impl Services {
    /// Runs every job whose interval has passed and that no other process has claimed.
    pub async fn run_due_jobs(&self) -> Result<(), myelin_storage::StorageError> {
        let now = now_ms();
        if self.store.claim_job("cleanup", now, CLEANUP_INTERVAL_MS).await? {
            let tokens = self.store.delete_expired_login_tokens(now).await?;
            let txns = self.store.delete_txn_ids_before(now.saturating_sub(TXN_ID_LIFETIME_MS)).await?;
            let connections = self
                .store
                .delete_idle_sliding_sync_connections((now as i64).saturating_sub(self.sliding_idle_expiry_ms()))
                .await?;
            tracing::info!(
                tokens,
                txns,
                connections,
                "clean-up: expired login tokens, old transaction ids and idle sliding sync connections removed"
            );
        }
        Ok(())
    }
}
