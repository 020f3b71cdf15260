use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{SqliteStore, opt_u64};
use crate::{DeviceRecord, DeviceRepo, NewSession, StorageResult, TokenOwner};

/// Everything kept per device, deleted with it (the inbox up to now: the stream head is locked by
/// the writer, so later messages for a reused id have higher positions).
const DEVICE_TABLES: [&str; 9] = [
    "access_tokens",
    "refresh_tokens",
    "devices",
    "device_keys",
    "one_time_keys",
    "claimed_one_time_keys",
    "fallback_keys",
    "to_device_inbox",
    "sliding_sync_connections",
];

pub(super) fn delete_device_rows(conn: &Connection, user_id: &str, device_id: &str) -> rusqlite::Result<()> {
    for table in DEVICE_TABLES {
        conn.prepare_cached(&format!("DELETE FROM {table} WHERE user_id = ?1 AND device_id = ?2"))?
            .execute([user_id, device_id])?;
    }
    Ok(())
}

fn device_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRecord> {
    Ok(DeviceRecord {
        user_id: r.get(0)?,
        device_id: r.get(1)?,
        display_name: r.get(2)?,
        last_seen_ms: opt_u64(r.get(3)?),
        last_seen_ip: r.get(4)?,
    })
}

#[async_trait]
impl DeviceRepo for SqliteStore {
    async fn create_session(&self, s: NewSession) -> StorageResult<()> {
        self.writer
            .write(move |conn, _| {
                let existed = conn.execute(
                    "INSERT INTO devices (user_id, device_id, display_name, created_ms) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (user_id, device_id) DO NOTHING",
                    params![s.user_id, s.device_id, s.display_name, s.created_ms as i64],
                )? == 0;
                if existed {
                    // A login that reuses a device id replaces that device's sessions.
                    conn.execute("DELETE FROM access_tokens WHERE user_id = ?1 AND device_id = ?2", [&s.user_id, &s.device_id])?;
                    conn.execute("DELETE FROM refresh_tokens WHERE user_id = ?1 AND device_id = ?2", [&s.user_id, &s.device_id])?;
                }
                conn.execute(
                    "INSERT INTO access_tokens (token, user_id, device_id, expires_ms, refresh_token) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![s.access_token, s.user_id, s.device_id, s.expires_ms.map(|v| v as i64), s.refresh_token],
                )?;
                if let Some(refresh) = &s.refresh_token {
                    conn.execute(
                        "INSERT INTO refresh_tokens (token, user_id, device_id) VALUES (?1, ?2, ?3)",
                        params![refresh, s.user_id, s.device_id],
                    )?;
                }
                Ok(())
            })
            .await
    }

    async fn token_owner(&self, access_token: &str) -> StorageResult<Option<TokenOwner>> {
        let token = access_token.to_owned();
        self.readers
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT t.user_id, t.device_id, t.expires_ms, u.is_admin, u.deactivated
                         FROM access_tokens t JOIN users u ON u.user_id = t.user_id WHERE t.token = ?1",
                    )?
                    .query_row([token], |r| {
                        Ok(TokenOwner {
                            user_id: r.get(0)?,
                            device_id: r.get(1)?,
                            expires_ms: opt_u64(r.get(2)?),
                            is_admin: r.get(3)?,
                            deactivated: r.get(4)?,
                        })
                    })
                    .optional()?)
            })
            .await
    }

    async fn refresh_session(
        &self,
        refresh_token: &str,
        new_access_token: &str,
        new_refresh_token: &str,
        expires_ms: Option<u64>,
    ) -> StorageResult<Option<(String, String)>> {
        let (old, access, refresh) =
            (refresh_token.to_owned(), new_access_token.to_owned(), new_refresh_token.to_owned());
        self.writer
            .write(move |conn, _| {
                let owner: Option<(String, String)> = conn
                    .query_row("SELECT user_id, device_id FROM refresh_tokens WHERE token = ?1", [&old], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()?;
                let Some((user_id, device_id)) = owner else { return Ok(None) };
                conn.execute("DELETE FROM refresh_tokens WHERE token = ?1", [&old])?;
                conn.execute("DELETE FROM access_tokens WHERE refresh_token = ?1", [&old])?;
                conn.execute(
                    "INSERT INTO access_tokens (token, user_id, device_id, expires_ms, refresh_token) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![access, user_id, device_id, expires_ms.map(|v| v as i64), refresh],
                )?;
                conn.execute(
                    "INSERT INTO refresh_tokens (token, user_id, device_id) VALUES (?1, ?2, ?3)",
                    params![refresh, user_id, device_id],
                )?;
                Ok(Some((user_id, device_id)))
            })
            .await
    }

    async fn revoke_access_token(&self, access_token: &str) -> StorageResult<()> {
        let token = access_token.to_owned();
        self.writer
            .write(move |conn, _| {
                conn.execute(
                    "DELETE FROM refresh_tokens WHERE token = (SELECT refresh_token FROM access_tokens WHERE token = ?1)",
                    [&token],
                )?;
                conn.execute("DELETE FROM access_tokens WHERE token = ?1", [&token])?;
                Ok(())
            })
            .await
    }

    async fn list_devices(&self, user_id: &str) -> StorageResult<Vec<DeviceRecord>> {
        let user_id = user_id.to_owned();
        self.readers
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT user_id, device_id, display_name, last_seen_ms, last_seen_ip FROM devices
                     WHERE user_id = ?1 ORDER BY device_id",
                )?;
                let rows = stmt.query_map([user_id], device_from_row)?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn get_device(&self, user_id: &str, device_id: &str) -> StorageResult<Option<DeviceRecord>> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        self.readers
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT user_id, device_id, display_name, last_seen_ms, last_seen_ip FROM devices
                         WHERE user_id = ?1 AND device_id = ?2",
                    )?
                    .query_row([user_id, device_id], device_from_row)
                    .optional()?)
            })
            .await
    }

    async fn set_device_display_name(
        &self,
        user_id: &str,
        device_id: &str,
        name: Option<String>,
    ) -> StorageResult<bool> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        self.writer
            .write(move |conn, _| {
                Ok(conn.execute(
                    "UPDATE devices SET display_name = ?3 WHERE user_id = ?1 AND device_id = ?2",
                    params![user_id, device_id, name],
                )? > 0)
            })
            .await
    }

    async fn delete_devices(&self, user_id: &str, device_ids: &[String]) -> StorageResult<()> {
        let (user_id, device_ids) = (user_id.to_owned(), device_ids.to_vec());
        self.writer
            .write(move |conn, positions| {
                for device_id in &device_ids {
                    delete_device_rows(conn, &user_id, device_id)?;
                }
                super::keys::record_change(conn, positions, &user_id)?;
                Ok(())
            })
            .await
    }

    async fn delete_all_devices(&self, user_id: &str, keep: Option<&str>) -> StorageResult<()> {
        let (user_id, keep) = (user_id.to_owned(), keep.map(str::to_owned));
        self.writer
            .write(move |conn, positions| {
                let ids: Vec<String> = conn
                    .prepare("SELECT device_id FROM devices WHERE user_id = ?1 AND device_id NOT IN (SELECT device_id FROM dehydrated_devices WHERE user_id = ?1)")?
                    .query_map([&user_id], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                for device_id in ids.iter().filter(|d| Some(d.as_str()) != keep.as_deref()) {
                    delete_device_rows(conn, &user_id, device_id)?;
                }
                super::keys::record_change(conn, positions, &user_id)?;
                Ok(())
            })
            .await
    }

    async fn touch_device(&self, user_id: &str, device_id: &str, ip: Option<String>, now_ms: u64) -> StorageResult<()> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        self.writer
            .write(move |conn, _| {
                conn.execute(
                    "UPDATE devices SET last_seen_ms = ?3, last_seen_ip = ?4 WHERE user_id = ?1 AND device_id = ?2",
                    params![user_id, device_id, now_ms as i64, ip],
                )?;
                Ok(())
            })
            .await
    }

    async fn create_login_token(&self, token: &str, user_id: &str, expires_ms: u64) -> StorageResult<()> {
        let (token, user_id) = (token.to_owned(), user_id.to_owned());
        self.writer
            .write(move |conn, _| {
                conn.execute(
                    "INSERT INTO login_tokens (token, user_id, expires_ms) VALUES (?1, ?2, ?3)",
                    params![token, user_id, expires_ms as i64],
                )?;
                Ok(())
            })
            .await
    }

    async fn take_login_token(&self, token: &str, now_ms: u64) -> StorageResult<Option<String>> {
        let token = token.to_owned();
        self.writer
            .write(move |conn, _| {
                let row: Option<(String, i64)> = conn
                    .query_row("SELECT user_id, expires_ms FROM login_tokens WHERE token = ?1", [&token], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()?;
                conn.execute(
                    "DELETE FROM login_tokens WHERE token = ?1 OR expires_ms < ?2",
                    params![token, now_ms as i64],
                )?;
                Ok(row.filter(|(_, exp)| *exp >= now_ms as i64).map(|(user, _)| user))
            })
            .await
    }
}
