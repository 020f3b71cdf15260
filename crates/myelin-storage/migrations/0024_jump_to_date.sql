-- Jump to date (`/rooms/{roomId}/timestamp_to_event`): a room's events by their timestamp.
CREATE INDEX events_by_room_ts ON events (room_id, origin_server_ts) WHERE outlier = 0;
