//! Accounts: registration, login, tokens, passwords, deactivation and profiles.

use myelin_core::{ErrorCode, MatrixError, MatrixResult, random, time::now_ms};
use myelin_storage::{NewSession, StorageError, TokenOwner, UserRecord};

use crate::Services;

/// Who is making a request, resolved from its access token.
#[derive(Clone, Debug)]
pub struct Requester {
    pub user_id: String,
    pub device_id: String,
    pub is_admin: bool,
    pub access_token: String,
}

/// Tokens handed to a client after register, login or refresh.
#[derive(Clone, Debug)]
pub struct IssuedSession {
    pub user_id: String,
    pub device_id: String,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in_ms: Option<u64>,
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

impl Services {
    pub async fn resolve_token(&self, token: &str) -> MatrixResult<Requester> {
        let owner: Option<TokenOwner> = self.store.token_owner(token).await?;
        let Some(owner) = owner else { return Err(MatrixError::unknown_token("Unrecognised access token")) };
        if owner.deactivated {
            return Err(MatrixError::unknown_token("User is deactivated"));
        }
        if owner.expires_ms.is_some_and(|exp| exp <= now_ms()) {
            return Err(MatrixError::new(ErrorCode::UnknownToken { soft_logout: true }, "Access token has expired"));
        }
        Ok(Requester {
            user_id: owner.user_id,
            device_id: owner.device_id,
            is_admin: owner.is_admin,
            access_token: token.to_owned(),
        })
    }

    pub async fn username_available(&self, localpart: &str) -> MatrixResult<()> {
        validate_localpart(localpart)?;
        if self.store.get_user(&self.user_id(localpart)).await?.is_some() {
            return Err(MatrixError::new(ErrorCode::UserInUse, "User ID already taken"));
        }
        Ok(())
    }

    /// Creates an account (used by /register and the admin command).
    pub async fn create_user(&self, localpart: &str, password: Option<String>, is_admin: bool) -> MatrixResult<String> {
        validate_localpart(localpart)?;
        let user_id = self.user_id(localpart);
        if ruma::UserId::parse(&user_id).is_err() {
            return Err(MatrixError::new(ErrorCode::InvalidUsername, "Invalid user id"));
        }
        let password_hash = match password {
            Some(p) => Some(self.passwords.hash(p).await?),
            None => None,
        };
        let record = UserRecord {
            user_id: user_id.clone(),
            password_hash,
            is_admin,
            deactivated: false,
            displayname: Some(localpart.to_owned()),
            avatar_url: None,
            created_ms: now_ms(),
        };
        match self.store.create_user(record).await {
            Ok(()) => Ok(user_id),
            Err(StorageError::Conflict(_)) => Err(MatrixError::new(ErrorCode::UserInUse, "User ID already taken")),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens a session (device + tokens) for a user.
    pub async fn issue_session(
        &self,
        user_id: &str,
        device_id: Option<String>,
        display_name: Option<String>,
        refreshable: bool,
    ) -> MatrixResult<IssuedSession> {
        let device_id = device_id.filter(|d| !d.is_empty()).unwrap_or_else(random::device_id);
        if device_id.len() > 255 {
            return Err(MatrixError::invalid_param("device_id is too long"));
        }
        let access_token = format!("myl_{}", random::alphanumeric(40));
        let (refresh_token, expires_in_ms) = if refreshable {
            (
                Some(format!("mylr_{}", random::alphanumeric(40))),
                Some(self.config.limits.refreshable_access_token_lifetime_ms),
            )
        } else {
            (None, None)
        };
        self.store
            .create_session(NewSession {
                user_id: user_id.to_owned(),
                device_id: device_id.clone(),
                display_name,
                access_token: access_token.clone(),
                expires_ms: expires_in_ms.map(|l| now_ms() + l),
                refresh_token: refresh_token.clone(),
                created_ms: now_ms(),
            })
            .await?;
        Ok(IssuedSession { user_id: user_id.to_owned(), device_id, access_token, refresh_token, expires_in_ms })
    }

    /// Resolves a login identifier (`@user:server` or a bare localpart) to a local user id.
    pub fn login_user_id(&self, user: &str) -> MatrixResult<String> {
        let user_id = if user.starts_with('@') { user.to_owned() } else { self.user_id(&user.to_lowercase()) };
        if !self.is_local_user(&user_id) {
            return Err(MatrixError::forbidden("Invalid username or password"));
        }
        Ok(user_id)
    }

    /// Checks a password; the same `M_FORBIDDEN` for unknown users and wrong passwords.
    pub async fn check_password(&self, user_id: &str, password: &str) -> MatrixResult<UserRecord> {
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
        let access_token = format!("myl_{}", random::alphanumeric(40));
        let new_refresh = format!("mylr_{}", random::alphanumeric(40));
        let lifetime = self.config.limits.refreshable_access_token_lifetime_ms;
        let owner =
            self.store.refresh_session(refresh_token, &access_token, &new_refresh, Some(now_ms() + lifetime)).await?;
        let Some((user_id, device_id)) = owner else { return Err(MatrixError::unknown_token("Unknown refresh token")) };
        Ok(IssuedSession {
            user_id,
            device_id,
            access_token,
            refresh_token: Some(new_refresh),
            expires_in_ms: Some(lifetime),
        })
    }

    pub async fn set_password(&self, user_id: &str, new_password: String) -> MatrixResult<()> {
        let hash = self.passwords.hash(new_password).await?;
        self.store.set_password_hash(user_id, Some(hash)).await?;
        Ok(())
    }

    /// Deactivates a user: leaves every room, removes devices and tokens, clears the profile.
    pub async fn deactivate(&self, user_id: &str) -> MatrixResult<()> {
        for room in self.store.rooms_for_user(user_id).await? {
            if matches!(room.membership.as_str(), "join" | "invite" | "knock") {
                let _ = self
                    .update_membership(user_id, None, &room.room_id, user_id, "leave", None, Default::default())
                    .await;
            }
        }
        self.store.deactivate_user(user_id).await?;
        Ok(())
    }

    /// Sets displayname or avatar and propagates it into every joined room's member event.
    pub async fn set_profile_field(&self, user_id: &str, field: &str, value: Option<String>) -> MatrixResult<()> {
        match field {
            "displayname" => self.store.set_displayname(user_id, value.clone()).await?,
            "avatar_url" => self.store.set_avatar_url(user_id, value.clone()).await?,
            _ => return Err(MatrixError::invalid_param("unknown profile field")),
        }
        for room in self.store.rooms_for_user(user_id).await? {
            if room.membership != "join" {
                continue;
            }
            let Some(current) = self.store.current_state_event(&room.room_id, "m.room.member", user_id).await? else {
                continue;
            };
            let Ok(pdu) = serde_json::from_str::<serde_json::Value>(&current.json) else { continue };
            let mut content = pdu.get("content").cloned().unwrap_or_else(|| serde_json::json!({}));
            match &value {
                Some(v) => content[field] = v.clone().into(),
                None => {
                    if let Some(obj) = content.as_object_mut() {
                        obj.remove(field);
                    }
                }
            }
            if let Err(err) =
                self.send_state_event(user_id, None, &room.room_id, "m.room.member", user_id, content).await
            {
                tracing::warn!(%err, room_id = room.room_id, "could not propagate profile change");
            }
        }
        Ok(())
    }
}
