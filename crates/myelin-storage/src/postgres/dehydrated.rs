use async_trait::async_trait;

use super::{PgStore, devices::delete_device_rows, keys};
use crate::{DehydratedDeviceRepo, KeyUpload, KeyUploadOutcome, StorageError, StorageResult};

#[async_trait]
impl DehydratedDeviceRepo for PgStore {
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
            .write(move |c, positions| {
                Box::pin(async move {
                    let old: Option<String> = c
                        .query_opt("SELECT device_id FROM dehydrated_devices WHERE user_id = $1 FOR UPDATE", &[&user])
                        .await?
                        .map(|r| r.get(0));
                    if let Some(old) = old {
                        delete_device_rows(c, positions, &user, &[old]).await?;
                    }
                    let now = myelin_core::time::now_ms() as i64;
                    c.execute(
                        "INSERT INTO devices (user_id, device_id, display_name, created_ms) VALUES ($1, $2, $3, $4)",
                        &[&user, &device, &display_name, &now],
                    )
                    .await?;
                    c.execute(
                        "INSERT INTO dehydrated_devices (user_id, device_id, device_data) VALUES ($1, $2, $3)
                         ON CONFLICT (user_id) DO UPDATE SET device_id = excluded.device_id, device_data = excluded.device_data",
                        &[&user, &device, &device_data],
                    )
                    .await?;
                    match keys::upload(c, positions, &user, &device, upload).await? {
                        // An error rolls this whole write back: the old device stays.
                        KeyUploadOutcome::Conflict { key_id } => Err(StorageError::Conflict(key_id)),
                        stored => {
                            keys::record_change(c, positions, &user).await?;
                            Ok(stored)
                        }
                    }
                })
            })
            .await
    }

    async fn dehydrated_device(&self, user_id: &str) -> StorageResult<Option<(String, String)>> {
        let mut c = self.pool.get().await?;
        Ok(c.query_opt("SELECT device_id, device_data FROM dehydrated_devices WHERE user_id = $1", &[&user_id])
            .await?
            .map(|r| (r.get(0), r.get(1))))
    }

    async fn delete_dehydrated_device(&self, user_id: &str) -> StorageResult<Option<String>> {
        let user = user_id.to_owned();
        self.writer
            .write(move |c, positions| {
                Box::pin(async move {
                    let old: Option<String> = c
                        .query_opt("DELETE FROM dehydrated_devices WHERE user_id = $1 RETURNING device_id", &[&user])
                        .await?
                        .map(|r| r.get(0));
                    if let Some(old) = &old {
                        delete_device_rows(c, positions, &user, std::slice::from_ref(old)).await?;
                    }
                    Ok(old)
                })
            })
            .await
    }
}
