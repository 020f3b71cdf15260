//! Durability: concurrent senders, SIGKILL mid-stream, restart. Every event that got a 200 is
//! there exactly once, in acknowledgement order per sender, and nothing half-written appears.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};
use myelin_e2e::{Client, TestServer};
use serde_json::{Value, json};

/// (body, event id) of each acknowledged send, per sender.
type Acks = HashMap<String, Vec<(String, String)>>;

/// Sends `"<user id> #<n>"` messages one after another until the server stops answering.
/// Returns a description of the first failure that happened while the server was still meant to
/// be up (a refused send before the kill is a bug in itself).
async fn send_until_killed(
    sender: Client,
    room: String,
    acked: Arc<Mutex<Acks>>,
    killed: Arc<AtomicBool>,
) -> Option<String> {
    for i in 0..1_000_000u32 {
        let body = format!("{} #{i}", sender.user_id);
        let result = sender.send_with_txn(&room, &body, &format!("d{i}")).await;
        let was_killed = killed.load(Ordering::SeqCst);
        match result {
            Ok((200, resp)) => {
                let Some(id) = resp["event_id"].as_str() else {
                    return Some(format!("{}: send {i} answered 200 without an event_id: {resp}", sender.user_id));
                };
                if let Ok(mut acked) = acked.lock() {
                    acked.entry(sender.user_id.clone()).or_default().push((body, id.to_owned()));
                }
            }
            Ok((status, resp)) if !was_killed => {
                return Some(format!("{}: send {i} was refused before the kill: {status} {resp}", sender.user_id));
            }
            Err(err) if !was_killed => {
                return Some(format!("{}: send {i} failed before the kill: {err:#}", sender.user_id));
            }
            _ => return None, // the server died under us, as planned
        }
    }
    None
}

fn well_formed(ev: &Value) -> bool {
    ev["event_id"].as_str().is_some_and(|id| id.starts_with('$'))
        && ev["type"].is_string()
        && ev["sender"].as_str().is_some_and(|s| s.starts_with('@'))
        && ev["origin_server_ts"].is_u64()
        && ev["content"].is_object()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill() -> Result<()> {
    let mut server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    let mut senders = vec![alice.clone()];
    for i in 1..4 {
        let c = server.register(&format!("sender{i}")).await?;
        let (status, body) = c.join(&room).await?;
        ensure!(status == 200, "sender{i} joins: {status} {body}");
        senders.push(c);
    }
    let acked: Arc<Mutex<Acks>> = Arc::default();
    let killed = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = senders
        .iter()
        .map(|s| tokio::spawn(send_until_killed(s.clone(), room.clone(), acked.clone(), killed.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    killed.store(true, Ordering::SeqCst);
    server.kill9();
    for t in tasks {
        if let Some(failure) = t.await? {
            bail!("{failure}");
        }
    }
    server.start_again().await.context("restart on the same data directory after SIGKILL")?;

    let acked = acked.lock().map(|a| a.clone()).map_err(|_| anyhow::anyhow!("acknowledgement map poisoned"))?;
    let total: usize = acked.values().map(Vec::len).sum();
    for s in &senders {
        ensure!(
            acked.get(&s.user_id).is_some_and(|a| !a.is_empty()),
            "{} got no send acknowledged in 1.5 s ({total} in all): the test proves nothing",
            s.user_id
        );
    }
    eprintln!(
        "{total} sends acknowledged before SIGKILL: {:?}",
        acked.iter().map(|(s, a)| (s, a.len())).collect::<Vec<_>>()
    );
    ensure!(total >= 20, "only {total} sends were acknowledged in 1.5 s: the test proves too little");

    let history = alice.all_messages(&room, 500).await.context("alice pages through the room after the crash")?;
    let mut seen_ids = HashSet::new();
    let mut by_sender: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for ev in &history {
        ensure!(well_formed(ev), "a malformed event appears in the room after the crash: {ev}");
        let id = ev["event_id"].as_str().unwrap_or_default();
        ensure!(seen_ids.insert(id.to_owned()), "event {id} appears twice in /messages: {ev}");
        if ev["type"] != "m.room.message" {
            ensure!(ev["state_key"].is_string(), "only messages and room state are in this room: {ev}");
            continue;
        }
        let body = ev["content"]["body"].as_str().with_context(|| format!("a stored message without a body: {ev}"))?;
        let sender = ev["sender"].as_str().unwrap_or_default();
        ensure!(
            ev["content"]["msgtype"] == "m.text" && body.starts_with(&format!("{sender} #")),
            "a stored message that nobody sent: {ev}"
        );
        by_sender.entry(sender.to_owned()).or_default().push((body.to_owned(), id.to_owned()));
    }
    for (sender, acks) in &acked {
        let stored = by_sender.get(sender).cloned().unwrap_or_default();
        let stored_ids: HashSet<&str> = stored.iter().map(|(_, id)| id.as_str()).collect();
        let lost: Vec<&(String, String)> = acks.iter().filter(|(_, id)| !stored_ids.contains(id.as_str())).collect();
        ensure!(
            lost.is_empty(),
            "{sender}: {} of {} acknowledged messages are gone after the crash, e.g. {:?}",
            lost.len(),
            acks.len(),
            lost.first()
        );
        ensure!(
            stored.len() >= acks.len() && stored[..acks.len()] == acks[..],
            "{sender}: acknowledged messages are not stored in the order they were acknowledged"
        );
        // Each sender had at most one send in flight at the kill; if it was stored, it is whole.
        let extra = &stored[acks.len()..];
        ensure!(extra.len() <= 1, "{sender}: {} unacknowledged messages stored, at most 1 was in flight", extra.len());
        if let Some((body, _)) = extra.first() {
            let expected = format!("{sender} #{}", acks.len());
            ensure!(*body == expected, "{sender}: the in-flight message is stored as {body:?}, expected {expected:?}");
        }
    }
    for sender in by_sender.keys() {
        ensure!(acked.contains_key(sender), "{sender} has stored messages but never got an acknowledgement");
    }

    // The server is fully usable after recovery.
    let id = alice.send_message(&room, "after the crash").await?;
    let (status, ev) = alice.get(&myelin_e2e::room_path(&room, &format!("event/{}", myelin_e2e::enc(&id)))).await?;
    ensure!(status == 200 && ev["content"]["body"] == "after the crash", "sending after recovery: {status} {ev}");
    Ok(())
}

/// SIGTERM sent the moment a server first answers is a clean shutdown. The signal handlers were
/// installed only after the listeners served; under load (a CI run) a server stopped right after
/// starting once died by the signal. The race is not reproducible on an idle machine, so this
/// checks the path many times rather than proving the window closed (the code does: the
/// handlers are installed before anything binds).
#[tokio::test]
async fn a_server_stopped_as_soon_as_it_answers_shuts_down_cleanly() -> anyhow::Result<()> {
    for _ in 0..10 {
        let mut server = myelin_e2e::TestServer::start().await?;
        server.stop().await?;
    }
    Ok(())
}
