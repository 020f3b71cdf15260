-- Email addresses (3PIDs): the ones bound to accounts, and the validation sessions of
-- `requestToken` (an email with a link carrying the token; following it validates the session,
-- which a client then uses to add the address, or to reset the account's password).
CREATE TABLE user_threepids (
    medium TEXT NOT NULL,              -- email
    address TEXT NOT NULL,             -- lower-case
    user_id TEXT NOT NULL,
    validated_ms INTEGER NOT NULL,
    added_ms INTEGER NOT NULL,
    PRIMARY KEY (medium, address)
);
CREATE INDEX user_threepids_by_user ON user_threepids (user_id);

CREATE TABLE threepid_validations (
    sid TEXT PRIMARY KEY,
    client_secret TEXT NOT NULL,
    medium TEXT NOT NULL,
    address TEXT NOT NULL,
    purpose TEXT NOT NULL,             -- add, register or password
    token TEXT NOT NULL,
    send_attempt INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    validated_ms INTEGER               -- NULL until the link is followed
);
CREATE UNIQUE INDEX threepid_validations_by_secret ON threepid_validations (client_secret, medium, address, purpose);
