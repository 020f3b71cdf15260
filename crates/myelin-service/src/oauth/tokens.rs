//! The token endpoint (code, refresh and device grants), revocation, the ID token and userinfo.

use myelin_core::MatrixError;
use myelin_storage::{NewSession, OAuthSessionInfo, RefreshOutcome, SessionRefresh};
use ruma::{OwnedDeviceId, UserId, signatures::KeyPair as _};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{CODE_LIFETIME_MS, Client, DEVICE_POLL_INTERVAL_S, OAuthError, OAuthResult, Scope, clients, unpadded_url};
use crate::{Services, ratelimit::Limit};

/// The token endpoint's form.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
    pub scope: Option<String>,
    pub device_code: Option<String>,
}

fn invalid_grant(description: &str) -> OAuthError {
    OAuthError::new("invalid_grant", description)
}

/// PKCE S256 (RFC 7636 §4.6): base64url(SHA-256(verifier)) is the challenge.
fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    let shape_ok = (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    shape_ok && unpadded_url(&Sha256::digest(verifier.as_bytes())) == challenge
}

impl Services {
    /// `POST /oauth2/token`, from the client address `client`.
    pub async fn oauth_token(&self, req: TokenRequest, client: &str) -> OAuthResult<Value> {
        self.check_rate_limit(Limit::Login, &format!("token:{client}"))?;
        let client_id =
            req.client_id.clone().ok_or_else(|| OAuthError::new("invalid_request", "client_id is required"))?;
        let oauth_client = self
            .oauth_client(&client_id)
            .await?
            .ok_or_else(|| OAuthError::new("invalid_client", "unknown client_id"))?;
        let grant_type = req.grant_type.clone().unwrap_or_default();
        let registered = match grant_type.as_str() {
            clients::GRANT_AUTHORIZATION_CODE | clients::GRANT_REFRESH_TOKEN | clients::GRANT_DEVICE_CODE => {
                // Refreshing is allowed to every client that got tokens.
                grant_type == clients::GRANT_REFRESH_TOKEN || oauth_client.allows_grant(&grant_type)
            }
            _ => return Err(OAuthError::new("unsupported_grant_type", format!("{grant_type:?} is not supported"))),
        };
        if !registered {
            return Err(OAuthError::new("unauthorized_client", "the client did not register this grant type"));
        }
        match grant_type.as_str() {
            clients::GRANT_AUTHORIZATION_CODE => self.exchange_authorization_code(&oauth_client, &req).await,
            clients::GRANT_REFRESH_TOKEN => self.oauth_refresh(&oauth_client, &req).await,
            _ => self.exchange_device_code(&oauth_client, &req).await,
        }
    }

    async fn exchange_authorization_code(&self, client: &Client, req: &TokenRequest) -> OAuthResult<Value> {
        let code = req.code.as_deref().ok_or_else(|| OAuthError::new("invalid_request", "code is required"))?;
        let verifier = req
            .code_verifier
            .as_deref()
            .ok_or_else(|| OAuthError::new("invalid_request", "code_verifier is required"))?;
        let now = self.now_ms();
        let Some((grant, first)) = self.store.exchange_code(code, now).await? else {
            return Err(invalid_grant("unknown code"));
        };
        let (Some(user_id), Some(device_id)) = (grant.user_id.clone(), grant.device_id.clone()) else {
            return Err(invalid_grant("unknown code"));
        };
        if !first {
            // A code used twice was seen by someone else: the session it opened ends (RFC 6749 §4.1.2).
            if self.store.oauth_session(&user_id, &device_id).await?.is_some_and(|s| s.client_id == grant.client_id) {
                tracing::warn!(%user_id, "authorization code replayed: its session ended");
                self.delete_devices(&user_id, &[device_id]).await?;
            }
            return Err(invalid_grant("the code was used already"));
        }
        if grant.client_id != client.client_id {
            return Err(invalid_grant("the code was issued to another client"));
        }
        if grant.consented_ms.is_none_or(|at| at + CODE_LIFETIME_MS <= now) {
            return Err(invalid_grant("the code has expired"));
        }
        if req.redirect_uri.as_deref() != Some(grant.redirect_uri.as_str()) {
            return Err(invalid_grant("redirect_uri differs from the authorization request's"));
        }
        if !verifier_matches(verifier, &grant.code_challenge) {
            return Err(invalid_grant("code_verifier does not match the code_challenge"));
        }
        let mut scope = Scope::parse(&grant.scope).map_err(|e| invalid_grant(&e.0))?;
        scope.device_id = Some(device_id.to_string());
        self.open_client_session(client, &user_id, &scope, grant.nonce.as_deref()).await
    }

    async fn exchange_device_code(&self, client: &Client, req: &TokenRequest) -> OAuthResult<Value> {
        let device_code =
            req.device_code.as_deref().ok_or_else(|| OAuthError::new("invalid_request", "device_code is required"))?;
        let now = self.now_ms();
        let Some(grant) = self.store.poll_device_grant(device_code, now).await? else {
            return Err(invalid_grant("unknown device_code"));
        };
        if grant.client_id != client.client_id {
            return Err(invalid_grant("the device_code was issued to another client"));
        }
        if grant.exchanged_ms.is_some() {
            return Err(invalid_grant("the device_code was used already"));
        }
        if grant.expires_ms <= now {
            return Err(OAuthError::new("expired_token", "the device_code has expired"));
        }
        if grant.denied {
            return Err(OAuthError::new("access_denied", "the user refused"));
        }
        let Some(user_id) = grant.user_id.clone() else {
            let too_soon = grant.last_poll_ms.is_some_and(|last| last + DEVICE_POLL_INTERVAL_S * 1000 > now);
            return Err(if too_soon {
                OAuthError::new("slow_down", "polling faster than the interval")
            } else {
                OAuthError::new("authorization_pending", "the user has not answered yet")
            });
        };
        if !self.store.exchange_device_grant(device_code, now).await? {
            return Err(invalid_grant("the device_code was used already"));
        }
        let mut scope = Scope::parse(&grant.scope).map_err(|e| invalid_grant(&e.0))?;
        if scope.device_id.is_none() {
            scope.device_id = Some(self.random.device_id());
        }
        self.open_client_session(client, &user_id, &scope, None).await
    }

    /// Creates the session's device with its tokens in one write, and answers with them.
    async fn open_client_session(
        &self,
        client: &Client,
        user_id: &UserId,
        scope: &Scope,
        nonce: Option<&str>,
    ) -> OAuthResult<Value> {
        let user = self.existing_user(user_id).await?;
        if user.deactivated {
            return Err(invalid_grant("the account has been deactivated"));
        }
        if self.store.user_locked(user_id).await? {
            return Err(invalid_grant("the account has been locked"));
        }
        let device_id = OwnedDeviceId::from(scope.device_id.clone().unwrap_or_else(|| self.random.device_id()));
        let lifetime = self.config().oauth.access_token_lifetime_ms;
        let access_token = format!("mat_{}", self.random.alphanumeric(40));
        let refresh_token = format!("mar_{}", self.random.alphanumeric(40));
        let now = self.now_ms();
        self.store
            .create_session(NewSession {
                user_id: user_id.to_owned(),
                device_id: device_id.clone(),
                display_name: Some(client.display_name()),
                access_token: access_token.clone(),
                expires_ms: Some(now + lifetime),
                refresh_token: Some(refresh_token.clone()),
                created_ms: now,
                oauth: Some(OAuthSessionInfo { client_id: client.client_id.clone(), scope: scope.to_string() }),
            })
            .await?;
        let mut answer = json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": lifetime / 1000,
            "refresh_token": refresh_token,
            "scope": scope.to_string(),
        });
        if scope.openid {
            answer["id_token"] = self.id_token(&client.client_id, user_id, nonce).into();
        }
        Ok(answer)
    }

    async fn oauth_refresh(&self, client: &Client, req: &TokenRequest) -> OAuthResult<Value> {
        let token = req
            .refresh_token
            .as_deref()
            .ok_or_else(|| OAuthError::new("invalid_request", "refresh_token is required"))?;
        let Some((user_id, device_id)) = self.store.token_device(token).await? else {
            return Err(invalid_grant("unknown refresh token"));
        };
        let Some(session) = self.store.oauth_session(&user_id, &device_id).await? else {
            return Err(invalid_grant("unknown refresh token"));
        };
        if session.client_id != client.client_id {
            return Err(invalid_grant("the refresh token belongs to another client"));
        }
        let granted = Scope::parse(&session.scope).map_err(|e| invalid_grant(&e.0))?;
        if let Some(asked) = req.scope.as_deref() {
            let asked = Scope::parse(asked).map_err(|e| OAuthError::new("invalid_scope", e.0))?;
            if !granted.covers(&asked) {
                return Err(OAuthError::new("invalid_scope", "a refresh cannot widen the scope"));
            }
        }
        let lifetime = self.config().oauth.access_token_lifetime_ms;
        let outcome = self
            .store
            .refresh_session(SessionRefresh {
                refresh_token: token.to_owned(),
                new_access_token: format!("mat_{}", self.random.alphanumeric(40)),
                new_refresh_token: format!("mar_{}", self.random.alphanumeric(40)),
                expires_ms: Some(self.now_ms() + lifetime),
            })
            .await?;
        match outcome {
            RefreshOutcome::Refreshed { access_token, refresh_token, expires_ms, .. } => Ok(json!({
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": expires_ms.map_or(lifetime, |e| e.saturating_sub(self.now_ms())) / 1000,
                "refresh_token": refresh_token,
                "scope": granted.to_string(),
            })),
            RefreshOutcome::Replayed { user_id, device_id } => {
                tracing::warn!(%user_id, "refresh token replayed after its successor was used: session ended");
                self.delete_devices(&user_id, &[device_id]).await?;
                Err(invalid_grant("the refresh token was used already"))
            }
            RefreshOutcome::Unknown => Err(invalid_grant("unknown refresh token")),
        }
    }

    /// `POST /oauth2/revoke` (RFC 7009): the whole session of the token (access or refresh)
    /// ends. An unknown token is not an error.
    pub async fn oauth_revoke(&self, token: &str, client_id: Option<&str>) -> OAuthResult<()> {
        let Some((user_id, device_id)) = self.store.token_device(token).await? else { return Ok(()) };
        if let Some(client_id) = client_id
            && let Some(session) = self.store.oauth_session(&user_id, &device_id).await?
            && session.client_id != client_id
        {
            return Err(OAuthError::new("invalid_client", "the token belongs to another client"));
        }
        self.delete_devices(&user_id, &[device_id]).await?;
        Ok(())
    }

    /// An OpenID Connect ID token, signed with the server's ed25519 key (`EdDSA`).
    fn id_token(&self, client_id: &str, user_id: &UserId, nonce: Option<&str>) -> String {
        let now = self.now_ms() / 1000;
        let header = json!({ "alg": "EdDSA", "typ": "JWT", "kid": self.keys.key_id });
        let mut claims = json!({
            "iss": self.oauth_issuer(),
            "sub": user_id.as_str(),
            "aud": client_id,
            "iat": now,
            "auth_time": now,
            "exp": now + 3600,
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = nonce.into();
        }
        let signing_input =
            format!("{}.{}", unpadded_url(header.to_string().as_bytes()), unpadded_url(claims.to_string().as_bytes()));
        let signature = self.keys.key_pair.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", unpadded_url(signature.as_bytes()))
    }

    /// `GET /oauth2/userinfo`: who the access token's user is.
    pub async fn oauth_userinfo(&self, access_token: &str) -> Result<Value, MatrixError> {
        let requester = self.resolve_token(access_token).await?;
        let profile = self.profile(&requester.user_id).await.ok();
        Ok(json!({
            "sub": requester.user_id.as_str(),
            "preferred_username": requester.user_id.localpart(),
            "name": profile.and_then(|p| p.displayname),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_is_the_unpadded_base64url_sha256_of_the_verifier() {
        // The challenge computed independently (Python: urlsafe_b64encode(sha256(v)).rstrip("=")).
        let verifier = "dBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(verifier_matches(verifier, "ngF5GsXcbwljx6u133FFr3Xht9xooA_DuaX_3QwODtc"));
        assert!(!verifier_matches(verifier, "ngF5GsXcbwljx6u133FFr3Xht9xooA_DuaX_3QwODtd"));
        assert!(!verifier_matches("short", "ngF5GsXcbwljx6u133FFr3Xht9xooA_DuaX_3QwODtc"), "43 characters at least");
    }
}
