-- Rooms this server joined with partial state: the resident server left member events out of its
-- send_join answer (`omit_members`), and the full state is being fetched in the background. The
-- join event, and the servers in the room the resident named (events go to them meanwhile, as
-- the members known do not name them all).
CREATE TABLE partial_state_rooms (
    room_id TEXT PRIMARY KEY,
    join_event_id TEXT NOT NULL,
    servers TEXT NOT NULL           -- JSON array of server names
);
