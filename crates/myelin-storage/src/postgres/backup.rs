use async_trait::async_trait;
use tokio_postgres::Row;

use super::{PgStore, conn::PgConn};
use crate::{BackupKey, BackupRepo, BackupVersion, BackupWrite, StorageResult};

fn key_from_row(r: &Row) -> BackupKey {
    BackupKey {
        room_id: r.get(0),
        session_id: r.get(1),
        first_message_index: r.get(2),
        forwarded_count: r.get(3),
        is_verified: r.get::<_, i64>(4) != 0,
        session_data: r.get(5),
    }
}

/// The newest live version, with its row locked so writers of one user's backup queue up.
async fn lock_current_version(c: &mut PgConn, user: &str) -> StorageResult<Option<i64>> {
    Ok(c.query_opt(
        "SELECT version FROM backup_versions WHERE user_id = $1 AND deleted = 0 ORDER BY version DESC LIMIT 1 FOR UPDATE",
        &[&user],
    )
    .await?
    .map(|r| r.get(0)))
}

async fn etag_and_count(c: &mut PgConn, user: &str, version: i64) -> StorageResult<BackupWrite> {
    let row = c
        .query_one(
            "SELECT v.etag, (SELECT COUNT(*) FROM backup_keys k WHERE k.user_id = v.user_id AND k.version = v.version)
             FROM backup_versions v WHERE v.user_id = $1 AND v.version = $2",
            &[&user, &version],
        )
        .await?;
    Ok(BackupWrite::Done { etag: row.get(0), count: row.get::<_, i64>(1).max(0) as u64 })
}

#[async_trait]
impl BackupRepo for PgStore {
    async fn create_backup_version(&self, user_id: &str, algorithm: &str, auth_data: String) -> StorageResult<i64> {
        let (user, algorithm) = (user_id.to_owned(), algorithm.to_owned());
        self.pool
            .transaction(move |c| {
                Box::pin(async move {
                    // Serialise version creation per user across processes.
                    c.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&format!("backup:{user}")]).await?;
                    let next: i64 = c
                        .query_one(
                            "SELECT COALESCE(MAX(version), 0) + 1 FROM backup_versions WHERE user_id = $1",
                            &[&user],
                        )
                        .await?
                        .get(0);
                    c.execute(
                        "INSERT INTO backup_versions (user_id, version, algorithm, auth_data) VALUES ($1, $2, $3, $4)",
                        &[&user, &next, &algorithm, &auth_data],
                    )
                    .await?;
                    Ok(next)
                })
            })
            .await
    }

    async fn backup_version(&self, user_id: &str, version: Option<i64>) -> StorageResult<Option<BackupVersion>> {
        let mut c = self.pool.get().await?;
        let row = c
            .query_opt(
                "SELECT v.version, v.algorithm, v.auth_data, v.etag,
                        (SELECT COUNT(*) FROM backup_keys k WHERE k.user_id = v.user_id AND k.version = v.version)
                 FROM backup_versions v WHERE v.user_id = $1 AND v.deleted = 0 AND ($2::BIGINT IS NULL OR v.version = $2)
                 ORDER BY v.version DESC LIMIT 1",
                &[&user_id, &version],
            )
            .await?;
        Ok(row.map(|r| BackupVersion {
            version: r.get(0),
            algorithm: r.get(1),
            auth_data: r.get(2),
            etag: r.get(3),
            count: r.get::<_, i64>(4).max(0) as u64,
        }))
    }

    async fn update_backup_version(&self, user_id: &str, version: i64, auth_data: String) -> StorageResult<bool> {
        let mut c = self.pool.get().await?;
        Ok(c.execute(
            "UPDATE backup_versions SET auth_data = $3 WHERE user_id = $1 AND version = $2 AND deleted = 0",
            &[&user_id, &version, &auth_data],
        )
        .await?
            == 1)
    }

    async fn delete_backup_version(&self, user_id: &str, version: i64) -> StorageResult<bool> {
        let user = user_id.to_owned();
        self.pool
            .transaction(move |c| {
                Box::pin(async move {
                    c.execute("DELETE FROM backup_keys WHERE user_id = $1 AND version = $2", &[&user, &version])
                        .await?;
                    Ok(c.execute(
                        "UPDATE backup_versions SET deleted = 1 WHERE user_id = $1 AND version = $2",
                        &[&user, &version],
                    )
                    .await?
                        == 1)
                })
            })
            .await
    }

    async fn put_backup_keys(&self, user_id: &str, version: i64, keys: Vec<BackupKey>) -> StorageResult<BackupWrite> {
        let user = user_id.to_owned();
        self.pool
            .transaction(move |c| {
                Box::pin(async move {
                    let current = lock_current_version(c, &user).await?;
                    if current != Some(version) {
                        return Ok(BackupWrite::WrongVersion { current });
                    }
                    let mut changed = false;
                    for key in keys {
                        let old = c
                            .query_opt(
                                "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data
                                 FROM backup_keys WHERE user_id = $1 AND version = $2 AND room_id = $3 AND session_id = $4",
                                &[&user, &version, &key.room_id, &key.session_id],
                            )
                            .await?
                            .as_ref()
                            .map(key_from_row);
                        if old.as_ref().is_some_and(|old| *old == key || !key.replaces(old)) {
                            continue;
                        }
                        c.execute(
                            "INSERT INTO backup_keys (user_id, version, room_id, session_id, first_message_index,
                                                      forwarded_count, is_verified, session_data)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                             ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET
                                 first_message_index = excluded.first_message_index,
                                 forwarded_count = excluded.forwarded_count,
                                 is_verified = excluded.is_verified, session_data = excluded.session_data",
                            &[
                                &user,
                                &version,
                                &key.room_id,
                                &key.session_id,
                                &key.first_message_index,
                                &key.forwarded_count,
                                &i64::from(key.is_verified),
                                &key.session_data,
                            ],
                        )
                        .await?;
                        changed = true;
                    }
                    if changed {
                        c.execute(
                            "UPDATE backup_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2",
                            &[&user, &version],
                        )
                        .await?;
                    }
                    etag_and_count(c, &user, version).await
                })
            })
            .await
    }

    async fn backup_keys(
        &self,
        user_id: &str,
        version: i64,
        room_id: Option<&str>,
        session_id: Option<&str>,
    ) -> StorageResult<Vec<BackupKey>> {
        let mut c = self.pool.get().await?;
        Ok(c.query(
            "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data
             FROM backup_keys WHERE user_id = $1 AND version = $2 AND ($3::TEXT IS NULL OR room_id = $3)
               AND ($4::TEXT IS NULL OR session_id = $4)
             ORDER BY room_id, session_id",
            &[&user_id, &version, &room_id, &session_id],
        )
        .await?
        .iter()
        .map(key_from_row)
        .collect())
    }

    async fn delete_backup_keys(
        &self,
        user_id: &str,
        version: i64,
        room_id: Option<&str>,
        session_id: Option<&str>,
    ) -> StorageResult<BackupWrite> {
        let (user, room, session) = (user_id.to_owned(), room_id.map(str::to_owned), session_id.map(str::to_owned));
        self.pool
            .transaction(move |c| {
                Box::pin(async move {
                    let current = lock_current_version(c, &user).await?;
                    if current != Some(version) {
                        return Ok(BackupWrite::WrongVersion { current });
                    }
                    let deleted = c
                        .execute(
                            "DELETE FROM backup_keys WHERE user_id = $1 AND version = $2 AND ($3::TEXT IS NULL OR room_id = $3)
                               AND ($4::TEXT IS NULL OR session_id = $4)",
                            &[&user, &version, &room, &session],
                        )
                        .await?;
                    if deleted > 0 {
                        c.execute(
                            "UPDATE backup_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2",
                            &[&user, &version],
                        )
                        .await?;
                    }
                    etag_and_count(c, &user, version).await
                })
            })
            .await
    }
}
