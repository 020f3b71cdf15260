-- What kinds of change stream positions carried, for the processes that share a PostgreSQL
-- database (`db/changes.rs`): each write batch adds, in its own transaction, one row per kind it
-- changed (`kind`: the kind's index in `Change::ASKED`) at the highest position of that kind. A
-- process reads each kind's highest row at or below a safe head with the head, so a sync woken by
-- a message need not ask the database whether account data, to-device messages, receipts...
-- arrived since its token. SQLite has one writer, which keeps the marks in memory.
-- @postgres
CREATE TABLE stream_changes (
    kind INTEGER NOT NULL,
    pos INTEGER NOT NULL,
    PRIMARY KEY (kind, pos)
);
-- Everything up to the head at the upgrade may have changed, of every kind.
INSERT INTO stream_changes (kind, pos)
    SELECT kind, pos FROM stream_head, generate_series(0, 6) AS kinds(kind) WHERE id = 1;
-- @end
