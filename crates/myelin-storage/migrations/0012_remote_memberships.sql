-- A local user's invite to, or knock on, a room this server is not in: the room has a row (its
-- version and creator as the invite or knock told them, no state), the user a membership row and
-- the event an outlier; what the user may see of the room is the stripped state another server
-- sent, kept here with the membership event it came with (a newer membership makes it stale).
CREATE TABLE remote_room_state (
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    stripped_state TEXT NOT NULL,   -- JSON array of stripped state events
    PRIMARY KEY (room_id, user_id)
);
