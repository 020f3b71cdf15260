use async_trait::async_trait;

use crate::StorageResult;

/// A job to queue.
#[derive(Clone, Debug)]
pub struct NewJob {
    /// The handler that runs it.
    pub kind: String,
    /// At most one job with this key exists at a time (a periodic job's name, for instance).
    pub dedupe_key: Option<String>,
    /// JSON for the handler.
    pub payload: String,
    pub run_at_ms: u64,
}

/// A job claimed by a worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedJob {
    pub id: i64,
    pub kind: String,
    pub payload: String,
    /// Runs started so far, this one included.
    pub attempts: u32,
}

/// A job as stored (for inspection and tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRecord {
    pub id: i64,
    pub kind: String,
    pub dedupe_key: Option<String>,
    pub payload: String,
    pub run_at_ms: u64,
    pub attempts: u32,
    pub claimed_by: Option<String>,
    pub last_error: Option<String>,
    pub failed: bool,
}

/// One kind of job in the queue, for the metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobQueueStats {
    pub kind: String,
    /// Jobs not given up, due or not.
    pub queued: u64,
    pub due: u64,
    pub failed: u64,
    pub oldest_due_ms: Option<u64>,
}

/// Which kinds of job a claim takes (a process runs timers in a lane of their own, so that no
/// slow network job holds them up).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobKinds {
    All,
    Only(Vec<String>),
    AllBut(Vec<String>),
}

/// The durable job queue: jobs scheduled for a time, claimed by one worker at a time across
/// processes (a lease; a worker that dies loses its jobs to the next claimer), retried with
/// backoff, kept as failed after the last attempt.
#[async_trait]
pub trait JobRepo {
    /// Queues a job; with a `dedupe_key` already queued, nothing is queued and the answer is false.
    async fn schedule_job(&self, job: NewJob, now_ms: u64) -> StorageResult<bool>;
    /// Claims up to `limit` jobs of `kinds` due at `now_ms` whose lease is free, for `worker`
    /// until `lease_until_ms`, oldest due first. Each claim counts as an attempt.
    async fn claim_jobs(
        &self,
        worker: &str,
        now_ms: u64,
        lease_until_ms: u64,
        limit: usize,
        kinds: &JobKinds,
    ) -> StorageResult<Vec<ClaimedJob>>;
    /// Brings the queued job with this key forward to `run_at_ms` (a retry waiting out its
    /// backoff runs now); false if there is no such job waiting (none, claimed, failed or due
    /// already).
    async fn advance_job(&self, dedupe_key: &str, run_at_ms: u64) -> StorageResult<bool>;
    /// Extends the lease of every job `worker` holds to `lease_until_ms` (a heartbeat while the
    /// worker lives); returns how many.
    async fn extend_leases(&self, worker: &str, lease_until_ms: u64) -> StorageResult<u64>;
    /// Frees every lease: for a database only one process uses (SQLite), whose earlier life's
    /// claims died with it.
    async fn release_all_leases(&self) -> StorageResult<u64>;
    /// The run succeeded: the job is deleted (if `worker` still holds it).
    async fn complete_job(&self, id: i64, worker: &str) -> StorageResult<bool>;
    /// The run succeeded and the job runs again at `run_at_ms` (periodic jobs): the lease is
    /// released and its attempts reset.
    async fn reschedule_job(&self, id: i64, worker: &str, run_at_ms: u64) -> StorageResult<bool>;
    /// The run failed: it is tried again at `retry_at_ms`, or, with `None`, marked failed.
    async fn fail_job(&self, id: i64, worker: &str, error: &str, retry_at_ms: Option<u64>) -> StorageResult<bool>;
    /// The earliest time a claim of `kinds` can take a job: when the first job that is not
    /// failed is due, or, for a job leased to a worker, when its lease runs out.
    async fn next_job_due(&self, kinds: &JobKinds) -> StorageResult<Option<u64>>;
    /// Every job, oldest first.
    async fn jobs(&self) -> StorageResult<Vec<JobRecord>>;
    /// The jobs whose dedupe key starts with `prefix`, oldest first.
    async fn jobs_keyed(&self, prefix: &str) -> StorageResult<Vec<JobRecord>>;
    /// The queue by kind at `now_ms`: how many jobs wait, are due, have failed, and since when
    /// the oldest due one is due.
    async fn job_queue_stats(&self, now_ms: u64) -> StorageResult<Vec<JobQueueStats>>;
}
