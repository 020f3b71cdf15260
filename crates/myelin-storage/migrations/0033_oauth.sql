-- The OAuth 2.0 authorization server (next-gen auth, MSC3861): the clients that registered
-- themselves, the authorization requests a person answers on the web pages (code and device
-- grants), the browser sessions of those pages, and what a session of a client is.
--
-- A client's session *is* one device (MSC2967: one device scope per login), so the device row
-- names the client that opened it and the scope it was granted; its access and refresh tokens are
-- the ordinary ones. Ending the session deletes the device, as a logout does.

CREATE TABLE oauth_clients (
    client_id TEXT PRIMARY KEY,
    metadata TEXT NOT NULL,          -- the registration as validated (RFC 7591 / MSC2966 JSON)
    created_ms INTEGER NOT NULL
);

-- Authorization code grants, from the authorization request to the code's exchange.
CREATE TABLE oauth_code_grants (
    grant_id TEXT PRIMARY KEY,       -- names the request in the pages' URLs
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    scope TEXT NOT NULL,
    state TEXT,
    nonce TEXT,
    response_mode TEXT NOT NULL,     -- query or fragment
    code_challenge TEXT NOT NULL,    -- S256 only
    created_ms INTEGER NOT NULL,
    code TEXT UNIQUE,                -- set when the person consents
    user_id TEXT,
    device_id TEXT,
    consented_ms INTEGER,
    exchanged_ms INTEGER             -- set by the first exchange; a second one ends the session
);

-- Device authorization grants (RFC 8628): a device without a browser polls while a person
-- approves the user code on another one.
CREATE TABLE oauth_device_grants (
    device_code TEXT PRIMARY KEY,
    user_code TEXT NOT NULL UNIQUE,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    last_poll_ms INTEGER,
    user_id TEXT,                    -- who approved
    denied INTEGER NOT NULL DEFAULT 0,
    exchanged_ms INTEGER
);

-- The login cookie of the web pages.
CREATE TABLE web_sessions (
    session_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions (user_id);

-- The session (device) of an OAuth client.
ALTER TABLE devices ADD COLUMN oauth_client_id TEXT;
ALTER TABLE devices ADD COLUMN oauth_scope TEXT;

-- Refresh token rotation: a used refresh token names the one that replaced it. Used again while
-- that one is unused, it was an honest retry and gets the same answer; used again after its
-- successor was used, it was stolen, and the session ends.
ALTER TABLE refresh_tokens ADD COLUMN successor TEXT;

-- A locked account (admin CLI) can neither log in nor use its tokens, and is not deleted.
ALTER TABLE users ADD COLUMN locked INTEGER NOT NULL DEFAULT 0;
