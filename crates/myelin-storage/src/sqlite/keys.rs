use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{SqliteStore, writer::Positions};
use crate::{ClaimedKey, KeyRepo, KeyUpload, KeyUploadOutcome, StorageResult, StreamPos, same_key};

pub(super) fn record_change(
    conn: &Connection,
    positions: &mut Positions,
    user_id: &str,
) -> rusqlite::Result<StreamPos> {
    let pos = positions.allocate();
    conn.prepare_cached("INSERT INTO device_list_changes (stream_pos, user_id) VALUES (?1, ?2)")?
        .execute(params![pos, user_id])?;
    Ok(pos)
}

pub(super) fn upload(
    conn: &Connection,
    positions: &mut Positions,
    user: &str,
    device: &str,
    up: KeyUpload,
) -> StorageResult<KeyUploadOutcome> {
    // Check everything first: a conflict stores nothing.
    let mut new_otks = Vec::new();
    for key in &up.one_time_keys {
        let claimed = conn
            .prepare_cached(
                "SELECT 1 FROM claimed_one_time_keys WHERE user_id = ?1 AND device_id = ?2 AND key_id = ?3",
            )?
            .exists([user, device, &key.key_id])?;
        if claimed {
            continue;
        }
        let existing: Option<String> = conn
            .prepare_cached("SELECT json FROM one_time_keys WHERE user_id = ?1 AND device_id = ?2 AND key_id = ?3")?
            .query_row([user, device, &key.key_id], |r| r.get(0))
            .optional()?;
        match existing {
            Some(json) if same_key(&json, &key.json) => {}
            Some(_) => return Ok(KeyUploadOutcome::Conflict { key_id: key.key_id.clone() }),
            None if new_otks.iter().any(|k: &&crate::UploadedKey| k.key_id == key.key_id) => {}
            None => new_otks.push(key),
        }
    }
    let mut changed = false;
    if let Some(json) = &up.device_keys {
        let existing: Option<String> = conn
            .prepare_cached("SELECT json FROM device_keys WHERE user_id = ?1 AND device_id = ?2")?
            .query_row([user, device], |r| r.get(0))
            .optional()?;
        if existing.as_deref().is_none_or(|old| !same_key(old, json)) {
            conn.prepare_cached(
                "INSERT INTO device_keys (user_id, device_id, json) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user_id, device_id) DO UPDATE SET json = excluded.json",
            )?
            .execute([user, device, json])?;
            record_change(conn, positions, user)?;
            changed = true;
        }
    }
    if !new_otks.is_empty() {
        let mut seq: i64 = conn
            .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM one_time_keys WHERE user_id = ?1 AND device_id = ?2")?
            .query_row([user, device], |r| r.get(0))?;
        let mut insert = conn.prepare_cached(
            "INSERT INTO one_time_keys (user_id, device_id, key_id, algorithm, json, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for key in new_otks {
            seq += 1;
            insert.execute(params![user, device, key.key_id, key.algorithm(), key.json, seq])?;
        }
    }
    for key in &up.fallback_keys {
        let existing: Option<(String, String)> = conn
            .prepare_cached(
                "SELECT key_id, json FROM fallback_keys WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3",
            )?
            .query_row([user, device, key.algorithm()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        // The same key again keeps its `used` mark; a new one replaces it, unused.
        if existing.is_some_and(|(id, json)| id == key.key_id && same_key(&json, &key.json)) {
            continue;
        }
        conn.prepare_cached(
            "INSERT INTO fallback_keys (user_id, device_id, algorithm, key_id, json, used) VALUES (?1, ?2, ?3, ?4, ?5, 0)
             ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET key_id = excluded.key_id, json = excluded.json, used = 0",
        )?
        .execute([user, device, key.algorithm(), &key.key_id, &key.json])?;
    }
    Ok(KeyUploadOutcome::Stored { device_list_changed: changed })
}

fn claim(conn: &Connection, user: &str, device: &str, algorithm: &str) -> StorageResult<Option<(String, String)>> {
    let otk: Option<(String, String)> = conn
        .prepare_cached(
            "SELECT key_id, json FROM one_time_keys WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3
             ORDER BY seq LIMIT 1",
        )?
        .query_row([user, device, algorithm], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((key_id, json)) = otk {
        conn.prepare_cached("DELETE FROM one_time_keys WHERE user_id = ?1 AND device_id = ?2 AND key_id = ?3")?
            .execute([user, device, &key_id])?;
        conn.prepare_cached(
            "INSERT INTO claimed_one_time_keys (user_id, device_id, key_id) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        )?
        .execute([user, device, &key_id])?;
        return Ok(Some((key_id, json)));
    }
    let fallback: Option<(String, String)> = conn
        .prepare_cached(
            "SELECT key_id, json FROM fallback_keys WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3",
        )?
        .query_row([user, device, algorithm], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if fallback.is_some() {
        conn.prepare_cached(
            "UPDATE fallback_keys SET used = 1 WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3",
        )?
        .execute([user, device, algorithm])?;
    }
    Ok(fallback)
}

#[async_trait]
impl KeyRepo for SqliteStore {
    async fn upload_keys(&self, user_id: &str, device_id: &str, upload_: KeyUpload) -> StorageResult<KeyUploadOutcome> {
        let (user, device) = (user_id.to_owned(), device_id.to_owned());
        self.writer.write(move |conn, positions| upload(conn, positions, &user, &device, upload_)).await
    }

    async fn device_keys(&self, user_ids: &[String]) -> StorageResult<Vec<(String, String, String)>> {
        let user_ids = user_ids.to_vec();
        self.readers
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT k.user_id, k.device_id, k.json FROM device_keys k
                     JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id
                     WHERE k.user_id = ?1 ORDER BY k.device_id",
                )?;
                let mut out = Vec::new();
                for user in user_ids {
                    let rows = stmt.query_map([user], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                    for row in rows {
                        out.push(row?);
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn one_time_key_counts(&self, user_id: &str, device_id: &str) -> StorageResult<Vec<(String, u64)>> {
        let (user, device) = (user_id.to_owned(), device_id.to_owned());
        self.readers
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT algorithm, COUNT(*) FROM one_time_keys WHERE user_id = ?1 AND device_id = ?2 GROUP BY algorithm",
                )?;
                let rows = stmt.query_map([user, device], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64)))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn unused_fallback_key_types(&self, user_id: &str, device_id: &str) -> StorageResult<Vec<String>> {
        let (user, device) = (user_id.to_owned(), device_id.to_owned());
        self.readers
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT algorithm FROM fallback_keys WHERE user_id = ?1 AND device_id = ?2 AND used = 0 ORDER BY algorithm",
                )?;
                let rows = stmt.query_map([user, device], |r| r.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn claim_keys(&self, claims: &[(String, String, String)]) -> StorageResult<Vec<ClaimedKey>> {
        let claims = claims.to_vec();
        self.writer
            .write(move |conn, _| {
                let mut out = Vec::new();
                for (user, device, algorithm) in claims {
                    if let Some((key_id, json)) = claim(conn, &user, &device, &algorithm)? {
                        out.push((user, device, key_id, json));
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn put_cross_signing_keys(&self, user_id: &str, keys: Vec<(String, String)>) -> StorageResult<bool> {
        let user = user_id.to_owned();
        self.writer
            .write(move |conn, positions| {
                let mut changed = false;
                for (key_type, json) in keys {
                    let existing: Option<String> = conn
                        .prepare_cached("SELECT json FROM cross_signing_keys WHERE user_id = ?1 AND key_type = ?2")?
                        .query_row([&user, &key_type], |r| r.get(0))
                        .optional()?;
                    if existing.as_deref() != Some(json.as_str()) {
                        conn.prepare_cached(
                            "INSERT INTO cross_signing_keys (user_id, key_type, json) VALUES (?1, ?2, ?3)
                             ON CONFLICT (user_id, key_type) DO UPDATE SET json = excluded.json",
                        )?
                        .execute([&user, &key_type, &json])?;
                        changed = true;
                    }
                }
                if changed {
                    record_change(conn, positions, &user)?;
                }
                Ok(changed)
            })
            .await
    }

    async fn cross_signing_keys(&self, user_id: &str) -> StorageResult<Vec<(String, String)>> {
        let user = user_id.to_owned();
        self.readers
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT key_type, json FROM cross_signing_keys WHERE user_id = ?1 ORDER BY key_type",
                )?;
                let rows = stmt.query_map([user], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn replace_device_keys(&self, user_id: &str, device_id: &str, json: String) -> StorageResult<()> {
        let (user, device) = (user_id.to_owned(), device_id.to_owned());
        self.writer
            .write(move |conn, positions| {
                conn.execute(
                    "UPDATE device_keys SET json = ?3 WHERE user_id = ?1 AND device_id = ?2",
                    params![user, device, json],
                )?;
                record_change(conn, positions, &user)?;
                Ok(())
            })
            .await
    }

    async fn record_device_list_change(&self, user_id: &str) -> StorageResult<StreamPos> {
        let user = user_id.to_owned();
        self.writer.write(move |conn, positions| Ok(record_change(conn, positions, &user)?)).await
    }

    async fn device_list_changes(&self, since: StreamPos, until: StreamPos) -> StorageResult<Vec<String>> {
        self.readers
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT DISTINCT user_id FROM device_list_changes WHERE stream_pos > ?1 AND stream_pos <= ?2",
                )?;
                let rows = stmt.query_map([since, until], |r| r.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }
}
