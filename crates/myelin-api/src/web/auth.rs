//! Signing in, registering, consenting to a client, and approving another device.

use std::collections::HashMap;

use axum::{
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
};
use myelin_service::oauth::{AuthorizationRequest, AuthorizationStart, Scope, paths};
use serde::Deserialize;

use super::{
    SESSION_COOKIE, cookie, csrf_form, csrf_forms, csrf_token, error_page, html, login_url, or_page, page,
    require_user, safe_next, see_other, set_cookie, signed_in, url_query,
};
use crate::{AppState, extract::ClientAddr};

fn ok_or_page<T>(result: Result<T, crate::ApiError>) -> Result<T, Response> {
    result.map_err(|e| {
        let message = e.body["error"].as_str().unwrap_or("Something went wrong").to_owned();
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        page(status, html::message_page("Something went wrong", &message), None)
    })
}

fn disabled_page() -> Response {
    page(StatusCode::NOT_FOUND, html::message_page("Not found", "Sign-in through this server is not enabled."), None)
}

/// `GET /oauth2/authorize`: records the request, then on to the consent page (which sends a
/// browser without a session to sign in first).
pub async fn authorize(State(state): State<AppState>, Query(req): Query<AuthorizationRequest>) -> Response {
    if !state.oauth_enabled() {
        return disabled_page();
    }
    match state.start_authorization(req).await {
        Err(err) => error_page(&err),
        Ok(AuthorizationStart::ErrorPage(message)) => {
            page(StatusCode::BAD_REQUEST, html::message_page("This sign-in request is not valid", &message), None)
        }
        Ok(AuthorizationStart::RedirectError(to)) => see_other(&to),
        Ok(AuthorizationStart::Recorded { grant_id, create_account, login_hint }) => {
            let mut query = Vec::new();
            if create_account {
                query.push(("create", "1"));
            }
            if let Some(hint) = login_hint.as_deref() {
                query.push(("hint", hint));
            }
            let suffix = if query.is_empty() { String::new() } else { format!("?{}", url_query(&query)) };
            see_other(&format!("/{}/{grant_id}{suffix}", paths::CONSENT))
        }
    }
}

fn login_form(csrf: &str, next: &str, hint: &str, error: Option<&str>, offer_register: bool) -> String {
    let register = if offer_register {
        format!(
            "<p class=\"note\">No account yet? <a href=\"/{}?{}\">Create one</a>.</p>",
            paths::REGISTER,
            html::escape(&url_query(&[("next", next)]))
        )
    } else {
        String::new()
    };
    html::layout(
        "Sign in",
        &format!(
            "<h1>Sign in</h1>{error}<form method=\"post\" action=\"/{login}\">{csrf}{next}\
             <label for=\"username\">Username</label>\
             <input type=\"text\" id=\"username\" name=\"username\" value=\"{hint}\" autocomplete=\"username\" required autofocus>\
             <label for=\"password\">Password</label>\
             <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
             <button type=\"submit\">Continue</button></form>\
             <p class=\"error\" id=\"passkey-error\" role=\"alert\" hidden></p>\
             <button class=\"secondary\" type=\"button\" id=\"passkey-login\" data-csrf=\"{csrf_value}\" data-next=\"{next_value}\" hidden>Sign in with a passkey</button>\
             {register}",
            error = html::error_box(error),
            login = paths::LOGIN,
            csrf = html::csrf_field(csrf),
            next = html::hidden("next", next),
            hint = html::escape(hint),
            csrf_value = html::escape(csrf),
            next_value = html::escape(next),
        ),
        false,
    )
}

/// `GET /auth/login?next=`.
pub async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !state.oauth_enabled() {
        return disabled_page();
    }
    let next = safe_next(q.get("next").map(String::as_str));
    if let Ok(Some(_)) = signed_in(&state, &headers).await {
        return see_other(&next);
    }
    let (csrf, new_cookie) = csrf_token(&state, &headers);
    let offer = state.web_registration_offered().await.unwrap_or(false);
    let hint = q.get("hint").map(String::as_str).unwrap_or_default();
    page(StatusCode::OK, login_form(&csrf, &next, hint, None, offer), new_cookie)
}

#[derive(Deserialize)]
pub struct LoginForm {
    csrf: Option<String>,
    username: Option<String>,
    password: Option<String>,
    next: Option<String>,
}

fn with_session_cookie(state: &AppState, mut response: Response, session_id: &str) -> Response {
    let lifetime = myelin_service::oauth::WEB_SESSION_LIFETIME_MS / 1000;
    let cookie = set_cookie(state, SESSION_COOKIE, session_id, Some(lifetime), "Lax");
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

/// `POST /auth/login`.
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !state.oauth_enabled() {
        return disabled_page();
    }
    let f: LoginForm = or_page!(csrf_form(&headers, &body));
    let next = safe_next(f.next.as_deref());
    let username = f.username.unwrap_or_default();
    match state.web_login(&username, f.password.as_deref().unwrap_or_default(), &addr).await {
        Ok((session_id, _, true)) => {
            let to = format!("/auth/second-factor?{}", url_query(&[("next", &next)]));
            with_session_cookie(&state, see_other(&to), &session_id)
        }
        Ok((session_id, _, false)) => with_session_cookie(&state, see_other(&next), &session_id),
        Err(err) => {
            let (csrf, new_cookie) = csrf_token(&state, &headers);
            let offer = state.web_registration_offered().await.unwrap_or(false);
            let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::FORBIDDEN);
            page(status, login_form(&csrf, &next, &username, Some(&err.message), offer), new_cookie)
        }
    }
}

fn register_form(csrf: &str, next: &str, username: &str, error: Option<&str>, ask_token: bool) -> String {
    let token = if ask_token {
        "<label for=\"token\">Registration token</label>\
         <input type=\"text\" id=\"token\" name=\"token\" autocomplete=\"off\" required>"
    } else {
        ""
    };
    html::layout(
        "Create an account",
        &format!(
            "<h1>Create an account</h1>{error}<form method=\"post\" action=\"/{register}\">{csrf}{next}\
             <label for=\"username\">Username</label>\
             <input type=\"text\" id=\"username\" name=\"username\" value=\"{username}\" autocomplete=\"username\" required autofocus>\
             <label for=\"password\">Password</label>\
             <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"new-password\" required>\
             {token}<button type=\"submit\">Create account</button></form>\
             <p class=\"note\">Have an account? <a href=\"{login}\">Sign in</a>.</p>",
            error = html::error_box(error),
            register = paths::REGISTER,
            csrf = html::csrf_field(csrf),
            next = html::hidden("next", next),
            username = html::escape(username),
            login = html::escape(&login_url(next)),
        ),
        false,
    )
}

/// `GET /auth/register?next=`.
pub async fn register_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !state.oauth_enabled() {
        return disabled_page();
    }
    let next = safe_next(q.get("next").map(String::as_str));
    if !state.web_registration_offered().await.unwrap_or(false) {
        return page(
            StatusCode::FORBIDDEN,
            html::message_page("Registration is closed", "This server does not take new accounts."),
            None,
        );
    }
    let (csrf, new_cookie) = csrf_token(&state, &headers);
    let ask_token = !state.config().open_registration();
    page(StatusCode::OK, register_form(&csrf, &next, "", None, ask_token), new_cookie)
}

#[derive(Deserialize)]
pub struct RegisterForm {
    csrf: Option<String>,
    username: Option<String>,
    password: Option<String>,
    token: Option<String>,
    next: Option<String>,
}

/// `POST /auth/register`.
pub async fn register(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !state.oauth_enabled() {
        return disabled_page();
    }
    let f: RegisterForm = or_page!(csrf_form(&headers, &body));
    let next = safe_next(f.next.as_deref());
    let username = f.username.unwrap_or_default();
    let password = f.password.unwrap_or_default();
    match state.web_register(&username, &password, f.token.as_deref(), &addr).await {
        Ok((session_id, _)) => with_session_cookie(&state, see_other(&next), &session_id),
        Err(err) => {
            let (csrf, new_cookie) = csrf_token(&state, &headers);
            let ask_token = !state.config().open_registration();
            let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::BAD_REQUEST);
            page(status, register_form(&csrf, &next, &username, Some(&err.message), ask_token), new_cookie)
        }
    }
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    csrf: Option<String>,
}

/// `POST /auth/logout`: the browser session ends (the clients' sessions stay).
pub async fn logout(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let _: CsrfOnly = or_page!(csrf_form(&headers, &body));
    if let Some(session) = cookie(&headers, SESSION_COOKIE)
        && let Err(err) = state.web_logout(&session).await
    {
        return error_page(&err);
    }
    let mut response = see_other(&format!("/{}", paths::LOGIN));
    response.headers_mut().append(header::SET_COOKIE, set_cookie(&state, SESSION_COOKIE, "", Some(0), "Lax"));
    response
}

/// What a scope lets the client do, in words.
fn describe_scope(scope: &Scope, device_line: &str) -> String {
    let mut items = vec!["See and change your account: read and send messages, join rooms, manage keys".to_owned()];
    if let Some(device) = &scope.device_id {
        items.push(format!("{device_line} <span class=\"code\">{}</span>", html::escape(device)));
    }
    if scope.openid {
        items.push("Know who you are (your user id)".to_owned());
    }
    let items: String = items.iter().map(|i| format!("<li>{i}</li>")).collect();
    format!("<ul class=\"scopes\">{items}</ul>")
}

fn signed_in_as(user: &str, csrf: &str) -> String {
    format!(
        "<p class=\"note\">Signed in as <strong>{}</strong>. \
         <form class=\"inline\" method=\"post\" action=\"/auth/logout\">{}<button class=\"secondary\" type=\"submit\">Not you? Sign out</button></form></p>",
        html::escape(user),
        html::csrf_field(csrf)
    )
}

/// `GET /auth/consent/{grant}`: who asks for what; Allow or Deny.
pub async fn consent_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(grant_id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !state.oauth_enabled() {
        return disabled_page();
    }
    let pending = match ok_or_page(state.pending_code_grant(&grant_id).await.map_err(Into::into)) {
        Ok(Some(p)) => p,
        Ok(None) => {
            return page(
                StatusCode::NOT_FOUND,
                html::message_page(
                    "Request expired",
                    "This sign-in request has expired or was answered already. Start again from the application.",
                ),
                None,
            );
        }
        Err(r) => return r,
    };
    let user = match ok_or_page(signed_in(&state, &headers).await) {
        Ok(Some(user)) => user,
        Ok(None) => {
            let here = format!("/{}/{grant_id}", paths::CONSENT);
            let mut query = vec![("next", here.as_str())];
            if let Some(hint) = q.get("hint") {
                query.push(("hint", hint));
            }
            let target = if q.contains_key("create") && state.web_registration_offered().await.unwrap_or(false) {
                paths::REGISTER
            } else {
                paths::LOGIN
            };
            return see_other(&format!("/{target}?{}", url_query(&query)));
        }
        Err(r) => return r,
    };
    let (csrf, new_cookie) = csrf_token(&state, &headers);
    let client = &pending.client;
    let client_uri = client.client_uri().map(|u| u.to_string()).unwrap_or_default();
    let redirect_host = url::Url::parse(&pending.grant.redirect_uri)
        .ok()
        .map(|u| u.host_str().map_or_else(|| format!("{}:", u.scheme()), str::to_owned))
        .unwrap_or_default();
    let body = format!(
        "<h1>Allow {name} to access your account?</h1>\
         <p><a href=\"{uri}\" rel=\"noopener noreferrer\">{uri}</a> wants to:</p>{scopes}\
         <p class=\"note\">You will be sent back to <strong>{redirect}</strong>.</p>\
         <form method=\"post\" action=\"/{consent}/{grant}\">{csrf}\
         <button type=\"submit\" name=\"action\" value=\"allow\">Allow</button> \
         <button class=\"secondary\" type=\"submit\" name=\"action\" value=\"deny\">Deny</button></form>{who}",
        name = html::escape(&client.display_name()),
        uri = html::escape(&client_uri),
        scopes = describe_scope(&pending.scope, "Sign in as a new session, device"),
        redirect = html::escape(&redirect_host),
        consent = paths::CONSENT,
        grant = html::escape(&grant_id),
        csrf = html::csrf_field(&csrf),
        who = signed_in_as(user.as_str(), &csrf),
    );
    let mut response = page(StatusCode::OK, html::layout("Allow access", &body, false), new_cookie);
    if let Ok(csp) = HeaderValue::from_str(&html::csp_allowing_redirect_to(&pending.grant.redirect_uri)) {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

#[derive(Deserialize)]
pub struct AnswerForm {
    csrf: Option<String>,
    action: Option<String>,
    code: Option<String>,
}

/// `POST /auth/consent/{grant}`: back to the client with a code, or with `access_denied`.
pub async fn consent(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(grant_id): Path<String>,
    body: Bytes,
) -> Response {
    if !state.oauth_enabled() {
        return disabled_page();
    }
    let f: AnswerForm = or_page!(csrf_form(&headers, &body));
    let user = or_page!(require_user(&state, &headers, &format!("/{}/{grant_id}", paths::CONSENT)).await);
    let allow = f.action.as_deref() == Some("allow");
    match state.answer_code_grant(&grant_id, &user, allow).await {
        Ok(to) => see_other(&to),
        Err(err) => error_page(&err),
    }
}

fn code_entry_page(error: Option<&str>) -> String {
    html::layout(
        "Sign in another device",
        &format!(
            "<h1>Sign in another device</h1>{error}<p>Enter the code your other device shows.</p>\
             <form method=\"get\" action=\"/{device}\"><label for=\"code\">Code</label>\
             <input type=\"text\" id=\"code\" name=\"code\" autocomplete=\"off\" required autofocus>\
             <button type=\"submit\">Continue</button></form>",
            error = html::error_box(error),
            device = paths::DEVICE,
        ),
        false,
    )
}

/// `GET /auth/device[?code=]`: "another device is being signed in" — Allow or Deny.
pub async fn device_page(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !state.oauth_enabled() {
        return disabled_page();
    }
    let here = match q.get("code") {
        Some(code) => format!("/{}?{}", paths::DEVICE, url_query(&[("code", code)])),
        None => format!("/{}", paths::DEVICE),
    };
    let user = or_page!(require_user(&state, &headers, &here).await);
    let (csrf, new_cookie) = csrf_token(&state, &headers);
    let Some(code) = q.get("code") else {
        return page(StatusCode::OK, code_entry_page(None), new_cookie);
    };
    let pending = match state.pending_device_grant(code, &addr).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return page(
                StatusCode::NOT_FOUND,
                code_entry_page(Some("This code is not valid, has expired or was used already.")),
                new_cookie,
            );
        }
        Err(err) => return error_page(&err),
    };
    let body = format!(
        "<h1>Another device is being signed in</h1>\
         <p><strong>{name}</strong> on another device asks to sign in to your account. \
         Only allow it if you started this yourself, on a device you have with you.</p>\
         <p>Code: <span class=\"code\">{code}</span></p>{scopes}\
         <form method=\"post\" action=\"/{device}\">{csrf}{code_field}\
         <button type=\"submit\" name=\"action\" value=\"allow\">Allow</button> \
         <button class=\"secondary\" type=\"submit\" name=\"action\" value=\"deny\">Deny</button></form>{who}",
        name = html::escape(&pending.client.display_name()),
        code = html::escape(&pending.grant.user_code),
        scopes = describe_scope(&pending.scope, "As the new device"),
        device = paths::DEVICE,
        csrf = html::csrf_field(&csrf),
        code_field = html::hidden("code", &pending.grant.user_code),
        who = signed_in_as(user.as_str(), &csrf),
    );
    page(StatusCode::OK, html::layout("Sign in another device", &body, false), new_cookie)
}

/// `POST /auth/device`.
pub async fn device_answer(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if !state.oauth_enabled() {
        return disabled_page();
    }
    let f: AnswerForm = or_page!(csrf_form(&headers, &body));
    let user = or_page!(require_user(&state, &headers, &format!("/{}", paths::DEVICE)).await);
    let allow = f.action.as_deref() == Some("allow");
    match state.answer_device_grant(f.code.as_deref().unwrap_or_default(), &user, allow).await {
        Ok(()) if allow => page(
            StatusCode::OK,
            html::message_page("Device allowed", "The other device is now signing in. You can close this page."),
            None,
        ),
        Ok(()) => {
            page(StatusCode::OK, html::message_page("Device denied", "The other device was not signed in."), None)
        }
        Err(err) => error_page(&err),
    }
}

/// `GET /login/sso/redirect?redirectUrl=` (legacy clients' SSO, `m.login.sso`): through the
/// pages, then back to the client with a `loginToken` for `m.login.token`.
pub async fn sso_redirect(State(state): State<AppState>, Query(q): Query<HashMap<String, String>>) -> Response {
    if !state.oauth_enabled() {
        return disabled_page();
    }
    let Some(redirect) = q.get("redirectUrl") else {
        return page(StatusCode::BAD_REQUEST, html::message_page("Bad request", "redirectUrl is missing."), None);
    };
    see_other(&format!("/auth/sso?{}", url_query(&[("redirectUrl", redirect)])))
}

/// `GET /login/sso/redirect/{idpId}`: one provider, the built-in one.
pub async fn sso_redirect_idp(
    state: State<AppState>,
    Path(_idp): Path<String>,
    query: Query<HashMap<String, String>>,
) -> Response {
    sso_redirect(state, query).await
}

fn redirect_origin(redirect: &str) -> Option<String> {
    let url = url::Url::parse(redirect).ok()?;
    Some(url.host_str().map_or_else(|| format!("{}:", url.scheme()), str::to_owned))
}

/// `GET /auth/sso?redirectUrl=`: "continue to this application?" for the signed-in person.
pub async fn sso_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !state.oauth_enabled() {
        return disabled_page();
    }
    let redirect = q.get("redirectUrl").cloned().unwrap_or_default();
    let Some(host) = redirect_origin(&redirect) else {
        return page(StatusCode::BAD_REQUEST, html::message_page("Bad request", "redirectUrl is not a URL."), None);
    };
    let here = format!("/auth/sso?{}", url_query(&[("redirectUrl", &redirect)]));
    let user = or_page!(require_user(&state, &headers, &here).await);
    let (csrf, new_cookie) = csrf_token(&state, &headers);
    let body = format!(
        "<h1>Continue to {host}?</h1><p>An application at <strong>{host}</strong> asks to sign in to your account.</p>\
         <form method=\"post\" action=\"/auth/sso\">{csrf}{redirect}\
         <button type=\"submit\">Continue</button></form>{who}",
        host = html::escape(&host),
        csrf = html::csrf_field(&csrf),
        redirect = html::hidden("redirectUrl", &redirect),
        who = signed_in_as(user.as_str(), &csrf),
    );
    let mut response = page(StatusCode::OK, html::layout("Continue", &body, false), new_cookie);
    if let Ok(csp) = HeaderValue::from_str(&html::csp_allowing_redirect_to(&redirect)) {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

#[derive(Deserialize)]
pub struct SsoForm {
    csrf: Option<String>,
    #[serde(rename = "redirectUrl")]
    redirect_url: Option<String>,
}

/// `POST /auth/sso`: back to the application with a single-use `loginToken`.
pub async fn sso_continue(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if !state.oauth_enabled() {
        return disabled_page();
    }
    let f: SsoForm = or_page!(csrf_form(&headers, &body));
    let redirect = f.redirect_url.unwrap_or_default();
    let user = or_page!(
        require_user(&state, &headers, &format!("/auth/sso?{}", url_query(&[("redirectUrl", &redirect)]))).await
    );
    match state.sso_login_redirect(&user, &redirect).await {
        Ok(to) => see_other(&to),
        Err(err) => error_page(&err),
    }
}

fn second_factor_form(csrf: &str, next: &str, error: Option<&str>) -> String {
    html::layout(
        "Two-step verification",
        &format!(
            "<h1>Two-step verification</h1>{error}<p>Enter the code your authenticator app shows, or one of your recovery codes.</p>\
             <form method=\"post\" action=\"/auth/second-factor\">{csrf}{next}\
             <label for=\"code\">Code</label>\
             <input type=\"text\" id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" required autofocus>\
             <button type=\"submit\">Verify</button></form>",
            error = html::error_box(error),
            csrf = html::csrf_field(csrf),
            next = html::hidden("next", next),
        ),
        false,
    )
}

async fn awaiting_second_factor(
    state: &AppState,
    headers: &HeaderMap,
) -> Option<(String, myelin_core::types::OwnedUserId)> {
    let session = cookie(headers, SESSION_COOKIE)?;
    let user = state.web_session_awaiting_second_factor(&session).await.ok().flatten()?;
    Some((session, user))
}

/// `GET /auth/second-factor?next=`: the code after the password.
pub async fn second_factor_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let next = safe_next(q.get("next").map(String::as_str));
    if awaiting_second_factor(&state, &headers).await.is_none() {
        return see_other(&login_url(&next));
    }
    let (csrf, new_cookie) = csrf_token(&state, &headers);
    page(StatusCode::OK, second_factor_form(&csrf, &next, None), new_cookie)
}

#[derive(Deserialize)]
pub struct SecondFactorForm {
    csrf: Option<String>,
    code: Option<String>,
    next: Option<String>,
}

/// `POST /auth/second-factor`.
pub async fn second_factor(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f: SecondFactorForm = or_page!(csrf_form(&headers, &body));
    let next = safe_next(f.next.as_deref());
    let Some((session, user)) = awaiting_second_factor(&state, &headers).await else {
        return see_other(&login_url(&next));
    };
    let result = match state.check_second_factor(&user, f.code.as_deref().unwrap_or_default(), &addr).await {
        Ok(()) => state.complete_web_session(&session).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => see_other(&next),
        Err(err) => {
            let (csrf, new_cookie) = csrf_token(&state, &headers);
            let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::FORBIDDEN);
            page(status, second_factor_form(&csrf, &next, Some(&err.message)), new_cookie)
        }
    }
}

csrf_forms!(LoginForm, RegisterForm, CsrfOnly, AnswerForm, SsoForm, SecondFactorForm);
