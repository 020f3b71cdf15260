-- Background jobs (cleanup, expiry) run by one process of a deployment per interval: a process
-- claims a job by moving its last_run_ms forward in one conditional UPDATE; only one can win.
CREATE TABLE job_runs (
    job TEXT PRIMARY KEY,
    last_run_ms INTEGER NOT NULL
);

-- When a transaction id was recorded, so old ones can be forgotten.
ALTER TABLE txn_ids ADD COLUMN created_ms INTEGER NOT NULL DEFAULT 0;
