-- Thumbnails of other servers' media are fetched from their server without the original, so a
-- thumbnail may have no media row; when it was made lets retention find those that outlived
-- `media.remote_media_lifetime_ms`.
ALTER TABLE media_thumbnails ADD COLUMN created_ms INTEGER NOT NULL DEFAULT 0;
CREATE INDEX media_thumbnails_by_created ON media_thumbnails (created_ms);
