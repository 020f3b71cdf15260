//! The OAuth 2.0 authorization server of next-gen auth (MSC3861 and its family), in the same
//! binary as the homeserver: discovery (`auth_metadata`), dynamic client registration (MSC2966),
//! the authorization code grant with mandatory PKCE S256, the device authorization grant
//! (RFC 8628, QR login's), refresh token rotation, revocation, and an OpenID Connect ID token.
//!
//! A session of a client *is* a device (MSC2967's one device scope): created with its tokens in
//! one write when a code or device grant is exchanged, ended by deleting the device. The person
//! answers on web pages (`myelin-api`'s `web`), whose browser sessions are kept here too.
//!
//! Upstream identity providers would sit beside `web_login`: a provider's callback resolves to a
//! local user and opens the same browser session.

pub mod clients;
pub mod passkeys;
pub mod scopes;
pub mod second_factor;
mod tokens;

use base64::Engine as _;
use myelin_core::{ErrorCode, MatrixError, MatrixResult, types::OwnedUserId};
use myelin_storage::{CodeGrantRecord, DeviceGrantRecord, StorageError};
use ruma::{OwnedDeviceId, UserId};
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use crate::{Services, ratelimit::Limit};
pub use clients::Client;
pub use scopes::Scope;
pub use tokens::TokenRequest;

/// An authorization code works this long after the person consented.
pub const CODE_LIFETIME_MS: u64 = 10 * 60 * 1000;
/// A person has this long to answer an authorization request, or a device grant's user code.
pub const GRANT_LIFETIME_MS: u64 = 20 * 60 * 1000;
/// How often a device may poll the token endpoint (seconds); faster gets `slow_down`.
pub const DEVICE_POLL_INTERVAL_S: u64 = 5;
/// A browser stays signed in to the web pages this long.
pub const WEB_SESSION_LIFETIME_MS: u64 = 7 * 24 * 3600 * 1000;
/// The `loginToken` of a legacy SSO login works this long (MAS's 30 seconds; a client redeems
/// it at once).
pub const SSO_LOGIN_TOKEN_LIFETIME_MS: u64 = 30_000;
/// How long an approved cross-signing reset may be done (MSC4312).
pub const CROSS_SIGNING_RESET_WINDOW_MS: u64 = 10 * 60 * 1000;
/// User codes are typed by people: no vowels (no words), no look-alikes.
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
const USER_CODE_LENGTH: usize = 8;

/// Paths below the issuer (the server's public base URL).
pub mod paths {
    pub const AUTHORIZE: &str = "oauth2/authorize";
    pub const TOKEN: &str = "oauth2/token";
    pub const REGISTRATION: &str = "oauth2/registration";
    pub const REVOKE: &str = "oauth2/revoke";
    pub const DEVICE_AUTHORIZATION: &str = "oauth2/device_authorization";
    pub const JWKS: &str = "oauth2/keys.json";
    pub const USERINFO: &str = "oauth2/userinfo";
    pub const LOGIN: &str = "auth/login";
    pub const REGISTER: &str = "auth/register";
    pub const CONSENT: &str = "auth/consent";
    pub const DEVICE: &str = "auth/device";
    pub const ACCOUNT: &str = "account/";
}

/// MSC4191's account management actions, stable and unstable names.
pub const ACCOUNT_ACTIONS: &[&str] = &[
    "org.matrix.profile",
    "org.matrix.devices_list",
    "org.matrix.device_view",
    "org.matrix.device_delete",
    "org.matrix.account_deactivate",
    "org.matrix.sessions_list",
    "org.matrix.session_view",
    "org.matrix.session_end",
    "org.matrix.cross_signing_reset",
];

/// A failure of an OAuth endpoint: an RFC 6749 error (`{"error", "error_description"}`), or a
/// Matrix error where the cause is not the protocol's (rate limits, the database).
#[derive(Debug)]
pub enum OAuthError {
    Protocol { error: &'static str, description: String, status: u16 },
    Matrix(MatrixError),
}

impl OAuthError {
    pub fn new(error: &'static str, description: impl Into<String>) -> Self {
        let status = if error == "invalid_client" { 401 } else { 400 };
        Self::Protocol { error, description: description.into(), status }
    }
}

impl From<MatrixError> for OAuthError {
    fn from(err: MatrixError) -> Self {
        Self::Matrix(err)
    }
}

impl From<StorageError> for OAuthError {
    fn from(err: StorageError) -> Self {
        Self::Matrix(err.into())
    }
}

pub type OAuthResult<T> = Result<T, OAuthError>;

/// The query of an authorization request, as the client sent it.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub response_type: Option<String>,
    pub response_mode: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Option<String>,
    pub login_hint: Option<String>,
}

/// Where an authorization request goes next.
#[derive(Debug)]
pub enum AuthorizationStart {
    /// Shown as a page, never redirected: the client or its redirect URI is not trusted.
    ErrorPage(String),
    /// Back to the client with an error (`error`, `state` in the redirect).
    RedirectError(String),
    /// Recorded: the person signs in (or registers) and consents on the pages.
    Recorded { grant_id: String, create_account: bool, login_hint: Option<String> },
}

/// A grant waiting for the person, with the client that asks.
#[derive(Clone, Debug)]
pub struct PendingCodeGrant {
    pub grant: CodeGrantRecord,
    pub client: Client,
    pub scope: Scope,
}

/// A device grant shown for approval.
#[derive(Clone, Debug)]
pub struct PendingDeviceGrant {
    pub grant: DeviceGrantRecord,
    pub client: Client,
    pub scope: Scope,
}

fn unpadded_url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The client's redirect URI with `params` in its query or fragment.
pub fn redirect_with(redirect_uri: &str, response_mode: &str, params: &[(&str, &str)]) -> MatrixResult<String> {
    let mut url = Url::parse(redirect_uri).map_err(|_| MatrixError::invalid_param("redirect_uri is not a URL"))?;
    if response_mode == "fragment" {
        let fragment = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        url.set_fragment(Some(&fragment));
    } else {
        url.query_pairs_mut().extend_pairs(params);
    }
    Ok(url.to_string())
}

/// A user code as people type it: upper case, without separators.
pub fn normalise_user_code(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

impl Services {
    /// The issuer: the server's public base URL.
    pub fn oauth_issuer(&self) -> String {
        self.config().base_url()
    }

    pub fn oauth_enabled(&self) -> bool {
        self.config().oauth.enabled
    }

    fn oauth_endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.oauth_issuer())
    }

    /// `GET /_matrix/client/v1/auth_metadata` (RFC 8414 as the spec profiles it), also served as
    /// OpenID Connect discovery.
    pub fn auth_metadata(&self) -> Value {
        json!({
            "issuer": self.oauth_issuer(),
            "authorization_endpoint": self.oauth_endpoint(paths::AUTHORIZE),
            "token_endpoint": self.oauth_endpoint(paths::TOKEN),
            "registration_endpoint": self.oauth_endpoint(paths::REGISTRATION),
            "revocation_endpoint": self.oauth_endpoint(paths::REVOKE),
            "device_authorization_endpoint": self.oauth_endpoint(paths::DEVICE_AUTHORIZATION),
            "jwks_uri": self.oauth_endpoint(paths::JWKS),
            "userinfo_endpoint": self.oauth_endpoint(paths::USERINFO),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "fragment"],
            "grant_types_supported": [clients::GRANT_AUTHORIZATION_CODE, clients::GRANT_REFRESH_TOKEN, clients::GRANT_DEVICE_CODE],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "revocation_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": ["openid", "urn:matrix:client:api:*", "urn:matrix:org.matrix.msc2967.client:api:*"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["EdDSA"],
            "claims_supported": ["iss", "sub", "aud", "iat", "exp", "nonce", "auth_time"],
            "prompt_values_supported": ["create"],
            "account_management_uri": self.oauth_endpoint(paths::ACCOUNT),
            "account_management_actions_supported": ACCOUNT_ACTIONS,
            "org.matrix.msc4191.account_management_uri": self.oauth_endpoint(paths::ACCOUNT),
            "org.matrix.msc4191.account_management_actions_supported": ACCOUNT_ACTIONS,
        })
    }

    /// The JSON Web Key Set the ID tokens verify against: the server's ed25519 key.
    pub fn oauth_jwks(&self) -> Value {
        json!({ "keys": [{
            "kty": "OKP",
            "crv": "Ed25519",
            "use": "sig",
            "alg": "EdDSA",
            "kid": self.keys.key_id,
            "x": unpadded_url(&self.keys.key_pair.public_key()),
        }]})
    }

    /// `POST /oauth2/registration`: validates and stores a client; the answer is its metadata
    /// with its `client_id`.
    pub async fn register_oauth_client(&self, body: &Value) -> OAuthResult<Value> {
        let mut metadata = clients::validate_registration(body).map_err(|e| OAuthError::Protocol {
            error: e.error,
            description: e.description,
            status: 400,
        })?;
        let client_id = self.random.alphanumeric(26);
        let now = self.now_ms();
        let stored = serde_json::to_string(&metadata).map_err(|e| MatrixError::internal(e.to_string()))?;
        self.store.create_oauth_client(&client_id, &stored, now).await?;
        metadata.insert("client_id".into(), client_id.into());
        metadata.insert("client_id_issued_at".into(), (now / 1000).into());
        Ok(Value::Object(metadata))
    }

    pub async fn oauth_client(&self, client_id: &str) -> MatrixResult<Option<Client>> {
        if client_id.is_empty() || client_id.len() > 255 {
            return Ok(None);
        }
        let Some(text) = self.store.oauth_client(client_id).await? else { return Ok(None) };
        let metadata = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.as_object().cloned())
            .ok_or_else(|| MatrixError::internal("stored client metadata is not an object"))?;
        Ok(Some(Client { client_id: client_id.to_owned(), metadata }))
    }

    /// The authorization endpoint: until the client and its redirect URI are known to match,
    /// mistakes are shown as a page; after, they go back to the client.
    pub async fn start_authorization(&self, req: AuthorizationRequest) -> MatrixResult<AuthorizationStart> {
        let Some(client) = self.oauth_client(req.client_id.as_deref().unwrap_or_default()).await? else {
            return Ok(AuthorizationStart::ErrorPage("This application is not registered with this server.".into()));
        };
        let Some(redirect_uri) = req.redirect_uri.clone().filter(|r| client.redirect_uri_matches(r)) else {
            return Ok(AuthorizationStart::ErrorPage(
                "The application asked to send you to an address it did not register.".into(),
            ));
        };
        let response_mode = req.response_mode.clone().unwrap_or_else(|| "query".to_owned());
        if response_mode != "query" && response_mode != "fragment" {
            return Ok(AuthorizationStart::ErrorPage("Unsupported response_mode.".into()));
        }
        let refuse = |error: &str, description: &str| -> MatrixResult<AuthorizationStart> {
            let mut params = vec![("error", error), ("error_description", description)];
            if let Some(state) = &req.state {
                params.push(("state", state));
            }
            Ok(AuthorizationStart::RedirectError(redirect_with(&redirect_uri, &response_mode, &params)?))
        };
        if req.response_type.as_deref() != Some("code") {
            return refuse("unsupported_response_type", "only response_type=code is supported");
        }
        if !client.allows_grant(clients::GRANT_AUTHORIZATION_CODE) {
            return refuse("unauthorized_client", "the client did not register the authorization code grant");
        }
        let Some(challenge) = req.code_challenge.clone() else {
            return refuse("invalid_request", "PKCE is required: code_challenge with code_challenge_method=S256");
        };
        if req.code_challenge_method.as_deref() != Some("S256") {
            return refuse("invalid_request", "code_challenge_method must be S256");
        }
        if challenge.len() != 43 || !challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return refuse("invalid_request", "code_challenge is not a base64url SHA-256 digest");
        }
        let scope = match Scope::parse(req.scope.as_deref().unwrap_or_default()) {
            Ok(scope) => scope,
            Err(err) => return refuse("invalid_scope", &err.0),
        };
        if req.state.as_ref().is_some_and(|s| s.len() > 1024) || req.nonce.as_ref().is_some_and(|n| n.len() > 1024) {
            return refuse("invalid_request", "state or nonce is too long");
        }
        let grant_id = self.random.alphanumeric(32);
        self.store
            .create_code_grant(&CodeGrantRecord {
                grant_id: grant_id.clone(),
                client_id: client.client_id.clone(),
                redirect_uri,
                scope: scope.to_string(),
                state: req.state.clone(),
                nonce: req.nonce.clone(),
                response_mode,
                code_challenge: challenge,
                created_ms: self.now_ms(),
                code: None,
                user_id: None,
                device_id: None,
                consented_ms: None,
                exchanged_ms: None,
            })
            .await?;
        let login_hint = req.login_hint.as_deref().and_then(|h| h.strip_prefix("mxid:")).map(str::to_owned);
        Ok(AuthorizationStart::Recorded {
            grant_id,
            create_account: req.prompt.as_deref() == Some("create"),
            login_hint,
        })
    }

    /// A grant still waiting for the person's answer.
    pub async fn pending_code_grant(&self, grant_id: &str) -> MatrixResult<Option<PendingCodeGrant>> {
        if grant_id.len() > 64 {
            return Ok(None);
        }
        let Some(grant) = self.store.code_grant(grant_id).await? else { return Ok(None) };
        if grant.code.is_some() || grant.created_ms + GRANT_LIFETIME_MS <= self.now_ms() {
            return Ok(None);
        }
        let Some(client) = self.oauth_client(&grant.client_id).await? else { return Ok(None) };
        let Ok(scope) = Scope::parse(&grant.scope) else { return Ok(None) };
        Ok(Some(PendingCodeGrant { grant, client, scope }))
    }

    /// The person's answer to an authorization request: the URL to send the browser to.
    pub async fn answer_code_grant(&self, grant_id: &str, user_id: &UserId, allow: bool) -> MatrixResult<String> {
        let Some(pending) = self.pending_code_grant(grant_id).await? else {
            return Err(MatrixError::not_found("This request has expired or was answered already"));
        };
        let grant = &pending.grant;
        let mut params: Vec<(&str, String)> = Vec::new();
        if allow {
            let device_id = pending.scope.device_id.clone().unwrap_or_else(|| self.random.device_id());
            let code = self.random.alphanumeric(32);
            if !self.store.consent_code_grant(grant_id, &code, user_id, &device_id, self.now_ms()).await? {
                return Err(MatrixError::not_found("This request was answered already"));
            }
            params.push(("code", code));
        } else {
            params.push(("error", "access_denied".into()));
            params.push(("error_description", "the user refused".into()));
        }
        if let Some(state) = &grant.state {
            params.push(("state", state.clone()));
        }
        let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        redirect_with(&grant.redirect_uri, &grant.response_mode, &params)
    }

    /// `POST /oauth2/device_authorization` (RFC 8628 §3.1).
    pub async fn start_device_authorization(&self, client_id: &str, scope: &str) -> OAuthResult<Value> {
        let client = self
            .oauth_client(client_id)
            .await?
            .ok_or_else(|| OAuthError::new("invalid_client", "unknown client_id"))?;
        if !client.allows_grant(clients::GRANT_DEVICE_CODE) {
            return Err(OAuthError::new("unauthorized_client", "the client did not register the device code grant"));
        }
        let scope = Scope::parse(scope).map_err(|e| OAuthError::new("invalid_scope", e.0))?;
        let now = self.now_ms();
        let device_code = self.random.alphanumeric(40);
        for _ in 0..5 {
            let user_code: String = (0..USER_CODE_LENGTH)
                .map(|_| {
                    char::from(USER_CODE_ALPHABET[(self.random.next_u64() % USER_CODE_ALPHABET.len() as u64) as usize])
                })
                .collect();
            let grant = DeviceGrantRecord {
                device_code: device_code.clone(),
                user_code: user_code.clone(),
                client_id: client.client_id.clone(),
                scope: scope.to_string(),
                created_ms: now,
                expires_ms: now + GRANT_LIFETIME_MS,
                last_poll_ms: None,
                user_id: None,
                denied: false,
                exchanged_ms: None,
            };
            if self.store.create_device_grant(&grant).await? {
                let verification_uri = self.oauth_endpoint(paths::DEVICE);
                return Ok(json!({
                    "device_code": device_code,
                    "user_code": user_code,
                    "verification_uri": verification_uri,
                    "verification_uri_complete": format!("{verification_uri}?code={user_code}"),
                    "expires_in": GRANT_LIFETIME_MS / 1000,
                    "interval": DEVICE_POLL_INTERVAL_S,
                }));
            }
        }
        Err(MatrixError::internal("no free user code").into())
    }

    /// A device grant by the code a person typed, for the approval page. Lookups are rate
    /// limited per client address, so user codes cannot be guessed.
    pub async fn pending_device_grant(
        &self,
        user_code: &str,
        client: &str,
    ) -> MatrixResult<Option<PendingDeviceGrant>> {
        self.check_rate_limit(Limit::Login, &format!("user_code:{client}"))?;
        let code = normalise_user_code(user_code);
        if code.len() != USER_CODE_LENGTH {
            return Ok(None);
        }
        let Some(grant) = self.store.device_grant_by_user_code(&code).await? else { return Ok(None) };
        if grant.user_id.is_some() || grant.denied || grant.expires_ms <= self.now_ms() {
            return Ok(None);
        }
        let Some(client) = self.oauth_client(&grant.client_id).await? else { return Ok(None) };
        let Ok(scope) = Scope::parse(&grant.scope) else { return Ok(None) };
        Ok(Some(PendingDeviceGrant { grant, client, scope }))
    }

    /// The person's answer to a device grant.
    pub async fn answer_device_grant(&self, user_code: &str, user_id: &UserId, allow: bool) -> MatrixResult<()> {
        let code = normalise_user_code(user_code);
        let answered = self.store.decide_device_grant(&code, allow.then_some(user_id)).await?;
        if !answered {
            return Err(MatrixError::not_found("This code has expired or was answered already"));
        }
        Ok(())
    }

    /// The web pages' sign-in: a password check (rate limited per client address, as `/login`),
    /// then a browser session, still waiting for the second factor if the account has one
    /// (the `bool`). Returns the session id for the cookie.
    pub async fn web_login(
        &self,
        user: &str,
        password: &str,
        client: &str,
    ) -> MatrixResult<(String, OwnedUserId, bool)> {
        self.check_rate_limit(Limit::Login, client)?;
        let user_id = self.login_user_id(user.trim())?;
        self.check_password(&user_id, password).await?;
        self.refuse_locked(&user_id).await?;
        let pending = self.has_second_factor(&user_id).await?;
        Ok((self.open_web_session(&user_id, pending).await?, user_id, pending))
    }

    /// A browser session for a user who proved both factors at once (a passkey).
    pub(crate) async fn open_web_session_for(&self, user_id: &UserId) -> MatrixResult<String> {
        self.open_web_session(user_id, false).await
    }

    async fn open_web_session(&self, user_id: &UserId, pending_second_factor: bool) -> MatrixResult<String> {
        let session_id = self.random.alphanumeric(40);
        let now = self.now_ms();
        let expires = now + WEB_SESSION_LIFETIME_MS;
        self.store.create_web_session(&session_id, user_id, now, expires, pending_second_factor).await?;
        Ok(session_id)
    }

    /// The user a browser session cookie belongs to.
    pub async fn web_session_user(&self, session_id: &str) -> MatrixResult<Option<OwnedUserId>> {
        self.web_session_in_step(session_id, false).await
    }

    /// The user of a live browser session that is (`awaiting_second_factor`) or is not yet
    /// past its second factor.
    pub(crate) async fn web_session_in_step(
        &self,
        session_id: &str,
        awaiting_second_factor: bool,
    ) -> MatrixResult<Option<OwnedUserId>> {
        if session_id.len() != 40 {
            return Ok(None);
        }
        Ok(match self.store.web_session_user(session_id, self.now_ms()).await? {
            Some((user, pending)) if pending == awaiting_second_factor => Some(user),
            _ => None,
        })
    }

    pub async fn web_logout(&self, session_id: &str) -> MatrixResult<()> {
        Ok(self.store.delete_web_session(session_id).await?)
    }

    /// The web registration page: the same rules as `/register` (open registration, or a
    /// registration token), then a browser session.
    pub async fn web_register(
        &self,
        username: &str,
        password: &str,
        token: Option<&str>,
        client: &str,
    ) -> MatrixResult<(String, OwnedUserId)> {
        let open = self.config().open_registration() && !self.config().registration.require_email;
        let token = token.map(str::trim).filter(|t| !t.is_empty());
        if !open && token.is_none() {
            return Err(MatrixError::forbidden("Registration needs a registration token"));
        }
        self.check_rate_limit(Limit::Registration, client)?;
        let name = username.trim().to_lowercase();
        self.username_available(&name).await?;
        self.check_user_namespace(&self.user_id(&name)?, None)?;
        crate::accounts::check_new_password(password)?;
        let mut stored_token = None;
        if !open
            && let Some(token) = token
            && !self.config().registration.tokens.iter().any(|t| t == token)
        {
            if !self.store.take_registration_token(token, self.now_ms()).await? {
                return Err(MatrixError::forbidden("This registration token is not valid"));
            }
            stored_token = Some(token.to_owned());
        }
        let user_id = self.create_user(&name, Some(password.to_owned()), false).await?;
        if let Some(token) = stored_token {
            self.store.complete_registration_token(&token).await?;
        }
        Ok((self.open_web_session(&user_id, false).await?, user_id))
    }

    /// Whether the registration page is offered at all.
    pub async fn web_registration_offered(&self) -> MatrixResult<bool> {
        Ok((self.config().open_registration() && !self.config().registration.require_email)
            || self.registration_tokens_in_use().await?)
    }

    /// `M_USER_LOCKED` for a locked account.
    pub(crate) async fn refuse_locked(&self, user_id: &UserId) -> MatrixResult<()> {
        if self.store.user_locked(user_id).await? {
            return Err(user_locked());
        }
        Ok(())
    }

    /// The admin CLI's lock: a locked account cannot log in and its tokens are refused, but
    /// nothing is deleted; unlocking restores it.
    pub async fn set_user_locked(&self, user_id: &UserId, locked: bool) -> MatrixResult<()> {
        if !self.store.set_user_locked(user_id, locked).await? {
            return Err(MatrixError::not_found(format!("No such user {user_id}")));
        }
        Ok(())
    }

    /// The sessions (devices) of a user, with the OAuth client each belongs to if any.
    pub async fn user_sessions(
        &self,
        user_id: &UserId,
    ) -> MatrixResult<Vec<(myelin_storage::DeviceRecord, Option<myelin_storage::OAuthSessionInfo>)>> {
        let devices = self.store.list_devices(user_id).await?;
        let mut sessions = Vec::with_capacity(devices.len());
        for device in devices {
            let oauth = self.store.oauth_session(user_id, &device.device_id).await?;
            sessions.push((device, oauth));
        }
        Ok(sessions)
    }

    /// The legacy SSO login (`/login/sso/redirect`) after the person confirmed on the page: a
    /// single-use `m.login.token` for the client at `redirect_url`, and the URL to send the
    /// browser to.
    pub async fn sso_login_redirect(&self, user_id: &UserId, redirect_url: &str) -> MatrixResult<String> {
        let mut url = Url::parse(redirect_url).map_err(|_| MatrixError::invalid_param("redirectUrl is not a URL"))?;
        self.refuse_locked(user_id).await?;
        let token = self.random.alphanumeric(32);
        self.store.create_login_token(&token, user_id, self.now_ms() + SSO_LOGIN_TOKEN_LIFETIME_MS).await?;
        url.query_pairs_mut().append_pair("loginToken", &token);
        Ok(url.to_string())
    }

    /// Whether the requester's device is an OAuth client's session.
    pub async fn is_oauth_session(&self, requester: &crate::accounts::Requester) -> MatrixResult<bool> {
        Ok(self.store.oauth_session(&requester.user_id, &requester.device_id).await?.is_some())
    }

    /// The person approved a cross-signing reset on the account page (MSC4312): for the next
    /// ten minutes their devices may replace the keys.
    pub async fn approve_cross_signing_reset(&self, user_id: &UserId) -> MatrixResult<()> {
        Ok(self.store.approve_cross_signing_reset(user_id, self.now_ms() + CROSS_SIGNING_RESET_WINDOW_MS).await?)
    }

    pub(crate) async fn cross_signing_reset_approved(&self, user_id: &UserId) -> MatrixResult<bool> {
        Ok(self.store.cross_signing_reset_until(user_id).await?.is_some_and(|until| until > self.now_ms()))
    }

    /// The 401 an OAuth session gets for a cross-signing reset (MSC4312): approve it on the
    /// account page, then try again.
    pub(crate) async fn cross_signing_reset_challenge(&self) -> MatrixResult<MatrixError> {
        const FLOWS: &[&[&str]] = &[&["m.oauth"], &["org.matrix.cross_signing_reset"]];
        let url = format!("{}?action=org.matrix.cross_signing_reset", self.oauth_endpoint(paths::ACCOUNT));
        let mut challenge = self.uia_challenge(FLOWS, None, None).await?;
        if let Some(uia) = challenge.uia.as_mut() {
            uia.params = json!({ "m.oauth": { "url": url }, "org.matrix.cross_signing_reset": { "url": url } });
        }
        Ok(challenge)
    }

    /// A random secret for the web pages (CSRF tokens).
    pub fn new_secret(&self, len: usize) -> String {
        self.random.alphanumeric(len)
    }

    /// The account page's display name, set as the user would through the client API (their
    /// rooms' member events follow).
    pub async fn set_own_displayname(&self, user_id: &UserId, name: Option<String>) -> MatrixResult<()> {
        let requester = crate::accounts::Requester {
            user_id: user_id.to_owned(),
            device_id: OwnedDeviceId::from("WEB"),
            is_admin: false,
            is_guest: false,
            access_token: String::new(),
            appservice: None,
        };
        self.set_profile_field(&requester, user_id, crate::accounts::ProfileField::DisplayName, name).await
    }

    /// Ends one session of a user (the device goes, as a logout).
    pub async fn end_session(&self, user_id: &UserId, device_id: &str) -> MatrixResult<()> {
        let device_id = OwnedDeviceId::from(device_id);
        if self.store.get_device(user_id, &device_id).await?.is_none() {
            return Err(MatrixError::not_found("No such session"));
        }
        self.delete_devices(user_id, &[device_id]).await
    }
}

pub(crate) fn user_locked() -> MatrixError {
    MatrixError::new(ErrorCode::Other("M_USER_LOCKED"), "This account has been locked").with_status(401)
}
