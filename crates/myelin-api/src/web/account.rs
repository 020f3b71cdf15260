//! The account page (MSC4191's account management URL): profile, sessions with sign-out,
//! password, deactivation. `?action=` and `?device_id=` from a client land on the part they name.

use std::collections::HashMap;

use axum::{
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use myelin_core::types::OwnedUserId;
use serde::Deserialize;

use super::{csrf_form, csrf_forms, csrf_token, error_page, html, or_page, page, require_user, see_other};
use crate::AppState;

const ACCOUNT: &str = "/account/";

fn format_time(ms: Option<u64>) -> String {
    ms.map(|ms| {
        let secs = ms / 1000;
        let (days, rem) = (secs / 86_400, secs % 86_400);
        // Days since 1970 to a civil date (Howard Hinnant's algorithm).
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
    })
    .unwrap_or_else(|| "—".to_owned())
}

/// `GET /account/`.
pub async fn account_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let user = or_page!(require_user(&state, &headers, ACCOUNT).await);
    let (csrf, new_cookie) = csrf_token(&state, &headers);
    let profile = state.profile(&user).await.ok();
    let sessions = match state.user_sessions(&user).await {
        Ok(s) => s,
        Err(err) => return error_page(&err),
    };
    let focus = q.get("device_id");
    let rows: String = sessions
        .iter()
        .map(|(device, oauth)| {
            let highlighted = focus.is_some_and(|f| f == device.device_id.as_str());
            format!(
                "<tr{mark}><td><span class=\"code\">{id}</span></td><td>{name}</td><td>{kind}</td><td>{seen}</td>\
                 <td><form method=\"post\" action=\"/account/sessions/end\">{csrf}{field}\
                 <button class=\"danger\" type=\"submit\" aria-label=\"Sign out {id}\">Sign out</button></form></td></tr>",
                mark = if highlighted { " aria-current=\"true\"" } else { "" },
                id = html::escape(device.device_id.as_str()),
                name = html::escape(device.display_name.as_deref().unwrap_or("")),
                kind = if oauth.is_some() { "OAuth" } else { "Password login" },
                seen = html::escape(&format_time(device.last_seen_ms)),
                csrf = html::csrf_field(&csrf),
                field = html::hidden("device_id", device.device_id.as_str()),
            )
        })
        .collect();
    // A client sent the person here to approve a cross-signing reset (MSC4191's action).
    let reset = if q.get("action").map(String::as_str) == Some("org.matrix.cross_signing_reset") {
        format!(
            "<h2 id=\"cross-signing-reset\">Reset your digital identity?</h2>\
             <p>Your app asks to replace your cross-signing keys. Do this only if you have lost access to \
             all your other devices and your recovery key: people will see that your identity changed, \
             and your other sessions will have to be verified again.</p>\
             <form method=\"post\" action=\"/account/cross_signing_reset\">{}\
             <button class=\"danger\" type=\"submit\">Allow the reset for 10 minutes</button></form>",
            html::csrf_field(&csrf)
        )
    } else {
        String::new()
    };
    let two_step = match (state.has_second_factor(&user).await, state.pending_totp_enrolment(&user).await) {
        (Ok(true), _) => format!(
            "<p>On: signing in asks for a code from your authenticator app.</p>\
             <form method=\"post\" action=\"/account/totp/remove\">{csrf}\
             <label for=\"totp-password\">Password</label>\
             <input type=\"password\" id=\"totp-password\" name=\"password\" autocomplete=\"current-password\" required>\
             <button class=\"danger\" type=\"submit\">Turn off two-step verification</button></form>",
            csrf = html::csrf_field(&csrf)
        ),
        (Ok(false), Ok(Some(enrolment))) => format!(
            "<p>Add this account to your authenticator app with the key below (or the link), then enter the code it shows.</p>\
             <p>Key: <span class=\"code\" id=\"totp-secret\">{secret}</span></p>\
             <p><a href=\"{uri}\">Open in an authenticator app</a></p>\
             <form method=\"post\" action=\"/account/totp/confirm\">{csrf}\
             <label for=\"totp-code\">Code</label>\
             <input type=\"text\" id=\"totp-code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" required>\
             <button type=\"submit\">Turn on</button></form>",
            secret = html::escape(&enrolment.secret),
            uri = html::escape(&enrolment.uri),
            csrf = html::csrf_field(&csrf)
        ),
        _ => format!(
            "<p>Off.</p><form method=\"post\" action=\"/account/totp/start\">{}\
             <button type=\"submit\">Set up an authenticator app</button></form>",
            html::csrf_field(&csrf)
        ),
    };
    let passkeys = state.user_passkeys(&user).await.unwrap_or_default();
    let passkey_rows: String = passkeys
        .iter()
        .map(|k| {
            format!(
                "<tr><td>{name}</td><td>{created}</td><td>{used}</td><td><form method=\"post\" action=\"/account/passkeys/remove\">\
                 {csrf}{field}<button class=\"danger\" type=\"submit\" aria-label=\"Remove passkey {name}\">Remove</button></form></td></tr>",
                name = html::escape(&k.name),
                created = html::escape(&format_time(Some(k.created_ms))),
                used = html::escape(&format_time(k.last_used_ms)),
                csrf = html::csrf_field(&csrf),
                field = html::hidden("credential_id", &k.credential_id),
            )
        })
        .collect();
    let passkeys_section = format!(
        "<p>Sign in with your device's screen lock or a security key instead of your password.</p>\
         <table id=\"passkeys\"><thead><tr><th>Name</th><th>Added</th><th>Last used</th><th></th></tr></thead><tbody>{passkey_rows}</tbody></table>\
         <p class=\"error\" id=\"passkey-error\" role=\"alert\" hidden></p>\
         <label for=\"passkey-name\">Name of the new passkey</label>\
         <input type=\"text\" id=\"passkey-name\" value=\"Passkey\">\
         <button type=\"button\" id=\"passkey-add\" data-csrf=\"{}\" hidden>Add a passkey</button>",
        html::escape(&csrf)
    );
    let notice = q
        .get("done")
        .and_then(|d| done_message(d))
        .map(|m| format!("<p class=\"note\" role=\"status\">{}</p>", html::escape(m)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Your account</h1>{notice}<p><strong>{user}</strong></p>{reset}\
         <h2 id=\"profile\">Profile</h2>\
         <form method=\"post\" action=\"/account/profile\">{csrf}\
         <label for=\"displayname\">Display name</label>\
         <input type=\"text\" id=\"displayname\" name=\"displayname\" value=\"{displayname}\">\
         <button type=\"submit\">Save</button></form>\
         <h2 id=\"sessions\">Sessions</h2>\
         <table><thead><tr><th>Device</th><th>Name</th><th>Kind</th><th>Last seen</th><th></th></tr></thead>\
         <tbody>{rows}</tbody></table>\
         <h2 id=\"two-step\">Two-step verification</h2>{two_step}\
         <h2 id=\"passkeys-heading\">Passkeys</h2>{passkeys_section}\
         <h2 id=\"password\">Password</h2>\
         <form method=\"post\" action=\"/account/password\">{csrf}\
         <label for=\"current\">Current password</label>\
         <input type=\"password\" id=\"current\" name=\"current\" autocomplete=\"current-password\" required>\
         <label for=\"new\">New password</label>\
         <input type=\"password\" id=\"new\" name=\"new\" autocomplete=\"new-password\" required>\
         <button type=\"submit\">Change password</button></form>\
         <h2 id=\"deactivate\">Deactivate the account</h2>\
         <p class=\"note\">This cannot be undone: every session ends and the user id cannot be used again.</p>\
         <form method=\"post\" action=\"/account/deactivate\">{csrf}\
         <label for=\"deactivate-password\">Password</label>\
         <input type=\"password\" id=\"deactivate-password\" name=\"password\" autocomplete=\"current-password\" required>\
         <button class=\"danger\" type=\"submit\">Deactivate</button></form>\
         <form method=\"post\" action=\"/auth/logout\">{csrf}<button class=\"secondary\" type=\"submit\">Sign out of this page</button></form>",
        user = html::escape(user.as_str()),
        csrf = html::csrf_field(&csrf),
        displayname = html::escape(profile.and_then(|p| p.displayname).as_deref().unwrap_or("")),
    );
    page(StatusCode::OK, html::layout("Your account", &body, true), new_cookie)
}

/// Back to the account page, saying what was done (by code: a link cannot put words there).
fn done(code: &str) -> Response {
    see_other(&format!("{ACCOUNT}?{}", super::url_query(&[("done", code)])))
}

/// What the account page says after `done(code)`.
fn done_message(code: &str) -> Option<&'static str> {
    Some(match code {
        "session-ended" => "The session was signed out.",
        "profile" => "Your profile was saved.",
        "password" => "Your password was changed.",
        "cross-signing-reset" => "The reset is allowed for 10 minutes: go back to your app to finish it.",
        "two-step-off" => "Two-step verification is off.",
        "passkey-removed" => "The passkey was removed.",
        "passkey-added" => "The passkey was added.",
        _ => return None,
    })
}

#[derive(Deserialize)]
pub struct AccountForm {
    csrf: Option<String>,
    credential_id: Option<String>,
    code: Option<String>,
    device_id: Option<String>,
    displayname: Option<String>,
    current: Option<String>,
    new: Option<String>,
    password: Option<String>,
}

async fn checked(state: &AppState, headers: &HeaderMap, body: &Bytes) -> Result<(OwnedUserId, AccountForm), Response> {
    let f: AccountForm = csrf_form(headers, body)?;
    let user = require_user(state, headers, ACCOUNT).await?;
    Ok((user, f))
}

/// `POST /account/sessions/end`.
pub async fn end_session(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (user, f) = or_page!(checked(&state, &headers, &body).await);
    match state.end_session(&user, f.device_id.as_deref().unwrap_or_default()).await {
        Ok(()) => done("session-ended"),
        Err(err) => error_page(&err),
    }
}

/// `POST /account/profile`.
pub async fn set_profile(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (user, f) = or_page!(checked(&state, &headers, &body).await);
    let name = f.displayname.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    match state.set_own_displayname(&user, name).await {
        Ok(()) => done("profile"),
        Err(err) => error_page(&err),
    }
}

/// `POST /account/password`: the other sessions stay (as `/account/password` with
/// `logout_devices: false` would not do: a person who changes a password here chooses).
pub async fn change_password(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (user, f) = or_page!(checked(&state, &headers, &body).await);
    if let Err(err) = state.check_password(&user, f.current.as_deref().unwrap_or_default()).await {
        return error_page(&err);
    }
    match state.set_password(&user, f.new.unwrap_or_default()).await {
        Ok(()) => done("password"),
        Err(err) => error_page(&err),
    }
}

/// `POST /account/deactivate`.
pub async fn deactivate(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (user, f) = or_page!(checked(&state, &headers, &body).await);
    if let Err(err) = state.check_password(&user, f.password.as_deref().unwrap_or_default()).await {
        return error_page(&err);
    }
    match state.deactivate(&user).await {
        Ok(()) => {
            page(StatusCode::OK, html::message_page("Account deactivated", "Your account has been deactivated."), None)
        }
        Err(err) => error_page(&err),
    }
}

/// `POST /account/cross_signing_reset`: the person's approval (MSC4312).
pub async fn approve_cross_signing_reset(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (user, _) = or_page!(checked(&state, &headers, &body).await);
    match state.approve_cross_signing_reset(&user).await {
        Ok(()) => done("cross-signing-reset"),
        Err(err) => error_page(&err),
    }
}

/// `POST /account/totp/start`.
pub async fn start_totp(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (user, _) = or_page!(checked(&state, &headers, &body).await);
    match state.start_totp_enrolment(&user).await {
        Ok(_) => see_other("/account/#two-step"),
        Err(err) => error_page(&err),
    }
}

/// `POST /account/totp/confirm`: on, and the recovery codes, shown this once.
pub async fn confirm_totp(
    State(state): State<AppState>,
    crate::extract::ClientAddr(addr): crate::extract::ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (user, f) = or_page!(checked(&state, &headers, &body).await);
    match state.confirm_totp(&user, f.code.as_deref().unwrap_or_default(), &addr).await {
        Ok(codes) => {
            let items: String = codes.iter().map(|c| format!("<li class=\"code\">{}</li>", html::escape(c))).collect();
            let body = format!(
                "<h1>Two-step verification is on</h1>\
                 <p>Keep these recovery codes somewhere safe. Each signs you in once if you lose your app; \
                 they are not shown again.</p><ul id=\"recovery-codes\">{items}</ul><p><a href=\"{ACCOUNT}\">Back to your account</a></p>"
            );
            page(StatusCode::OK, html::layout("Recovery codes", &body, false), None)
        }
        Err(err) => error_page(&err),
    }
}

/// `POST /account/totp/remove`.
pub async fn remove_totp(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (user, f) = or_page!(checked(&state, &headers, &body).await);
    match state.remove_second_factor(&user, f.password.as_deref().unwrap_or_default()).await {
        Ok(()) => done("two-step-off"),
        Err(err) => error_page(&err),
    }
}

/// `POST /account/passkeys/remove`.
pub async fn remove_passkey(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (user, f) = or_page!(checked(&state, &headers, &body).await);
    match state.remove_passkey(&user, f.credential_id.as_deref().unwrap_or_default()).await {
        Ok(()) => done("passkey-removed"),
        Err(err) => error_page(&err),
    }
}

csrf_forms!(AccountForm);
