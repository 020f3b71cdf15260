use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, opt_u64};
use crate::{AccountRepo, StorageResult, UserDirectoryHit, UserRecord};

#[async_trait]
impl AccountRepo for SqliteStore {
    async fn create_user(&self, user: UserRecord) -> StorageResult<()> {
        self.writer
            .write(move |conn, _| {
                conn.execute(
                    "INSERT INTO users (user_id, password_hash, is_admin, deactivated, displayname, avatar_url, created_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        user.user_id,
                        user.password_hash,
                        user.is_admin,
                        user.deactivated,
                        user.displayname,
                        user.avatar_url,
                        user.created_ms as i64
                    ],
                )?;
                Ok(())
            })
            .await
    }

    async fn get_user(&self, user_id: &str) -> StorageResult<Option<UserRecord>> {
        let user_id = user_id.to_owned();
        self.readers
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT user_id, password_hash, is_admin, deactivated, displayname, avatar_url, created_ms
                         FROM users WHERE user_id = ?1",
                    )?
                    .query_row([user_id], |r| {
                        Ok(UserRecord {
                            user_id: r.get(0)?,
                            password_hash: r.get(1)?,
                            is_admin: r.get(2)?,
                            deactivated: r.get(3)?,
                            displayname: r.get(4)?,
                            avatar_url: r.get(5)?,
                            created_ms: opt_u64(r.get(6)?).unwrap_or(0),
                        })
                    })
                    .optional()?)
            })
            .await
    }

    async fn set_password_hash(&self, user_id: &str, hash: Option<String>) -> StorageResult<()> {
        let user_id = user_id.to_owned();
        self.writer
            .write(move |conn, _| {
                conn.execute("UPDATE users SET password_hash = ?2 WHERE user_id = ?1", params![user_id, hash])?;
                Ok(())
            })
            .await
    }

    async fn deactivate_user(&self, user_id: &str) -> StorageResult<()> {
        let user_id = user_id.to_owned();
        self.writer
            .write(move |conn, _| {
                conn.execute(
                    "UPDATE users SET deactivated = 1, password_hash = NULL, displayname = NULL, avatar_url = NULL
                     WHERE user_id = ?1",
                    [&user_id],
                )?;
                conn.execute("DELETE FROM access_tokens WHERE user_id = ?1", [&user_id])?;
                conn.execute("DELETE FROM refresh_tokens WHERE user_id = ?1", [&user_id])?;
                for table in [
                    "devices",
                    "device_keys",
                    "one_time_keys",
                    "claimed_one_time_keys",
                    "fallback_keys",
                    "to_device_inbox",
                    "cross_signing_keys",
                ] {
                    conn.execute(&format!("DELETE FROM {table} WHERE user_id = ?1"), [&user_id])?;
                }
                Ok(())
            })
            .await
    }

    async fn set_displayname(&self, user_id: &str, name: Option<String>) -> StorageResult<()> {
        let user_id = user_id.to_owned();
        self.writer
            .write(move |conn, _| {
                conn.execute("UPDATE users SET displayname = ?2 WHERE user_id = ?1", params![user_id, name])?;
                Ok(())
            })
            .await
    }

    async fn set_avatar_url(&self, user_id: &str, url: Option<String>) -> StorageResult<()> {
        let user_id = user_id.to_owned();
        self.writer
            .write(move |conn, _| {
                conn.execute("UPDATE users SET avatar_url = ?2 WHERE user_id = ?1", params![user_id, url])?;
                Ok(())
            })
            .await
    }

    async fn search_users(&self, searcher: &str, term: &str, limit: usize) -> StorageResult<Vec<UserDirectoryHit>> {
        let searcher = searcher.to_owned();
        let pattern = format!("%{}%", term.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        self.readers
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT u.user_id, u.displayname, u.avatar_url FROM users u
                     WHERE u.deactivated = 0
                       AND (u.user_id LIKE ?2 ESCAPE '\\' OR u.displayname LIKE ?2 ESCAPE '\\')
                       AND (u.user_id = ?1
                            OR EXISTS (SELECT 1 FROM room_members a JOIN room_members b ON a.room_id = b.room_id
                                       WHERE a.user_id = ?1 AND a.membership = 'join'
                                         AND b.user_id = u.user_id AND b.membership = 'join')
                            OR EXISTS (SELECT 1 FROM room_members m JOIN rooms r ON r.room_id = m.room_id
                                       WHERE m.user_id = u.user_id AND m.membership = 'join' AND r.join_rule = 'public'))
                     ORDER BY u.user_id LIMIT ?3",
                )?;
                let rows = stmt.query_map(params![searcher, pattern, limit as i64], |r| {
                    Ok(UserDirectoryHit { user_id: r.get(0)?, displayname: r.get(1)?, avatar_url: r.get(2)? })
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }
}
