//! Rooms across two real Myelin servers on one machine, driven only through the client API:
//! each server has its built-in TLS federation listener (self-signed certificate, server name
//! `127.0.0.1:<federation port>`), accepts the other's certificate and may reach loopback.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use myelin_e2e::{Client, TestServer, bodies, check_whole_history, enc, errcode, next_batch, room_path, timeline};
use serde_json::{Value, json};

/// How long a message may take to cross (the sender's queue runs at once; this is slack for CI).
const CROSSING: Duration = Duration::from_secs(20);
/// How long a server back from a crash may take to catch up: a federation request cut by the
/// crash times out (30 s) before the sender backs off and retries.
const CATCH_UP: Duration = Duration::from_secs(75);

/// Waits until `check` holds for the messages `client` sees in `room`.
async fn wait_for_messages(
    client: &Client,
    room: &str,
    what: &str,
    check: impl Fn(&[String]) -> bool,
) -> Result<Vec<String>> {
    wait_for_messages_within(client, room, what, CROSSING, check).await
}

async fn wait_for_messages_within(
    client: &Client,
    room: &str,
    what: &str,
    within: Duration,
    check: impl Fn(&[String]) -> bool,
) -> Result<Vec<String>> {
    let deadline = Instant::now() + within;
    loop {
        let messages = bodies(&client.all_messages(room, 50).await?);
        if check(&messages) {
            return Ok(messages);
        }
        if Instant::now() > deadline {
            bail!("{what}: still {messages:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The joined members of `room` as `client` sees them.
async fn joined_members(client: &Client, room: &str) -> Result<Vec<String>> {
    let (status, body) = client.get(&room_path(room, "joined_members")).await?;
    if status != 200 {
        bail!("joined_members: {status} {body}");
    }
    let mut members: Vec<String> = body["joined"].as_object().context("joined")?.keys().cloned().collect();
    members.sort();
    Ok(members)
}

async fn wait_for_members(client: &Client, room: &str, expected: &[&str]) -> Result<()> {
    let deadline = Instant::now() + CROSSING;
    let mut expected: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
    expected.sort();
    loop {
        let members = joined_members(client, room).await?;
        if members == expected {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("members: expected {expected:?}, still {members:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Alice on A makes a room of `version`; Bob on B joins it through A; they talk both ways; Bob
/// leaves and A sees it.
async fn two_servers_share_a_room(version: &str) -> Result<()> {
    let a = TestServer::start_federating().await?;
    let b = TestServer::start_federating().await?;
    let alice = a.register("alice").await?;
    let bob = b.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat", "room_version": version })).await?;

    let (status, body) = bob
        .post(&format!("/_matrix/client/v3/join/{}?server_name={}", enc(&room), enc(a.server_name())), &json!({}))
        .await?;
    if status != 200 {
        bail!("join over federation: {status} {body}\nA's log:\n{}\nB's log:\n{}", a.log(), b.log());
    }
    assert_eq!(body["room_id"], room.as_str());
    let both = [a.user_id("alice"), b.user_id("bob")];
    let both: Vec<&str> = both.iter().map(String::as_str).collect();
    wait_for_members(&bob, &room, &both).await.context("B sees both members")?;
    wait_for_members(&alice, &room, &both).await.context("A sees Bob join")?;

    alice.send_message(&room, "hello from A").await?;
    wait_for_messages(&bob, &room, "Bob sees Alice's message", |m| m.iter().any(|b| b == "hello from A")).await?;
    bob.send_message(&room, "hello from B").await?;
    wait_for_messages(&alice, &room, "Alice sees Bob's message", |m| m.iter().any(|b| b == "hello from B")).await?;
    // A burst from both sides arrives complete and in each sender's order.
    for i in 0..5 {
        alice.send_message(&room, &format!("a{i}")).await?;
        bob.send_message(&room, &format!("b{i}")).await?;
    }
    for (client, who) in [(&alice, "Alice"), (&bob, "Bob")] {
        let seen = wait_for_messages(client, &room, &format!("{who} sees the burst"), |m| {
            (0..5).all(|i| m.contains(&format!("a{i}")) && m.contains(&format!("b{i}")))
        })
        .await
        .with_context(|| format!("A's log:\n{}\nB's log:\n{}", a.log(), b.log()))?;
        for prefix in ["a", "b"] {
            let order: Vec<&String> = seen.iter().filter(|m| m.len() == 2 && m.starts_with(prefix)).collect();
            let expected: Vec<String> = (0..5).map(|i| format!("{prefix}{i}")).collect();
            assert_eq!(order, expected.iter().collect::<Vec<_>>(), "{who} sees {prefix}… in order");
        }
    }

    // Bob's sync shows the room and Alice's messages (the room is on his server now).
    let sync = bob.sync(None, 0, None).await?;
    assert!(sync["rooms"]["join"][&room].is_object(), "the room is in Bob's sync: {sync}");

    let (status, body) = bob.post(&room_path(&room, "leave"), &json!({})).await?;
    assert_eq!(status, 200, "leave: {body}");
    wait_for_members(&alice, &room, &[a.user_id("alice").as_str()]).await.context("A sees Bob leave")?;
    Ok(())
}

#[tokio::test]
async fn two_servers_share_a_version_10_room() -> Result<()> {
    two_servers_share_a_room("10").await
}

#[tokio::test]
async fn two_servers_share_a_version_11_room() -> Result<()> {
    two_servers_share_a_room("11").await
}

#[tokio::test]
async fn two_servers_share_a_version_12_room() -> Result<()> {
    two_servers_share_a_room("12").await
}

/// Joining a room that does not exist, or through a server that is not in it, fails cleanly.
#[tokio::test]
async fn joining_an_unknown_remote_room_fails_cleanly() -> Result<()> {
    let a = TestServer::start_federating().await?;
    let b = TestServer::start_federating().await?;
    let bob = b.register("bob").await?;
    let missing = format!("!nothere:{}", a.server_name());
    let (status, body) = bob
        .post(&format!("/_matrix/client/v3/join/{}?server_name={}", enc(&missing), enc(a.server_name())), &json!({}))
        .await?;
    assert_eq!(status, 404, "{body}");
    assert_eq!(errcode(&body), "M_NOT_FOUND");
    Ok(())
}

/// Alice on A and Bob on B share a room; returns their clients and the room id.
async fn shared_room(a: &TestServer, b: &TestServer, version: &str) -> Result<(Client, Client, String)> {
    let alice = a.register("alice").await?;
    let bob = b.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat", "room_version": version })).await?;
    let (status, body) = bob
        .post(&format!("/_matrix/client/v3/join/{}?server_name={}", enc(&room), enc(a.server_name())), &json!({}))
        .await?;
    if status != 200 {
        bail!("join over federation: {status} {body}");
    }
    let both = [a.user_id("alice"), b.user_id("bob")];
    wait_for_members(&alice, &room, &[both[0].as_str(), both[1].as_str()]).await?;
    Ok((alice, bob, room))
}

/// B is killed with `kill -9` right after Bob's sends were acknowledged, Alice goes on talking
/// while it is down; once B is back, each side has every message the other acknowledged.
#[tokio::test]
async fn a_server_killed_during_traffic_catches_up_and_loses_nothing() -> Result<()> {
    let a = TestServer::start_federating().await?;
    let mut b = TestServer::start_federating().await?;
    let (alice, bob, room) = shared_room(&a, &b, "12").await?;
    for i in 0..5 {
        bob.send_message(&room, &format!("bob {i}")).await?;
    }
    b.kill9();
    for i in 0..10 {
        alice.send_message(&room, &format!("alice {i}")).await?;
    }
    b.start_again().await?;
    // Bob's first message after the restart tells A that B is back (its sender stops waiting).
    bob.send_message(&room, "bob is back").await?;
    let expected_on_a: Vec<String> = (0..5).map(|i| format!("bob {i}")).chain(["bob is back".to_owned()]).collect();
    // A request cut by the kill may leave the sender waiting out its timeout and a backoff.
    wait_for_messages_within(&alice, &room, "A has everything Bob sent", CATCH_UP, |m| {
        expected_on_a.iter().all(|e| m.contains(e))
    })
    .await
    .with_context(|| format!("A's log:\n{}\nB's log:\n{}", a.log(), b.log()))?;
    let expected_on_b: Vec<String> = (0..10).map(|i| format!("alice {i}")).collect();
    wait_for_messages_within(&bob, &room, "B caught up with Alice", CATCH_UP, |m| {
        expected_on_b.iter().all(|e| m.contains(e))
    })
    .await
    .with_context(|| format!("A's log:\n{}\nB's log:\n{}", a.log(), b.log()))?;
    Ok(())
}

/// The room's current state as event ids (sorted), as a member sees it.
async fn state_ids(client: &Client, room: &str) -> Result<Vec<String>> {
    let (status, state) = client.get(&room_path(room, "state")).await?;
    if status != 200 {
        bail!("state: {status} {state}");
    }
    let mut ids: Vec<String> =
        state.as_array().context("state")?.iter().filter_map(|e| e["event_id"].as_str().map(str::to_owned)).collect();
    ids.sort();
    Ok(ids)
}

/// Alice and Bob (both with power 100) change the power levels and the topic at the same moment,
/// several times: each pair forks the room; both servers resolve every fork the same way and
/// end with identical state.
#[tokio::test]
async fn concurrent_conflicting_state_changes_converge_on_both_servers() -> Result<()> {
    let a = TestServer::start_federating().await?;
    let b = TestServer::start_federating().await?;
    let (alice, bob, room) = shared_room(&a, &b, "11").await?;
    let bob_id = b.user_id("bob");
    let (_, mut levels) = alice.get(&room_path(&room, "state/m.room.power_levels/")).await?;
    levels["users"][&bob_id] = 100.into();
    let (status, body) = alice.put(&room_path(&room, "state/m.room.power_levels/"), &levels).await?;
    assert_eq!(status, 200, "{body}");
    // Bob's server has the promotion before the race starts.
    let deadline = Instant::now() + CROSSING;
    loop {
        let (_, seen) = bob.get(&room_path(&room, "state/m.room.power_levels/")).await?;
        if seen["users"][&bob_id] == 100 {
            break;
        }
        if Instant::now() > deadline {
            bail!("B never saw Bob's promotion: {seen}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for round in 0..5 {
        let mut mine = levels.clone();
        mine["events_default"] = (10 + round).into();
        let mut theirs = levels.clone();
        theirs["events_default"] = (20 + round).into();
        let pl_path = room_path(&room, "state/m.room.power_levels/");
        let topic_path = room_path(&room, "state/m.room.topic/");
        let (alice_topic, bob_topic) =
            (json!({ "topic": format!("alice {round}") }), json!({ "topic": format!("bob {round}") }));
        let (x, y, z, w) = tokio::join!(
            alice.put(&pl_path, &mine),
            bob.put(&pl_path, &theirs),
            alice.put(&topic_path, &alice_topic),
            bob.put(&topic_path, &bob_topic),
        );
        for (who, result) in [("alice PL", x), ("bob PL", y), ("alice topic", z), ("bob topic", w)] {
            let (status, body) = result?;
            assert_eq!(status, 200, "{who} in round {round}: {body}");
        }
    }
    // Quiet now: both servers must reach one and the same state.
    let deadline = Instant::now() + CROSSING;
    loop {
        let (on_a, on_b) = (state_ids(&alice, &room).await?, state_ids(&bob, &room).await?);
        if on_a == on_b {
            let (_, pl_a) = alice.get(&room_path(&room, "state/m.room.power_levels/")).await?;
            let (_, pl_b) = bob.get(&room_path(&room, "state/m.room.power_levels/")).await?;
            assert_eq!(pl_a, pl_b);
            return Ok(());
        }
        if Instant::now() > deadline {
            let describe = |state: Value, others: &[String]| -> Vec<String> {
                state
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|e| e["event_id"].as_str().is_some_and(|id| !others.contains(&id.to_owned())))
                    .map(|e| format!("{} {} by {}: {}", e["type"], e["state_key"], e["sender"], e["content"]))
                    .collect()
            };
            let (_, state_a) = alice.get(&room_path(&room, "state")).await?;
            let (_, state_b) = bob.get(&room_path(&room, "state")).await?;
            bail!(
                "the servers disagree on the state:\nonly on A: {:?}\nonly on B: {:?}\nA's log:\n{}\nB's log:\n{}",
                describe(state_a, &on_b),
                describe(state_b, &on_a),
                a.log(),
                b.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The user's joined rooms.
async fn joined_rooms(client: &Client) -> Result<Vec<String>> {
    let (status, body) = client.get("/_matrix/client/v3/joined_rooms").await?;
    if status != 200 {
        bail!("joined_rooms: {status} {body}");
    }
    Ok(body["joined_rooms"].as_array().into_iter().flatten().filter_map(|r| r.as_str().map(str::to_owned)).collect())
}

/// Waits until the user's sync shows `room` in `section` (`invite`, `knock`, `join`, `leave`) and
/// answers that room's entry.
async fn wait_for_sync_section(client: &Client, room: &str, section: &str) -> Result<serde_json::Value> {
    let deadline = Instant::now() + CROSSING;
    loop {
        let sync = client.sync(None, 0, None).await?;
        let entry = &sync["rooms"][section][room];
        if entry.is_object() {
            return Ok(entry.clone());
        }
        if Instant::now() > deadline {
            bail!("{room} never showed in rooms.{section}: {sync}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A member's membership as `client` sees it in the room's state.
async fn membership_of(client: &Client, room: &str, user: &str) -> Result<String> {
    let (status, body) = client.get(&room_path(room, &format!("state/m.room.member/{}", enc(user)))).await?;
    Ok(if status == 200 { body["membership"].as_str().unwrap_or_default().to_owned() } else { format!("{status}") })
}

async fn wait_for_membership(client: &Client, room: &str, user: &str, expected: &str) -> Result<()> {
    let deadline = Instant::now() + CROSSING;
    loop {
        let found = membership_of(client, room, user).await?;
        if found == expected {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{user} in {room}: expected {expected}, still {found}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Invites across servers: rejected (this server is not in the room, so through the inviter's),
/// accepted (joined through the inviter's server, no `via`); a power-level change crosses; kick and
/// ban of a remote member, after which the banned user's join is refused.
async fn invites_kicks_and_bans_across_servers(version: &str) -> Result<()> {
    let a = TestServer::start_federating().await?;
    let b = TestServer::start_federating().await?;
    let logs = || format!("A's log:\n{}\nB's log:\n{}", a.log(), b.log());
    let alice = a.register("alice").await?;
    let bob = b.register("bob").await?;
    let carol = b.register("carol").await?;
    let room =
        alice.create_room(json!({ "preset": "private_chat", "room_version": version, "name": "Secret" })).await?;
    let (alice_id, bob_id, carol_id) = (a.user_id("alice"), b.user_id("bob"), b.user_id("carol"));

    // Carol is invited and rejects: B is not in the room, so the leave goes through A.
    let (status, body) = alice.post(&room_path(&room, "invite"), &json!({ "user_id": carol_id })).await?;
    if status != 200 {
        bail!("inviting a remote user: {status} {body}\n{}", logs());
    }
    let invite = wait_for_sync_section(&carol, &room, "invite").await.with_context(logs)?;
    let state = invite["invite_state"]["events"].as_array().context("invite_state")?.clone();
    assert!(state.iter().any(|e| e["type"] == "m.room.create"), "the create event is in the invite state: {state:?}");
    assert!(state.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Secret"), "{state:?}");
    assert!(
        state.iter().any(|e| e["type"] == "m.room.member"
            && e["state_key"] == carol_id.as_str()
            && e["content"]["membership"] == "invite"),
        "{state:?}"
    );
    wait_for_membership(&alice, &room, &carol_id, "invite").await?;
    let (status, body) = carol.post(&room_path(&room, "leave"), &json!({})).await?;
    if status != 200 {
        bail!("rejecting a remote invite: {status} {body}\n{}", logs());
    }
    wait_for_membership(&alice, &room, &carol_id, "leave").await.context("A sees the rejection")?;
    let sync = carol.sync(None, 0, None).await?;
    assert!(sync["rooms"]["invite"].get(&room).is_none(), "the invite is gone: {sync}");

    // Bob is invited and accepts, joining through the inviter's server without naming it.
    let (status, body) = alice.post(&room_path(&room, "invite"), &json!({ "user_id": bob_id })).await?;
    assert_eq!(status, 200, "invite: {body}");
    wait_for_sync_section(&bob, &room, "invite").await.with_context(logs)?;
    let (status, body) = bob.post(&room_path(&room, "join"), &json!({})).await?;
    if status != 200 {
        bail!("accepting a remote invite: {status} {body}\n{}", logs());
    }
    let both = [alice_id.as_str(), bob_id.as_str()];
    wait_for_members(&alice, &room, &both).await.with_context(logs)?;
    wait_for_members(&bob, &room, &both).await.with_context(logs)?;
    alice.send_message(&room, "welcome").await?;
    wait_for_messages(&bob, &room, "Bob sees Alice", |m| m.iter().any(|b| b == "welcome")).await?;

    // B is in the room now: Carol's second invite reaches B as a room event, and she joins and
    // leaves on B itself.
    let (status, body) = alice.post(&room_path(&room, "invite"), &json!({ "user_id": carol_id })).await?;
    assert_eq!(status, 200, "invite while B is in the room: {body}");
    let invite = wait_for_sync_section(&carol, &room, "invite").await.with_context(logs)?;
    assert!(invite["invite_state"]["events"].as_array().is_some_and(|e| e.iter().any(|e| e["type"] == "m.room.name")));
    let (status, body) = carol.post(&room_path(&room, "join"), &json!({})).await?;
    assert_eq!(status, 200, "join: {body}\n{}", logs());
    wait_for_members(&alice, &room, &[alice_id.as_str(), bob_id.as_str(), carol_id.as_str()]).await?;
    let (status, body) = carol.post(&room_path(&room, "leave"), &json!({})).await?;
    assert_eq!(status, 200, "leave: {body}");
    wait_for_members(&alice, &room, &both).await?;

    // A power-level change on A is seen on B.
    let (status, mut levels) = alice.get(&room_path(&room, "state/m.room.power_levels/")).await?;
    assert_eq!(status, 200, "{levels}");
    levels["users"][&bob_id] = json!(50);
    let (status, body) = alice.put(&room_path(&room, "state/m.room.power_levels/"), &levels).await?;
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + CROSSING;
    loop {
        let (_, seen) = bob.get(&room_path(&room, "state/m.room.power_levels/")).await?;
        if seen["users"][&bob_id] == 50 {
            break;
        }
        if Instant::now() > deadline {
            bail!("B never saw the power levels: {seen}\n{}", logs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Kicked: both servers see it; Bob may come back.
    let (status, body) = alice.post(&room_path(&room, "kick"), &json!({ "user_id": bob_id, "reason": "out" })).await?;
    assert_eq!(status, 200, "kick: {body}");
    wait_for_members(&alice, &room, &[alice_id.as_str()]).await?;
    let deadline = Instant::now() + CROSSING;
    while joined_rooms(&bob).await?.contains(&room) {
        if Instant::now() > deadline {
            bail!("B never saw the kick\n{}", logs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = alice.post(&room_path(&room, "invite"), &json!({ "user_id": bob_id })).await?;
    assert_eq!(status, 200, "invite again: {body}");
    wait_for_membership(&alice, &room, &bob_id, "invite").await?;
    let (status, body) = bob.post(&room_path(&room, "join"), &json!({})).await?;
    if status != 200 {
        bail!("joining again after a kick: {status} {body}\n{}", logs());
    }
    wait_for_members(&alice, &room, &both).await?;

    // Banned: both servers see it, and Bob's join is refused.
    let (status, body) = alice.post(&room_path(&room, "ban"), &json!({ "user_id": bob_id })).await?;
    assert_eq!(status, 200, "ban: {body}");
    wait_for_membership(&alice, &room, &bob_id, "ban").await?;
    let deadline = Instant::now() + CROSSING;
    while joined_rooms(&bob).await?.contains(&room) {
        if Instant::now() > deadline {
            bail!("B never saw the ban\n{}", logs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = bob
        .post(&format!("/_matrix/client/v3/join/{}?server_name={}", enc(&room), enc(a.server_name())), &json!({}))
        .await?;
    assert_eq!(status, 403, "a banned user's join is refused: {body}");
    assert_eq!(membership_of(&alice, &room, &bob_id).await?, "ban");
    Ok(())
}

#[tokio::test]
async fn invites_kicks_and_bans_across_servers_version_10() -> Result<()> {
    invites_kicks_and_bans_across_servers("10").await
}

#[tokio::test]
async fn invites_kicks_and_bans_across_servers_version_12() -> Result<()> {
    invites_kicks_and_bans_across_servers("12").await
}

/// Bob knocks on a room on A (his sync shows the knock with the room's state), Alice sees the
/// knock and invites him, he joins.
#[tokio::test]
async fn knock_then_invite_across_servers() -> Result<()> {
    let a = TestServer::start_federating().await?;
    let b = TestServer::start_federating().await?;
    let logs = || format!("A's log:\n{}\nB's log:\n{}", a.log(), b.log());
    let alice = a.register("alice").await?;
    let bob = b.register("bob").await?;
    let room = alice
        .create_room(json!({
            "room_version": "12",
            "name": "Knock here",
            "initial_state": [{ "type": "m.room.join_rules", "state_key": "", "content": { "join_rule": "knock" } }],
        }))
        .await?;
    let (alice_id, bob_id) = (a.user_id("alice"), b.user_id("bob"));
    let (status, body) = bob
        .post(
            &format!("/_matrix/client/v3/knock/{}?server_name={}", enc(&room), enc(a.server_name())),
            &json!({ "reason": "let me in" }),
        )
        .await?;
    if status != 200 {
        bail!("knocking over federation: {status} {body}\n{}", logs());
    }
    let knock = wait_for_sync_section(&bob, &room, "knock").await.with_context(logs)?;
    let state = knock["knock_state"]["events"].as_array().context("knock_state")?.clone();
    assert!(state.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Knock here"), "{state:?}");
    wait_for_membership(&alice, &room, &bob_id, "knock").await.with_context(logs)?;

    let (status, body) = alice.post(&room_path(&room, "invite"), &json!({ "user_id": bob_id })).await?;
    if status != 200 {
        bail!("inviting a knocking remote user: {status} {body}\n{}", logs());
    }
    wait_for_sync_section(&bob, &room, "invite").await.with_context(logs)?;
    let (status, body) = bob.post(&room_path(&room, "join"), &json!({})).await?;
    if status != 200 {
        bail!("joining after the invite: {status} {body}\n{}", logs());
    }
    wait_for_members(&alice, &room, &[alice_id.as_str(), bob_id.as_str()]).await.with_context(logs)?;
    Ok(())
}

/// A room's server ACL denying B (every IP literal, as both test servers are `127.0.0.1:port`):
/// A drops Bob's messages and refuses B's joins.
#[tokio::test]
async fn a_server_acl_shuts_a_server_out() -> Result<()> {
    let a = TestServer::start_federating().await?;
    let b = TestServer::start_federating().await?;
    let logs = || format!("A's log:\n{}\nB's log:\n{}", a.log(), b.log());
    let alice = a.register("alice").await?;
    let bob = b.register("bob").await?;
    let dave = b.register("dave").await?;
    let room = alice.create_room(json!({ "preset": "public_chat", "room_version": "11" })).await?;
    let join = |client: &Client| {
        let path = format!("/_matrix/client/v3/join/{}?server_name={}", enc(&room), enc(a.server_name()));
        let client = client.clone();
        async move { client.post(&path, &json!({})).await }
    };
    let (status, body) = join(&bob).await?;
    assert_eq!(status, 200, "join: {body}");
    wait_for_members(&alice, &room, &[a.user_id("alice").as_str(), b.user_id("bob").as_str()]).await?;
    bob.send_message(&room, "before").await?;
    wait_for_messages(&alice, &room, "Alice sees Bob", |m| m.iter().any(|b| b == "before")).await?;

    let acl = json!({ "allow": ["*"], "deny": [], "allow_ip_literals": false });
    let (status, body) = alice.put(&room_path(&room, "state/m.room.server_acl/"), &acl).await?;
    assert_eq!(status, 200, "{body}");
    // B is told of the ACL before anything it sends next.
    let deadline = Instant::now() + CROSSING;
    loop {
        let (status, _) = bob.get(&room_path(&room, "state/m.room.server_acl/")).await?;
        if status == 200 {
            break;
        }
        if Instant::now() > deadline {
            bail!("B never got the ACL\n{}", logs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bob.send_message(&room, "after").await?;
    alice.send_message(&room, "marker").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = bodies(&alice.all_messages(&room, 50).await?);
    assert!(!seen.iter().any(|b| b == "after"), "A drops messages from a denied server: {seen:?}");

    // Once B has no member left, a join from B must go through A, which refuses it.
    let (status, body) = bob.post(&room_path(&room, "leave"), &json!({})).await?;
    assert_eq!(status, 200, "leave: {body}");
    let (status, body) = join(&dave).await?;
    assert_eq!(status, 403, "a denied server cannot join: {body}\n{}", logs());
    assert_eq!(errcode(&body), "M_FORBIDDEN");
    Ok(())
}

/// A user's profile and a server's public room directory are asked of that server.
#[tokio::test]
async fn profiles_and_room_directories_across_servers() -> Result<()> {
    let a = TestServer::start_federating().await?;
    let b = TestServer::start_federating().await?;
    let alice = a.register("alice").await?;
    let bob = b.register("bob").await?;
    let alice_id = a.user_id("alice");
    let (status, body) = alice
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", enc(&alice_id)),
            &json!({ "displayname": "Alice A" }),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let (status, body) = bob.get(&format!("/_matrix/client/v3/profile/{}", enc(&alice_id))).await?;
    assert_eq!(status, 200, "{body}\nA's log:\n{}\nB's log:\n{}", a.log(), b.log());
    assert_eq!(body["displayname"], "Alice A");
    let (status, body) = bob.get(&format!("/_matrix/client/v3/profile/{}/displayname", enc(&alice_id))).await?;
    assert_eq!((status, body["displayname"].clone()), (200, json!("Alice A")));
    let (status, body) =
        bob.get(&format!("/_matrix/client/v3/profile/{}", enc(&format!("@nobody:{}", a.server_name())))).await?;
    assert_eq!(status, 404, "{body}");

    let room = alice
        .create_room(
            json!({ "preset": "public_chat", "visibility": "public", "name": "Lobby", "topic": "all welcome" }),
        )
        .await?;
    alice.create_room(json!({ "preset": "private_chat", "name": "Hidden" })).await?;
    let (status, body) = bob.get(&format!("/_matrix/client/v3/publicRooms?server={}", enc(a.server_name()))).await?;
    assert_eq!(status, 200, "{body}");
    let chunk = body["chunk"].as_array().context("chunk")?;
    assert_eq!(chunk.len(), 1, "only the published room: {body}");
    assert_eq!((chunk[0]["room_id"].as_str(), chunk[0]["name"].as_str()), (Some(room.as_str()), Some("Lobby")));
    let search = json!({ "filter": { "generic_search_term": "nothing like it" } });
    let (status, body) =
        bob.post(&format!("/_matrix/client/v3/publicRooms?server={}", enc(a.server_name())), &search).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["chunk"].as_array().map(Vec::len), Some(0), "{body}");
    let (status, body) = bob.get("/_matrix/client/v3/publicRooms").await?;
    assert_eq!((status, body["chunk"].as_array().map(Vec::len)), (200, Some(0)), "B's own directory: {body}");
    Ok(())
}

/// An invite from a server that no longer answers can still be rejected: the leave is recorded
/// locally only.
#[tokio::test]
async fn rejecting_an_invite_from_an_unreachable_server() -> Result<()> {
    let mut a = TestServer::start_federating().await?;
    let b = TestServer::start_federating().await?;
    let alice = a.register("alice").await?;
    let bob = b.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "private_chat", "room_version": "12" })).await?;
    let (status, body) = alice.post(&room_path(&room, "invite"), &json!({ "user_id": b.user_id("bob") })).await?;
    assert_eq!(status, 200, "invite: {body}");
    wait_for_sync_section(&bob, &room, "invite").await?;
    a.stop().await?;
    let (status, body) = bob.post(&room_path(&room, "leave"), &json!({})).await?;
    assert_eq!(status, 200, "rejecting while the inviter is down: {body}\nB's log:\n{}", b.log());
    let sync = bob.sync(None, 0, None).await?;
    assert!(sync["rooms"]["invite"].get(&room).is_none(), "the invite is gone: {sync}");
    Ok(())
}

/// Bob's server joins a room after Alice's has held it a while: paging back, Bob sees the whole
/// history from the room's creation, in order and once, fetched from A; his sync never shows it
/// as new, and what is said next reaches him as usual.
#[tokio::test]
async fn history_from_before_a_join_is_fetched_from_the_other_server() -> Result<()> {
    let a = TestServer::start_federating().await?;
    let b = TestServer::start_federating().await?;
    let alice = a.register("alice").await?;
    let bob = b.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat", "room_version": "12" })).await?;
    let history: Vec<String> = (0..45).map(|i| format!("old {i}")).collect();
    for body in &history {
        alice.send_message(&room, body).await?;
    }
    let (status, body) = bob
        .post(&format!("/_matrix/client/v3/join/{}?server_name={}", enc(&room), enc(a.server_name())), &json!({}))
        .await?;
    if status != 200 {
        bail!("join over federation: {status} {body}");
    }
    let since = next_batch(&bob.sync(None, 0, None).await?)?;
    // Pages of 10: the history comes from A in several rounds.
    check_whole_history(&bob, &room, 10, &history)
        .await
        .with_context(|| format!("A's log:\n{}\nB's log:\n{}", a.log(), b.log()))?;
    // Again: served from B now, still whole and once.
    check_whole_history(&bob, &room, 7, &history).await.context("a second time")?;

    alice.send_message(&room, "new").await?;
    wait_for_messages(&bob, &room, "Bob sees the new message", |m| m.last().is_some_and(|b| b == "new")).await?;
    let sync = bob.sync(Some(&since), 0, None).await?;
    let new: Vec<String> = bodies(&timeline(&sync, &room));
    assert_eq!(new, vec!["new"], "only the new message is new to Bob's sync");
    Ok(())
}

/// What A sends B of history: under `joined` history visibility, what was said before any user
/// of B joined goes out redacted (B learns where it sits in the DAG, not what it says), as does a
/// message redacted since; what was said after goes out whole. Bob's own view agrees.
#[tokio::test]
async fn history_is_served_to_a_server_as_its_users_may_see_it() -> Result<()> {
    let a = TestServer::start_federating().await?;
    let b = TestServer::start_federating().await?;
    let alice = a.register("alice").await?;
    let bob = b.register("bob").await?;
    let room = alice
        .create_room(json!({
            "preset": "public_chat", "room_version": "11",
            "initial_state": [{ "type": "m.room.history_visibility", "state_key": "", "content": { "history_visibility": "joined" } }],
        }))
        .await?;
    alice.send_message(&room, "before B").await?;
    let (status, body) = bob
        .post(&format!("/_matrix/client/v3/join/{}?server_name={}", enc(&room), enc(a.server_name())), &json!({}))
        .await?;
    if status != 200 {
        bail!("join over federation: {status} {body}");
    }
    let regret = alice.send_message(&room, "regret").await?;
    let (status, body) = alice.put(&room_path(&room, &format!("redact/{}/r1", enc(&regret))), &json!({})).await?;
    assert_eq!(status, 200, "redact: {body}");
    alice.send_message(&room, "after B").await?;
    let (_, page) = alice.get(&format!("{}?dir=b&limit=1", room_path(&room, "messages"))).await?;
    let newest = page["chunk"][0]["event_id"].as_str().context("newest event")?.to_owned();

    let as_b = myelin_e2e::federation::FederationIdentity::of(&b)?;
    let uri = format!("/_matrix/federation/v1/backfill/{}?v={}&limit=100", enc(&room), enc(&newest));
    let (status, answer) = as_b.request(&a, "GET", &uri, None).await?;
    assert_eq!(status, 200, "backfill: {answer}");
    let pdus = answer["pdus"].as_array().context("pdus")?;
    let messages: Vec<&Value> = pdus.iter().filter(|p| p["type"] == "m.room.message").collect();
    assert_eq!(messages.len(), 3, "every message has its place: {answer}");
    let shown: Vec<&str> = messages.iter().filter_map(|p| p["content"]["body"].as_str()).collect();
    assert_eq!(shown, vec!["after B"], "only what B's users may see goes out whole: {answer}");

    wait_for_messages(&bob, &room, "Bob sees what was said after he joined", |m| m == ["after B"]).await?;
    Ok(())
}

/// A restricted room on A, open to the members of a public room on A: Bob on B is refused until
/// he joins the public room, then joins the restricted one through A, which vouches for him and
/// signs his join; both servers see him in it.
#[tokio::test]
async fn restricted_joins_across_servers() -> Result<()> {
    let a = TestServer::start_federating().await?;
    let b = TestServer::start_federating().await?;
    let alice = a.register("alice").await?;
    let bob = b.register("bob").await?;
    let space = alice.create_room(json!({ "preset": "public_chat", "room_version": "10" })).await?;
    let room = alice.create_room(myelin_e2e::restricted_room(&space, "10")).await?;
    let join = |room: &str| {
        let path = format!("/_matrix/client/v3/join/{}?server_name={}", enc(room), enc(a.server_name()));
        let bob = &bob;
        async move { bob.post(&path, &json!({})).await }
    };

    let (status, body) = join(&room).await?;
    assert_eq!((status, errcode(&body)), (403, "M_FORBIDDEN"), "Bob is in no allowed room yet: {body}");
    let (status, body) = join(&space).await?;
    assert_eq!(status, 200, "joining the public room: {body}");
    let (status, body) = join(&room).await?;
    if status != 200 {
        bail!("restricted join through A: {status} {body}\nA's log:\n{}\nB's log:\n{}", a.log(), b.log());
    }
    let members = [a.user_id("alice"), b.user_id("bob")];
    let members: Vec<&str> = members.iter().map(String::as_str).collect();
    wait_for_members(&alice, &room, &members).await.context("A sees Bob in the restricted room")?;
    wait_for_members(&bob, &room, &members).await.context("B sees both")?;
    let (_, member) = bob.get(&room_path(&room, &format!("state/m.room.member/{}", enc(&b.user_id("bob"))))).await?;
    assert_eq!(member["join_authorised_via_users_server"], a.user_id("alice").as_str(), "{member}");
    Ok(())
}

/// B joins a room on A asking for partial state (`omit_members`) as a faster-joining server
/// would: the state comes without member events (but for the heroes of a room without a name),
/// the auth chain without what the state holds, and the servers in the room are named.
#[tokio::test]
async fn a_join_answers_partial_state_when_asked() -> Result<()> {
    let a = TestServer::start_federating().await?;
    let b = TestServer::start_federating().await?;
    let alice = a.register("alice").await?;
    let carol = a.register("carol").await?;
    let as_b = myelin_e2e::federation::FederationIdentity::of(&b)?;
    let bob = b.user_id("bob");

    for (named, version) in [(true, "10"), (false, "11")] {
        let mut body = json!({ "preset": "public_chat", "room_version": version });
        if named {
            body["name"] = "Named".into();
        }
        let room = alice.create_room(body).await?;
        let (status, joined) = carol.join(&room).await?;
        assert_eq!(status, 200, "{joined}");
        let uri = format!("/_matrix/federation/v1/make_join/{}/{}?ver={version}", enc(&room), enc(&bob));
        let (status, template) = as_b.request(&a, "GET", &uri, None).await?;
        assert_eq!(status, 200, "make_join: {template}");
        let mut event = template["event"].clone();
        event["origin_server_ts"] = 1_700_000_000_000u64.into();
        let room_version = ruma::RoomVersionId::try_from(version)?;
        let (event_id, signed) = as_b.sign_pdu(&event, &room_version)?;
        let send = |omit: &str| {
            format!("/_matrix/federation/v2/send_join/{}/{}?omit_members={omit}", enc(&room), enc(&event_id))
        };
        let (status, refused) = as_b.request(&a, "PUT", &send("perhaps"), Some(&signed)).await?;
        assert_eq!((status, errcode(&refused)), (400, "M_INVALID_PARAM"), "{refused}");
        let (status, answer) = as_b.request(&a, "PUT", &send("true"), Some(&signed)).await?;
        assert_eq!(status, 200, "send_join: {answer}");
        assert_eq!(answer["members_omitted"], true);
        assert_eq!(answer["servers_in_room"], json!([a.server_name()]), "{answer}");
        let state = answer["state"].as_array().context("state")?;
        let members: Vec<&str> =
            state.iter().filter(|e| e["type"] == "m.room.member").filter_map(|e| e["state_key"].as_str()).collect();
        if named {
            assert!(members.is_empty(), "a named room's members are omitted: {members:?}");
        } else {
            let mut members = members;
            members.sort();
            assert_eq!(members, vec![a.user_id("alice"), a.user_id("carol")], "the heroes of a room without a name");
        }
        assert!(state.iter().any(|e| e["type"] == "m.room.power_levels"), "other state is whole");
        let chain = answer["auth_chain"].as_array().context("auth chain")?;
        assert!(chain.iter().all(|e| !state.contains(e)), "the auth chain leaves out what the state holds");
        assert!(
            chain.iter().any(|e| e["type"] == "m.room.member" && e["state_key"] == a.user_id("alice").as_str())
                || !named,
            "the auth chain still holds the member events the state needs: {chain:?}"
        );
        let members = joined_members(&alice, &room).await?;
        assert!(members.contains(&bob), "A placed the join: {members:?}");
    }
    Ok(())
}

/// Logs of a server that say when a room joined with partial state became whole.
const PARTIAL_STATE_LOG: (&str, &str) = ("RUST_LOG", "warn,myelin_service::federation::partial_state=info");

/// Bob's server B joins a room on A with partial state (A leaves the members out): Bob is in at
/// once; the member list he asks for is whole (it waits for the state B fetches behind the
/// join), with Dave of a third server C that B learnt of only from A's list of servers; messages
/// cross from a member B had no event of, and from Bob to both other servers.
#[tokio::test]
async fn joining_with_partial_state_then_the_whole_state() -> Result<()> {
    let a = TestServer::start_federating().await?;
    let b = TestServer::start_federating_with_env(&[PARTIAL_STATE_LOG]).await?;
    let c = TestServer::start_federating().await?;
    let alice = a.register("alice").await?;
    let room = alice.create_room(json!({ "preset": "public_chat", "name": "Big room", "room_version": "11" })).await?;
    let mut everyone = vec![a.user_id("alice")];
    let mut locals = Vec::new();
    for i in 0..6 {
        let user = a.register(&format!("member{i}")).await?;
        let (status, body) = user.join(&room).await?;
        assert_eq!(status, 200, "{body}");
        everyone.push(a.user_id(&format!("member{i}")));
        locals.push(user);
    }
    let dave = c.register("dave").await?;
    let join_path = |server: &TestServer| {
        format!("/_matrix/client/v3/join/{}?server_name={}", enc(&room), enc(server.server_name()))
    };
    let (status, body) = dave.post(&join_path(&a), &json!({})).await?;
    assert_eq!(status, 200, "Dave joins through A: {body}");
    everyone.push(c.user_id("dave"));

    let bob = b.register("bob").await?;
    let (status, body) = bob.post(&join_path(&a), &json!({})).await?;
    if status != 200 {
        bail!("join with partial state: {status} {body}\nA's log:\n{}\nB's log:\n{}", a.log(), b.log());
    }
    everyone.push(b.user_id("bob"));
    // A member B had no event of speaks at once.
    locals[3].send_message(&room, "from a member left out").await?;
    let all: Vec<&str> = everyone.iter().map(String::as_str).collect();
    wait_for_members(&bob, &room, &all).await.with_context(|| format!("B's log:\n{}", b.log()))?;
    wait_for_messages(&bob, &room, "Bob sees the member left out", |m| m.iter().any(|b| b == "from a member left out"))
        .await?;
    bob.send_message(&room, "from B").await?;
    for (client, who) in [(&alice, "Alice on A"), (&dave, "Dave on C")] {
        wait_for_messages(client, &room, &format!("{who} sees Bob"), |m| m.iter().any(|b| b == "from B"))
            .await
            .with_context(|| format!("B's log:\n{}", b.log()))?;
    }
    assert!(b.log().contains("the room's whole state is known"), "B joined with partial state:\n{}", b.log());
    Ok(())
}

/// A space on A whose rooms B holds nothing of: once Bob joined the space through A, his
/// server asks A for the children's summaries (`/hierarchy` over federation): the public room,
/// and the room open to the space's members (Bob is one); not the invite-only room.
#[tokio::test]
async fn a_space_hierarchy_across_servers() -> Result<()> {
    let a = TestServer::start_federating().await?;
    let b = TestServer::start_federating().await?;
    let alice = a.register("alice").await?;
    let bob = b.register("bob").await?;
    let space = alice
        .create_room(json!({ "preset": "public_chat", "name": "Space", "room_version": "10", "creation_content": { "type": "m.space" } }))
        .await?;
    let public = alice.create_room(json!({ "preset": "public_chat", "name": "Public" })).await?;
    let mut members_only = myelin_e2e::restricted_room(&space, "10");
    members_only["name"] = "Members only".into();
    let members_only = alice.create_room(members_only).await?;
    let private = alice.create_room(json!({ "preset": "private_chat", "name": "Private" })).await?;
    for child in [&public, &members_only, &private] {
        let path = room_path(&space, &format!("state/m.space.child/{}", enc(child)));
        let (status, body) = alice.put(&path, &json!({ "via": [a.server_name()] })).await?;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = bob
        .post(&format!("/_matrix/client/v3/join/{}?server_name={}", enc(&space), enc(a.server_name())), &json!({}))
        .await?;
    assert_eq!(status, 200, "{body}");
    let (status, body) = bob.get(&format!("/_matrix/client/v1/rooms/{}/hierarchy", enc(&space))).await?;
    assert_eq!(status, 200, "{body}");
    let mut names: Vec<&str> =
        body["rooms"].as_array().into_iter().flatten().filter_map(|r| r["name"].as_str()).collect();
    names.sort();
    assert_eq!(names, vec!["Members only", "Public", "Space"], "{body}\nB's log:\n{}", b.log());
    let public_chunk =
        body["rooms"].as_array().into_iter().flatten().find(|r| r["name"] == "Public").context("public")?;
    assert_eq!(public_chunk["num_joined_members"], 1);
    assert!(public_chunk.get("allowed_room_ids").is_none(), "server-only fields are not shown to clients");
    Ok(())
}
