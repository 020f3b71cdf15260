//! The web pages a person uses with the OAuth server: sign in, register, consent to a client,
//! approve another device (QR login), and manage the account. Server-rendered HTML without
//! scripts, every form CSRF-protected (a cookie echoed in a hidden field), cookies `HttpOnly`
//! and `SameSite`, a strict Content-Security-Policy, and no CORS.

#![allow(clippy::result_large_err, reason = "a page's failure is a page: both arms are responses")]

mod account;
mod auth;
mod html;
mod passkeys;

use axum::{
    Router,
    body::Bytes,
    extract::Request,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{Html, IntoResponse, Redirect, Response},
    routing::get,
};
use myelin_core::MatrixError;
use serde::de::DeserializeOwned;

use crate::{ApiError, AppState};

/// The value of `Result<T, Response>`, or the response returned from the handler: a page's
/// failure is a page.
macro_rules! or_page {
    ($result:expr) => {
        match $result {
            Ok(value) => value,
            Err(page) => return page,
        }
    };
}
pub(crate) use or_page;

pub const SESSION_COOKIE: &str = "myelin_session";
pub const CSRF_COOKIE: &str = "myelin_csrf";

/// The pages' routes (merged into the main router outside its CORS layer).
pub fn router(max_body: usize) -> Router<AppState> {
    Router::new()
        .route("/oauth2/authorize", get(auth::authorize))
        .route("/auth/login", get(auth::login_page).post(auth::login))
        .route("/auth/register", get(auth::register_page).post(auth::register))
        .route("/auth/logout", axum::routing::post(auth::logout))
        .route("/auth/consent/{grant_id}", get(auth::consent_page).post(auth::consent))
        .route("/auth/device", get(auth::device_page).post(auth::device_answer))
        .route("/auth/style.css", get(html::stylesheet))
        .route("/auth/passkeys.js", get(passkeys::script))
        .route("/auth/passkey/login/options", axum::routing::post(passkeys::login_options))
        .route("/auth/passkey/login", axum::routing::post(passkeys::login))
        .route("/account/passkeys/options", axum::routing::post(passkeys::registration_options))
        .route("/account/passkeys", axum::routing::post(passkeys::register))
        .route("/account/passkeys/remove", axum::routing::post(account::remove_passkey))
        .route("/auth/sso", get(auth::sso_page).post(auth::sso_continue))
        .route("/auth/second-factor", get(auth::second_factor_page).post(auth::second_factor))
        .route("/account/totp/start", axum::routing::post(account::start_totp))
        .route("/account/totp/confirm", axum::routing::post(account::confirm_totp))
        .route("/account/totp/remove", axum::routing::post(account::remove_totp))
        .route("/_matrix/client/v3/login/sso/redirect", get(auth::sso_redirect))
        .route("/_matrix/client/v3/login/sso/redirect/{idp}", get(auth::sso_redirect_idp))
        .route("/_matrix/client/r0/login/sso/redirect", get(auth::sso_redirect))
        .route("/account/", get(account::account_page))
        .route("/account/sessions/end", axum::routing::post(account::end_session))
        .route("/account/profile", axum::routing::post(account::set_profile))
        .route("/account/password", axum::routing::post(account::change_password))
        .route("/account/deactivate", axum::routing::post(account::deactivate))
        .route("/account/cross_signing_reset", axum::routing::post(account::approve_cross_signing_reset))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
}

/// Headers every page carries. `form-action` is widened per page only where a form's answer
/// redirects to a client (the consent page).
async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(html::CSP));
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The value of a cookie the request carries.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite`, `Secure` when the server is served over https.
pub fn set_cookie(state: &AppState, name: &str, value: &str, max_age_s: Option<u64>, same_site: &str) -> HeaderValue {
    let secure = if state.oauth_issuer().starts_with("https://") { "; Secure" } else { "" };
    let age = max_age_s.map(|s| format!("; Max-Age={s}")).unwrap_or_default();
    let text = format!("{name}={value}; Path=/; HttpOnly; SameSite={same_site}{secure}{age}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The browser's CSRF token, and the cookie to set if it had none yet.
pub fn csrf_token(state: &AppState, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    if let Some(token) = cookie(headers, CSRF_COOKIE).filter(|t| t.len() == 32) {
        return (token, None);
    }
    let token = state.new_secret(32);
    let cookie = set_cookie(state, CSRF_COOKIE, &token, None, "Strict");
    (token, Some(cookie))
}

/// Whether a form's `csrf` field is the browser's CSRF cookie (compared in constant time).
pub fn csrf_ok(headers: &HeaderMap, submitted: Option<&str>) -> bool {
    let (Some(expected), Some(submitted)) = (cookie(headers, CSRF_COOKIE), submitted) else { return false };
    expected.len() == 32
        && expected.len() == submitted.len()
        && expected.bytes().zip(submitted.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// A page with status, and the CSRF cookie if a new one was made.
pub fn page(status: StatusCode, body: String, csrf_cookie: Option<HeaderValue>) -> Response {
    let mut response = (status, Html(body)).into_response();
    if let Some(cookie) = csrf_cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// An error page (the Matrix error's status and message).
pub fn error_page(err: &MatrixError) -> Response {
    let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::BAD_REQUEST);
    page(status, html::message_page("Something went wrong", &err.message), None)
}

pub fn forbidden_csrf() -> Response {
    page(
        StatusCode::FORBIDDEN,
        html::message_page(
            "Request refused",
            "The form was not sent from this site's page. Reload the page and try again.",
        ),
        None,
    )
}

/// A form body: pages answer a malformed one with a 400 page.
pub fn form<T: DeserializeOwned>(body: &Bytes) -> Result<T, Response> {
    serde_urlencoded::from_bytes(body).map_err(|_| {
        page(StatusCode::BAD_REQUEST, html::message_page("Bad request", "The form could not be read."), None)
    })
}

/// A form that carries the CSRF field.
pub trait CsrfForm: DeserializeOwned {
    fn csrf(&self) -> Option<&str>;
}

/// `CsrfForm` for forms whose CSRF field is named `csrf`.
macro_rules! csrf_forms {
    ($($form:ty),* $(,)?) => {
        $(impl $crate::web::CsrfForm for $form {
            fn csrf(&self) -> Option<&str> {
                self.csrf.as_deref()
            }
        })*
    };
}
pub(crate) use csrf_forms;

/// The form, if it reads and its CSRF field is the browser's CSRF cookie; else the page to show.
pub fn csrf_form<T: CsrfForm>(headers: &HeaderMap, body: &Bytes) -> Result<T, Response> {
    let f: T = form(body)?;
    if !csrf_ok(headers, f.csrf()) {
        return Err(forbidden_csrf());
    }
    Ok(f)
}

/// The signed-in user, or the login page that comes back to `here`.
pub async fn require_user(
    state: &AppState,
    headers: &HeaderMap,
    here: &str,
) -> Result<myelin_core::types::OwnedUserId, Response> {
    match signed_in(state, headers).await {
        Ok(Some(user)) => Ok(user),
        Ok(None) => Err(see_other(&login_url(here))),
        Err(e) => Err(page(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            html::message_page("Something went wrong", e.body["error"].as_str().unwrap_or_default()),
            None,
        )),
    }
}

/// Only a path on this site may be the `next` page: never another site (no open redirect).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        // Browsers drop tabs and line breaks from a Location (`/\t/evil` becomes `//evil`).
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(|c| c.is_control() || c.is_whitespace())
                && n.len() < 2048 =>
        {
            n.to_owned()
        }
        _ => format!("/{}", myelin_service::oauth::paths::ACCOUNT),
    }
}

/// `303 See Other` to `to` (after a form, the browser follows with GET).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// The signed-in user of the browser, if any.
pub async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<myelin_core::types::OwnedUserId>, ApiError> {
    let Some(session) = cookie(headers, SESSION_COOKIE) else { return Ok(None) };
    Ok(state.web_session_user(&session).await?)
}

/// The login page's URL that comes back to `next`.
pub fn login_url(next: &str) -> String {
    let query = url_query(&[("next", next)]);
    format!("/{}?{query}", myelin_service::oauth::paths::LOGIN)
}

pub fn url_query(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}
