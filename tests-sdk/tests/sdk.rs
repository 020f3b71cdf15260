//! matrix-sdk (the client library Element X is built on) against a real Myelin: what a user of
//! that client sees when chatting, moderating, paginating and coming back after a restart.

use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use matrix_sdk::{
    Client,
    room::MessagesOptions,
    ruma::api::error::ErrorKind,
    ruma::{
        OwnedUserId,
        api::client::{
            receipt::create_receipt::v3::ReceiptType,
            room::{Visibility, create_room::v3::Request as CreateRoomRequest},
        },
        events::receipt::ReceiptThread,
    },
};
use myelin_e2e::TestServer;
use tokio::sync::Mutex;

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_chat_with_typing_receipts_and_unread_counts() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = register(&server, "alice").await?;
    let bob = register(&server, "bob").await?;
    let bob_id = uid(&bob)?;

    let mut request = CreateRoomRequest::new();
    request.invite = vec![bob_id.clone()];
    request.is_direct = true;
    let room = alice.create_room(request).await?;
    let room_id = room.room_id().to_owned();

    sync(&bob).await?;
    let invited = bob.get_room(&room_id).context("bob sees the invite after a sync")?;
    ensure!(invited.state() == matrix_sdk::RoomState::Invited, "bob's room is an invite, not {:?}", invited.state());
    let texts = collect_texts(&bob);
    bob.join_room_by_id(&room_id).await?;

    let mut last = None;
    for body in ["one", "two", "three"] {
        last = Some(send_text(&room, body).await?);
    }
    sync(&bob).await?;
    ensure!(*texts.lock().await == ["one", "two", "three"], "bob received {:?}", texts.lock().await);
    let bob_room = bob.get_room(&room_id).context("joined room")?;
    let unread = bob_room.unread_notification_counts();
    ensure!(unread.notification_count == 3, "bob has 3 unread messages in a DM, saw {unread:?}");

    bob_room.typing_notice(true).await?;
    let typing_seen = Arc::new(Mutex::new(Vec::<OwnedUserId>::new()));
    let sink = typing_seen.clone();
    alice.add_room_event_handler(&room_id, move |ev: matrix_sdk::ruma::events::typing::SyncTypingEvent| {
        let sink = sink.clone();
        async move { sink.lock().await.extend(ev.content.user_ids) }
    });
    sync(&alice).await?;
    ensure!(typing_seen.lock().await.contains(&bob_id), "alice sees bob typing: {:?}", typing_seen.lock().await);

    bob_room.send_single_receipt(ReceiptType::Read, ReceiptThread::Unthreaded, last.context("sent")?).await?;
    sync(&bob).await?;
    let unread = bob.get_room(&room_id).context("room")?.unread_notification_counts();
    ensure!(unread.notification_count == 0, "a read receipt clears bob's unread count, saw {unread:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_levels_decide_who_may_kick_and_ban() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = register(&server, "alice").await?;
    let carol = register(&server, "carol").await?;
    let mut request = CreateRoomRequest::new();
    request.visibility = Visibility::Public;
    request.room_alias_name = Some("lobby".into());
    let room = alice.create_room(request).await?;
    let alias = matrix_sdk::ruma::OwnedRoomOrAliasId::try_from(format!("#lobby:{}", server.server_name()))?;
    let carol_room =
        carol.join_room_by_id_or_alias(&alias, &[]).await.context("carol joins the public room by alias")?;
    ensure!(carol_room.room_id() == room.room_id(), "the alias resolves to alice's room");

    let err = carol_room.kick_user(&uid(&alice)?, Some("coup")).await.expect_err("a member may not kick the creator");
    ensure!(matches!(err.client_api_error_kind(), Some(ErrorKind::Forbidden)), "M_FORBIDDEN, got {err:?}");

    room.ban_user(&uid(&carol)?, Some("spam")).await.context("the creator may ban")?;
    let err = carol.join_room_by_id(room.room_id()).await.expect_err("a banned user cannot rejoin");
    ensure!(matches!(err.client_api_error_kind(), Some(ErrorKind::Forbidden)), "M_FORBIDDEN, got {err:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_paginates_back_complete_and_in_order() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = register(&server, "alice").await?;
    let room = alice.create_room(CreateRoomRequest::new()).await?;
    let bodies: Vec<String> = (0..120).map(|i| format!("message {i}")).collect();
    for body in &bodies {
        send_text(&room, body).await?;
    }
    // A second device of alice's reads the history with the SDK's /messages pagination.
    let phone = login(&server, "alice").await?;
    sync(&phone).await?;
    let phone_room = phone.get_room(room.room_id()).context("room on the second device")?;
    let mut seen = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..20 {
        let mut options = MessagesOptions::backward().from(from.as_deref());
        options.limit = 50u32.into();
        let page = phone_room.messages(options).await?;
        for ev in &page.chunk {
            let raw = ev.raw().json().get();
            let value: serde_json::Value = serde_json::from_str(raw)?;
            if value["type"] == "m.room.message" {
                seen.push(value["content"]["body"].as_str().unwrap_or_default().to_owned());
            }
        }
        match page.end {
            Some(end) => from = Some(end),
            None => break,
        }
    }
    seen.reverse();
    ensure!(seen == bodies, "paginated history differs: got {} messages, first {:?}", seen.len(), seen.first());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_and_its_rooms_survive_a_restart() -> Result<()> {
    let mut server = TestServer::start().await?;
    let alice = register(&server, "alice").await?;
    let room = alice.create_room(CreateRoomRequest::new()).await?;
    send_text(&room, "before restart").await?;
    let session = alice.matrix_auth().session().context("session")?;

    server.restart().await?;
    let again = Client::builder().homeserver_url(server.base_url()).build().await?;
    again.restore_session(session).await?;
    let texts = collect_texts(&again);
    sync(&again).await?;
    ensure!(again.get_room(room.room_id()).is_some(), "the room is still there after a restart");
    ensure!(
        texts.lock().await.contains(&"before restart".to_owned()),
        "history after restart: {:?}",
        texts.lock().await
    );
    Ok(())
}
