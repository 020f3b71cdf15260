-- Events received over federation that were not accepted stay in the DAG, marked here:
-- 'rejected: …' (failed the auth rules against their auth events or the state before them; never
-- in state, never a forward extremity) or 'soft_failed: …' (passed those but failed against the
-- room's current state: kept and hidden, never a prev event of a new event). NULL: accepted.
ALTER TABLE events ADD COLUMN rejection TEXT;

-- The room's current state group once the event was added, where it differs from the event's
-- own state_after (the room had other forward extremities and their states were resolved
-- together with it). NULL: the same as state_after.
ALTER TABLE events ADD COLUMN room_state_after INTEGER;

-- Events waiting to be sent to other servers: one row per (destination, PDU or EDU), deleted
-- once the destination accepted the transaction that carried it. Rows are written in the same
-- transaction as the event, so an acknowledged event is never forgotten by the sender. Ids are
-- never reused (they name the transactions: a receiver ignores a transaction id it has seen).
CREATE TABLE federation_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    event_id TEXT,                     -- a PDU to send
    edu TEXT,                          -- or an EDU's JSON
    created_ms INTEGER NOT NULL
);
CREATE INDEX federation_outbox_destination ON federation_outbox (destination, id);

-- Transactions received from other servers: a retried (origin, txn id) gets the first answer and
-- its PDUs are not processed again.
CREATE TABLE federation_inbound_txns (
    origin TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    response TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (origin, txn_id)
);
