//! Passkeys (WebAuthn level 2, ES256): enrolment on the account page and passwordless sign-in on
//! the login page. The server checks what the browser's authenticator signed: the challenge it
//! issued (once), the origin and the relying party (this server's host), user presence and
//! verification, and the P-256 signature over the authenticator data and the client data's hash.
//! A passkey is both factors at once, so it skips the TOTP step.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use base64::Engine as _;
use myelin_core::{MatrixError, MatrixResult, types::OwnedUserId};
use myelin_storage::PasskeyRecord;
use ruma::UserId;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{Services, ratelimit::Limit};

const CHALLENGE_LIFETIME_MS: u64 = 5 * 60 * 1000;
const FLAG_USER_PRESENT: u8 = 0x01;
const FLAG_USER_VERIFIED: u8 = 0x04;
const FLAG_ATTESTED_DATA: u8 = 0x40;
const ES256: i64 = -7;

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn from_b64url(text: &str) -> MatrixResult<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| MatrixError::bad_json("not base64url"))
}

fn refused(why: &str) -> MatrixError {
    MatrixError::forbidden(format!("The passkey was not accepted: {why}"))
}

/// A CBOR value (RFC 8949), as much of it as WebAuthn uses.
#[derive(Clone, Debug, PartialEq)]
pub enum Cbor {
    Int(i64),
    Bytes(Vec<u8>),
    Text(String),
    Array(Vec<Cbor>),
    Map(Vec<(Cbor, Cbor)>),
    Simple(u8),
}

impl Cbor {
    fn get(&self, key: &Cbor) -> Option<&Cbor> {
        match self {
            Cbor::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Decodes one CBOR item from the front of `input`; returns it and the rest.
pub fn cbor_decode(input: &[u8]) -> Option<(Cbor, &[u8])> {
    cbor_item(input, 0)
}

fn cbor_item(input: &[u8], depth: usize) -> Option<(Cbor, &[u8])> {
    if depth > 16 {
        return None;
    }
    let (&first, rest) = input.split_first()?;
    let (major, info) = (first >> 5, first & 0x1f);
    let (arg, rest): (u64, &[u8]) = match info {
        0..=23 => (u64::from(info), rest),
        24 => (u64::from(*rest.first()?), rest.get(1..)?),
        25 => (u64::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?)), rest.get(2..)?),
        26 => (u64::from(u32::from_be_bytes(rest.get(..4)?.try_into().ok()?)), rest.get(4..)?),
        27 => (u64::from_be_bytes(rest.get(..8)?.try_into().ok()?), rest.get(8..)?),
        _ => return None, // indefinite lengths: not in WebAuthn's canonical CBOR
    };
    match major {
        0 => Some((Cbor::Int(i64::try_from(arg).ok()?), rest)),
        1 => Some((Cbor::Int(-1 - i64::try_from(arg).ok()?), rest)),
        2 | 3 => {
            let len = usize::try_from(arg).ok()?;
            let bytes = rest.get(..len)?.to_vec();
            let value = if major == 2 { Cbor::Bytes(bytes) } else { Cbor::Text(String::from_utf8(bytes).ok()?) };
            Some((value, rest.get(len..)?))
        }
        4 | 5 if arg > 1024 => None,
        4 => {
            let mut items = Vec::new();
            let mut rest = rest;
            for _ in 0..arg {
                let (item, next) = cbor_item(rest, depth + 1)?;
                items.push(item);
                rest = next;
            }
            Some((Cbor::Array(items), rest))
        }
        5 => {
            let mut entries = Vec::new();
            let mut rest = rest;
            for _ in 0..arg {
                let (key, next) = cbor_item(rest, depth + 1)?;
                let (value, next) = cbor_item(next, depth + 1)?;
                entries.push((key, value));
                rest = next;
            }
            Some((Cbor::Map(entries), rest))
        }
        7 => Some((Cbor::Simple(info), rest)),
        _ => None,
    }
}

/// The uncompressed P-256 point of an ES256 COSE key.
pub fn cose_es256_point(key: &Cbor) -> Option<Vec<u8>> {
    let int = |v: i64| Cbor::Int(v);
    if key.get(&int(1)) != Some(&int(2)) || key.get(&int(3)) != Some(&int(ES256)) || key.get(&int(-1)) != Some(&int(1))
    {
        return None;
    }
    let (Some(Cbor::Bytes(x)), Some(Cbor::Bytes(y))) = (key.get(&int(-2)), key.get(&int(-3))) else { return None };
    if x.len() != 32 || y.len() != 32 {
        return None;
    }
    let mut point = vec![0x04];
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    Some(point)
}

/// Authenticator data (WebAuthn §6.1), parsed.
pub struct AuthenticatorData {
    pub rp_id_hash: Vec<u8>,
    pub flags: u8,
    pub sign_count: u32,
    /// With attested credential data: the credential id and its public key point.
    pub credential: Option<(Vec<u8>, Vec<u8>)>,
}

pub fn parse_authenticator_data(data: &[u8]) -> Option<AuthenticatorData> {
    let rp_id_hash = data.get(..32)?.to_vec();
    let flags = *data.get(32)?;
    let sign_count = u32::from_be_bytes(data.get(33..37)?.try_into().ok()?);
    let credential = if flags & FLAG_ATTESTED_DATA != 0 {
        let rest = data.get(37 + 16..)?; // after the AAGUID
        let len = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
        let id = rest.get(2..2 + len)?.to_vec();
        let (key, _) = cbor_decode(rest.get(2 + len..)?)?;
        Some((id, cose_es256_point(&key)?))
    } else {
        None
    };
    Some(AuthenticatorData { rp_id_hash, flags, sign_count, credential })
}

/// What the browser sends after `navigator.credentials.create()` (fields base64url).
#[derive(Debug, Deserialize)]
pub struct RegistrationResponse {
    pub id: String,
    #[serde(rename = "clientDataJSON")]
    pub client_data_json: String,
    #[serde(rename = "attestationObject")]
    pub attestation_object: String,
}

/// What the browser sends after `navigator.credentials.get()` (fields base64url).
#[derive(Debug, Deserialize)]
pub struct AssertionResponse {
    pub id: String,
    #[serde(rename = "clientDataJSON")]
    pub client_data_json: String,
    #[serde(rename = "authenticatorData")]
    pub authenticator_data: String,
    pub signature: String,
}

impl Services {
    /// The relying party: this server's host, and the origin its pages are served from. A
    /// server on a loopback address is `localhost` (browsers refuse IP addresses as RP ids).
    fn relying_party(&self) -> MatrixResult<(String, String)> {
        let issuer = url::Url::parse(&self.oauth_issuer()).map_err(|e| MatrixError::internal(e.to_string()))?;
        let host = match issuer.host() {
            Some(url::Host::Ipv4(ip)) if ip.is_loopback() => "localhost".to_owned(),
            Some(url::Host::Ipv6(ip)) if ip.is_loopback() => "localhost".to_owned(),
            Some(host) => host.to_string(),
            None => return Err(MatrixError::internal("the public base URL has no host")),
        };
        let port = issuer.port().map(|p| format!(":{p}")).unwrap_or_default();
        Ok((host.clone(), format!("{}://{host}{port}", issuer.scheme())))
    }

    async fn new_challenge(&self, user_id: Option<&UserId>, purpose: &str) -> MatrixResult<String> {
        let bytes: Vec<u8> = (0..32).map(|_| (self.random.next_u64() & 0xff) as u8).collect();
        let challenge = b64url(&bytes);
        self.store
            .create_webauthn_challenge(&challenge, user_id, purpose, self.now_ms() + CHALLENGE_LIFETIME_MS)
            .await?;
        Ok(challenge)
    }

    /// Checks client data: its type, the challenge (taken once, of `purpose`), the origin.
    /// Returns the challenge's user and the client data's hash.
    async fn check_client_data(
        &self,
        encoded: &str,
        kind: &str,
        purpose: &str,
    ) -> MatrixResult<(Option<OwnedUserId>, Vec<u8>)> {
        let raw = from_b64url(encoded)?;
        let data: Value = serde_json::from_slice(&raw).map_err(|_| refused("client data is not JSON"))?;
        if data["type"] != kind {
            return Err(refused("wrong ceremony"));
        }
        let (_, origin) = self.relying_party()?;
        if data["origin"].as_str() != Some(origin.as_str()) {
            return Err(refused("another origin"));
        }
        let challenge = data["challenge"].as_str().ok_or_else(|| refused("no challenge"))?;
        let Some(user) = self.store.take_webauthn_challenge(challenge, purpose, self.now_ms()).await? else {
            return Err(refused("unknown or expired challenge"));
        };
        Ok((user, Sha256::digest(&raw).to_vec()))
    }

    fn check_authenticator_flags(&self, data: &AuthenticatorData) -> MatrixResult<()> {
        let (rp_id, _) = self.relying_party()?;
        if data.rp_id_hash != Sha256::digest(rp_id.as_bytes()).as_slice() {
            return Err(refused("another relying party"));
        }
        if data.flags & FLAG_USER_PRESENT == 0 || data.flags & FLAG_USER_VERIFIED == 0 {
            return Err(refused("the user was not verified"));
        }
        Ok(())
    }

    /// Options for `navigator.credentials.create()` (binary fields base64url).
    pub async fn passkey_registration_options(&self, user_id: &UserId) -> MatrixResult<Value> {
        let (rp_id, _) = self.relying_party()?;
        let challenge = self.new_challenge(Some(user_id), "register").await?;
        let exclude: Vec<Value> = self
            .store
            .passkeys(user_id)
            .await?
            .into_iter()
            .map(|k| json!({ "type": "public-key", "id": k.credential_id }))
            .collect();
        Ok(json!({
            "challenge": challenge,
            "rp": { "id": rp_id, "name": self.server_name().as_str() },
            "user": { "id": b64url(user_id.as_bytes()), "name": user_id.as_str(), "displayName": user_id.localpart() },
            "pubKeyCredParams": [{ "type": "public-key", "alg": ES256 }],
            "authenticatorSelection": { "residentKey": "required", "userVerification": "required" },
            "attestation": "none",
            "excludeCredentials": exclude,
            "timeout": CHALLENGE_LIFETIME_MS,
        }))
    }

    /// Stores the passkey the browser made, after checking it.
    pub async fn finish_passkey_registration(
        &self,
        user_id: &UserId,
        response: &RegistrationResponse,
        name: &str,
    ) -> MatrixResult<()> {
        let (challenge_user, _) =
            self.check_client_data(&response.client_data_json, "webauthn.create", "register").await?;
        if challenge_user.as_deref() != Some(user_id) {
            return Err(refused("the challenge was another user's"));
        }
        let attestation = from_b64url(&response.attestation_object)?;
        let (object, _) = cbor_decode(&attestation).ok_or_else(|| refused("attestation is not CBOR"))?;
        let Some(Cbor::Bytes(auth_data)) = object.get(&Cbor::Text("authData".into())) else {
            return Err(refused("no authenticator data"));
        };
        let data =
            parse_authenticator_data(auth_data).ok_or_else(|| refused("authenticator data (ES256 keys only)"))?;
        self.check_authenticator_flags(&data)?;
        let (credential_id, point) = data.credential.ok_or_else(|| refused("no credential"))?;
        if b64url(&credential_id) != response.id.trim_end_matches('=') {
            return Err(refused("the credential id differs"));
        }
        let name: String = name.trim().chars().take(64).collect();
        let record = PasskeyRecord {
            credential_id: b64url(&credential_id),
            user_id: user_id.to_owned(),
            public_key: b64url(&point),
            sign_count: u64::from(data.sign_count),
            name: if name.is_empty() { "Passkey".to_owned() } else { name },
            created_ms: self.now_ms(),
            last_used_ms: None,
        };
        if !self.store.add_passkey(&record).await? {
            return Err(refused("this passkey is registered already"));
        }
        Ok(())
    }

    /// Options for `navigator.credentials.get()`: any passkey of this server (discoverable).
    pub async fn passkey_login_options(&self, client: &str) -> MatrixResult<Value> {
        self.check_rate_limit(Limit::Login, client)?;
        let (rp_id, _) = self.relying_party()?;
        let challenge = self.new_challenge(None, "login").await?;
        Ok(
            json!({ "challenge": challenge, "rpId": rp_id, "userVerification": "required", "timeout": CHALLENGE_LIFETIME_MS }),
        )
    }

    /// Checks a sign-in with a passkey; on success, a browser session (the passkey is both
    /// factors). Returns the session id and the user.
    pub async fn finish_passkey_login(
        &self,
        response: &AssertionResponse,
        client: &str,
    ) -> MatrixResult<(String, OwnedUserId)> {
        self.check_rate_limit(Limit::Login, client)?;
        let (_, client_hash) = self.check_client_data(&response.client_data_json, "webauthn.get", "login").await?;
        let Some(passkey) = self.store.passkey(response.id.trim_end_matches('=')).await? else {
            return Err(refused("unknown passkey"));
        };
        let auth_data = from_b64url(&response.authenticator_data)?;
        let data = parse_authenticator_data(&auth_data).ok_or_else(|| refused("authenticator data"))?;
        self.check_authenticator_flags(&data)?;
        let mut signed = auth_data.clone();
        signed.extend_from_slice(&client_hash);
        let key = from_b64url(&passkey.public_key)?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key)
            .verify(&signed, &from_b64url(&response.signature)?)
            .map_err(|_| refused("bad signature"))?;
        if !self.store.use_passkey(&passkey.credential_id, u64::from(data.sign_count), self.now_ms()).await? {
            return Err(refused("its counter went back (a cloned authenticator?)"));
        }
        let user = self.existing_user(&passkey.user_id).await?;
        if user.deactivated {
            return Err(MatrixError::forbidden("This account has been deactivated"));
        }
        self.refuse_locked(&passkey.user_id).await?;
        let session = self.open_web_session_for(&passkey.user_id).await?;
        Ok((session, passkey.user_id))
    }

    pub async fn user_passkeys(&self, user_id: &UserId) -> MatrixResult<Vec<PasskeyRecord>> {
        Ok(self.store.passkeys(user_id).await?)
    }

    pub async fn remove_passkey(&self, user_id: &UserId, credential_id: &str) -> MatrixResult<()> {
        if !self.store.delete_passkey(user_id, credential_id).await? {
            return Err(MatrixError::not_found("No such passkey"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::{
        rand::SystemRandom,
        signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _},
    };

    use super::*;

    /// CBOR of a small map, by hand: {1: 2, 3: -7, -1: 1, -2: x, -3: y}.
    fn cose_key(point: &[u8]) -> Vec<u8> {
        let mut out = vec![0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21, 0x58, 0x20];
        out.extend_from_slice(&point[1..33]);
        out.extend_from_slice(&[0x22, 0x58, 0x20]);
        out.extend_from_slice(&point[33..65]);
        out
    }

    #[test]
    fn authenticator_data_with_a_credential_is_parsed_and_its_signature_verifies() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).expect("pair");
        let point = pair.public_key().as_ref().to_vec();
        let mut data = Sha256::digest(b"localhost").to_vec();
        data.push(FLAG_USER_PRESENT | FLAG_USER_VERIFIED | FLAG_ATTESTED_DATA);
        data.extend_from_slice(&7u32.to_be_bytes());
        data.extend_from_slice(&[0u8; 16]);
        data.extend_from_slice(&3u16.to_be_bytes());
        data.extend_from_slice(b"abc");
        data.extend_from_slice(&cose_key(&point));
        let parsed = parse_authenticator_data(&data).expect("parsed");
        assert_eq!(parsed.sign_count, 7);
        let (id, key) = parsed.credential.expect("credential");
        assert_eq!((id.as_slice(), key.as_slice()), (&b"abc"[..], point.as_slice()));
        let signature = pair.sign(&rng, b"signed bytes").expect("sign");
        assert!(
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &key).verify(b"signed bytes", signature.as_ref()).is_ok()
        );
        assert!(
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &key).verify(b"other bytes", signature.as_ref()).is_err()
        );
    }

    #[test]
    fn cbor_refuses_what_it_cannot_read() {
        assert_eq!(cbor_decode(&[0x18]), None, "a length byte missing");
        assert_eq!(cbor_decode(&[0x5f]), None, "indefinite lengths");
        assert_eq!(cbor_decode(&[0x42, 0x01]), None, "bytes cut short");
        let (value, rest) = cbor_decode(&[0x82, 0x01, 0x61, b'a', 0xff]).expect("array");
        assert_eq!(value, Cbor::Array(vec![Cbor::Int(1), Cbor::Text("a".into())]));
        assert_eq!(rest, &[0xff]);
        // A deep nesting is refused, not a stack overflow.
        assert_eq!(cbor_decode(&[0x81; 64]), None);
        // Keys other than ES256 P-256 are refused.
        let (rsa, _) = cbor_decode(&[0xa2, 0x01, 0x03, 0x03, 0x39, 0x01, 0x00]).expect("map");
        assert_eq!(cose_es256_point(&rsa), None);
    }
}
