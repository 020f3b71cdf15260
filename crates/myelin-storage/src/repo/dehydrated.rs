use async_trait::async_trait;
use myelin_core::types::{OwnedDeviceId, OwnedUserId, UserId};

use crate::{KeyUpload, KeyUploadOutcome, StorageResult};

/// A dehydrated device to store in place of the user's previous one.
#[derive(Clone, Debug)]
pub struct NewDehydratedDevice {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    /// The encrypted device state (JSON), opaque to the server.
    pub device_data: String,
    pub display_name: Option<String>,
    pub keys: KeyUpload,
    pub now_ms: u64,
}

/// Dehydrated devices (MSC3814), one per user.
#[async_trait]
pub trait DehydratedDeviceRepo {
    /// Replaces the user's dehydrated device in one step: the old one (device row, keys, inbox)
    /// goes, the new device row, its `device_data` and its keys are stored. On a key conflict
    /// nothing changes.
    async fn put_dehydrated_device(&self, device: NewDehydratedDevice) -> StorageResult<KeyUploadOutcome>;
    /// (device id, device data) of the user's dehydrated device.
    async fn dehydrated_device(&self, user_id: &UserId) -> StorageResult<Option<(OwnedDeviceId, String)>>;
    /// Deletes the dehydrated device with its keys and inbox; returns its id if there was one.
    async fn delete_dehydrated_device(&self, user_id: &UserId) -> StorageResult<Option<OwnedDeviceId>>;
}
