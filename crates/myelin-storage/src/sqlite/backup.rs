use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use crate::{BackupKey, BackupRepo, BackupVersion, BackupWrite, StorageResult};

fn key_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BackupKey> {
    Ok(BackupKey {
        room_id: r.get(0)?,
        session_id: r.get(1)?,
        first_message_index: r.get(2)?,
        forwarded_count: r.get(3)?,
        is_verified: r.get(4)?,
        session_data: r.get(5)?,
    })
}

fn current_version(conn: &Connection, user: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT MAX(version) FROM backup_versions WHERE user_id = ?1 AND deleted = 0")?
        .query_row([user], |r| r.get(0))
}

fn etag_and_count(conn: &Connection, user: &str, version: i64) -> rusqlite::Result<BackupWrite> {
    let etag: i64 = conn
        .prepare_cached("SELECT etag FROM backup_versions WHERE user_id = ?1 AND version = ?2")?
        .query_row(params![user, version], |r| r.get(0))?;
    let count: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM backup_keys WHERE user_id = ?1 AND version = ?2")?
        .query_row(params![user, version], |r| r.get(0))?;
    Ok(BackupWrite::Done { etag, count: count.max(0) as u64 })
}

#[async_trait]
impl BackupRepo for SqliteStore {
    async fn create_backup_version(&self, user_id: &str, algorithm: &str, auth_data: String) -> StorageResult<i64> {
        let (user, algorithm) = (user_id.to_owned(), algorithm.to_owned());
        self.writer
            .write(move |conn, _| {
                let next: i64 = conn.query_row(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM backup_versions WHERE user_id = ?1",
                    [&user],
                    |r| r.get(0),
                )?;
                conn.execute(
                    "INSERT INTO backup_versions (user_id, version, algorithm, auth_data) VALUES (?1, ?2, ?3, ?4)",
                    params![user, next, algorithm, auth_data],
                )?;
                Ok(next)
            })
            .await
    }

    async fn backup_version(&self, user_id: &str, version: Option<i64>) -> StorageResult<Option<BackupVersion>> {
        let user = user_id.to_owned();
        self.readers
            .read(move |conn| {
                let version = match version {
                    Some(v) => Some(v),
                    None => current_version(conn, &user)?,
                };
                let Some(version) = version else { return Ok(None) };
                Ok(conn
                    .prepare_cached(
                        "SELECT v.version, v.algorithm, v.auth_data, v.etag,
                                (SELECT COUNT(*) FROM backup_keys k WHERE k.user_id = v.user_id AND k.version = v.version)
                         FROM backup_versions v WHERE v.user_id = ?1 AND v.version = ?2 AND v.deleted = 0",
                    )?
                    .query_row(params![user, version], |r| {
                        Ok(BackupVersion {
                            version: r.get(0)?,
                            algorithm: r.get(1)?,
                            auth_data: r.get(2)?,
                            etag: r.get(3)?,
                            count: r.get::<_, i64>(4)?.max(0) as u64,
                        })
                    })
                    .optional()?)
            })
            .await
    }

    async fn update_backup_version(&self, user_id: &str, version: i64, auth_data: String) -> StorageResult<bool> {
        let user = user_id.to_owned();
        self.writer
            .write(move |conn, _| {
                Ok(conn.execute(
                    "UPDATE backup_versions SET auth_data = ?3 WHERE user_id = ?1 AND version = ?2 AND deleted = 0",
                    params![user, version, auth_data],
                )? == 1)
            })
            .await
    }

    async fn delete_backup_version(&self, user_id: &str, version: i64) -> StorageResult<bool> {
        let user = user_id.to_owned();
        self.writer
            .write(move |conn, _| {
                conn.execute("DELETE FROM backup_keys WHERE user_id = ?1 AND version = ?2", params![user, version])?;
                Ok(conn.execute(
                    "UPDATE backup_versions SET deleted = 1 WHERE user_id = ?1 AND version = ?2",
                    params![user, version],
                )? == 1)
            })
            .await
    }

    async fn put_backup_keys(&self, user_id: &str, version: i64, keys: Vec<BackupKey>) -> StorageResult<BackupWrite> {
        let user = user_id.to_owned();
        self.writer
            .write(move |conn, _| {
                let current = current_version(conn, &user)?;
                if current != Some(version) {
                    return Ok(BackupWrite::WrongVersion { current });
                }
                let mut changed = false;
                for key in keys {
                    let old = conn
                        .prepare_cached(
                            "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data
                             FROM backup_keys WHERE user_id = ?1 AND version = ?2 AND room_id = ?3 AND session_id = ?4",
                        )?
                        .query_row(params![user, version, key.room_id, key.session_id], key_from_row)
                        .optional()?;
                    if old.as_ref().is_some_and(|old| *old == key || !key.replaces(old)) {
                        continue;
                    }
                    conn.prepare_cached(
                        "INSERT INTO backup_keys (user_id, version, room_id, session_id, first_message_index, forwarded_count,
                                                  is_verified, session_data)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                         ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET
                             first_message_index = excluded.first_message_index, forwarded_count = excluded.forwarded_count,
                             is_verified = excluded.is_verified, session_data = excluded.session_data",
                    )?
                    .execute(params![
                        user,
                        version,
                        key.room_id,
                        key.session_id,
                        key.first_message_index,
                        key.forwarded_count,
                        key.is_verified,
                        key.session_data
                    ])?;
                    changed = true;
                }
                if changed {
                    conn.execute(
                        "UPDATE backup_versions SET etag = etag + 1 WHERE user_id = ?1 AND version = ?2",
                        params![user, version],
                    )?;
                }
                Ok(etag_and_count(conn, &user, version)?)
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
        let (user, room, session) = (user_id.to_owned(), room_id.map(str::to_owned), session_id.map(str::to_owned));
        self.readers
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data
                     FROM backup_keys WHERE user_id = ?1 AND version = ?2 AND (?3 IS NULL OR room_id = ?3)
                       AND (?4 IS NULL OR session_id = ?4)
                     ORDER BY room_id, session_id",
                )?;
                let rows = stmt.query_map(params![user, version, room, session], key_from_row)?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn delete_backup_keys(
        &self,
        user_id: &str,
        version: i64,
        room_id: Option<&str>,
        session_id: Option<&str>,
    ) -> StorageResult<BackupWrite> {
        let (user, room, session) = (user_id.to_owned(), room_id.map(str::to_owned), session_id.map(str::to_owned));
        self.writer
            .write(move |conn, _| {
                let current = current_version(conn, &user)?;
                if current != Some(version) {
                    return Ok(BackupWrite::WrongVersion { current });
                }
                let deleted = conn.execute(
                    "DELETE FROM backup_keys WHERE user_id = ?1 AND version = ?2 AND (?3 IS NULL OR room_id = ?3)
                       AND (?4 IS NULL OR session_id = ?4)",
                    params![user, version, room, session],
                )?;
                if deleted > 0 {
                    conn.execute(
                        "UPDATE backup_versions SET etag = etag + 1 WHERE user_id = ?1 AND version = ?2",
                        params![user, version],
                    )?;
                }
                Ok(etag_and_count(conn, &user, version)?)
            })
            .await
    }
}
