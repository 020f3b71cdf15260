//! Test harness: starts the real `myelin` binary on a free 127.0.0.1 port with a temporary data
//! directory, and a small raw-HTTP client that behaves like a Matrix client.
//!
//! Every test drives the server only over HTTP (and the admin subcommands over the command line),
//! exactly as a user's client or an operator would.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

pub mod bridge;
pub mod device_keys;
pub mod fake_sfu;
pub mod federation;
pub mod oauth;
mod s3;
pub mod smtp;
mod synapse;
pub use s3::S3Server;
pub use synapse::{SynapsePeer, run_synapse_python};

/// Server name every test server runs under.
pub const SERVER_NAME: &str = "localhost";

/// Environment variables of the binary that must not leak from the developer's shell into tests.
const MYELIN_ENV: [&str; 17] = [
    "MYELIN_CONFIG",
    "MYELIN_DATA_DIR",
    "MYELIN_LISTEN",
    "MYELIN_SERVER_NAME",
    "MYELIN_DATABASE",
    "MYELIN_LOG_FORMAT",
    "MYELIN_USER_PASSWORD",
    "MYELIN_BIN",
    "MYELIN_BUS_DELAY_MS",
    "MYELIN_TRUSTED_PROXIES",
    "MYELIN_FEDERATION_LISTEN",
    "MYELIN_FEDERATION_VERIFY_CERTIFICATES",
    "MYELIN_FEDERATION_IP_RANGE_ALLOWLIST",
    "MYELIN_FEDERATION_DNS_SERVER",
    "MYELIN_LIVEKIT_URL",
    "MYELIN_LIVEKIT_KEY",
    "MYELIN_LIVEKIT_SECRET",
];

/// Path of the server binary: `$MYELIN_BIN` as given, else the workspace's debug build of
/// `myelin`, brought up to date first (`cargo build -p myelin --bin myelin`, once per test
/// process; a no-op when the build is current), so a test never runs a stale binary.
pub fn server_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("MYELIN_BIN") {
        return PathBuf::from(bin);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target"));
    static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let built = BUILT.get_or_init(|| {
        // `cargo test` sets CARGO to the cargo running it; the same target directory is inherited.
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .args(["build", "--quiet", "-p", "myelin", "--bin", "myelin"])
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
            .output()
            .map_err(|e| format!("cannot run cargo to build the server: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("building the server failed:\n{}", String::from_utf8_lossy(&out.stderr)))
        }
    });
    if let Err(err) = built {
        panic!("{err}");
    }
    target.join("debug").join("myelin")
}

/// Runs `tests-e2e/python/<script>` with the Python of the test tools' venv (moto, aiosmtpd,
/// prometheus-client), `input` as JSON on its stdin; returns the JSON it prints.
pub fn run_tools_python(script: &str, input: &serde_json::Value) -> Result<serde_json::Value> {
    synapse::run_python(&s3::tools_venv()?.join("bin/python"), script, input)
}

/// A TCP port on 127.0.0.1 nothing listens on (for a listener a test configures).
/// Whether process `pid` holds the listening socket on 127.0.0.1:`port` (Linux's /proc).
fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else { return true };
    let wanted = format!(":{port:04X}");
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // local_address, state 0A (LISTEN), inode
            (cols.len() > 9 && cols[1].ends_with(&wanted) && cols[3] == "0A").then(|| cols[9].to_owned())
        })
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.filter_map(|fd| fd.ok())
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| inodes.iter().any(|inode| target.to_string_lossy() == format!("socket:[{inode}]")))
}

pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0 to find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Default configuration of [`TestServer::start`]: every rate limit off so tests are not throttled.
pub const NO_RATE_LIMITS: &str = "[rate_limits]\n\
    messages = { per_second = 0.0, burst = 0 }\n\
    login = { per_second = 0.0, burst = 0 }\n\
    registration = { per_second = 0.0, burst = 0 }\n";

/// A running Myelin. Killed (SIGKILL) when dropped; the data directory is then removed unless
/// `MYELIN_E2E_KEEP` is set (its path is in every start-up error).
pub struct TestServer {
    child: Option<Child>,
    data_dir: PathBuf,
    port: u16,
    /// Extra environment of the server process.
    env: Vec<(String, String)>,
    /// `--database` when not the embedded SQLite default.
    database: Option<String>,
    /// Peers share the first process's data directory; only that one removes it.
    owns_data_dir: bool,
    /// `--server-name`: [`SERVER_NAME`] unless the server federates.
    server_name: String,
    /// The built-in federation TLS listener's port on 127.0.0.1 (`--federation-listen`).
    federation_port: Option<u16>,
}

/// The backend the suite runs on: `MYELIN_TEST_BACKEND=postgres` puts every test server in a new
/// database of the test cluster; anything else (or unset) uses SQLite.
pub fn postgres_backend() -> bool {
    std::env::var("MYELIN_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// For a test that runs on PostgreSQL whatever the suite's backend (several processes, a
/// migration): true on the suite's PostgreSQL pass, where it would only repeat its run of the
/// SQLite pass. The skip is said on stderr and, when `MYELIN_SKIP_LOG` names a file, appended to
/// it, so the suite's summary counts it as skipped rather than passed.
pub fn repeat_of_sqlite_pass(test: &str) -> bool {
    if !postgres_backend() {
        return false;
    }
    let reason = "runs on PostgreSQL on every pass; already ran in the SQLite pass";
    eprintln!("SKIPPED {test}: {reason}");
    if let Some(path) = std::env::var_os("MYELIN_SKIP_LOG") {
        use std::io::Write;
        let line = format!("{test}: {reason}\n");
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(err) = appended {
            eprintln!("cannot record the skip in {}: {err}", Path::new(&path).display());
        }
    }
    true
}

/// A new, empty database in the PostgreSQL test cluster: `MYELIN_TEST_POSTGRES` (an admin URL), or
/// the cluster `scripts/pg-test-cluster.sh` starts (or finds running).
pub async fn new_postgres_database() -> Result<String> {
    let admin = match std::env::var("MYELIN_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pg-test-cluster.sh");
            let out = Command::new("bash").arg(&script).output().context("run pg-test-cluster.sh")?;
            if !out.status.success() {
                bail!("pg-test-cluster.sh failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        }
    };
    let name = format!("e2e_{:016x}", rand::random::<u64>());
    Ok(myelin_storage::create_database(&admin, &name).await?)
}

impl TestServer {
    /// Starts a server with default settings (rate limits off).
    pub async fn start() -> Result<Self> {
        Self::start_with(NO_RATE_LIMITS).await
    }

    /// Starts a server with this TOML configuration file (flags set data dir, listener and name).
    pub async fn start_with(config_toml: &str) -> Result<Self> {
        Self::start_with_env(config_toml, &[]).await
    }

    /// As [`Self::start_with`], with extra environment variables for the server process.
    pub async fn start_with_env(config_toml: &str, env: &[(&str, &str)]) -> Result<Self> {
        let data_dir = std::env::temp_dir().join(format!("myelin-e2e-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&data_dir).with_context(|| format!("create {}", data_dir.display()))?;
        let database = if postgres_backend() { Some(new_postgres_database().await?) } else { None };
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let mut server = Self {
            child: None,
            data_dir,
            port: 0,
            env,
            database,
            owns_data_dir: true,
            server_name: SERVER_NAME.to_owned(),
            federation_port: None,
        };
        std::fs::write(server.config_path(), config_toml)?;
        server.spawn_on_free_port().await?;
        Ok(server)
    }

    /// Starts a server that federates: a built-in TLS federation listener on a free 127.0.0.1
    /// port, server name `127.0.0.1:<that port>` (an IP literal: no well-known lookup, and no
    /// `localhost` that may resolve to ::1), remote certificates not checked and loopback allowed
    /// as a destination, so servers of one machine reach each other.
    pub async fn start_federating() -> Result<Self> {
        Self::start_federating_with_env(&[]).await
    }

    /// [`start_federating`](Self::start_federating) with more environment (`RUST_LOG`, say).
    pub async fn start_federating_with_env(extra_env: &[(&str, &str)]) -> Result<Self> {
        Self::start_federating_as(None, extra_env).await
    }

    /// A federating server named `server_name` (a name without a port, found by discovery: its
    /// federation listener is still on a free 127.0.0.1 port), or `127.0.0.1:<that port>`.
    pub async fn start_federating_as(server_name: Option<&str>, extra_env: &[(&str, &str)]) -> Result<Self> {
        // The federation port is probed like the client port, and another process may take it
        // before the server binds it: then start again from scratch (its name may hold the port).
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_federating_once(server_name, extra_env).await {
                Err(err) if attempt < 3 && format!("{err:#}").contains("cannot listen for federation") => continue,
                started => return started,
            }
        }
    }

    async fn start_federating_once(server_name: Option<&str>, extra_env: &[(&str, &str)]) -> Result<Self> {
        let data_dir = std::env::temp_dir().join(format!("myelin-e2e-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&data_dir).with_context(|| format!("create {}", data_dir.display()))?;
        let database = if postgres_backend() { Some(new_postgres_database().await?) } else { None };
        let federation_port = free_port()?;
        let mut env = vec![
            ("MYELIN_FEDERATION_VERIFY_CERTIFICATES".to_owned(), "false".to_owned()),
            ("MYELIN_FEDERATION_IP_RANGE_ALLOWLIST".to_owned(), "127.0.0.1/32,::1/128".to_owned()),
        ];
        env.extend(extra_env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let mut server = Self {
            child: None,
            data_dir,
            port: 0,
            env,
            database,
            owns_data_dir: true,
            server_name: server_name.map_or_else(|| format!("127.0.0.1:{federation_port}"), str::to_owned),
            federation_port: Some(federation_port),
        };
        std::fs::write(server.config_path(), NO_RATE_LIMITS)?;
        server.spawn_on_free_port().await?;
        Ok(server)
    }

    /// The federation listener's base URL (`https://127.0.0.1:<port>`), for federating servers.
    pub fn federation_url(&self) -> Option<String> {
        self.federation_port.map(|port| format!("https://127.0.0.1:{port}"))
    }

    /// Starts a server on PostgreSQL whatever `MYELIN_TEST_BACKEND` says (for multi-process tests).
    pub async fn start_postgres() -> Result<Self> {
        Self::start_postgres_with(NO_RATE_LIMITS).await
    }

    /// [`Self::start_postgres`] with this TOML configuration file.
    pub async fn start_postgres_with(config_toml: &str) -> Result<Self> {
        let data_dir = std::env::temp_dir().join(format!("myelin-e2e-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&data_dir).with_context(|| format!("create {}", data_dir.display()))?;
        let database = Some(new_postgres_database().await?);
        let mut server = Self {
            child: None,
            data_dir,
            port: 0,
            env: Vec::new(),
            database,
            owns_data_dir: true,
            server_name: SERVER_NAME.to_owned(),
            federation_port: None,
        };
        std::fs::write(server.config_path(), config_toml)?;
        server.spawn_on_free_port().await?;
        Ok(server)
    }

    /// Starts a server on SQLite whatever `MYELIN_TEST_BACKEND` says (for migration tests).
    pub async fn start_sqlite() -> Result<Self> {
        let data_dir = std::env::temp_dir().join(format!("myelin-e2e-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&data_dir).with_context(|| format!("create {}", data_dir.display()))?;
        let mut server = Self {
            child: None,
            data_dir,
            port: 0,
            env: Vec::new(),
            database: None,
            owns_data_dir: true,
            server_name: SERVER_NAME.to_owned(),
            federation_port: None,
        };
        std::fs::write(server.config_path(), NO_RATE_LIMITS)?;
        server.spawn_on_free_port().await?;
        Ok(server)
    }

    /// Stops the server and starts it again on another database (e.g. after `myelin db migrate`).
    /// The PostgreSQL database the server runs on (`None`: its SQLite file in the data dir).
    pub fn database_url(&self) -> Option<&str> {
        self.database.as_deref()
    }

    pub async fn restart_on_database(&mut self, url: &str) -> Result<()> {
        self.stop().await?;
        self.database = Some(url.to_owned());
        self.spawn().await
    }

    /// Another process of the same deployment: same database, configuration and signing key
    /// (the data directory), its own port. Only meaningful on PostgreSQL.
    pub async fn start_peer(&self) -> Result<Self> {
        self.start_peer_with_env(&[]).await
    }

    /// [`TestServer::start_peer`] with extra environment variables for the new process.
    pub async fn start_peer_with_env(&self, env: &[(&str, &str)]) -> Result<Self> {
        let mut peer = Self {
            child: None,
            data_dir: self.data_dir.clone(),
            port: 0,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            database: self.database.clone(),
            owns_data_dir: false,
            server_name: self.server_name.clone(),
            federation_port: None,
        };
        peer.spawn_on_free_port().await?;
        Ok(peer)
    }

    async fn spawn_on_free_port(&mut self) -> Result<()> {
        let server = self;
        // Another process may grab the port between our probe and the server's bind: retry then.
        let mut last_err = None;
        for _ in 0..3 {
            server.port = free_port()?;
            match server.spawn().await {
                Ok(()) => return Ok(()),
                Err(err) => {
                    // `spawn` forgets the child only when it exited by itself (e.g. port taken).
                    let exited = server.child.is_none();
                    server.kill9();
                    last_err = Some(err);
                    if !exited {
                        break;
                    }
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("server did not start")))
    }

    /// The configuration file the server was started with (`--config`).
    pub fn config_path(&self) -> PathBuf {
        self.data_dir.join("e2e-config.toml")
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything the server printed so far (all runs on this data directory).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("server.log")).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let from = lines.len().saturating_sub(60);
        format!("--- server log ({}) ---\n{}", self.data_dir.display(), lines[from..].join("\n"))
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(server_binary());
        for var in MYELIN_ENV {
            cmd.env_remove(var);
        }
        cmd
    }

    async fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.data_dir.join("server.log"))?;
        let mut cmd = self.command();
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--server-name")
            .arg(&self.server_name)
            .arg("--config")
            .arg(self.config_path())
            .args(self.database.iter().flat_map(|url| ["--database", url.as_str()]))
            .args(
                self.federation_port
                    .iter()
                    .flat_map(|port| ["--federation-listen".to_owned(), format!("127.0.0.1:{port}")]),
            )
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd.spawn().with_context(|| {
            format!("cannot start {} (build it with `cargo build -p myelin`)", server_binary().display())
        })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let url = format!("{}/_matrix/client/versions", self.base_url());
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                bail!("server exited with {status} during start-up\n{}", self.log_tail());
            }
            if let Ok(resp) = http.get(&url).send().await
                && resp.status().is_success()
            {
                // The answer may come from another test's server that took the same port
                // between our probe for a free one and our server's bind: only ours will do.
                let pid = self.child.as_ref().map(Child::id);
                if pid.is_some_and(|pid| listens_on(pid, self.port)) {
                    return Ok(());
                }
                if let Some(child) = self.child.as_mut()
                    && let Ok(Some(status)) = child.try_wait()
                {
                    self.child = None;
                    bail!("server exited with {status} during start-up (port taken?)\n{}", self.log_tail());
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        bail!("server did not answer GET /_matrix/client/versions within 20 s\n{}", self.log_tail())
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// `@name:<server name>`.
    pub fn user_id(&self, name: &str) -> String {
        format!("@{name}:{}", self.server_name)
    }

    /// Sends SIGTERM (via `kill`) and waits up to 10 s for a clean (zero) exit.
    pub async fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let sent = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        if !sent.as_ref().is_ok_and(|s| s.success()) {
            let _ = child.kill();
            let _ = child.wait();
            bail!("could not send SIGTERM: {sent:?}");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!(
                        "server exited with {status} after SIGTERM instead of shutting down cleanly\n{}",
                        self.log_tail()
                    );
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("server ignored SIGTERM for 10 s\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sends the server a signal by name (`HUP`: reload the log filter and registration files).
    pub fn signal(&self, name: &str) -> Result<()> {
        let child = self.child.as_ref().context("the server is not running")?;
        let status = Command::new("kill").arg(format!("-{name}")).arg(child.id().to_string()).status()?;
        anyhow::ensure!(status.success(), "kill -{name} failed");
        Ok(())
    }

    /// Freezes (`true`: SIGSTOP) or thaws (SIGCONT) the server: its port still accepts
    /// connections, nothing answers them, as a server that hangs.
    pub fn freeze(&self, frozen: bool) -> Result<()> {
        let child = self.child.as_ref().context("the server is not running")?;
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill").arg(signal).arg(child.id().to_string()).status()?;
        anyhow::ensure!(status.success(), "kill {signal} failed");
        Ok(())
    }

    /// Kills the server with SIGKILL, as a crash or power cut would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops (SIGTERM, if still running) and starts again on the same data directory and port.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await?;
        self.spawn().await
    }

    /// Starts again on the same data directory and port after [`TestServer::kill9`].
    pub async fn start_again(&mut self) -> Result<()> {
        self.kill9();
        self.spawn().await
    }

    /// Runs an admin subcommand (`myelin user ...`, `myelin config check`) against this server's
    /// data directory and configuration, as an operator on the same machine would.
    pub fn admin(&self, args: &[&str]) -> Result<std::process::Output> {
        let mut cmd = self.command();
        cmd.args(args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--server-name")
            .arg(&self.server_name)
            .arg("--config")
            .arg(self.config_path())
            .args(self.database.iter().flat_map(|url| ["--database", url.as_str()]))
            .stdin(Stdio::null());
        cmd.output().with_context(|| format!("cannot run {} {args:?}", server_binary().display()))
    }

    /// A client without an access token.
    pub fn anonymous(&self) -> Client {
        Client::new(&self.base_url())
    }

    /// Registers `name` (password `<name>-password`) through the UIA dummy flow.
    pub async fn register(&self, name: &str) -> Result<Client> {
        self.anonymous().register(name).await
    }

    /// Logs `name` in with the password `<name>-password`, as a new device.
    pub async fn login(&self, name: &str) -> Result<Client> {
        self.anonymous().login(name, &format!("{name}-password")).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
        if self.owns_data_dir && std::env::var_os("MYELIN_E2E_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// Percent-encodes a path segment or query value (room ids, aliases, event ids, user ids, tokens).
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

/// `/_matrix/client/v3/rooms/{room}/{rest}` with the room id encoded.
pub fn room_path(room: &str, rest: &str) -> String {
    format!("/_matrix/client/v3/rooms/{}/{rest}", enc(room))
}

/// A raw-HTTP Matrix client: every call returns (status, JSON body); a body that is not JSON is
/// returned as a JSON string so assertions can print it.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    pub token: Option<String>,
    pub user_id: String,
    pub device_id: String,
    /// Extra headers sent with every request (e.g. what a reverse proxy adds).
    headers: Vec<(String, String)>,
    /// Extra query parameters sent with every request (an application service's `user_id`).
    query: Vec<(String, String)>,
}

impl Client {
    /// An anonymous client for the server at `base` (e.g. `http://127.0.0.1:8008`).
    pub fn new(base: &str) -> Client {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: None,
            user_id: String::new(),
            device_id: String::new(),
            headers: Vec::new(),
            query: Vec::new(),
        }
    }

    /// This client, sending `name: value` with every request.
    pub fn with_header(&self, name: &str, value: &str) -> Client {
        let mut client = self.clone();
        client.headers.push((name.to_owned(), value.to_owned()));
        client
    }

    /// This client, adding `name=value` to every request's query.
    pub fn with_query(&self, name: &str, value: &str) -> Client {
        let mut client = self.clone();
        client.query.push((name.to_owned(), value.to_owned()));
        client
    }

    /// The same server with another access token (or none).
    pub fn with_token(&self, token: Option<&str>) -> Client {
        Client {
            http: self.http.clone(),
            base: self.base.clone(),
            token: token.map(str::to_owned),
            user_id: String::new(),
            device_id: String::new(),
            headers: self.headers.clone(),
            query: self.query.clone(),
        }
    }

    /// The same session (token, user, device) talking to another process of the deployment.
    pub fn on(&self, server: &TestServer) -> Client {
        Client {
            http: self.http.clone(),
            base: server.base_url(),
            token: self.token.clone(),
            user_id: self.user_id.clone(),
            device_id: self.device_id.clone(),
            headers: self.headers.clone(),
            query: self.query.clone(),
        }
    }

    /// A client for the session in a `/register` or `/login` response.
    pub fn with_session(&self, session: &Value) -> Client {
        Client {
            http: self.http.clone(),
            base: self.base.clone(),
            token: session["access_token"].as_str().map(str::to_owned),
            user_id: session["user_id"].as_str().unwrap_or_default().to_owned(),
            device_id: session["device_id"].as_str().unwrap_or_default().to_owned(),
            headers: self.headers.clone(),
            query: self.query.clone(),
        }
    }

    /// Registers `username` with password `<username>-password`: the first request without `auth`
    /// must be answered 401 with a UIA `session`, which is then completed with `m.login.dummy`.
    pub async fn register(&self, username: &str) -> Result<Client> {
        let mut body = json!({ "username": username, "password": format!("{username}-password") });
        let (status, challenge) = self.post("/_matrix/client/v3/register", &body).await?;
        if status != 401 || !challenge["session"].is_string() {
            bail!(
                "registering {username} without auth should answer 401 with a UIA session, got {status}: {challenge}"
            );
        }
        body["auth"] = json!({ "type": "m.login.dummy", "session": challenge["session"] });
        let (status, session) = self.post("/_matrix/client/v3/register", &body).await?;
        if status != 200 || !session["access_token"].is_string() {
            bail!("registering {username} with m.login.dummy: {status} {session}");
        }
        Ok(self.with_session(&session))
    }

    /// `m.login.password` with a user identifier; returns a client for the new device.
    pub async fn login(&self, username: &str, password: &str) -> Result<Client> {
        let body = json!({
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": username },
            "password": password,
        });
        let (status, session) = self.post("/_matrix/client/v3/login", &body).await?;
        if status != 200 || !session["access_token"].is_string() {
            bail!("login as {username}: {status} {session}");
        }
        Ok(self.with_session(&session))
    }

    pub async fn request(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base)).query(&self.query);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        for (name, value) in &self.headers {
            req = req.header(name.as_str(), value.as_str());
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.with_context(|| format!("{method} {path}: no HTTP answer"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.with_context(|| format!("{method} {path}: body"))?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    /// Sends raw bytes as an `application/json` body, for malformed-input tests.
    pub async fn raw(&self, method: reqwest::Method, path: &str, body: Vec<u8>) -> Result<(u16, Value)> {
        self.send_bytes(method, path, "application/json", body).await
    }

    /// Sends `body` as it is with this content type (media uploads).
    pub async fn send_bytes(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Value)> {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base)).body(body);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let resp = req
            .header("content-type", content_type)
            .send()
            .await
            .with_context(|| format!("{method} {path}: no HTTP answer"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    /// A GET answered with status, headers and the body's bytes (media downloads).
    pub async fn get_bytes(&self, path: &str) -> Result<(u16, reqwest::header::HeaderMap, Vec<u8>)> {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.with_context(|| format!("GET {path}: no HTTP answer"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.with_context(|| format!("GET {path}: body"))?;
        Ok((status, headers, body.to_vec()))
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
            bail!("createRoom {body}: {status} {resp}");
        }
        resp["room_id"].as_str().map(str::to_owned).with_context(|| format!("no room_id in createRoom answer {resp}"))
    }

    /// `POST /join/{roomIdOrAlias}`.
    pub async fn join(&self, room: &str) -> Result<(u16, Value)> {
        self.post(&format!("/_matrix/client/v3/join/{}", enc(room)), &json!({})).await
    }

    /// Sends an `m.text` message with a fresh transaction id, returning its event id.
    pub async fn send_message(&self, room: &str, body: &str) -> Result<String> {
        let txn = format!("t{:016x}", rand::random::<u64>());
        let (status, resp) = self.send_with_txn(room, body, &txn).await?;
        if status != 200 {
            bail!("sending {body:?} to {room}: {status} {resp}");
        }
        resp["event_id"].as_str().map(str::to_owned).with_context(|| format!("no event_id in send answer {resp}"))
    }

    /// `PUT /rooms/{room}/send/m.room.message/{txn}` with an `m.text` body.
    pub async fn send_with_txn(&self, room: &str, body: &str, txn: &str) -> Result<(u16, Value)> {
        let path = room_path(room, &format!("send/m.room.message/{}", enc(txn)));
        self.put(&path, &json!({ "msgtype": "m.text", "body": body })).await
    }

    /// `GET /sync` with optional since token, timeout (ms) and inline filter; fails unless 200.
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
            bail!("sync as {}: {status} {body}", self.user_id);
        }
        if !body["next_batch"].is_string() {
            bail!("sync as {} has no next_batch: {body}", self.user_id);
        }
        Ok(body)
    }

    /// Pages through `/messages` backwards from the newest event (`dir=b`, `limit=page`, following
    /// `end` until it is absent) and returns every event, oldest first.
    pub async fn all_messages(&self, room: &str, page: u32) -> Result<Vec<Value>> {
        let mut events = self.paginate(room, "b", page).await?;
        events.reverse();
        Ok(events)
    }

    /// Pages through `/messages` forwards from the room's start (`dir=f` without `from`) and returns
    /// every event, oldest first.
    pub async fn all_messages_forward(&self, room: &str, page: u32) -> Result<Vec<Value>> {
        self.paginate(room, "f", page).await
    }

    async fn paginate(&self, room: &str, dir: &str, page: u32) -> Result<Vec<Value>> {
        let mut from: Option<String> = None;
        let mut events = Vec::new();
        for _ in 0..10_000 {
            let mut path = room_path(room, &format!("messages?dir={dir}&limit={page}"));
            if let Some(from) = &from {
                path.push_str(&format!("&from={}", enc(from)));
            }
            let (status, body) = self.get(&path).await?;
            if status != 200 {
                bail!("GET {path}: {status} {body}");
            }
            let chunk = body["chunk"].as_array().with_context(|| format!("GET {path}: no chunk in {body}"))?;
            if chunk.len() > page as usize {
                bail!("GET {path}: {} events for limit {page}", chunk.len());
            }
            events.extend(chunk.iter().cloned());
            match body["end"].as_str() {
                Some(end) => {
                    if chunk.is_empty() && from.as_deref() == Some(end) {
                        bail!("GET {path}: empty page whose end token equals from: pagination never ends");
                    }
                    from = Some(end.to_owned());
                }
                None => return Ok(events),
            }
        }
        bail!("/messages dir={dir} still had an `end` token after 10000 pages")
    }
}

/// Bodies of the `m.room.message` events in a list of events, in list order.
pub fn bodies(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

/// Pages `room` back to its start as `client` (`page` events a request) and checks that the
/// user sees the room's whole history: the messages `expected` in that order, the room's
/// creation first, no event twice. What a user of a server that joined late sees once its server
/// fetched the history from the others.
pub async fn check_whole_history(client: &Client, room: &str, page: u32, expected: &[String]) -> Result<()> {
    let events = client.all_messages(room, page).await?;
    let mut ids = std::collections::HashSet::new();
    for ev in &events {
        let id = ev["event_id"].as_str().with_context(|| format!("an event without id: {ev}"))?;
        anyhow::ensure!(ids.insert(id.to_owned()), "{id} is shown twice");
    }
    anyhow::ensure!(
        events.first().is_some_and(|e| e["type"] == "m.room.create"),
        "the history does not begin with the room's creation: {:?}",
        events.first()
    );
    let seen = bodies(&events);
    anyhow::ensure!(seen == expected, "the messages, oldest first: {seen:?}");
    Ok(())
}

/// A `createRoom` body for a room of `version` that those joined to `allowed` may join without
/// an invite (join rule `restricted`).
pub fn restricted_room(allowed: &str, version: &str) -> Value {
    json!({
        "preset": "private_chat", "room_version": version,
        "initial_state": [{
            "type": "m.room.join_rules", "state_key": "",
            "content": { "join_rule": "restricted", "allow": [{ "type": "m.room_membership", "room_id": allowed }] },
        }],
    })
}

/// `next_batch` of a sync response.
pub fn next_batch(sync: &Value) -> Result<String> {
    sync["next_batch"].as_str().map(str::to_owned).with_context(|| format!("no next_batch in sync {sync}"))
}

/// Timeline events of a joined room in a sync response (empty if the room is absent).
pub fn timeline(sync: &Value, room: &str) -> Vec<Value> {
    sync["rooms"]["join"][room]["timeline"]["events"].as_array().cloned().unwrap_or_default()
}

/// The `errcode` of an error body, or `<none>`.
pub fn errcode(body: &Value) -> &str {
    body["errcode"].as_str().unwrap_or("<none>")
}
