//! MatrixRTC with matrix-js-sdk's `MatrixRTCSession` (what Element Call runs): a user joins a
//! room's call with a LiveKit transport from `rtc/transports`, the other member sees her in it,
//! her LiveKit JWT from the embedded JWT service verifies with livekit-server-sdk, and when her
//! device dies the server's delayed leave event (MSC4140) ends her membership. The call itself is
//! `tests-js/rtc-call.mjs`; no SFU runs (the token is checked, not used): a stand-in for the
//! SFU's server API sees the call's room created.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::node22;
use myelin_e2e::{NO_RATE_LIMITS, TestServer, fake_sfu::FakeSfu};

/// The SFU's API credentials.
const LIVEKIT_KEY: &str = "devkey";
const LIVEKIT_SECRET: &str = "myelin-rtc-test-secret-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_js_sdk_joins_a_call_gets_a_livekit_token_and_is_dropped_when_its_device_dies() -> Result<()> {
    let node = node22()?;
    let sfu = FakeSfu::start(LIVEKIT_KEY, LIVEKIT_SECRET).await?;
    let server = TestServer::start_with_env(
        NO_RATE_LIMITS,
        &[
            ("MYELIN_LIVEKIT_URL", sfu.url()),
            ("MYELIN_LIVEKIT_KEY", LIVEKIT_KEY),
            ("MYELIN_LIVEKIT_SECRET", LIVEKIT_SECRET),
        ],
    )
    .await?;

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests-js/rtc-call.mjs");
    let call = tokio::process::Command::new(&node)
        .arg(script)
        .args([server.base_url().as_str(), LIVEKIT_KEY, LIVEKIT_SECRET, sfu.url()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    // The script gives up by itself after 60 s.
    let out = tokio::time::timeout(Duration::from_secs(90), call)
        .await
        .context("rtc-call.mjs did not finish within 90 s")?
        .context("run rtc-call.mjs")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !(out.status.success() && stdout.lines().any(|l| l == "OK")) {
        let log = server.log();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        anyhow::bail!(
            "the matrix-js-sdk call failed ({}):\n{stdout}\n{stderr}\n--- server log (end) ---\n{}",
            out.status,
            tail.join("\n")
        );
    }

    // The script asserted everything; its summary says how long the dead man's switch took.
    let summary = stdout.lines().find(|l| l.starts_with('{')).context("rtc-call.mjs printed no summary")?;
    let summary: serde_json::Value = serde_json::from_str(summary).context("rtc-call.mjs's summary")?;
    println!("MatrixRTC call with matrix-js-sdk: {summary}");
    let delay = summary["delayed_leave_delay_ms"].as_u64().context("delay in the summary")?;
    let left_after = summary["left_after_last_restart_ms"].as_u64().context("leave time in the summary")?;
    ensure!(
        (delay..=delay + 3000).contains(&left_after),
        "the membership ended {left_after} ms after the last restart, delay {delay} ms"
    );
    let created = sfu.calls("CreateRoom");
    ensure!(created.len() == 1 && sfu.refused() == 0, "the call's room was created on the SFU once: {created:?}");
    Ok(())
}
