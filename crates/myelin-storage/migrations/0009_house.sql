-- Stream positions reserved by PostgreSQL writers. Each process's writer reserves a block of
-- positions for a batch (moving stream_head.pos, which now means "highest position handed out")
-- and deletes its rows when the batch commits. Readers stop below the lowest open reservation,
-- so several processes write side by side without a reader passing a position that may still
-- commit. `owner_pid` is the database backend of the writer: a reservation whose backend has
-- ended belongs to a batch that was rolled back, and is deleted. SQLite's single writer does
-- not use this table.
CREATE TABLE stream_reservations (
    low INTEGER PRIMARY KEY,           -- first position of the block
    high INTEGER NOT NULL,             -- last position of the block
    owner_pid INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);

-- The durable job queue: work scheduled for a time (clean-ups, and later federation sends,
-- delayed events, pushes). A process claims due jobs by setting a lease (`claimed_until_ms`);
-- a job whose lease ran out (its process died) is claimed again. A failed run is retried later
-- with backoff; after too many attempts the job is kept, marked failed, for inspection.
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,                -- the handler that runs it
    dedupe_key TEXT UNIQUE,            -- at most one job per key (periodic jobs use their name)
    payload TEXT NOT NULL,             -- JSON for the handler
    run_at_ms INTEGER NOT NULL,        -- when it is due
    attempts INTEGER NOT NULL DEFAULT 0,
    claimed_by TEXT,                   -- the process running it
    claimed_until_ms INTEGER,          -- its lease
    last_error TEXT,
    failed INTEGER NOT NULL DEFAULT 0, -- 1: given up after the last attempt
    created_ms INTEGER NOT NULL
);
CREATE INDEX jobs_due ON jobs (failed, run_at_ms);

-- The per-interval claims of the old scheduler; periodic jobs are queue entries now.
DROP TABLE job_runs;

-- User-interactive authentication sessions: the stages each has completed, kept in the database
-- so that a client may go through the stages on any process of a deployment.
CREATE TABLE uia_sessions (
    session_id TEXT PRIMARY KEY,
    completed TEXT NOT NULL,           -- JSON array of stage types, in completion order
    created_ms INTEGER NOT NULL
);
