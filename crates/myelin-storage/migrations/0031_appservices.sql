-- Application services: what waits to be sent to each, in order: events by id (written with the
-- event itself), ephemeral events and to-device messages as JSON. A transaction takes the oldest
-- entries and deletes them once the service accepted it.
CREATE TABLE appservice_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    appservice_id TEXT NOT NULL,
    event_id TEXT,                     -- an event to send
    ephemeral TEXT,                    -- or an ephemeral event's JSON (typing, receipt, presence)
    to_device TEXT,                    -- or a to-device message's JSON
    created_ms INTEGER NOT NULL
);
CREATE INDEX appservice_outbox_by_service ON appservice_outbox (appservice_id, id);
-- The transaction in flight to each service: its id, its body as first sent and the outbox
-- entries it carries (a JSON list), so a retry sends the very same transaction, byte for byte,
-- whatever was queued meanwhile.
CREATE TABLE appservice_txns (
    appservice_id TEXT PRIMARY KEY,
    txn_id TEXT NOT NULL,
    body TEXT NOT NULL,
    entry_ids TEXT NOT NULL
);
