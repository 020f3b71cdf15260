-- Media retention and upload limits: media not downloaded since a time (`last_access_ms`,
-- moved by downloads at most hourly), and what a user uploaded since a time.
CREATE INDEX media_by_last_access ON media (last_access_ms) WHERE sha256 IS NOT NULL;
CREATE INDEX media_by_uploader_time ON media (uploader, created_ms) WHERE uploader IS NOT NULL;
CREATE INDEX media_thumbnails_by_sha256 ON media_thumbnails (sha256);
