use async_trait::async_trait;

use super::PgStore;
use crate::{JobRepo, StorageResult};

#[async_trait]
impl JobRepo for PgStore {
    async fn claim_job(&self, job: &str, now_ms: u64, interval_ms: u64) -> StorageResult<bool> {
        let (now, due) = (now_ms as i64, now_ms.saturating_sub(interval_ms) as i64);
        let mut c = self.pool.get().await?;
        c.execute("INSERT INTO job_runs (job, last_run_ms) VALUES ($1, 0) ON CONFLICT (job) DO NOTHING", &[&job])
            .await?;
        // The row lock makes concurrent claims queue; the second re-checks the condition after the
        // first commits and finds the job already run.
        Ok(c.execute("UPDATE job_runs SET last_run_ms = $2 WHERE job = $1 AND last_run_ms <= $3", &[&job, &now, &due])
            .await?
            == 1)
    }

    async fn delete_expired_login_tokens(&self, now_ms: u64) -> StorageResult<u64> {
        let mut c = self.pool.get().await?;
        c.execute("DELETE FROM login_tokens WHERE expires_ms < $1", &[&(now_ms as i64)]).await
    }

    async fn delete_txn_ids_before(&self, before_ms: u64) -> StorageResult<u64> {
        let mut c = self.pool.get().await?;
        c.execute("DELETE FROM txn_ids WHERE created_ms < $1", &[&(before_ms as i64)]).await
    }
}
