-- Other servers' signing keys (federation), one row per (server, key id), kept as the key
-- document they came in (`key_json`: the server's own `/_matrix/key/v2/server` answer, exactly
-- as received, so a notary can pass it on with its signature added). A key listed under
-- `old_verify_keys` has `expired_ts` and is valid until then; a current key until the document's
-- `valid_until_ts`.
CREATE TABLE server_keys (
    server_name TEXT NOT NULL,
    key_id TEXT NOT NULL,              -- `ed25519:<version>`
    public_key TEXT NOT NULL,          -- unpadded base64
    valid_until_ts INTEGER NOT NULL,   -- milliseconds: signatures made before then are accepted
    expired_ts INTEGER,                -- set for an old key
    key_json TEXT NOT NULL,            -- the whole signed key document
    fetched_ms INTEGER NOT NULL,       -- when this server received it
    PRIMARY KEY (server_name, key_id)
);
