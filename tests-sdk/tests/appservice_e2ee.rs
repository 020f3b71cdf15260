//! An encrypted bridge: a bridge on mautrix-python (its OlmMachine, as mautrix bridges run it)
//! registered with MSC3202 and MSC4190 decrypts what a matrix-sdk user (Element X's client) sends
//! in an encrypted room. The bridge's bot device, its keys, the olm message carrying the room key
//! and the one-time key counts all go through Myelin's application service extensions.

mod common;

use anyhow::{Context, Result, ensure};
use common::*;
use matrix_sdk::ruma::{
    OwnedUserId,
    api::client::room::create_room::v3::Request as CreateRoomRequest,
    events::{InitialStateEvent, room::encryption::RoomEncryptionEventContent},
};
use myelin_e2e::{
    NO_RATE_LIMITS, TestServer,
    bridge::{MautrixBridge, write_registration},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_bridge_decrypts_what_a_matrix_sdk_user_sends() -> Result<()> {
    let port = MautrixBridge::port()?;
    let dir = std::env::temp_dir().join(format!("myelin-bridge-e2ee-{port}"));
    std::fs::create_dir_all(&dir)?;
    let registration = write_registration(&dir, port)?;
    let yaml = std::fs::read_to_string(&registration)?;
    std::fs::write(&registration, format!("{yaml}org.matrix.msc3202: true\nio.element.msc4190: true\n"))?;
    let registration = registration.display().to_string();
    let server = TestServer::start_with_env(NO_RATE_LIMITS, &[("MYELIN_APPSERVICES", &registration)]).await?;
    let bridge = MautrixBridge::start_with(&server.base_url(), server.server_name(), port, true).await?;
    bridge.wait_for("the bot's device and keys", |v| v["kind"] == "crypto_ready").await?;

    let alice = register(&server, "alice").await?;
    sync(&alice).await?;
    let bot: OwnedUserId = server.user_id("bridgebot").parse().context("the bot's id")?;
    let mut request = CreateRoomRequest::new();
    request.invite = vec![bot.clone()];
    request.initial_state = vec![
        InitialStateEvent::with_empty_state_key(RoomEncryptionEventContent::with_recommended_defaults()).to_raw_any(),
    ];
    let room = alice.create_room(request).await?;
    // The bridge joins on its invite; alice's client learns of the join.
    let mut joined = false;
    for _ in 0..50 {
        sync(&alice).await?;
        if room
            .get_member_no_sync(&bot)
            .await?
            .is_some_and(|m| *m.membership() == matrix_sdk::ruma::events::room::member::MembershipState::Join)
        {
            joined = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    ensure!(joined, "the bridge's bot joined");
    send_text(&room, "a secret for the bridge").await?;
    let decrypted = bridge
        .wait_for("the decrypted message", |v| v["kind"] == "decrypted" && v["body"] == "a secret for the bridge")
        .await?;
    ensure!(decrypted["sender"] == uid(&alice)?.as_str(), "{decrypted}");
    Ok(())
}
