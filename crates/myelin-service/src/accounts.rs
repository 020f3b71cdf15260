//! Accounts: registration, login, tokens, passwords, deactivation and profiles.

use myelin_core::{
    ErrorCode, MatrixError, MatrixResult, Membership,
    types::{OwnedDeviceId, OwnedUserId, ServerName, StateEventType, UserId},
};
use myelin_storage::{NewSession, RefreshOutcome, SessionRefresh, UserRecord};
use serde::Deserialize;
use serde_json::Value;

use crate::{
    Services,
    ratelimit::Limit,
    uia::{AuthData, Identifier},
};

/// Longest password accepted, in bytes.
const MAX_PASSWORD_BYTES: usize = 512;
/// Lifetime of a login token (`/login/get_token`).
pub const LOGIN_TOKEN_LIFETIME_MS: u64 = 120_000;

/// Who is making a request, resolved from its access token.
#[derive(Clone, Debug)]
pub struct Requester {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub is_admin: bool,
    /// A guest account: only part of the API is open to it (`api` checks the route).
    pub is_guest: bool,
    pub access_token: String,
    /// The application service acting (its `as_token`), if one is.
    pub appservice: Option<String>,
}

impl Requester {
    /// The server's operator at the admin CLI: an admin with no account or device
    /// (`@myelin-cli:{server}` in the log and in what records who acted).
    pub fn operator(server_name: &ServerName) -> MatrixResult<Self> {
        let user_id = UserId::parse(format!("@myelin-cli:{server_name}"))
            .map_err(|e| MatrixError::internal(format!("the operator's id: {e}")))?;
        Ok(Self {
            user_id,
            device_id: OwnedDeviceId::from("CLI"),
            is_admin: true,
            is_guest: false,
            access_token: String::new(),
            appservice: None,
        })
    }

    /// `M_FORBIDDEN` (saying `what`) unless `user_id` is the requester: a user acts for themself.
    pub fn require_self(&self, user_id: &UserId, what: &str) -> MatrixResult<()> {
        if self.user_id != user_id {
            return Err(MatrixError::forbidden(format!("You can only {what} for yourself")));
        }
        Ok(())
    }
}

/// Tokens handed to a client after register, login or refresh.
#[derive(Clone, Debug)]
pub struct IssuedSession {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in_ms: Option<u64>,
}

/// The registration and login type of application services.
pub const APPSERVICE_LOGIN: &str = "m.login.application_service";

/// `POST /register`.
#[derive(Debug, Deserialize)]
pub struct RegisterRequest {
    /// `m.login.application_service`: an application service registers one of its users.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub auth: Option<AuthData>,
    pub device_id: Option<String>,
    pub initial_device_display_name: Option<String>,
    #[serde(default)]
    pub inhibit_login: bool,
    #[serde(default)]
    pub refresh_token: bool,
    /// A guest upgrading to a full account: their access token (and `username` their localpart).
    pub guest_access_token: Option<String>,
}

/// What registration answers: the new user, and a session unless `inhibit_login`.
#[derive(Debug)]
pub struct Registered {
    pub user_id: OwnedUserId,
    pub session: Option<IssuedSession>,
}

/// `POST /login`.
#[derive(Debug, Deserialize)]
pub struct LoginRequest {
    #[serde(rename = "type")]
    pub kind: String,
    pub identifier: Option<Identifier>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    pub device_id: Option<String>,
    pub initial_device_display_name: Option<String>,
    #[serde(default)]
    pub refresh_token: bool,
}

/// A user's public profile.
#[derive(Debug, Clone)]
pub struct Profile {
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

/// A field of the profile a user can set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileField {
    DisplayName,
    AvatarUrl,
}

impl ProfileField {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "displayname" => Some(Self::DisplayName),
            "avatar_url" => Some(Self::AvatarUrl),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::DisplayName => "displayname",
            Self::AvatarUrl => "avatar_url",
        }
    }
}

/// Checks a localpart against the spec's grammar for new user ids.
pub fn validate_localpart(localpart: &str) -> MatrixResult<()> {
    let ok = !localpart.is_empty()
        && localpart.len() <= 200
        && localpart.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/' | b'+'));
    if ok {
        Ok(())
    } else {
        Err(MatrixError::new(ErrorCode::InvalidUsername, "User ID can only contain a-z, 0-9, and . _ = - / +"))
    }
}

/// The rule for every new password, from a client or the admin command: 1 to 512 bytes.
pub(crate) fn check_new_password(password: &str) -> MatrixResult<()> {
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        return Err(MatrixError::new(ErrorCode::WeakPassword, "Password must be 1 to 512 bytes"));
    }
    Ok(())
}

impl Services {
    pub async fn resolve_token(&self, token: &str) -> MatrixResult<Requester> {
        self.resolve_token_masquerading(token, &crate::appservices::Masquerade::default()).await
    }

    /// The requester of an access token; an application service's token acts as the user (and
    /// device) its `user_id` (and `device_id`) parameters name.
    pub async fn resolve_token_masquerading(
        &self,
        token: &str,
        masquerade: &crate::appservices::Masquerade,
    ) -> MatrixResult<Requester> {
        if let Some(service) = self.appservice_by_token(token) {
            return self.appservice_requester(&service, token, masquerade).await;
        }
        let Some(owner) = self.store.token_owner(token).await? else {
            return Err(MatrixError::unknown_token("Unrecognised access token"));
        };
        if owner.deactivated {
            return Err(MatrixError::unknown_token("User is deactivated"));
        }
        if owner.locked {
            return Err(crate::oauth::user_locked());
        }
        if owner.expires_ms.is_some_and(|exp| exp <= self.clock.now_ms()) {
            return Err(MatrixError::new(ErrorCode::UnknownToken { soft_logout: true }, "Access token has expired"));
        }
        Ok(Requester {
            user_id: owner.user_id,
            device_id: owner.device_id,
            is_admin: owner.is_admin,
            is_guest: owner.is_guest,
            access_token: token.to_owned(),
            appservice: None,
        })
    }

    /// `/register/available` (user names are case-insensitive: stored lower-case).
    pub async fn username_available(&self, name: &str) -> MatrixResult<()> {
        let localpart = name.to_lowercase();
        validate_localpart(&localpart)?;
        if self.is_reserved_localpart(&localpart) || self.store.get_user(&self.user_id(&localpart)?).await?.is_some() {
            return Err(MatrixError::new(ErrorCode::UserInUse, "User ID already taken"));
        }
        Ok(())
    }

    /// Creates an account (used by `/register` and the admin command).
    pub async fn create_user(
        &self,
        localpart: &str,
        password: Option<String>,
        is_admin: bool,
    ) -> MatrixResult<OwnedUserId> {
        validate_localpart(localpart)?;
        let user_id = self.user_id(localpart)?;
        let password_hash = match password {
            Some(p) => Some(self.hash_new_password(p).await?),
            None => None,
        };
        let record = UserRecord {
            user_id: user_id.clone(),
            password_hash,
            is_admin,
            is_guest: false,
            deactivated: false,
            displayname: Some(localpart.to_owned()),
            avatar_url: None,
            created_ms: self.clock.now_ms(),
        };
        match self.store.create_user(record).await {
            Ok(()) => Ok(user_id),
            Err(err) if err.is_conflict() => Err(MatrixError::new(ErrorCode::UserInUse, "User ID already taken")),
            Err(e) => Err(e.into()),
        }
    }

    /// `POST /register?kind=guest`: a guest account with a random numeric name and no
    /// password, logged in at once (no user-interactive auth, as Synapse).
    pub async fn register_guest(
        &self,
        client: &str,
        initial_device_display_name: Option<String>,
    ) -> MatrixResult<Registered> {
        if !self.config.registration.allow_guests {
            return Err(MatrixError::new(ErrorCode::GuestAccessForbidden, "Guest access is disabled").with_status(403));
        }
        self.check_rate_limit(Limit::Registration, client)?;
        let localpart = format!("guest-{}", self.random.alphanumeric(16).to_lowercase());
        let user_id = self.user_id(&localpart)?;
        let record = UserRecord {
            user_id: user_id.clone(),
            password_hash: None,
            is_admin: false,
            is_guest: true,
            deactivated: false,
            displayname: Some(localpart.clone()),
            avatar_url: None,
            created_ms: self.clock.now_ms(),
        };
        match self.store.create_user(record).await {
            Ok(()) => {}
            Err(err) if err.is_conflict() => return Err(MatrixError::new(ErrorCode::UserInUse, "Try again")),
            Err(err) => return Err(err.into()),
        }
        let session = self.issue_session(&user_id, None, initial_device_display_name, false).await?;
        Ok(Registered { user_id, session: Some(session) })
    }

    /// `POST /register` from the client address `client`, by `requester` if the request had an
    /// access token (an application service registering its users).
    pub async fn register(
        &self,
        req: RegisterRequest,
        client: &str,
        requester: Option<&Requester>,
    ) -> MatrixResult<Registered> {
        if req.kind.as_deref() == Some(APPSERVICE_LOGIN) {
            return self.register_appservice_user(req, requester).await;
        }
        if !self.config.open_registration() && !self.registration_tokens_in_use().await? {
            return Err(MatrixError::forbidden("Registration has been disabled"));
        }
        self.check_rate_limit(Limit::Registration, client)?;
        // A retry of a registration that went through (same session): the same account.
        if let Some(user_id) = self.registered_in_session(req.auth.as_ref()).await? {
            if req.inhibit_login {
                return Ok(Registered { user_id, session: None });
            }
            let session =
                self.issue_session(&user_id, req.device_id, req.initial_device_display_name, req.refresh_token).await?;
            return Ok(Registered { user_id, session: Some(session) });
        }
        let guest = match &req.guest_access_token {
            Some(token) => Some(self.upgradable_guest(token, req.username.as_deref()).await?),
            None => None,
        };
        let localpart = match (&req.username, &guest) {
            (Some(name), None) => {
                let name = name.to_lowercase();
                self.username_available(&name).await?;
                self.check_user_namespace(&self.user_id(&name)?, None)?;
                Some(name)
            }
            _ => None,
        };
        if let Some(password) = &req.password {
            check_new_password(password)?;
        }
        let auth = self.require_registration_auth(req.auth.as_ref()).await?;
        let email_sid = auth.email_sid;
        let upgraded = guest.is_some();
        let user_id = match guest {
            Some(guest) => {
                let hash = match req.password {
                    Some(p) => Some(self.hash_new_password(p).await?),
                    None => None,
                };
                if !self.store.upgrade_guest(&guest, hash).await? {
                    return Err(MatrixError::forbidden("This account is not a guest account"));
                }
                guest
            }
            None => {
                let localpart = localpart.unwrap_or_else(|| self.random.alphanumeric(12).to_lowercase());
                self.create_user(&localpart, req.password, false).await?
            }
        };
        if let Some(sid) = &email_sid
            && let Err(err) = self.bind_registered_email(&user_id, sid).await
        {
            // Two registrations raced for one address: the one that did not get it is undone.
            if !upgraded {
                self.deactivate(&user_id).await?;
            }
            return Err(err);
        }
        if let Some(token) = &auth.stored_token {
            self.store.complete_registration_token(token).await?;
        }
        self.note_registration(req.auth.as_ref(), &user_id).await?;
        if req.inhibit_login {
            return Ok(Registered { user_id, session: None });
        }
        let session =
            self.issue_session(&user_id, req.device_id, req.initial_device_display_name, req.refresh_token).await?;
        Ok(Registered { user_id, session: Some(session) })
    }

    /// The guest a registration upgrades: the owner of `token`, a guest, whose localpart the
    /// request names as `username` (as the spec asks).
    async fn upgradable_guest(&self, token: &str, username: Option<&str>) -> MatrixResult<OwnedUserId> {
        let refused =
            || MatrixError::forbidden("Cannot register taken user ID without valid guest credentials for that user");
        let owner = self.resolve_token(token).await.map_err(|_| refused())?;
        let named = username.is_some_and(|name| name.to_lowercase() == owner.user_id.localpart());
        if !owner.is_guest || !named {
            return Err(refused());
        }
        Ok(owner.user_id)
    }

    /// `POST /login` from the client address `client` (with an access token: an application
    /// service logging one of its users in).
    pub async fn login(
        &self,
        req: LoginRequest,
        client: &str,
        requester: Option<&Requester>,
    ) -> MatrixResult<IssuedSession> {
        if requester.is_none_or(|r| r.appservice.is_none()) {
            self.check_rate_limit(Limit::Login, client)?;
        }
        let user_id = match req.kind.as_str() {
            crate::uia::PASSWORD => {
                let user = match &req.identifier {
                    Some(id) if id.kind == "m.id.user" => id.user.clone(),
                    Some(id) if id.kind == "m.id.thirdparty" => {
                        let address = id.address.as_deref().unwrap_or_default();
                        // An unknown address fails as a wrong password does.
                        let owner = match id.medium.as_deref() {
                            Some("email") => self.email_owner(address).await?,
                            _ => None,
                        };
                        Some(owner.map_or_else(|| "@unknown:invalid".to_owned(), |o| o.to_string()))
                    }
                    Some(_) => {
                        return Err(MatrixError::new(ErrorCode::Unknown, "Only m.id.user identifiers are supported")
                            .with_status(400));
                    }
                    None => req.user.clone(),
                }
                .ok_or_else(|| MatrixError::missing_param("identifier.user is required"))?;
                let password =
                    req.password.as_deref().ok_or_else(|| MatrixError::missing_param("password is required"))?;
                let user_id = self.login_user_id(&user)?;
                self.check_password(&user_id, password).await?;
                if self.has_second_factor(&user_id).await? {
                    // A password alone must not get around the account's second factor.
                    return Err(MatrixError::forbidden(
                        "This account signs in with a second factor: use single sign-on (m.login.sso) or OAuth",
                    ));
                }
                user_id
            }
            "m.login.token" => {
                let token = req.token.as_deref().ok_or_else(|| MatrixError::missing_param("token is required"))?;
                let user = self.store.take_login_token(token, self.clock.now_ms()).await?;
                user.ok_or_else(|| MatrixError::forbidden("Invalid or expired login token"))?
            }
            APPSERVICE_LOGIN => self.appservice_login_user(&req, requester).await?,
            other => {
                return Err(
                    MatrixError::new(ErrorCode::Unknown, format!("Unsupported login type {other:?}")).with_status(400)
                );
            }
        };
        self.refuse_locked(&user_id).await?;
        self.issue_session(&user_id, req.device_id, req.initial_device_display_name, req.refresh_token).await
    }

    /// Opens a session (device + tokens) for a user.
    pub async fn issue_session(
        &self,
        user_id: &UserId,
        device_id: Option<String>,
        display_name: Option<String>,
        refreshable: bool,
    ) -> MatrixResult<IssuedSession> {
        let device_id = device_id.filter(|d| !d.is_empty()).unwrap_or_else(|| self.random.device_id());
        if device_id.len() > 255 {
            return Err(MatrixError::invalid_param("device_id is too long"));
        }
        let device_id = OwnedDeviceId::from(device_id);
        let access_token = format!("myl_{}", self.random.alphanumeric(40));
        let (refresh_token, expires_in_ms) = if refreshable {
            (
                Some(format!("mylr_{}", self.random.alphanumeric(40))),
                Some(self.config.limits.refreshable_access_token_lifetime_ms),
            )
        } else {
            (None, None)
        };
        let now = self.clock.now_ms();
        self.store
            .create_session(NewSession {
                user_id: user_id.to_owned(),
                device_id: device_id.clone(),
                display_name,
                access_token: access_token.clone(),
                expires_ms: expires_in_ms.map(|l| now + l),
                refresh_token: refresh_token.clone(),
                created_ms: now,
                oauth: None,
            })
            .await?;
        Ok(IssuedSession { user_id: user_id.to_owned(), device_id, access_token, refresh_token, expires_in_ms })
    }

    /// Resolves a login identifier (`@user:server` or a bare localpart) to a local user id.
    pub fn login_user_id(&self, user: &str) -> MatrixResult<OwnedUserId> {
        let user_id = if user.starts_with('@') {
            UserId::parse(user).map_err(|_| MatrixError::forbidden("Invalid username or password"))?
        } else {
            self.user_id(&user.to_lowercase()).map_err(|_| MatrixError::forbidden("Invalid username or password"))?
        };
        if !self.is_local_user(&user_id) {
            return Err(MatrixError::forbidden("Invalid username or password"));
        }
        Ok(user_id)
    }

    /// Checks a password; the same `M_FORBIDDEN` for unknown users and wrong passwords.
    pub async fn check_password(&self, user_id: &UserId, password: &str) -> MatrixResult<UserRecord> {
        let user = self.store.get_user(user_id).await?;
        let Some(user) = user else { return Err(MatrixError::forbidden("Invalid username or password")) };
        if user.deactivated {
            return Err(MatrixError::new(ErrorCode::UserDeactivated, "This account has been deactivated"));
        }
        let Some(hash) = user.password_hash.clone() else {
            return Err(MatrixError::forbidden("Invalid username or password"));
        };
        if !self.passwords.verify(password.to_owned(), hash).await {
            return Err(MatrixError::forbidden("Invalid username or password"));
        }
        Ok(user)
    }

    pub async fn refresh(&self, refresh_token: &str) -> MatrixResult<IssuedSession> {
        let access_token = format!("myl_{}", self.random.alphanumeric(40));
        let new_refresh = format!("mylr_{}", self.random.alphanumeric(40));
        let lifetime = self.config.limits.refreshable_access_token_lifetime_ms;
        let outcome = self
            .store
            .refresh_session(SessionRefresh {
                refresh_token: refresh_token.to_owned(),
                new_access_token: access_token,
                new_refresh_token: new_refresh,
                expires_ms: Some(self.clock.now_ms() + lifetime),
            })
            .await?;
        match outcome {
            RefreshOutcome::Refreshed { user_id, device_id, access_token, refresh_token, expires_ms } => {
                Ok(IssuedSession {
                    user_id,
                    device_id,
                    access_token,
                    refresh_token: Some(refresh_token),
                    expires_in_ms: Some(expires_ms.map_or(lifetime, |e| e.saturating_sub(self.clock.now_ms()))),
                })
            }
            RefreshOutcome::Replayed { user_id, device_id } => {
                // Used again after the token that replaced it was used: someone else holds a copy.
                tracing::warn!(%user_id, "refresh token replayed after its successor was used: session ended");
                self.delete_devices(&user_id, &[device_id]).await?;
                Err(MatrixError::unknown_token("Unknown refresh token"))
            }
            RefreshOutcome::Unknown => Err(MatrixError::unknown_token("Unknown refresh token")),
        }
    }

    /// The admin command's password reset: a new password, and every device logged out.
    pub async fn reset_password(&self, user_id: &UserId, new_password: String) -> MatrixResult<()> {
        self.existing_user(user_id).await?;
        self.set_password(user_id, new_password).await?;
        self.delete_all_devices(user_id, None).await
    }

    /// `M_NOT_FOUND` unless the user exists (deactivated or not).
    pub async fn existing_user(&self, user_id: &UserId) -> MatrixResult<UserRecord> {
        self.store.get_user(user_id).await?.ok_or_else(|| MatrixError::not_found(format!("No such user {user_id}")))
    }

    async fn hash_new_password(&self, password: String) -> MatrixResult<String> {
        check_new_password(&password)?;
        self.passwords.hash(password).await
    }

    /// Sets a user's password (clients go through [`Self::change_password`]).
    pub async fn set_password(&self, user_id: &UserId, new_password: String) -> MatrixResult<()> {
        let hash = self.hash_new_password(new_password).await?;
        self.store.set_password_hash(user_id, Some(hash)).await?;
        Ok(())
    }

    /// `POST /account/password`: with the current password (UIA), optionally logging out the
    /// user's other devices.
    pub async fn change_password(
        &self,
        requester: &Requester,
        new_password: String,
        logout_devices: bool,
        auth: Option<&AuthData>,
    ) -> MatrixResult<()> {
        self.require_password_auth(requester, auth).await?;
        self.set_password(&requester.user_id, new_password).await?;
        if logout_devices {
            self.delete_all_devices(&requester.user_id, Some(&requester.device_id)).await?;
        }
        Ok(())
    }

    /// `POST /account/deactivate`, with the current password (UIA).
    /// `erase`: the user's messages are also hidden (shown redacted) from users who were not in
    /// the room when they were sent.
    pub async fn deactivate_account(
        &self,
        requester: &Requester,
        auth: Option<&AuthData>,
        erase: bool,
    ) -> MatrixResult<()> {
        self.require_password_auth(requester, auth).await?;
        self.deactivate_erasing(&requester.user_id, erase).await
    }

    /// Deactivates a user and, with `erase`, marks them erased: their messages are hidden from
    /// users who join later.
    pub async fn deactivate_erasing(&self, user_id: &UserId, erase: bool) -> MatrixResult<()> {
        self.deactivate(user_id).await?;
        if erase {
            self.store.mark_user_erased(user_id, self.clock.now_ms()).await?;
        }
        Ok(())
    }

    /// Deactivates a user: leaves every room, removes devices and tokens, clears the profile.
    pub async fn deactivate(&self, user_id: &UserId) -> MatrixResult<()> {
        self.existing_user(user_id).await?;
        self.delete_all_threepids(user_id).await?;
        for room in self.store.rooms_for_user(user_id).await? {
            if room.membership.is_current() {
                let change = crate::rooms::MembershipChange::new(user_id, &room.room_id, user_id, Membership::Leave);
                let _ = self.update_membership(change).await;
            }
        }
        self.store.deactivate_user(user_id).await?;
        Ok(())
    }

    /// `POST /login/get_token`: a short-lived token that logs another device in (UIA).
    pub async fn create_login_token(&self, requester: &Requester, auth: Option<&AuthData>) -> MatrixResult<String> {
        self.require_password_auth(requester, auth).await?;
        let token = self.random.alphanumeric(32);
        self.store
            .create_login_token(&token, &requester.user_id, self.clock.now_ms() + LOGIN_TOKEN_LIFETIME_MS)
            .await?;
        Ok(token)
    }

    /// A user's profile, if the user exists (a user of another server: as that server answers).
    pub async fn profile(&self, user_id: &UserId) -> MatrixResult<Profile> {
        if !self.is_local_user(user_id) {
            return self.remote_profile(user_id).await;
        }
        let mut record = self.store.get_user(user_id).await?;
        // A user an application service's namespace holds may exist once the service is asked.
        if record.is_none() && self.query_appservices_for_user(user_id).await {
            record = self.store.get_user(user_id).await?;
        }
        let record = record.filter(|u| !u.deactivated).ok_or_else(|| MatrixError::not_found("Profile not found"))?;
        Ok(Profile { displayname: record.displayname, avatar_url: record.avatar_url })
    }

    /// Sets displayname or avatar (only one's own) and propagates it into every joined room's
    /// member event.
    pub async fn set_profile_field(
        &self,
        requester: &Requester,
        user_id: &UserId,
        field: ProfileField,
        value: Option<String>,
    ) -> MatrixResult<()> {
        requester.require_self(user_id, "change a profile")?;
        if value.as_ref().is_some_and(|v| v.len() > 1024) {
            return Err(MatrixError::invalid_param("Profile field is too long"));
        }
        match field {
            ProfileField::DisplayName => self.store.set_displayname(user_id, value.clone()).await?,
            ProfileField::AvatarUrl => self.store.set_avatar_url(user_id, value.clone()).await?,
        }
        for room in self.store.rooms_for_user(user_id).await? {
            if room.membership != Membership::Join {
                continue;
            }
            let Some(current) =
                self.store.current_state_event(&room.room_id, &StateEventType::RoomMember, user_id.as_str()).await?
            else {
                continue;
            };
            let mut content = Self::event_content(&current);
            if !content.is_object() {
                content = Value::Object(Default::default());
            }
            match &value {
                Some(v) => content[field.as_str()] = v.clone().into(),
                None => {
                    if let Some(obj) = content.as_object_mut() {
                        obj.remove(field.as_str());
                    }
                }
            }
            let spec = crate::rooms::EventSpec::state(StateEventType::RoomMember, user_id.as_str(), content);
            if let Err(err) = self.send(user_id, None, &room.room_id, spec).await {
                tracing::warn!(%err, room_id = %room.room_id, "could not propagate profile change");
            }
        }
        Ok(())
    }
}

impl Services {
    /// `GET /admin/whois/{userId}`: a user's devices with where and when each was last seen; for
    /// admins, and for the user themself.
    pub async fn whois(&self, requester: &Requester, user_id: &UserId) -> MatrixResult<serde_json::Value> {
        if !requester.is_admin && requester.user_id != user_id {
            return Err(MatrixError::forbidden("You are not a server admin"));
        }
        if !self.is_local_user(user_id) || self.store.get_user(user_id).await?.is_none() {
            return Err(MatrixError::not_found("No such user on this server"));
        }
        let mut devices = serde_json::Map::new();
        for device in self.store.list_devices(user_id).await? {
            let mut connection = serde_json::json!({ "last_seen": device.last_seen_ms });
            if let Some(ip) = device.last_seen_ip {
                connection["ip"] = ip.into();
            }
            devices.insert(
                device.device_id.to_string(),
                serde_json::json!({ "sessions": [{ "connections": [connection] }] }),
            );
        }
        Ok(serde_json::json!({ "user_id": user_id, "devices": devices }))
    }

    /// `GET /register/m.login.registration_token/validity`: whether `token` would let someone
    /// register (403 if registration is closed to everyone).
    pub async fn registration_token_valid(&self, token: &str) -> MatrixResult<bool> {
        if !self.config.open_registration() && !self.registration_tokens_in_use().await? {
            return Err(MatrixError::forbidden("Registration is not enabled on this server"));
        }
        if self.config.registration.tokens.iter().any(|t| t == token) {
            return Ok(true);
        }
        Ok(self.store.registration_token(token).await?.is_some_and(|t| t.usable(self.now_ms())))
    }
}

impl Services {
    /// `POST /register` with `m.login.application_service`: a user in the requesting service's
    /// namespace, without password or user-interactive auth.
    async fn register_appservice_user(
        &self,
        req: RegisterRequest,
        requester: Option<&Requester>,
    ) -> MatrixResult<Registered> {
        let Some(appservice) = requester.and_then(|r| r.appservice.clone()) else {
            return Err(MatrixError::forbidden("Only application services can use m.login.application_service"));
        };
        let name = req.username.ok_or_else(|| MatrixError::missing_param("username is required"))?.to_lowercase();
        validate_localpart(&name)?;
        if self.is_reserved_localpart(&name) {
            return Err(MatrixError::new(ErrorCode::UserInUse, "User ID already taken"));
        }
        let user_id = self.user_id(&name)?;
        self.check_user_namespace(&user_id, Some(&appservice))?;
        let user_id = self.create_user(&name, None, false).await?;
        if req.inhibit_login {
            return Ok(Registered { user_id, session: None });
        }
        let session =
            self.issue_session(&user_id, req.device_id, req.initial_device_display_name, req.refresh_token).await?;
        Ok(Registered { user_id, session: Some(session) })
    }

    /// `POST /login` with `m.login.application_service`: one of the requesting service's users
    /// (refused to services that manage devices themselves, MSC4190).
    async fn appservice_login_user(
        &self,
        req: &LoginRequest,
        requester: Option<&Requester>,
    ) -> MatrixResult<OwnedUserId> {
        let Some(service) = requester.and_then(|r| r.appservice.as_deref()).and_then(|id| self.appservice_by_id(id))
        else {
            return Err(MatrixError::new(
                ErrorCode::Other("M_MISSING_TOKEN"),
                "An application service token is required",
            )
            .with_status(401));
        };
        if service.msc4190 {
            return Err(MatrixError::new(
                ErrorCode::Other("M_APPSERVICE_LOGIN_UNSUPPORTED"),
                "This application service manages its devices itself (MSC4190): create one with PUT /devices",
            )
            .with_status(400));
        }
        let user = match &req.identifier {
            Some(id) if id.kind == "m.id.user" => id.user.clone(),
            _ => req.user.clone(),
        }
        .ok_or_else(|| MatrixError::missing_param("identifier.user is required"))?;
        let user_id = self.login_user_id(&user)?;
        if !service.is_interested_in_user(&user_id) {
            return Err(MatrixError::forbidden("The user is not in the application service's namespace"));
        }
        if self.existing_user(&user_id).await?.deactivated {
            return Err(MatrixError::forbidden("The user is deactivated"));
        }
        Ok(user_id)
    }
}
