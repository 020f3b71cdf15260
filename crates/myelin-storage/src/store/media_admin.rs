//! What admins decide about media.

use async_trait::async_trait;

use myelin_core::types::UserId;

use crate::{AdminMediaRecord, Database, MediaAdminRepo, MediaUsage, OldMediaQuery, StorageResult, db::Row};

use super::media::{COLUMNS, media_record};

/// [`COLUMNS`] from `media m`, then the admin's columns.
fn admin_columns() -> String {
    let media: Vec<String> = COLUMNS.split(", ").map(|c| format!("m.{c}")).collect();
    format!(
        "{}, m.last_access_ms, q.quarantined_by, p.media_id IS NOT NULL
         FROM media m
         LEFT JOIN quarantined_media q ON q.origin = m.origin AND q.media_id = m.media_id
         LEFT JOIN protected_media p ON p.origin = m.origin AND p.media_id = m.media_id",
        media.join(", ")
    )
}

fn admin_media_record(r: &Row<'_>) -> StorageResult<AdminMediaRecord> {
    Ok(AdminMediaRecord {
        media: media_record(r)?,
        last_access_ms: r.get(9)?,
        quarantined_by: r.get(10)?,
        protected: r.get(11)?,
    })
}

#[async_trait]
impl MediaAdminRepo for Database {
    async fn quarantine_media(&self, media: &[(String, String)], by: &UserId, now_ms: u64) -> StorageResult<u64> {
        let (media, by) = (media.to_vec(), by.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                let mut count = 0;
                for (origin, media_id) in &media {
                    count += c
                        .execute(
                            "INSERT INTO quarantined_media (origin, media_id, quarantined_by, quarantined_ms)
                             SELECT $1, $2, $3, $4
                             WHERE NOT EXISTS (SELECT 1 FROM protected_media WHERE origin = $1 AND media_id = $2)
                             ON CONFLICT (origin, media_id) DO NOTHING",
                            &[origin, media_id, &by, &now_ms],
                        )
                        .await?;
                }
                Ok(count)
            })
        })
        .await
    }

    async fn unquarantine_media(&self, origin: &str, media_id: &str) -> StorageResult<bool> {
        let (origin, media_id) = (origin.to_owned(), media_id.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                let n = c
                    .execute("DELETE FROM quarantined_media WHERE origin = $1 AND media_id = $2", &[&origin, &media_id])
                    .await?;
                Ok(n > 0)
            })
        })
        .await
    }

    async fn is_quarantined(&self, origin: &str, media_id: &str) -> StorageResult<bool> {
        let (origin, media_id) = (origin.to_owned(), media_id.to_owned());
        self.read(move |c| {
            Box::pin(async move {
                c.query_one(
                    "SELECT EXISTS (SELECT 1 FROM quarantined_media WHERE origin = $1 AND media_id = $2)",
                    &[&origin, &media_id],
                    |r| r.get(0),
                )
                .await
            })
        })
        .await
    }

    async fn set_media_protected(&self, origin: &str, media_id: &str, protected: bool) -> StorageResult<()> {
        let (origin, media_id) = (origin.to_owned(), media_id.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                let sql = if protected {
                    "INSERT INTO protected_media (origin, media_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
                } else {
                    "DELETE FROM protected_media WHERE origin = $1 AND media_id = $2"
                };
                c.execute(sql, &[&origin, &media_id]).await?;
                Ok(())
            })
        })
        .await
    }

    async fn admin_media(&self, origin: &str, media_id: &str) -> StorageResult<Option<AdminMediaRecord>> {
        let (origin, media_id) = (origin.to_owned(), media_id.to_owned());
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!("SELECT {} WHERE m.origin = $1 AND m.media_id = $2", admin_columns());
                c.query_opt(&sql, &[&origin, &media_id], admin_media_record).await
            })
        })
        .await
    }

    async fn uploads_of(
        &self,
        uploader: &UserId,
        offset: u64,
        limit: usize,
    ) -> StorageResult<(Vec<AdminMediaRecord>, u64)> {
        let uploader = uploader.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let total: u64 =
                    c.query_one("SELECT COUNT(*) FROM media WHERE uploader = $1", &[&uploader], |r| r.get(0)).await?;
                let sql = format!(
                    "SELECT {} WHERE m.uploader = $1 ORDER BY m.created_ms DESC, m.media_id
                     LIMIT {limit} OFFSET {offset}",
                    admin_columns()
                );
                let media = c.query(&sql, &[&uploader], admin_media_record).await?;
                Ok((media, total))
            })
        })
        .await
    }

    async fn old_local_media(&self, query: OldMediaQuery<'_>) -> StorageResult<Vec<(String, String)>> {
        let origin = query.origin.to_owned();
        let (before, size_gt, limit) = (query.before_ms, query.size_gt, query.limit);
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT m.origin, m.media_id FROM media m
                     WHERE m.origin = $1 AND m.sha256 IS NOT NULL AND m.last_access_ms < $2 AND m.length > $3
                       AND NOT EXISTS (SELECT 1 FROM protected_media p
                                       WHERE p.origin = m.origin AND p.media_id = m.media_id)
                     ORDER BY m.last_access_ms LIMIT {limit}"
                );
                c.query(&sql, &[&origin, &before, &size_gt], |r| Ok((r.get(0)?, r.get(1)?))).await
            })
        })
        .await
    }

    async fn media_usage(&self, offset: u64, limit: usize) -> StorageResult<(Vec<MediaUsage>, u64)> {
        self.read(move |c| {
            Box::pin(async move {
                let total: u64 = c
                    .query_one(
                        "SELECT COUNT(DISTINCT uploader) FROM media WHERE uploader IS NOT NULL AND sha256 IS NOT NULL",
                        &[],
                        |r| r.get(0),
                    )
                    .await?;
                let sql = format!(
                    "SELECT m.uploader, u.displayname, COUNT(*) AS n, CAST(SUM(m.length) AS BIGINT) AS bytes
                     FROM media m LEFT JOIN users u ON u.user_id = m.uploader
                     WHERE m.uploader IS NOT NULL AND m.sha256 IS NOT NULL
                     GROUP BY m.uploader, u.displayname ORDER BY bytes DESC, m.uploader
                     LIMIT {limit} OFFSET {offset}"
                );
                let usage = c
                    .query(&sql, &[], |r| {
                        Ok(MediaUsage {
                            user_id: r.get(0)?,
                            displayname: r.get(1)?,
                            media_count: r.get(2)?,
                            media_length: r.get(3)?,
                        })
                    })
                    .await?;
                Ok((usage, total))
            })
        })
        .await
    }
}
