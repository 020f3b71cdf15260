//! Signing in: a password login (`/login`), a full OAuth 2.0 login as Element X does it
//! (register the client, authorize, the person signs in and consents on the pages, the code is
//! exchanged, `whoami`), and a token refresh. A server without an OAuth server (Synapse without
//! MAS) has no OAuth figure; its refresh is the legacy `/refresh` of a refreshable login.

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use base64::Engine as _;
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::scenarios::Params;

pub struct LoginResult {
    pub password_ms: Vec<f64>,
    /// Empty when the server has no OAuth server.
    pub oauth_ms: Vec<f64>,
    pub refresh_ms: Vec<f64>,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// A browser for the pages: cookies kept, redirects not followed.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
}

impl Browser {
    fn new(base: &str) -> Result<Self> {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().build()?;
        Ok(Self { http, base: base.to_owned(), cookies: Vec::new() })
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") { path.to_owned() } else { format!("{}{path}", self.base) }
    }

    fn keep(&mut self, resp: &reqwest::Response) {
        for value in resp.headers().get_all(header::SET_COOKIE) {
            let Some((pair, _)) = value.to_str().ok().and_then(|v| v.split_once(';').or(Some((v, "")))) else {
                continue;
            };
            if let Some((name, value)) = pair.split_once('=') {
                self.cookies.retain(|(n, _)| n != name);
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn cookie(&self, name: &str) -> String {
        self.cookies.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_default()
    }

    async fn get(&mut self, path: &str) -> Result<(StatusCode, Option<String>)> {
        let resp = self.http.get(self.url(path)).header(header::COOKIE, self.cookie_header()).send().await?;
        self.keep(&resp);
        let status = resp.status();
        let location = resp.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
        resp.bytes().await?;
        Ok((status, location))
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Result<(StatusCode, Option<String>)> {
        let body = reqwest::Url::parse_with_params("http://f.invalid/", form)?.query().unwrap_or_default().to_owned();
        let resp = self
            .http
            .post(self.url(path))
            .header(header::COOKIE, self.cookie_header())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await?;
        self.keep(&resp);
        let status = resp.status();
        let location = resp.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
        resp.bytes().await?;
        Ok((status, location))
    }
}

async fn json_post(http: &reqwest::Client, url: &str, body: &Value) -> Result<(StatusCode, Value)> {
    let resp = http.post(url).json(body).send().await?;
    let status = resp.status();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

async fn form_post(http: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> Result<(StatusCode, Value)> {
    let body = reqwest::Url::parse_with_params("http://f.invalid/", form)?.query().unwrap_or_default().to_owned();
    let resp =
        http.post(url).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(body).send().await?;
    let status = resp.status();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

/// One full OAuth login; the access token.
async fn oauth_login(
    base: &str,
    metadata: &Value,
    user: &str,
    password: &str,
    n: usize,
) -> Result<(String, String, String)> {
    let http = reqwest::Client::builder().no_proxy().build()?;
    let registration = metadata["registration_endpoint"].as_str().context("registration_endpoint")?;
    let client = json!({
        "client_name": "myelin-bench", "client_uri": "https://bench.example.org/", "application_type": "native",
        "redirect_uris": ["http://127.0.0.1/callback"], "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "none",
    });
    let (status, registered) = json_post(&http, registration, &client).await?;
    ensure!(status == StatusCode::CREATED, "client registration: {status} {registered}");
    let client_id = registered["client_id"].as_str().context("client_id")?.to_owned();
    let verifier: String = (0..64).map(|i| char::from(b'a' + ((i * 7 + n) % 26) as u8)).collect();
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let redirect = "http://127.0.0.1:9/callback";
    let device = format!("BENCHDEV{n:06}");
    let scope =
        format!("urn:matrix:org.matrix.msc2967.client:api:* urn:matrix:org.matrix.msc2967.client:device:{device}");
    let authorize = reqwest::Url::parse_with_params(
        metadata["authorization_endpoint"].as_str().context("authorization_endpoint")?,
        &[
            ("response_type", "code"),
            ("client_id", client_id.as_str()),
            ("redirect_uri", redirect),
            ("scope", scope.as_str()),
            ("state", "bench"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ],
    )?;
    let mut browser = Browser::new(base)?;
    let (_, consent) = browser.get(authorize.as_str()).await?;
    let consent = consent.context("authorize redirects")?;
    let (_, login) = browser.get(&consent).await?;
    let login = login.context("consent redirects to the login page")?;
    browser.get(&login).await?;
    let csrf = browser.cookie("myelin_csrf");
    let (status, back) = browser
        .post("/auth/login", &[("csrf", &csrf), ("username", user), ("password", password), ("next", &consent)])
        .await?;
    ensure!(status == StatusCode::SEE_OTHER, "login page: {status}");
    let back = back.context("back to consent")?;
    browser.get(&back).await?;
    let (status, to_client) = browser.post(&back, &[("csrf", &csrf), ("action", "allow")]).await?;
    ensure!(status == StatusCode::SEE_OTHER, "consent: {status}");
    let to_client = reqwest::Url::parse(&to_client.context("back to the client")?)?;
    let code = to_client.query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.into_owned()).context("code")?;
    let token_endpoint = metadata["token_endpoint"].as_str().context("token_endpoint")?;
    let (status, tokens) = form_post(
        &http,
        token_endpoint,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("client_id", &client_id),
            ("code_verifier", &verifier),
        ],
    )
    .await?;
    ensure!(status == StatusCode::OK, "token: {status} {tokens}");
    let access = tokens["access_token"].as_str().context("access_token")?.to_owned();
    let resp = http.get(format!("{base}/_matrix/client/v3/account/whoami")).bearer_auth(&access).send().await?;
    ensure!(resp.status() == StatusCode::OK, "whoami: {}", resp.status());
    let refresh = tokens["refresh_token"].as_str().context("refresh_token")?.to_owned();
    Ok((client_id, refresh, token_endpoint.to_owned()))
}

pub async fn login_latency(params: &Params, server: &crate::client::Server, runs: usize) -> Result<LoginResult> {
    let base = server.base().to_owned();
    let http = reqwest::Client::builder().no_proxy().build()?;
    let user = format!("{}login", params.prefix);
    let password = format!("{user}-password-1");
    let register =
        json!({ "username": user, "password": password, "auth": { "type": "m.login.dummy" }, "inhibit_login": true });
    let (status, body) = json_post(&http, &format!("{base}/_matrix/client/v3/register"), &register).await?;
    if status == StatusCode::UNAUTHORIZED {
        let mut retry = register.clone();
        retry["auth"]["session"] = body["session"].clone();
        let (status, body) = json_post(&http, &format!("{base}/_matrix/client/v3/register"), &retry).await?;
        ensure!(status == StatusCode::OK, "register: {status} {body}");
    } else {
        ensure!(status == StatusCode::OK, "register: {status} {body}");
    }

    let login_body = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": user },
                             "password": password, "refresh_token": true });
    let mut password_ms = Vec::with_capacity(runs);
    let mut legacy_refresh = None;
    for _ in 0..=runs {
        let started = Instant::now();
        let (status, session) = json_post(&http, &format!("{base}/_matrix/client/v3/login"), &login_body).await?;
        ensure!(status == StatusCode::OK, "login: {status} {session}");
        password_ms.push(ms(started));
        legacy_refresh = session["refresh_token"].as_str().map(str::to_owned);
    }
    password_ms.remove(0); // the first warms caches up

    let metadata = http.get(format!("{base}/_matrix/client/v1/auth_metadata")).send().await?;
    let mut oauth_ms = Vec::new();
    let mut refresh_ms = Vec::with_capacity(runs);
    if metadata.status() == StatusCode::OK {
        let metadata: Value = metadata.json().await?;
        let mut last = None;
        for n in 0..=runs {
            let started = Instant::now();
            last = Some(oauth_login(&base, &metadata, &user, &password, n).await?);
            oauth_ms.push(ms(started));
        }
        oauth_ms.remove(0);
        let (client_id, mut refresh, token_endpoint) = last.context("a login")?;
        for _ in 0..runs {
            let started = Instant::now();
            let (status, tokens) = form_post(
                &http,
                &token_endpoint,
                &[("grant_type", "refresh_token"), ("refresh_token", &refresh), ("client_id", &client_id)],
            )
            .await?;
            ensure!(status == StatusCode::OK, "refresh: {status} {tokens}");
            refresh_ms.push(ms(started));
            refresh = tokens["refresh_token"].as_str().context("refresh_token")?.to_owned();
        }
    } else {
        // A server that gives no refresh token has no refresh figure.
        let Some(mut refresh) = legacy_refresh else { return Ok(LoginResult { password_ms, oauth_ms, refresh_ms }) };
        for _ in 0..runs {
            let started = Instant::now();
            let (status, tokens) =
                json_post(&http, &format!("{base}/_matrix/client/v3/refresh"), &json!({ "refresh_token": refresh }))
                    .await?;
            ensure!(status == StatusCode::OK, "refresh: {status} {tokens}");
            refresh_ms.push(ms(started));
            refresh = tokens["refresh_token"].as_str().context("refresh_token")?.to_owned();
        }
    }
    Ok(LoginResult { password_ms, oauth_ms, refresh_ms })
}
