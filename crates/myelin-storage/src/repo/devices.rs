use async_trait::async_trait;
use myelin_core::types::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};

use crate::StorageResult;

#[derive(Clone, Debug)]
pub struct DeviceRecord {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub display_name: Option<String>,
    pub last_seen_ms: Option<u64>,
    pub last_seen_ip: Option<String>,
}

/// What an access token resolves to.
#[derive(Clone, Debug)]
pub struct TokenOwner {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub expires_ms: Option<u64>,
    pub is_admin: bool,
    pub is_guest: bool,
    pub deactivated: bool,
}

/// A new login: device (created or reused) plus its tokens.
#[derive(Clone, Debug)]
pub struct NewSession {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub display_name: Option<String>,
    pub access_token: String,
    pub expires_ms: Option<u64>,
    pub refresh_token: Option<String>,
    pub created_ms: u64,
}

/// A refresh: the refresh token given up, and the tokens that replace it.
#[derive(Clone, Debug)]
pub struct SessionRefresh {
    pub refresh_token: String,
    pub new_access_token: String,
    pub new_refresh_token: String,
    pub expires_ms: Option<u64>,
}

/// Devices, access tokens, refresh tokens and login tokens.
#[async_trait]
pub trait DeviceRepo {
    /// Creates the device if absent (else keeps it, updating nothing but tokens) and stores tokens.
    /// A reused device id keeps its row; its old access tokens are revoked.
    async fn create_session(&self, session: NewSession) -> StorageResult<()>;
    async fn token_owner(&self, access_token: &str) -> StorageResult<Option<TokenOwner>>;
    /// Swaps a refresh token for a new access/refresh pair. Returns the (user, device) on success,
    /// `None` if the refresh token is unknown. The old access and refresh tokens are revoked.
    async fn refresh_session(&self, refresh: SessionRefresh) -> StorageResult<Option<(OwnedUserId, OwnedDeviceId)>>;
    async fn revoke_access_token(&self, access_token: &str) -> StorageResult<()>;
    async fn list_devices(&self, user_id: &UserId) -> StorageResult<Vec<DeviceRecord>>;
    async fn get_device(&self, user_id: &UserId, device_id: &DeviceId) -> StorageResult<Option<DeviceRecord>>;
    /// Renames a device; false if there is no such device.
    async fn set_device_display_name(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        name: Option<String>,
    ) -> StorageResult<bool>;
    /// Deletes devices with their access and refresh tokens, their end-to-end keys (identity,
    /// one-time, fallback) and the to-device messages waiting for them, and records a device-list
    /// change. Messages that arrive later for a reused device id are kept.
    async fn delete_devices(&self, user_id: &UserId, device_ids: &[OwnedDeviceId]) -> StorageResult<()>;
    /// Deletes every device of the user except `keep` (if given) and the dehydrated device, as
    /// `delete_devices` does.
    async fn delete_all_devices(&self, user_id: &UserId, keep: Option<&DeviceId>) -> StorageResult<()>;
    async fn touch_device(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        ip: Option<String>,
        now_ms: u64,
    ) -> StorageResult<()>;
    async fn create_login_token(&self, token: &str, user_id: &UserId, expires_ms: u64) -> StorageResult<()>;
    /// Consumes a login token: returns its user if it existed and had not expired.
    async fn take_login_token(&self, token: &str, now_ms: u64) -> StorageResult<Option<OwnedUserId>>;
    /// Deletes login tokens that expired before `now_ms`; returns how many.
    async fn delete_expired_login_tokens(&self, now_ms: u64) -> StorageResult<u64>;
}
