//! A test bridge on mautrix-python (`tests-e2e/python/bridge.py`, PyPI `mautrix` in the test
//! tools' venv) and its registration file.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{free_port, s3::tools_venv, synapse::repo_root};

/// The tokens of the test bridge's registration.
pub const BRIDGE_AS_TOKEN: &str = "bridge-as-token";
pub const BRIDGE_HS_TOKEN: &str = "bridge-hs-token";

/// Writes the bridge's registration file (users `@bridge_…` and aliases `#bridge_…`, both
/// exclusive; its bot `@bridgebot`; ephemeral events) for a bridge listening on `port`.
pub fn write_registration(dir: &Path, port: u16) -> Result<PathBuf> {
    let path = dir.join("bridge-registration.yaml");
    let yaml = format!(
        "id: testbridge\nurl: \"http://127.0.0.1:{port}\"\nas_token: {BRIDGE_AS_TOKEN}\nhs_token: {BRIDGE_HS_TOKEN}\n\
         sender_localpart: bridgebot\nrate_limited: false\nreceive_ephemeral: true\nnamespaces:\n  users:\n    \
         - exclusive: true\n      regex: \"@bridge_.*\"\n  aliases:\n    - exclusive: true\n      regex: \"#bridge_.*\"\n  \
         rooms: []\n"
    );
    std::fs::write(&path, yaml)?;
    Ok(path)
}

/// A running bridge; stopped when dropped.
pub struct MautrixBridge {
    _child: tokio::process::Child,
    log: PathBuf,
    pub port: u16,
}

impl MautrixBridge {
    /// A port for the bridge, before its registration is written and the server started.
    pub fn port() -> Result<u16> {
        free_port()
    }

    /// Starts the bridge on `port`, talking to the homeserver at `homeserver` (server name
    /// `domain`), and waits until it listens.
    pub async fn start(homeserver: &str, domain: &str, port: u16) -> Result<Self> {
        Self::start_with(homeserver, domain, port, false).await
    }

    /// [`MautrixBridge::start`], as an encrypted bridge if `e2ee` (its bot's own device and keys,
    /// to-device messages, device lists and key counts through transactions: the registration
    /// must say `org.matrix.msc3202` and `io.element.msc4190`).
    pub async fn start_with(homeserver: &str, domain: &str, port: u16, e2ee: bool) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("myelin-bridge-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir)?;
        let log = dir.join("received.jsonl");
        let config = json!({
            "homeserver": homeserver, "domain": domain, "as_token": BRIDGE_AS_TOKEN, "hs_token": BRIDGE_HS_TOKEN,
            "port": port, "log": log, "e2ee": e2ee,
        });
        let mut child = tokio::process::Command::new(tools_venv()?.join("bin/python"))
            .arg(repo_root().join("tests-e2e/python/bridge.py"))
            .arg(config.to_string())
            .current_dir(&dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("start the bridge")?;
        let stdout = child.stdout.take().context("the bridge's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        match tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await {
            Ok(Ok(Some(line))) if line.trim() == "ready" => {}
            other => bail!("the bridge did not start: {other:?}"),
        }
        Ok(Self { _child: child, log, port })
    }

    /// What the bridge received and did so far, one JSON object per line.
    pub fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Waits (up to 20 s) until the bridge has received something `found` accepts.
    pub async fn wait_for(&self, what: &str, found: impl Fn(&Value) -> bool) -> Result<Value> {
        for _ in 0..200 {
            if let Some(hit) = self.received().into_iter().find(|v| found(v)) {
                return Ok(hit);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the bridge never received {what}; it has: {:?}", self.received())
    }
}
