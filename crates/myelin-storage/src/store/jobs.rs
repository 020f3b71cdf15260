//! The durable job queue.

use async_trait::async_trait;

use crate::{ClaimedJob, Database, JobKinds, JobQueueStats, JobRecord, JobRepo, NewJob, StorageResult};

#[async_trait]
impl JobRepo for Database {
    async fn schedule_job(&self, job: NewJob, now_ms: u64) -> StorageResult<bool> {
        self.transaction(move |c| {
            Box::pin(async move {
                let queued = c
                    .execute(
                        "INSERT INTO jobs (kind, dedupe_key, payload, run_at_ms, created_ms) VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (dedupe_key) DO NOTHING",
                        &[&job.kind, &job.dedupe_key, &job.payload, &job.run_at_ms, &now_ms],
                    )
                    .await?;
                Ok(queued == 1)
            })
        })
        .await
    }

    async fn claim_jobs(
        &self,
        worker: &str,
        now_ms: u64,
        lease_until_ms: u64,
        limit: usize,
        kinds: &JobKinds,
    ) -> StorageResult<Vec<ClaimedJob>> {
        let worker = worker.to_owned();
        let (kind_filter, kind_list) = kind_filter(kinds, 4);
        self.transaction(move |c| {
            Box::pin(async move {
                // Jobs another worker is claiming right now are skipped, not waited for.
                let sql = format!(
                    "UPDATE jobs SET claimed_by = $1, claimed_until_ms = $2, attempts = attempts + 1
                     WHERE id IN (SELECT id FROM jobs
                                  WHERE failed = 0 AND run_at_ms <= $3
                                    AND (claimed_until_ms IS NULL OR claimed_until_ms < $3){kind_filter}
                                  ORDER BY run_at_ms, id LIMIT {limit} FOR UPDATE SKIP LOCKED)
                     RETURNING id, kind, payload, attempts, run_at_ms"
                );
                let mut claimed = c
                    .query(&sql, &[&worker, &lease_until_ms, &now_ms, &kind_list], |r| {
                        let job = ClaimedJob {
                            id: r.get(0)?,
                            kind: r.get(1)?,
                            payload: r.get(2)?,
                            attempts: u32::try_from(r.get::<i64>(3)?).unwrap_or(u32::MAX),
                        };
                        Ok((r.get::<i64>(4)?, job))
                    })
                    .await?;
                // In the order they were due (delayed events are sent in that order).
                claimed.sort_by_key(|(run_at, job)| (*run_at, job.id));
                Ok(claimed.into_iter().map(|(_, job)| job).collect())
            })
        })
        .await
    }

    async fn advance_job(&self, dedupe_key: &str, run_at_ms: u64) -> StorageResult<bool> {
        let key = dedupe_key.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                let changed = c
                    .execute(
                        "UPDATE jobs SET run_at_ms = $2 WHERE dedupe_key = $1 AND failed = 0
                             AND claimed_by IS NULL AND run_at_ms > $2",
                        &[&key, &run_at_ms],
                    )
                    .await?;
                Ok(changed == 1)
            })
        })
        .await
    }

    async fn extend_leases(&self, worker: &str, lease_until_ms: u64) -> StorageResult<u64> {
        let worker = worker.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute("UPDATE jobs SET claimed_until_ms = $2 WHERE claimed_by = $1", &[&worker, &lease_until_ms])
                    .await
            })
        })
        .await
    }

    async fn release_all_leases(&self) -> StorageResult<u64> {
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute(
                    "UPDATE jobs SET claimed_by = NULL, claimed_until_ms = NULL WHERE claimed_by IS NOT NULL",
                    &[],
                )
                .await
            })
        })
        .await
    }

    async fn complete_job(&self, id: i64, worker: &str) -> StorageResult<bool> {
        let worker = worker.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                Ok(c.execute("DELETE FROM jobs WHERE id = $1 AND claimed_by = $2", &[&id, &worker]).await? == 1)
            })
        })
        .await
    }

    async fn reschedule_job(&self, id: i64, worker: &str, run_at_ms: u64) -> StorageResult<bool> {
        let worker = worker.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                let changed = c
                    .execute(
                        "UPDATE jobs SET run_at_ms = $3, claimed_by = NULL, claimed_until_ms = NULL, attempts = 0,
                             last_error = NULL
                         WHERE id = $1 AND claimed_by = $2",
                        &[&id, &worker, &run_at_ms],
                    )
                    .await?;
                Ok(changed == 1)
            })
        })
        .await
    }

    async fn fail_job(&self, id: i64, worker: &str, error: &str, retry_at_ms: Option<u64>) -> StorageResult<bool> {
        let (worker, error) = (worker.to_owned(), error.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                let changed = c
                    .execute(
                        "UPDATE jobs SET claimed_by = NULL, claimed_until_ms = NULL, last_error = $3,
                             run_at_ms = COALESCE(CAST($4 AS BIGINT), run_at_ms),
                             failed = CASE WHEN CAST($4 AS BIGINT) IS NULL THEN 1 ELSE 0 END
                         WHERE id = $1 AND claimed_by = $2",
                        &[&id, &worker, &error, &retry_at_ms],
                    )
                    .await?;
                Ok(changed == 1)
            })
        })
        .await
    }

    async fn next_job_due(&self, kinds: &JobKinds) -> StorageResult<Option<u64>> {
        let (kind_filter, kind_list) = kind_filter(kinds, 1);
        self.read(move |c| {
            Box::pin(async move {
                // A leased job can be claimed again only once its lease has run out.
                c.query_one(
                    &format!(
                        "SELECT MIN(CASE WHEN claimed_until_ms >= run_at_ms THEN claimed_until_ms + 1 ELSE run_at_ms END)
                         FROM jobs WHERE failed = 0{kind_filter}"
                    ),
                    &[&kind_list],
                    |r| r.get::<Option<u64>>(0),
                )
                .await
            })
        })
        .await
    }

    async fn jobs(&self) -> StorageResult<Vec<JobRecord>> {
        self.jobs_keyed("").await
    }

    async fn jobs_keyed(&self, prefix: &str) -> StorageResult<Vec<JobRecord>> {
        let pattern = if prefix.is_empty() { String::new() } else { format!("{}%", super::escape_like(prefix)) };
        self.read(move |c| {
            Box::pin(async move {
                c.query(
                    "SELECT id, kind, dedupe_key, payload, run_at_ms, attempts, claimed_by, last_error, failed
                     FROM jobs WHERE $1 = '' OR dedupe_key LIKE $1 ESCAPE '\\' ORDER BY id",
                    &[&pattern],
                    |r| {
                        Ok(JobRecord {
                            id: r.get(0)?,
                            kind: r.get(1)?,
                            dedupe_key: r.get(2)?,
                            payload: r.get(3)?,
                            run_at_ms: r.get(4)?,
                            attempts: u32::try_from(r.get::<i64>(5)?).unwrap_or(u32::MAX),
                            claimed_by: r.get(6)?,
                            last_error: r.get(7)?,
                            failed: r.get(8)?,
                        })
                    },
                )
                .await
            })
        })
        .await
    }

    async fn job_queue_stats(&self, now_ms: u64) -> StorageResult<Vec<JobQueueStats>> {
        self.read(move |c| {
            Box::pin(async move {
                c.query(
                    "SELECT kind,
                            SUM(CASE WHEN failed = 0 THEN 1 ELSE 0 END),
                            SUM(CASE WHEN failed = 0 AND run_at_ms <= $1 THEN 1 ELSE 0 END),
                            SUM(CASE WHEN failed = 1 THEN 1 ELSE 0 END),
                            MIN(CASE WHEN failed = 0 AND run_at_ms <= $1 THEN run_at_ms END)
                     FROM jobs GROUP BY kind ORDER BY kind",
                    &[&now_ms],
                    |r| {
                        Ok(JobQueueStats {
                            kind: r.get(0)?,
                            queued: r.get(1)?,
                            due: r.get(2)?,
                            failed: r.get(3)?,
                            oldest_due_ms: r.get(4)?,
                        })
                    },
                )
                .await
            })
        })
        .await
    }
}

/// The SQL condition for a claim's kinds (parameter `$n`, bound to the returned list).
fn kind_filter(kinds: &JobKinds, n: usize) -> (String, Vec<String>) {
    match kinds {
        // Every kind: a condition that holds, so the parameter is still used.
        JobKinds::All => (format!(" AND NOT (kind = ANY(${n}))"), Vec::new()),
        JobKinds::Only(list) => (format!(" AND kind = ANY(${n})"), list.clone()),
        JobKinds::AllBut(list) => (format!(" AND NOT (kind = ANY(${n}))"), list.clone()),
    }
}
