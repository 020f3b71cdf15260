//! Registration tokens made through the admin API.

use async_trait::async_trait;

use crate::{Database, RegistrationTokenRecord, RegistrationTokenRepo, StorageResult, db::Row};

const COLUMNS: &str = "token, uses_allowed, pending, completed, expiry_time";

fn token_from_row(r: &Row<'_>) -> StorageResult<RegistrationTokenRecord> {
    Ok(RegistrationTokenRecord {
        token: r.get(0)?,
        uses_allowed: r.get(1)?,
        pending: r.get(2)?,
        completed: r.get(3)?,
        expiry_time: r.get(4)?,
    })
}

#[async_trait]
impl RegistrationTokenRepo for Database {
    async fn create_registration_token(&self, token: &RegistrationTokenRecord) -> StorageResult<bool> {
        let t = token.clone();
        self.transaction(move |c| {
            Box::pin(async move {
                let n = c
                    .execute(
                        "INSERT INTO registration_tokens (token, uses_allowed, pending, completed, expiry_time)
                         VALUES ($1, $2, 0, 0, $3) ON CONFLICT (token) DO NOTHING",
                        &[&t.token, &t.uses_allowed, &t.expiry_time],
                    )
                    .await?;
                Ok(n > 0)
            })
        })
        .await
    }

    async fn registration_token(&self, token: &str) -> StorageResult<Option<RegistrationTokenRecord>> {
        let token = token.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!("SELECT {COLUMNS} FROM registration_tokens WHERE token = $1");
                c.query_opt(&sql, &[&token], token_from_row).await
            })
        })
        .await
    }

    async fn registration_tokens(&self) -> StorageResult<Vec<RegistrationTokenRecord>> {
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!("SELECT {COLUMNS} FROM registration_tokens ORDER BY token");
                c.query(&sql, &[], token_from_row).await
            })
        })
        .await
    }

    async fn update_registration_token(
        &self,
        token: &str,
        uses_allowed: Option<Option<u64>>,
        expiry_time: Option<Option<u64>>,
    ) -> StorageResult<bool> {
        let token = token.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                let exists = c
                    .query_opt("SELECT token FROM registration_tokens WHERE token = $1", &[&token], |r| {
                        r.get::<String>(0)
                    })
                    .await?
                    .is_some();
                if !exists {
                    return Ok(false);
                }
                if let Some(uses) = uses_allowed {
                    c.execute("UPDATE registration_tokens SET uses_allowed = $2 WHERE token = $1", &[&token, &uses])
                        .await?;
                }
                if let Some(expiry) = expiry_time {
                    c.execute("UPDATE registration_tokens SET expiry_time = $2 WHERE token = $1", &[&token, &expiry])
                        .await?;
                }
                Ok(true)
            })
        })
        .await
    }

    async fn delete_registration_token(&self, token: &str) -> StorageResult<bool> {
        let token = token.to_owned();
        self.transaction(move |c| {
            Box::pin(
                async move { Ok(c.execute("DELETE FROM registration_tokens WHERE token = $1", &[&token]).await? > 0) },
            )
        })
        .await
    }

    async fn take_registration_token(&self, token: &str, now_ms: u64) -> StorageResult<bool> {
        let token = token.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                let n = c
                    .execute(
                        "UPDATE registration_tokens SET pending = pending + 1
                         WHERE token = $1
                           AND (uses_allowed IS NULL OR pending + completed < uses_allowed)
                           AND (expiry_time IS NULL OR expiry_time > $2)",
                        &[&token, &now_ms],
                    )
                    .await?;
                Ok(n > 0)
            })
        })
        .await
    }

    async fn complete_registration_token(&self, token: &str) -> StorageResult<()> {
        let token = token.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute(
                    "UPDATE registration_tokens SET pending = CASE WHEN pending > 0 THEN pending - 1 ELSE 0 END, completed = completed + 1
                     WHERE token = $1",
                    &[&token],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }
}
