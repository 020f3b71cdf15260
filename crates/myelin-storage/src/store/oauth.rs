//! The OAuth 2.0 authorization server's clients, grants and browser sessions.

use async_trait::async_trait;
use myelin_core::types::{OwnedUserId, UserId};

use crate::{CodeGrantRecord, Database, DeviceGrantRecord, OAuthRepo, StorageResult, db::Row};

const CODE_COLUMNS: &str = "grant_id, client_id, redirect_uri, scope, state, nonce, response_mode, code_challenge,
    created_ms, code, user_id, device_id, consented_ms, exchanged_ms";

fn code_grant_from_row(r: &Row<'_>) -> StorageResult<CodeGrantRecord> {
    Ok(CodeGrantRecord {
        grant_id: r.get(0)?,
        client_id: r.get(1)?,
        redirect_uri: r.get(2)?,
        scope: r.get(3)?,
        state: r.get(4)?,
        nonce: r.get(5)?,
        response_mode: r.get(6)?,
        code_challenge: r.get(7)?,
        created_ms: r.get(8)?,
        code: r.get(9)?,
        user_id: r.get(10)?,
        device_id: r.get::<Option<String>>(11)?.map(Into::into),
        consented_ms: r.get(12)?,
        exchanged_ms: r.get(13)?,
    })
}

const DEVICE_COLUMNS: &str =
    "device_code, user_code, client_id, scope, created_ms, expires_ms, last_poll_ms, user_id, denied, exchanged_ms";

fn device_grant_from_row(r: &Row<'_>) -> StorageResult<DeviceGrantRecord> {
    Ok(DeviceGrantRecord {
        device_code: r.get(0)?,
        user_code: r.get(1)?,
        client_id: r.get(2)?,
        scope: r.get(3)?,
        created_ms: r.get(4)?,
        expires_ms: r.get(5)?,
        last_poll_ms: r.get(6)?,
        user_id: r.get(7)?,
        denied: r.get(8)?,
        exchanged_ms: r.get(9)?,
    })
}

#[async_trait]
impl OAuthRepo for Database {
    async fn create_oauth_client(&self, client_id: &str, metadata: &str, now_ms: u64) -> StorageResult<()> {
        let (client_id, metadata) = (client_id.to_owned(), metadata.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO oauth_clients (client_id, metadata, created_ms) VALUES ($1, $2, $3)",
                    &[&client_id, &metadata, &now_ms],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn oauth_client(&self, client_id: &str) -> StorageResult<Option<String>> {
        let client_id = client_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query_opt("SELECT metadata FROM oauth_clients WHERE client_id = $1", &[&client_id], |r| r.get(0))
                    .await
            })
        })
        .await
    }

    async fn create_code_grant(&self, grant: &CodeGrantRecord) -> StorageResult<()> {
        let g = grant.clone();
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO oauth_code_grants (grant_id, client_id, redirect_uri, scope, state, nonce, response_mode,
                         code_challenge, created_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    &[
                        &g.grant_id,
                        &g.client_id,
                        &g.redirect_uri,
                        &g.scope,
                        &g.state,
                        &g.nonce,
                        &g.response_mode,
                        &g.code_challenge,
                        &g.created_ms,
                    ],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn code_grant(&self, grant_id: &str) -> StorageResult<Option<CodeGrantRecord>> {
        let grant_id = grant_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!("SELECT {CODE_COLUMNS} FROM oauth_code_grants WHERE grant_id = $1");
                c.query_opt(&sql, &[&grant_id], code_grant_from_row).await
            })
        })
        .await
    }

    async fn consent_code_grant(
        &self,
        grant_id: &str,
        code: &str,
        user_id: &UserId,
        device_id: &str,
        now_ms: u64,
    ) -> StorageResult<bool> {
        let (grant_id, code, user_id, device_id) =
            (grant_id.to_owned(), code.to_owned(), user_id.to_owned(), device_id.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                let n = c
                    .execute(
                        "UPDATE oauth_code_grants SET code = $2, user_id = $3, device_id = $4, consented_ms = $5
                         WHERE grant_id = $1 AND code IS NULL",
                        &[&grant_id, &code, &user_id, &device_id, &now_ms],
                    )
                    .await?;
                Ok(n > 0)
            })
        })
        .await
    }

    async fn exchange_code(&self, code: &str, now_ms: u64) -> StorageResult<Option<(CodeGrantRecord, bool)>> {
        let code = code.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                let sql = format!("SELECT {CODE_COLUMNS} FROM oauth_code_grants WHERE code = $1 FOR UPDATE");
                let Some(grant) = c.query_opt(&sql, &[&code], code_grant_from_row).await? else { return Ok(None) };
                let first = grant.exchanged_ms.is_none();
                if first {
                    c.execute("UPDATE oauth_code_grants SET exchanged_ms = $2 WHERE code = $1", &[&code, &now_ms])
                        .await?;
                }
                Ok(Some((grant, first)))
            })
        })
        .await
    }

    async fn create_device_grant(&self, grant: &DeviceGrantRecord) -> StorageResult<bool> {
        let g = grant.clone();
        self.transaction(move |c| {
            Box::pin(async move {
                let n = c
                    .execute(
                        "INSERT INTO oauth_device_grants (device_code, user_code, client_id, scope, created_ms, expires_ms)
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                        &[&g.device_code, &g.user_code, &g.client_id, &g.scope, &g.created_ms, &g.expires_ms],
                    )
                    .await?;
                Ok(n > 0)
            })
        })
        .await
    }

    async fn device_grant_by_user_code(&self, user_code: &str) -> StorageResult<Option<DeviceGrantRecord>> {
        let user_code = user_code.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!("SELECT {DEVICE_COLUMNS} FROM oauth_device_grants WHERE user_code = $1");
                c.query_opt(&sql, &[&user_code], device_grant_from_row).await
            })
        })
        .await
    }

    async fn decide_device_grant(&self, user_code: &str, user_id: Option<&UserId>) -> StorageResult<bool> {
        let (user_code, user_id) = (user_code.to_owned(), user_id.map(ToOwned::to_owned));
        let denied = i64::from(user_id.is_none());
        self.transaction(move |c| {
            Box::pin(async move {
                let n = c
                    .execute(
                        "UPDATE oauth_device_grants SET user_id = $2, denied = $3
                         WHERE user_code = $1 AND user_id IS NULL AND denied = 0",
                        &[&user_code, &user_id, &denied],
                    )
                    .await?;
                Ok(n > 0)
            })
        })
        .await
    }

    async fn poll_device_grant(&self, device_code: &str, now_ms: u64) -> StorageResult<Option<DeviceGrantRecord>> {
        let device_code = device_code.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                let sql = format!("SELECT {DEVICE_COLUMNS} FROM oauth_device_grants WHERE device_code = $1 FOR UPDATE");
                let grant = c.query_opt(&sql, &[&device_code], device_grant_from_row).await?;
                if grant.is_some() {
                    c.execute(
                        "UPDATE oauth_device_grants SET last_poll_ms = $2 WHERE device_code = $1",
                        &[&device_code, &now_ms],
                    )
                    .await?;
                }
                Ok(grant)
            })
        })
        .await
    }

    async fn exchange_device_grant(&self, device_code: &str, now_ms: u64) -> StorageResult<bool> {
        let device_code = device_code.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                let n = c
                    .execute(
                        "UPDATE oauth_device_grants SET exchanged_ms = $2
                         WHERE device_code = $1 AND exchanged_ms IS NULL AND user_id IS NOT NULL",
                        &[&device_code, &now_ms],
                    )
                    .await?;
                Ok(n > 0)
            })
        })
        .await
    }

    async fn create_web_session(
        &self,
        session_id: &str,
        user_id: &UserId,
        now_ms: u64,
        expires_ms: u64,
        pending_second_factor: bool,
    ) -> StorageResult<()> {
        let (session_id, user_id) = (session_id.to_owned(), user_id.to_owned());
        let pending = i64::from(pending_second_factor);
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO web_sessions (session_id, user_id, created_ms, expires_ms, pending_second_factor)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[&session_id, &user_id, &now_ms, &expires_ms, &pending],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn web_session_user(&self, session_id: &str, now_ms: u64) -> StorageResult<Option<(OwnedUserId, bool)>> {
        let session_id = session_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query_opt(
                    "SELECT s.user_id, s.pending_second_factor FROM web_sessions s JOIN users u ON u.user_id = s.user_id
                     WHERE s.session_id = $1 AND s.expires_ms > $2 AND u.deactivated = 0 AND u.locked = 0",
                    &[&session_id, &now_ms],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .await
            })
        })
        .await
    }

    async fn complete_web_session(&self, session_id: &str) -> StorageResult<()> {
        let session_id = session_id.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute("UPDATE web_sessions SET pending_second_factor = 0 WHERE session_id = $1", &[&session_id])
                    .await?;
                Ok(())
            })
        })
        .await
    }

    async fn start_totp(&self, user_id: &UserId, secret: &str, now_ms: u64) -> StorageResult<bool> {
        let (user_id, secret) = (user_id.to_owned(), secret.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                let confirmed: Option<bool> = c
                    .query_opt("SELECT confirmed FROM totp_secrets WHERE user_id = $1 FOR UPDATE", &[&user_id], |r| r.get(0))
                    .await?;
                if confirmed == Some(true) {
                    return Ok(false);
                }
                c.execute("DELETE FROM totp_secrets WHERE user_id = $1", &[&user_id]).await?;
                c.execute(
                    "INSERT INTO totp_secrets (user_id, secret, confirmed, created_ms, last_step) VALUES ($1, $2, 0, $3, 0)",
                    &[&user_id, &secret, &now_ms],
                )
                .await?;
                Ok(true)
            })
        })
        .await
    }

    async fn totp(&self, user_id: &UserId) -> StorageResult<Option<(String, bool, u64)>> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query_opt(
                    "SELECT secret, confirmed, last_step FROM totp_secrets WHERE user_id = $1",
                    &[&user_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .await
            })
        })
        .await
    }

    async fn accept_totp_step(&self, user_id: &UserId, step: u64) -> StorageResult<bool> {
        let user_id = user_id.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                let n = c
                    .execute(
                        "UPDATE totp_secrets SET last_step = $2, confirmed = 1 WHERE user_id = $1 AND last_step < $2",
                        &[&user_id, &step],
                    )
                    .await?;
                Ok(n > 0)
            })
        })
        .await
    }

    async fn remove_totp(&self, user_id: &UserId) -> StorageResult<()> {
        let user_id = user_id.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute("DELETE FROM totp_secrets WHERE user_id = $1", &[&user_id]).await?;
                c.execute("DELETE FROM recovery_codes WHERE user_id = $1", &[&user_id]).await?;
                Ok(())
            })
        })
        .await
    }

    async fn set_recovery_codes(&self, user_id: &UserId, code_hashes: &[String]) -> StorageResult<()> {
        let (user_id, hashes) = (user_id.to_owned(), code_hashes.to_vec());
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute("DELETE FROM recovery_codes WHERE user_id = $1", &[&user_id]).await?;
                for hash in &hashes {
                    c.execute("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)", &[&user_id, hash])
                        .await?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn use_recovery_code(&self, user_id: &UserId, code_hash: &str, now_ms: u64) -> StorageResult<bool> {
        let (user_id, hash) = (user_id.to_owned(), code_hash.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                let n = c
                    .execute(
                        "UPDATE recovery_codes SET used_ms = $3 WHERE user_id = $1 AND code_hash = $2 AND used_ms IS NULL",
                        &[&user_id, &hash, &now_ms],
                    )
                    .await?;
                Ok(n > 0)
            })
        })
        .await
    }

    async fn has_second_factor(&self, user_id: &UserId) -> StorageResult<bool> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let confirmed: Option<bool> = c
                    .query_opt("SELECT confirmed FROM totp_secrets WHERE user_id = $1", &[&user_id], |r| r.get(0))
                    .await?;
                Ok(confirmed == Some(true))
            })
        })
        .await
    }

    async fn delete_web_session(&self, session_id: &str) -> StorageResult<()> {
        let session_id = session_id.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute("DELETE FROM web_sessions WHERE session_id = $1", &[&session_id]).await?;
                Ok(())
            })
        })
        .await
    }

    async fn delete_expired_oauth_rows(&self, now_ms: u64, grants_before_ms: u64) -> StorageResult<u64> {
        self.transaction(move |c| {
            Box::pin(async move {
                let mut n = c.execute("DELETE FROM web_sessions WHERE expires_ms <= $1", &[&now_ms]).await?;
                n += c.execute("DELETE FROM oauth_code_grants WHERE created_ms < $1", &[&grants_before_ms]).await?;
                n += c.execute("DELETE FROM oauth_device_grants WHERE expires_ms <= $1", &[&now_ms]).await?;
                Ok(n)
            })
        })
        .await
    }

    async fn set_user_locked(&self, user_id: &UserId, locked: bool) -> StorageResult<bool> {
        let _forget = super::notified::TokenOwnersChanged(self, user_id);
        let user_id = user_id.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                let locked = i64::from(locked);
                let n = c.execute("UPDATE users SET locked = $2 WHERE user_id = $1", &[&user_id, &locked]).await?;
                Ok(n > 0)
            })
        })
        .await
    }

    async fn user_locked(&self, user_id: &UserId) -> StorageResult<bool> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let locked: Option<bool> =
                    c.query_opt("SELECT locked FROM users WHERE user_id = $1", &[&user_id], |r| r.get(0)).await?;
                Ok(locked.unwrap_or(false))
            })
        })
        .await
    }

    async fn approve_cross_signing_reset(&self, user_id: &UserId, until_ms: u64) -> StorageResult<()> {
        let user_id = user_id.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute(
                    "UPDATE users SET cross_signing_reset_until_ms = $2 WHERE user_id = $1",
                    &[&user_id, &until_ms],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn cross_signing_reset_until(&self, user_id: &UserId) -> StorageResult<Option<u64>> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let until: Option<Option<u64>> = c
                    .query_opt("SELECT cross_signing_reset_until_ms FROM users WHERE user_id = $1", &[&user_id], |r| {
                        r.get(0)
                    })
                    .await?;
                Ok(until.flatten())
            })
        })
        .await
    }
}
