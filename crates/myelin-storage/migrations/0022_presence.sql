-- Presence: one row per user whose presence is known (local users once they set it or sync,
-- remote users from `m.presence` EDUs). A change others see (state, status message) takes a
-- stream position, so sync finds it after a token; activity alone (`last_active_ms`,
-- `alive_until_ms`) only moves the times.
CREATE TABLE presence (
    user_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,               -- online, unavailable or offline
    status_msg TEXT,
    last_active_ms INTEGER NOT NULL,   -- the user's last action (sending, setting presence)
    alive_until_ms INTEGER NOT NULL,   -- a sync (or a remote server's word) keeps them present until then
    local INTEGER NOT NULL,            -- 1: this server's user, whose timers this server runs
    stream_pos INTEGER NOT NULL
);
CREATE INDEX presence_by_pos ON presence (stream_pos);
CREATE INDEX presence_present ON presence (state, alive_until_ms);
