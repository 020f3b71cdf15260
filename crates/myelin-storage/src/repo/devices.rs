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
    /// Locked by an admin: the token is refused (`M_USER_LOCKED`) but not deleted.
    pub locked: bool,
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
    /// The OAuth client whose session this device is, and the scope it was granted.
    pub oauth: Option<OAuthSessionInfo>,
}

/// What makes a device an OAuth client's session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthSessionInfo {
    pub client_id: String,
    pub scope: String,
}

/// What a refresh token got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The session's next pair: new, or for a retry of the same token before its successor was
    /// used, the pair that retry's first attempt got.
    Refreshed {
        user_id: OwnedUserId,
        device_id: OwnedDeviceId,
        access_token: String,
        refresh_token: String,
        expires_ms: Option<u64>,
    },
    /// The token was used, and so was the one that replaced it: a copy in someone else's hands.
    /// The caller ends the session.
    Replayed {
        user_id: OwnedUserId,
        device_id: OwnedDeviceId,
    },
    Unknown,
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
    /// Swaps a refresh token for a new access/refresh pair (the old access token is revoked; the
    /// old refresh token is kept, naming its successor, so that a retry gets the same pair and a
    /// replay after the successor was used is recognised). A device keeps at most three refresh
    /// tokens: the live one, the one it replaced, and the one before.
    async fn refresh_session(&self, refresh: SessionRefresh) -> StorageResult<RefreshOutcome>;
    async fn revoke_access_token(&self, access_token: &str) -> StorageResult<()>;
    async fn list_devices(&self, user_id: &UserId) -> StorageResult<Vec<DeviceRecord>>;
    /// The OAuth client session a device is, if it is one.
    async fn oauth_session(&self, user_id: &UserId, device_id: &DeviceId) -> StorageResult<Option<OAuthSessionInfo>>;
    /// The (user, device) an access or refresh token belongs to.
    async fn token_device(&self, token: &str) -> StorageResult<Option<(OwnedUserId, OwnedDeviceId)>>;
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
