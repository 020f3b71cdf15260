//! `GET /voip/turnServer`: TURN credentials for 1:1 VoIP calls. With a shared secret, the
//! credentials are made per request as coturn's `use-auth-secret` checks them (the TURN REST
//! API): username `<expiry in seconds>:<user id>`, password base64(HMAC-SHA1(secret, username)).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use myelin_core::{MatrixResult, types::UserId};
use serde_json::{Value, json};

use crate::Services;

/// Credentials from the shared secret last a day unless configured.
const DEFAULT_LIFETIME_MS: u64 = 24 * 60 * 60 * 1000;

/// The TURN REST API's credentials for `user_id`, valid until `expires_s` (Unix seconds).
pub fn turn_credentials(secret: &str, user_id: &UserId, expires_s: u64) -> (String, String) {
    let username = format!("{expires_s}:{user_id}");
    let password = match Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(username.as_bytes());
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    (username, password)
}

impl Services {
    /// The TURN servers and credentials for `user_id`; `{}` when none is configured.
    pub fn turn_server(&self, user_id: &UserId) -> MatrixResult<Value> {
        let turn = &self.config.turn;
        if turn.uris.is_empty() {
            return Ok(json!({}));
        }
        let lifetime_ms = if turn.user_lifetime_ms == 0 { DEFAULT_LIFETIME_MS } else { turn.user_lifetime_ms };
        let (username, password) = if turn.shared_secret.is_empty() {
            (turn.username.clone(), turn.password.clone())
        } else {
            turn_credentials(&turn.shared_secret, user_id, (self.now_ms() + lifetime_ms) / 1000)
        };
        Ok(json!({ "username": username, "password": password, "uris": turn.uris, "ttl": lifetime_ms / 1000 }))
    }
}

#[cfg(test)]
mod tests {
    use super::turn_credentials;
    use ruma::user_id;

    #[test]
    fn credentials_are_what_coturn_expects() {
        // coturn's check: base64(HMAC-SHA1(secret, username)); computed independently with
        // `printf '1700000000:@alice:example.org' | openssl dgst -sha1 -hmac s3cret -binary | base64`.
        let (username, password) = turn_credentials("s3cret", user_id!("@alice:example.org"), 1_700_000_000);
        assert_eq!(username, "1700000000:@alice:example.org");
        assert_eq!(password, "oKcYiX5WLXOJY95WjqLUBOVFmFk=");
    }
}
