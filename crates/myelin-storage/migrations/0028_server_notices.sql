-- Server notices: each user's one server notices room (created by the first notice sent to them;
-- replaced by a new one when they have left it).
CREATE TABLE server_notice_rooms (
    user_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL
);
