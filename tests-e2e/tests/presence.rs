//! Presence: syncing shows a user online to those who share a room with them, inactivity makes
//! them idle, the end of their syncs offline; what users set themselves; the modes; over
//! federation; bad input.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use myelin_e2e::{Client, NO_RATE_LIMITS, TestServer, enc, errcode, next_batch};
use serde_json::{Value, json};

/// Short timers, so the test sees them run.
fn fast_presence() -> String {
    format!("{NO_RATE_LIMITS}[presence]\nidle_after_ms = 2000\noffline_after_ms = 1500\n")
}

fn status_path(user: &str) -> String {
    format!("/_matrix/client/v3/presence/{}/status", enc(user))
}

/// The `m.presence` content of `user` in a sync response, if any.
fn presence_of<'a>(sync: &'a Value, user: &str) -> Option<&'a Value> {
    sync["presence"]["events"]
        .as_array()?
        .iter()
        .rev()
        .find(|e| e["sender"] == user && e["type"] == "m.presence")
        .map(|e| &e["content"])
}

/// Syncs `client` from `since` until its sync shows `user` in `state` (long polls); answers
/// that content and the token after it.
async fn wait_for_presence(
    client: &Client,
    since: &str,
    user: &str,
    state: &str,
    within: Duration,
) -> Result<(Value, String)> {
    let deadline = Instant::now() + within;
    let mut since = since.to_owned();
    loop {
        let sync = client.sync(Some(&since), 1000, None).await?;
        since = next_batch(&sync)?;
        if let Some(content) = presence_of(&sync, user)
            && content["presence"] == state
        {
            return Ok((content.clone(), since));
        }
        if Instant::now() > deadline {
            bail!("{user} never showed as {state} to {}", client.user_id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncing_shows_users_online_then_idle_then_offline() -> Result<()> {
    let server = TestServer::start_with(&fast_presence()).await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let carol = server.register("carol").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    ensure!(bob.join(&room).await?.0 == 200);

    // Bob, syncing, is online; alice has not synced: she is not listed.
    let first = bob.sync(None, 0, None).await?;
    ensure!(presence_of(&first, &alice.user_id).is_none(), "alice never synced: {first}");
    ensure!(presence_of(&first, &bob.user_id).is_some_and(|p| p["presence"] == "online"), "{first}");
    let since = next_batch(&first)?;

    // Alice syncs: bob's waiting sync wakes with her online and active.
    let started = Instant::now();
    let waiting = {
        let bob = bob.clone();
        let since = since.clone();
        tokio::spawn(async move { bob.sync(Some(&since), 10_000, None).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    alice.sync(None, 0, None).await?;
    let woken = waiting.await??;
    ensure!(started.elapsed() < Duration::from_secs(5), "bob's sync waited its whole timeout");
    let online = presence_of(&woken, &alice.user_id).context("alice's presence")?;
    ensure!(online["presence"] == "online" && online["currently_active"] == true, "{online}");
    ensure!(online["last_active_ago"].as_u64().is_some_and(|ago| ago < 5000), "{online}");
    let since = next_batch(&woken)?;

    // The status endpoint: for a room mate and oneself, not for a stranger.
    let (status, body) = bob.get(&status_path(&alice.user_id)).await?;
    ensure!(status == 200 && body["presence"] == "online", "{status} {body}");
    let (status, body) = carol.get(&status_path(&alice.user_id)).await?;
    ensure!(status == 403 && errcode(&body) == "M_FORBIDDEN", "a stranger: {status} {body}");

    // A status message she sets reaches bob.
    let (status, body) =
        alice.put(&status_path(&alice.user_id), &json!({ "presence": "online", "status_msg": "at lunch" })).await?;
    ensure!(status == 200, "{body}");
    let (content, since) = wait_for_presence(&bob, &since, &alice.user_id, "online", Duration::from_secs(5)).await?;
    ensure!(content["status_msg"] == "at lunch", "{content}");

    // She keeps syncing but does nothing: idle (unavailable) after 2 s; a message brings her back.
    let keep_syncing = {
        let alice = alice.clone();
        tokio::spawn(async move {
            for _ in 0..40 {
                let _ = alice.sync(None, 0, Some(&json!({ "room": { "rooms": [] } }))).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let (idle, since) = wait_for_presence(&bob, &since, &alice.user_id, "unavailable", Duration::from_secs(8))
        .await
        .with_context(|| server.log())?;
    ensure!(idle["currently_active"] == false && idle["status_msg"] == "at lunch", "{idle}");
    alice.send_message(&room, "back").await?;
    let (back, since) = wait_for_presence(&bob, &since, &alice.user_id, "online", Duration::from_secs(5)).await?;
    ensure!(back["currently_active"] == true, "{back}");
    keep_syncing.await?;

    // Her syncs end: offline 1.5 s later, and carol (no shared room) never heard of any of it.
    let (offline, _) = wait_for_presence(&bob, &since, &alice.user_id, "offline", Duration::from_secs(8)).await?;
    ensure!(offline["status_msg"] == "at lunch", "the status message stays: {offline}");
    let carol_sync = carol.sync(None, 0, None).await?;
    ensure!(presence_of(&carol_sync, &alice.user_id).is_none(), "{carol_sync}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_presence_on_sync_and_bad_presence_requests() -> Result<()> {
    let server = TestServer::start_with(&fast_presence()).await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    ensure!(bob.join(&room).await?.0 == 200);

    // `set_presence=offline`: syncing changes nothing; `unavailable`: shows so.
    let (status, body) = alice.get("/_matrix/client/v3/sync?timeout=0&set_presence=offline").await?;
    ensure!(status == 200, "{body}");
    let (_, body) = bob.get(&status_path(&alice.user_id)).await?;
    ensure!(body["presence"] == "offline", "{body}");
    let (status, body) = alice.get("/_matrix/client/v3/sync?timeout=0&set_presence=unavailable").await?;
    ensure!(status == 200, "{body}");
    let (_, body) = bob.get(&status_path(&alice.user_id)).await?;
    ensure!(body["presence"] == "unavailable", "{body}");

    for (path, body, code, what) in [
        (status_path(&alice.user_id), json!({ "presence": "away" }), "M_INVALID_PARAM", "an unknown state"),
        (
            status_path(&alice.user_id),
            json!({ "presence": "online", "status_msg": "x".repeat(2000) }),
            "M_INVALID_PARAM",
            "a long status",
        ),
        (status_path(&alice.user_id), json!({ "status_msg": "no state" }), "M_BAD_JSON", "no presence"),
    ] {
        let (status, answer) = alice.put(&path, &body).await?;
        ensure!(status == 400 && errcode(&answer) == code, "{what}: {status} {answer}");
    }
    let (status, answer) = alice.put(&status_path(&bob.user_id), &json!({ "presence": "online" })).await?;
    ensure!(status == 403 && errcode(&answer) == "M_FORBIDDEN", "another's presence: {status} {answer}");
    let (status, answer) = alice.get("/_matrix/client/v3/sync?timeout=0&set_presence=dancing").await?;
    ensure!(status == 400 && errcode(&answer) == "M_INVALID_PARAM", "{status} {answer}");
    let (status, answer) = server.anonymous().get(&status_path(&alice.user_id)).await?;
    ensure!(status == 401, "{status} {answer}");

    // A filter that leaves presence out.
    let sync = bob.sync(None, 0, Some(&json!({ "presence": { "types": [] } }))).await?;
    ensure!(sync["presence"]["events"] == json!([]), "{sync}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untracked_presence_is_only_what_users_set_and_off_is_nothing() -> Result<()> {
    let untracked = TestServer::start_with(&format!("{NO_RATE_LIMITS}[presence]\nenabled = \"untracked\"\n")).await?;
    let alice = untracked.register("alice").await?;
    let bob = untracked.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    ensure!(bob.join(&room).await?.0 == 200);
    alice.sync(None, 0, None).await?;
    let (_, body) = bob.get(&status_path(&alice.user_id)).await?;
    ensure!(body["presence"] == "offline", "syncing is not tracked: {body}");
    let (status, _) = alice.put(&status_path(&alice.user_id), &json!({ "presence": "online" })).await?;
    ensure!(status == 200);
    let (_, body) = bob.get(&status_path(&alice.user_id)).await?;
    ensure!(body["presence"] == "online", "what she set: {body}");
    let sync = bob.sync(None, 0, None).await?;
    ensure!(presence_of(&sync, &alice.user_id).is_some_and(|p| p["presence"] == "online"), "{sync}");

    let off = TestServer::start_with(&format!("{NO_RATE_LIMITS}[presence]\nenabled = false\n")).await?;
    let alice = off.register("alice").await?;
    let (status, _) = alice.put(&status_path(&alice.user_id), &json!({ "presence": "online" })).await?;
    ensure!(status == 200, "setting is accepted and ignored");
    let (_, body) = alice.get(&status_path(&alice.user_id)).await?;
    ensure!(body == json!({ "presence": "offline" }), "{body}");
    let sync = alice.sync(None, 0, None).await?;
    ensure!(sync["presence"]["events"] == json!([]), "{sync}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_reaches_the_other_server() -> Result<()> {
    let a = TestServer::start_federating().await?;
    let b = TestServer::start_federating().await?;
    let alice = a.register("alice").await?;
    let bob = b.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    let (status, body) = bob
        .post(&format!("/_matrix/client/v3/join/{}?server_name={}", enc(&room), enc(a.server_name())), &json!({}))
        .await?;
    ensure!(status == 200, "join over federation: {status} {body}");
    let since = next_batch(&bob.sync(None, 0, None).await?)?;
    let (status, body) = alice
        .put(&status_path(&alice.user_id), &json!({ "presence": "unavailable", "status_msg": "in a call" }))
        .await?;
    ensure!(status == 200, "{body}");
    let (content, _) = wait_for_presence(&bob, &since, &alice.user_id, "unavailable", Duration::from_secs(15))
        .await
        .with_context(|| format!("A's log:\n{}\nB's log:\n{}", a.log(), b.log()))?;
    ensure!(content["status_msg"] == "in a call", "{content}");
    let (status, body) = bob.get(&status_path(&alice.user_id)).await?;
    ensure!(status == 200 && body["presence"] == "unavailable", "{status} {body}");
    Ok(())
}
