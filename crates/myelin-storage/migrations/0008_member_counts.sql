-- Joined and invited member counts per room, kept by the event writer with each membership
-- change, so a room's summary does not count its member rows (tens of thousands in big rooms).
-- Heroes are the earliest members: an index on (room_id, stream_pos) finds five without a sort.
ALTER TABLE rooms ADD COLUMN joined_members INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rooms ADD COLUMN invited_members INTEGER NOT NULL DEFAULT 0;
UPDATE rooms SET
    joined_members = (SELECT COUNT(*) FROM room_members m WHERE m.room_id = rooms.room_id AND m.membership = 'join'),
    invited_members = (SELECT COUNT(*) FROM room_members m WHERE m.room_id = rooms.room_id AND m.membership = 'invite');
CREATE INDEX room_members_room_pos ON room_members (room_id, stream_pos);
