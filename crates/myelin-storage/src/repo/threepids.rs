use async_trait::async_trait;
use myelin_core::types::{OwnedUserId, UserId};

use crate::StorageResult;

/// An email address (or other third-party id) bound to an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreepidRecord {
    pub medium: String,
    pub address: String,
    pub user_id: OwnedUserId,
    pub validated_ms: u64,
    pub added_ms: u64,
}

/// A validation session of `requestToken`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreepidValidation {
    pub sid: String,
    pub client_secret: String,
    pub medium: String,
    pub address: String,
    /// `add`, `register` or `password`.
    pub purpose: String,
    pub token: String,
    pub send_attempt: u64,
    pub expires_ms: u64,
    pub validated_ms: Option<u64>,
}

/// Bound addresses and their validation sessions.
#[async_trait]
pub trait ThreepidRepo {
    /// Starts a session, or answers the existing one of the same client secret, address and
    /// purpose (its send attempt, token and expiry moved to the new ones if `send_attempt` is
    /// higher).
    async fn upsert_threepid_validation(&self, validation: &ThreepidValidation) -> StorageResult<ThreepidValidation>;
    async fn threepid_validation(&self, sid: &str) -> StorageResult<Option<ThreepidValidation>>;
    /// Marks the session validated if `client_secret` and `token` match and it has not expired.
    async fn validate_threepid(&self, sid: &str, client_secret: &str, token: &str, now_ms: u64) -> StorageResult<bool>;
    /// Binds an address; false if it is bound already (to anyone).
    async fn add_threepid(&self, record: &ThreepidRecord) -> StorageResult<bool>;
    async fn threepid_owner(&self, medium: &str, address: &str) -> StorageResult<Option<OwnedUserId>>;
    async fn user_threepids(&self, user_id: &UserId) -> StorageResult<Vec<ThreepidRecord>>;
    /// Unbinds one of the user's addresses; false if they had not bound it.
    async fn delete_threepid(&self, user_id: &UserId, medium: &str, address: &str) -> StorageResult<bool>;
}
