-- Content reports (`/rooms/{roomId}/report/{eventId}`, `/rooms/{roomId}/report`,
-- `/users/{userId}/report`): kept for the server's admins (the admin API lists them).
CREATE TABLE reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    reporter TEXT NOT NULL,
    room_id TEXT,                      -- a reported room or event's room
    event_id TEXT,                     -- a reported event
    user_id TEXT,                      -- a reported user
    reason TEXT,
    score INTEGER,                     -- the old event report's score (-100 to 0), when given
    created_ms INTEGER NOT NULL
);
CREATE INDEX reports_by_time ON reports (created_ms);
