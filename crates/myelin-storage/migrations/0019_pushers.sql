-- Pushers (`/pushers/set`): where a user's notifications go. Delivery is a `push` job per user
-- (dedupe key `push:<user_id>`), queued by the event write that records a notifying push action
-- for a user with a pusher (`event_push_actions`), so no notification depends on a process
-- staying up. Each pusher remembers the position up to which its user's push actions were
-- delivered.
CREATE TABLE pushers (
    user_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    pushkey TEXT NOT NULL,
    kind TEXT NOT NULL,                -- http (email when SMTP is configured)
    app_display_name TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag TEXT,
    lang TEXT NOT NULL,
    data TEXT NOT NULL,                -- JSON: url, format, and what the app wants passed on
    device_id TEXT,                    -- the device whose access token set it
    created_ms INTEGER NOT NULL,       -- pushkey_ts
    pushed_pos INTEGER NOT NULL,       -- push actions up to here are delivered (or were before the pusher)
    PRIMARY KEY (app_id, pushkey, user_id)
);
CREATE INDEX pushers_by_user ON pushers (user_id);
