//! Remote users' device lists, local users' device-list stream ids for other servers, and
//! OpenID tokens.

use async_trait::async_trait;
use myelin_core::types::{OwnedUserId, UserId};

use crate::{
    Database, RemoteDevice, RemoteDeviceChange, RemoteDeviceListState, RemoteDeviceRepo, StorageResult, StreamPos,
    db::{Conn, ToValue},
    store::keys::record_change,
};

/// Replaces the stored cross-signing keys of these types.
async fn put_cross_signing(c: &mut Conn<'_>, user: &UserId, keys: &[(String, String)]) -> StorageResult<()> {
    for (key_type, json) in keys {
        c.execute(
            "INSERT INTO remote_cross_signing_keys (user_id, key_type, json) VALUES ($1, $2, $3)
             ON CONFLICT (user_id, key_type) DO UPDATE SET json = excluded.json",
            &[&user, key_type, json],
        )
        .await?;
    }
    Ok(())
}

async fn put_device(c: &mut Conn<'_>, user: &UserId, device: &RemoteDevice) -> StorageResult<()> {
    c.execute(
        "INSERT INTO remote_devices (user_id, device_id, keys_json, display_name) VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_id, device_id) DO UPDATE SET keys_json = excluded.keys_json,
             display_name = excluded.display_name",
        &[&user, &device.device_id, &device.keys, &device.display_name],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl RemoteDeviceRepo for Database {
    async fn remote_device_list_state(&self, user_id: &UserId) -> StorageResult<Option<RemoteDeviceListState>> {
        let user = user_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query_opt("SELECT stream_id, stale FROM remote_device_lists WHERE user_id = $1", &[&user], |r| {
                    Ok(RemoteDeviceListState { stream_id: r.get(0)?, stale: r.get::<i64>(1)? != 0 })
                })
                .await
            })
        })
        .await
    }

    async fn update_remote_device_list(
        &self,
        user_id: &UserId,
        change: RemoteDeviceChange,
    ) -> StorageResult<StreamPos> {
        let user = user_id.to_owned();
        self.write(move |c, positions| {
            Box::pin(async move {
                match &change {
                    RemoteDeviceChange::Resync { stream_id, devices, cross_signing } => {
                        c.execute("DELETE FROM remote_devices WHERE user_id = $1", &[&user]).await?;
                        c.execute("DELETE FROM remote_cross_signing_keys WHERE user_id = $1", &[&user]).await?;
                        let rows: Vec<Vec<&dyn ToValue>> = devices
                            .iter()
                            .map(|d| -> Vec<&dyn ToValue> { vec![&user, &d.device_id, &d.keys, &d.display_name] })
                            .collect();
                        if !rows.is_empty() {
                            c.insert_rows(
                                "INSERT INTO remote_devices (user_id, device_id, keys_json, display_name)",
                                &rows,
                            )
                            .await?;
                        }
                        put_cross_signing(c, &user, cross_signing).await?;
                        c.execute(
                            "INSERT INTO remote_device_lists (user_id, stream_id, stale) VALUES ($1, $2, 0)
                             ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id, stale = 0",
                            &[&user, stream_id],
                        )
                        .await?;
                    }
                    RemoteDeviceChange::Device { stream_id, device, deleted } => {
                        if *deleted {
                            c.execute(
                                "DELETE FROM remote_devices WHERE user_id = $1 AND device_id = $2",
                                &[&user, &device.device_id],
                            )
                            .await?;
                        } else {
                            put_device(c, &user, device).await?;
                        }
                        c.execute(
                            "UPDATE remote_device_lists SET stream_id = $2 WHERE user_id = $1",
                            &[&user, stream_id],
                        )
                        .await?;
                    }
                    RemoteDeviceChange::CrossSigning(keys) => put_cross_signing(c, &user, keys).await?,
                }
                record_change(c, positions, &user).await
            })
        })
        .await
    }

    async fn mark_remote_device_list_stale(&self, user_id: &UserId) -> StorageResult<()> {
        let user = user_id.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute("UPDATE remote_device_lists SET stale = 1 WHERE user_id = $1", &[&user]).await?;
                Ok(())
            })
        })
        .await
    }

    async fn forget_remote_device_list(&self, user_id: &UserId) -> StorageResult<()> {
        let user = user_id.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute("DELETE FROM remote_devices WHERE user_id = $1", &[&user]).await?;
                c.execute("DELETE FROM remote_cross_signing_keys WHERE user_id = $1", &[&user]).await?;
                c.execute("DELETE FROM remote_device_lists WHERE user_id = $1", &[&user]).await?;
                Ok(())
            })
        })
        .await
    }

    async fn remote_devices(&self, user_id: &UserId) -> StorageResult<Vec<RemoteDevice>> {
        let user = user_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query(
                    "SELECT device_id, keys_json, display_name FROM remote_devices WHERE user_id = $1
                     ORDER BY device_id",
                    &[&user],
                    |r| Ok(RemoteDevice { device_id: r.get(0)?, keys: r.get(1)?, display_name: r.get(2)? }),
                )
                .await
            })
        })
        .await
    }

    async fn remote_cross_signing_keys(&self, user_id: &UserId) -> StorageResult<Vec<(String, String)>> {
        let user = user_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query(
                    "SELECT key_type, json FROM remote_cross_signing_keys WHERE user_id = $1 ORDER BY key_type",
                    &[&user],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .await
            })
        })
        .await
    }

    async fn next_device_list_stream_ids(&self, user_id: &UserId, count: u32) -> StorageResult<(i64, i64)> {
        let user = user_id.to_owned();
        let count = i64::from(count.max(1));
        self.transaction(move |c| {
            Box::pin(async move {
                // One statement: two processes taking ids for the same user get disjoint ones.
                let last: i64 = c
                    .query_one(
                        "INSERT INTO local_device_list_streams (user_id, stream_id) VALUES ($1, $2)
                         ON CONFLICT (user_id) DO UPDATE
                             SET stream_id = local_device_list_streams.stream_id + excluded.stream_id
                         RETURNING stream_id",
                        &[&user, &count],
                        |r| r.get(0),
                    )
                    .await?;
                Ok((last - count, last - count + 1))
            })
        })
        .await
    }

    async fn device_list_stream_id(&self, user_id: &UserId) -> StorageResult<i64> {
        let user = user_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let id: Option<i64> = c
                    .query_opt("SELECT stream_id FROM local_device_list_streams WHERE user_id = $1", &[&user], |r| {
                        r.get(0)
                    })
                    .await?;
                Ok(id.unwrap_or(0))
            })
        })
        .await
    }

    async fn create_openid_token(&self, token: &str, user_id: &UserId, expires_ms: u64) -> StorageResult<()> {
        let (token, user) = (token.to_owned(), user_id.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO openid_tokens (token, user_id, expires_ms) VALUES ($1, $2, $3)",
                    &[&token, &user, &expires_ms],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn openid_token_user(&self, token: &str, now_ms: u64) -> StorageResult<Option<OwnedUserId>> {
        let token = token.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query_opt(
                    "SELECT user_id FROM openid_tokens WHERE token = $1 AND expires_ms >= $2",
                    &[&token, &now_ms],
                    |r| r.get(0),
                )
                .await
            })
        })
        .await
    }

    async fn delete_expired_openid_tokens(&self, now_ms: u64) -> StorageResult<u64> {
        self.transaction(move |c| {
            Box::pin(async move { c.execute("DELETE FROM openid_tokens WHERE expires_ms < $1", &[&now_ms]).await })
        })
        .await
    }
}
