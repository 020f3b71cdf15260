-- What server admins decide (the admin API): media kept from view or kept safe from that,
-- rooms nobody on this server may join, registration tokens made at run time, and the outcome
-- of each room deletion (asked for by id, as Synapse's v2 room delete).
CREATE TABLE quarantined_media (
    origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    quarantined_by TEXT NOT NULL,
    quarantined_ms INTEGER NOT NULL,
    PRIMARY KEY (origin, media_id)
);
CREATE TABLE protected_media (
    origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    PRIMARY KEY (origin, media_id)
);
CREATE TABLE blocked_rooms (
    room_id TEXT PRIMARY KEY,
    blocked_by TEXT NOT NULL,
    blocked_ms INTEGER NOT NULL
);
CREATE TABLE registration_tokens (
    token TEXT PRIMARY KEY,
    uses_allowed INTEGER,              -- NULL: unlimited
    pending INTEGER NOT NULL DEFAULT 0, -- registrations that passed the token stage, not finished
    completed INTEGER NOT NULL DEFAULT 0,
    expiry_time INTEGER                -- milliseconds; NULL: never
);
CREATE TABLE room_deletions (
    delete_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    status TEXT NOT NULL,              -- shutting_down, purging, complete, failed
    error TEXT,
    result TEXT,                       -- the shutdown's JSON (kicked users, ...)
    created_ms INTEGER NOT NULL
);
CREATE INDEX room_deletions_by_room ON room_deletions (room_id);
