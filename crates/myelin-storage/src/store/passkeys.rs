//! Passkeys (WebAuthn credentials) and their one-time challenges.

use async_trait::async_trait;
use myelin_core::types::{OwnedUserId, UserId};

use crate::{Database, PasskeyRecord, PasskeyRepo, StorageResult, db::Row};

const COLUMNS: &str = "credential_id, user_id, public_key, sign_count, name, created_ms, last_used_ms";

fn from_row(r: &Row<'_>) -> StorageResult<PasskeyRecord> {
    Ok(PasskeyRecord {
        credential_id: r.get(0)?,
        user_id: r.get(1)?,
        public_key: r.get(2)?,
        sign_count: r.get(3)?,
        name: r.get(4)?,
        created_ms: r.get(5)?,
        last_used_ms: r.get(6)?,
    })
}

#[async_trait]
impl PasskeyRepo for Database {
    async fn add_passkey(&self, passkey: &PasskeyRecord) -> StorageResult<bool> {
        let p = passkey.clone();
        self.transaction(move |c| {
            Box::pin(async move {
                let n = c
                    .execute(
                        "INSERT INTO passkeys (credential_id, user_id, public_key, sign_count, name, created_ms)
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (credential_id) DO NOTHING",
                        &[&p.credential_id, &p.user_id, &p.public_key, &p.sign_count, &p.name, &p.created_ms],
                    )
                    .await?;
                Ok(n > 0)
            })
        })
        .await
    }

    async fn passkey(&self, credential_id: &str) -> StorageResult<Option<PasskeyRecord>> {
        let id = credential_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!("SELECT {COLUMNS} FROM passkeys WHERE credential_id = $1");
                c.query_opt(&sql, &[&id], from_row).await
            })
        })
        .await
    }

    async fn passkeys(&self, user_id: &UserId) -> StorageResult<Vec<PasskeyRecord>> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!("SELECT {COLUMNS} FROM passkeys WHERE user_id = $1 ORDER BY created_ms");
                c.query(&sql, &[&user_id], from_row).await
            })
        })
        .await
    }

    async fn use_passkey(&self, credential_id: &str, sign_count: u64, now_ms: u64) -> StorageResult<bool> {
        let id = credential_id.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                let n = c
                    .execute(
                        "UPDATE passkeys SET sign_count = $2, last_used_ms = $3
                         WHERE credential_id = $1 AND (sign_count < $2 OR (sign_count = 0 AND $2 = 0))",
                        &[&id, &sign_count, &now_ms],
                    )
                    .await?;
                Ok(n > 0)
            })
        })
        .await
    }

    async fn delete_passkey(&self, user_id: &UserId, credential_id: &str) -> StorageResult<bool> {
        let (user_id, id) = (user_id.to_owned(), credential_id.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                let n = c
                    .execute("DELETE FROM passkeys WHERE user_id = $1 AND credential_id = $2", &[&user_id, &id])
                    .await?;
                Ok(n > 0)
            })
        })
        .await
    }

    async fn create_webauthn_challenge(
        &self,
        challenge: &str,
        user_id: Option<&UserId>,
        purpose: &str,
        expires_ms: u64,
    ) -> StorageResult<()> {
        let (challenge, user_id, purpose) = (challenge.to_owned(), user_id.map(ToOwned::to_owned), purpose.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                // Expired challenges go with each new one.
                c.execute(
                    "DELETE FROM webauthn_challenges WHERE expires_ms < $1",
                    &[&expires_ms.saturating_sub(3_600_000)],
                )
                .await?;
                c.execute(
                    "INSERT INTO webauthn_challenges (challenge, user_id, purpose, expires_ms) VALUES ($1, $2, $3, $4)",
                    &[&challenge, &user_id, &purpose, &expires_ms],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn take_webauthn_challenge(
        &self,
        challenge: &str,
        purpose: &str,
        now_ms: u64,
    ) -> StorageResult<Option<Option<OwnedUserId>>> {
        let (challenge, purpose) = (challenge.to_owned(), purpose.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                let row: Option<(Option<OwnedUserId>, u64)> = c
                    .query_opt(
                        "DELETE FROM webauthn_challenges WHERE challenge = $1 AND purpose = $2 RETURNING user_id, expires_ms",
                        &[&challenge, &purpose],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .await?;
                Ok(row.filter(|(_, expires)| *expires > now_ms).map(|(user, _)| user))
            })
        })
        .await
    }
}
