//! Other servers' signing keys.

use async_trait::async_trait;
use myelin_core::types::{OwnedServerName, ServerName};

use crate::{Database, ServerKeyRecord, ServerKeyRepo, StorageResult};

#[async_trait]
impl ServerKeyRepo for Database {
    async fn put_server_keys(&self, server: &ServerName, keys: Vec<ServerKeyRecord>) -> StorageResult<()> {
        let server = server.to_string();
        self.transaction(move |c| {
            Box::pin(async move {
                // A document holds a handful of keys: one statement each.
                for k in &keys {
                    c.execute(
                        "INSERT INTO server_keys
                             (server_name, key_id, public_key, valid_until_ts, expired_ts, key_json, fetched_ms)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)
                         ON CONFLICT (server_name, key_id) DO UPDATE SET public_key = excluded.public_key,
                             valid_until_ts = excluded.valid_until_ts, expired_ts = excluded.expired_ts,
                             key_json = excluded.key_json, fetched_ms = excluded.fetched_ms",
                        &[
                            &server,
                            &k.key_id,
                            &k.public_key,
                            &k.valid_until_ts,
                            &k.expired_ts,
                            &k.key_json,
                            &k.fetched_ms,
                        ],
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn server_keys(&self, server: &ServerName) -> StorageResult<Vec<ServerKeyRecord>> {
        let server = server.to_string();
        self.read(move |c| {
            Box::pin(async move {
                c.query(
                    "SELECT key_id, public_key, valid_until_ts, expired_ts, key_json, fetched_ms
                     FROM server_keys WHERE server_name = $1 ORDER BY key_id",
                    &[&server],
                    |r| {
                        Ok(ServerKeyRecord {
                            key_id: r.get(0)?,
                            public_key: r.get(1)?,
                            valid_until_ts: r.get(2)?,
                            expired_ts: r.get(3)?,
                            key_json: r.get(4)?,
                            fetched_ms: r.get(5)?,
                        })
                    },
                )
                .await
            })
        })
        .await
    }

    async fn key_servers(&self) -> StorageResult<Vec<OwnedServerName>> {
        self.read(move |c| {
            Box::pin(async move {
                c.query("SELECT DISTINCT server_name FROM server_keys ORDER BY server_name", &[], |r| r.get(0)).await
            })
        })
        .await
    }
}
