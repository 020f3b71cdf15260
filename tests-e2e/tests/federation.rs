//! Rooms across two real Myelin servers on one machine, driven only through the client API:
//! each server has its built-in TLS federation listener (self-signed certificate, server name
//! `127.0.0.1:<federation port>`), accepts the other's certificate and may reach loopback.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use myelin_e2e::{Client, TestServer, bodies, enc, errcode, room_path};
use serde_json::json;

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
