-- Simplified sliding sync (MSC4186).
--
-- The room list's sort key: the stream position of the room's newest "bump" event (a message,
-- an encrypted event, a sticker, the create event, a call invite, a poll, a live location).
-- Kept current by every event write, so listing a user's rooms in activity order is one join.
ALTER TABLE rooms ADD COLUMN bump_pos INTEGER NOT NULL DEFAULT 0;
UPDATE rooms SET bump_pos = COALESCE((
    SELECT MAX(e.stream_pos) FROM events e
    WHERE e.room_id = rooms.room_id AND e.event_type IN ('m.room.create', 'm.room.message', 'm.room.encrypted',
        'm.sticker', 'm.call.invite', 'm.poll.start', 'org.matrix.msc3381.poll.start', 'm.beacon_info',
        'org.matrix.msc3672.beacon_info')
), 0);

-- One row per sliding sync connection (user, device, conn_id). `generation` is random per
-- connection and part of every `pos`, so a position of a replaced connection is never taken for
-- one of the new connection. Two states are kept: after the newest position (`seq`) and after the
-- one before it (`prev_seq`), so a client that lost a response can replay its previous `pos`.
-- `state` is the per-connection memory (what was sent per room, with which config) as JSON.
CREATE TABLE sliding_sync_connections (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    conn_id TEXT NOT NULL,
    generation TEXT NOT NULL,
    seq INTEGER NOT NULL,
    state TEXT NOT NULL,
    prev_seq INTEGER NOT NULL,
    prev_state TEXT NOT NULL,
    last_used_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id, conn_id)
);
CREATE INDEX sliding_sync_connections_last_used ON sliding_sync_connections (last_used_ms);
