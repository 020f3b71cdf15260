use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, devices::delete_device_rows, keys};
use crate::{DehydratedDeviceRepo, KeyUpload, KeyUploadOutcome, StorageError, StorageResult};

#[async_trait]
impl DehydratedDeviceRepo for SqliteStore {
    async fn put_dehydrated_device(
        &self,
        user_id: &str,
        device_id: &str,
        device_data: String,
        display_name: Option<String>,
        upload: KeyUpload,
    ) -> StorageResult<KeyUploadOutcome> {
        let (user, device) = (user_id.to_owned(), device_id.to_owned());
        self.writer
            .write(move |conn, positions| {
                let old: Option<String> = conn
                    .query_row("SELECT device_id FROM dehydrated_devices WHERE user_id = ?1", [&user], |r| r.get(0))
                    .optional()?;
                if let Some(old) = &old {
                    delete_device_rows(conn, &user, old)?;
                }
                conn.execute(
                    "INSERT INTO devices (user_id, device_id, display_name, created_ms) VALUES (?1, ?2, ?3, ?4)",
                    params![user, device, display_name, myelin_core::time::now_ms() as i64],
                )?;
                conn.execute(
                    "INSERT INTO dehydrated_devices (user_id, device_id, device_data) VALUES (?1, ?2, ?3)
                     ON CONFLICT (user_id) DO UPDATE SET device_id = excluded.device_id, device_data = excluded.device_data",
                    params![user, device, device_data],
                )?;
                match keys::upload(conn, positions, &user, &device, upload)? {
                    // An error rolls this whole write back: the old device stays.
                    KeyUploadOutcome::Conflict { key_id } => Err(StorageError::Conflict(key_id)),
                    stored => {
                        keys::record_change(conn, positions, &user)?;
                        Ok(stored)
                    }
                }
            })
            .await
    }

    async fn dehydrated_device(&self, user_id: &str) -> StorageResult<Option<(String, String)>> {
        let user = user_id.to_owned();
        self.readers
            .read(move |conn| {
                Ok(conn
                    .prepare_cached("SELECT device_id, device_data FROM dehydrated_devices WHERE user_id = ?1")?
                    .query_row([user], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?)
            })
            .await
    }

    async fn delete_dehydrated_device(&self, user_id: &str) -> StorageResult<Option<String>> {
        let user = user_id.to_owned();
        self.writer
            .write(move |conn, positions| {
                let old: Option<String> = conn
                    .query_row("SELECT device_id FROM dehydrated_devices WHERE user_id = ?1", [&user], |r| r.get(0))
                    .optional()?;
                if let Some(old) = &old {
                    delete_device_rows(conn, &user, old)?;
                    conn.execute("DELETE FROM dehydrated_devices WHERE user_id = ?1", [&user])?;
                    keys::record_change(conn, positions, &user)?;
                }
                Ok(old)
            })
            .await
    }
}
