//! `myelin db migrate`: an SQLite installation with 10 000 events, users, devices and account
//! data moves to PostgreSQL, verified by count and checksum, and the server started on the new
//! database serves the same history, sessions and account data — and keeps going.

use std::process::Command;

use anyhow::{Context, Result, ensure};
use myelin_e2e::{TestServer, new_postgres_database, server_binary, timeline};
use serde_json::{Value, json};

/// Event id and body of every event in the room, oldest first.
async fn history(client: &myelin_e2e::Client, room: &str) -> Result<Vec<(String, String)>> {
    Ok(client
        .all_messages(room, 500)
        .await?
        .iter()
        .map(|e| {
            (
                e["event_id"].as_str().unwrap_or_default().to_owned(),
                e["content"]["body"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect())
}

fn migrate(from: &str, to: &str) -> Result<std::process::Output> {
    Command::new(server_binary())
        .args(["db", "migrate", "--from", from, "--to", to])
        .env_remove("MYELIN_DATABASE")
        .output()
        .context("run myelin db migrate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_installation_moves_to_postgres_and_serves_the_same_history() -> Result<()> {
    if myelin_e2e::repeat_of_sqlite_pass("sqlite_installation_moves_to_postgres_and_serves_the_same_history") {
        return Ok(());
    }
    let mut server = TestServer::start_sqlite().await?;
    let alice = server.register("alice").await?;
    let alice_phone = server.login("alice").await?;
    let bob = server.register("bob").await?;
    let rooms = [
        alice.create_room(json!({ "preset": "public_chat", "name": "one" })).await?,
        alice.create_room(json!({ "preset": "public_chat", "name": "two" })).await?,
    ];
    for room in &rooms {
        ensure!(bob.join(room).await?.0 == 200);
    }
    let (status, _) = alice
        .put("/_matrix/client/v3/user/@alice:localhost/account_data/m.direct", &json!({ "@bob:localhost": [rooms[0]] }))
        .await?;
    ensure!(status == 200);
    let (status, _) = bob
        .put(
            &format!("/_matrix/client/v3/user/@bob:localhost/rooms/{}/tags/u.work", rooms[1]),
            &json!({ "order": 0.5 }),
        )
        .await?;
    ensure!(status == 200);

    // 10 000 messages from 8 concurrent senders into both rooms.
    let mut tasks = Vec::new();
    for t in 0..8 {
        let client = if t % 2 == 0 { alice.clone() } else { bob.clone() };
        let room = rooms[t % 2].clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..1250 {
                client.send_message(&room, &format!("m{t}-{i}")).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let before = [history(&alice, &rooms[0]).await?, history(&alice, &rooms[1]).await?];
    ensure!(before.iter().map(Vec::len).sum::<usize>() > 10_000, "10 000 messages and the rooms' state events");
    let devices_before = alice.get("/_matrix/client/v3/devices").await?.1["devices"].as_array().map(Vec::len);
    server.stop().await?;

    let sqlite = format!("sqlite:{}", server.data_dir().join("myelin.db").display());
    let postgres = new_postgres_database().await?;
    let out = migrate(&sqlite, &postgres)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "migrate failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    ensure!(stdout.contains("counts and checksums equal"), "migrate did not report its verification: {stdout}");
    ensure!(String::from_utf8_lossy(&out.stderr).contains("events"), "no progress shown for the events table");

    // A second run into the now populated database is refused and changes nothing.
    let again = migrate(&sqlite, &postgres)?;
    ensure!(!again.status.success(), "migrating into a non-empty database must be refused");
    ensure!(String::from_utf8_lossy(&again.stderr).contains("not empty"), "refusal says why");

    server.restart_on_database(&postgres).await?;
    // Same sessions (the old access tokens), same history, same account data.
    let after = [history(&alice, &rooms[0]).await?, history(&alice, &rooms[1]).await?];
    ensure!(after == before, "the migrated server serves a different history");
    let devices_after = alice_phone.get("/_matrix/client/v3/devices").await?.1["devices"].as_array().map(Vec::len);
    ensure!(
        devices_after == devices_before && devices_after == Some(2),
        "devices: {devices_before:?} → {devices_after:?}"
    );
    let (status, direct) = alice.get("/_matrix/client/v3/user/@alice:localhost/account_data/m.direct").await?;
    ensure!(status == 200 && direct["@bob:localhost"][0] == json!(rooms[0]), "account data: {status} {direct}");
    let (status, tags) = bob.get(&format!("/_matrix/client/v3/user/@bob:localhost/rooms/{}/tags", rooms[1])).await?;
    ensure!(status == 200 && tags["tags"]["u.work"]["order"] == json!(0.5), "tags: {status} {tags}");
    ensure!(server.login("bob").await.is_ok(), "passwords moved");

    // And it keeps going: new events land after the migrated ones, and sync sees them.
    let since = bob.sync(None, 0, Some(&json!({ "room": { "timeline": { "limit": 1 } } }))).await?;
    let since = since["next_batch"].as_str().context("next_batch")?.to_owned();
    let new_id = alice.send_message(&rooms[0], "after the move").await?;
    let sync: Value = bob.sync(Some(&since), 5_000, None).await?;
    ensure!(timeline(&sync, &rooms[0]).iter().any(|e| e["event_id"] == json!(new_id)), "sync after the move");
    let last = history(&alice, &rooms[0]).await?;
    ensure!(last.last().map(|(id, _)| id) == Some(&new_id), "the new event is the newest in the room");
    Ok(())
}
