//! Myelin and a real Synapse (from PyPI) federating on one machine, driven only through their
//! client APIs: a Synapse user joins a room that lives on Myelin and a Myelin user joins a room
//! that lives on Synapse; messages cross both ways; leaving is seen on the other side.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use myelin_e2e::{Client, SynapsePeer, TestServer, bodies, enc, room_path};
use serde_json::json;

/// Slack for a message to cross (Synapse's sender batches; CI machines are slow).
const CROSSING: Duration = Duration::from_secs(30);

async fn wait_until<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<String>>>,
{
    let deadline = Instant::now() + CROSSING;
    loop {
        let last = match check().await? {
            None => return Ok(()),
            Some(last) => last,
        };
        if Instant::now() > deadline {
            bail!("{what}: still {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn sees_message(client: &Client, room: &str, body: &str, who: &str) -> Result<()> {
    wait_until(&format!("{who} sees {body:?}"), || async {
        let seen = bodies(&client.all_messages(room, 50).await?);
        Ok((!seen.iter().any(|b| b == body)).then(|| format!("{seen:?}")))
    })
    .await
}

async fn sees_members(client: &Client, room: &str, expected: &[String], who: &str) -> Result<()> {
    let mut expected = expected.to_vec();
    expected.sort();
    wait_until(&format!("{who} sees members {expected:?}"), || async {
        let (status, body) = client.get(&room_path(room, "joined_members")).await?;
        let mut members: Vec<String> =
            body["joined"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        members.sort();
        Ok((status != 200 || members != expected).then(|| format!("{status} {members:?}")))
    })
    .await
}

async fn join_via(client: &Client, room: &str, server: &str) -> Result<(u16, serde_json::Value)> {
    client.post(&format!("/_matrix/client/v3/join/{}?server_name={}", enc(room), enc(server)), &json!({})).await
}

async fn myelin_and_synapse_share_rooms(version: &str) -> Result<()> {
    let myelin = TestServer::start_federating().await?;
    let synapse = SynapsePeer::start().await?;
    let alice = myelin.register("alice").await?;
    let sam = synapse.register("sam").await?;
    let logs = || format!("Myelin's log:\n{}\nSynapse's log:\n{}", myelin.log(), synapse.log());

    // A room on Myelin, joined from Synapse.
    let room = alice.create_room(json!({ "preset": "public_chat", "room_version": version })).await?;
    let (status, body) = join_via(&sam, &room, myelin.server_name()).await?;
    if status != 200 {
        bail!("Synapse user joining a Myelin room: {status} {body}\n{}", logs());
    }
    let members = vec![myelin.user_id("alice"), synapse.user_id("sam")];
    sees_members(&alice, &room, &members, "Myelin").await.with_context(logs)?;
    sees_members(&sam, &room, &members, "Synapse").await.with_context(logs)?;
    alice.send_message(&room, "from Myelin").await?;
    sees_message(&sam, &room, "from Myelin", "Synapse").await.with_context(logs)?;
    sam.send_message(&room, "from Synapse").await?;
    sees_message(&alice, &room, "from Synapse", "Myelin").await.with_context(logs)?;

    // A room on Synapse, joined from Myelin.
    let room = sam.create_room(json!({ "preset": "public_chat", "room_version": version })).await?;
    let (status, body) = join_via(&alice, &room, &synapse.server_name()).await?;
    if status != 200 {
        bail!("Myelin user joining a Synapse room: {status} {body}\n{}", logs());
    }
    sees_members(&sam, &room, &members, "Synapse").await.with_context(logs)?;
    sees_members(&alice, &room, &members, "Myelin").await.with_context(logs)?;
    sam.send_message(&room, "hello from Synapse").await?;
    sees_message(&alice, &room, "hello from Synapse", "Myelin").await.with_context(logs)?;
    alice.send_message(&room, "hello from Myelin").await?;
    sees_message(&sam, &room, "hello from Myelin", "Synapse").await.with_context(logs)?;

    // Leaving is seen by the other server.
    let (status, body) = alice.post(&room_path(&room, "leave"), &json!({})).await?;
    assert_eq!(status, 200, "leave: {body}");
    sees_members(&sam, &room, &[synapse.user_id("sam")], "Synapse").await.with_context(logs)?;
    Ok(())
}

#[tokio::test]
async fn myelin_and_synapse_share_version_10_rooms() -> Result<()> {
    myelin_and_synapse_share_rooms("10").await
}

#[tokio::test]
async fn myelin_and_synapse_share_version_11_rooms() -> Result<()> {
    myelin_and_synapse_share_rooms("11").await
}

#[tokio::test]
async fn myelin_and_synapse_share_version_12_rooms() -> Result<()> {
    myelin_and_synapse_share_rooms("12").await
}
