-- Delayed events (MSC4140): events a client scheduled to be sent later unless it restarts or
-- cancels them (MatrixRTC's dead man's switch). Each is sent by a `delayed_event` job of the job
-- queue (dedupe key `delayed_event:<delay_id>`), due at `send_at_ms`; a restart moves both.
CREATE TABLE delayed_events (
    delay_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,          -- the device that scheduled it (it sends it)
    room_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    state_key TEXT,                   -- NULL for a message event
    content TEXT NOT NULL,            -- JSON
    delay_ms INTEGER NOT NULL,        -- what a restart adds to the time of the restart
    sticky_duration_ms INTEGER,       -- sent as a sticky event (MSC4354) for this long
    txn_id TEXT,                      -- the client's transaction id (a repeated request schedules nothing)
    firing INTEGER NOT NULL DEFAULT 0, -- 1 once it is being sent: no longer restarted or cancelled
    send_at_ms INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX delayed_events_by_user ON delayed_events (user_id, send_at_ms);
CREATE INDEX delayed_events_by_state ON delayed_events (room_id, event_type, state_key);
CREATE UNIQUE INDEX delayed_events_by_txn ON delayed_events (user_id, device_id, txn_id);

-- Sticky events (MSC4354): events that every member's client (a member who joins later too) is
-- sent until they expire, whatever the timeline gaps — MatrixRTC call memberships. A row per
-- accepted sticky event, written with the event; expired rows are cleaned up hourly.
CREATE TABLE sticky_events (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    stream_pos INTEGER NOT NULL,      -- the event's
    expires_ms INTEGER NOT NULL
);
CREATE INDEX sticky_events_by_room ON sticky_events (room_id, expires_ms);
CREATE INDEX sticky_events_by_expiry ON sticky_events (expires_ms);
