//! Passkeys on the pages: the script that talks to the browser's authenticator
//! (`navigator.credentials`), and the JSON it posts. Same-origin only: no CORS here, and each
//! request carries the CSRF cookie's value in `X-CSRF-Token`, which another site cannot set.

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use myelin_core::MatrixError;
use myelin_service::oauth::passkeys::{AssertionResponse, RegistrationResponse};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{SESSION_COOKIE, csrf_ok, safe_next, set_cookie, signed_in};
use crate::{ApiError, AppState, extract::ClientAddr};

const SCRIPT: &str = r#"// Passkeys: the page's buttons talk to the authenticator; the server checks what it signed.
const b64u = {
  enc: (buf) => btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, ""),
  dec: (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4)), (c) => c.charCodeAt(0)),
};
async function post(url, csrf, body) {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", "x-csrf-token": csrf },
    body: JSON.stringify(body || {}),
  });
  const json = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(json.error || `HTTP ${res.status}`);
  return json;
}
function show(message) {
  const box = document.getElementById("passkey-error");
  if (box) { box.textContent = message; box.hidden = false; }
}
const login = document.getElementById("passkey-login");
if (login && window.PublicKeyCredential) {
  login.hidden = false;
  login.addEventListener("click", async () => {
    try {
      const o = await post("/auth/passkey/login/options", login.dataset.csrf);
      const cred = await navigator.credentials.get({ publicKey: {
        challenge: b64u.dec(o.challenge), rpId: o.rpId, userVerification: o.userVerification, timeout: o.timeout } });
      const r = cred.response;
      const done = await post("/auth/passkey/login", login.dataset.csrf, {
        id: cred.id, clientDataJSON: b64u.enc(r.clientDataJSON), authenticatorData: b64u.enc(r.authenticatorData),
        signature: b64u.enc(r.signature), next: login.dataset.next });
      location.assign(done.next);
    } catch (e) { show(String(e.message || e)); }
  });
}
const add = document.getElementById("passkey-add");
if (add && window.PublicKeyCredential) {
  add.hidden = false;
  add.addEventListener("click", async () => {
    try {
      const o = await post("/account/passkeys/options", add.dataset.csrf);
      const cred = await navigator.credentials.create({ publicKey: { ...o,
        challenge: b64u.dec(o.challenge), user: { ...o.user, id: b64u.dec(o.user.id) },
        excludeCredentials: o.excludeCredentials.map((c) => ({ type: c.type, id: b64u.dec(c.id) })) } });
      const r = cred.response;
      await post("/account/passkeys", add.dataset.csrf, {
        id: cred.id, clientDataJSON: b64u.enc(r.clientDataJSON), attestationObject: b64u.enc(r.attestationObject),
        name: (document.getElementById("passkey-name") || {}).value || "" });
      location.assign("/account/?done=passkey-added");
    } catch (e) { show(String(e.message || e)); }
  });
}
"#;

pub async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        SCRIPT,
    )
        .into_response()
}

fn require_csrf(headers: &HeaderMap) -> Result<(), ApiError> {
    let token = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
    if csrf_ok(headers, token) { Ok(()) } else { Err(MatrixError::forbidden("Missing or wrong CSRF token").into()) }
}

fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| MatrixError::bad_json(e.to_string()).into())
}

async fn account_user(state: &AppState, headers: &HeaderMap) -> Result<myelin_core::types::OwnedUserId, ApiError> {
    signed_in(state, headers).await?.ok_or_else(|| MatrixError::unknown_token("Not signed in").into())
}

/// `POST /auth/passkey/login/options`.
pub async fn login_options(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    require_csrf(&headers)?;
    Ok(Json(state.passkey_login_options(&addr).await?))
}

#[derive(Deserialize)]
pub struct LoginBody {
    #[serde(flatten)]
    assertion: AssertionResponse,
    next: Option<String>,
}

/// `POST /auth/passkey/login`: signed in (the cookie), and where to go.
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_csrf(&headers)?;
    let body: LoginBody = json_body(&body)?;
    let (session, _) = state.finish_passkey_login(&body.assertion, &addr).await?;
    let lifetime = myelin_service::oauth::WEB_SESSION_LIFETIME_MS / 1000;
    let cookie = set_cookie(&state, SESSION_COOKIE, &session, Some(lifetime), "Lax");
    let next = safe_next(body.next.as_deref());
    Ok((StatusCode::OK, [(header::SET_COOKIE, cookie)], Json(json!({ "next": next }))).into_response())
}

/// `POST /account/passkeys/options`.
pub async fn registration_options(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    require_csrf(&headers)?;
    let user = account_user(&state, &headers).await?;
    Ok(Json(state.passkey_registration_options(&user).await?))
}

#[derive(Deserialize)]
pub struct RegisterBody {
    #[serde(flatten)]
    response: RegistrationResponse,
    name: Option<String>,
}

/// `POST /account/passkeys`.
pub async fn register(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Json<Value>, ApiError> {
    require_csrf(&headers)?;
    let user = account_user(&state, &headers).await?;
    let body: RegisterBody = json_body(&body)?;
    state.finish_passkey_registration(&user, &body.response, body.name.as_deref().unwrap_or_default()).await?;
    Ok(Json(json!({})))
}
