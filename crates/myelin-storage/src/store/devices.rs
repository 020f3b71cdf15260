//! Devices, access tokens, refresh tokens and login tokens.

use async_trait::async_trait;

use super::{
    keys::record_change,
    notified::{DevicesChanged, PerUserCache, TokenOwnersChanged},
};
use myelin_core::types::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};

use crate::{
    Database, DeviceRecord, DeviceRepo, NewSession, OAuthSessionInfo, RefreshOutcome, SessionRefresh, StorageResult,
    TokenOwner,
    db::{Conn, Positions, Row},
};

/// Everything kept per device, deleted with it. The inbox goes up to now: messages for a reused
/// device id that commit later are kept.
const DEVICE_TABLES: [&str; 10] = [
    "access_tokens",
    "refresh_tokens",
    "devices",
    "device_keys",
    "one_time_keys",
    "claimed_one_time_keys",
    "fallback_keys",
    "to_device_inbox",
    "sliding_sync_connections",
    // A signed-out phone gets no more notifications.
    "pushers",
];

/// Deletes the devices' rows everywhere and records a device-list change (in a stream write).
pub(crate) async fn delete_devices(
    c: &mut Conn<'_>,
    positions: &mut Positions,
    user_id: &UserId,
    device_ids: &[OwnedDeviceId],
) -> StorageResult<()> {
    for table in DEVICE_TABLES {
        c.execute(&format!("DELETE FROM {table} WHERE user_id = $1 AND device_id = ANY($2)"), &[&user_id, &device_ids])
            .await?;
    }
    record_change(c, positions, user_id).await?;
    Ok(())
}

/// Forgets one token's owner when dropped (as [`TokenOwnersChanged`] does a user's).
struct ForgetKey<'a>(&'a PerUserCache<TokenOwner>, &'a str);

impl Drop for ForgetKey<'_> {
    fn drop(&mut self) {
        self.0.forget_key(self.1);
    }
}

const DEVICE_COLUMNS: &str = "user_id, device_id, display_name, last_seen_ms, last_seen_ip";

fn device_from_row(r: &Row<'_>) -> StorageResult<DeviceRecord> {
    Ok(DeviceRecord {
        user_id: r.get(0)?,
        device_id: r.get(1)?,
        display_name: r.get(2)?,
        last_seen_ms: r.get(3)?,
        last_seen_ip: r.get(4)?,
    })
}

#[async_trait]
impl DeviceRepo for Database {
    async fn create_session(&self, s: NewSession) -> StorageResult<()> {
        // A reused device id's old tokens go.
        let user = s.user_id.clone();
        let _forget = TokenOwnersChanged(self, &user);
        let client = s.oauth.as_ref().map(|o| o.client_id.clone());
        let scope = s.oauth.as_ref().map(|o| o.scope.clone());
        self.transaction(move |c| {
            Box::pin(async move {
                let inserted = c
                    .execute(
                        "INSERT INTO devices (user_id, device_id, display_name, created_ms, oauth_client_id, oauth_scope)
                         VALUES ($1, $2, $3, $4, $5, $6)
                         ON CONFLICT (user_id, device_id) DO NOTHING",
                        &[&s.user_id, &s.device_id, &s.display_name, &s.created_ms, &client, &scope],
                    )
                    .await?;
                if inserted == 0 {
                    // The device is now this session's (an OAuth client's, or a password login's).
                    c.execute(
                        "UPDATE devices SET oauth_client_id = $3, oauth_scope = $4 WHERE user_id = $1 AND device_id = $2",
                        &[&s.user_id, &s.device_id, &client, &scope],
                    )
                    .await?;
                    // A login that reuses a device id replaces that device's sessions.
                    for table in ["access_tokens", "refresh_tokens"] {
                        c.execute(
                            &format!("DELETE FROM {table} WHERE user_id = $1 AND device_id = $2"),
                            &[&s.user_id, &s.device_id],
                        )
                        .await?;
                    }
                }
                c.execute(
                    "INSERT INTO access_tokens (token, user_id, device_id, expires_ms, refresh_token)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[&s.access_token, &s.user_id, &s.device_id, &s.expires_ms, &s.refresh_token],
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
        // PostgreSQL: the owner this process read before, while nothing said it changed.
        let read = || {
            let token = access_token.to_owned();
            self.read(move |c| {
                Box::pin(async move {
                    c.query_opt(
                        "SELECT t.user_id, t.device_id, t.expires_ms, u.is_admin, u.deactivated, u.is_guest, u.locked
                     FROM access_tokens t JOIN users u ON u.user_id = t.user_id WHERE t.token = $1",
                        &[&token],
                        |r| {
                            Ok(TokenOwner {
                                user_id: r.get(0)?,
                                device_id: r.get(1)?,
                                expires_ms: r.get(2)?,
                                is_admin: r.get(3)?,
                                deactivated: r.get(4)?,
                                is_guest: r.get(5)?,
                                locked: r.get(6)?,
                            })
                        },
                    )
                    .await
                })
            })
        };
        let keep = self.postgres().is_some();
        self.notified.token_owners.get_or_read(keep, access_token, |owner| owner.user_id.clone(), read).await
    }

    async fn refresh_session(&self, refresh: SessionRefresh) -> StorageResult<RefreshOutcome> {
        let SessionRefresh { refresh_token: old, new_access_token: access, new_refresh_token: refresh, expires_ms } =
            refresh;
        let outcome = self.transaction(move |c| {
            Box::pin(async move {
                // The row lock orders concurrent refreshes of one token: the second sees the
                // first's successor and gets the same pair.
                let row: Option<(OwnedUserId, OwnedDeviceId, Option<String>)> = c
                    .query_opt(
                        "SELECT user_id, device_id, successor FROM refresh_tokens WHERE token = $1 FOR UPDATE",
                        &[&old],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .await?;
                let Some((user_id, device_id, successor)) = row else { return Ok(RefreshOutcome::Unknown) };
                if let Some(successor) = successor {
                    let successor_used: Option<Option<String>> = c
                        .query_opt("SELECT successor FROM refresh_tokens WHERE token = $1", &[&successor], |r| r.get(0))
                        .await?;
                    let pair: Option<(String, Option<u64>)> = c
                        .query_opt(
                            "SELECT token, expires_ms FROM access_tokens WHERE refresh_token = $1",
                            &[&successor],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .await?;
                    return Ok(match (successor_used, pair) {
                        (Some(None), Some((access_token, expires_ms))) => RefreshOutcome::Refreshed {
                            user_id,
                            device_id,
                            access_token,
                            refresh_token: successor,
                            expires_ms,
                        },
                        _ => RefreshOutcome::Replayed { user_id, device_id },
                    });
                }
                // The one before the token's predecessor is no longer needed to recognise a replay.
                c.execute(
                    "DELETE FROM refresh_tokens WHERE successor = (SELECT token FROM refresh_tokens WHERE successor = $1)",
                    &[&old],
                )
                .await?;
                c.execute("DELETE FROM access_tokens WHERE refresh_token = $1", &[&old]).await?;
                c.execute("UPDATE refresh_tokens SET successor = $2 WHERE token = $1", &[&old, &refresh]).await?;
                c.execute(
                    "INSERT INTO access_tokens (token, user_id, device_id, expires_ms, refresh_token)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[&access, &user_id, &device_id, &expires_ms, &refresh],
                )
                .await?;
                c.execute(
                    "INSERT INTO refresh_tokens (token, user_id, device_id) VALUES ($1, $2, $3)",
                    &[&refresh, &user_id, &device_id],
                )
                .await?;
                Ok(RefreshOutcome::Refreshed { user_id, device_id, access_token: access, refresh_token: refresh, expires_ms })
            })
        })
        .await;
        // The old access token went (or, on an error, may have).
        match &outcome {
            Ok(RefreshOutcome::Refreshed { user_id, .. } | RefreshOutcome::Replayed { user_id, .. }) => {
                self.notified.token_owners.forget_user(user_id);
            }
            Ok(RefreshOutcome::Unknown) => {}
            Err(_) => self.notified.token_owners.forget_all(),
        }
        outcome
    }

    async fn oauth_session(&self, user_id: &UserId, device_id: &DeviceId) -> StorageResult<Option<OAuthSessionInfo>> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        self.read(move |c| {
            Box::pin(async move {
                let row: Option<(Option<String>, Option<String>)> = c
                    .query_opt(
                        "SELECT oauth_client_id, oauth_scope FROM devices WHERE user_id = $1 AND device_id = $2",
                        &[&user_id, &device_id],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .await?;
                Ok(row.and_then(|(client, scope)| Some(OAuthSessionInfo { client_id: client?, scope: scope? })))
            })
        })
        .await
    }

    async fn token_device(&self, token: &str) -> StorageResult<Option<(OwnedUserId, OwnedDeviceId)>> {
        let token = token.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let access = c
                    .query_opt("SELECT user_id, device_id FROM access_tokens WHERE token = $1", &[&token], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .await?;
                if access.is_some() {
                    return Ok(access);
                }
                c.query_opt("SELECT user_id, device_id FROM refresh_tokens WHERE token = $1", &[&token], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .await
            })
        })
        .await
    }

    async fn revoke_access_token(&self, access_token: &str) -> StorageResult<()> {
        let _forget = ForgetKey(&self.notified.token_owners, access_token);
        let token = access_token.to_owned();
        self.transaction(move |c| {
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

    async fn list_devices(&self, user_id: &UserId) -> StorageResult<Vec<DeviceRecord>> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = $1 ORDER BY device_id");
                c.query(&sql, &[&user_id], device_from_row).await
            })
        })
        .await
    }

    async fn get_device(&self, user_id: &UserId, device_id: &DeviceId) -> StorageResult<Option<DeviceRecord>> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = $1 AND device_id = $2");
                c.query_opt(&sql, &[&user_id, &device_id], device_from_row).await
            })
        })
        .await
    }

    async fn set_device_display_name(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        name: Option<String>,
    ) -> StorageResult<bool> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                let changed = c
                    .execute(
                        "UPDATE devices SET display_name = $3 WHERE user_id = $1 AND device_id = $2",
                        &[&user_id, &device_id, &name],
                    )
                    .await?;
                Ok(changed > 0)
            })
        })
        .await
    }

    async fn delete_devices(&self, user_id: &UserId, device_ids: &[OwnedDeviceId]) -> StorageResult<()> {
        let _forget = DevicesChanged::of(self, user_id);
        let (user_id, device_ids) = (user_id.to_owned(), device_ids.to_vec());
        self.write(move |c, positions| {
            Box::pin(async move { delete_devices(c, positions, &user_id, &device_ids).await })
        })
        .await
    }

    async fn delete_all_devices(&self, user_id: &UserId, keep: Option<&DeviceId>) -> StorageResult<()> {
        let _forget = DevicesChanged::of(self, user_id);
        let (user_id, keep) = (user_id.to_owned(), keep.map(ToOwned::to_owned));
        self.write(move |c, positions| {
            Box::pin(async move {
                let ids: Vec<OwnedDeviceId> = c
                    .query(
                        "SELECT device_id FROM devices WHERE user_id = $1
                         AND device_id NOT IN (SELECT device_id FROM dehydrated_devices WHERE user_id = $1)",
                        &[&user_id],
                        |r| r.get::<OwnedDeviceId>(0),
                    )
                    .await?
                    .into_iter()
                    .filter(|d| Some(d) != keep.as_ref())
                    .collect();
                delete_devices(c, positions, &user_id, &ids).await
            })
        })
        .await
    }

    async fn touch_device(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        ip: Option<String>,
        now_ms: u64,
    ) -> StorageResult<()> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        self.transaction_relaxed(move |c| {
            Box::pin(async move {
                c.execute(
                    "UPDATE devices SET last_seen_ms = $3, last_seen_ip = $4 WHERE user_id = $1 AND device_id = $2",
                    &[&user_id, &device_id, &now_ms, &ip],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn create_login_token(&self, token: &str, user_id: &UserId, expires_ms: u64) -> StorageResult<()> {
        let (token, user_id) = (token.to_owned(), user_id.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO login_tokens (token, user_id, expires_ms) VALUES ($1, $2, $3)",
                    &[&token, &user_id, &expires_ms],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn take_login_token(&self, token: &str, now_ms: u64) -> StorageResult<Option<OwnedUserId>> {
        let token = token.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                // DELETE ... RETURNING: a token is consumed by exactly one login, whichever
                // process serves it.
                let row: Option<(OwnedUserId, u64)> = c
                    .query_opt(
                        "DELETE FROM login_tokens WHERE token = $1 RETURNING user_id, expires_ms",
                        &[&token],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .await?;
                Ok(row.filter(|(_, expires)| *expires >= now_ms).map(|(user, _)| user))
            })
        })
        .await
    }

    async fn delete_expired_login_tokens(&self, now_ms: u64) -> StorageResult<u64> {
        self.transaction(move |c| {
            Box::pin(async move { c.execute("DELETE FROM login_tokens WHERE expires_ms < $1", &[&now_ms]).await })
        })
        .await
    }
}
