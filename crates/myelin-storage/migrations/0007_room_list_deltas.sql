-- A user's room list is kept in memory and brought up to date with what moved since the
-- position it was read at: memberships of the user after a position, and rooms whose newest
-- event is after it (`rooms_for_user_since`).
CREATE INDEX room_members_user_pos ON room_members (user_id, stream_pos);
CREATE INDEX rooms_last_event_pos ON rooms (last_event_pos);
