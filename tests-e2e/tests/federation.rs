//! Rooms across two real Myelin servers on one machine, driven only through the client API:
//! each server has its built-in TLS federation listener (self-signed certificate, server name
//! `127.0.0.1:<federation port>`), accepts the other's certificate and may reach loopback.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use myelin_e2e::{Client, TestServer, bodies, enc, errcode, room_path};
use serde_json::{Value, json};

/// How long a message may take to cross (the sender's queue runs at once; this is slack for CI).
const CROSSING: Duration = Duration::from_secs(20);

/// Waits until `check` holds for the messages `client` sees in `room`.
async fn wait_for_messages(
    client: &Client,
    room: &str,
    what: &str,
    check: impl Fn(&[String]) -> bool,
) -> Result<Vec<String>> {
    let deadline = Instant::now() + CROSSING;
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
    wait_for_messages(&alice, &room, "A has everything Bob sent", |m| expected_on_a.iter().all(|e| m.contains(e)))
        .await
        .with_context(|| format!("A's log:\n{}\nB's log:\n{}", a.log(), b.log()))?;
    let expected_on_b: Vec<String> = (0..10).map(|i| format!("alice {i}")).collect();
    wait_for_messages(&bob, &room, "B caught up with Alice", |m| expected_on_b.iter().all(|e| m.contains(e)))
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
