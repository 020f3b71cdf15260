//! End-to-end encryption with matrix-sdk across two federating Myelin servers: Alice on A and Bob
//! on B in an encrypted room read each other's messages. Room keys travel as to-device messages
//! over federation; device keys and one-time keys are queried and claimed through each user's own
//! server.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::*;
use matrix_sdk::ruma::{
    OwnedServerName,
    api::client::room::{Visibility, create_room::v3::Request as CreateRoomRequest},
    events::{InitialStateEvent, room::encryption::RoomEncryptionEventContent},
};
use myelin_e2e::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_of_two_servers_read_each_others_encrypted_messages() -> Result<()> {
    let a = TestServer::start_federating().await?;
    let b = TestServer::start_federating().await?;
    let logs = || format!("A's log:\n{}\nB's log:\n{}", a.log(), b.log());
    let alice = register(&a, "alice").await?;
    let bob = register(&b, "bob").await?;
    sync(&alice).await?;
    sync(&bob).await?;

    let mut request = CreateRoomRequest::new();
    request.visibility = Visibility::Public;
    request.preset = Some(matrix_sdk::ruma::api::client::room::create_room::v3::RoomPreset::PublicChat);
    request.initial_state = vec![
        InitialStateEvent::with_empty_state_key(RoomEncryptionEventContent::with_recommended_defaults()).to_raw_any(),
    ];
    let room = alice.create_room(request).await?;
    let room_id = room.room_id().to_owned();
    let via = OwnedServerName::try_from(a.server_name())?;
    let target = matrix_sdk::ruma::OwnedRoomOrAliasId::from(room_id.clone());
    bob.join_room_by_id_or_alias(&target, &[via]).await.with_context(logs)?;
    sync(&bob).await?;
    // Alice's server has Bob's join once her client lists him.
    let bob_id = uid(&bob)?;
    for _ in 0..20 {
        sync(&alice).await?;
        if room.members(matrix_sdk::RoomMemberships::JOIN).await?.iter().any(|m| m.user_id() == bob_id) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure!(
        room.members(matrix_sdk::RoomMemberships::JOIN).await?.iter().any(|m| m.user_id() == bob_id),
        "Alice never saw Bob join\n{}",
        logs()
    );
    ensure!(room.latest_encryption_state().await?.is_encrypted(), "the room is encrypted");

    let bob_texts = collect_texts(&bob);
    let alice_texts = collect_texts(&alice);
    send_text(&room, "hello bob, across servers").await.with_context(logs)?;
    sync_until(&bob, 20, || bob_texts.try_lock().is_ok_and(|t| t.iter().any(|m| m == "hello bob, across servers")))
        .await
        .with_context(|| format!("bob never decrypted alice's message\n{}", logs()))?;

    let bob_room = bob.get_room(&room_id).context("bob's room")?;
    send_text(&bob_room, "hello alice, across servers").await.with_context(logs)?;
    sync_until(&alice, 20, || {
        alice_texts.try_lock().is_ok_and(|t| t.iter().any(|m| m == "hello alice, across servers"))
    })
    .await
    .with_context(|| format!("alice never decrypted bob's reply\n{}", logs()))?;
    Ok(())
}
