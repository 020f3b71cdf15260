//! A second factor for the web pages: TOTP (RFC 6238: HMAC-SHA1, 30-second steps, six digits;
//! what every authenticator app speaks) with single-use recovery codes. An account with one
//! signs in on the pages only (password, then code); `/login` with a password alone is refused
//! for it, so the second factor cannot be bypassed.

use hmac::{Hmac, Mac};
use myelin_core::{MatrixError, MatrixResult};
use ruma::UserId;
use sha2::{Digest, Sha256};

use crate::{Services, ratelimit::Limit};

const STEP_S: u64 = 30;
const DIGITS: u32 = 6;
const SECRET_BYTES: usize = 20;
const RECOVERY_CODES: usize = 10;
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 without padding, as authenticator apps take secrets.
pub fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            out.push(char::from(BASE32[((buffer >> (bits - 5)) & 31) as usize]));
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(char::from(BASE32[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| *c != b'=' && *c != b' ') {
        let value = BASE32.iter().position(|b| *b == c.to_ascii_uppercase())? as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            out.push(((buffer >> (bits - 8)) & 0xff) as u8);
            bits -= 8;
        }
    }
    Some(out)
}

/// The code for time step `step` (RFC 4226's dynamic truncation).
pub fn totp_code(secret: &[u8], step: u64) -> u32 {
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(secret) else { return 0 };
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let value = u32::from_be_bytes([digest[offset] & 0x7f, digest[offset + 1], digest[offset + 2], digest[offset + 3]]);
    value % 10u32.pow(DIGITS)
}

fn recovery_hash(code: &str) -> String {
    let normalised: String =
        code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect();
    format!("{:x}", Sha256::digest(normalised.as_bytes()))
}

/// What the person needs to add the account to their app.
pub struct TotpEnrolment {
    /// The secret in base32.
    pub secret: String,
    /// `otpauth://totp/…` (what a QR code for the app would hold).
    pub uri: String,
}

impl Services {
    /// Starts (or restarts, while unconfirmed) TOTP enrolment.
    pub async fn start_totp_enrolment(&self, user_id: &UserId) -> MatrixResult<TotpEnrolment> {
        let secret: Vec<u8> = (0..SECRET_BYTES).map(|_| (self.random.next_u64() & 0xff) as u8).collect();
        let secret = base32_encode(&secret);
        if !self.store.start_totp(user_id, &secret, self.now_ms()).await? {
            return Err(MatrixError::forbidden("Two-step verification is on already"));
        }
        Ok(self.totp_enrolment(user_id, secret))
    }

    fn totp_enrolment(&self, user_id: &UserId, secret: String) -> TotpEnrolment {
        let issuer = self.server_name().as_str().to_owned();
        let label: String = url::form_urlencoded::byte_serialize(format!("{issuer}:{user_id}").as_bytes()).collect();
        let issuer_q: String = url::form_urlencoded::byte_serialize(issuer.as_bytes()).collect();
        let uri = format!("otpauth://totp/{label}?secret={secret}&issuer={issuer_q}&algorithm=SHA1&digits=6&period=30");
        TotpEnrolment { secret, uri }
    }

    /// The enrolment in progress (an unconfirmed secret), to show again.
    pub async fn pending_totp_enrolment(&self, user_id: &UserId) -> MatrixResult<Option<TotpEnrolment>> {
        Ok(match self.store.totp(user_id).await? {
            Some((secret, false, _)) => Some(self.totp_enrolment(user_id, secret)),
            _ => None,
        })
    }

    /// Whether `code` is the TOTP code of now (or the step before or after, for clocks that
    /// drift), not used before; accepting it confirms an enrolment.
    async fn accept_totp(&self, user_id: &UserId, code: &str) -> MatrixResult<bool> {
        let Some((secret, _, last_step)) = self.store.totp(user_id).await? else { return Ok(false) };
        let Some(secret) = base32_decode(&secret) else { return Ok(false) };
        let Ok(code) = code.trim().replace(' ', "").parse::<u32>() else { return Ok(false) };
        let now_step = self.now_ms() / 1000 / STEP_S;
        for step in [now_step.saturating_sub(1), now_step, now_step + 1] {
            if step > last_step && totp_code(&secret, step) == code {
                return Ok(self.store.accept_totp_step(user_id, step).await?);
            }
        }
        Ok(false)
    }

    /// Confirms enrolment with a first code; answers the recovery codes (shown once).
    pub async fn confirm_totp(&self, user_id: &UserId, code: &str, client: &str) -> MatrixResult<Vec<String>> {
        self.check_rate_limit(Limit::Login, &format!("second_factor:{client}"))?;
        self.check_rate_limit(Limit::Login, &format!("second_factor:{user_id}"))?;
        // Confirming again would replace the recovery codes with a code alone.
        if self.store.totp(user_id).await?.is_some_and(|(_, confirmed, _)| confirmed) {
            return Err(MatrixError::forbidden("Two-step verification is on already"));
        }
        if !self.accept_totp(user_id, code).await? {
            return Err(MatrixError::forbidden("That code is not right: check the time on your device and try again"));
        }
        let codes: Vec<String> = (0..RECOVERY_CODES)
            .map(|_| {
                let raw = self.random.alphanumeric(10).to_lowercase();
                format!("{}-{}", &raw[..5], &raw[5..])
            })
            .collect();
        let hashes: Vec<String> = codes.iter().map(|c| recovery_hash(c)).collect();
        self.store.set_recovery_codes(user_id, &hashes).await?;
        Ok(codes)
    }

    /// The second step of signing in: a TOTP code or a recovery code.
    pub async fn check_second_factor(&self, user_id: &UserId, code: &str, client: &str) -> MatrixResult<()> {
        // Per address and per account: guesses spread over many addresses still meet the limit.
        self.check_rate_limit(Limit::Login, &format!("second_factor:{client}"))?;
        self.check_rate_limit(Limit::Login, &format!("second_factor:{user_id}"))?;
        if self.accept_totp(user_id, code).await?
            || self.store.use_recovery_code(user_id, &recovery_hash(code), self.now_ms()).await?
        {
            return Ok(());
        }
        Err(MatrixError::forbidden("That code is not right"))
    }

    pub async fn has_second_factor(&self, user_id: &UserId) -> MatrixResult<bool> {
        Ok(self.store.has_second_factor(user_id).await?)
    }

    /// Turns the second factor off (the password again first).
    pub async fn remove_second_factor(&self, user_id: &UserId, password: &str) -> MatrixResult<()> {
        self.check_password(user_id, password).await?;
        Ok(self.store.remove_totp(user_id).await?)
    }

    /// A browser session waiting for its second factor: its user.
    pub async fn web_session_awaiting_second_factor(
        &self,
        session_id: &str,
    ) -> MatrixResult<Option<ruma::OwnedUserId>> {
        self.web_session_in_step(session_id, true).await
    }

    /// The second factor was right: the browser session signs its user in.
    pub async fn complete_web_session(&self, session_id: &str) -> MatrixResult<()> {
        Ok(self.store.complete_web_session(session_id).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_test_vectors_with_sha1() {
        // RFC 6238 appendix B: the ASCII secret "12345678901234567890", 8 digits there; the
        // last six of each are what a six-digit app shows.
        let secret = b"12345678901234567890";
        for (time, code) in
            [(59u64, 94287082u32), (1111111109, 7081804), (1234567890, 89005924), (2000000000, 69279037)]
        {
            assert_eq!(totp_code(secret, time / 30), code % 1_000_000, "at {time}");
        }
    }

    #[test]
    fn base32_round_trips_and_matches_rfc4648() {
        assert_eq!(base32_encode(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32_decode("MZXW6YTBOI").as_deref(), Some(&b"foobar"[..]));
        assert_eq!(base32_decode("mzxw6ytboi======").as_deref(), Some(&b"foobar"[..]));
        assert_eq!(base32_decode("not base32!"), None);
    }
}
