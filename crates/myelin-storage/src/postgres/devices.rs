use async_trait::async_trait;
use tokio_postgres::Row;

use super::{PgStore, conn::PgConn, to_u64};
use crate::{DeviceRecord, DeviceRepo, NewSession, StorageResult, TokenOwner};

/// Everything kept per device, deleted with it (the inbox up to now: the writer holds the stream
/// head, so later messages for a reused id have higher positions).
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

/// Runs in the stream writer: the device-list change takes a stream position.
pub(super) async fn delete_device_rows(
    c: &mut PgConn,
    positions: &mut super::writer::Positions,
    user_id: &str,
    device_ids: &[String],
) -> StorageResult<()> {
    for table in DEVICE_TABLES {
        c.execute(&format!("DELETE FROM {table} WHERE user_id = $1 AND device_id = ANY($2)"), &[&user_id, &device_ids])
            .await?;
    }
    super::keys::record_change(c, positions, user_id).await?;
    Ok(())
}

fn device_from_row(r: &Row) -> DeviceRecord {
    DeviceRecord {
        user_id: r.get(0),
        device_id: r.get(1),
        display_name: r.get(2),
        last_seen_ms: r.get::<_, Option<i64>>(3).map(to_u64),
        last_seen_ip: r.get(4),
    }
}

#[async_trait]
impl DeviceRepo for PgStore {
    async fn create_session(&self, s: NewSession) -> StorageResult<()> {
        self.pool
            .transaction(move |c| {
                Box::pin(async move {
                    let inserted = c
                        .execute(
                            "INSERT INTO devices (user_id, device_id, display_name, created_ms) VALUES ($1, $2, $3, $4)
                             ON CONFLICT (user_id, device_id) DO NOTHING",
                            &[&s.user_id, &s.device_id, &s.display_name, &(s.created_ms as i64)],
                        )
                        .await?;
                    if inserted == 0 {
                        // A login that reuses a device id replaces that device's sessions.
                        c.execute(
                            "DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2",
                            &[&s.user_id, &s.device_id],
                        )
                        .await?;
                        c.execute(
                            "DELETE FROM refresh_tokens WHERE user_id = $1 AND device_id = $2",
                            &[&s.user_id, &s.device_id],
                        )
                        .await?;
                    }
                    c.execute(
                        "INSERT INTO access_tokens (token, user_id, device_id, expires_ms, refresh_token)
                         VALUES ($1, $2, $3, $4, $5)",
                        &[&s.access_token, &s.user_id, &s.device_id, &s.expires_ms.map(|v| v as i64), &s.refresh_token],
                    )
                    .await?;
                    if let Some(refresh) = &s.refresh_token {
                        c.execute(
                            "INSERT INTO refresh_tokens (token, user_id, device_id) VALUES ($1, $2, $3)",
                            &[refresh, &s.user_id, &s.device_id],
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn token_owner(&self, access_token: &str) -> StorageResult<Option<TokenOwner>> {
        let mut c = self.pool.get().await?;
        Ok(c.query_opt(
            "SELECT t.user_id, t.device_id, t.expires_ms, u.is_admin, u.deactivated
             FROM access_tokens t JOIN users u ON u.user_id = t.user_id WHERE t.token = $1",
            &[&access_token],
        )
        .await?
        .map(|r| TokenOwner {
            user_id: r.get(0),
            device_id: r.get(1),
            expires_ms: r.get::<_, Option<i64>>(2).map(to_u64),
            is_admin: r.get::<_, i64>(3) != 0,
            deactivated: r.get::<_, i64>(4) != 0,
        }))
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
        self.pool
            .transaction(move |c| {
                Box::pin(async move {
                    // DELETE ... RETURNING: of two concurrent refreshes, only one gets the row.
                    let owner = c
                        .query_opt("DELETE FROM refresh_tokens WHERE token = $1 RETURNING user_id, device_id", &[&old])
                        .await?;
                    let Some(owner) = owner else { return Ok(None) };
                    let (user_id, device_id): (String, String) = (owner.get(0), owner.get(1));
                    c.execute("DELETE FROM access_tokens WHERE refresh_token = $1", &[&old]).await?;
                    c.execute(
                        "INSERT INTO access_tokens (token, user_id, device_id, expires_ms, refresh_token)
                         VALUES ($1, $2, $3, $4, $5)",
                        &[&access, &user_id, &device_id, &expires_ms.map(|v| v as i64), &refresh],
                    )
                    .await?;
                    c.execute(
                        "INSERT INTO refresh_tokens (token, user_id, device_id) VALUES ($1, $2, $3)",
                        &[&refresh, &user_id, &device_id],
                    )
                    .await?;
                    Ok(Some((user_id, device_id)))
                })
            })
            .await
    }

    async fn revoke_access_token(&self, access_token: &str) -> StorageResult<()> {
        let token = access_token.to_owned();
        self.pool
            .transaction(move |c| {
                Box::pin(async move {
                    c.execute(
                        "DELETE FROM refresh_tokens WHERE token = (SELECT refresh_token FROM access_tokens WHERE token = $1)",
                        &[&token],
                    )
                    .await?;
                    c.execute("DELETE FROM access_tokens WHERE token = $1", &[&token]).await?;
                    Ok(())
                })
            })
            .await
    }

    async fn list_devices(&self, user_id: &str) -> StorageResult<Vec<DeviceRecord>> {
        let mut c = self.pool.get().await?;
        Ok(c.query(
            "SELECT user_id, device_id, display_name, last_seen_ms, last_seen_ip FROM devices
             WHERE user_id = $1 ORDER BY device_id",
            &[&user_id],
        )
        .await?
        .iter()
        .map(device_from_row)
        .collect())
    }

    async fn get_device(&self, user_id: &str, device_id: &str) -> StorageResult<Option<DeviceRecord>> {
        let mut c = self.pool.get().await?;
        Ok(c.query_opt(
            "SELECT user_id, device_id, display_name, last_seen_ms, last_seen_ip FROM devices
             WHERE user_id = $1 AND device_id = $2",
            &[&user_id, &device_id],
        )
        .await?
        .as_ref()
        .map(device_from_row))
    }

    async fn set_device_display_name(
        &self,
        user_id: &str,
        device_id: &str,
        name: Option<String>,
    ) -> StorageResult<bool> {
        let mut c = self.pool.get().await?;
        Ok(c.execute(
            "UPDATE devices SET display_name = $3 WHERE user_id = $1 AND device_id = $2",
            &[&user_id, &device_id, &name],
        )
        .await?
            > 0)
    }

    async fn delete_devices(&self, user_id: &str, device_ids: &[String]) -> StorageResult<()> {
        let (user_id, device_ids) = (user_id.to_owned(), device_ids.to_vec());
        self.writer
            .write(move |c, positions| {
                Box::pin(async move { delete_device_rows(c, positions, &user_id, &device_ids).await })
            })
            .await
    }

    async fn delete_all_devices(&self, user_id: &str, keep: Option<&str>) -> StorageResult<()> {
        let (user_id, keep) = (user_id.to_owned(), keep.map(str::to_owned));
        self.writer
            .write(move |c, positions| {
                Box::pin(async move {
                    let ids: Vec<String> = c
                        .query("SELECT device_id FROM devices WHERE user_id = $1 AND device_id NOT IN (SELECT device_id FROM dehydrated_devices WHERE user_id = $1)", &[&user_id])
                        .await?
                        .iter()
                        .map(|r| r.get::<_, String>(0))
                        .filter(|d| Some(d.as_str()) != keep.as_deref())
                        .collect();
                    delete_device_rows(c, positions, &user_id, &ids).await
                })
            })
            .await
    }

    async fn touch_device(&self, user_id: &str, device_id: &str, ip: Option<String>, now_ms: u64) -> StorageResult<()> {
        let mut c = self.pool.get().await?;
        c.execute(
            "UPDATE devices SET last_seen_ms = $3, last_seen_ip = $4 WHERE user_id = $1 AND device_id = $2",
            &[&user_id, &device_id, &(now_ms as i64), &ip],
        )
        .await?;
        Ok(())
    }

    async fn create_login_token(&self, token: &str, user_id: &str, expires_ms: u64) -> StorageResult<()> {
        let mut c = self.pool.get().await?;
        c.execute(
            "INSERT INTO login_tokens (token, user_id, expires_ms) VALUES ($1, $2, $3)",
            &[&token, &user_id, &(expires_ms as i64)],
        )
        .await?;
        Ok(())
    }

    async fn take_login_token(&self, token: &str, now_ms: u64) -> StorageResult<Option<String>> {
        let (token, now) = (token.to_owned(), now_ms as i64);
        self.pool
            .transaction(move |c| {
                Box::pin(async move {
                    // DELETE ... RETURNING: a token is consumed by exactly one login, whichever
                    // process serves it.
                    let row = c
                        .query_opt("DELETE FROM login_tokens WHERE token = $1 RETURNING user_id, expires_ms", &[&token])
                        .await?;
                    c.execute("DELETE FROM login_tokens WHERE expires_ms < $1", &[&now]).await?;
                    Ok(row.filter(|r| r.get::<_, i64>(1) >= now).map(|r| r.get(0)))
                })
            })
            .await
    }
}
