use async_trait::async_trait;
use myelin_core::types::{OwnedUserId, UserId};

use crate::StorageResult;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasskeyRecord {
    pub credential_id: String,
    pub user_id: OwnedUserId,
    pub public_key: String,
    pub sign_count: u64,
    pub name: String,
    pub created_ms: u64,
    pub last_used_ms: Option<u64>,
}

/// Passkeys (WebAuthn credentials) and their one-time challenges.
#[async_trait]
pub trait PasskeyRepo {
    /// Stores a credential; false if its id is taken.
    async fn add_passkey(&self, passkey: &PasskeyRecord) -> StorageResult<bool>;
    async fn passkey(&self, credential_id: &str) -> StorageResult<Option<PasskeyRecord>>;
    async fn passkeys(&self, user_id: &UserId) -> StorageResult<Vec<PasskeyRecord>>;
    /// Records a use with the authenticator's new counter, if it is above the stored one (or
    /// both are zero: authenticators without a counter); false for a cloned authenticator.
    async fn use_passkey(&self, credential_id: &str, sign_count: u64, now_ms: u64) -> StorageResult<bool>;
    async fn delete_passkey(&self, user_id: &UserId, credential_id: &str) -> StorageResult<bool>;
    async fn create_webauthn_challenge(
        &self,
        challenge: &str,
        user_id: Option<&UserId>,
        purpose: &str,
        expires_ms: u64,
    ) -> StorageResult<()>;
    /// Takes a live challenge of `purpose` (once); its user if it had one.
    async fn take_webauthn_challenge(
        &self,
        challenge: &str,
        purpose: &str,
        now_ms: u64,
    ) -> StorageResult<Option<Option<OwnedUserId>>>;
}
