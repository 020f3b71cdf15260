//! User-interactive authentication (UIA): the flows a sensitive request must complete, and the
//! sessions that remember completed stages (in the database, so any process of a deployment can
//! continue a session another one started).

use std::time::Duration;

use myelin_core::{
    ErrorCode, MatrixError, MatrixResult, UiaChallenge,
    types::{OwnedUserId, UserId},
};
use serde::Deserialize;
use serde_json::json;

use crate::{Services, accounts::Requester};

/// A session is forgotten this long after it started.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(15 * 60);

pub const PASSWORD: &str = "m.login.password";
pub const DUMMY: &str = "m.login.dummy";
pub const REGISTRATION_TOKEN: &str = "m.login.registration_token";
/// A validated email address (a `requestToken` session) proves who one is.
pub const EMAIL_IDENTITY: &str = "m.login.email.identity";

/// The `auth` object of a request.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct AuthData {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub session: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    pub identifier: Option<Identifier>,
    pub user: Option<String>,
    #[serde(alias = "threepidCreds")]
    pub threepid_creds: Option<ThreepidCreds>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Identifier {
    #[serde(rename = "type")]
    pub kind: String,
    pub user: Option<String>,
    /// `m.id.thirdparty`: `email` and the address.
    pub medium: Option<String>,
    pub address: Option<String>,
}

/// `m.login.email.identity`'s proof: a validated `requestToken` session.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ThreepidCreds {
    pub sid: String,
    pub client_secret: String,
}

/// What registration's user-interactive auth established.
#[derive(Debug, Default)]
pub(crate) struct RegistrationAuth {
    /// The validation session of the address to bind, if the flow had one.
    pub email_sid: Option<String>,
    /// The stored registration token whose use the registration took, if it used one.
    pub stored_token: Option<String>,
}

impl Services {
    /// The 401 that asks for `flows`, continuing `session` if it is still known (else a new one).
    pub(crate) async fn uia_challenge(
        &self,
        flows: &[&[&str]],
        session: Option<&str>,
        cause: Option<MatrixError>,
    ) -> MatrixResult<MatrixError> {
        let oldest = self.clock.now_ms().saturating_sub(SESSION_LIFETIME.as_millis() as u64);
        let known = match session {
            Some(id) => self.store.uia_session(id, oldest).await?.map(|done| (id.to_owned(), done)),
            None => None,
        };
        let (session, completed) = match known {
            Some(known) => known,
            None => {
                let id = self.random.alphanumeric(24);
                self.store.create_uia_session(&id, self.clock.now_ms()).await?;
                (id, Vec::new())
            }
        };
        let flows = flows.iter().map(|stages| stages.iter().map(|s| (*s).to_owned()).collect()).collect();
        // Stages only: what a session notes for itself (`registered:…`, `email-sid:…`) stays inside.
        let completed = completed.into_iter().filter(|stage| !stage.contains(':')).collect();
        Ok(MatrixError::uia(UiaChallenge { flows, session, completed, failed: false, params: json!({}) }, cause))
    }

    /// User-interactive auth with the account password, for sensitive requests (password change,
    /// deactivation, device deletion, cross-signing reset, login tokens).
    pub async fn require_password_auth(&self, requester: &Requester, auth: Option<&AuthData>) -> MatrixResult<()> {
        const FLOWS: &[&[&str]] = &[&[PASSWORD]];
        // Application services act for their users without their passwords (as on Synapse).
        if requester.appservice.is_some() {
            return Ok(());
        }
        let Some(auth) = auth else { return Err(self.uia_challenge(FLOWS, None, None).await?) };
        if auth.kind.as_deref() != Some(PASSWORD) {
            return Err(self.uia_challenge(FLOWS, auth.session.as_deref(), None).await?);
        }
        let claimed = auth.identifier.as_ref().and_then(|i| i.user.clone()).or(auth.user.clone());
        if let Some(claimed) = claimed
            && self.login_user_id(&claimed).ok().as_deref() != Some(&*requester.user_id)
        {
            return Err(MatrixError::forbidden("You can only authenticate as yourself"));
        }
        let password = auth.password.clone().unwrap_or_default();
        match self.check_password(&requester.user_id, &password).await {
            Ok(_) => {
                if let Some(session) = &auth.session {
                    self.store.delete_uia_session(session).await?;
                }
                Ok(())
            }
            Err(err) => Err(self.uia_challenge(FLOWS, auth.session.as_deref(), Some(err)).await?),
        }
    }

    /// Registration's user-interactive auth: `m.login.dummy` while registration is open, a
    /// registration token when tokens are configured; with `registration.require_email`, a
    /// validated address (`m.login.email.identity`) instead of the dummy stage and after the
    /// token. Stages are remembered in the session; answers the validation session (its `sid`)
    /// of the address to bind, if the flow had one.
    pub(crate) async fn require_registration_auth(&self, auth: Option<&AuthData>) -> MatrixResult<RegistrationAuth> {
        let open = self.config.open_registration();
        let tokens = &self.config.registration.tokens;
        let email = self.config.registration.require_email && self.config.email.enabled();
        let mut flows: Vec<&[&str]> = Vec::new();
        if open {
            flows.push(if email { &[EMAIL_IDENTITY] } else { &[DUMMY] });
        }
        if self.registration_tokens_in_use().await? {
            flows.push(if email { &[REGISTRATION_TOKEN, EMAIL_IDENTITY] } else { &[REGISTRATION_TOKEN] });
        }
        let Some(auth) = auth else { return Err(self.uia_challenge(&flows, None, None).await?) };
        let oldest = self.clock.now_ms().saturating_sub(SESSION_LIFETIME.as_millis() as u64);
        let mut completed = match &auth.session {
            Some(session) => self.store.uia_session(session, oldest).await?.unwrap_or_default(),
            None => Vec::new(),
        };
        let mut cause = None;
        let mut email_sid = None;
        let mut stored_token: Option<String> = None;
        let mut stage_done: Option<&str> = None;
        match auth.kind.as_deref() {
            Some(DUMMY) if open && !email => stage_done = Some(DUMMY),
            Some(REGISTRATION_TOKEN) => match auth.token.as_deref() {
                Some(t) if tokens.iter().any(|c| c == t) => stage_done = Some(REGISTRATION_TOKEN),
                // A stored token: one of its uses is taken now (two registrations cannot take its
                // last one), and counted as completed when the account is made.
                Some(t) if self.store.take_registration_token(t, self.clock.now_ms()).await? => {
                    stage_done = Some(REGISTRATION_TOKEN);
                    stored_token = Some(t.to_owned());
                }
                _ => cause = Some(MatrixError::new(ErrorCode::Unauthorized, "Invalid registration token")),
            },
            Some(EMAIL_IDENTITY) if email => match &auth.threepid_creds {
                Some(creds) => {
                    let purpose = crate::email::EmailPurpose::Register;
                    match self.validated_email_session(&creds.sid, &creds.client_secret, purpose).await {
                        Ok(session) => {
                            // An address bound since it was validated (by an earlier registration
                            // with the same session, say) does not register another account.
                            if self.store.threepid_owner(&session.medium, &session.address).await?.is_some() {
                                cause = Some(crate::email::threepid_in_use());
                            } else {
                                stage_done = Some(EMAIL_IDENTITY);
                                email_sid = Some(session.sid);
                            }
                        }
                        Err(err) => cause = Some(err),
                    }
                }
                None => cause = Some(MatrixError::missing_param("threepid_creds is required")),
            },
            _ => {}
        }
        if let Some(stage) = stage_done {
            completed.push(stage.to_owned());
        }
        let passed = flows.iter().any(|flow| flow.iter().all(|stage| completed.iter().any(|done| done == stage)));
        if let Some(session) = &auth.session {
            if let Some(stage) = stage_done {
                self.store.complete_uia_stage(session, stage).await?;
            }
            if let Some(sid) = &email_sid {
                self.store.complete_uia_stage(session, &format!("{EMAIL_SID_MARK}{sid}")).await?;
            }
            if let Some(token) = &stored_token {
                self.store.complete_uia_stage(session, &format!("{TOKEN_MARK}{token}")).await?;
            }
        }
        if !passed {
            let challenge = self.uia_challenge(&flows, auth.session.as_deref(), cause.clone()).await?;
            // A stage done without a session (the first of two): kept in the session just made.
            if auth.session.is_none()
                && let (Some(stage), Some(uia)) = (stage_done, &challenge.uia)
            {
                self.store.complete_uia_stage(&uia.session, stage).await?;
                if let Some(sid) = &email_sid {
                    self.store.complete_uia_stage(&uia.session, &format!("{EMAIL_SID_MARK}{sid}")).await?;
                }
                if let Some(token) = &stored_token {
                    self.store.complete_uia_stage(&uia.session, &format!("{TOKEN_MARK}{token}")).await?;
                }
                return Err(self.uia_challenge(&flows, Some(&uia.session), cause).await?);
            }
            return Err(challenge);
        }
        // The session stays until it expires: it remembers the account it registered, so a
        // retried request (its answer was lost) gets that account, not `M_USER_IN_USE`.
        if email && email_sid.is_none() {
            email_sid = completed.iter().find_map(|stage| stage.strip_prefix(EMAIL_SID_MARK)).map(str::to_owned);
            if email_sid.is_none() {
                return Err(self.uia_challenge(&flows, auth.session.as_deref(), None).await?);
            }
        }
        if stored_token.is_none() {
            stored_token = completed.iter().find_map(|stage| stage.strip_prefix(TOKEN_MARK)).map(str::to_owned);
        }
        Ok(RegistrationAuth { email_sid, stored_token })
    }

    /// Whether registration offers the token stage: tokens in the configuration or made by
    /// admins.
    pub(crate) async fn registration_tokens_in_use(&self) -> MatrixResult<bool> {
        Ok(!self.config.registration.tokens.is_empty() || !self.store.registration_tokens().await?.is_empty())
    }

    /// The account a registration session already created, if any.
    pub(crate) async fn registered_in_session(&self, auth: Option<&AuthData>) -> MatrixResult<Option<OwnedUserId>> {
        let Some(session) = auth.and_then(|a| a.session.as_deref()) else { return Ok(None) };
        let oldest = self.clock.now_ms().saturating_sub(SESSION_LIFETIME.as_millis() as u64);
        let stages = self.store.uia_session(session, oldest).await?.unwrap_or_default();
        Ok(stages.iter().find_map(|stage| stage.strip_prefix(REGISTERED_MARK)).and_then(|id| UserId::parse(id).ok()))
    }

    /// Notes in the registration session the account it created.
    pub(crate) async fn note_registration(&self, auth: Option<&AuthData>, user_id: &UserId) -> MatrixResult<()> {
        if let Some(session) = auth.and_then(|a| a.session.as_deref()) {
            self.store.complete_uia_stage(session, &format!("{REGISTERED_MARK}{user_id}")).await?;
        }
        Ok(())
    }
}

/// How a registration session's stages note the account it created.
const REGISTERED_MARK: &str = "registered:";
/// Marks, among a registration session's stages, the stored registration token whose use it
/// took.
const TOKEN_MARK: &str = "registration-token:";
/// How a registration session notes the validated address it will bind.
const EMAIL_SID_MARK: &str = "email-sid:";
