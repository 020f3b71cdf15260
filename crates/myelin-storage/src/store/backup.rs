//! Server-side key backup, per user.

use async_trait::async_trait;

use myelin_core::types::{RoomId, UserId};

use crate::{
    BackupKey, BackupRepo, BackupVersion, BackupWrite, Database, StorageResult,
    db::{Conn, Row},
};

const KEY_COLUMNS: &str = "room_id, session_id, first_message_index, forwarded_count, is_verified, session_data";

fn key_from_row(r: &Row<'_>) -> StorageResult<BackupKey> {
    Ok(BackupKey {
        room_id: r.get(0)?,
        session_id: r.get(1)?,
        first_message_index: r.get(2)?,
        forwarded_count: r.get(3)?,
        is_verified: r.get(4)?,
        session_data: r.get(5)?,
    })
}

/// The newest live version, with its row locked so writers of one user's backup queue up.
async fn lock_current_version(c: &mut Conn<'_>, user: &UserId) -> StorageResult<Option<i64>> {
    c.query_opt(
        "SELECT version FROM backup_versions WHERE user_id = $1 AND deleted = 0 ORDER BY version DESC LIMIT 1 FOR UPDATE",
        &[&user],
        |r| r.get(0),
    )
    .await
}

/// After a write of a version's keys: a new etag if anything `changed`, and the etag and count.
async fn written(c: &mut Conn<'_>, user: &UserId, version: i64, changed: bool) -> StorageResult<BackupWrite> {
    if changed {
        c.execute("UPDATE backup_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2", &[&user, &version])
            .await?;
    }
    etag_and_count(c, user, version).await
}

async fn etag_and_count(c: &mut Conn<'_>, user: &UserId, version: i64) -> StorageResult<BackupWrite> {
    c.query_one(
        "SELECT v.etag, (SELECT COUNT(*) FROM backup_keys k WHERE k.user_id = v.user_id AND k.version = v.version)
         FROM backup_versions v WHERE v.user_id = $1 AND v.version = $2",
        &[&user, &version],
        |r| Ok(BackupWrite::Done { etag: r.get(0)?, count: r.get(1)? }),
    )
    .await
}

#[async_trait]
impl BackupRepo for Database {
    async fn create_backup_version(&self, user_id: &UserId, algorithm: &str, auth_data: String) -> StorageResult<i64> {
        let (user, algorithm) = (user_id.to_owned(), algorithm.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                // Versions are numbered per user: creations take turns on the user's lock.
                c.lock_until_commit(&format!("backup\u{0}{user}")).await?;
                c.query_one(
                    "INSERT INTO backup_versions (user_id, version, algorithm, auth_data)
                     SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3 FROM backup_versions WHERE user_id = $1
                     RETURNING version",
                    &[&user, &algorithm, &auth_data],
                    |r| r.get(0),
                )
                .await
            })
        })
        .await
    }

    async fn backup_version(&self, user_id: &UserId, version: Option<i64>) -> StorageResult<Option<BackupVersion>> {
        let user = user_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query_opt(
                    "SELECT v.version, v.algorithm, v.auth_data, v.etag,
                            (SELECT COUNT(*) FROM backup_keys k WHERE k.user_id = v.user_id AND k.version = v.version)
                     FROM backup_versions v
                     WHERE v.user_id = $1 AND v.deleted = 0 AND (CAST($2 AS BIGINT) IS NULL OR v.version = $2)
                     ORDER BY v.version DESC LIMIT 1",
                    &[&user, &version],
                    |r| {
                        Ok(BackupVersion {
                            version: r.get(0)?,
                            algorithm: r.get(1)?,
                            auth_data: r.get(2)?,
                            etag: r.get(3)?,
                            count: r.get(4)?,
                        })
                    },
                )
                .await
            })
        })
        .await
    }

    async fn update_backup_version(&self, user_id: &UserId, version: i64, auth_data: String) -> StorageResult<bool> {
        let user = user_id.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                let changed = c
                    .execute(
                        "UPDATE backup_versions SET auth_data = $3 WHERE user_id = $1 AND version = $2 AND deleted = 0",
                        &[&user, &version, &auth_data],
                    )
                    .await?;
                Ok(changed == 1)
            })
        })
        .await
    }

    async fn delete_backup_version(&self, user_id: &UserId, version: i64) -> StorageResult<bool> {
        let user = user_id.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute("DELETE FROM backup_keys WHERE user_id = $1 AND version = $2", &[&user, &version]).await?;
                let changed = c
                    .execute(
                        "UPDATE backup_versions SET deleted = 1 WHERE user_id = $1 AND version = $2",
                        &[&user, &version],
                    )
                    .await?;
                Ok(changed == 1)
            })
        })
        .await
    }

    async fn put_backup_keys(
        &self,
        user_id: &UserId,
        version: i64,
        keys: Vec<BackupKey>,
    ) -> StorageResult<BackupWrite> {
        let user = user_id.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                let current = lock_current_version(c, &user).await?;
                if current != Some(version) {
                    return Ok(BackupWrite::WrongVersion { current });
                }
                let mut changed = false;
                for key in keys {
                    let old = c
                        .query_opt(
                            &format!(
                                "SELECT {KEY_COLUMNS} FROM backup_keys
                                 WHERE user_id = $1 AND version = $2 AND room_id = $3 AND session_id = $4"
                            ),
                            &[&user, &version, &key.room_id, &key.session_id],
                            key_from_row,
                        )
                        .await?;
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
                            &key.is_verified,
                            &key.session_data,
                        ],
                    )
                    .await?;
                    changed = true;
                }
                written(c, &user, version, changed).await
            })
        })
        .await
    }

    async fn backup_keys(
        &self,
        user_id: &UserId,
        version: i64,
        room_id: Option<&RoomId>,
        session_id: Option<&str>,
    ) -> StorageResult<Vec<BackupKey>> {
        let (user, room, session) = (user_id.to_owned(), room_id.map(ToOwned::to_owned), session_id.map(str::to_owned));
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT {KEY_COLUMNS} FROM backup_keys
                     WHERE user_id = $1 AND version = $2 AND (CAST($3 AS TEXT) IS NULL OR room_id = $3)
                       AND (CAST($4 AS TEXT) IS NULL OR session_id = $4)
                     ORDER BY room_id, session_id"
                );
                c.query(&sql, &[&user, &version, &room, &session], key_from_row).await
            })
        })
        .await
    }

    async fn delete_backup_keys(
        &self,
        user_id: &UserId,
        version: i64,
        room_id: Option<&RoomId>,
        session_id: Option<&str>,
    ) -> StorageResult<BackupWrite> {
        let (user, room, session) = (user_id.to_owned(), room_id.map(ToOwned::to_owned), session_id.map(str::to_owned));
        self.transaction(move |c| {
            Box::pin(async move {
                let current = lock_current_version(c, &user).await?;
                if current != Some(version) {
                    return Ok(BackupWrite::WrongVersion { current });
                }
                let deleted = c
                    .execute(
                        "DELETE FROM backup_keys WHERE user_id = $1 AND version = $2
                         AND (CAST($3 AS TEXT) IS NULL OR room_id = $3) AND (CAST($4 AS TEXT) IS NULL OR session_id = $4)",
                        &[&user, &version, &room, &session],
                    )
                    .await?;
                written(c, &user, version, deleted > 0).await
            })
        })
        .await
    }
}
