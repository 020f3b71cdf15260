//! The web pages in headless Chromium (Debian's, driven by playwright-core from tests-js/):
//! a person signs in and consents, approves another device, manages sessions, sets up two-step
//! verification and signs in with it, adds a passkey (Chromium's virtual authenticator) and
//! signs in with it alone, and registers.
//! Screenshots of every page are kept under `<target>/test-artefacts/oauth-browser/`.

mod common;

use anyhow::{Context, Result, ensure};
use myelin_e2e::TestServer;

fn chromium() -> Result<String> {
    if let Ok(path) = std::env::var("MYELIN_CHROMIUM")
        && !path.is_empty()
    {
        return Ok(path);
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/chromium.sh");
    let out = std::process::Command::new("bash").arg(script).output().context("run scripts/chromium.sh")?;
    ensure!(out.status.success(), "chromium.sh failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().last().map(str::to_owned).context("chromium.sh printed no path")
}

fn artefact_dir(name: &str) -> std::path::PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("test-artefacts").join(name)
}

#[tokio::test]
async fn a_person_uses_the_oauth_pages_in_chromium() -> Result<()> {
    let server = TestServer::start().await?;
    server.register("alice").await?;
    let node = common::node22()?;
    let chromium = chromium()?;
    let artefacts = artefact_dir("oauth-browser");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests-js/oauth-browser.mjs");
    let out = tokio::process::Command::new(node)
        .arg(script)
        .arg(server.base_url())
        .arg("alice")
        .arg("alice-password")
        .arg(&artefacts)
        .arg(chromium)
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "the browser script failed\n{stdout}\n{stderr}");
    for step in
        ["code flow", "device grant", "account page", "two-step verification", "passkeys", "registration", "done"]
    {
        ensure!(stdout.contains(&format!("\"step\":\"{step}\"")), "step {step} missing\n{stdout}");
    }
    for shot in [
        "01-login",
        "02-consent",
        "03-device",
        "04-account",
        "04b-totp-enrol",
        "04c-recovery-codes",
        "04d-second-factor",
        "04e-passkey-added",
        "04f-passkey-login",
        "05-register",
    ] {
        let path = artefacts.join(format!("{shot}.png"));
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        ensure!(size > 1000, "screenshot {} was taken", path.display());
    }
    // What the pages did is what the server holds.
    let newcomer = server.login("newcomer").await?;
    let (_, profile) = newcomer.get(&format!("/_matrix/client/v3/profile/{}", server.user_id("alice"))).await?;
    ensure!(profile["displayname"] == "Alice in the browser", "{profile}");
    Ok(())
}
