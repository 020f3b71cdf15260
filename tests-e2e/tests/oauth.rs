//! Next-gen auth: the OAuth 2.0 server end to end, as a client and a person at a browser use
//! it, with the attacks of the research note's table.

use anyhow::{Context, Result, ensure};
use myelin_e2e::{
    Client, NO_RATE_LIMITS, TestServer,
    oauth::{Browser, Pkce, native_client, query_param, register_client, token_request},
};
use serde_json::Value;

const API: &str = "urn:matrix:client:api:*";
const GRANT_CODE: &str = "authorization_code";
const GRANT_REFRESH: &str = "refresh_token";
const GRANT_DEVICE: &str = "urn:ietf:params:oauth:grant-type:device_code";

fn scope_with_device(device: &str) -> String {
    format!("{API} urn:matrix:client:device:{device}")
}

/// The authorization URL of a code flow.
fn authorize_url(client_id: &str, redirect: &str, scope: &str, pkce: &Pkce, extra: &[(&str, &str)]) -> String {
    let mut pairs = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect),
        ("scope", scope),
        ("state", "the-state"),
        ("code_challenge", pkce.challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    pairs.extend_from_slice(extra);
    format!("/oauth2/authorize?{}", myelin_e2e::oauth::form_body(&pairs))
}

/// A person signs in (if the browser is not yet) and allows the request; returns the URL the
/// browser is sent back to.
async fn consent(browser: &mut Browser, authorize: &str, user: &str) -> Result<String> {
    let start = browser.get(authorize).await?;
    ensure!(start.status == 303, "authorize: {} {}", start.status, start.body);
    let mut at = start.location().context("to the consent page")?;
    let mut page = browser.get(&at).await?;
    if page.status == 303 {
        let login = page.location().context("to the login page")?;
        ensure!(login.starts_with("/auth/login"), "{login}");
        at = browser.sign_in(&login, user, &format!("{user}-password")).await?;
        page = browser.get(&at).await?;
    }
    ensure!(page.status == 200, "consent page: {} {}", page.status, page.body);
    ensure!(page.body.contains("Test client"), "the page names the client");
    let csrf = browser.csrf();
    let answer = browser.post_form(&at, &[("csrf", &csrf), ("action", "allow")]).await?;
    ensure!(answer.status == 303, "consent: {} {}", answer.status, answer.body);
    answer.location().context("back to the client")
}

struct Flow {
    client_id: String,
    pkce: Pkce,
    redirect: String,
}

async fn code_flow(server: &TestServer, browser: &mut Browser, user: &str, scope: &str) -> Result<(Flow, String)> {
    let client_id = register_client(&server.base_url(), &native_client(&[GRANT_CODE, GRANT_REFRESH])).await?;
    let pkce = Pkce::new();
    let redirect = "http://127.0.0.1:41234/callback".to_owned();
    let back = consent(browser, &authorize_url(&client_id, &redirect, scope, &pkce, &[]), user).await?;
    ensure!(back.starts_with(&redirect), "{back}");
    ensure!(query_param(&back, "state").as_deref() == Some("the-state"), "state is echoed: {back}");
    let code = query_param(&back, "code").context("a code")?;
    Ok((Flow { client_id, pkce, redirect }, code))
}

async fn exchange(server: &TestServer, flow: &Flow, code: &str) -> Result<(u16, Value)> {
    token_request(
        &server.base_url(),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &flow.redirect),
            ("client_id", &flow.client_id),
            ("code_verifier", &flow.pkce.verifier),
        ],
    )
    .await
}

fn client_with(server: &TestServer, token: &Value) -> Client {
    server.anonymous().with_token(token.as_str())
}

async fn whoami(server: &TestServer, token: &Value) -> Result<(u16, Value)> {
    client_with(server, token).get("/_matrix/client/v3/account/whoami").await
}

#[tokio::test]
async fn discovery_is_the_same_on_every_path_and_off_when_disabled() -> Result<()> {
    let server = TestServer::start().await?;
    let anon = server.anonymous();
    let (status, stable) = anon.get("/_matrix/client/v1/auth_metadata").await?;
    ensure!(status == 200, "{status} {stable}");
    let (_, unstable) = anon.get("/_matrix/client/unstable/org.matrix.msc2965/auth_metadata").await?;
    let (_, oidc) = anon.get("/.well-known/openid-configuration").await?;
    ensure!(stable == unstable && stable == oidc, "one document on every path");
    let issuer = stable["issuer"].as_str().context("issuer")?;
    ensure!(issuer == format!("{}/", server.base_url()), "{issuer}");
    for field in [
        "authorization_endpoint",
        "token_endpoint",
        "registration_endpoint",
        "revocation_endpoint",
        "device_authorization_endpoint",
        "account_management_uri",
    ] {
        ensure!(stable[field].as_str().is_some_and(|u| u.starts_with(issuer)), "{field}: {stable}");
    }
    ensure!(stable["code_challenge_methods_supported"] == serde_json::json!(["S256"]), "S256 only");
    let (_, issuer_doc) = anon.get("/_matrix/client/unstable/org.matrix.msc2965/auth_issuer").await?;
    ensure!(issuer_doc["issuer"] == issuer, "{issuer_doc}");

    let off = TestServer::start_with(&format!("[oauth]\nenabled = false\n{NO_RATE_LIMITS}")).await?;
    let (status, body) = off.anonymous().get("/_matrix/client/v1/auth_metadata").await?;
    ensure!(status == 404 && body["errcode"] == "M_UNRECOGNIZED", "{status} {body}");
    // Password login and dummy registration are there either way (the contract).
    off.register("carol").await?;
    Ok(())
}

#[tokio::test]
async fn a_code_flow_signs_in_with_the_device_the_scope_names() -> Result<()> {
    let server = TestServer::start().await?;
    server.register("alice").await?;
    let mut browser = Browser::new(&server.base_url())?;
    let scope = format!("openid {}", scope_with_device("OAUTHDEVICE1"));
    let (flow, code) = code_flow(&server, &mut browser, "alice", &scope).await?;
    let (status, tokens) = exchange(&server, &flow, &code).await?;
    ensure!(status == 200, "{status} {tokens}");
    ensure!(tokens["token_type"] == "Bearer" && tokens["expires_in"] == 300, "{tokens}");
    ensure!(tokens["scope"] == scope, "{tokens}");
    // The ID token: three parts, the issuer, the client as audience, the user as subject.
    let id_token = tokens["id_token"].as_str().context("an id_token for openid")?;
    let parts: Vec<&str> = id_token.split('.').collect();
    ensure!(parts.len() == 3, "{id_token}");
    use base64::Engine as _;
    let claims: Value = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1])?)?;
    ensure!(claims["sub"] == server.user_id("alice") && claims["aud"] == flow.client_id.as_str(), "{claims}");
    let (status, me) = whoami(&server, &tokens["access_token"]).await?;
    ensure!(status == 200, "{status} {me}");
    ensure!(me["user_id"] == server.user_id("alice") && me["device_id"] == "OAUTHDEVICE1", "{me}");
    // The session is listed on the account page as a device of the client.
    let account = browser.get("/account/").await?;
    ensure!(
        account.status == 200 && account.body.contains("OAUTHDEVICE1") && account.body.contains("Test client"),
        "{}",
        account.body
    );
    // The device is a device like any other: listed by the client API too.
    let (_, devices) = client_with(&server, &tokens["access_token"]).get("/_matrix/client/v3/devices").await?;
    ensure!(
        devices["devices"].as_array().is_some_and(|d| d.iter().any(|d| d["device_id"] == "OAUTHDEVICE1")),
        "{devices}"
    );
    Ok(())
}

#[tokio::test]
async fn pkce_is_required_and_checked() -> Result<()> {
    let server = TestServer::start().await?;
    server.register("alice").await?;
    let base = server.base_url();
    let client_id = register_client(&base, &native_client(&[GRANT_CODE])).await?;
    let mut browser = Browser::new(&base)?;
    let redirect = "http://127.0.0.1/callback";
    let scope = scope_with_device("PKCEDEVICE01");
    let pkce = Pkce::new();
    // No challenge, or the plain method: back to the client with invalid_request.
    let without = format!(
        "/oauth2/authorize?{}",
        myelin_e2e::oauth::form_body(&[
            ("response_type", "code"),
            ("client_id", &client_id),
            ("redirect_uri", redirect),
            ("scope", &scope),
            ("state", "s1")
        ])
    );
    let plain = authorize_url(&client_id, redirect, &scope, &pkce, &[]).replace("S256", "plain");
    for url in [without, plain] {
        let reply = browser.get(&url).await?;
        let to = reply.location().context("a redirect with the error")?;
        ensure!(reply.status == 303 && query_param(&to, "error").as_deref() == Some("invalid_request"), "{to}");
    }
    // The wrong verifier: invalid_grant.
    let back = consent(&mut browser, &authorize_url(&client_id, redirect, &scope, &pkce, &[]), "alice").await?;
    let code = query_param(&back, "code").context("code")?;
    let wrong = Flow { client_id: client_id.clone(), pkce: Pkce::new(), redirect: redirect.to_owned() };
    let (status, body) = exchange(&server, &wrong, &code).await?;
    ensure!(status == 400 && body["error"] == "invalid_grant", "{status} {body}");
    Ok(())
}

#[tokio::test]
async fn redirect_uris_must_match_and_errors_never_redirect_elsewhere() -> Result<()> {
    let server = TestServer::start().await?;
    server.register("alice").await?;
    let base = server.base_url();
    let client_id = register_client(&base, &native_client(&[GRANT_CODE])).await?;
    let mut browser = Browser::new(&base)?;
    let pkce = Pkce::new();
    let scope = scope_with_device("REDIRDEVICE1");
    // An unregistered redirect URI or an unknown client: an error page, no redirect at all.
    for url in [
        authorize_url(&client_id, "https://evil.example.com/cb", &scope, &pkce, &[]),
        authorize_url(&client_id, "http://127.0.0.1/other", &scope, &pkce, &[]),
        authorize_url("not-a-client", "http://127.0.0.1/callback", &scope, &pkce, &[]),
    ] {
        let reply = browser.get(&url).await?;
        ensure!(reply.status == 400 && reply.location().is_none(), "{url}: {} {:?}", reply.status, reply.location());
        ensure!(reply.headers.get("content-security-policy").is_some(), "pages carry a CSP");
    }
    // Any port on the loopback interface; the code bound to that exact URI at the token endpoint.
    let redirect = "http://127.0.0.1:50505/callback";
    let back = consent(&mut browser, &authorize_url(&client_id, redirect, &scope, &pkce, &[]), "alice").await?;
    let code = query_param(&back, "code").context("code")?;
    let other_port = Flow { client_id: client_id.clone(), pkce, redirect: "http://127.0.0.1:50506/callback".into() };
    let (status, body) = exchange(&server, &other_port, &code).await?;
    ensure!(status == 400 && body["error"] == "invalid_grant", "{status} {body}");
    // Registration refuses what MSC2966 refuses.
    for bad in [
        serde_json::json!({ "client_uri": "https://example.org/", "redirect_uris": ["https://evil.com/cb"] }),
        serde_json::json!({ "client_uri": "http://example.org/", "redirect_uris": ["https://example.org/cb"] }),
        serde_json::json!({ "client_uri": "https://example.org/", "application_type": "native", "redirect_uris": ["org.example://cb"] }),
    ] {
        ensure!(register_client(&base, &bad).await.is_err(), "{bad} must be refused");
    }
    Ok(())
}

#[tokio::test]
async fn a_replayed_code_is_refused_and_ends_the_session_it_opened() -> Result<()> {
    let server = TestServer::start().await?;
    server.register("alice").await?;
    let mut browser = Browser::new(&server.base_url())?;
    let (flow, code) = code_flow(&server, &mut browser, "alice", &scope_with_device("REPLAYDEV01")).await?;
    let (status, tokens) = exchange(&server, &flow, &code).await?;
    ensure!(status == 200, "{status} {tokens}");
    ensure!(whoami(&server, &tokens["access_token"]).await?.0 == 200);
    let (status, body) = exchange(&server, &flow, &code).await?;
    ensure!(status == 400 && body["error"] == "invalid_grant", "{status} {body}");
    let (status, body) = whoami(&server, &tokens["access_token"]).await?;
    ensure!(status == 401 && body["errcode"] == "M_UNKNOWN_TOKEN", "the first session ended: {status} {body}");
    Ok(())
}

async fn refresh(server: &TestServer, client_id: &str, token: &Value, scope: Option<&str>) -> Result<(u16, Value)> {
    let token = token.as_str().unwrap_or_default();
    let mut pairs = vec![("grant_type", "refresh_token"), ("refresh_token", token), ("client_id", client_id)];
    if let Some(scope) = scope {
        pairs.push(("scope", scope));
    }
    token_request(&server.base_url(), &pairs).await
}

#[tokio::test]
async fn refresh_rotates_tolerates_a_retry_and_ends_the_session_on_a_replay() -> Result<()> {
    let server = TestServer::start().await?;
    server.register("alice").await?;
    let mut browser = Browser::new(&server.base_url())?;
    let (flow, code) = code_flow(&server, &mut browser, "alice", &scope_with_device("REFRESHDEV1")).await?;
    let (_, first) = exchange(&server, &flow, &code).await?;
    let (status, second) = refresh(&server, &flow.client_id, &first["refresh_token"], None).await?;
    ensure!(status == 200 && second["refresh_token"] != first["refresh_token"], "{status} {second}");
    ensure!(whoami(&server, &first["access_token"]).await?.0 == 401, "the old access token is replaced");
    // The answer was lost and the client retries: the same pair, nobody logged out.
    let (status, again) = refresh(&server, &flow.client_id, &first["refresh_token"], None).await?;
    ensure!(status == 200 && again["access_token"] == second["access_token"], "{status} {again}");
    ensure!(again["refresh_token"] == second["refresh_token"], "{again}");
    // Two refreshes at once of the same token get the same pair.
    let (a, b) = tokio::join!(
        refresh(&server, &flow.client_id, &second["refresh_token"], None),
        refresh(&server, &flow.client_id, &second["refresh_token"], None)
    );
    let (a, b) = (a?, b?);
    ensure!(a.0 == 200 && b.0 == 200 && a.1["access_token"] == b.1["access_token"], "{a:?} {b:?}");
    let third = a.1;
    ensure!(whoami(&server, &third["access_token"]).await?.0 == 200);
    // A narrower scope is fine, a wider one is not.
    let (status, body) =
        refresh(&server, &flow.client_id, &third["refresh_token"], Some(&format!("openid {API}"))).await?;
    ensure!(status == 400 && body["error"] == "invalid_scope", "{status} {body}");
    // Another client cannot use it.
    let other = register_client(&server.base_url(), &native_client(&[GRANT_CODE, GRANT_REFRESH])).await?;
    let (status, body) = refresh(&server, &other, &third["refresh_token"], None).await?;
    ensure!(status == 400 && body["error"] == "invalid_grant", "{status} {body}");
    // The fourth is used; the second, whose successor was used, comes back: stolen — session over.
    let (status, fourth) = refresh(&server, &flow.client_id, &third["refresh_token"], None).await?;
    ensure!(status == 200, "{status} {fourth}");
    let (status, body) = refresh(&server, &flow.client_id, &second["refresh_token"], None).await?;
    ensure!(status == 400 && body["error"] == "invalid_grant", "{status} {body}");
    let (status, _) = whoami(&server, &fourth["access_token"]).await?;
    ensure!(status == 401, "the session ended on the replay");
    let (status, body) = refresh(&server, &flow.client_id, &fourth["refresh_token"], None).await?;
    ensure!(status == 400 && body["error"] == "invalid_grant", "{status} {body}");
    Ok(())
}

#[tokio::test]
async fn scopes_cannot_escalate() -> Result<()> {
    let server = TestServer::start().await?;
    server.register("alice").await?;
    let base = server.base_url();
    let client_id = register_client(&base, &native_client(&[GRANT_CODE])).await?;
    let mut browser = Browser::new(&base)?;
    let pkce = Pkce::new();
    let redirect = "http://127.0.0.1/callback";
    for scope in [
        format!("{API} urn:matrix:client:device:AAAAAAAAAA urn:matrix:client:device:BBBBBBBBBB"),
        format!("{API} urn:synapse:admin:*"),
        format!("{API} urn:matrix:org.matrix.msc2967.client:device:AAAAAAAAAA"),
        "urn:matrix:client:device:AAAAAAAAAA".to_owned(),
        "openid".to_owned(),
    ] {
        let reply = browser.get(&authorize_url(&client_id, redirect, &scope, &pkce, &[])).await?;
        let to = reply.location().context("an error redirect")?;
        ensure!(query_param(&to, "error").as_deref() == Some("invalid_scope"), "{scope}: {to}");
        ensure!(query_param(&to, "state").as_deref() == Some("the-state"), "{to}");
    }
    Ok(())
}

#[tokio::test]
async fn a_device_id_in_use_is_taken_over_and_its_old_tokens_die() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let old = server.login("alice").await?;
    let device = old.device_id.clone();
    let mut browser = Browser::new(&server.base_url())?;
    let scope = format!("{API} urn:matrix:client:device:{device}");
    let (flow, code) = code_flow(&server, &mut browser, "alice", &scope).await?;
    let (status, tokens) = exchange(&server, &flow, &code).await?;
    ensure!(status == 200, "{status} {tokens}");
    let (status, _) = old.get("/_matrix/client/v3/account/whoami").await?;
    ensure!(status == 401, "the password session's token is replaced");
    let (_, me) = whoami(&server, &tokens["access_token"]).await?;
    ensure!(me["device_id"] == device.as_str(), "{me}");
    ensure!(alice.get("/_matrix/client/v3/account/whoami").await?.0 == 200, "other devices stay");
    Ok(())
}

#[tokio::test]
async fn revocation_ends_the_whole_session() -> Result<()> {
    let server = TestServer::start().await?;
    server.register("alice").await?;
    let mut browser = Browser::new(&server.base_url())?;
    let (flow, code) = code_flow(&server, &mut browser, "alice", &scope_with_device("REVOKEDEV01")).await?;
    let (_, tokens) = exchange(&server, &flow, &code).await?;
    let http = reqwest::Client::new();
    let revoke = |token: String| {
        let http = http.clone();
        let url = format!("{}/oauth2/revoke", server.base_url());
        async move {
            http.post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(myelin_e2e::oauth::form_body(&[("token", &token)]))
                .send()
                .await
        }
    };
    ensure!(revoke("unknown-token".into()).await?.status() == 200, "unknown tokens: 200");
    ensure!(revoke(tokens["access_token"].as_str().unwrap_or_default().into()).await?.status() == 200);
    ensure!(whoami(&server, &tokens["access_token"]).await?.0 == 401);
    let (status, body) = refresh(&server, &flow.client_id, &tokens["refresh_token"], None).await?;
    ensure!(status == 400 && body["error"] == "invalid_grant", "the refresh token went with it: {body}");
    let alice = server.login("alice").await?;
    let (_, devices) = alice.get("/_matrix/client/v3/devices").await?;
    ensure!(!devices.to_string().contains("REVOKEDEV01"), "the device went: {devices}");
    Ok(())
}

#[tokio::test]
async fn the_device_grant_is_approved_on_another_browser_once() -> Result<()> {
    let server = TestServer::start_with(
        "[rate_limits]\nmessages = { per_second = 0.0, burst = 0 }\nlogin = { per_second = 0.1, burst = 6 }\nregistration = { per_second = 0.0, burst = 0 }\n",
    )
    .await?;
    server.register("alice").await?;
    let base = server.base_url();
    let client_id = register_client(&base, &native_client(&[GRANT_DEVICE, GRANT_REFRESH])).await?;
    // The device id as QR login makes it: unpadded base64 with + and /.
    let device = "Ab+cD/efGhIjKlMnOpQrStUvWxYz0123456789+/AbC";
    let http = reqwest::Client::new();
    let authorization: Value = http
        .post(format!("{base}/oauth2/device_authorization"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(myelin_e2e::oauth::form_body(&[("client_id", &client_id), ("scope", &scope_with_device(device))]))
        .send()
        .await?
        .json()
        .await?;
    let device_code = authorization["device_code"].as_str().context("device_code")?.to_owned();
    let pairs =
        [("grant_type", GRANT_DEVICE), ("device_code", device_code.as_str()), ("client_id", client_id.as_str())];
    let poll = || token_request(&base, &pairs);
    let (status, body) = poll().await?;
    ensure!(status == 400 && body["error"] == "authorization_pending", "{status} {body}");
    let (_, body) = poll().await?;
    ensure!(body["error"] == "slow_down", "polling again at once: {body}");

    // The person opens the verification URI on a signed-in browser and allows.
    let mut browser = Browser::new(&base)?;
    let complete = authorization["verification_uri_complete"].as_str().context("complete uri")?;
    let first = browser.get(complete).await?;
    let login = first.location().context("sign in first")?;
    let back = browser.sign_in(&login, "alice", "alice-password").await?;
    let page = browser.get(&back).await?;
    ensure!(page.status == 200 && page.body.contains("Another device is being signed in"), "{}", page.body);
    let csrf = browser.csrf();
    let code = page.hidden("code").context("the code")?;
    // Without the CSRF token: refused.
    let forged = browser.post_form("/auth/device", &[("code", &code), ("action", "allow")]).await?;
    ensure!(forged.status == 403, "{}", forged.status);
    let done = browser.post_form("/auth/device", &[("csrf", &csrf), ("code", &code), ("action", "allow")]).await?;
    ensure!(done.status == 200 && done.body.contains("Device allowed"), "{}", done.body);

    tokio::time::sleep(std::time::Duration::from_millis(5100)).await;
    let (status, tokens) = poll().await?;
    ensure!(status == 200, "{status} {tokens}");
    let (_, me) = whoami(&server, &tokens["access_token"]).await?;
    ensure!(me["device_id"] == device && me["user_id"] == server.user_id("alice"), "{me}");
    let (status, body) = poll().await?;
    ensure!(status == 400 && body["error"] == "invalid_grant", "a device code is used once: {body}");

    // A client that did not register the grant; and guessing user codes is rate limited.
    let code_only = register_client(&base, &native_client(&[GRANT_CODE])).await?;
    let refused: Value = http
        .post(format!("{base}/oauth2/device_authorization"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(myelin_e2e::oauth::form_body(&[("client_id", &code_only), ("scope", API)]))
        .send()
        .await?
        .json()
        .await?;
    ensure!(refused["error"] == "unauthorized_client", "{refused}");
    let mut limited = false;
    for guess in 0..20 {
        let reply = browser.get(&format!("/auth/device?code=BCDF{guess:04}")).await?;
        if reply.status == 429 {
            limited = true;
            break;
        }
        ensure!(reply.status == 404, "a wrong code: {}", reply.status);
    }
    ensure!(limited, "user code guesses are rate limited");
    Ok(())
}

#[tokio::test]
async fn pages_refuse_forged_forms_open_redirects_and_other_origins() -> Result<()> {
    let server = TestServer::start().await?;
    server.register("alice").await?;
    let base = server.base_url();
    let mut browser = Browser::new(&base)?;
    let login = browser.get("/auth/login?next=https://evil.example.com/").await?;
    ensure!(login.status == 200, "{}", login.status);
    ensure!(login.hidden("next").as_deref() == Some("/account/"), "another site is never the next page");
    let csp = login.headers.get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default();
    ensure!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    let cookie = login.headers.get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default();
    ensure!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    // No CSRF token, or another one: refused.
    for csrf in ["", "0123456789abcdef0123456789abcdef"] {
        let reply = browser
            .post_form("/auth/login", &[("csrf", csrf), ("username", "alice"), ("password", "alice-password")])
            .await?;
        ensure!(reply.status == 403, "{}", reply.status);
    }
    let next = browser.sign_in("/auth/login?next=//evil.example.com", "alice", "alice-password").await?;
    ensure!(next == "/account/", "{next}");
    let tab = browser.get("/auth/login?next=/%09/evil.example.com").await?;
    ensure!(tab.location().as_deref() == Some("/account/"), "a tab does not make another site: {:?}", tab.location());
    // A wrong password is a page with the error, not a session.
    let mut stranger = Browser::new(&base)?;
    stranger.get("/auth/login").await?;
    let csrf = stranger.csrf();
    let wrong =
        stranger.post_form("/auth/login", &[("csrf", &csrf), ("username", "alice"), ("password", "nope")]).await?;
    ensure!(wrong.status == 403 && wrong.body.contains("Invalid username or password"), "{}", wrong.status);
    ensure!(!stranger.cookies.contains_key("myelin_session"));
    // Pages are not readable cross-origin; the token endpoint is (clients in browsers call it).
    let http = reqwest::Client::new();
    let page = http.get(format!("{base}/auth/login")).header("origin", "https://evil.example.com").send().await?;
    ensure!(page.headers().get("access-control-allow-origin").is_none(), "no CORS on pages");
    let api = http
        .get(format!("{base}/_matrix/client/v1/auth_metadata"))
        .header("origin", "https://app.example.com")
        .send()
        .await?;
    ensure!(api.headers().get("access-control-allow-origin").is_some(), "CORS on the API");
    // The account page: a session signed out from it is gone.
    let other = server.login("alice").await?;
    let account = browser.get("/account/").await?;
    ensure!(account.body.contains(&other.device_id), "{}", account.body);
    let csrf = browser.csrf();
    let ended = browser.post_form("/account/sessions/end", &[("csrf", &csrf), ("device_id", &other.device_id)]).await?;
    ensure!(ended.status == 303, "{}", ended.status);
    ensure!(other.get("/_matrix/client/v3/account/whoami").await?.0 == 401, "signed out from the page");
    Ok(())
}

#[tokio::test]
async fn registration_on_the_page_follows_the_registration_settings() -> Result<()> {
    let server =
        TestServer::start_with(&format!("[registration]\nenabled = false\ntokens = [\"let-me-in\"]\n{NO_RATE_LIMITS}"))
            .await?;
    let mut browser = Browser::new(&server.base_url())?;
    let page = browser.get("/auth/register").await?;
    ensure!(page.status == 200 && page.body.contains("Registration token"), "{}", page.body);
    let csrf = browser.csrf();
    let without = browser
        .post_form("/auth/register", &[("csrf", &csrf), ("username", "dave"), ("password", "dave-password")])
        .await?;
    ensure!(without.status == 403, "a token is needed: {}", without.status);
    let wrong = browser
        .post_form(
            "/auth/register",
            &[("csrf", &csrf), ("username", "dave"), ("password", "dave-password"), ("token", "nope")],
        )
        .await?;
    ensure!(wrong.status == 403, "{}", wrong.status);
    let ok = browser
        .post_form(
            "/auth/register",
            &[("csrf", &csrf), ("username", "dave"), ("password", "dave-password"), ("token", "let-me-in")],
        )
        .await?;
    ensure!(ok.status == 303 && browser.cookies.contains_key("myelin_session"), "{} {}", ok.status, ok.body);
    // The account works with /login too.
    server.login("dave").await?;
    Ok(())
}

#[tokio::test]
async fn the_admin_cli_lists_and_ends_sessions_and_locks_accounts() -> Result<()> {
    let mut server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let phone = server.login("alice").await?;
    let mut browser = Browser::new(&server.base_url())?;
    let (flow, code) = code_flow(&server, &mut browser, "alice", &scope_with_device("CLIDEVICE01")).await?;
    let (_, tokens) = exchange(&server, &flow, &code).await?;
    server.stop().await?;
    let listed = String::from_utf8_lossy(&server.admin(&["user", "sessions", "alice"])?.stdout).into_owned();
    ensure!(
        listed.contains("CLIDEVICE01\toauth:") && listed.contains(&format!("{}\tpassword", phone.device_id)),
        "{listed}"
    );
    server.admin(&["user", "end-session", "alice", &phone.device_id])?;
    server.admin(&["user", "lock", "alice"])?;
    server.start_again().await?;
    ensure!(phone.get("/_matrix/client/v3/account/whoami").await?.0 == 401, "the ended session");
    let (status, body) = alice.get("/_matrix/client/v3/account/whoami").await?;
    ensure!(status == 401 && body["errcode"] == "M_USER_LOCKED", "locked: {status} {body}");
    let (status, body) = whoami(&server, &tokens["access_token"]).await?;
    ensure!(status == 401 && body["errcode"] == "M_USER_LOCKED", "locked: {status} {body}");
    let login = server.anonymous().login("alice", "alice-password").await;
    ensure!(login.is_err(), "a locked account cannot log in");
    let mut other = Browser::new(&server.base_url())?;
    ensure!(other.sign_in("/auth/login", "alice", "alice-password").await.is_err(), "nor on the page");
    server.stop().await?;
    server.admin(&["user", "unlock", "alice"])?;
    server.start_again().await?;
    ensure!(alice.get("/_matrix/client/v3/account/whoami").await?.0 == 200, "unlocked, the token works again");
    Ok(())
}

#[tokio::test]
async fn rendezvous_sessions_follow_msc4108_and_msc4388() -> Result<()> {
    let server = TestServer::start().await?;
    let base = server.base_url();
    let http = reqwest::Client::new();
    let path = "/_matrix/client/unstable/org.matrix.msc4108/rendezvous";
    let created = http.post(format!("{base}{path}")).header("content-type", "text/plain").body("hello").send().await?;
    ensure!(created.status() == 201, "{}", created.status());
    for name in ["etag", "expires", "last-modified"] {
        ensure!(created.headers().get(name).is_some(), "{name} on creation");
    }
    let etag = created.headers()["etag"].to_str()?.to_owned();
    let url = created.json::<Value>().await?["url"].as_str().context("url")?.to_owned();
    ensure!(url.starts_with(&format!("{base}{path}/")), "{url}");

    let read = http.get(&url).send().await?;
    ensure!(read.status() == 200 && read.headers()["etag"] == etag.as_str(), "{}", read.status());
    ensure!(read.text().await? == "hello");
    let unchanged = http.get(&url).header("if-none-match", &etag).send().await?;
    ensure!(unchanged.status() == 304, "{}", unchanged.status());

    let written =
        http.put(&url).header("if-match", &etag).header("content-type", "text/plain").body("world").send().await?;
    ensure!(written.status() == 202, "{}", written.status());
    let new_etag = written.headers()["etag"].to_str()?.to_owned();
    ensure!(new_etag != etag, "a write changes the etag");
    let stale = http.put(&url).header("if-match", &etag).body("late").send().await?;
    ensure!(stale.status() == 412, "{}", stale.status());
    let body: Value = stale.json().await?;
    ensure!(body["org.matrix.msc4108.errcode"] == "M_CONCURRENT_WRITE", "{body}");
    let changed = http.get(&url).header("if-none-match", &etag).send().await?;
    ensure!(changed.status() == 200 && changed.text().await? == "world");
    let too_big = http.put(&url).header("if-match", &new_etag).body(vec![b'x'; 4097]).send().await?;
    ensure!(too_big.status() == 413, "{}", too_big.status());
    let big = http.post(format!("{base}{path}")).body(vec![b'x'; 4097]).send().await?;
    ensure!(big.status() == 413, "{}", big.status());
    // Anyone may write a session: it never comes back as a page of this origin.
    let html = http
        .post(format!("{base}{path}"))
        .header("content-type", "text/html")
        .body("<script>x</script>")
        .send()
        .await?;
    let html_url = html.json::<Value>().await?["url"].as_str().context("url")?.to_owned();
    let served = http.get(&html_url).send().await?;
    ensure!(served.headers()["content-type"] == "application/octet-stream", "{:?}", served.headers());
    ensure!(served.headers()["x-content-type-options"] == "nosniff", "{:?}", served.headers());
    ensure!(http.delete(&url).send().await?.status() == 204);
    ensure!(http.get(&url).send().await?.status() == 404, "gone after delete");

    // MSC4388: JSON, sequence tokens, compare-and-swap.
    let anon = server.anonymous();
    for prefix in ["/_matrix/client/v1/rendezvous", "/_matrix/client/unstable/io.element.msc4388/rendezvous"] {
        let (_, info) = anon.get(prefix).await?;
        ensure!(info["create_available"] == true, "{info}");
        let (status, session) = anon.post(prefix, &serde_json::json!({ "data": "one" })).await?;
        ensure!(status == 200 && session["expires_in_ms"].as_u64().is_some_and(|e| e > 0), "{status} {session}");
        let id = session["id"].as_str().context("id")?;
        let first = session["sequence_token"].clone();
        let at = format!("{prefix}/{id}");
        let (status, put) = anon.put(&at, &serde_json::json!({ "sequence_token": first, "data": "two" })).await?;
        ensure!(status == 200, "{status} {put}");
        let (status, retry) = anon.put(&at, &serde_json::json!({ "sequence_token": first, "data": "two" })).await?;
        ensure!(
            status == 200 && retry["sequence_token"] == put["sequence_token"],
            "an identical retry: {status} {retry}"
        );
        let (status, body) = anon.put(&at, &serde_json::json!({ "sequence_token": first, "data": "three" })).await?;
        ensure!(status == 409 && body["errcode"] == "M_CONCURRENT_WRITE", "{status} {body}");
        let (_, read) = anon.get(&at).await?;
        ensure!(read["data"] == "two" && read["sequence_token"] == put["sequence_token"], "{read}");
        ensure!(anon.delete(&at, &serde_json::json!({})).await?.0 == 200);
        ensure!(anon.get(&at).await?.0 == 404);
    }
    Ok(())
}

#[tokio::test]
async fn legacy_clients_sign_in_through_the_pages_with_m_login_sso() -> Result<()> {
    let server = TestServer::start().await?;
    server.register("alice").await?;
    let anon = server.anonymous();
    let (_, flows) = anon.get("/_matrix/client/v3/login").await?;
    let sso = flows["flows"].as_array().and_then(|f| f.iter().find(|x| x["type"] == "m.login.sso")).cloned();
    ensure!(sso.as_ref().is_some_and(|s| s["oauth_aware_preferred"] == true), "{flows}");
    ensure!(flows.to_string().contains("m.login.password"), "password login stays: {flows}");

    let mut browser = Browser::new(&server.base_url())?;
    let redirect = "http://127.0.0.1:4567/after-login?x=1";
    let start = browser
        .get(&format!(
            "/_matrix/client/v3/login/sso/redirect?{}",
            myelin_e2e::oauth::form_body(&[("redirectUrl", redirect)])
        ))
        .await?;
    let confirm = start.location().context("to the pages")?;
    let to_login = browser.get(&confirm).await?.location().context("sign in first")?;
    let back = browser.sign_in(&to_login, "alice", "alice-password").await?;
    let page = browser.get(&back).await?;
    ensure!(page.status == 200 && page.body.contains("Continue to 127.0.0.1"), "{}", page.body);
    let csrf = browser.csrf();
    let done = browser.post_form("/auth/sso", &[("csrf", &csrf), ("redirectUrl", redirect)]).await?;
    let to = done.location().context("back to the client")?;
    ensure!(to.starts_with("http://127.0.0.1:4567/after-login?x=1&loginToken="), "{to}");
    let token = query_param(&to, "loginToken").context("loginToken")?;
    let login = serde_json::json!({ "type": "m.login.token", "token": token });
    let (status, session) = anon.post("/_matrix/client/v3/login", &login).await?;
    ensure!(status == 200 && session["user_id"] == server.user_id("alice"), "{status} {session}");
    let (status, body) = anon.post("/_matrix/client/v3/login", &login).await?;
    ensure!(status == 403, "a login token is used once: {status} {body}");
    Ok(())
}

#[tokio::test]
async fn a_cross_signing_reset_is_approved_on_the_account_page() -> Result<()> {
    use myelin_e2e::device_keys::cross_signing_pair;
    let server = TestServer::start().await?;
    let password_session = server.register("alice").await?;
    let mut browser = Browser::new(&server.base_url())?;
    let (flow, code) = code_flow(&server, &mut browser, "alice", &scope_with_device("XSIGNDEVICE")).await?;
    let (_, tokens) = exchange(&server, &flow, &code).await?;
    let app = client_with(&server, &tokens["access_token"]);
    let uid = server.user_id("alice");
    let master = |key: &str| serde_json::json!({ "master_key": { "user_id": uid, "usage": ["master"], "keys": { format!("ed25519:{key}"): key } } });
    let (_, first) = cross_signing_pair()?;
    let (status, body) = app.post("/_matrix/client/v3/keys/device_signing/upload", &master(&first)).await?;
    ensure!(status == 200, "the first keys need nothing: {status} {body}");
    // Replacing them from an OAuth session: approve on the account page (MSC4312).
    let (_, second) = cross_signing_pair()?;
    let (status, challenge) = app.post("/_matrix/client/v3/keys/device_signing/upload", &master(&second)).await?;
    ensure!(status == 401 && challenge["flows"][0]["stages"][0] == "m.oauth", "{status} {challenge}");
    let url = challenge["params"]["m.oauth"]["url"].as_str().context("the approval page")?;
    ensure!(url.contains("/account/?action=org.matrix.cross_signing_reset"), "{url}");
    // A password session is asked for its password, as before.
    let (status, other) =
        password_session.post("/_matrix/client/v3/keys/device_signing/upload", &master(&second)).await?;
    ensure!(status == 401 && other["flows"][0]["stages"][0] == "m.login.password", "{status} {other}");

    let page = browser.get(url).await?;
    ensure!(page.status == 200 && page.body.contains("Reset your digital identity?"), "{}", page.body);
    let csrf = browser.csrf();
    let forged = browser.post_form("/account/cross_signing_reset", &[("csrf", "x")]).await?;
    ensure!(forged.status == 403, "{}", forged.status);
    let approved = browser.post_form("/account/cross_signing_reset", &[("csrf", &csrf)]).await?;
    ensure!(approved.status == 303, "{}", approved.status);
    let (status, body) = app.post("/_matrix/client/v3/keys/device_signing/upload", &master(&second)).await?;
    ensure!(status == 200, "replaced after the approval: {status} {body}");
    let (_, keys) = app
        .post("/_matrix/client/v3/keys/query", &serde_json::json!({ "device_keys": { (uid.as_str()): [] } }))
        .await?;
    ensure!(keys["master_keys"][&uid]["keys"].to_string().contains(&second), "{keys}");
    Ok(())
}

/// RFC 6238 TOTP, written again here so the test does not trust the server's own.
fn totp(secret_base32: &str, step: u64) -> String {
    use hmac::Mac as _;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits = String::new();
    for c in secret_base32.bytes() {
        let value = ALPHABET.iter().position(|a| *a == c).unwrap_or(0);
        bits.push_str(&format!("{value:05b}"));
    }
    let key: Vec<u8> = bits
        .as_bytes()
        .chunks(8)
        .filter(|c| c.len() == 8)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap_or("0"), 2).unwrap_or(0))
        .collect();
    let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(&key) else { return String::new() };
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let value = u32::from_be_bytes([digest[offset] & 0x7f, digest[offset + 1], digest[offset + 2], digest[offset + 3]]);
    format!("{:06}", value % 1_000_000)
}

fn now_step() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() / 30).unwrap_or(0)
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let to = text[from..].find(end)?;
    Some(&text[from..from + to])
}

#[tokio::test]
async fn two_step_verification_with_an_authenticator_app_and_recovery_codes() -> Result<()> {
    let server = TestServer::start().await?;
    server.register("alice").await?;
    let base = server.base_url();
    let mut browser = Browser::new(&base)?;
    browser.sign_in("/auth/login", "alice", "alice-password").await?;
    let csrf = browser.csrf();
    let started = browser.post_form("/account/totp/start", &[("csrf", &csrf)]).await?;
    ensure!(started.status == 303, "{}", started.status);
    let account = browser.get("/account/").await?;
    let secret = between(&account.body, "id=\"totp-secret\">", "<").context("the key is shown")?.to_owned();
    ensure!(account.body.contains("otpauth://totp/"), "and the link for apps");
    let wrong = browser.post_form("/account/totp/confirm", &[("csrf", &csrf), ("code", "000000")]).await?;
    ensure!(wrong.status == 403, "a wrong code does not turn it on: {}", wrong.status);
    let step = now_step();
    let confirmed =
        browser.post_form("/account/totp/confirm", &[("csrf", &csrf), ("code", &totp(&secret, step))]).await?;
    ensure!(confirmed.status == 200, "{} {}", confirmed.status, confirmed.body);
    let codes: Vec<String> = confirmed
        .body
        .split("<li class=\"code\">")
        .skip(1)
        .filter_map(|part| part.split('<').next().map(str::to_owned))
        .collect();
    ensure!(codes.len() == 10, "ten recovery codes: {codes:?}");

    // Signing in again: the password, then the code. The same code twice is refused.
    let mut phone = Browser::new(&base)?;
    let after_password = phone.sign_in("/auth/login?next=/account/", "alice", "alice-password").await?;
    ensure!(after_password.starts_with("/auth/second-factor"), "{after_password}");
    let halfway = phone.get("/account/").await?;
    ensure!(halfway.status == 303, "not signed in before the second factor");
    phone.get(&after_password).await?;
    let csrf = phone.csrf();
    let replay = phone
        .post_form("/auth/second-factor", &[("csrf", &csrf), ("code", &totp(&secret, step)), ("next", "/account/")])
        .await?;
    ensure!(replay.status == 403, "a used code is refused: {}", replay.status);
    let next = phone
        .post_form("/auth/second-factor", &[("csrf", &csrf), ("code", &totp(&secret, step + 1)), ("next", "/account/")])
        .await?;
    ensure!(
        next.status == 303 && next.location().as_deref() == Some("/account/"),
        "{} {:?}",
        next.status,
        next.location()
    );
    ensure!(phone.get("/account/").await?.status == 200);

    // A recovery code, once.
    for (attempt, expected) in [(1, 303u16), (2, 403)] {
        let mut laptop = Browser::new(&base)?;
        let to = laptop.sign_in("/auth/login", "alice", "alice-password").await?;
        laptop.get(&to).await?;
        let csrf = laptop.csrf();
        let reply = laptop.post_form("/auth/second-factor", &[("csrf", &csrf), ("code", &codes[0])]).await?;
        ensure!(reply.status.as_u16() == expected, "recovery code use {attempt}: {}", reply.status);
    }

    // A password alone does not get around it; turned off, it does again.
    let login = server.anonymous().login("alice", "alice-password").await;
    ensure!(login.is_err(), "password login refused while two-step verification is on");
    let csrf = browser.csrf();
    let off = browser.post_form("/account/totp/remove", &[("csrf", &csrf), ("password", "alice-password")]).await?;
    ensure!(off.status == 303, "{}", off.status);
    server.anonymous().login("alice", "alice-password").await?;
    Ok(())
}
