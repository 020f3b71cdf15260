//! Sync v2 as a client sees it: long-poll wake-ups, gappy syncs, sections, lazy members, restarts.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use myelin_e2e::{Client, TestServer, bodies, enc, next_batch, timeline};
use serde_json::{Value, json};

fn state_events(sync: &Value, section: &str, room: &str) -> Vec<Value> {
    sync["rooms"][section][room]["state"]["events"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_then_incremental_sync() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat", "name": "Lobby", "topic": "hello" })).await?;
    bob.join(&room).await?;
    alice.send_message(&room, "first").await?;

    let initial = bob.sync(None, 0, None).await?;
    let joined = &initial["rooms"]["join"][room.as_str()];
    ensure!(!joined.is_null(), "bob's initial sync shows the room he joined: {}", initial["rooms"]);
    let tl = timeline(&initial, &room);
    let seen: Vec<Value> = state_events(&initial, "join", &room).into_iter().chain(tl.iter().cloned()).collect();
    let has = |ty: &str, check: &dyn Fn(&Value) -> bool| seen.iter().any(|e| e["type"] == ty && check(e));
    ensure!(
        has("m.room.create", &|_| true)
            && has("m.room.name", &|e| e["content"]["name"] == "Lobby")
            && has("m.room.topic", &|e| e["content"]["topic"] == "hello")
            && has("m.room.member", &|e| e["state_key"] == "@bob:localhost" && e["content"]["membership"] == "join"),
        "initial sync gives bob the room's state: {joined}"
    );
    ensure!(bodies(&tl).last().map(String::as_str) == Some("first"), "initial timeline ends with the last message");
    for e in &tl {
        ensure!(
            e["event_id"].is_string() && e["sender"].is_string() && e["origin_server_ts"].is_u64(),
            "timeline events are complete client events: {e}"
        );
    }

    // Nothing new: an incremental sync with timeout 0 returns at once without the room's timeline.
    let since = next_batch(&initial)?;
    let quiet = bob.sync(Some(&since), 0, None).await?;
    ensure!(timeline(&quiet, &room).is_empty(), "no new events, no timeline: {}", quiet["rooms"]);

    // New events arrive once, in order, in the next incremental sync and not again after that.
    for body in ["second", "third"] {
        alice.send_message(&room, body).await?;
    }
    let since = next_batch(&quiet)?;
    let inc = bob.sync(Some(&since), 0, None).await?;
    ensure!(bodies(&timeline(&inc, &room)) == ["second", "third"], "incremental timeline: {}", inc["rooms"]);
    ensure!(
        inc["rooms"]["join"][room.as_str()]["timeline"]["limited"] != true,
        "two new events are not a gap: {}",
        inc["rooms"]
    );
    let again = bob.sync(Some(&next_batch(&inc)?), 0, None).await?;
    ensure!(timeline(&again, &room).is_empty(), "events are not repeated: {}", again["rooms"]);

    // The same since token replayed gives the same events (sync is idempotent per token).
    let replay = bob.sync(Some(&since), 0, None).await?;
    ensure!(bodies(&timeline(&replay, &room)) == ["second", "third"], "replaying a token: {}", replay["rooms"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wakes_within_100ms_of_a_send() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    bob.join(&room).await?;
    let mut since = next_batch(&bob.sync(None, 0, None).await?)?;
    let mut latencies = Vec::new();
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
        ensure!(!poller.is_finished(), "bob's long-poll (timeout 10 s) returned before anything happened");
        let body = format!("wake {i}");
        alice.send_message(&room, &body).await?;
        let acked = Instant::now();
        let (returned, sync) = poller.await?;
        let sync = sync?;
        latencies.push(returned.saturating_duration_since(acked));
        ensure!(
            bodies(&timeline(&sync, &room)) == [body.clone()],
            "bob's long-poll woke but did not carry {body:?}: {}",
            sync["rooms"]
        );
        since = next_batch(&sync)?;
    }
    let worst = latencies.iter().max().copied().unwrap_or_default();
    ensure!(
        worst < Duration::from_millis(100),
        "bob's client saw alice's message up to {worst:?} after alice's send returned (each wake: {latencies:?})"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gappy_sync_is_limited_and_prev_batch_fills_the_gap() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let room = alice.create_room(json!({})).await?;
    let filter = json!({ "room": { "timeline": { "limit": 10 } } });
    let since = next_batch(&alice.sync(None, 0, Some(&filter)).await?)?;
    let sent: Vec<String> = (0..30).map(|i| format!("gap {i}")).collect();
    for body in &sent {
        alice.send_message(&room, body).await?;
    }
    alice
        .put(&format!("/_matrix/client/v3/rooms/{}/state/m.room.topic", enc(&room)), &json!({ "topic": "new" }))
        .await?;
    alice.send_message(&room, "after topic").await?;
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
    let since = next_batch(&sync)?;
    alice
        .put(&format!("/_matrix/client/v3/rooms/{}/state/m.room.name", enc(&room)), &json!({ "name": "Renamed" }))
        .await?;
    for i in 0..15 {
        alice.send_message(&room, &format!("bury {i}")).await?;
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
    alice.send_message(&room, "before bob").await?;
    let since = next_batch(&bob.sync(None, 0, None).await?)?;
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
    let since = next_batch(&sync)?;
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

    let since = next_batch(&sync)?;
    alice.send_message(&room, "last words").await?;
    alice
        .post(&format!("/_matrix/client/v3/rooms/{}/kick", enc(&room)), &json!({ "user_id": "@bob:localhost" }))
        .await?;
    alice.send_message(&room, "after bob left").await?;
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
    let viewer = server.register("viewer").await?;
    viewer.join(&room).await?;
    let mut others = Vec::new();
    for i in 0..6 {
        let c = server.register(&format!("user{i}")).await?;
        c.join(&room).await?;
        others.push(c);
    }
    others[2].send_message(&room, "user2 speaks").await?;
    others[4].send_message(&room, "user4 speaks").await?;
    let members_in = |sync: &Value| -> HashSet<String> {
        state_events(sync, "join", &room)
            .iter()
            .chain(timeline(sync, &room).iter())
            .filter(|e| e["type"] == "m.room.member")
            .filter_map(|e| e["state_key"].as_str().map(str::to_owned))
            .collect()
    };

    let filter = json!({ "room": { "timeline": { "limit": 2 }, "state": { "lazy_load_members": true } } });
    let sync = viewer.sync(None, 0, Some(&filter)).await?;
    ensure!(bodies(&timeline(&sync, &room)) == ["user2 speaks", "user4 speaks"], "timeline: {}", sync["rooms"]);
    let members = members_in(&sync);
    ensure!(
        members.contains("@user2:localhost") && members.contains("@user4:localhost"),
        "the senders of the visible timeline are loaded: {members:?}"
    );
    let allowed: HashSet<String> =
        ["@user2:localhost", "@user4:localhost", "@viewer:localhost"].into_iter().map(str::to_owned).collect();
    ensure!(members.is_subset(&allowed), "only needed members are loaded (senders and oneself): {members:?}");
    let joined = &sync["rooms"]["join"][room.as_str()];
    ensure!(joined["summary"]["m.joined_member_count"] == 8, "summary counts everyone: {}", joined["summary"]);

    // Incrementally, a new speaker's membership arrives with their first message, once.
    let since = next_batch(&sync)?;
    others[0].send_message(&room, "user0 speaks").await?;
    let inc = viewer.sync(Some(&since), 0, Some(&filter)).await?;
    ensure!(bodies(&timeline(&inc, &room)) == ["user0 speaks"], "incremental timeline: {}", inc["rooms"]);
    let members = members_in(&inc);
    ensure!(
        members.contains("@user0:localhost"),
        "viewer's client got user0's first message in an incremental lazy-loading sync without user0's \
         m.room.member, so it cannot show who sent it; members sent: {members:?}, room: {}",
        inc["rooms"]["join"][room.as_str()]
    );
    ensure!(!members.contains("@user5:localhost"), "silent user5 is still not loaded: {members:?}");

    let full = viewer.sync(None, 0, Some(&json!({ "room": { "timeline": { "limit": 2 } } }))).await?;
    let all_members = members_in(&full);
    ensure!(all_members.len() == 8, "without lazy loading every member is sent: {all_members:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_receipts_and_unread_counts_reach_the_other_user() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    bob.join(&room).await?;
    let since = next_batch(&bob.sync(None, 0, None).await?)?;
    let mut last = String::new();
    for i in 0..3 {
        last = alice.send_message(&room, &format!("unread {i}")).await?;
    }
    let sync = bob.sync(Some(&since), 0, None).await?;
    let counts = &sync["rooms"]["join"][room.as_str()]["unread_notifications"];
    ensure!(counts["notification_count"] == 3, "three unread: {counts}");

    let since = next_batch(&sync)?;
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

    let since = next_batch(&sync)?;
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

/// A message wakes all its room's listeners at once, and the room's unread counts are read once
/// for all of them: each still gets its own (after its own read receipt; none for the sender).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_woken_listener_gets_its_own_unread_counts() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let carol = server.register("carol").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    bob.join(&room).await?;
    carol.join(&room).await?;
    let first = alice.send_message(&room, "first").await?;
    let second = alice.send_message(&room, "second").await?;
    let read_first = format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(&room), enc(&first));
    ensure!(carol.post(&read_first, &json!({})).await?.0 == 200);
    let (counts, third) = unread_counts_seen(&[&alice, &bob, &carol], &alice, &room, "third").await?;
    ensure!(counts == [json!(0), json!(3), json!(2)], "alice, bob, carol: {counts:?}");

    // Receipts move (carol's to the newest message, bob's to an older one) and dave joins: the
    // counts read for the third message are no base for theirs.
    let dave = server.register("dave").await?;
    dave.join(&room).await?;
    for (user, event) in [(&carol, &third), (&bob, &second)] {
        let path = format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(&room), enc(event));
        ensure!(user.post(&path, &json!({})).await?.0 == 200);
    }
    let listeners = [&alice, &bob, &carol, &dave];
    let (counts, _) = unread_counts_seen(&listeners, &alice, &room, "fourth").await?;
    ensure!(counts == [json!(0), json!(2), json!(1), json!(1)], "alice, bob, carol, dave: {counts:?}");
    // Nothing moved: the fifth message's counts are the fourth's plus one.
    let (counts, _) = unread_counts_seen(&listeners, &alice, &room, "fifth").await?;
    ensure!(counts == [json!(0), json!(3), json!(2), json!(2)], "alice, bob, carol, dave: {counts:?}");
    Ok(())
}

/// Each of `listeners` long-polls `/sync`; `sender` sends `body` into `room` once they wait.
/// The notification count each listener's answer with the message gave, and the message's id.
async fn unread_counts_seen(
    listeners: &[&Client],
    sender: &Client,
    room: &str,
    body: &str,
) -> Result<(Vec<Value>, String)> {
    let mut polls = Vec::new();
    for user in listeners {
        let since = next_batch(&user.sync(None, 0, None).await?)?;
        let (user, room, body) = ((*user).clone(), room.to_owned(), body.to_owned());
        // Long-polls until the answer with the message (others, e.g. presence, may come first).
        polls.push(tokio::spawn(async move {
            let mut since = since;
            for _ in 0..10 {
                let sync = user.sync(Some(&since), 10_000, None).await?;
                let joined = &sync["rooms"]["join"][room.as_str()];
                if bodies(&timeline(&sync, &room)).contains(&body) {
                    return Ok(joined["unread_notifications"]["notification_count"].clone());
                }
                since = next_batch(&sync)?;
            }
            anyhow::bail!("{body} never came")
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let id = sender.send_message(room, body).await?;
    let mut counts = Vec::new();
    for poll in polls {
        counts.push(poll.await??);
    }
    Ok((counts, id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_users_tokens_rooms_and_messages() -> Result<()> {
    let mut server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let room = alice.create_room(json!({ "name": "Durable" })).await?;
    for i in 0..20 {
        alice.send_message(&room, &format!("keep {i}")).await?;
    }
    let before = alice.sync(None, 0, None).await?;
    server.restart().await?;
    let (status, _) = alice.get("/_matrix/client/v3/account/whoami").await?;
    ensure!(status == 200, "the access token survives a restart");
    let history = alice.all_messages(&room, 7).await?;
    let expected: Vec<String> = (0..20).map(|i| format!("keep {i}")).collect();
    ensure!(bodies(&history) == expected, "history after restart: {:?}", bodies(&history));
    let (_, joined) = alice.get("/_matrix/client/v3/joined_rooms").await?;
    ensure!(joined["joined_rooms"] == json!([room]), "the room is still joined after restart: {joined}");
    let (_, name) = alice.get(&format!("/_matrix/client/v3/rooms/{}/state/m.room.name", enc(&room))).await?;
    ensure!(name["name"] == "Durable", "room state survives: {name}");
    let fresh = alice.sync(None, 0, None).await?;
    ensure!(
        bodies(&timeline(&fresh, &room)).last().map(String::as_str) == Some("keep 19"),
        "an initial sync after restart shows the history: {}",
        fresh["rooms"]
    );
    let since = before["next_batch"].as_str().context("next_batch")?;
    alice.send_message(&room, "after restart").await?;
    let sync = alice.sync(Some(since), 0, None).await?;
    ensure!(bodies(&timeline(&sync, &room)) == ["after restart"], "an old sync token continues after restart: {sync}");
    server.login("alice").await.context("the password still works after restart")?;
    let bob = server.register("bob").await.context("registration works after restart")?;
    let (status, body) = bob.join(&room).await?;
    ensure!(status == 403, "a private room stays private after restart: {status} {body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_users_disappear_from_sync_history_and_invites() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let troll = server.register("troll").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    troll.join(&room).await?;
    let since = next_batch(&alice.sync(None, 0, None).await?)?;
    let (status, _) = alice
        .put(
            "/_matrix/client/v3/user/@alice:localhost/account_data/m.ignored_user_list",
            &json!({ "ignored_users": { "@troll:localhost": {} } }),
        )
        .await?;
    ensure!(status == 200, "ignore the troll");
    troll.send_message(&room, "noise").await?;
    alice.send_message(&room, "signal").await?;
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

/// Lazy-loaded members (Element Web's sync): an incremental sync sends the membership of a
/// sender the device has not been sent, and only once; `include_redundant_members` asks for it
/// each time; an initial sync starts afresh.
#[tokio::test]
async fn lazy_loaded_members_are_sent_once_per_device() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    ensure!(bob.join(&room).await?.0 == 200);
    let lazy = json!({ "room": { "state": { "lazy_load_members": true }, "timeline": { "limit": 10 } } });
    let redundant = json!({ "room": { "state": { "lazy_load_members": true, "include_redundant_members": true }, "timeline": { "limit": 10 } } });
    let bob_member = |sync: &serde_json::Value| -> usize {
        sync["rooms"]["join"][&room]["state"]["events"]
            .as_array()
            .map(|events| {
                events.iter().filter(|e| e["type"] == "m.room.member" && e["state_key"] == bob.user_id.as_str()).count()
            })
            .unwrap_or(0)
    };
    // An initial sync whose timeline holds nothing of bob's: his membership is not sent yet.
    for i in 0..12 {
        alice.send_message(&room, &format!("alice {i}")).await?;
    }
    let first = alice.sync(None, 0, Some(&lazy)).await?;
    ensure!(bob_member(&first) == 0, "bob has not spoken in the timeline: {first}");
    let mut since = myelin_e2e::next_batch(&first)?;

    bob.send_message(&room, "bob speaks").await?;
    let sync = alice.sync(Some(&since), 0, Some(&lazy)).await?;
    ensure!(bob_member(&sync) == 1, "bob's membership comes with his first message: {sync}");
    since = myelin_e2e::next_batch(&sync)?;
    bob.send_message(&room, "bob again").await?;
    let sync = alice.sync(Some(&since), 0, Some(&lazy)).await?;
    ensure!(bob_member(&sync) == 0, "not a second time: {sync}");
    since = myelin_e2e::next_batch(&sync)?;
    bob.send_message(&room, "and again").await?;
    let sync = alice.sync(Some(&since), 0, Some(&redundant)).await?;
    ensure!(bob_member(&sync) == 1, "include_redundant_members asks for it: {sync}");

    // A fresh start: an initial sync whose timeline has bob sends him again, and so does the
    // next message only if it had not.
    let fresh = alice.sync(None, 0, Some(&lazy)).await?;
    ensure!(bob_member(&fresh) == 1, "an initial sync sends the timeline's senders: {fresh}");
    Ok(())
}

/// After a gap (a limited incremental sync with lazy-loaded members), a member who was quiet
/// until now and whose membership did not change in the gap is sent with their first message.
#[tokio::test]
async fn a_quiet_member_who_speaks_after_a_gap_comes_with_their_membership() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    ensure!(bob.join(&room).await?.0 == 200);
    for i in 0..5 {
        alice.send_message(&room, &format!("before {i}")).await?;
    }
    let lazy = json!({ "room": { "state": { "lazy_load_members": true }, "timeline": { "limit": 2 } } });
    let first = alice.sync(None, 0, Some(&lazy)).await?;
    let has_bob = |sync: &Value| {
        state_events(sync, "join", &room)
            .iter()
            .any(|e| e["type"] == "m.room.member" && e["state_key"] == bob.user_id.as_str())
    };
    ensure!(!has_bob(&first), "bob has not spoken: {first}");
    let since = next_batch(&first)?;
    for i in 0..5 {
        alice.send_message(&room, &format!("gap {i}")).await?;
    }
    bob.send_message(&room, "finally").await?;
    let sync = alice.sync(Some(&since), 0, Some(&lazy)).await?;
    ensure!(sync["rooms"]["join"][&room]["timeline"]["limited"] == true, "a gap: {sync}");
    ensure!(has_bob(&sync), "bob's membership comes with his message: {sync}");
    Ok(())
}

/// The memberships a sync's `state` section holds for `room`: user id → membership.
fn state_members(sync: &Value, room: &str) -> Vec<(String, String)> {
    let mut members: Vec<(String, String)> = state_events(sync, "join", room)
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .map(|e| {
            (
                e["state_key"].as_str().unwrap_or_default().to_owned(),
                e["content"]["membership"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    members.sort();
    members
}

/// Sytest's "Gapped incremental syncs include all state changes" and "Old leaves are present in
/// gapped incremental syncs": with lazy-loaded members, a gap's membership changes reach the
/// client even from members who said nothing — a join it would not know of, a leave it must
/// not miss — and members it already has are not sent again.
#[tokio::test]
async fn a_gapped_lazy_sync_carries_every_membership_change_of_the_gap() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let charlie = server.register("charlie").await?;
    let dave = server.register("dave").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    for member in [&bob, &charlie] {
        ensure!(member.join(&room).await?.0 == 200);
    }
    for i in 0..10 {
        bob.send_message(&room, &format!("bob {i}")).await?;
    }
    let lazy = json!({ "room": { "state": { "lazy_load_members": true }, "timeline": { "limit": 10 } } });
    let first = alice.sync(None, 0, Some(&lazy)).await?;
    let member = |user: &myelin_e2e::Client, membership: &str| (user.user_id.to_string(), membership.to_owned());
    ensure!(
        state_members(&first, &room) == vec![member(&alice, "join"), member(&bob, "join")],
        "only the timeline's sender and alice herself: {first}"
    );

    ensure!(dave.join(&room).await?.0 == 200);
    for i in 0..20 {
        charlie.send_message(&room, &format!("charlie {i}")).await?;
    }
    let second = alice.sync(Some(&next_batch(&first)?), 0, Some(&lazy)).await?;
    ensure!(second["rooms"]["join"][&room]["timeline"]["limited"] == true, "a gap: {second}");
    ensure!(
        state_members(&second, &room) == vec![member(&charlie, "join"), member(&dave, "join")],
        "charlie speaks, dave joined in the gap without a word: {second}"
    );

    let (status, body) = dave.post(&myelin_e2e::room_path(&room, "leave"), &json!({})).await?;
    ensure!(status == 200, "{body}");
    for i in 0..20 {
        charlie.send_message(&room, &format!("charlie again {i}")).await?;
    }
    let third = alice.sync(Some(&next_batch(&second)?), 0, Some(&lazy)).await?;
    ensure!(third["rooms"]["join"][&room]["timeline"]["limited"] == true, "a gap: {third}");
    ensure!(
        state_members(&third, &room) == vec![member(&dave, "leave")],
        "only dave's leave: charlie was sent already: {third}"
    );
    Ok(())
}

/// Sytest's "When user joins and leaves a room in the same batch, the full state is still
/// included in the next sync": the client never had the room, so its leave entry carries the
/// room's state (here what the filter asks for), not only what changed since the token.
#[tokio::test]
async fn a_room_joined_and_left_between_two_syncs_comes_with_its_state() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    let (status, body) =
        alice.put(&myelin_e2e::room_path(&room, "state/a.madeup.test.state"), &json!({ "my_key": 1 })).await?;
    ensure!(status == 200, "{body}");
    let filter = json!({
        "room": {
            "timeline": { "types": [] },
            "state": { "types": ["a.madeup.test.state"] },
            "ephemeral": { "types": [] },
            "include_leave": true,
        },
        "presence": { "types": [] },
    });
    let first = bob.sync(None, 0, Some(&filter)).await?;
    ensure!(bob.join(&room).await?.0 == 200);
    let (status, body) = bob.post(&myelin_e2e::room_path(&room, "leave"), &json!({})).await?;
    ensure!(status == 200, "{body}");
    let sync = bob.sync(Some(&next_batch(&first)?), 0, Some(&filter)).await?;
    let state = state_events(&sync, "leave", &room);
    ensure!(state.len() == 1, "the room's state, as the filter asks: {sync}");
    ensure!(state[0]["type"] == "a.madeup.test.state" && state[0]["content"]["my_key"] == 1, "{sync}");
    Ok(())
}

/// Sytest's "Current state appears in timeline in private history" (with many messages before
/// and after): somebody who left a `joined`-visibility room and came back sees, in the timeline,
/// the join of a member who arrived while they were away — it is the room's current state —
/// though not the messages they could not read, even when those fill many timeline pages.
#[tokio::test]
async fn current_state_from_an_absence_is_in_the_timeline_whatever_the_history_visibility() -> Result<()> {
    let server = TestServer::start().await?;
    let creator = server.register("creator").await?;
    let invitee = server.register("invitee").await?;
    for (messages_before, messages_after) in [(0, 0), (30, 0), (0, 30)] {
        let syncer = server.register(&format!("syncer{messages_before}x{messages_after}")).await?;
        let room = creator.create_room(json!({ "preset": "public_chat" })).await?;
        ensure!(syncer.join(&room).await?.0 == 200);
        let (status, body) = creator
            .put(
                &myelin_e2e::room_path(&room, "state/m.room.history_visibility"),
                &json!({ "history_visibility": "joined" }),
            )
            .await?;
        ensure!(status == 200, "{body}");
        let (status, body) =
            creator.post(&myelin_e2e::room_path(&room, "invite"), &json!({ "user_id": invitee.user_id })).await?;
        ensure!(status == 200, "{body}");
        let first = syncer.sync(None, 0, None).await?;
        for i in 0..messages_before {
            creator.send_message(&room, &format!("before {i}")).await?;
        }
        let (status, body) = syncer.post(&myelin_e2e::room_path(&room, "leave"), &json!({})).await?;
        ensure!(status == 200, "{body}");
        ensure!(invitee.join(&room).await?.0 == 200);
        for i in 0..messages_after {
            creator.send_message(&room, &format!("while away {i}")).await?;
        }
        ensure!(syncer.join(&room).await?.0 == 200);
        let sync = syncer.sync(Some(&next_batch(&first)?), 0, None).await?;
        let events = timeline(&sync, &room);
        ensure!(
            events.iter().any(|e| e["type"] == "m.room.member"
                && e["state_key"] == invitee.user_id.as_str()
                && e["content"]["membership"] == "join"),
            "({messages_before} before, {messages_after} after) the invitee's join is in the timeline: {sync}"
        );
        ensure!(
            !bodies(&events).iter().any(|b| b.starts_with("while away")),
            "what was said while away stays hidden: {sync}"
        );
    }
    Ok(())
}

/// A state change the timeline filter leaves out of an incremental sync still reaches the
/// client, in the state section; and a filtered timeline is filled from older pages, not left
/// short by the events the filter dropped.
#[tokio::test]
async fn state_the_timeline_filter_leaves_out_comes_in_the_state_section() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    let only_messages = json!({ "room": { "timeline": { "types": ["m.room.message"], "limit": 3 } } });
    for i in 0..3 {
        alice.send_message(&room, &format!("early {i}")).await?;
    }
    for i in 0..5 {
        let (status, body) = alice
            .put(&myelin_e2e::room_path(&room, "state/m.room.topic"), &json!({ "topic": format!("t{i}") }))
            .await?;
        ensure!(status == 200, "{body}");
    }
    let first = alice.sync(None, 0, Some(&only_messages)).await?;
    ensure!(
        bodies(&timeline(&first, &room)) == ["early 0", "early 1", "early 2"],
        "the messages from before the topic changes fill the timeline: {first}"
    );
    let (status, body) =
        alice.put(&myelin_e2e::room_path(&room, "state/m.room.name"), &json!({ "name": "Renamed" })).await?;
    ensure!(status == 200, "{body}");
    alice.send_message(&room, "after the rename").await?;
    let sync = alice.sync(Some(&next_batch(&first)?), 0, Some(&only_messages)).await?;
    ensure!(bodies(&timeline(&sync, &room)) == ["after the rename"], "{sync}");
    ensure!(
        state_events(&sync, "join", &room)
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Renamed"),
        "the rename the filter kept out of the timeline: {sync}"
    );
    Ok(())
}
