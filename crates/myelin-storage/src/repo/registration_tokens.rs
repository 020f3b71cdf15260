use async_trait::async_trait;

use crate::StorageResult;

/// A registration token made by an admin at run time (tokens in the configuration file are
/// never used up and are not stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrationTokenRecord {
    pub token: String,
    /// How many registrations it allows; `None`: any number.
    pub uses_allowed: Option<u64>,
    /// Registrations that passed the token stage and have not finished.
    pub pending: u64,
    pub completed: u64,
    /// When it stops working (milliseconds); `None`: never.
    pub expiry_time: Option<u64>,
}

impl RegistrationTokenRecord {
    /// Whether one more registration may use it at `now_ms`.
    pub fn usable(&self, now_ms: u64) -> bool {
        self.uses_allowed.is_none_or(|allowed| self.pending + self.completed < allowed)
            && self.expiry_time.is_none_or(|expiry| expiry > now_ms)
    }
}

/// Registration tokens made through the admin API.
#[async_trait]
pub trait RegistrationTokenRepo {
    /// Stores a new token; false if the token exists.
    async fn create_registration_token(&self, token: &RegistrationTokenRecord) -> StorageResult<bool>;
    async fn registration_token(&self, token: &str) -> StorageResult<Option<RegistrationTokenRecord>>;
    /// Every token, by token.
    async fn registration_tokens(&self) -> StorageResult<Vec<RegistrationTokenRecord>>;
    /// Changes a token's limits; false if there is no such token.
    async fn update_registration_token(
        &self,
        token: &str,
        uses_allowed: Option<Option<u64>>,
        expiry_time: Option<Option<u64>>,
    ) -> StorageResult<bool>;
    async fn delete_registration_token(&self, token: &str) -> StorageResult<bool>;
    /// Takes one use of the token for a registration in progress, if it is still usable at
    /// `now_ms` (atomically: two registrations cannot take its last use).
    async fn take_registration_token(&self, token: &str, now_ms: u64) -> StorageResult<bool>;
    /// A registration that took a use finished: its use counts as completed.
    async fn complete_registration_token(&self, token: &str) -> StorageResult<()>;
}
