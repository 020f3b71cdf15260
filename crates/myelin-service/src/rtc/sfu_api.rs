//! The LiveKit SFU's side of the JWT service: access tokens (HS256 JWTs signed with the SFU's API
//! secret), the SFU's server API (Twirp over HTTP with JSON bodies: `RoomService/CreateRoom`,
//! `RoomService/GetParticipant`) and the webhooks it sends (participant joined and left), which
//! carry a JWT whose `sha256` claim is the hash of the body.

use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use myelin_core::config::LiveKitConfig;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Lifetime of a LiveKit access token (the reference service's).
pub const ACCESS_TOKEN_LIFETIME_S: u64 = 3600;
/// Lifetime of the tokens this server signs for its own calls to the SFU's API.
const API_TOKEN_LIFETIME_S: u64 = 600;
/// How long a room created for a call stays open with nobody in it, and after the last one left
/// (the reference service's values).
const ROOM_EMPTY_TIMEOUT_S: u64 = 5 * 60;
const ROOM_DEPARTURE_TIMEOUT_S: u64 = 20;
/// Clock difference tolerated between the SFU and this server for a webhook's token.
const WEBHOOK_LEEWAY_S: u64 = 60;
/// A call to the SFU's API that takes longer has failed.
pub const SFU_API_TIMEOUT: Duration = Duration::from_secs(10);

/// An HS256 JWT over `claims`, signed with `secret`.
fn sign(secret: &str, claims: &Value) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = json!({ "alg": "HS256", "typ": "JWT" });
    let signing_input = format!("{}.{}", b64.encode(header.to_string()), b64.encode(claims.to_string()));
    format!("{signing_input}.{}", b64.encode(hmac_sha256(secret, &signing_input)))
}

fn hmac_sha256(secret: &str, input: &str) -> Vec<u8> {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// A LiveKit access token: HS256 over LiveKit's claims (`iss` the API key, `sub` the identity,
/// a `video` grant to join, publish and subscribe in `room`), valid for an hour from `now_s`.
pub fn access_token(livekit: &LiveKitConfig, identity: &str, room: &str, now_s: u64) -> String {
    let claims = json!({
        "iss": livekit.key,
        "sub": identity,
        "identity": identity,
        "iat": now_s,
        "nbf": now_s,
        "exp": now_s + ACCESS_TOKEN_LIFETIME_S,
        "video": {
            "roomJoin": true,
            "room": room,
            "canPublish": true,
            "canSubscribe": true,
            "canUpdateOwnMetadata": true,
        },
    });
    sign(&livekit.secret, &claims)
}

/// A token for this server's own calls to the SFU's API, with this `video` grant.
fn api_token(livekit: &LiveKitConfig, grant: Value, now_s: u64) -> String {
    let claims = json!({
        "iss": livekit.key,
        "nbf": now_s,
        "exp": now_s + API_TOKEN_LIFETIME_S,
        "video": grant,
    });
    sign(&livekit.secret, &claims)
}

/// What the SFU's API answered, when it did not answer success.
#[derive(Debug)]
pub enum SfuApiError {
    /// The SFU says the room or participant does not exist.
    NotFound,
    /// Unreachable, or another answer: the presence of what was asked is unknown.
    Failed(String),
}

impl std::fmt::Display for SfuApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SfuApiError::NotFound => f.write_str("not found on the SFU"),
            SfuApiError::Failed(reason) => f.write_str(reason),
        }
    }
}

/// A call of the SFU's Twirp API.
async fn call(
    http: &reqwest::Client,
    livekit: &LiveKitConfig,
    method: &str,
    token: String,
    body: Value,
) -> Result<Value, SfuApiError> {
    let url = format!("{}/twirp/livekit.RoomService/{method}", livekit.server_api_url());
    let response = http
        .post(&url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .map_err(|e| SfuApiError::Failed(format!("{method}: {e}")))?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(answer);
    }
    if status == reqwest::StatusCode::NOT_FOUND || answer["code"] == "not_found" {
        return Err(SfuApiError::NotFound);
    }
    Err(SfuApiError::Failed(format!("{method}: the SFU answered {status}: {answer}")))
}

/// Creates the LiveKit room of a call, or finds it created already.
pub async fn create_room(
    http: &reqwest::Client,
    livekit: &LiveKitConfig,
    room: &str,
    now_s: u64,
) -> Result<(), SfuApiError> {
    let token = api_token(livekit, json!({ "roomCreate": true }), now_s);
    let body = json!({
        "name": room,
        "empty_timeout": ROOM_EMPTY_TIMEOUT_S,
        "departure_timeout": ROOM_DEPARTURE_TIMEOUT_S,
    });
    call(http, livekit, "CreateRoom", token, body).await.map(|_| ())
}

/// Whether the participant is in the room on the SFU (`Ok(false)`: the SFU says it is not).
pub async fn participant_present(
    http: &reqwest::Client,
    livekit: &LiveKitConfig,
    room: &str,
    identity: &str,
    now_s: u64,
) -> Result<bool, SfuApiError> {
    let token = api_token(livekit, json!({ "roomAdmin": true, "room": room }), now_s);
    match call(http, livekit, "GetParticipant", token, json!({ "room": room, "identity": identity })).await {
        Ok(_) => Ok(true),
        Err(SfuApiError::NotFound) => Ok(false),
        Err(err) => Err(err),
    }
}

/// What an SFU webhook reports about a participant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParticipantChange {
    Joined,
    /// Left on purpose (the client hung up).
    Left,
    /// Lost: the connection failed or timed out, or the SFU removed it.
    Lost,
}

/// A webhook's participant event: the LiveKit room, the participant's identity, what happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParticipantEvent {
    pub room: String,
    pub identity: String,
    pub change: ParticipantChange,
}

/// Why a webhook was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum WebhookError {
    /// Not signed by this SFU, expired, or the body is not the one signed.
    Unauthorised(&'static str),
    /// Signed, but not a webhook event.
    Malformed,
}

/// Checks a webhook's `Authorization` token (signed with the API secret, issued by the API key,
/// in its validity window, its `sha256` claim the body's hash) and reads the participant event
/// of the body (`None` for the events the JWT service does not follow).
pub fn verify_webhook(
    livekit: &LiveKitConfig,
    authorization: &str,
    body: &[u8],
    now_s: u64,
) -> Result<Option<ParticipantEvent>, WebhookError> {
    let token = authorization.strip_prefix("Bearer ").unwrap_or(authorization).trim();
    let claims = verified_claims(&livekit.secret, token).ok_or(WebhookError::Unauthorised("bad signature"))?;
    if claims["iss"] != livekit.key.as_str() {
        return Err(WebhookError::Unauthorised("issued for another API key"));
    }
    let within = |name: &str, ok: &dyn Fn(u64) -> bool| claims[name].as_u64().is_none_or(ok);
    if !within("exp", &|exp| now_s <= exp.saturating_add(WEBHOOK_LEEWAY_S))
        || !within("nbf", &|nbf| nbf <= now_s.saturating_add(WEBHOOK_LEEWAY_S))
    {
        return Err(WebhookError::Unauthorised("expired"));
    }
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body));
    if claims["sha256"].as_str() != Some(hash.as_str()) {
        return Err(WebhookError::Unauthorised("the body is not the one signed"));
    }
    let event: Value = serde_json::from_slice(body).map_err(|_| WebhookError::Malformed)?;
    Ok(participant_event(&event))
}

/// The claims of an HS256 JWT signed with `secret`.
fn verified_claims(secret: &str, token: &str) -> Option<Value> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.split('.');
    let (header, claims, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let decoded_header: Value = serde_json::from_slice(&b64.decode(header).ok()?).ok()?;
    if decoded_header["alg"] != "HS256" {
        return None;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(format!("{header}.{claims}").as_bytes());
    mac.verify_slice(&b64.decode(signature).ok()?).ok()?;
    serde_json::from_slice(&b64.decode(claims).ok()?).ok()
}

/// The participant event of a webhook body (LiveKit's `WebhookEvent` in protobuf's JSON form).
fn participant_event(event: &Value) -> Option<ParticipantEvent> {
    let field = |v: &Value, camel: &str, snake: &str| v.get(camel).or_else(|| v.get(snake)).cloned();
    let participant = event.get("participant")?;
    let room = event.get("room")?.get("name")?.as_str()?.to_owned();
    let identity = participant.get("identity")?.as_str()?.to_owned();
    let change = match event.get("event")?.as_str()? {
        "participant_joined" => ParticipantChange::Joined,
        "participant_left" | "participant_connection_aborted" => {
            // `DisconnectReason.CLIENT_INITIATED` (1): the client hung up.
            match field(participant, "disconnectReason", "disconnect_reason") {
                Some(Value::String(reason)) if reason == "CLIENT_INITIATED" => ParticipantChange::Left,
                Some(Value::Number(n)) if n.as_u64() == Some(1) => ParticipantChange::Left,
                _ => ParticipantChange::Lost,
            }
        }
        _ => return None,
    };
    Some(ParticipantEvent { room, identity, change })
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use myelin_core::config::LiveKitConfig;
    use serde_json::json;
    use sha2::{Digest, Sha256};

    use super::*;

    fn livekit() -> LiveKitConfig {
        LiveKitConfig::new("wss://sfu.test".into(), "devkey".into(), "secret".into())
    }

    fn webhook_token(secret: &str, iss: &str, body: &[u8], exp: u64) -> String {
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body));
        sign(secret, &json!({ "iss": iss, "nbf": 0, "exp": exp, "sha256": hash }))
    }

    #[test]
    fn an_access_token_carries_livekit_claims_and_verifies() {
        let jwt = access_token(&livekit(), "ident", "room", 1_000);
        let claims = verified_claims("secret", &jwt).expect("signed with the secret");
        assert_eq!(claims["iss"], "devkey");
        assert_eq!(claims["sub"], "ident");
        assert_eq!(claims["exp"], 4_600);
        assert_eq!(claims["video"]["room"], "room");
        assert_eq!(claims["video"]["roomJoin"], true);
        assert!(verified_claims("other", &jwt).is_none(), "another secret");
        let mut tampered = jwt.clone();
        tampered.insert(jwt.find('.').expect("dot") + 2, 'x');
        assert!(verified_claims("secret", &tampered).is_none(), "changed claims");
    }

    #[test]
    fn webhooks_are_taken_only_as_the_sfu_signed_them() {
        let lk = livekit();
        let body = json!({
            "event": "participant_left",
            "room": { "name": "lkroom" },
            "participant": { "identity": "who", "disconnectReason": "CLIENT_INITIATED" },
        })
        .to_string();
        let token = webhook_token("secret", "devkey", body.as_bytes(), 2_000);
        let event = verify_webhook(&lk, &token, body.as_bytes(), 1_000).expect("valid").expect("an event");
        assert_eq!(
            event,
            ParticipantEvent { room: "lkroom".into(), identity: "who".into(), change: ParticipantChange::Left }
        );
        assert!(verify_webhook(&lk, &format!("Bearer {token}"), body.as_bytes(), 1_000).is_ok(), "Bearer form");

        let other_body = body.replace("who", "someone-else");
        assert!(matches!(
            verify_webhook(&lk, &token, other_body.as_bytes(), 1_000),
            Err(WebhookError::Unauthorised(_))
        ));
        let forged = webhook_token("not-the-secret", "devkey", body.as_bytes(), 2_000);
        assert!(matches!(verify_webhook(&lk, &forged, body.as_bytes(), 1_000), Err(WebhookError::Unauthorised(_))));
        let other_key = webhook_token("secret", "otherkey", body.as_bytes(), 2_000);
        assert!(matches!(verify_webhook(&lk, &other_key, body.as_bytes(), 1_000), Err(WebhookError::Unauthorised(_))));
        assert!(
            matches!(verify_webhook(&lk, &token, body.as_bytes(), 2_100), Err(WebhookError::Unauthorised("expired"))),
            "expired beyond the leeway"
        );
        assert!(matches!(verify_webhook(&lk, "", body.as_bytes(), 1_000), Err(WebhookError::Unauthorised(_))));
        assert!(matches!(verify_webhook(&lk, "a.b.c.d", body.as_bytes(), 1_000), Err(WebhookError::Unauthorised(_))));
        let not_json = b"not json";
        let signed = webhook_token("secret", "devkey", not_json, 2_000);
        assert_eq!(verify_webhook(&lk, &signed, not_json, 1_000), Err(WebhookError::Malformed));
    }

    #[test]
    fn participant_events_read_both_json_forms() {
        let read = |v: serde_json::Value| participant_event(&v);
        let base = |event: &str, participant: serde_json::Value| json!({ "event": event, "room": { "name": "r" }, "participant": participant });
        assert_eq!(
            read(base("participant_joined", json!({ "identity": "i" }))).map(|e| e.change),
            Some(ParticipantChange::Joined)
        );
        assert_eq!(
            read(base("participant_left", json!({ "identity": "i", "disconnect_reason": 1 }))).map(|e| e.change),
            Some(ParticipantChange::Left)
        );
        assert_eq!(
            read(base("participant_left", json!({ "identity": "i", "disconnectReason": "SIGNAL_CLOSE" })))
                .map(|e| e.change),
            Some(ParticipantChange::Lost)
        );
        assert_eq!(
            read(base("participant_connection_aborted", json!({ "identity": "i" }))).map(|e| e.change),
            Some(ParticipantChange::Lost)
        );
        assert_eq!(read(base("room_started", json!({ "identity": "i" }))), None);
        assert_eq!(read(json!({ "event": "participant_joined", "room": { "name": "r" } })), None, "no participant");
    }

    #[test]
    fn the_server_api_is_the_sfu_url_over_http() {
        let mut lk = livekit();
        assert_eq!(lk.server_api_url(), "https://sfu.test");
        lk.url = "ws://127.0.0.1:7880/".into();
        assert_eq!(lk.server_api_url(), "http://127.0.0.1:7880");
        lk.api_url = Some("http://10.0.0.2:7880".into());
        assert_eq!(lk.server_api_url(), "http://10.0.0.2:7880");
    }
}
