//! Test harness: starts the real `myelin` binary on a free 127.0.0.1 port with a temporary data
//! directory, and a small raw-HTTP client that behaves like a Matrix client.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// Path of the server binary: `$MYELIN_BIN`, else `<target>/debug/myelin`.
pub fn server_binary() -> PathBuf {
    if let Ok(bin) = std::env::var("MYELIN_BIN") {
        return PathBuf::from(bin);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target"));
    target.join("debug").join("myelin")
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A running Myelin. Killed (SIGKILL) when dropped; the data directory is removed.
pub struct TestServer {
    child: Option<Child>,
    data_dir: PathBuf,
    port: u16,
    config: Option<String>,
}

impl TestServer {
    /// Starts a server with default settings (rate limits off so tests are not throttled).
    pub async fn start() -> Result<Self> {
        Self::start_with(
            "[rate_limits]\nmessages = { per_second = 0.0, burst = 0 }\nlogin = { per_second = 0.0, burst = 0 }\n\
             registration = { per_second = 0.0, burst = 0 }\n",
        )
        .await
    }

    /// Starts a server with this TOML configuration.
    pub async fn start_with(config_toml: &str) -> Result<Self> {
        let data_dir = std::env::temp_dir().join(format!("myelin-test-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&data_dir)?;
        let mut server = Self { child: None, data_dir, port: free_port()?, config: Some(config_toml.to_owned()) };
        std::fs::write(server.config_path(), config_toml)?;
        server.spawn().await?;
        Ok(server)
    }

    fn config_path(&self) -> PathBuf {
        self.data_dir.join("test-config.toml")
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("server.log")).unwrap_or_default()
    }

    async fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.data_dir.join("server.log"))?;
        let mut cmd = Command::new(server_binary());
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--server-name")
            .arg("localhost")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if self.config.is_some() {
            cmd.arg("--config").arg(self.config_path());
        }
        let child = cmd.spawn().with_context(|| format!("cannot start {}", server_binary().display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let http = reqwest::Client::new();
        while Instant::now() < deadline {
            if let Ok(resp) = http.get(format!("{}/_matrix/client/versions", self.base_url())).send().await
                && resp.status().is_success()
            {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!("server exited with {status} during start-up:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        bail!("server did not answer /versions within 20 s:\n{}", self.log())
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn server_name(&self) -> &str {
        "localhost"
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(status) = child.try_wait()? {
                    if !status.success() {
                        bail!("server exited with {status} after SIGTERM:\n{}", self.log());
                    }
                    return Ok(());
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    bail!("server ignored SIGTERM for 10 s");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops (SIGTERM) and starts again on the same data directory and port.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await?;
        self.spawn().await
    }

    /// Starts again after `kill9`.
    pub async fn start_again(&mut self) -> Result<()> {
        self.spawn().await
    }

    /// Runs an admin subcommand (`myelin user ...`) against this server's data directory.
    pub fn admin(&self, args: &[&str]) -> Result<std::process::Output> {
        let mut cmd = Command::new(server_binary());
        cmd.args(args).arg("--data-dir").arg(&self.data_dir).arg("--server-name").arg("localhost");
        if self.config.is_some() {
            cmd.arg("--config").arg(self.config_path());
        }
        Ok(cmd.output()?)
    }

    /// A client without an access token.
    pub fn anonymous(&self) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: self.base_url(),
            token: None,
            user_id: String::new(),
            device_id: String::new(),
        }
    }

    /// Registers `name` (password `<name>-password`) through the UIA dummy flow.
    pub async fn register(&self, name: &str) -> Result<Client> {
        let anon = self.anonymous();
        let body = json!({ "username": name, "password": format!("{name}-password") });
        let (status, challenge) = anon.post("/_matrix/client/v3/register", &body).await?;
        if status != 401 {
            bail!("register without auth should ask for UIA (401), got {status}: {challenge}");
        }
        let mut body = body;
        body["auth"] = json!({ "type": "m.login.dummy", "session": challenge["session"] });
        let (status, session) = anon.post("/_matrix/client/v3/register", &body).await?;
        if status != 200 {
            bail!("register {name}: {status} {session}");
        }
        Ok(anon.with_session(&session))
    }

    pub async fn login(&self, name: &str) -> Result<Client> {
        let anon = self.anonymous();
        let body = json!({
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": name },
            "password": format!("{name}-password"),
        });
        let (status, session) = anon.post("/_matrix/client/v3/login", &body).await?;
        if status != 200 {
            bail!("login {name}: {status} {session}");
        }
        Ok(anon.with_session(&session))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Percent-encodes a path segment (room ids, aliases, event ids, user ids).
pub fn enc(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A raw-HTTP Matrix client: every call returns (status, JSON body).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    pub token: Option<String>,
    pub user_id: String,
    pub device_id: String,
}

impl Client {
    fn with_session(&self, session: &Value) -> Client {
        Client {
            http: self.http.clone(),
            base: self.base.clone(),
            token: session["access_token"].as_str().map(str::to_owned),
            user_id: session["user_id"].as_str().unwrap_or_default().to_owned(),
            device_id: session["device_id"].as_str().unwrap_or_default().to_owned(),
        }
    }

    pub async fn request(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.with_context(|| format!("request {path}"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    /// Sends raw bytes with a content type, for malformed-input tests.
    pub async fn raw(&self, method: reqwest::Method, path: &str, body: Vec<u8>) -> Result<(u16, Value)> {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).body(body);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let resp = req.header("content-type", "application/json").send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    pub async fn get(&self, path: &str) -> Result<(u16, Value)> {
        self.request(reqwest::Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        self.request(reqwest::Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        self.request(reqwest::Method::PUT, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        self.request(reqwest::Method::DELETE, path, Some(body)).await
    }

    /// `POST /createRoom`, returning the room id.
    pub async fn create_room(&self, body: Value) -> Result<String> {
        let (status, resp) = self.post("/_matrix/client/v3/createRoom", &body).await?;
        if status != 200 {
            bail!("createRoom: {status} {resp}");
        }
        resp["room_id"].as_str().map(str::to_owned).context("room_id in createRoom response")
    }

    pub async fn join(&self, room: &str) -> Result<(u16, Value)> {
        self.post(&format!("/_matrix/client/v3/join/{}", enc(room)), &json!({})).await
    }

    /// Sends a text message with a fresh transaction id, returning its event id.
    pub async fn send_text(&self, room: &str, body: &str) -> Result<String> {
        let txn = format!("t{}", rand::random::<u64>());
        let (status, resp) = self.send_with_txn(room, body, &txn).await?;
        if status != 200 {
            bail!("send: {status} {resp}");
        }
        resp["event_id"].as_str().map(str::to_owned).context("event_id in send response")
    }

    pub async fn send_with_txn(&self, room: &str, body: &str, txn: &str) -> Result<(u16, Value)> {
        let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{}", enc(room), enc(txn));
        self.put(&path, &json!({ "msgtype": "m.text", "body": body })).await
    }

    /// `GET /sync` with optional since, timeout and inline filter.
    pub async fn sync(&self, since: Option<&str>, timeout_ms: u64, filter: Option<&Value>) -> Result<Value> {
        let mut path = format!("/_matrix/client/v3/sync?timeout={timeout_ms}");
        if let Some(since) = since {
            path.push_str(&format!("&since={}", enc(since)));
        }
        if let Some(filter) = filter {
            path.push_str(&format!("&filter={}", enc(&filter.to_string())));
        }
        let (status, body) = self.get(&path).await?;
        if status != 200 {
            bail!("sync: {status} {body}");
        }
        Ok(body)
    }

    /// Pages through `/messages` from the end backwards and returns every event, oldest first.
    pub async fn all_messages(&self, room: &str, page: u32) -> Result<Vec<Value>> {
        let mut from: Option<String> = None;
        let mut events = Vec::new();
        for _ in 0..10_000 {
            let mut path = format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit={page}", enc(room));
            if let Some(from) = &from {
                path.push_str(&format!("&from={}", enc(from)));
            }
            let (status, body) = self.get(&path).await?;
            if status != 200 {
                bail!("messages: {status} {body}");
            }
            events.extend(body["chunk"].as_array().cloned().unwrap_or_default());
            match body["end"].as_str() {
                Some(end) => from = Some(end.to_owned()),
                None => {
                    events.reverse();
                    return Ok(events);
                }
            }
        }
        bail!("/messages never ended")
    }
}

/// Bodies of the `m.room.message` events in a list of events.
pub fn bodies(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}
