//! A person at a browser, for the OAuth server's pages: follows nothing by itself (each
//! redirect is asserted), keeps cookies, reads the CSRF token, fills forms. And the client's
//! side: PKCE, client registration, the token endpoint.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use reqwest::{StatusCode, Url, header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A form body (`application/x-www-form-urlencoded`).
pub fn form_body(pairs: &[(&str, &str)]) -> String {
    Url::parse_with_params("http://form.invalid/", pairs)
        .ok()
        .and_then(|u| u.query().map(str::to_owned))
        .unwrap_or_default()
}

/// A PKCE verifier and its S256 challenge.
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Self {
        let verifier: String = (0..64).map(|_| char::from(b'a' + rand::random::<u8>() % 26)).collect();
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Self { verifier, challenge }
    }
}

impl Default for Pkce {
    fn default() -> Self {
        Self::new()
    }
}

/// What a page answered.
pub struct PageReply {
    pub status: StatusCode,
    pub headers: header::HeaderMap,
    pub body: String,
}

impl PageReply {
    pub fn location(&self) -> Option<String> {
        self.headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }

    /// The value of a hidden form field.
    pub fn hidden(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker)? + marker.len();
        let end = self.body[start..].find('"')?;
        Some(self.body[start..start + end].to_owned())
    }
}

/// A browser without scripts: cookies kept, redirects not followed.
pub struct Browser {
    http: reqwest::Client,
    base: String,
    pub cookies: HashMap<String, String>,
}

impl Browser {
    pub fn new(base: &str) -> Result<Self> {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
        Ok(Self { http, base: base.trim_end_matches('/').to_owned(), cookies: HashMap::new() })
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") { path.to_owned() } else { format!("{}{path}", self.base) }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn keep_cookies(&mut self, headers: &header::HeaderMap) {
        for value in headers.get_all(header::SET_COOKIE) {
            let Ok(text) = value.to_str() else { continue };
            let Some((pair, attributes)) = text.split_once(';').or(Some((text, ""))) else { continue };
            let Some((name, value)) = pair.split_once('=') else { continue };
            if attributes.contains("Max-Age=0") || value.is_empty() {
                self.cookies.remove(name.trim());
            } else {
                self.cookies.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
    }

    pub async fn get(&mut self, path: &str) -> Result<PageReply> {
        let resp = self.http.get(self.url(path)).header(header::COOKIE, self.cookie_header()).send().await?;
        self.reply(resp).await
    }

    pub async fn post_form(&mut self, path: &str, pairs: &[(&str, &str)]) -> Result<PageReply> {
        let resp = self
            .http
            .post(self.url(path))
            .header(header::COOKIE, self.cookie_header())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form_body(pairs))
            .send()
            .await?;
        self.reply(resp).await
    }

    async fn reply(&mut self, resp: reqwest::Response) -> Result<PageReply> {
        let status = resp.status();
        let headers = resp.headers().clone();
        self.keep_cookies(&headers);
        let body = resp.text().await?;
        Ok(PageReply { status, headers, body })
    }

    pub fn csrf(&self) -> String {
        self.cookies.get("myelin_csrf").cloned().unwrap_or_default()
    }

    /// Signs in on the login page that `reply` redirected to, and returns where it sends next.
    pub async fn sign_in(&mut self, login_location: &str, username: &str, password: &str) -> Result<String> {
        let login_page = self.get(login_location).await?;
        if login_page.status != StatusCode::OK {
            bail!("login page: {} {}", login_page.status, login_page.body);
        }
        let next = login_page.hidden("next").context("the login form carries next")?;
        let csrf = self.csrf();
        let done = self
            .post_form(
                "/auth/login",
                &[("csrf", &csrf), ("username", username), ("password", password), ("next", &next)],
            )
            .await?;
        if done.status != StatusCode::SEE_OTHER {
            bail!("login: {} {}", done.status, done.body);
        }
        done.location().context("login redirects")
    }
}

/// Registers an OAuth client; returns its `client_id`.
pub async fn register_client(base: &str, metadata: &Value) -> Result<String> {
    let resp = reqwest::Client::new().post(format!("{base}/oauth2/registration")).json(metadata).send().await?;
    let status = resp.status();
    let body: Value = resp.json().await?;
    if status != StatusCode::CREATED {
        bail!("client registration: {status} {body}");
    }
    body["client_id"].as_str().map(str::to_owned).context("client_id")
}

/// A native client that redirects to the loopback interface (any port).
pub fn native_client(grant_types: &[&str]) -> Value {
    json!({
        "client_name": "Test client",
        "client_uri": "https://client.example.org/",
        "application_type": "native",
        "redirect_uris": ["http://127.0.0.1/callback"],
        "grant_types": grant_types,
        "token_endpoint_auth_method": "none",
    })
}

/// A form `POST` to `url`: the status and the JSON answer.
pub async fn post_form(url: &str, pairs: &[(&str, &str)]) -> Result<(u16, Value)> {
    let resp = reqwest::Client::new()
        .post(url)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form_body(pairs))
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

/// `POST /oauth2/token` with a form; the status and the JSON answer.
pub async fn token_request(base: &str, pairs: &[(&str, &str)]) -> Result<(u16, Value)> {
    post_form(&format!("{base}/oauth2/token"), pairs).await
}

/// A query parameter of a URL.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let url = Url::parse(url).ok()?;
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}
