//! Registration tokens admins make at run time (beside those in the configuration file, which
//! never run out): how many registrations each allows and until when.

use myelin_core::{MatrixError, MatrixResult};
use myelin_storage::RegistrationTokenRecord;
use serde_json::{Value, json};

use crate::{Services, accounts::Requester};

/// Longest token, and the characters one may have (Synapse's rules).
const MAX_TOKEN_LENGTH: usize = 64;
const DEFAULT_TOKEN_LENGTH: usize = 16;

/// `POST /_synapse/admin/v1/registration_tokens/new`'s body.
#[derive(Clone, Debug, Default)]
pub struct NewRegistrationToken {
    /// The token; made up (`length` characters) if not given.
    pub token: Option<String>,
    pub length: Option<usize>,
    pub uses_allowed: Option<u64>,
    pub expiry_time: Option<u64>,
}

fn valid_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN_LENGTH
        && token.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-'))
}

fn token_json(t: &RegistrationTokenRecord) -> Value {
    json!({
        "token": t.token,
        "uses_allowed": t.uses_allowed,
        "pending": t.pending,
        "completed": t.completed,
        "expiry_time": t.expiry_time,
    })
}

impl Services {
    /// `GET /_synapse/admin/v1/registration_tokens` (`valid`: only usable ones, or only used
    /// up or expired ones).
    pub async fn admin_registration_tokens(&self, requester: &Requester, valid: Option<bool>) -> MatrixResult<Value> {
        Self::require_admin(requester)?;
        let now = self.now_ms();
        let tokens: Vec<Value> = self
            .store
            .registration_tokens()
            .await?
            .iter()
            .filter(|t| valid.is_none_or(|v| t.usable(now) == v))
            .map(token_json)
            .collect();
        Ok(json!({ "registration_tokens": tokens }))
    }

    /// `GET /_synapse/admin/v1/registration_tokens/{token}`.
    pub async fn admin_registration_token(&self, requester: &Requester, token: &str) -> MatrixResult<Value> {
        Self::require_admin(requester)?;
        let token = self.store.registration_token(token).await?.ok_or_else(no_token)?;
        Ok(token_json(&token))
    }

    /// `POST /_synapse/admin/v1/registration_tokens/new`.
    pub async fn admin_create_registration_token(
        &self,
        requester: &Requester,
        new: NewRegistrationToken,
    ) -> MatrixResult<Value> {
        Self::require_admin(requester)?;
        if new.expiry_time.is_some_and(|t| t < self.now_ms()) {
            return Err(MatrixError::invalid_param("expiry_time must not be in the past"));
        }
        let token = match new.token {
            Some(token) if valid_token(&token) => token,
            Some(_) => {
                return Err(MatrixError::invalid_param(
                    "token must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_', '~' and '-'",
                ));
            }
            None => {
                let length = new.length.unwrap_or(DEFAULT_TOKEN_LENGTH);
                if !(1..=MAX_TOKEN_LENGTH).contains(&length) {
                    return Err(MatrixError::invalid_param("length must be between 1 and 64"));
                }
                self.random.alphanumeric(length)
            }
        };
        let record = RegistrationTokenRecord {
            token,
            uses_allowed: new.uses_allowed,
            pending: 0,
            completed: 0,
            expiry_time: new.expiry_time,
        };
        if !self.store.create_registration_token(&record).await? {
            return Err(MatrixError::invalid_param("This token already exists"));
        }
        tracing::info!(admin = %requester.user_id, token = %record.token, "admin API: registration token made");
        Ok(token_json(&record))
    }

    /// `PUT /_synapse/admin/v1/registration_tokens/{token}`: `uses_allowed` and `expiry_time`
    /// changed where given (`null` lifts the limit).
    pub async fn admin_update_registration_token(
        &self,
        requester: &Requester,
        token: &str,
        uses_allowed: Option<Option<u64>>,
        expiry_time: Option<Option<u64>>,
    ) -> MatrixResult<Value> {
        Self::require_admin(requester)?;
        if !self.store.update_registration_token(token, uses_allowed, expiry_time).await? {
            return Err(no_token());
        }
        self.admin_registration_token(requester, token).await
    }

    /// `DELETE /_synapse/admin/v1/registration_tokens/{token}`.
    pub async fn admin_delete_registration_token(&self, requester: &Requester, token: &str) -> MatrixResult<()> {
        Self::require_admin(requester)?;
        if !self.store.delete_registration_token(token).await? {
            return Err(no_token());
        }
        tracing::warn!(admin = %requester.user_id, token, "admin API: registration token deleted");
        Ok(())
    }
}

fn no_token() -> MatrixError {
    MatrixError::not_found("No such registration token")
}
