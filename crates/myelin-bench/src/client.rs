//! Minimal Matrix client-server API (v3) client used by the scenarios.
//!
//! Only what the benchmark needs: registration, room creation, joins, sending
//! messages and `/sync`. Every request has a timeout, and `429 M_LIMIT_EXCEEDED`
//! answers are retried a bounded number of times after sleeping `retry_after_ms`;
//! retries are counted so the report can show them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// How often a single request is retried after 429 before giving up.
const MAX_RATE_LIMIT_RETRIES: u32 = 200;
/// Upper bound on one rate-limit sleep, whatever the server asks for.
const MAX_RATE_LIMIT_SLEEP: Duration = Duration::from_secs(30);
/// Sleep used when a 429 carries no `retry_after_ms`.
const DEFAULT_RATE_LIMIT_SLEEP: Duration = Duration::from_millis(500);

/// Shared connection to one homeserver (cheap to clone).
#[derive(Clone)]
pub struct Server {
    http: reqwest::Client,
    base: Arc<str>,
    retries: Arc<AtomicU64>,
    request_timeout: Duration,
    /// The server's Prometheus endpoint, if the run was given it.
    metrics: Option<Arc<str>>,
}

/// A logged-in user on a [`Server`].
#[derive(Clone)]
pub struct User {
    pub server: Server,
    pub user_id: String,
    pub device_id: String,
    token: Arc<str>,
}

impl Server {
    pub fn new(base: &str, request_timeout: Duration) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(256)
            // Targets are local servers: never route them through a proxy from the environment.
            .no_proxy()
            .build()
            .context("building HTTP client")?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').into(),
            retries: Arc::new(AtomicU64::new(0)),
            request_timeout,
            metrics: None,
        })
    }

    pub fn with_metrics(mut self, url: Option<String>) -> Self {
        self.metrics = url.map(Into::into);
        self
    }

    /// The sum (seconds) and count of the server's v2 sync build-time histogram, if it exposes
    /// one (`myelin_sync_build_seconds`).
    pub async fn sync_build_totals(&self) -> Option<(f64, f64)> {
        let url = self.metrics.as_deref()?;
        let text = self.http.get(url).send().await.ok()?.text().await.ok()?;
        // Both APIs (`/sync` and sliding sync) count.
        let value = |name: &str| {
            text.lines()
                .filter(|l| l.starts_with(&format!("{name}{{")))
                .map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
                .sum::<Option<f64>>()
        };
        Some((value("myelin_sync_build_seconds_sum")?, value("myelin_sync_build_seconds_count")?))
    }

    /// Number of 429 retries performed so far against this server.
    pub fn rate_limit_retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// GET /_matrix/client/versions, to check the server is there.
    /// The HTTP client and base URL, for requests that are not JSON (media).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn versions(&self) -> Result<Value> {
        self.call(Method::GET, "/_matrix/client/versions", None, &[], None, None).await
    }

    /// Sends one request, retrying on 429. Returns the JSON body of a 2xx answer;
    /// any other status is an error carrying the body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        query: &[(&str, &str)],
        body: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<Value> {
        let (status, value) = self.call_raw(method.clone(), path, token, query, body, timeout).await?;
        if status.is_success() { Ok(value) } else { bail!("{method} {path} answered {status}: {value}") }
    }

    /// Like [`Server::call`] but returns non-2xx answers (other than 429) to the caller.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        query: &[(&str, &str)],
        body: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<(StatusCode, Value)> {
        let url = format!("{}{}", self.base, path);
        for _attempt in 0..=MAX_RATE_LIMIT_RETRIES {
            let mut req = self.http.request(method.clone(), &url).timeout(timeout.unwrap_or(self.request_timeout));
            if !query.is_empty() {
                req = req.query(query);
            }
            if let Some(token) = token {
                req = req.bearer_auth(token);
            }
            if let Some(body) = body {
                req = req.json(body);
            }
            let resp = req.send().await.with_context(|| format!("{method} {url}"))?;
            let status = resp.status();
            let retry_after_header = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let bytes = resp.bytes().await.with_context(|| format!("reading body of {method} {url}"))?;
            let value: Value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).chars().take(500).collect()))
            };
            if status == StatusCode::TOO_MANY_REQUESTS {
                self.retries.fetch_add(1, Ordering::Relaxed);
                let wait = value
                    .get("retry_after_ms")
                    .and_then(Value::as_u64)
                    .map(Duration::from_millis)
                    .or(retry_after_header)
                    .unwrap_or(DEFAULT_RATE_LIMIT_SLEEP)
                    .min(MAX_RATE_LIMIT_SLEEP);
                tokio::time::sleep(wait).await;
                continue;
            }
            return Ok((status, value));
        }
        bail!("{method} {url}: still rate limited after {MAX_RATE_LIMIT_RETRIES} retries")
    }

    /// Registers `username` with open registration (m.login.dummy), following
    /// the user-interactive auth session if the server asks for one.
    pub async fn register(&self, username: &str, password: &str) -> Result<User> {
        let path = "/_matrix/client/v3/register";
        let mut body = json!({
            "username": username,
            "password": password,
            "auth": { "type": "m.login.dummy" },
            "initial_device_display_name": "myelin-bench",
        });
        // At most a few UIA rounds: dummy auth completes in one step after the session.
        for _round in 0..4 {
            let (status, value) = self.call_raw(Method::POST, path, None, &[], Some(&body), None).await?;
            if status.is_success() {
                let user_id = value
                    .get("user_id")
                    .and_then(Value::as_str)
                    .context("register response without user_id")?
                    .to_owned();
                let token = value
                    .get("access_token")
                    .and_then(Value::as_str)
                    .context("register response without access_token")?;
                let device_id = value.get("device_id").and_then(Value::as_str).unwrap_or_default().to_owned();
                return Ok(User { server: self.clone(), user_id, device_id, token: token.into() });
            }
            if status == StatusCode::UNAUTHORIZED {
                let session = value
                    .get("session")
                    .and_then(Value::as_str)
                    .ok_or_else(|| anyhow!("register {username}: 401 without session: {value}"))?;
                body["auth"] = json!({ "type": "m.login.dummy", "session": session });
                continue;
            }
            bail!("register {username} answered {status}: {value}");
        }
        bail!("register {username}: user-interactive auth did not complete")
    }
}

impl User {
    /// The same user and device, talking to another process of the same deployment.
    pub fn on(self, server: Server) -> Self {
        Self { server, ..self }
    }

    /// Logs in again with a password (a new device and access token).
    pub async fn login_new_device(&self, password: &str) -> Result<User> {
        let body = json!({
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": self.user_id },
            "password": password,
            "initial_device_display_name": "myelin-bench",
        });
        let value = self
            .server
            .call(Method::POST, "/_matrix/client/v3/login", None, &[], Some(&body), None)
            .await
            .with_context(|| format!("logging in {}", self.user_id))?;
        let token = value.get("access_token").and_then(Value::as_str).context("login response without access_token")?;
        let device_id = value.get("device_id").and_then(Value::as_str).unwrap_or_default().to_owned();
        Ok(User { server: self.server.clone(), user_id: self.user_id.clone(), device_id, token: token.into() })
    }

    fn token(&self) -> &str {
        &self.token
    }

    /// The access token (for requests the helpers here do not make: media bodies).
    pub fn access_token(&self) -> &str {
        &self.token
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<Value> {
        self.server.call(method, path, Some(self.token()), query, body, timeout).await
    }

    /// POST /createRoom; returns the room id.
    pub async fn create_room(&self, body: &Value) -> Result<String> {
        let value = self.call(Method::POST, "/_matrix/client/v3/createRoom", &[], Some(body), None).await?;
        value.get("room_id").and_then(Value::as_str).map(str::to_owned).context("createRoom response without room_id")
    }

    /// POST /join/{roomIdOrAlias}, with `?server_name=VIA` for a room on another server.
    pub async fn join_via(&self, room_id: &str, via: Option<&str>) -> Result<()> {
        let mut path = format!("/_matrix/client/v3/join/{}", encode(room_id));
        if let Some(via) = via {
            path.push_str(&format!("?server_name={}", encode(via)));
        }
        self.call(Method::POST, &path, &[], Some(&json!({})), None)
            .await
            .with_context(|| format!("{} joining {room_id}", self.user_id))?;
        Ok(())
    }

    /// PUT /rooms/{roomId}/send/m.room.message/{txnId}; returns the event id.
    pub async fn send_text(&self, room_id: &str, txn_id: &str, text: &str) -> Result<String> {
        let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{}", encode(room_id), encode(txn_id));
        let body = json!({ "msgtype": "m.text", "body": text });
        let value = self.call(Method::PUT, &path, &[], Some(&body), None).await?;
        value.get("event_id").and_then(Value::as_str).map(str::to_owned).context("send response without event_id")
    }

    /// GET /sync with the given query parameters.
    pub async fn sync(&self, query: &[(&str, &str)], timeout: Duration) -> Result<Value> {
        self.call(Method::GET, "/_matrix/client/v3/sync", query, None, Some(timeout)).await
    }
}

/// Percent-encodes one path segment (keeps only RFC 3986 unreserved characters).
pub fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len() * 3);
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn encodes_room_ids() {
        assert_eq!(encode("!abc:localhost"), "%21abc%3Alocalhost");
        assert_eq!(encode("txn-1_a.b~"), "txn-1_a.b~");
    }
}
