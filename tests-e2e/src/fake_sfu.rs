//! A stand-in for a LiveKit SFU's server API (no LiveKit server can be installed here): the two
//! Twirp methods the JWT service calls, `RoomService/CreateRoom` and
//! `RoomService/GetParticipant`, in their JSON form, each checking the caller's token as LiveKit
//! does (HS256 with the API secret, issued by the API key, with the grant the method needs).
//! It records what it was asked; a test says which participants are "connected". Also signs
//! webhooks as the SFU does (a token whose `sha256` claim is the body's hash).

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use anyhow::{Context, Result, ensure};
use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A call the SFU's API received (with a valid token).
#[derive(Clone, Debug)]
pub struct SfuCall {
    pub method: &'static str,
    pub body: Value,
    /// The `video` grant of the caller's token.
    pub grant: Value,
}

#[derive(Default)]
struct SfuState {
    calls: Vec<SfuCall>,
    refused: usize,
    /// (room, identity) of the participants "on the SFU".
    present: HashSet<(String, String)>,
}

#[derive(Clone)]
struct Shared {
    key: String,
    secret: String,
    state: Arc<Mutex<SfuState>>,
}

/// The fake SFU, served until dropped with the test's runtime.
pub struct FakeSfu {
    url: String,
    shared: Shared,
}

impl FakeSfu {
    /// Serves on a free 127.0.0.1 port, trusting tokens of `key` signed with `secret`.
    pub async fn start(key: &str, secret: &str) -> Result<Self> {
        let shared = Shared { key: key.to_owned(), secret: secret.to_owned(), state: Default::default() };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("ws://{}", listener.local_addr()?);
        let app = Router::new()
            .route("/twirp/livekit.RoomService/CreateRoom", post(create_room))
            .route("/twirp/livekit.RoomService/GetParticipant", post(get_participant))
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { url, shared })
    }

    /// The SFU's URL (`ws://127.0.0.1:PORT`), what clients are sent and the API is found at.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SfuState> {
        self.shared.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The calls received with a valid token, oldest first.
    pub fn calls(&self, method: &str) -> Vec<SfuCall> {
        self.state().calls.iter().filter(|c| c.method == method).cloned().collect()
    }

    /// Calls refused for their token.
    pub fn refused(&self) -> usize {
        self.state().refused
    }

    /// Puts the participant on the SFU (`present`) or takes it off.
    pub fn set_present(&self, room: &str, identity: &str, present: bool) {
        let key = (room.to_owned(), identity.to_owned());
        if present {
            self.state().present.insert(key);
        } else {
            self.state().present.remove(&key);
        }
    }

    /// A webhook as the SFU sends it: the JSON body and its `Authorization` token.
    pub fn webhook(
        &self,
        event: &str,
        room: &str,
        identity: &str,
        disconnect_reason: Option<&str>,
    ) -> (String, String) {
        let mut participant = json!({ "identity": identity, "sid": "PA_test" });
        if let Some(reason) = disconnect_reason {
            participant["disconnectReason"] = json!(reason);
        }
        let body = json!({ "event": event, "room": { "name": room, "sid": "RM_test" }, "participant": participant })
            .to_string();
        let token = webhook_token(&self.shared.key, &self.shared.secret, body.as_bytes());
        (body, token)
    }
}

/// The token the SFU signs a webhook body with.
pub fn webhook_token(key: &str, secret: &str, body: &[u8]) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body));
    sign(secret, &json!({ "iss": key, "nbf": now, "exp": now + 300, "sha256": hash }))
}

fn sign(secret: &str, claims: &Value) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let input = format!(
        "{}.{}",
        b64.encode(json!({ "alg": "HS256", "typ": "JWT" }).to_string()),
        b64.encode(claims.to_string())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(input.as_bytes());
    format!("{input}.{}", b64.encode(mac.finalize().into_bytes()))
}

/// The `video` grant of a bearer token signed with the secret by the key, checked.
fn grant(shared: &Shared, headers: &HeaderMap) -> Result<Value> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).context("no Authorization")?;
    let token = auth.strip_prefix("Bearer ").context("not a bearer token")?;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    ensure!(parts.len() == 3, "not a JWT");
    let mut mac = Hmac::<Sha256>::new_from_slice(shared.secret.as_bytes())?;
    mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
    mac.verify_slice(&b64.decode(parts[2])?).map_err(|_| anyhow::anyhow!("bad signature"))?;
    let claims: Value = serde_json::from_slice(&b64.decode(parts[1])?)?;
    ensure!(claims["iss"] == shared.key.as_str(), "another key");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    ensure!(claims["exp"].as_u64().is_some_and(|exp| exp >= now), "expired");
    Ok(claims["video"].clone())
}

type Answer = (StatusCode, Json<Value>);

fn twirp_error(status: StatusCode, code: &str) -> Answer {
    (status, Json(json!({ "code": code, "msg": code })))
}

/// Checks the token and its grant, records the call.
fn accept(
    shared: &Shared,
    method: &'static str,
    headers: &HeaderMap,
    body: &Bytes,
    allowed: fn(&Value, &Value) -> bool,
) -> Result<Value, Answer> {
    let mut state = shared.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return Err(twirp_error(StatusCode::BAD_REQUEST, "malformed"));
    };
    match grant(shared, headers) {
        Ok(grant) if allowed(&grant, &body) => {
            state.calls.push(SfuCall { method, body: body.clone(), grant });
            Ok(body)
        }
        _ => {
            state.refused += 1;
            Err(twirp_error(StatusCode::UNAUTHORIZED, "unauthenticated"))
        }
    }
}

async fn create_room(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Answer {
    match accept(&shared, "CreateRoom", &headers, &body, |grant, _| grant["roomCreate"] == true) {
        Ok(body) => (StatusCode::OK, Json(json!({ "name": body["name"], "sid": "RM_test", "creation_time": 0 }))),
        Err(answer) => answer,
    }
}

async fn get_participant(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Answer {
    let allowed = |grant: &Value, body: &Value| grant["roomAdmin"] == true && grant["room"] == body["room"];
    match accept(&shared, "GetParticipant", &headers, &body, allowed) {
        Ok(body) => {
            let key = (
                body["room"].as_str().unwrap_or_default().to_owned(),
                body["identity"].as_str().unwrap_or_default().to_owned(),
            );
            let present = shared.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).present.contains(&key);
            if present {
                (StatusCode::OK, Json(json!({ "identity": key.1, "state": "ACTIVE" })))
            } else {
                twirp_error(StatusCode::NOT_FOUND, "not_found")
            }
        }
        Err(answer) => answer,
    }
}
