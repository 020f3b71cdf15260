-- End-to-end encryption: key infrastructure and to-device messages.

-- Identity keys of each device (the signed `device_keys` object as uploaded).
CREATE TABLE device_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- One-time keys, handed out once each, oldest upload first (`seq` is the upload order).
CREATE TABLE one_time_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_id TEXT NOT NULL,            -- algorithm:id
    algorithm TEXT NOT NULL,
    json TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id, key_id)
);
CREATE INDEX one_time_keys_order ON one_time_keys (user_id, device_id, algorithm, seq);

-- Key ids already claimed, so a re-upload of a claimed key is never handed out twice.
CREATE TABLE claimed_one_time_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, key_id)
);

-- One fallback key per (device, algorithm); `used` once handed out while no OTK was left.
CREATE TABLE fallback_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    json TEXT NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- Cross-signing keys: master, self_signing, user_signing (the uploaded key objects, with
-- signatures added by /keys/signatures/upload).
CREATE TABLE cross_signing_keys (
    user_id TEXT NOT NULL,
    key_type TEXT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- "The devices or cross-signing keys of this user changed" at a stream position: drives
-- `device_lists.changed` in sync and /keys/changes.
CREATE TABLE device_list_changes (
    stream_pos INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (stream_pos, user_id)
);
CREATE INDEX device_list_changes_user ON device_list_changes (user_id, stream_pos);

-- To-device messages, kept until the device acknowledges them (its next sync after delivery).
CREATE TABLE to_device_inbox (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    stream_pos INTEGER NOT NULL,
    sender TEXT NOT NULL,
    event_type TEXT NOT NULL,
    content TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, stream_pos)
);

-- Transaction ids of /sendToDevice, for idempotent retries.
CREATE TABLE to_device_txns (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);
