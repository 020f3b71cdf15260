-- The federation side of end-to-end encryption.

-- Remote users whose device lists this server keeps (it shares a room with them and receives
-- their `m.device_list_update` EDUs). `stream_id` is the origin's id of the last update applied
-- (an update whose `prev_id` is not it reveals a gap); `stale` is set before a resync through
-- `/user/devices` and cleared by it: a stale list is never answered from.
CREATE TABLE remote_device_lists (
    user_id TEXT PRIMARY KEY,
    stream_id INTEGER NOT NULL,
    stale INTEGER NOT NULL DEFAULT 0
);

-- Their devices: the signed `device_keys` object (NULL for a device without keys) and name.
CREATE TABLE remote_devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    keys_json TEXT,
    display_name TEXT,
    PRIMARY KEY (user_id, device_id)
);

-- Their cross-signing keys (`master`, `self_signing`), as the origin sent them.
CREATE TABLE remote_cross_signing_keys (
    user_id TEXT NOT NULL,
    key_type TEXT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- Local users' device-list stream ids as other servers see them: each outgoing
-- `m.device_list_update` takes the next one (its `prev_id` is the one before), and
-- `/user/devices` answers the current one.
CREATE TABLE local_device_list_streams (
    user_id TEXT PRIMARY KEY,
    stream_id INTEGER NOT NULL
);

-- OpenID tokens (`/user/{userId}/openid/request_token`), which other services check through
-- the federation's `/openid/userinfo`; valid until `expires_ms`.
CREATE TABLE openid_tokens (
    token TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE INDEX openid_tokens_expiry ON openid_tokens (expires_ms);
