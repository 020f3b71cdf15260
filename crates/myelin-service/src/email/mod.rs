//! Email addresses on accounts (3PIDs) when `[email]` names an SMTP server: validation by a
//! link sent to the address (`requestToken`, then the link), binding a validated address to an
//! account (`/account/3pid/add`, with the password), listing and removing them, logging in by
//! address, and resetting a forgotten password through a validated address
//! (`m.login.email.identity`). Without `[email]`, the `requestToken` endpoints answer
//! `M_THREEPID_DENIED` and nothing is bound.

pub mod smtp;

use myelin_core::{
    ErrorCode, MatrixError, MatrixResult,
    types::{OwnedUserId, UserId},
};
use myelin_storage::{ThreepidRecord, ThreepidValidation};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    Services,
    accounts::Requester,
    ratelimit::Limit,
    uia::{AuthData, EMAIL_IDENTITY},
};

/// Longest address accepted (RFC 5321's path limit).
const MAX_ADDRESS_BYTES: usize = 254;
/// Where the link in a validation email points, under the public base URL.
pub const VALIDATE_PATH: &str = "_myelin/email/validate";

/// What a validation session is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmailPurpose {
    /// Binding an address to the requester's account.
    Add,
    /// Resetting the password of the account the address is bound to.
    Password,
    /// Registering an account with the address (`registration.require_email`).
    Register,
}

impl EmailPurpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Password => "password",
            Self::Register => "register",
        }
    }
}

/// `POST /…/email/requestToken`'s body.
#[derive(Debug, Deserialize)]
pub struct EmailTokenRequest {
    pub client_secret: String,
    pub email: String,
    pub send_attempt: u64,
    #[serde(default)]
    pub next_link: Option<String>,
}

/// An address as it is stored and compared: trimmed, lower-case; `None` if it is not one.
pub fn normalise_email(address: &str) -> Option<String> {
    let address = address.trim().to_lowercase();
    let (local, domain) = address.split_once('@')?;
    let fine = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && address.len() <= MAX_ADDRESS_BYTES
        && !domain.contains('@')
        && address.chars().all(|c| !c.is_whitespace() && !c.is_control() && !"<>\"(),;:[]\\".contains(c));
    fine.then_some(address)
}

/// The spec's client secret: `[0-9a-zA-Z.=_-]`, 1 to 255 characters.
fn valid_client_secret(secret: &str) -> bool {
    !secret.is_empty()
        && secret.len() <= 255
        && secret.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'=' | b'_' | b'-'))
}

pub(crate) fn threepid_in_use() -> MatrixError {
    MatrixError::new(ErrorCode::Other("M_THREEPID_IN_USE"), "This email address is already in use")
}

/// An RFC 5322 date (`Thu, 03 Dec 2026 05:00:00 +0000`) from Unix milliseconds.
pub fn rfc5322_date(unix_ms: u64) -> String {
    const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let t = myelin_core::clock::UtcDateTime::from_unix_secs(unix_ms / 1000);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        WEEKDAYS[t.weekday as usize % 7],
        t.day,
        MONTHS[(t.month as usize).clamp(1, 12) - 1],
        t.year,
        t.hour,
        t.minute,
        t.second
    )
}

impl Services {
    fn email_disabled() -> MatrixError {
        MatrixError::new(
            ErrorCode::Other("M_THREEPID_DENIED"),
            "This server does not send email or SMS, so it cannot validate an address",
        )
        .with_status(403)
    }

    /// Sends a plain-text email through the configured SMTP server (502 if it fails).
    pub(crate) async fn send_email(&self, to: &str, subject: &str, body: String) -> MatrixResult<()> {
        let config = &self.config.email;
        let from =
            if config.from.is_empty() { format!("noreply@{}", self.server_name.host()) } else { config.from.clone() };
        let mail = smtp::Mail { to: to.to_owned(), subject: subject.to_owned(), body };
        let now = self.now_ms();
        let message_id = format!("{}@{}", self.random.alphanumeric(24), self.server_name.host());
        let date = rfc5322_date(now);
        let hello = self.server_name.host();
        let envelope = smtp::Envelope { from: &from, mail: &mail, hello, date: &date, message_id: &message_id };
        smtp::send(config, &envelope).await.map_err(|err| {
            tracing::warn!(%err, "sending an email failed");
            MatrixError::new(ErrorCode::Unknown, "The email could not be sent").with_status(502)
        })
    }

    /// The account an address is bound to.
    pub async fn email_owner(&self, address: &str) -> MatrixResult<Option<OwnedUserId>> {
        let Some(address) = normalise_email(address) else { return Ok(None) };
        Ok(self.store.threepid_owner("email", &address).await?)
    }

    /// `POST /account/3pid/email/requestToken` (`Add`) and
    /// `POST /account/password/email/requestToken` (`Password`): starts (or repeats) a
    /// validation session and emails its link unless this send attempt was sent already. Rate
    /// limited per address and per client address (`client`): nobody gets the server to mail
    /// many addresses.
    pub async fn request_email_token(
        &self,
        purpose: EmailPurpose,
        req: EmailTokenRequest,
        client: &str,
    ) -> MatrixResult<Value> {
        if !self.config.email.enabled() {
            return Err(Self::email_disabled());
        }
        if purpose == EmailPurpose::Register && !self.config.registration.require_email {
            return Err(MatrixError::new(
                ErrorCode::Other("M_THREEPID_DENIED"),
                "Registration on this server does not ask for an email address",
            )
            .with_status(403));
        }
        if !valid_client_secret(&req.client_secret) {
            return Err(MatrixError::invalid_param("client_secret must be 1 to 255 of [0-9a-zA-Z.=_-]"));
        }
        let address = normalise_email(&req.email).ok_or_else(|| MatrixError::invalid_param("Not an email address"))?;
        self.check_rate_limit(Limit::Registration, &format!("email {address}"))?;
        self.check_rate_limit(Limit::Registration, &format!("email from {client}"))?;
        let owner = self.store.threepid_owner("email", &address).await?;
        match (purpose, owner) {
            (EmailPurpose::Add | EmailPurpose::Register, Some(_)) => return Err(threepid_in_use()),
            (EmailPurpose::Password, None) => {
                return Err(MatrixError::new(
                    ErrorCode::Other("M_THREEPID_NOT_FOUND"),
                    "No account has this email address",
                ));
            }
            _ => {}
        }
        let now = self.now_ms();
        let proposed = ThreepidValidation {
            sid: self.random.alphanumeric(24),
            client_secret: req.client_secret,
            medium: "email".to_owned(),
            address: address.clone(),
            purpose: purpose.as_str().to_owned(),
            token: self.random.alphanumeric(32),
            send_attempt: req.send_attempt,
            expires_ms: now + self.config.email.validation_token_lifetime_ms,
            validated_ms: None,
        };
        let session = self.store.upsert_threepid_validation(&proposed).await?;
        // The same attempt again (a retried request): same session, no second email.
        if session.token == proposed.token {
            let link = format!(
                "{}{VALIDATE_PATH}?sid={}&client_secret={}&token={}",
                self.config.base_url(),
                session.sid,
                session.client_secret,
                session.token
            );
            let (subject, action) = match purpose {
                EmailPurpose::Add => ("Validate your email address", "add this address to your Matrix account"),
                EmailPurpose::Password => ("Reset your password", "reset the password of your Matrix account"),
                EmailPurpose::Register => {
                    ("Validate your email address", "register a Matrix account with this address")
                }
            };
            let body = format!(
                "Someone (hopefully you) asked to {action} on {server}.\n\nTo go ahead, open this link:\n\n{link}\n\n\
                 then return to your Matrix client. If it was not you, ignore this email.\n",
                server = self.server_name
            );
            self.send_email(&address, subject, body).await?;
        }
        Ok(json!({ "sid": session.sid }))
    }

    /// The link of a validation email: marks the session validated. Answers whether it was.
    pub async fn submit_email_token(&self, sid: &str, client_secret: &str, token: &str) -> MatrixResult<bool> {
        Ok(self.store.validate_threepid(sid, client_secret, token, self.now_ms()).await?)
    }

    /// A validated, unexpired session for `purpose` matching the client's credentials.
    pub(crate) async fn validated_email_session(
        &self,
        sid: &str,
        client_secret: &str,
        purpose: EmailPurpose,
    ) -> MatrixResult<ThreepidValidation> {
        let session = self.store.threepid_validation(sid).await?;
        let Some(session) = session.filter(|s| s.client_secret == client_secret && s.purpose == purpose.as_str())
        else {
            return Err(MatrixError::new(ErrorCode::Other("M_NO_VALID_SESSION"), "No such validation session"));
        };
        if session.validated_ms.is_none() || session.expires_ms <= self.now_ms() {
            return Err(MatrixError::new(
                ErrorCode::Other("M_SESSION_NOT_VALIDATED"),
                "This email address has not been validated yet",
            )
            .with_status(401));
        }
        Ok(session)
    }

    /// `POST /account/3pid/add`: binds a validated address (user-interactive auth: password).
    pub async fn add_email(
        &self,
        requester: &Requester,
        sid: &str,
        client_secret: &str,
        auth: Option<&AuthData>,
    ) -> MatrixResult<()> {
        if !self.config.email.enabled() {
            return Err(Self::email_disabled());
        }
        self.require_password_auth(requester, auth).await?;
        let session = self.validated_email_session(sid, client_secret, EmailPurpose::Add).await?;
        let record = ThreepidRecord {
            medium: session.medium,
            address: session.address,
            user_id: requester.user_id.clone(),
            validated_ms: session.validated_ms.unwrap_or_default(),
            added_ms: self.now_ms(),
        };
        if !self.store.add_threepid(&record).await? {
            if self.store.threepid_owner(&record.medium, &record.address).await?.as_deref() == Some(&*requester.user_id)
            {
                return Ok(());
            }
            return Err(threepid_in_use());
        }
        Ok(())
    }

    /// Registration with `registration.require_email`: the new account gets the address its
    /// registration validated; `M_THREEPID_IN_USE` if another account took it meanwhile.
    pub(crate) async fn bind_registered_email(&self, user_id: &UserId, sid: &str) -> MatrixResult<()> {
        let Some(session) = self.store.threepid_validation(sid).await? else {
            return Err(MatrixError::new(ErrorCode::Other("M_NO_VALID_SESSION"), "The validation session expired"));
        };
        let record = ThreepidRecord {
            medium: session.medium,
            address: session.address,
            user_id: user_id.to_owned(),
            validated_ms: session.validated_ms.unwrap_or_default(),
            added_ms: self.now_ms(),
        };
        if !self.store.add_threepid(&record).await? {
            return Err(threepid_in_use());
        }
        Ok(())
    }

    /// `GET /account/3pid`.
    pub async fn threepids(&self, requester: &Requester) -> MatrixResult<Value> {
        let threepids: Vec<Value> = self
            .store
            .user_threepids(&requester.user_id)
            .await?
            .into_iter()
            .map(|t| {
                json!({ "medium": t.medium, "address": t.address, "validated_at": t.validated_ms, "added_at": t.added_ms })
            })
            .collect();
        Ok(json!({ "threepids": threepids }))
    }

    /// `POST /account/3pid/delete`: 404 if the user has no such address.
    pub async fn delete_email(&self, requester: &Requester, medium: &str, address: &str) -> MatrixResult<()> {
        let address = match medium {
            "email" => normalise_email(address).unwrap_or_else(|| address.to_owned()),
            _ => address.to_owned(),
        };
        if !self.store.delete_threepid(&requester.user_id, medium, &address).await? {
            return Err(MatrixError::not_found("You have no such third-party identifier"));
        }
        Ok(())
    }

    /// Deactivation: the user's addresses are unbound.
    pub(crate) async fn delete_all_threepids(&self, user_id: &UserId) -> MatrixResult<()> {
        for threepid in self.store.user_threepids(user_id).await? {
            self.store.delete_threepid(user_id, &threepid.medium, &threepid.address).await?;
        }
        Ok(())
    }

    /// `POST /account/password` without an access token: the forgotten-password flow, proved by
    /// a validated password-reset session (`m.login.email.identity`).
    pub async fn reset_password_by_email(
        &self,
        new_password: String,
        logout_devices: bool,
        auth: Option<&AuthData>,
    ) -> MatrixResult<()> {
        if !self.config.email.enabled() {
            return Err(MatrixError::new(ErrorCode::MissingToken, "Missing access token").with_status(401));
        }
        const FLOWS: &[&[&str]] = &[&[EMAIL_IDENTITY]];
        let Some(auth) = auth else { return Err(self.uia_challenge(FLOWS, None, None).await?) };
        let creds = match (auth.kind.as_deref(), &auth.threepid_creds) {
            (Some(EMAIL_IDENTITY), Some(creds)) => creds,
            _ => return Err(self.uia_challenge(FLOWS, auth.session.as_deref(), None).await?),
        };
        let session = match self.validated_email_session(&creds.sid, &creds.client_secret, EmailPurpose::Password).await
        {
            Ok(session) => session,
            Err(err) => return Err(self.uia_challenge(FLOWS, auth.session.as_deref(), Some(err)).await?),
        };
        let Some(user_id) = self.store.threepid_owner(&session.medium, &session.address).await? else {
            return Err(MatrixError::new(ErrorCode::Other("M_THREEPID_NOT_FOUND"), "No account has this address"));
        };
        self.set_password(&user_id, new_password).await?;
        if logout_devices {
            self.delete_all_devices(&user_id, None).await?;
        }
        if let Some(session) = &auth.session {
            self.store.delete_uia_session(session).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{normalise_email, rfc5322_date, valid_client_secret};

    #[test]
    fn addresses_and_secrets_are_checked() {
        assert_eq!(normalise_email(" Alice@Example.ORG "), Some("alice@example.org".to_owned()));
        for bad in [
            "alice",
            "@example.org",
            "alice@",
            "alice@localhost",
            "a b@example.org",
            "a@b@example.org",
            "a<b>@example.org",
        ] {
            assert_eq!(normalise_email(bad), None, "{bad}");
        }
        assert!(valid_client_secret("abc.DEF=_-1"));
        assert!(!valid_client_secret("") && !valid_client_secret("a b") && !valid_client_secret(&"a".repeat(256)));
    }

    #[test]
    fn dates_are_rfc5322() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        // 2026-12-03T05:00:00Z, a Thursday.
        assert_eq!(rfc5322_date(1_796_274_000_000), "Thu, 03 Dec 2026 05:00:00 +0000");
        // 2024-02-29T23:59:59Z, a Thursday too.
        assert_eq!(rfc5322_date(1_709_251_199_000), "Thu, 29 Feb 2024 23:59:59 +0000");
    }
}
