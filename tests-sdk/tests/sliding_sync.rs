//! Element X's sync stack (matrix-sdk-ui's `SyncService`: `RoomListService` plus
//! `EncryptionSyncService`, and the `NotificationClient`) running over Myelin's simplified sliding
//! sync: the room list in activity order with live updates and recovery from a stale position,
//! room keys delivered through the to-device extension, an invite found by the notification client.

mod common;

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result, bail, ensure};
use common::*;
use futures_util::{Stream, StreamExt, pin_mut};
use matrix_sdk::{
    Client,
    ruma::{
        OwnedRoomId, RoomId,
        api::client::room::create_room::v3::Request as CreateRoomRequest,
        events::{InitialStateEvent, room::encryption::RoomEncryptionEventContent},
    },
};
use matrix_sdk_ui::{
    eyeball_im::{Vector, VectorDiff},
    notification_client::{NotificationClient, NotificationEvent, NotificationProcessSetup, NotificationStatus},
    room_list_service::{RoomListItem, filters::new_filter_non_left},
    sync_service::{State as SyncServiceState, SyncService},
};
use myelin_e2e::TestServer;
use serde_json::json;

/// Applies room list diffs until the list's room ids equal `expected`, for up to `secs` seconds.
async fn wait_for_order(
    stream: &mut (impl Stream<Item = Vec<VectorDiff<RoomListItem>>> + Unpin),
    items: &mut Vector<RoomListItem>,
    expected: &[OwnedRoomId],
    secs: u64,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let ids: Vec<OwnedRoomId> = items.iter().map(|r| r.room_id().to_owned()).collect();
        if ids == expected {
            return Ok(());
        }
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(diffs)) => diffs.into_iter().for_each(|d| d.apply(items)),
            Ok(None) => bail!("the room list stream ended"),
            Err(_) => bail!("room list never became {expected:?}; it is {ids:?}"),
        }
    }
}

/// A sync service run the way Element X runs it: started, and started again whenever it reports
/// an error (an `M_UNKNOWN_POS` ends the sync loop; the app restarts it with a fresh position).
async fn started(client: &Client) -> Result<Arc<SyncService>> {
    let service = Arc::new(SyncService::builder(client.clone()).build().await?);
    service.start().await;
    let supervisor = service.clone();
    tokio::spawn(async move {
        let mut states = supervisor.state();
        while let Some(state) = states.next().await {
            if matches!(state, SyncServiceState::Error(_)) {
                supervisor.start().await;
            }
        }
    });
    Ok(service)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_list_is_in_activity_order_updates_live_and_survives_a_stale_pos() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = register(&server, "alice").await?;
    let alice_raw = server.login("alice").await?;
    let bob = server.register("bob").await?;
    let mut ids = Vec::new();
    for name in ["A", "B", "C"] {
        let room = bob.create_room(json!({ "preset": "public_chat", "name": name })).await?;
        alice_raw.join(&room).await?;
        bob.send_message(&room, &format!("hello from {name}")).await?;
        ids.push(OwnedRoomId::try_from(room)?);
    }
    bob.send_message(ids[1].as_str(), "B is the most recent").await?;

    let service = started(&alice).await?;
    let room_list = service.room_list_service();
    let all = room_list.all_rooms().await?;
    let (stream, controller) = all.entries_with_dynamic_adapters(50);
    controller.set_filter(Box::new(new_filter_non_left()));
    pin_mut!(stream);
    let mut items = Vector::new();
    wait_for_order(&mut stream, &mut items, &[ids[1].clone(), ids[2].clone(), ids[0].clone()], 20)
        .await
        .context("the first room list")?;
    // Names come with the same response; the SDK may surface them a moment after the order.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let names: Vec<String> = items.iter().map(|r| r.name().unwrap_or_default()).collect();
        if names == ["B", "C", "A"] {
            break;
        }
        ensure!(tokio::time::Instant::now() < deadline, "names from the server: {names:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A new message in the oldest room moves it to the top while the client long-polls.
    bob.send_message(ids[0].as_str(), "A wakes up").await?;
    wait_for_order(&mut stream, &mut items, &[ids[0].clone(), ids[1].clone(), ids[2].clone()], 15)
        .await
        .context("live update")?;

    // Another client session on the same device restarts the room-list connection: the running
    // client's pos is now unknown (M_UNKNOWN_POS). It must recover and keep updating.
    let same_device = myelin_e2e::Client::new(&server.base_url()).with_token(alice.access_token().as_deref());
    let (status, _) = same_device
        .post(
            "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync?timeout=0",
            &json!({ "conn_id": "room-list", "lists": {} }),
        )
        .await?;
    ensure!(status == 200);
    bob.send_message(ids[2].as_str(), "C after the reset").await?;
    wait_for_order(&mut stream, &mut items, &[ids[2].clone(), ids[0].clone(), ids[1].clone()], 30)
        .await
        .context("the room list after its position became stale")?;
    service.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_encryption_sync_delivers_room_keys_over_sliding_sync() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = register(&server, "alice").await?;
    let bob = register(&server, "bob").await?;
    let alice_sync = started(&alice).await?;
    let bob_sync = started(&bob).await?;
    let bob_texts = collect_texts(&bob);
    // Both devices' keys are uploaded by the sync services before alice shares a room key.
    alice.encryption().wait_for_e2ee_initialization_tasks().await;
    bob.encryption().wait_for_e2ee_initialization_tasks().await;

    let mut request = CreateRoomRequest::new();
    request.invite = vec![uid(&bob)?];
    request.initial_state = vec![
        InitialStateEvent::with_empty_state_key(RoomEncryptionEventContent::with_recommended_defaults()).to_raw_any(),
    ];
    let room = alice.create_room(request).await?;
    let room_id = room.room_id().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while bob.get_room(&room_id).is_none() {
        ensure!(tokio::time::Instant::now() < deadline, "bob's client never saw the invite");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bob.join_room_by_id(&room_id).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while room.joined_members_count() < 2 {
        ensure!(tokio::time::Instant::now() < deadline, "alice's client never saw bob join");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secret = "a secret over sliding sync";
    let event_id = send_text(&room, secret).await?;
    // The room key travels over the encryption sync, a connection of its own; the room list
    // sync may show the message before the key has arrived, and an event handler sees it only
    // then (still encrypted). So bob's client is also asked for the event, which it decrypts
    // with the keys it holds by then, as Element X's timeline retries an undecryptable event.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if bob_texts.lock().await.iter().any(|t| t == secret) {
            break;
        }
        if let Some(bob_room) = bob.get_room(&room_id)
            && let Ok(event) = bob_room.event(&event_id, None).await
            && event.encryption_info().is_some()
            && event.raw().json().get().contains(secret)
        {
            break;
        }
        ensure!(tokio::time::Instant::now() < deadline, "bob never decrypted alice's message");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    alice_sync.stop().await;
    bob_sync.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notification_client_finds_an_invite() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = register(&server, "alice").await?;
    let service = started(&alice).await?;
    let bob = server.register("bob").await?;
    let room = bob.create_room(json!({ "name": "party", "invite": [uid(&alice)?] })).await?;
    let (_, page) =
        bob.get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1", myelin_e2e::enc(&room))).await?;
    let invite_id = page["chunk"][0]["event_id"].as_str().context("the invite event")?;
    ensure!(page["chunk"][0]["content"]["membership"] == "invite", "{page}");

    let notifications = NotificationClient::new(
        alice.clone(),
        NotificationProcessSetup::SingleProcess { sync_service: service.clone() },
    )
    .await?;
    let room_id = <&RoomId>::try_from(room.as_str())?;
    let status = notifications.get_notification(room_id, invite_id.try_into()?).await?;
    let NotificationStatus::Event(item) = status else { bail!("no notification for the invite: {status:?}") };
    let NotificationEvent::Invite(invite) = &item.event else { bail!("not an invite: {:?}", item.event) };
    ensure!(invite.sender == bob.user_id, "invited by bob: {invite:?}");
    service.stop().await;
    Ok(())
}
