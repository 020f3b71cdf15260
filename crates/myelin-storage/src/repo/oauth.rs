use async_trait::async_trait;
use myelin_core::types::{OwnedDeviceId, OwnedUserId, UserId};

use crate::StorageResult;

/// An authorization code grant: an authorization request, the person's consent, and the code's
/// exchange for a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeGrantRecord {
    pub grant_id: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    /// `query` or `fragment`.
    pub response_mode: String,
    /// The PKCE S256 challenge.
    pub code_challenge: String,
    pub created_ms: u64,
    /// Set by consent, with the user and the device the scope names.
    pub code: Option<String>,
    pub user_id: Option<OwnedUserId>,
    pub device_id: Option<OwnedDeviceId>,
    pub consented_ms: Option<u64>,
    pub exchanged_ms: Option<u64>,
}

/// A device authorization grant (RFC 8628).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceGrantRecord {
    pub device_code: String,
    pub user_code: String,
    pub client_id: String,
    pub scope: String,
    pub created_ms: u64,
    pub expires_ms: u64,
    pub last_poll_ms: Option<u64>,
    /// Who approved it.
    pub user_id: Option<OwnedUserId>,
    pub denied: bool,
    pub exchanged_ms: Option<u64>,
}

/// The OAuth 2.0 authorization server's records: registered clients, grants in progress, and
/// the browser sessions of its web pages. (A client's session is a device: `DeviceRepo`.)
#[async_trait]
pub trait OAuthRepo {
    async fn create_oauth_client(&self, client_id: &str, metadata: &str, now_ms: u64) -> StorageResult<()>;
    /// A client's registration metadata (JSON).
    async fn oauth_client(&self, client_id: &str) -> StorageResult<Option<String>>;

    async fn create_code_grant(&self, grant: &CodeGrantRecord) -> StorageResult<()>;
    async fn code_grant(&self, grant_id: &str) -> StorageResult<Option<CodeGrantRecord>>;
    /// Records the person's consent: the grant gets its code, user and device. False if the grant
    /// is unknown or was answered already.
    async fn consent_code_grant(
        &self,
        grant_id: &str,
        code: &str,
        user_id: &UserId,
        device_id: &str,
        now_ms: u64,
    ) -> StorageResult<bool>;
    /// Marks a code exchanged. Returns its grant and whether this was its first exchange.
    async fn exchange_code(&self, code: &str, now_ms: u64) -> StorageResult<Option<(CodeGrantRecord, bool)>>;

    /// Stores a device grant; false if its user code is taken.
    async fn create_device_grant(&self, grant: &DeviceGrantRecord) -> StorageResult<bool>;
    async fn device_grant_by_user_code(&self, user_code: &str) -> StorageResult<Option<DeviceGrantRecord>>;
    /// Approves (`Some(user)`) or denies (`None`) an unanswered grant; false if it was answered.
    async fn decide_device_grant(&self, user_code: &str, user_id: Option<&UserId>) -> StorageResult<bool>;
    /// A poll of the token endpoint: returns the grant as it was and records the poll's time.
    async fn poll_device_grant(&self, device_code: &str, now_ms: u64) -> StorageResult<Option<DeviceGrantRecord>>;
    /// Marks an approved grant exchanged; false if it was exchanged already.
    async fn exchange_device_grant(&self, device_code: &str, now_ms: u64) -> StorageResult<bool>;

    /// A browser session; `pending_second_factor`: the password was right, the second factor is
    /// still to come (the session signs nobody in until `complete_web_session`).
    async fn create_web_session(
        &self,
        session_id: &str,
        user_id: &UserId,
        now_ms: u64,
        expires_ms: u64,
        pending_second_factor: bool,
    ) -> StorageResult<()>;
    /// The user of a browser session that has not expired, and whether it still waits for the
    /// second factor.
    async fn web_session_user(&self, session_id: &str, now_ms: u64) -> StorageResult<Option<(OwnedUserId, bool)>>;
    async fn complete_web_session(&self, session_id: &str) -> StorageResult<()>;

    /// Stores a new, unconfirmed TOTP secret (replacing an unconfirmed one); false if the user
    /// has a confirmed one.
    async fn start_totp(&self, user_id: &UserId, secret: &str, now_ms: u64) -> StorageResult<bool>;
    /// The user's TOTP secret, whether it is confirmed, and the last step accepted.
    async fn totp(&self, user_id: &UserId) -> StorageResult<Option<(String, bool, u64)>>;
    /// Accepts a code for `step` (confirming the secret) if no code at or after `step` was
    /// accepted before; false for a replay.
    async fn accept_totp_step(&self, user_id: &UserId, step: u64) -> StorageResult<bool>;
    /// Removes the TOTP secret and the recovery codes.
    async fn remove_totp(&self, user_id: &UserId) -> StorageResult<()>;
    /// Replaces the user's recovery codes.
    async fn set_recovery_codes(&self, user_id: &UserId, code_hashes: &[String]) -> StorageResult<()>;
    /// Uses a recovery code once; false if unknown or used.
    async fn use_recovery_code(&self, user_id: &UserId, code_hash: &str, now_ms: u64) -> StorageResult<bool>;
    /// Whether the user signs in with a second factor.
    async fn has_second_factor(&self, user_id: &UserId) -> StorageResult<bool>;
    async fn delete_web_session(&self, session_id: &str) -> StorageResult<()>;
    /// Deletes expired browser sessions and grants created before `grants_before_ms`; returns
    /// how many rows went.
    async fn delete_expired_oauth_rows(&self, now_ms: u64, grants_before_ms: u64) -> StorageResult<u64>;

    async fn set_user_locked(&self, user_id: &UserId, locked: bool) -> StorageResult<bool>;
    /// Lets the user replace their cross-signing keys without more authentication until `until_ms`.
    async fn approve_cross_signing_reset(&self, user_id: &UserId, until_ms: u64) -> StorageResult<()>;
    async fn cross_signing_reset_until(&self, user_id: &UserId) -> StorageResult<Option<u64>>;
    async fn user_locked(&self, user_id: &UserId) -> StorageResult<bool>;
}
