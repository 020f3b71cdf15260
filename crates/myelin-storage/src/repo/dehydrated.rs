use async_trait::async_trait;

use crate::{KeyUpload, KeyUploadOutcome, StorageResult};

/// Dehydrated devices (MSC3814), one per user.
#[async_trait]
pub trait DehydratedDeviceRepo {
    /// Replaces the user's dehydrated device in one step: the old one (device row, keys, inbox)
    /// goes, the new device row, its `device_data` and its keys are stored. On a key conflict
    /// nothing changes.
    async fn put_dehydrated_device(
        &self,
        user_id: &str,
        device_id: &str,
        device_data: String,
        display_name: Option<String>,
        keys: KeyUpload,
        now_ms: u64,
    ) -> StorageResult<KeyUploadOutcome>;
    /// (device id, device data) of the user's dehydrated device.
    async fn dehydrated_device(&self, user_id: &str) -> StorageResult<Option<(String, String)>>;
    /// Deletes the dehydrated device with its keys and inbox; returns its id if there was one.
    async fn delete_dehydrated_device(&self, user_id: &str) -> StorageResult<Option<String>>;
}
