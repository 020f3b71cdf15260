-- The content repository's records (uploads of this server's users; remote media cached later).
-- The bytes live in the blob store (`blob.rs`), content-addressed by `sha256`: two uploads of
-- the same file share one blob. A row without `sha256` is an asynchronous upload (MSC2246) whose
-- bytes have not come yet; it may be filled until `unused_expires_ms`.
CREATE TABLE media (
    origin TEXT NOT NULL,              -- the server name of the mxc:// URI
    media_id TEXT NOT NULL,
    uploader TEXT,                     -- a local user, for uploads
    content_type TEXT,
    upload_name TEXT,
    length INTEGER,                    -- bytes; NULL while pending
    sha256 TEXT,                       -- hex; NULL while pending
    created_ms INTEGER NOT NULL,
    last_access_ms INTEGER NOT NULL,
    unused_expires_ms INTEGER,         -- pending uploads: when the reserved id lapses
    PRIMARY KEY (origin, media_id)
);
-- Pending uploads per user (the limit on how many one may hold).
CREATE INDEX media_pending_by_uploader ON media (uploader, unused_expires_ms) WHERE sha256 IS NULL;
-- Blobs still referenced (a blob is deleted only when no row names it).
CREATE INDEX media_by_sha256 ON media (sha256) WHERE sha256 IS NOT NULL;

-- Thumbnails made of a media, one per standard size and method asked for (sizes are snapped to
-- a few, so a media has at most five). A source smaller than the size is its own thumbnail: the
-- row then names the original's blob.
CREATE TABLE media_thumbnails (
    origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    method TEXT NOT NULL,              -- crop | scale
    content_type TEXT NOT NULL,
    length INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (origin, media_id, width, height, method)
);
