use async_trait::async_trait;
use rusqlite::params;

use super::SqliteStore;
use crate::{JobRepo, StorageResult};

#[async_trait]
impl JobRepo for SqliteStore {
    async fn claim_job(&self, job: &str, now_ms: u64, interval_ms: u64) -> StorageResult<bool> {
        let job = job.to_owned();
        self.writer
            .write(move |conn, _| {
                let (now, due) = (now_ms as i64, now_ms.saturating_sub(interval_ms) as i64);
                conn.execute(
                    "INSERT INTO job_runs (job, last_run_ms) VALUES (?1, 0) ON CONFLICT (job) DO NOTHING",
                    [&job],
                )?;
                Ok(conn.execute(
                    "UPDATE job_runs SET last_run_ms = ?2 WHERE job = ?1 AND last_run_ms <= ?3",
                    params![job, now, due],
                )? == 1)
            })
            .await
    }

    async fn delete_expired_login_tokens(&self, now_ms: u64) -> StorageResult<u64> {
        self.writer
            .write(move |conn, _| {
                Ok(conn.execute("DELETE FROM login_tokens WHERE expires_ms < ?1", [now_ms as i64])? as u64)
            })
            .await
    }

    async fn delete_txn_ids_before(&self, before_ms: u64) -> StorageResult<u64> {
        self.writer
            .write(move |conn, _| {
                Ok(conn.execute("DELETE FROM txn_ids WHERE created_ms < ?1", [before_ms as i64])? as u64)
            })
            .await
    }
}
