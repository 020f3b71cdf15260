//! Bound email addresses and their validation sessions.

use async_trait::async_trait;
use myelin_core::types::{OwnedUserId, UserId};

use crate::{Database, StorageResult, ThreepidRecord, ThreepidRepo, ThreepidValidation, db::Row};

const VALIDATION_COLUMNS: &str =
    "sid, client_secret, medium, address, purpose, token, send_attempt, expires_ms, validated_ms";

fn validation(r: &Row<'_>) -> StorageResult<ThreepidValidation> {
    Ok(ThreepidValidation {
        sid: r.get(0)?,
        client_secret: r.get(1)?,
        medium: r.get(2)?,
        address: r.get(3)?,
        purpose: r.get(4)?,
        token: r.get(5)?,
        send_attempt: r.get(6)?,
        expires_ms: r.get(7)?,
        validated_ms: r.get(8)?,
    })
}

fn threepid(r: &Row<'_>) -> StorageResult<ThreepidRecord> {
    Ok(ThreepidRecord {
        medium: r.get(0)?,
        address: r.get(1)?,
        user_id: r.get(2)?,
        validated_ms: r.get(3)?,
        added_ms: r.get(4)?,
    })
}

#[async_trait]
impl ThreepidRepo for Database {
    async fn upsert_threepid_validation(&self, v: &ThreepidValidation) -> StorageResult<ThreepidValidation> {
        let v = v.clone();
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO threepid_validations (sid, client_secret, medium, address, purpose, token, send_attempt,
                                                       expires_ms, validated_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)
                     ON CONFLICT (client_secret, medium, address, purpose) DO UPDATE SET
                         token = excluded.token, send_attempt = excluded.send_attempt, expires_ms = excluded.expires_ms
                     WHERE threepid_validations.send_attempt < excluded.send_attempt",
                    &[&v.sid, &v.client_secret, &v.medium, &v.address, &v.purpose, &v.token, &v.send_attempt, &v.expires_ms],
                )
                .await?;
                c.query_one(
                    &format!(
                        "SELECT {VALIDATION_COLUMNS} FROM threepid_validations
                         WHERE client_secret = $1 AND medium = $2 AND address = $3 AND purpose = $4"
                    ),
                    &[&v.client_secret, &v.medium, &v.address, &v.purpose],
                    validation,
                )
                .await
            })
        })
        .await
    }

    async fn threepid_validation(&self, sid: &str) -> StorageResult<Option<ThreepidValidation>> {
        let sid = sid.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query_opt(
                    &format!("SELECT {VALIDATION_COLUMNS} FROM threepid_validations WHERE sid = $1"),
                    &[&sid],
                    validation,
                )
                .await
            })
        })
        .await
    }

    async fn validate_threepid(&self, sid: &str, client_secret: &str, token: &str, now_ms: u64) -> StorageResult<bool> {
        let (sid, client_secret, token) = (sid.to_owned(), client_secret.to_owned(), token.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                let changed = c
                    .execute(
                        "UPDATE threepid_validations SET validated_ms = COALESCE(validated_ms, $4)
                         WHERE sid = $1 AND client_secret = $2 AND token = $3 AND expires_ms > $4",
                        &[&sid, &client_secret, &token, &now_ms],
                    )
                    .await?;
                Ok(changed == 1)
            })
        })
        .await
    }

    async fn add_threepid(&self, record: &ThreepidRecord) -> StorageResult<bool> {
        let r = record.clone();
        self.transaction(move |c| {
            Box::pin(async move {
                let added = c
                    .execute(
                        "INSERT INTO user_threepids (medium, address, user_id, validated_ms, added_ms)
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (medium, address) DO NOTHING",
                        &[&r.medium, &r.address, &r.user_id, &r.validated_ms, &r.added_ms],
                    )
                    .await?;
                Ok(added == 1)
            })
        })
        .await
    }

    async fn threepid_owner(&self, medium: &str, address: &str) -> StorageResult<Option<OwnedUserId>> {
        let (medium, address) = (medium.to_owned(), address.to_owned());
        self.read(move |c| {
            Box::pin(async move {
                c.query_opt(
                    "SELECT user_id FROM user_threepids WHERE medium = $1 AND address = $2",
                    &[&medium, &address],
                    |r| r.get(0),
                )
                .await
            })
        })
        .await
    }

    async fn user_threepids(&self, user_id: &UserId) -> StorageResult<Vec<ThreepidRecord>> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query(
                    "SELECT medium, address, user_id, validated_ms, added_ms FROM user_threepids
                     WHERE user_id = $1 ORDER BY added_ms",
                    &[&user_id],
                    threepid,
                )
                .await
            })
        })
        .await
    }

    async fn delete_threepid(&self, user_id: &UserId, medium: &str, address: &str) -> StorageResult<bool> {
        let (user_id, medium, address) = (user_id.to_owned(), medium.to_owned(), address.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                let deleted = c
                    .execute(
                        "DELETE FROM user_threepids WHERE user_id = $1 AND medium = $2 AND address = $3",
                        &[&user_id, &medium, &address],
                    )
                    .await?;
                Ok(deleted == 1)
            })
        })
        .await
    }
}
