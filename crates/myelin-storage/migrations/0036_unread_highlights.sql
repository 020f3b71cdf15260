-- Unread counts (`UNREAD_COUNTS`) count a user's push actions in a room after their read marker
-- for every room a sync has news in. The count is answered from the primary key's index alone;
-- highlights, which the table rows hold, are counted from this small index of highlighting
-- actions only, so no row is read however many messages are unread.
CREATE INDEX event_push_actions_highlights ON event_push_actions (user_id, room_id, stream_pos) WHERE highlight = 1;
