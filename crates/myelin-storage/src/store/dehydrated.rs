//! Dehydrated devices (MSC3814), one per user.

use async_trait::async_trait;

use super::{devices::delete_devices, keys};
use myelin_core::types::{OwnedDeviceId, UserId};

use crate::{Database, DehydratedDeviceRepo, KeyUploadOutcome, NewDehydratedDevice, StorageError, StorageResult};

/// A key upload conflict inside a dehydrated-device write: returned as an error so the whole
/// write rolls back (the old device stays), then answered as `KeyUploadOutcome::Conflict`.
#[derive(Debug, thiserror::Error)]
#[error("key {0} conflicts with a stored key")]
struct KeyConflict(String);

#[async_trait]
impl DehydratedDeviceRepo for Database {
    async fn put_dehydrated_device(&self, new: NewDehydratedDevice) -> StorageResult<KeyUploadOutcome> {
        let NewDehydratedDevice { user_id: user, device_id: device, device_data, display_name, keys: upload, now_ms } =
            new;
        let forget_user = user.clone();
        let _forget = super::notified::DevicesChanged::of(self, &forget_user);
        let written = self
            .write(move |c, positions| {
                Box::pin(async move {
                    // The row may not exist yet (nothing for FOR UPDATE to hold): two processes
                    // dehydrating at once must still replace one another in turn.
                    c.lock_until_commit(&format!("dehydrated\u{0}{user}")).await?;
                    let old: Option<OwnedDeviceId> = c
                        .query_opt(
                            "SELECT device_id FROM dehydrated_devices WHERE user_id = $1 FOR UPDATE",
                            &[&user],
                            |r| r.get(0),
                        )
                        .await?;
                    if let Some(old) = old {
                        delete_devices(c, positions, &user, &[old]).await?;
                    }
                    c.execute(
                        "INSERT INTO devices (user_id, device_id, display_name, created_ms) VALUES ($1, $2, $3, $4)",
                        &[&user, &device, &display_name, &now_ms],
                    )
                    .await?;
                    c.execute(
                        "INSERT INTO dehydrated_devices (user_id, device_id, device_data) VALUES ($1, $2, $3)
                         ON CONFLICT (user_id) DO UPDATE SET device_id = excluded.device_id,
                             device_data = excluded.device_data",
                        &[&user, &device, &device_data],
                    )
                    .await?;
                    match keys::upload(c, positions, &user, &device, upload).await? {
                        KeyUploadOutcome::Conflict { key_id } => {
                            Err(StorageError::Conflict(Box::new(KeyConflict(key_id))))
                        }
                        stored => {
                            keys::record_change(c, positions, &user).await?;
                            Ok(stored)
                        }
                    }
                })
            })
            .await;
        match written {
            Err(StorageError::Conflict(err)) => match err.downcast::<KeyConflict>() {
                Ok(conflict) => Ok(KeyUploadOutcome::Conflict { key_id: conflict.0 }),
                Err(other) => Err(StorageError::Conflict(other)),
            },
            other => other,
        }
    }

    async fn dehydrated_device(&self, user_id: &UserId) -> StorageResult<Option<(OwnedDeviceId, String)>> {
        let user = user_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query_opt("SELECT device_id, device_data FROM dehydrated_devices WHERE user_id = $1", &[&user], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .await
            })
        })
        .await
    }

    async fn delete_dehydrated_device(&self, user_id: &UserId) -> StorageResult<Option<OwnedDeviceId>> {
        let _forget = super::notified::DevicesChanged::of(self, user_id);
        let user = user_id.to_owned();
        self.write(move |c, positions| {
            Box::pin(async move {
                let old: Option<OwnedDeviceId> = c
                    .query_opt("DELETE FROM dehydrated_devices WHERE user_id = $1 RETURNING device_id", &[&user], |r| {
                        r.get(0)
                    })
                    .await?;
                if let Some(old) = &old {
                    delete_devices(c, positions, &user, std::slice::from_ref(old)).await?;
                }
                Ok(old)
            })
        })
        .await
    }
}
