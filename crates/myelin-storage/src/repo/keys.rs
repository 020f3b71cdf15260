use async_trait::async_trait;
use myelin_core::{
    StreamPos,
    types::{DeviceId, OwnedDeviceId, OwnedUserId, UserId},
};

use crate::StorageResult;

/// A one-time or fallback key as uploaded: `algorithm:id` and the key object's JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadedKey {
    pub key_id: String,
    pub json: String,
}

impl UploadedKey {
    pub fn algorithm(&self) -> &str {
        self.key_id.split_once(':').map_or(self.key_id.as_str(), |(alg, _)| alg)
    }
}

/// What one `/keys/upload` stores, atomically.
#[derive(Clone, Debug, Default)]
pub struct KeyUpload {
    /// The signed `device_keys` object, if uploaded.
    pub device_keys: Option<String>,
    /// One-time keys in upload order.
    pub one_time_keys: Vec<UploadedKey>,
    /// Fallback keys (one per algorithm).
    pub fallback_keys: Vec<UploadedKey>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyUploadOutcome {
    /// Stored; `device_list_changed` if the device keys are new or different.
    Stored { device_list_changed: bool },
    /// A key id already exists with other content (or other device keys): nothing stored.
    Conflict { key_id: String },
}

/// A device's unclaimed one-time keys and unused fallback keys ([`KeyRepo::key_counts`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyCounts {
    /// Unclaimed one-time keys per algorithm, sorted by algorithm.
    pub one_time: Vec<(String, u64)>,
    /// Algorithms with a fallback key not handed out yet, sorted.
    pub unused_fallback: Vec<String>,
}

/// A claim for one device's key of one algorithm (`/keys/claim`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyClaim {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub algorithm: String,
}

/// One claimed key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedKey {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    /// `algorithm:id`.
    pub key_id: String,
    pub json: String,
}

/// A device's identity keys as uploaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceKeys {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub json: String,
}

/// Device keys, one-time and fallback keys, cross-signing keys and the device-list change stream.
#[async_trait]
pub trait KeyRepo {
    /// Stores a device's upload atomically (idempotent: identical keys are no-ops; claimed key
    /// ids are never stored again). A device-keys change is recorded on the stream.
    async fn upload_keys(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        upload: KeyUpload,
    ) -> StorageResult<KeyUploadOutcome>;
    /// Device keys of these users' devices.
    async fn device_keys(&self, user_ids: &[OwnedUserId]) -> StorageResult<Vec<DeviceKeys>>;
    /// Unclaimed one-time keys per algorithm.
    async fn one_time_key_counts(&self, user_id: &UserId, device_id: &DeviceId) -> StorageResult<Vec<(String, u64)>>;
    /// What a sync tells a device of its keys, in one read: unclaimed one-time keys per
    /// algorithm, and the algorithms with a fallback key not handed out yet.
    async fn key_counts(&self, user_id: &UserId, device_id: &DeviceId) -> StorageResult<KeyCounts>;
    /// For each (user, device, algorithm): the oldest one-time key, removed at once (each key goes
    /// to exactly one claimer), else the fallback key (marked used, kept). Devices with neither
    /// are absent from the answer.
    async fn claim_keys(&self, claims: &[KeyClaim]) -> StorageResult<Vec<ClaimedKey>>;
    /// Stores cross-signing keys (key type → JSON); records a change if any differs.
    async fn put_cross_signing_keys(&self, user_id: &UserId, keys: Vec<(String, String)>) -> StorageResult<bool>;
    /// Cross-signing keys of a user: (key type, JSON).
    async fn cross_signing_keys(&self, user_id: &UserId) -> StorageResult<Vec<(String, String)>>;
    /// Replaces a device's keys JSON (signatures added) and records a change.
    async fn replace_device_keys(&self, user_id: &UserId, device_id: &DeviceId, json: String) -> StorageResult<()>;
    /// Records "this user's device list changed" (a device was added, renamed or deleted).
    async fn record_device_list_change(&self, user_id: &UserId) -> StorageResult<StreamPos>;
    /// Users whose device list changed at a position in `(since, until]`.
    async fn device_list_changes(&self, since: StreamPos, until: StreamPos) -> StorageResult<Vec<OwnedUserId>>;
}
