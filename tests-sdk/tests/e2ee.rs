//! End-to-end encryption with matrix-sdk (what Element X runs): two users in an encrypted room
//! read each other's messages, a newly logged-in device is announced and can decrypt what is sent
//! after it appeared. Every step goes through Myelin's key, to-device and device-list endpoints.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::*;
use matrix_sdk::{
    Client,
    config::SyncSettings,
    ruma::{
        api::client::room::create_room::v3::Request as CreateRoomRequest,
        events::{InitialStateEvent, room::encryption::RoomEncryptionEventContent},
    },
};
use myelin_e2e::TestServer;

/// Syncs until `check` holds (each sync long-polls up to 1 s), at most `rounds` times.
async fn sync_until<F: Fn() -> bool>(client: &Client, rounds: usize, check: F) -> Result<()> {
    for _ in 0..rounds {
        client.sync_once(SyncSettings::default().timeout(Duration::from_millis(1_000))).await?;
        if check() {
            return Ok(());
        }
    }
    anyhow::bail!("condition not reached after {rounds} syncs")
}

async fn encrypted_room(alice: &Client, invite: &Client) -> Result<matrix_sdk::Room> {
    let mut request = CreateRoomRequest::new();
    request.invite = vec![uid(invite)?];
    request.initial_state = vec![
        InitialStateEvent::with_empty_state_key(RoomEncryptionEventContent::with_recommended_defaults()).to_raw_any(),
    ];
    Ok(alice.create_room(request).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_read_each_others_encrypted_messages() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = register(&server, "alice").await?;
    let bob = register(&server, "bob").await?;
    // First syncs upload each device's identity and one-time keys.
    sync(&alice).await?;
    sync(&bob).await?;

    let room = encrypted_room(&alice, &bob).await?;
    let room_id = room.room_id().to_owned();
    sync(&bob).await?;
    bob.join_room_by_id(&room_id).await?;
    sync(&alice).await?;
    ensure!(room.latest_encryption_state().await?.is_encrypted(), "the room is encrypted");

    let bob_texts = collect_texts(&bob);
    let alice_texts = collect_texts(&alice);
    // Sending shares a room key with bob's device: /keys/query, /keys/claim, /sendToDevice.
    send_text(&room, "hello bob, in secret").await?;
    sync_until(&bob, 10, || bob_texts.try_lock().is_ok_and(|t| t.iter().any(|b| b == "hello bob, in secret")))
        .await
        .with_context(|| "bob never decrypted alice's message")?;

    let bob_room = bob.get_room(&room_id).context("bob's room")?;
    send_text(&bob_room, "hello alice").await?;
    sync_until(&alice, 10, || alice_texts.try_lock().is_ok_and(|t| t.iter().any(|b| b == "hello alice")))
        .await
        .with_context(|| "alice never decrypted bob's reply")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_device_is_announced_and_decrypts_new_messages() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = register(&server, "alice").await?;
    let bob = register(&server, "bob").await?;
    sync(&alice).await?;
    sync(&bob).await?;
    let room = encrypted_room(&alice, &bob).await?;
    sync(&bob).await?;
    bob.join_room_by_id(room.room_id()).await?;
    sync(&alice).await?;
    send_text(&room, "before the new device").await?;

    // Bob logs in on a second device; alice's next sync must tell her bob's devices changed.
    let bob_phone = login(&server, "bob").await?;
    sync(&bob_phone).await?;
    let phone_texts = collect_texts(&bob_phone);
    let alice_machine = alice.encryption();
    sync_until(&alice, 5, || true).await?;
    let devices = alice_machine.get_user_devices(&uid(&bob)?).await?;
    ensure!(devices.devices().count() == 2, "alice sees both of bob's devices, saw {}", devices.devices().count());

    send_text(&room, "after the new device").await?;
    sync_until(&bob_phone, 10, || phone_texts.try_lock().is_ok_and(|t| t.iter().any(|b| b == "after the new device")))
        .await
        .with_context(|| "bob's new device never decrypted the message sent after it appeared")?;
    Ok(())
}

/// Node 22 with matrix-js-sdk installed: `$MYELIN_NODE22`, else what `scripts/js-deps.sh`
/// installs (it prints the binary's path last).
fn node22() -> Result<String> {
    if let Ok(node) = std::env::var("MYELIN_NODE22")
        && !node.is_empty()
    {
        return Ok(node);
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/js-deps.sh");
    let out = std::process::Command::new("bash").arg(script).output().context("run scripts/js-deps.sh")?;
    ensure!(out.status.success(), "js-deps.sh failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().last().map(str::to_owned).context("js-deps.sh printed no path")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_js_sdk_and_matrix_sdk_read_each_others_encrypted_messages() -> Result<()> {
    let node = node22()?;
    let server = TestServer::start().await?;
    let alice = register(&server, "alice").await?;
    server.register("jsbob").await?;
    sync(&alice).await?;
    let mut request = CreateRoomRequest::new();
    request.invite = vec![matrix_sdk::ruma::OwnedUserId::try_from(server.user_id("jsbob"))?];
    request.initial_state = vec![
        InitialStateEvent::with_empty_state_key(RoomEncryptionEventContent::with_recommended_defaults()).to_raw_any(),
    ];
    let room = alice.create_room(request).await?;
    let texts = collect_texts(&alice);

    // Element Web's client library, with its Rust crypto, as "jsbob".
    let peer_script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests-js/e2ee-peer.mjs");
    let peer = tokio::process::Command::new(&node)
        .arg(peer_script)
        .args([server.base_url().as_str(), "jsbob", "jsbob-password", room.room_id().as_str(), "from rust", "from js"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("start the matrix-js-sdk peer")?;

    // Once jsbob has joined (its keys are uploaded by then), alice's message is shared with it.
    let joined = || room.joined_members_count() >= 2;
    sync_until(&alice, 60, joined).await.context("the js client never joined")?;
    send_text(&room, "from rust").await?;
    sync_until(&alice, 60, || texts.try_lock().is_ok_and(|t| t.iter().any(|b| b == "from js")))
        .await
        .context("alice never decrypted the js client's reply")?;
    let out = tokio::time::timeout(Duration::from_secs(60), peer.wait_with_output()).await??;
    ensure!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("OK"),
        "js peer failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
