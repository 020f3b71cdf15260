//! A real Synapse (from PyPI) as a federation peer: started by `scripts/synapse-rival.sh` with a
//! TLS federation listener on a free 127.0.0.1 port, server name `127.0.0.1:<that port>`, remote
//! certificates not verified and loopback allowed, so it federates with the Myelin servers of
//! [`crate::TestServer::start_federating`]. The venv comes from `MYELIN_SYNAPSE_VENV` (set by
//! `scripts/test-all.sh`), else `scripts/synapse-venv.sh` installs it (once per machine).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::{Client, free_port};

pub struct SynapsePeer {
    dir: PathBuf,
    pid: u32,
    port: u16,
    federation_port: u16,
}

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The venv with Synapse installed.
fn synapse_venv() -> Result<PathBuf> {
    if let Some(venv) = std::env::var_os("MYELIN_SYNAPSE_VENV") {
        return Ok(PathBuf::from(venv));
    }
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/synapse-venv.sh"))
        .output()
        .context("run scripts/synapse-venv.sh")?;
    if !out.status.success() {
        bail!("scripts/synapse-venv.sh failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    Ok(PathBuf::from(stdout.lines().last().context("synapse-venv.sh printed nothing")?.trim()))
}

/// Runs `tests-e2e/python/<script>` with the Python of Synapse's venv (so it can use Synapse's own
/// code as an oracle), `input` as JSON on its stdin; returns the JSON it prints.
pub fn run_synapse_python(script: &str, input: &serde_json::Value) -> Result<serde_json::Value> {
    run_python(&synapse_venv()?.join("bin/python"), script, input)
}

/// Runs `tests-e2e/python/<script>` with `python`, `input` as JSON on its stdin; returns the
/// JSON it prints.
pub(crate) fn run_python(
    python: &std::path::Path,
    script: &str,
    input: &serde_json::Value,
) -> Result<serde_json::Value> {
    use std::io::Write;
    let mut child = Command::new(python)
        .arg(repo_root().join("tests-e2e/python").join(script))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("run {}", python.display()))?;
    child.stdin.take().context("stdin")?.write_all(input.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("{script} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("{script}'s output"))
}

impl SynapsePeer {
    /// Starts Synapse and waits until its client API answers. Its ports are picked free, then
    /// bound by Synapse a moment later: another test may take one in between, so a start that
    /// finds its port taken is tried again on new ports.
    pub async fn start() -> Result<Self> {
        let venv = synapse_venv()?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let dir = std::env::temp_dir().join(format!("myelin-synapse-{:016x}", rand::random::<u64>()));
            let port = free_port()?;
            let federation_port = free_port()?;
            let out = tokio::process::Command::new("bash")
                .arg(repo_root().join("scripts/synapse-rival.sh"))
                .arg(&dir)
                .arg(port.to_string())
                .env("SYNAPSE_VENV", &venv)
                .env("SYNAPSE_FEDERATION_PORT", federation_port.to_string())
                .output()
                .await
                .context("run scripts/synapse-rival.sh")?;
            if !out.status.success() {
                let stderr = String::from_utf8_lossy(&out.stderr);
                if attempt < 3 && stderr.contains("Address already in use") {
                    continue;
                }
                bail!("starting Synapse failed: {stderr}");
            }
            let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().context("Synapse's PID")?;
            return Ok(Self { dir, pid, port, federation_port });
        }
    }

    pub fn server_name(&self) -> String {
        format!("127.0.0.1:{}", self.federation_port)
    }

    pub fn user_id(&self, name: &str) -> String {
        format!("@{name}:{}", self.server_name())
    }

    pub fn client(&self) -> Client {
        Client::new(&format!("http://127.0.0.1:{}", self.port))
    }

    pub async fn register(&self, name: &str) -> Result<Client> {
        self.client().register(name).await
    }

    /// Synapse's log (for failure messages).
    pub fn log(&self) -> String {
        let tail = |name: &str| {
            let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(80)..].join("\n")
        };
        format!("{}\n{}", tail("synapse.log"), tail("stdout.log"))
    }
}

impl Drop for SynapsePeer {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
        // Synapse exits within a moment of SIGTERM; its files go with the directory.
        for _ in 0..50 {
            if !Path::new(&format!("/proc/{}", self.pid)).exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = Command::new("kill").arg("-9").arg(self.pid.to_string()).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
