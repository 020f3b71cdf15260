-- Full-text search (`POST /search`): one row per searchable field of an accepted event
-- (`content.body` of messages, `content.name`, `content.topic`), written in the event's own
-- transaction and deleted when the event is redacted. `body` holds the field as the search
-- service normalised it (lowercase words; CJK characters one word each, so that a phrase of
-- them finds any CJK word on both backends).
CREATE TABLE event_search (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    search_key TEXT NOT NULL,          -- content.body, content.name or content.topic
    stream_pos INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX event_search_by_event ON event_search (event_id);
CREATE INDEX event_search_by_room ON event_search (room_id, stream_pos);
-- @sqlite
-- An FTS5 index over `body` (external content: the text is kept once, in event_search), kept
-- in step by triggers.
CREATE VIRTUAL TABLE event_search_fts USING fts5(
    body, content = 'event_search', content_rowid = 'id', tokenize = 'unicode61 remove_diacritics 0'
);
CREATE TRIGGER event_search_indexed AFTER INSERT ON event_search BEGIN
    INSERT INTO event_search_fts (rowid, body) VALUES (new.id, new.body);
END;
CREATE TRIGGER event_search_unindexed AFTER DELETE ON event_search BEGIN
    INSERT INTO event_search_fts (event_search_fts, rowid, body) VALUES ('delete', old.id, old.body);
END;
-- @postgres
-- A tsvector of `body` with the `simple` configuration (no stemming, no stop words: the same
-- words SQLite's tokenizer sees), indexed with GIN.
ALTER TABLE event_search ADD COLUMN vector tsvector GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED;
CREATE INDEX event_search_vector ON event_search USING GIN (vector);
-- @end
