-- Users deactivated with `erase: true`: their messages are shown redacted to users who were not
-- in the room when they were sent (those who join later), as Synapse does.
CREATE TABLE erased_users (
    user_id TEXT PRIMARY KEY,
    erased_ms INTEGER NOT NULL
);
