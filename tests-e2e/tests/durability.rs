//! Durability: concurrent senders, SIGKILL mid-stream, restart. Every event that got a 200 is
//! there, in acknowledgement order per sender, and nothing half-written appears.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, Result, ensure};
use myelin_e2e::TestServer;
use serde_json::json;

/// (body, event id) of each acknowledged send, per sender.
type Acks = HashMap<String, Vec<(String, String)>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill() -> Result<()> {
    let mut server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    let mut senders = vec![alice.clone()];
    for i in 1..4 {
        let c = server.register(&format!("sender{i}")).await?;
        c.join(&room).await?;
        senders.push(c);
    }
    let acked: Arc<Mutex<Acks>> = Arc::default();
    let mut tasks = Vec::new();
    for sender in senders.clone() {
        let acked = acked.clone();
        let room = room.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..100_000u32 {
                let body = format!("{} #{i}", sender.user_id);
                match sender.send_with_txn(&room, &body, &format!("d{i}")).await {
                    Ok((200, resp)) => {
                        let id = resp["event_id"].as_str().unwrap_or_default().to_owned();
                        acked.lock().map(|mut a| a.entry(sender.user_id.clone()).or_default().push((body, id))).ok();
                    }
                    _ => break, // the server died under us
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill9();
    for t in tasks {
        t.await?;
    }
    server.start_again().await?;

    let acked = acked.lock().map(|a| a.clone()).map_err(|_| anyhow::anyhow!("poisoned"))?;
    let total: usize = acked.values().map(Vec::len).sum();
    ensure!(total > 50, "the senders got going before the kill ({total} acknowledged)");
    let history = alice.all_messages(&room, 500).await?;
    let mut by_sender: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for ev in history.iter().filter(|e| e["type"] == "m.room.message") {
        let body = ev["content"]["body"].as_str().context("every stored message is whole: has a body")?;
        let sender = ev["sender"].as_str().context("has a sender")?;
        ensure!(ev["content"]["msgtype"] == "m.text" && body.starts_with(sender), "well-formed message: {ev}");
        by_sender
            .entry(sender.to_owned())
            .or_default()
            .push((body.to_owned(), ev["event_id"].as_str().unwrap_or_default().to_owned()));
    }
    for (sender, acks) in &acked {
        let stored = by_sender.get(sender).cloned().unwrap_or_default();
        ensure!(stored.len() >= acks.len(), "{sender}: {} acknowledged but only {} stored", acks.len(), stored.len());
        ensure!(stored[..acks.len()] == acks[..], "{sender}: acknowledged events are stored in acknowledgement order");
        ensure!(
            stored.len() <= acks.len() + 1,
            "{sender}: at most the one in-flight message was stored unacknowledged"
        );
        let mut ids: Vec<&str> = stored.iter().map(|(_, id)| id.as_str()).collect();
        ids.dedup();
        ensure!(ids.len() == stored.len(), "{sender}: no event stored twice");
    }
    Ok(())
}
