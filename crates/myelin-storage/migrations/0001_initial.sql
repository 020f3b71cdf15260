-- Myelin schema, version 1. One migration history for every backend: the PostgreSQL backend will
-- run the same statements through a small dialect translation (INTEGER PRIMARY KEY -> BIGSERIAL).
--
-- Stream positions: every row that a sync must notice carries `stream_pos`, drawn from ONE global,
-- strictly increasing sequence (table stream_head). A reader only looks at positions <= the
-- persisted head, which the writer advances after commit, so no reader skips a row that commits later.

CREATE TABLE stream_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pos INTEGER NOT NULL           -- the highest stream position handed out and committed
);
INSERT INTO stream_head (id, pos) VALUES (1, 0);

-- Accounts --------------------------------------------------------------------------------------
CREATE TABLE users (
    user_id TEXT PRIMARY KEY,      -- full MXID, @local:server
    password_hash TEXT,            -- PHC string (argon2id); NULL = cannot log in with a password
    is_admin INTEGER NOT NULL DEFAULT 0,
    deactivated INTEGER NOT NULL DEFAULT 0,
    displayname TEXT,
    avatar_url TEXT,
    created_ms INTEGER NOT NULL
);

CREATE TABLE devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    display_name TEXT,
    last_seen_ms INTEGER,
    last_seen_ip TEXT,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

CREATE TABLE access_tokens (
    token TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    expires_ms INTEGER,            -- NULL = never (no refresh token was asked for)
    refresh_token TEXT             -- the refresh token issued with it, if any
);
CREATE INDEX access_tokens_device ON access_tokens (user_id, device_id);

CREATE TABLE refresh_tokens (
    token TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL
);
CREATE INDEX refresh_tokens_device ON refresh_tokens (user_id, device_id);

-- Short-lived tokens for m.login.token (issued by /login/get_token).
CREATE TABLE login_tokens (
    token TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
);

-- Rooms and events ------------------------------------------------------------------------------
CREATE TABLE rooms (
    room_id TEXT PRIMARY KEY,
    room_version TEXT NOT NULL,
    creator TEXT NOT NULL,
    is_public INTEGER NOT NULL DEFAULT 0,       -- listed in the public room directory
    join_rule TEXT NOT NULL DEFAULT 'invite',   -- from the current m.room.join_rules (user directory)
    current_state_group INTEGER,                -- state after the forward extremity
    last_event_pos INTEGER NOT NULL DEFAULT 0   -- stream position of the newest event (room list sort key)
);

-- Every PDU, local or remote. `json` is the full signed PDU as sent over federation; redaction is
-- applied when serving (the original is kept until a later purge job prunes it).
CREATE TABLE events (
    stream_pos INTEGER PRIMARY KEY,   -- order on the global stream; backfilled events will get negative positions
    event_id TEXT NOT NULL UNIQUE,
    room_id TEXT NOT NULL,
    depth INTEGER NOT NULL,           -- topological ordering
    sender TEXT NOT NULL,
    event_type TEXT NOT NULL,
    state_key TEXT,                   -- NULL for non-state events
    origin_server_ts INTEGER NOT NULL,
    json TEXT NOT NULL,
    state_before INTEGER,             -- state group the event was authorised against
    state_after INTEGER,              -- state group after it (= state_before for non-state events)
    redacted_by TEXT,                 -- event id of the redaction, once applied
    outlier INTEGER NOT NULL DEFAULT 0,
    sender_device TEXT,               -- for unsigned.transaction_id: the device that sent it
    txn_id TEXT,
    rel_type TEXT,                    -- m.relates_to.rel_type
    relates_to TEXT                   -- m.relates_to.event_id
);
CREATE INDEX events_room_pos ON events (room_id, stream_pos);
CREATE INDEX events_room_state ON events (room_id, event_type, state_key) WHERE state_key IS NOT NULL;
CREATE INDEX events_relates ON events (relates_to, rel_type) WHERE relates_to IS NOT NULL;

CREATE TABLE forward_extremities (
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

-- Compact state: a state group is either a full snapshot (prev_group NULL) or a delta against
-- prev_group. Chains are cut with a fresh snapshot every 100 hops.
CREATE TABLE state_groups (
    id INTEGER PRIMARY KEY,
    room_id TEXT NOT NULL,
    prev_group INTEGER,
    hops INTEGER NOT NULL              -- deltas between this group and its snapshot
);
CREATE TABLE state_group_entries (
    group_id INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (group_id, event_type, state_key)
);

-- The current state of each room, materialised for cheap lookups (auth, /state, sync).
CREATE TABLE current_state (
    room_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_type, state_key)
);

-- Current membership per (room, user), denormalised from current_state for the room list.
CREATE TABLE room_members (
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    membership TEXT NOT NULL,           -- join, invite, leave, ban, knock
    event_id TEXT NOT NULL,
    sender TEXT NOT NULL,               -- who set this membership (the inviter, the kicker...)
    stream_pos INTEGER NOT NULL,
    displayname TEXT,
    avatar_url TEXT,
    forgotten INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_members_user ON room_members (user_id, membership);

CREATE TABLE room_aliases (
    alias TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    creator TEXT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);

-- Client transaction ids, for idempotent sends.
CREATE TABLE txn_ids (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

-- Push actions that notify, per (user, event), for unread counts.
CREATE TABLE event_push_actions (
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    stream_pos INTEGER NOT NULL,
    highlight INTEGER NOT NULL,
    thread_id TEXT,
    PRIMARY KEY (user_id, room_id, stream_pos)
);

-- Per-user data -----------------------------------------------------------------------------------
CREATE TABLE account_data (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,              -- '' for global account data
    data_type TEXT NOT NULL,
    content TEXT NOT NULL,
    stream_pos INTEGER NOT NULL,
    PRIMARY KEY (user_id, room_id, data_type)
);
CREATE INDEX account_data_pos ON account_data (user_id, stream_pos);

CREATE TABLE receipts (
    room_id TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,            -- '' for unthreaded
    event_id TEXT NOT NULL,
    event_pos INTEGER NOT NULL,         -- stream position of the receipted event
    ts INTEGER NOT NULL,
    stream_pos INTEGER NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
CREATE INDEX receipts_pos ON receipts (room_id, stream_pos);

CREATE TABLE filters (
    user_id TEXT NOT NULL,
    filter_id INTEGER NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);
