//! Sync v2 as a client sees it: long-poll wake-ups, gappy syncs, sections, lazy members, restarts.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use myelin_e2e::{TestServer, bodies, enc};
use serde_json::{Value, json};

fn timeline(sync: &Value, room: &str) -> Vec<Value> {
    sync["rooms"]["join"][room]["timeline"]["events"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wakes_within_100ms_of_a_send() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    bob.join(&room).await?;
    let mut since = bob.sync(None, 0, None).await?["next_batch"].as_str().context("next_batch")?.to_owned();
    let mut worst = Duration::ZERO;
    for i in 0..10 {
        let poller = {
            let bob = bob.clone();
            let since = since.clone();
            tokio::spawn(async move {
                let sync = bob.sync(Some(&since), 10_000, None).await;
                (Instant::now(), sync)
            })
        };
        tokio::time::sleep(Duration::from_millis(150)).await;
        ensure!(!poller.is_finished(), "the long-poll returned before anything happened");
        let body = format!("wake {i}");
        alice.send_text(&room, &body).await?;
        let acked = Instant::now();
        let (returned, sync) = poller.await?;
        let sync = sync?;
        let latency = returned.saturating_duration_since(acked);
        worst = worst.max(latency);
        ensure!(bodies(&timeline(&sync, &room)) == [body.clone()], "the woken sync carries the message: {sync}");
        since = sync["next_batch"].as_str().context("next_batch")?.to_owned();
    }
    ensure!(worst < Duration::from_millis(100), "worst send-to-wake latency {worst:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gappy_sync_is_limited_and_prev_batch_fills_the_gap() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let room = alice.create_room(json!({})).await?;
    let filter = json!({ "room": { "timeline": { "limit": 10 } } });
    let since = alice.sync(None, 0, Some(&filter)).await?["next_batch"].as_str().context("next_batch")?.to_owned();
    let sent: Vec<String> = (0..30).map(|i| format!("gap {i}")).collect();
    for body in &sent {
        alice.send_text(&room, body).await?;
    }
    alice
        .put(&format!("/_matrix/client/v3/rooms/{}/state/m.room.topic", enc(&room)), &json!({ "topic": "new" }))
        .await?;
    alice.send_text(&room, "after topic").await?;
    let sync = alice.sync(Some(&since), 0, Some(&filter)).await?;
    let joined = &sync["rooms"]["join"][room.as_str()];
    ensure!(joined["timeline"]["limited"] == true, "31 new events with limit 10 is limited: {joined}");
    let tl = timeline(&sync, &room);
    ensure!(tl.len() == 10, "ten timeline events, got {}", tl.len());
    ensure!(bodies(&tl).last().map(String::as_str) == Some("after topic"), "newest last");
    // The topic change is in the timeline, so the state section need not repeat it.
    let prev_batch = joined["timeline"]["prev_batch"].as_str().context("prev_batch")?;
    let (status, page) = alice
        .get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=100&from={}", enc(&room), enc(prev_batch)))
        .await?;
    ensure!(status == 200, "messages from prev_batch");
    let mut missing = bodies(page["chunk"].as_array().context("chunk")?);
    missing.reverse();
    let mut all = missing;
    all.extend(bodies(&tl));
    let expected: Vec<String> = sent.iter().cloned().chain(["after topic".to_owned()]).collect();
    ensure!(all == expected, "prev_batch pagination fills the gap exactly: {all:?}");

    // A gap that hides a state change reports it in the state section.
    let since = sync["next_batch"].as_str().context("next_batch")?.to_owned();
    alice
        .put(&format!("/_matrix/client/v3/rooms/{}/state/m.room.name", enc(&room)), &json!({ "name": "Renamed" }))
        .await?;
    for i in 0..15 {
        alice.send_text(&room, &format!("bury {i}")).await?;
    }
    let sync = alice.sync(Some(&since), 0, Some(&filter)).await?;
    let state = sync["rooms"]["join"][room.as_str()]["state"]["events"].as_array().cloned().unwrap_or_default();
    ensure!(
        state.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Renamed"),
        "hidden rename in state: {state:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_join_leave_sections_and_history_across_membership() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "private_chat", "name": "Secret" })).await?;
    alice.send_text(&room, "before bob").await?;
    let since = bob.sync(None, 0, None).await?["next_batch"].as_str().context("next_batch")?.to_owned();
    alice
        .post(&format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)), &json!({ "user_id": "@bob:localhost" }))
        .await?;
    let sync = bob.sync(Some(&since), 5_000, None).await?;
    let stripped =
        sync["rooms"]["invite"][room.as_str()]["invite_state"]["events"].as_array().cloned().unwrap_or_default();
    ensure!(
        stripped.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Secret"),
        "invite carries the name: {sync}"
    );
    let since = sync["next_batch"].as_str().context("next_batch")?.to_owned();
    bob.join(&room).await?;
    let sync = bob.sync(Some(&since), 5_000, None).await?;
    let joined = &sync["rooms"]["join"][room.as_str()];
    ensure!(!joined.is_null(), "the room moves to join: {sync}");
    let state_types: Vec<&str> =
        joined["state"]["events"].as_array().context("state")?.iter().filter_map(|e| e["type"].as_str()).collect();
    let tl = joined["timeline"]["events"].as_array().context("timeline")?;
    let seen: Vec<&str> = state_types.iter().copied().chain(tl.iter().filter_map(|e| e["type"].as_str())).collect();
    ensure!(seen.contains(&"m.room.create") && seen.contains(&"m.room.power_levels"), "full state on join: {seen:?}");
    let (_, hist) = bob.get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50", enc(&room))).await?;
    ensure!(
        bodies(hist["chunk"].as_array().context("chunk")?).contains(&"before bob".to_owned()),
        "shared history is readable"
    );

    let since = sync["next_batch"].as_str().context("next_batch")?.to_owned();
    alice.send_text(&room, "last words").await?;
    alice
        .post(&format!("/_matrix/client/v3/rooms/{}/kick", enc(&room)), &json!({ "user_id": "@bob:localhost" }))
        .await?;
    alice.send_text(&room, "after bob left").await?;
    let sync = bob.sync(Some(&since), 5_000, None).await?;
    let left = &sync["rooms"]["leave"][room.as_str()];
    let tl = left["timeline"]["events"].as_array().cloned().unwrap_or_default();
    ensure!(bodies(&tl) == ["last words"], "leave section ends at the kick: {left}");
    ensure!(
        tl.last().is_some_and(|e| e["type"] == "m.room.member" && e["content"]["membership"] == "leave"),
        "kick is the last event"
    );
    let (status, hist) = bob.get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50", enc(&room))).await?;
    ensure!(
        status == 200 && !bodies(hist["chunk"].as_array().context("chunk")?).contains(&"after bob left".to_owned()),
        "no history after leaving"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lazy_loaded_members_are_only_the_timeline_senders() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    let mut others = Vec::new();
    for i in 0..6 {
        let c = server.register(&format!("user{i}")).await?;
        c.join(&room).await?;
        others.push(c);
    }
    others[2].send_text(&room, "only user2 speaks").await?;
    let viewer = server.register("viewer").await?;
    viewer.join(&room).await?;
    let filter = json!({ "room": { "timeline": { "limit": 1 }, "state": { "lazy_load_members": true } } });
    let sync = viewer.sync(None, 0, Some(&filter)).await?;
    let joined = &sync["rooms"]["join"][room.as_str()];
    let members: Vec<&str> = joined["state"]["events"]
        .as_array()
        .context("state")?
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .filter_map(|e| e["state_key"].as_str())
        .collect();
    ensure!(
        !members.contains(&"@user0:localhost") && !members.contains(&"@user5:localhost"),
        "silent members not loaded: {members:?}"
    );
    ensure!(joined["summary"]["m.joined_member_count"] == 8, "summary counts everyone: {}", joined["summary"]);
    let full = viewer.sync(None, 0, Some(&json!({ "room": { "timeline": { "limit": 1 } } }))).await?;
    let all_members = full["rooms"]["join"][room.as_str()]["state"]["events"]
        .as_array()
        .context("state")?
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .count();
    ensure!(all_members >= 7, "without lazy loading every member is sent: {all_members}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_receipts_and_unread_counts_reach_the_other_user() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    bob.join(&room).await?;
    let since = bob.sync(None, 0, None).await?["next_batch"].as_str().context("next_batch")?.to_owned();
    let mut last = String::new();
    for i in 0..3 {
        last = alice.send_text(&room, &format!("unread {i}")).await?;
    }
    let sync = bob.sync(Some(&since), 0, None).await?;
    let counts = &sync["rooms"]["join"][room.as_str()]["unread_notifications"];
    ensure!(counts["notification_count"] == 3, "three unread: {counts}");

    let since = sync["next_batch"].as_str().context("next_batch")?.to_owned();
    alice
        .put(
            &format!("/_matrix/client/v3/rooms/{}/typing/{}", enc(&room), enc("@alice:localhost")),
            &json!({ "typing": true, "timeout": 10000 }),
        )
        .await?;
    let sync = bob.sync(Some(&since), 5_000, None).await?;
    let eph = sync["rooms"]["join"][room.as_str()]["ephemeral"]["events"].as_array().cloned().unwrap_or_default();
    ensure!(
        eph.iter().any(|e| e["type"] == "m.typing" && e["content"]["user_ids"] == json!(["@alice:localhost"])),
        "bob sees alice typing: {eph:?}"
    );

    let since = sync["next_batch"].as_str().context("next_batch")?.to_owned();
    let (status, _) =
        bob.post(&format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(&room), enc(&last)), &json!({})).await?;
    ensure!(status == 200, "receipt");
    let sync = bob.sync(Some(&since), 5_000, None).await?;
    let joined = &sync["rooms"]["join"][room.as_str()];
    ensure!(joined["unread_notifications"]["notification_count"] == 0, "read receipt clears unread: {joined}");
    let alice_view = alice.sync(None, 0, None).await?;
    let eph = alice_view["rooms"]["join"][room.as_str()]["ephemeral"]["events"].as_array().cloned().unwrap_or_default();
    let receipt = eph.iter().find(|e| e["type"] == "m.receipt").context("alice sees a receipt")?;
    ensure!(
        receipt["content"][last.as_str()]["m.read"]["@bob:localhost"]["ts"].is_u64(),
        "bob's receipt on the last message: {receipt}"
    );

    // Private receipts are only for their owner.
    let (status, _) = bob
        .post(&format!("/_matrix/client/v3/rooms/{}/receipt/m.read.private/{}", enc(&room), enc(&last)), &json!({}))
        .await?;
    ensure!(status == 200, "private receipt");
    let alice_view = alice.sync(None, 0, None).await?;
    ensure!(!alice_view.to_string().contains("m.read.private"), "alice never sees bob's private receipt");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_users_tokens_rooms_and_messages() -> Result<()> {
    let mut server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let room = alice.create_room(json!({ "name": "Durable" })).await?;
    for i in 0..20 {
        alice.send_text(&room, &format!("keep {i}")).await?;
    }
    let before = alice.sync(None, 0, None).await?;
    server.restart().await?;
    let (status, _) = alice.get("/_matrix/client/v3/account/whoami").await?;
    ensure!(status == 200, "the access token survives a restart");
    let history = alice.all_messages(&room, 7).await?;
    ensure!(bodies(&history) == (0..20).map(|i| format!("keep {i}")).collect::<Vec<_>>(), "history survives");
    let since = before["next_batch"].as_str().context("next_batch")?;
    alice.send_text(&room, "after restart").await?;
    let sync = alice.sync(Some(since), 0, None).await?;
    ensure!(bodies(&timeline(&sync, &room)) == ["after restart"], "an old sync token continues after restart: {sync}");
    server.login("alice").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_users_disappear_from_sync_history_and_invites() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let troll = server.register("troll").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    troll.join(&room).await?;
    let since = alice.sync(None, 0, None).await?["next_batch"].as_str().context("next_batch")?.to_owned();
    let (status, _) = alice
        .put(
            "/_matrix/client/v3/user/@alice:localhost/account_data/m.ignored_user_list",
            &json!({ "ignored_users": { "@troll:localhost": {} } }),
        )
        .await?;
    ensure!(status == 200, "ignore the troll");
    troll.send_text(&room, "noise").await?;
    alice.send_text(&room, "signal").await?;
    let sync = alice.sync(Some(&since), 0, None).await?;
    ensure!(bodies(&timeline(&sync, &room)) == ["signal"], "sync hides the ignored user: {sync}");
    let history = alice.all_messages(&room, 50).await?;
    ensure!(!bodies(&history).contains(&"noise".to_owned()), "history hides the ignored user");
    let dm = troll.create_room(json!({ "invite": ["@alice:localhost"] })).await?;
    let sync = alice.sync(None, 0, None).await?;
    ensure!(
        sync["rooms"]["invite"][dm.as_str()].is_null(),
        "invites from ignored users are hidden: {}",
        sync["rooms"]["invite"]
    );
    // Un-ignoring brings them back.
    alice
        .put(
            "/_matrix/client/v3/user/@alice:localhost/account_data/m.ignored_user_list",
            &json!({ "ignored_users": {} }),
        )
        .await?;
    let history = alice.all_messages(&room, 50).await?;
    ensure!(bodies(&history).contains(&"noise".to_owned()), "un-ignored messages are visible again");
    Ok(())
}
