//! Device keys, one-time and fallback keys, cross-signing keys and the device-list change stream.

use std::collections::HashMap;

use async_trait::async_trait;

use myelin_core::types::{DeviceId, OwnedUserId, UserId};

use super::notified::{KeyCountsChanged, device_key};
use crate::{
    ClaimedKey, Database, DeviceKeys, KeyClaim, KeyCounts, KeyRepo, KeyUpload, KeyUploadOutcome, StorageResult,
    StreamPos, UploadedKey,
    db::{Change, Conn, Positions, ToValue},
    same_key,
};

/// Records "this user's device list changed" at a new stream position.
pub(crate) async fn record_change(
    c: &mut Conn<'_>,
    positions: &mut Positions,
    user_id: &UserId,
) -> StorageResult<StreamPos> {
    let pos = positions.next(Change::DeviceList).await?;
    c.execute("INSERT INTO device_list_changes (stream_pos, user_id) VALUES ($1, $2)", &[&pos, &user_id]).await?;
    Ok(pos)
}

/// Stores a device's key upload (in a stream write); a conflict stores nothing.
pub(crate) async fn upload(
    c: &mut Conn<'_>,
    positions: &mut Positions,
    user: &UserId,
    device: &DeviceId,
    up: KeyUpload,
) -> StorageResult<KeyUploadOutcome> {
    // One upload per device at a time, across processes: two identical uploads racing must not
    // both find a key new and both insert it.
    c.lock_until_commit(&format!("keys\u{0}{user}\u{0}{device}")).await?;
    // Check everything first: a conflict stores nothing.
    let ids: Vec<&str> = up.one_time_keys.iter().map(|k| k.key_id.as_str()).collect();
    let claimed: Vec<String> = c
        .query(
            "SELECT key_id FROM claimed_one_time_keys WHERE user_id = $1 AND device_id = $2 AND key_id = ANY($3)",
            &[&user, &device, &ids],
            |r| r.get(0),
        )
        .await?;
    let existing: HashMap<String, String> = c
        .query(
            "SELECT key_id, json FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND key_id = ANY($3)",
            &[&user, &device, &ids],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .await?
        .into_iter()
        .collect();
    let mut new_otks: Vec<&UploadedKey> = Vec::new();
    for key in &up.one_time_keys {
        if claimed.contains(&key.key_id) {
            continue;
        }
        match existing.get(&key.key_id) {
            Some(json) if same_key(json, &key.json) => {}
            Some(_) => return Ok(KeyUploadOutcome::Conflict { key_id: key.key_id.clone() }),
            None if new_otks.iter().any(|k| k.key_id == key.key_id) => {}
            None => new_otks.push(key),
        }
    }
    let mut changed = false;
    if let Some(json) = &up.device_keys {
        let old: Option<String> = c
            .query_opt("SELECT json FROM device_keys WHERE user_id = $1 AND device_id = $2", &[&user, &device], |r| {
                r.get(0)
            })
            .await?;
        if old.as_deref().is_none_or(|old| !same_key(old, json)) {
            c.execute(
                "INSERT INTO device_keys (user_id, device_id, json) VALUES ($1, $2, $3)
                 ON CONFLICT (user_id, device_id) DO UPDATE SET json = excluded.json",
                &[&user, &device, json],
            )
            .await?;
            record_change(c, positions, user).await?;
            changed = true;
        }
    }
    if !new_otks.is_empty() {
        let base: i64 = c
            .query_one(
                "SELECT COALESCE(MAX(seq), 0) FROM one_time_keys WHERE user_id = $1 AND device_id = $2",
                &[&user, &device],
                |r| r.get(0),
            )
            .await?;
        let seqs: Vec<i64> = (1..=new_otks.len() as i64).map(|i| base + i).collect();
        let algorithms: Vec<&str> = new_otks.iter().map(|k| k.algorithm()).collect();
        let rows: Vec<Vec<&dyn ToValue>> = new_otks
            .iter()
            .zip(&seqs)
            .zip(&algorithms)
            .map(|((key, seq), algorithm)| -> Vec<&dyn ToValue> {
                vec![&user, &device, &key.key_id, algorithm, &key.json, seq]
            })
            .collect();
        c.insert_rows("INSERT INTO one_time_keys (user_id, device_id, key_id, algorithm, json, seq)", &rows).await?;
    }
    for key in &up.fallback_keys {
        let old: Option<(String, String)> = c
            .query_opt(
                "SELECT key_id, json FROM fallback_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3",
                &[&user, &device, &key.algorithm()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .await?;
        // The same key again keeps its `used` mark; a new one replaces it, unused.
        if old.is_some_and(|(id, json)| id == key.key_id && same_key(&json, &key.json)) {
            continue;
        }
        c.execute(
            "INSERT INTO fallback_keys (user_id, device_id, algorithm, key_id, json, used) VALUES ($1, $2, $3, $4, $5, 0)
             ON CONFLICT (user_id, device_id, algorithm)
             DO UPDATE SET key_id = excluded.key_id, json = excluded.json, used = 0",
            &[&user, &device, &key.algorithm(), &key.key_id, &key.json],
        )
        .await?;
    }
    Ok(KeyUploadOutcome::Stored { device_list_changed: changed })
}

#[async_trait]
impl KeyRepo for Database {
    async fn upload_keys(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        up: KeyUpload,
    ) -> StorageResult<KeyUploadOutcome> {
        let _forget = KeyCountsChanged::user(self, user_id);
        let (user, device) = (user_id.to_owned(), device_id.to_owned());
        self.write(move |c, positions| Box::pin(async move { upload(c, positions, &user, &device, up).await })).await
    }

    async fn device_keys(&self, user_ids: &[OwnedUserId]) -> StorageResult<Vec<DeviceKeys>> {
        let user_ids = user_ids.to_vec();
        self.read(move |c| {
            Box::pin(async move {
                c.query(
                    "SELECT k.user_id, k.device_id, k.json FROM device_keys k
                     JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id
                     WHERE k.user_id = ANY($1) ORDER BY k.user_id, k.device_id",
                    &[&user_ids],
                    |r| Ok(DeviceKeys { user_id: r.get(0)?, device_id: r.get(1)?, json: r.get(2)? }),
                )
                .await
            })
        })
        .await
    }

    async fn one_time_key_counts(&self, user_id: &UserId, device_id: &DeviceId) -> StorageResult<Vec<(String, u64)>> {
        let (user, device) = (user_id.to_owned(), device_id.to_owned());
        self.read(move |c| {
            Box::pin(async move {
                c.query(
                    "SELECT algorithm, COUNT(*) FROM one_time_keys WHERE user_id = $1 AND device_id = $2
                     GROUP BY algorithm",
                    &[&user, &device],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .await
            })
        })
        .await
    }

    async fn key_counts(&self, user_id: &UserId, device_id: &DeviceId) -> StorageResult<KeyCounts> {
        // PostgreSQL: the counts this process read before, while nothing said they changed.
        let read = || async {
            let (user, device) = (user_id.to_owned(), device_id.to_owned());
            // One statement (one round trip on PostgreSQL): kind 0 rows are one-time key counts,
            // kind 1 rows unused fallback keys.
            let rows: Vec<(i64, String, u64)> = self
                .read(move |c| {
                    Box::pin(async move {
                        c.query(
                            "SELECT CAST(0 AS BIGINT), algorithm, COUNT(*) FROM one_time_keys
                             WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm
                             UNION ALL
                             SELECT CAST(1 AS BIGINT), algorithm, CAST(0 AS BIGINT) FROM fallback_keys
                             WHERE user_id = $1 AND device_id = $2 AND used = 0
                             ORDER BY 1, 2",
                            &[&user, &device],
                            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                        )
                        .await
                    })
                })
                .await?;
            let mut counts = KeyCounts::default();
            for (kind, algorithm, count) in rows {
                if kind == 0 {
                    counts.one_time.push((algorithm, count));
                } else {
                    counts.unused_fallback.push(algorithm);
                }
            }
            Ok(Some(counts))
        };
        let keep = self.postgres().is_some();
        let cache_key = device_key(user_id, device_id.as_str());
        let counts = self.notified.key_counts.get_or_read(keep, &cache_key, |_| user_id.to_owned(), read).await?;
        Ok(counts.unwrap_or_default())
    }

    async fn claim_keys(&self, claims: &[KeyClaim]) -> StorageResult<Vec<ClaimedKey>> {
        let _forget = KeyCountsChanged(self, claims.iter().map(|claim| claim.user_id.clone()).collect());
        let claims = claims.to_vec();
        self.transaction(move |c| {
            Box::pin(async move {
                let mut out = Vec::new();
                for KeyClaim { user_id: user, device_id: device, algorithm } in claims {
                    // One statement: the oldest key, locked (concurrent claimers skip it) and removed.
                    let otk: Option<(String, String)> = c
                        .query_opt(
                            "DELETE FROM one_time_keys WHERE (user_id, device_id, key_id) IN (
                                 SELECT user_id, device_id, key_id FROM one_time_keys
                                 WHERE user_id = $1 AND device_id = $2 AND algorithm = $3
                                 ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)
                             RETURNING key_id, json",
                            &[&user, &device, &algorithm],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .await?;
                    if let Some((key_id, json)) = otk {
                        c.execute(
                            "INSERT INTO claimed_one_time_keys (user_id, device_id, key_id) VALUES ($1, $2, $3)
                             ON CONFLICT DO NOTHING",
                            &[&user, &device, &key_id],
                        )
                        .await?;
                        out.push(ClaimedKey { user_id: user, device_id: device, key_id, json });
                        continue;
                    }
                    let fallback: Option<(String, String)> = c
                        .query_opt(
                            "UPDATE fallback_keys SET used = 1 WHERE user_id = $1 AND device_id = $2 AND algorithm = $3
                             RETURNING key_id, json",
                            &[&user, &device, &algorithm],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .await?;
                    if let Some((key_id, json)) = fallback {
                        out.push(ClaimedKey { user_id: user, device_id: device, key_id, json });
                    }
                }
                Ok(out)
            })
        })
        .await
    }

    async fn put_cross_signing_keys(&self, user_id: &UserId, keys: Vec<(String, String)>) -> StorageResult<bool> {
        let user = user_id.to_owned();
        self.write(move |c, positions| {
            Box::pin(async move {
                let mut changed = false;
                for (key_type, json) in keys {
                    let old: Option<String> = c
                        .query_opt(
                            "SELECT json FROM cross_signing_keys WHERE user_id = $1 AND key_type = $2",
                            &[&user, &key_type],
                            |r| r.get(0),
                        )
                        .await?;
                    if old.as_deref() != Some(json.as_str()) {
                        c.execute(
                            "INSERT INTO cross_signing_keys (user_id, key_type, json) VALUES ($1, $2, $3)
                             ON CONFLICT (user_id, key_type) DO UPDATE SET json = excluded.json",
                            &[&user, &key_type, &json],
                        )
                        .await?;
                        changed = true;
                    }
                }
                if changed {
                    record_change(c, positions, &user).await?;
                }
                Ok(changed)
            })
        })
        .await
    }

    async fn cross_signing_keys(&self, user_id: &UserId) -> StorageResult<Vec<(String, String)>> {
        let user = user_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query(
                    "SELECT key_type, json FROM cross_signing_keys WHERE user_id = $1 ORDER BY key_type",
                    &[&user],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .await
            })
        })
        .await
    }

    async fn replace_device_keys(&self, user_id: &UserId, device_id: &DeviceId, json: String) -> StorageResult<()> {
        let (user, device) = (user_id.to_owned(), device_id.to_owned());
        self.write(move |c, positions| {
            Box::pin(async move {
                c.execute(
                    "UPDATE device_keys SET json = $3 WHERE user_id = $1 AND device_id = $2",
                    &[&user, &device, &json],
                )
                .await?;
                record_change(c, positions, &user).await?;
                Ok(())
            })
        })
        .await
    }

    async fn record_device_list_change(&self, user_id: &UserId) -> StorageResult<StreamPos> {
        let user = user_id.to_owned();
        self.write(move |c, positions| Box::pin(async move { record_change(c, positions, &user).await })).await
    }

    async fn device_list_changes(&self, since: StreamPos, until: StreamPos) -> StorageResult<Vec<OwnedUserId>> {
        if !self.may_have_changed(Change::DeviceList, since) {
            return Ok(Vec::new());
        }
        self.read(move |c| {
            Box::pin(async move {
                c.query(
                    "SELECT DISTINCT user_id FROM device_list_changes WHERE stream_pos > $1 AND stream_pos <= $2",
                    &[&since, &until],
                    |r| r.get(0),
                )
                .await
            })
        })
        .await
    }
}
