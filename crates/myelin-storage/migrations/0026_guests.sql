-- Guest accounts (`/register?kind=guest`): they may use only part of the client API and join
-- only rooms whose `m.room.guest_access` is `can_join`.
ALTER TABLE users ADD COLUMN is_guest INTEGER NOT NULL DEFAULT 0;
