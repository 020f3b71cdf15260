-- Passkeys (WebAuthn): sign in without a password on the web pages. A credential is an ES256
-- public key a user's authenticator made for this server; a challenge is used once.
CREATE TABLE passkeys (
    credential_id TEXT PRIMARY KEY,   -- base64url, as the authenticator names it
    user_id TEXT NOT NULL,
    public_key TEXT NOT NULL,         -- base64url of the uncompressed P-256 point
    sign_count INTEGER NOT NULL,
    name TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    last_used_ms INTEGER
);
CREATE INDEX passkeys_user ON passkeys (user_id);
CREATE TABLE webauthn_challenges (
    challenge TEXT PRIMARY KEY,       -- base64url
    user_id TEXT,                     -- enrolment: whose; sign-in: NULL (any user's passkey)
    purpose TEXT NOT NULL,            -- 'register' or 'login'
    expires_ms INTEGER NOT NULL
);
