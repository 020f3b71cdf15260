//! The content repository's records.

use async_trait::async_trait;

use myelin_core::types::UserId;

use crate::{
    Database, FillOutcome, MediaContent, MediaFill, MediaRecord, MediaRepo, StorageResult, ThumbnailRecord, db::Row,
};

pub(super) const COLUMNS: &str =
    "origin, media_id, uploader, content_type, upload_name, length, sha256, created_ms, unused_expires_ms";

pub(super) fn media_record(r: &Row<'_>) -> StorageResult<MediaRecord> {
    let length: Option<u64> = r.get(5)?;
    let sha256: Option<String> = r.get(6)?;
    Ok(MediaRecord {
        origin: r.get(0)?,
        media_id: r.get(1)?,
        uploader: r.get(2)?,
        content_type: r.get(3)?,
        upload_name: r.get(4)?,
        content: match (sha256, length) {
            (Some(sha256), Some(length)) => Some(MediaContent { sha256, length }),
            _ => None,
        },
        created_ms: r.get(7)?,
        unused_expires_ms: r.get(8)?,
    })
}

#[async_trait]
impl MediaRepo for Database {
    async fn put_media(&self, record: &MediaRecord) -> StorageResult<()> {
        let m = record.clone();
        self.transaction(move |c| {
            Box::pin(async move {
                let length = m.content.as_ref().map(|c| c.length);
                let sha256 = m.content.as_ref().map(|c| c.sha256.clone());
                c.execute(
                    &format!(
                        "INSERT INTO media ({COLUMNS}, last_access_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $8)"
                    ),
                    &[
                        &m.origin,
                        &m.media_id,
                        &m.uploader,
                        &m.content_type,
                        &m.upload_name,
                        &length,
                        &sha256,
                        &m.created_ms,
                        &m.unused_expires_ms,
                    ],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn reserve_media(&self, record: &MediaRecord, max_pending: usize, now_ms: u64) -> StorageResult<bool> {
        let m = record.clone();
        self.transaction(move |c| {
            Box::pin(async move {
                let uploader = m.uploader.as_ref().map(|u| u.to_string()).unwrap_or_default();
                // Two reservations of one user must not both see room for one more.
                c.lock_until_commit(&format!("media_reservations:{uploader}")).await?;
                let pending: i64 = c
                    .query_one(
                        "SELECT COUNT(*) FROM media WHERE uploader = $1 AND sha256 IS NULL AND unused_expires_ms > $2",
                        &[&uploader, &now_ms],
                        |r| r.get(0),
                    )
                    .await?;
                if pending >= max_pending as i64 {
                    return Ok(false);
                }
                c.execute(
                    &format!(
                        "INSERT INTO media ({COLUMNS}, last_access_ms) VALUES ($1, $2, $3, $4, $5, NULL, NULL, $6, $7, $6)"
                    ),
                    &[&m.origin, &m.media_id, &m.uploader, &m.content_type, &m.upload_name, &m.created_ms, &m.unused_expires_ms],
                )
                .await?;
                Ok(true)
            })
        })
        .await
    }

    async fn fill_reserved_media(&self, fill: MediaFill<'_>) -> StorageResult<FillOutcome> {
        let (origin, media_id, uploader) = (fill.origin.to_owned(), fill.media_id.to_owned(), fill.uploader.to_owned());
        let (content_type, upload_name) = (fill.content_type.map(str::to_owned), fill.upload_name.map(str::to_owned));
        let content = fill.content.clone();
        let now_ms = fill.now_ms;
        self.transaction(move |c| {
            Box::pin(async move {
                let Some(record) = c
                    .query_opt(
                        &format!("SELECT {COLUMNS} FROM media WHERE origin = $1 AND media_id = $2 FOR UPDATE"),
                        &[&origin, &media_id],
                        media_record,
                    )
                    .await?
                else {
                    return Ok(FillOutcome::NotFound);
                };
                if record.uploader.as_deref() != Some(&*uploader) {
                    return Ok(FillOutcome::NotYours);
                }
                if record.content.is_some() {
                    return Ok(FillOutcome::AlreadyUploaded);
                }
                if record.unused_expires_ms.is_some_and(|t| t <= now_ms) {
                    return Ok(FillOutcome::Expired);
                }
                c.execute(
                    "UPDATE media SET content_type = COALESCE($3, content_type), upload_name = COALESCE($4, upload_name),
                       length = $5, sha256 = $6, unused_expires_ms = NULL, last_access_ms = $7
                     WHERE origin = $1 AND media_id = $2",
                    &[&origin, &media_id, &content_type, &upload_name, &content.length, &content.sha256, &now_ms],
                )
                .await?;
                Ok(FillOutcome::Filled)
            })
        })
        .await
    }

    async fn media(&self, origin: &str, media_id: &str) -> StorageResult<Option<MediaRecord>> {
        let (origin, media_id) = (origin.to_owned(), media_id.to_owned());
        self.read(move |c| {
            Box::pin(async move {
                c.query_opt(
                    &format!("SELECT {COLUMNS} FROM media WHERE origin = $1 AND media_id = $2"),
                    &[&origin, &media_id],
                    media_record,
                )
                .await
            })
        })
        .await
    }

    async fn put_media_thumbnail(&self, thumbnail: &ThumbnailRecord) -> StorageResult<()> {
        let t = thumbnail.clone();
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO media_thumbnails
                       (origin, media_id, width, height, method, content_type, length, sha256, created_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT (origin, media_id, width, height, method) DO NOTHING",
                    &[
                        &t.origin,
                        &t.media_id,
                        &u64::from(t.width),
                        &u64::from(t.height),
                        &t.method,
                        &t.content_type,
                        &t.content.length,
                        &t.content.sha256,
                        &t.created_ms,
                    ],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn media_thumbnail(
        &self,
        origin: &str,
        media_id: &str,
        width: u32,
        height: u32,
        method: &str,
    ) -> StorageResult<Option<ThumbnailRecord>> {
        let (origin, media_id, method) = (origin.to_owned(), media_id.to_owned(), method.to_owned());
        let (w, h) = (u64::from(width), u64::from(height));
        self.read(move |c| {
            Box::pin(async move {
                c.query_opt(
                    "SELECT content_type, length, sha256, created_ms FROM media_thumbnails
                     WHERE origin = $1 AND media_id = $2 AND width = $3 AND height = $4 AND method = $5",
                    &[&origin, &media_id, &w, &h, &method],
                    |r| {
                        Ok(ThumbnailRecord {
                            origin: origin.clone(),
                            media_id: media_id.clone(),
                            width,
                            height,
                            method: method.clone(),
                            content_type: r.get(0)?,
                            content: MediaContent { length: r.get(1)?, sha256: r.get(2)? },
                            created_ms: r.get(3)?,
                        })
                    },
                )
                .await
            })
        })
        .await
    }

    async fn touch_media(&self, origin: &str, media_id: &str, now_ms: u64) -> StorageResult<()> {
        let (origin, media_id) = (origin.to_owned(), media_id.to_owned());
        // Lost with the machine at worst: the next download moves it again.
        self.transaction_relaxed(move |c| {
            Box::pin(async move {
                c.execute(
                    "UPDATE media SET last_access_ms = $3 WHERE origin = $1 AND media_id = $2 AND last_access_ms < $3",
                    &[&origin, &media_id, &now_ms],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn media_unused_since(
        &self,
        origin: &str,
        other_origins: bool,
        before_ms: u64,
        limit: usize,
    ) -> StorageResult<Vec<MediaRecord>> {
        let origin = origin.to_owned();
        let which = if other_origins { "origin <> $1" } else { "origin = $1" };
        self.read(move |c| {
            Box::pin(async move {
                c.query(
                    &format!(
                        "SELECT {COLUMNS} FROM media WHERE {which} AND sha256 IS NOT NULL AND last_access_ms < $2
                         ORDER BY last_access_ms LIMIT {limit}"
                    ),
                    &[&origin, &before_ms],
                    media_record,
                )
                .await
            })
        })
        .await
    }

    async fn thumbnailed_remote_media_since(
        &self,
        origin: &str,
        before_ms: u64,
        limit: usize,
    ) -> StorageResult<Vec<(String, String)>> {
        let origin = origin.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query(
                    &format!(
                        "SELECT DISTINCT t.origin, t.media_id FROM media_thumbnails t
                         WHERE t.origin <> $1 AND t.created_ms < $2
                           AND NOT EXISTS (SELECT 1 FROM media m WHERE m.origin = t.origin AND m.media_id = t.media_id)
                         LIMIT {limit}"
                    ),
                    &[&origin, &before_ms],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .await
            })
        })
        .await
    }

    async fn delete_media(&self, media: &[(String, String)]) -> StorageResult<Vec<String>> {
        let media = media.to_vec();
        self.transaction(move |c| {
            Box::pin(async move {
                let mut blobs: Vec<String> = Vec::new();
                for (origin, media_id) in &media {
                    blobs.extend(
                        c.query(
                            "SELECT sha256 FROM media WHERE origin = $1 AND media_id = $2 AND sha256 IS NOT NULL
                             UNION SELECT sha256 FROM media_thumbnails WHERE origin = $1 AND media_id = $2",
                            &[origin, media_id],
                            |r| r.get::<String>(0),
                        )
                        .await?,
                    );
                    c.execute("DELETE FROM media_thumbnails WHERE origin = $1 AND media_id = $2", &[origin, media_id])
                        .await?;
                    c.execute("DELETE FROM media WHERE origin = $1 AND media_id = $2", &[origin, media_id]).await?;
                }
                blobs.sort();
                blobs.dedup();
                let mut unreferenced = Vec::new();
                for sha256 in blobs {
                    let used: bool = c
                        .query_one(
                            "SELECT EXISTS (SELECT 1 FROM media WHERE sha256 = $1)
                                 OR EXISTS (SELECT 1 FROM media_thumbnails WHERE sha256 = $1)",
                            &[&sha256],
                            |r| r.get(0),
                        )
                        .await?;
                    if !used {
                        unreferenced.push(sha256);
                    }
                }
                Ok(unreferenced)
            })
        })
        .await
    }

    async fn uploaded_bytes_since(&self, uploader: &UserId, since_ms: u64) -> StorageResult<u64> {
        let uploader = uploader.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query_one(
                    "SELECT CAST(COALESCE(SUM(length), 0) AS BIGINT) FROM media WHERE uploader = $1 AND created_ms >= $2",
                    &[&uploader, &since_ms],
                    |r| r.get(0),
                )
                .await
            })
        })
        .await
    }

    async fn avatar_uris(&self) -> StorageResult<Vec<String>> {
        self.read(move |c| {
            Box::pin(async move {
                let mut uris: Vec<String> = c
                    .query(
                        "SELECT avatar_url FROM users WHERE avatar_url LIKE 'mxc://%'
                         UNION SELECT avatar_url FROM room_members WHERE avatar_url LIKE 'mxc://%'",
                        &[],
                        |r| r.get(0),
                    )
                    .await?;
                let room_avatars: Vec<String> = c
                    .query(
                        "SELECT e.json FROM current_state cs JOIN events e ON e.event_id = cs.event_id
                         WHERE cs.event_type = 'm.room.avatar'",
                        &[],
                        |r| r.get(0),
                    )
                    .await?;
                for json in room_avatars {
                    if let Ok(event) = serde_json::from_str::<serde_json::Value>(&json)
                        && let Some(url) = event["content"]["url"].as_str()
                    {
                        uris.push(url.to_owned());
                    }
                }
                uris.sort();
                uris.dedup();
                Ok(uris)
            })
        })
        .await
    }
}
