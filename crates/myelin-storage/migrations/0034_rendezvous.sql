-- Next-gen auth, continued. QR login's rendezvous sessions (MSC4108, MSC4388): a small mailbox two devices write in turn
-- while they set up their secure channel. In the database, so every process serves them.
CREATE TABLE rendezvous_sessions (
    session_id TEXT PRIMARY KEY,
    data TEXT NOT NULL,               -- base64 of the bytes last written
    content_type TEXT NOT NULL,
    etag TEXT NOT NULL,               -- changes with every write (MSC4388's sequence_token)
    modified_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE INDEX rendezvous_sessions_expiry ON rendezvous_sessions (expires_ms);

-- A cross-signing reset approved on the account page (MSC4312): until this time, the user's
-- devices may replace the cross-signing keys without further authentication.
ALTER TABLE users ADD COLUMN cross_signing_reset_until_ms INTEGER;

-- A second factor for the web pages: a TOTP secret (RFC 6238), confirmed once the person typed
-- a code from their app, and single-use recovery codes (SHA-256 of the code).
CREATE TABLE totp_secrets (
    user_id TEXT PRIMARY KEY,
    secret TEXT NOT NULL,             -- base32, as authenticator apps take it
    confirmed INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    last_step INTEGER NOT NULL DEFAULT 0   -- the last time step a code was accepted for (no replays)
);
CREATE TABLE recovery_codes (
    user_id TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    used_ms INTEGER,
    PRIMARY KEY (user_id, code_hash)
);
-- A browser session that passed the password but not yet the second factor.
ALTER TABLE web_sessions ADD COLUMN pending_second_factor INTEGER NOT NULL DEFAULT 0;
