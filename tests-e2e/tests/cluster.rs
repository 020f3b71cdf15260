//! Scale-out: several Myelin processes on one PostgreSQL database behave as one server. Clients
//! send through two processes into the same rooms and long-poll through a third; every process
//! agrees on one order; a process killed with SIGKILL under load loses no acknowledged event.
//! These tests always run on PostgreSQL (the test cluster), whatever `MYELIN_TEST_BACKEND` says.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use myelin_e2e::{Client, TestServer, next_batch, timeline};
use serde_json::{Value, json};

/// Long-polls `client` from `since` until every id of `want` has been seen in `room`'s timeline
/// (or `deadline`); returns the ids seen, in arrival order, and the last token.
async fn sync_until_seen(
    client: &Client,
    room: &str,
    since: String,
    want: &HashSet<String>,
    deadline: Duration,
) -> Result<(Vec<String>, String)> {
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut since = since;
    let filter = json!({ "room": { "timeline": { "limit": 1000 } } });
    while !want.iter().all(|id| seen.contains(id)) {
        ensure!(
            start.elapsed() < deadline,
            "after {deadline:?} the syncing client saw {} of {} events",
            want.iter().filter(|id| seen.contains(*id)).count(),
            want.len()
        );
        let sync = client.sync(Some(&since), 5_000, Some(&filter)).await?;
        let tl = &sync["rooms"]["join"][room]["timeline"];
        ensure!(tl["limited"] != json!(true), "a 1000-event timeline window was limited: events were skipped");
        for ev in timeline(&sync, room) {
            if let Some(id) = ev["event_id"].as_str() {
                ensure!(!seen.iter().any(|s| s == id), "{id} was delivered twice");
                seen.push(id.to_owned());
            }
        }
        since = next_batch(&sync)?;
    }
    Ok((seen, since))
}

/// Event ids of a room's history as one process serves it (`/messages`, oldest first).
async fn history(client: &Client, room: &str) -> Result<Vec<String>> {
    Ok(client.all_messages(room, 100).await?.iter().filter_map(|e| e["event_id"].as_str().map(str::to_owned)).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_processes_serve_one_timeline() -> Result<()> {
    if myelin_e2e::repeat_of_sqlite_pass("three_processes_serve_one_timeline") {
        return Ok(());
    }
    let a = TestServer::start_postgres().await?;
    let b = a.start_peer().await?;
    let c = a.start_peer().await?;
    let alice = a.register("alice").await?;
    let bob = b.register("bob").await?;
    let carol = c.register("carol").await?;

    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    // Joins through the other processes: each sees the room alice created on A.
    ensure!(bob.join(&room).await?.0 == 200, "bob joins through B");
    ensure!(carol.join(&room).await?.0 == 200, "carol joins through C");
    let since = next_batch(&carol.sync(None, 0, None).await?)?;

    // Alice (via A) and Bob (via B) send into the same room at the same time.
    let per_sender = 60;
    let send_all = |client: Client, tag: &'static str| {
        let room = room.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..per_sender {
                ids.push(client.send_message(&room, &format!("{tag} {i}")).await?);
            }
            anyhow::Ok(ids)
        })
    };
    let (from_a, from_b) = tokio::join!(send_all(alice.clone(), "a"), send_all(bob.clone(), "b"));
    let (from_a, from_b) = (from_a??, from_b??);
    let want: HashSet<String> = from_a.iter().chain(&from_b).cloned().collect();
    ensure!(want.len() == 2 * per_sender, "every send got its own event id");

    // Carol, long-polling through C, sees every event exactly once.
    let (seen, _) = sync_until_seen(&carol, &room, since, &want, Duration::from_secs(30)).await?;

    // One order: each process serves the same history, and C's live order is that history's order.
    let on_a = history(&alice, &room).await?;
    let on_b = history(&bob, &room).await?;
    let on_c = history(&carol, &room).await?;
    ensure!(on_a == on_b && on_b == on_c, "processes disagree on the room's order");
    let live_order: Vec<&String> = on_c.iter().filter(|id| want.contains(*id)).collect();
    ensure!(live_order == seen.iter().collect::<Vec<_>>(), "sync delivered events out of the stored order");
    // Each sender's own events are in the order they were acknowledged.
    for sent in [&from_a, &from_b] {
        let stored: Vec<&String> = on_a.iter().filter(|id| sent.contains(id)).collect();
        ensure!(stored == sent.iter().collect::<Vec<_>>(), "a sender's events are out of order");
    }
    Ok(())
}

/// Median of a sample, in milliseconds.
fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(|x, y| x.total_cmp(y));
    samples[samples.len() / 2]
}

/// Median time from a send's 200 to the event reaching a long-polling sync.
async fn send_to_sync_latency(sender: &Client, syncer: &Client, room: &str, rounds: usize) -> Result<f64> {
    let mut since = next_batch(&syncer.sync(None, 0, None).await?)?;
    let filter = json!({ "room": { "timeline": { "limit": 10 } } });
    let mut samples = Vec::new();
    for i in 0..rounds {
        let poll = {
            let syncer = syncer.clone();
            let since = since.clone();
            let filter = filter.clone();
            tokio::spawn(async move { syncer.sync(Some(&since), 10_000, Some(&filter)).await })
        };
        // Let the long-poll reach the server before sending.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let sent_at = Instant::now();
        let id = sender.send_message(room, &format!("ping {i}")).await?;
        let sync = poll.await??;
        let mut got = timeline(&sync, room).iter().any(|e| e["event_id"] == json!(id));
        since = next_batch(&sync)?;
        while !got {
            let sync = syncer.sync(Some(&since), 10_000, Some(&filter)).await?;
            got = timeline(&sync, room).iter().any(|e| e["event_id"] == json!(id));
            since = next_batch(&sync)?;
        }
        samples.push(sent_at.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(median(samples))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cross_process_wake_up_is_as_fast_as_local() -> Result<()> {
    if myelin_e2e::repeat_of_sqlite_pass("cross_process_wake_up_is_as_fast_as_local") {
        return Ok(());
    }
    let a = TestServer::start_postgres().await?;
    let c = a.start_peer().await?;
    let alice = a.register("alice").await?;
    let carol = a.register("carol").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    ensure!(carol.join(&room).await?.0 == 200);

    let local = send_to_sync_latency(&alice, &carol, &room, 15).await?;
    let remote = send_to_sync_latency(&alice, &carol.on(&c), &room, 15).await?;
    println!("send-to-sync p50: same process {local:.1} ms, other process {remote:.1} ms");
    // Both are a few milliseconds on loopback; allow 2 ms of timer noise on top of the 2x bound.
    ensure!(remote <= 2.0 * local + 2.0, "cross-process wake-up {remote:.1} ms vs {local:.1} ms in one process");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_of_one_process_loses_no_acknowledged_event() -> Result<()> {
    if myelin_e2e::repeat_of_sqlite_pass("sigkill_of_one_process_loses_no_acknowledged_event") {
        return Ok(());
    }
    let a = TestServer::start_postgres().await?;
    let mut b = a.start_peer().await?;
    let c = a.start_peer().await?;
    let alice = a.register("alice").await?;
    let bob = a.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    ensure!(bob.join(&room).await?.0 == 200);

    // Senders through A and B until told to stop; B is killed in the middle.
    let sender = |client: Client, tag: &'static str| {
        let room = room.clone();
        tokio::spawn(async move {
            let mut acked: Vec<String> = Vec::new();
            let mut failures = 0;
            for i in 0..400 {
                match client.send_with_txn(&room, &format!("{tag} {i}"), &format!("{tag}{i}")).await {
                    Ok((200, body)) => acked.push(body["event_id"].as_str().context("event_id")?.to_owned()),
                    _ => failures += 1,
                }
                if failures > 0 && tag == "a" {
                    anyhow::bail!("a send through the surviving process failed");
                }
                if failures > 0 {
                    break; // B is gone
                }
            }
            anyhow::Ok(acked)
        })
    };
    let through_a = sender(alice.clone(), "a");
    let through_b = sender(bob.on(&b), "b");
    tokio::time::sleep(Duration::from_millis(700)).await;
    b.kill9();
    let from_b = through_b.await??;
    let from_a = through_a.await??;
    ensure!(!from_b.is_empty(), "B acknowledged nothing before it was killed: the test proves nothing");
    ensure!(from_a.len() == 400, "A kept serving");

    // Everything acknowledged by either process is there, once, as C serves it.
    let on_c = history(&alice.on(&c), &room).await?;
    let mut count: HashMap<&String, usize> = HashMap::new();
    for id in &on_c {
        *count.entry(id).or_default() += 1;
    }
    for id in from_a.iter().chain(&from_b) {
        ensure!(count.get(id) == Some(&1), "acknowledged event {id} is missing or doubled after the SIGKILL");
    }
    // And C keeps serving writes.
    alice.on(&c).send_message(&room, "still here").await?;
    let sync: Value = alice.on(&c).sync(None, 0, None).await?;
    ensure!(sync["rooms"]["join"][&room].is_object(), "C serves sync after B died");
    Ok(())
}

/// The position of a sync token `s{pos}_{typing}`.
fn token_pos(token: &str) -> i64 {
    token.trim_start_matches('s').split('_').next().and_then(|p| p.parse().ok()).unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_reads_its_writes_through_any_process() -> Result<()> {
    if myelin_e2e::repeat_of_sqlite_pass("a_client_reads_its_writes_through_any_process") {
        return Ok(());
    }
    let a = TestServer::start_postgres().await?;
    // B hears of A's writes 300 ms late, as over a slow network: it must still serve them at once.
    let b = a.start_peer_with_env(&[("MYELIN_BUS_DELAY_MS", "300")]).await?;
    let alice = a.register("alice").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    let on_b = alice.on(&b);
    for i in 0..5 {
        let id = alice.send_message(&room, &format!("m{i}")).await?;
        // At once, through the other process: the newest message is the one just sent...
        let (status, page) = on_b.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1")).await?;
        ensure!(status == 200 && page["chunk"][0]["event_id"] == json!(id), "send {i}: /messages on B: {page}");
        // ...and a sync token handed out by A never moves backwards on B.
        let token = next_batch(&alice.sync(None, 0, Some(&json!({ "room": { "timeline": { "limit": 1 } } }))).await?)?;
        let sync = on_b.sync(Some(&token), 0, None).await?;
        let next = next_batch(&sync)?;
        ensure!(token_pos(&next) >= token_pos(&token), "B answered {next} to a sync from {token}");
    }
    Ok(())
}

/// Many users join one room at once through two processes: writes of each process keep moving
/// the room under the other's, so joins are rebuilt on a fresh head (`StaleHead`); none may be
/// built on a head that names a join that was never written (a 403 "failed to find auth event"
/// came from that once).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_joins_through_two_processes_all_succeed() -> Result<()> {
    if myelin_e2e::repeat_of_sqlite_pass("concurrent_joins_through_two_processes_all_succeed") {
        return Ok(());
    }
    let a = TestServer::start_postgres().await?;
    let b = a.start_peer().await?;
    let alice = a.register("alice").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    let mut joiners = Vec::new();
    for i in 0..24 {
        let user = a.register(&format!("joiner{i}")).await?;
        joiners.push(if i % 2 == 0 { user } else { user.on(&b) });
    }
    let joins: Vec<_> = joiners
        .into_iter()
        .map(|user| {
            let room = room.clone();
            tokio::spawn(async move { user.join(&room).await })
        })
        .collect();
    for join in joins {
        let (status, body) = join.await??;
        ensure!(status == 200, "a join failed: {status} {body}");
    }
    let (status, members) = alice.get(&format!("/_matrix/client/v3/rooms/{room}/joined_members")).await?;
    ensure!(status == 200 && members["joined"].as_object().map(|m| m.len()) == Some(25), "{members}");
    Ok(())
}

/// A sliding sync connection lives in the database: its next request may land on any process, a
/// long-poll on one process wakes for a message sent through another, and the previous position
/// can be replayed anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sliding_sync_connection_moves_between_processes() -> Result<()> {
    if myelin_e2e::repeat_of_sqlite_pass("sliding_sync_connection_moves_between_processes") {
        return Ok(());
    }
    let a = TestServer::start_postgres().await?;
    let b = a.start_peer_with_env(&[("MYELIN_BUS_DELAY_MS", "100")]).await?;
    let alice = a.register("alice").await?;
    let bob = a.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat", "name": "shared" })).await?;
    ensure!(bob.join(&room).await?.0 == 200);
    const SS: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";
    let body = json!({ "conn_id": "room-list", "lists": { "all": { "ranges": [[0, 9]], "timeline_limit": 5, "required_state": [["m.room.name", ""]] } } });
    let (status, first) = bob.post(&format!("{SS}?timeout=0"), &body).await?;
    ensure!(status == 200 && first["rooms"][&room]["name"] == "shared", "{status} {first}");
    let pos1 = first["pos"].as_str().context("pos")?.to_owned();

    // Long-poll on B with A's position; alice writes through A.
    let poll = {
        let (bob_b, body, pos) = (bob.on(&b), body.clone(), pos1.clone());
        tokio::spawn(async move { bob_b.post(&format!("{SS}?timeout=20000&pos={pos}"), &body).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice.send_message(&room, "across processes").await?;
    let (status, woken) = poll.await??;
    let texts: Vec<&str> = woken["rooms"][&room]["timeline"]
        .as_array()
        .map(|tl| tl.iter().filter_map(|e| e["content"]["body"].as_str()).collect())
        .unwrap_or_default();
    ensure!(status == 200 && texts == ["across processes"], "B's long-poll: {status} {woken}");
    let pos2 = woken["pos"].as_str().context("pos")?.to_owned();

    // Back on A: the previous position replays the same message, the new one continues quietly.
    let (status, replay) = bob.post(&format!("{SS}?timeout=0&pos={pos1}"), &body).await?;
    ensure!(status == 200 && replay["rooms"][&room]["timeline"].as_array().is_some_and(|t| t.len() == 1), "{replay}");
    let (status, quiet) =
        bob.post(&format!("{SS}?timeout=0&pos={}", replay["pos"].as_str().unwrap_or("")), &body).await?;
    ensure!(status == 200 && quiet["rooms"].as_object().is_none_or(|r| r.is_empty()), "{status} {quiet}");
    // B's answer only moved the stored state forward (a live message), so nothing was stored
    // and its position stays good on A too: it continues quietly.
    let (status, still) = bob.post(&format!("{SS}?timeout=0&pos={pos2}"), &body).await?;
    ensure!(status == 200 && still["rooms"].as_object().is_none_or(|r| r.is_empty()), "{status} {still}");

    // A keeps the row it read last; the connection moves on twice through B, each time with a
    // changed request (a state to store), past the newest and the previous position A knows.
    // A's position is refused, though A had kept its row: B's saves dropped it there.
    let pos_a = replay["pos"].as_str().context("pos")?.to_owned();
    let mut pos_b = pos_a.clone();
    for (text, limit) in [("first on B", 4), ("second on B", 3)] {
        alice.send_message(&room, text).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut changed = body.clone();
        changed["lists"]["all"]["timeline_limit"] = limit.into();
        let (status, step) = bob.on(&b).post(&format!("{SS}?timeout=0&pos={pos_b}"), &changed).await?;
        ensure!(status == 200 && step["rooms"][&room]["timeline"].as_array().is_some_and(|t| t.len() == 1), "{step}");
        pos_b = step["pos"].as_str().context("pos")?.to_owned();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, stale) = bob.post(&format!("{SS}?timeout=0&pos={pos_a}"), &body).await?;
        if status == 400 && stale["errcode"] == "M_UNKNOWN_POS" {
            break;
        }
        ensure!(Instant::now() < deadline, "A answered a position moved on elsewhere: {status} {stale}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // B's newest position goes on through A.
    alice.send_message(&room, "back on A").await?;
    let (status, back) = bob.post(&format!("{SS}?timeout=0&pos={pos_b}"), &body).await?;
    let texts: Vec<&str> = back["rooms"][&room]["timeline"]
        .as_array()
        .map(|tl| tl.iter().filter_map(|e| e["content"]["body"].as_str()).collect())
        .unwrap_or_default();
    ensure!(status == 200 && texts == ["back on A"], "{status} {back}");
    // B starts the connection afresh (a new generation replaces the row). A still keeps the row
    // it saved, and nothing new came since its position, yet that position is gone.
    let (status, _) = bob.on(&b).post(&format!("{SS}?timeout=0"), &body).await?;
    ensure!(status == 200);
    let pos_back = back["pos"].as_str().context("pos")?;
    let (status, replaced) = bob.post(&format!("{SS}?timeout=0&pos={pos_back}"), &body).await?;
    ensure!(status == 400 && replaced["errcode"] == "M_UNKNOWN_POS", "{status} {replaced}");
    Ok(())
}

/// What one process keeps in memory for syncs — each user's room list and events by id — follows
/// writes made through another process: memberships and new messages by stream position (no
/// signal needed), redactions and forgotten rooms by signal.
#[tokio::test]
async fn cached_room_lists_and_events_follow_writes_through_another_process() -> Result<()> {
    if myelin_e2e::repeat_of_sqlite_pass("cached_room_lists_and_events_follow_writes_through_another_process") {
        return Ok(());
    }
    let a = TestServer::start_postgres().await?;
    let b = a.start_peer_with_env(&[("MYELIN_BUS_DELAY_MS", "100")]).await?;
    let alice = a.register("alice").await?;
    let bob = a.register("bob").await?;
    let bob_b = bob.on(&b);
    let first = alice.create_room(json!({ "preset": "public_chat", "name": "first" })).await?;
    ensure!(bob.join(&first).await?.0 == 200);
    let (status, _) = alice
        .put(&format!("/_matrix/client/v3/rooms/{first}/state/m.room.topic/"), &json!({ "topic": "secret topic" }))
        .await?;
    ensure!(status == 200);
    const SS: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";
    let window = |conn: &str| {
        json!({ "conn_id": conn, "lists": { "all": {
            "ranges": [[0, 9]], "timeline_limit": 1, "required_state": [["m.room.topic", ""]],
        } } })
    };
    let room_ids = |resp: &Value| -> Vec<String> {
        resp["lists"]["all"]["count"].as_u64().map_or(Vec::new(), |_| {
            let mut rooms: Vec<(i64, String)> = resp["rooms"]
                .as_object()
                .map(|r| r.iter().map(|(id, v)| (v["bump_stamp"].as_i64().unwrap_or(0), id.clone())).collect())
                .unwrap_or_default();
            rooms.sort_by(|x, y| y.cmp(x));
            rooms.into_iter().map(|(_, id)| id).collect()
        })
    };
    // B reads bob's room list and the room's topic once, so both are in its memory.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, warm) = bob_b.post(&format!("{SS}?timeout=0"), &window("warm")).await?;
    ensure!(status == 200 && room_ids(&warm) == [first.clone()], "{status} {warm}");
    let topic = &warm["rooms"][&first]["required_state"][0];
    ensure!(topic["content"]["topic"] == "secret topic", "{warm}");
    let topic_id = topic["event_id"].as_str().context("topic id")?.to_owned();

    // Through A: a new room with bob invited, then a message in the first room.
    let second = alice.create_room(json!({ "name": "second", "invite": [bob.user_id.clone()] })).await?;
    alice.send_message(&first, "after the invite").await?;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, moved) = bob_b.post(&format!("{SS}?timeout=0"), &window("moved")).await?;
    ensure!(status == 200 && moved["lists"]["all"]["count"] == 2, "{status} {moved}");
    ensure!(room_ids(&moved) == [first.clone(), second.clone()], "activity order on B: {moved}");
    ensure!(moved["rooms"][&second]["invite_state"].is_array(), "{moved}");
    ensure!(moved["rooms"][&first]["timeline"][0]["content"]["body"] == "after the invite", "{moved}");

    // A redaction through A reaches B's event cache.
    let (status, _) = alice
        .put(&format!("/_matrix/client/v3/rooms/{first}/redact/{topic_id}/r1"), &json!({ "reason": "oops" }))
        .await?;
    ensure!(status == 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut n = 0;
    loop {
        n += 1;
        let (status, resp) = bob_b.post(&format!("{SS}?timeout=0"), &window(&format!("redacted-{n}"))).await?;
        ensure!(status == 200, "{resp}");
        let state = &resp["rooms"][&first]["required_state"][0];
        if state["event_id"] == topic_id.as_str() && state["content"].as_object().is_some_and(|c| c.is_empty()) {
            break;
        }
        ensure!(Instant::now() < deadline, "B still serves the unredacted topic: {resp}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Bob joins the second room and is kicked, all through A: B lists it (a kick stays listed)...
    ensure!(bob.join(&second).await?.0 == 200);
    let kick = json!({ "user_id": bob.user_id });
    ensure!(alice.post(&format!("/_matrix/client/v3/rooms/{second}/kick"), &kick).await?.0 == 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, kicked) = bob_b.post(&format!("{SS}?timeout=0"), &window("kicked")).await?;
    ensure!(status == 200 && kicked["lists"]["all"]["count"] == 2, "{status} {kicked}");
    // ...until he forgets it through A.
    ensure!(bob.post(&format!("/_matrix/client/v3/rooms/{second}/forget"), &json!({})).await?.0 == 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        n += 1;
        let (status, resp) = bob_b.post(&format!("{SS}?timeout=0"), &window(&format!("forgot-{n}"))).await?;
        ensure!(status == 200, "{resp}");
        if room_ids(&resp) == [first.clone()] && resp["lists"]["all"]["count"] == 1 {
            break;
        }
        ensure!(Instant::now() < deadline, "B still lists the forgotten room: {resp}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Each process keeps who owns the access tokens it has seen. A token logged out through one
/// process is refused there at once, and by the other process as soon as the database's
/// notification arrives; so is every token of a device deleted through the other process.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_logged_out_through_one_process_is_refused_by_every_process() -> Result<()> {
    if myelin_e2e::repeat_of_sqlite_pass("a_token_logged_out_through_one_process_is_refused_by_every_process") {
        return Ok(());
    }
    let a = TestServer::start_postgres().await?;
    let b = a.start_peer().await?;
    let alice = a.register("alice").await?;
    let phone = a.login("alice").await?;
    let whoami = "/_matrix/client/v3/account/whoami";
    // Both processes have answered for both tokens.
    for client in [&alice, &alice.on(&b), &phone, &phone.on(&b)] {
        ensure!(client.get(whoami).await?.0 == 200);
    }
    let refused_soon = |client: Client, what: &'static str| async move {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (status, body) = client.get(whoami).await?;
            if status == 401 && body["errcode"] == "M_UNKNOWN_TOKEN" {
                return Ok::<_, anyhow::Error>(());
            }
            ensure!(Instant::now() < deadline, "{what}: still {status} {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };

    let (status, _) = alice.post("/_matrix/client/v3/logout", &json!({})).await?;
    ensure!(status == 200);
    let (status, body) = alice.get(whoami).await?;
    ensure!(status == 401 && body["errcode"] == "M_UNKNOWN_TOKEN", "at once on the process that logged out: {body}");
    refused_soon(alice.on(&b), "logged out through A, asked on B").await?;

    // The phone's device deleted through B (user-interactive auth with the password).
    let device = phone.get(whoami).await?.1["device_id"].as_str().context("device id")?.to_owned();
    let auth = json!({ "auth": { "type": "m.login.password", "password": "alice-password",
        "identifier": { "type": "m.id.user", "user": "alice" } } });
    let (status, body) = phone.on(&b).delete(&format!("/_matrix/client/v3/devices/{device}"), &auth).await?;
    ensure!(status == 200, "delete device through B: {status} {body}");
    refused_soon(phone.clone(), "device deleted through B, asked on A").await?;
    Ok(())
}

/// An admin command is a process of the deployment too, and one that exits at once: what it
/// tells the serving processes (here, to wake the recipient's sync) is sent before it exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_command_wakes_the_syncs_of_a_running_server() -> Result<()> {
    if myelin_e2e::repeat_of_sqlite_pass("an_admin_command_wakes_the_syncs_of_a_running_server") {
        return Ok(());
    }
    let server = TestServer::start_postgres().await?;
    let bob = server.register("bob").await?;
    let notice = |text: &str| {
        let out = server.admin(&["user", "notice", "bob", text])?;
        ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    };
    // The first notice makes the room; bob joins it.
    notice("Welcome")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let room = loop {
        let (_, sync) = bob.get("/_matrix/client/v3/sync?timeout=1000").await?;
        if let Some(room) = sync["rooms"]["invite"].as_object().and_then(|r| r.keys().next().cloned()) {
            break room;
        }
        ensure!(Instant::now() < deadline, "no invite to the notices room: {sync}");
    };
    ensure!(bob.join(&room).await?.0 == 200);
    let (status, first) = bob.get("/_matrix/client/v3/sync?timeout=0").await?;
    ensure!(status == 200, "{status} {first}");
    let since = next_batch(&first)?;

    // A long-poll on the server; the next notice is the command's only write, its last act.
    let poll = {
        let bob = bob.clone();
        tokio::spawn(async move { bob.get(&format!("/_matrix/client/v3/sync?timeout=30000&since={since}")).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    notice("Maintenance at noon")?;
    let (status, woken) = poll.await??;
    let events = timeline(&woken, &room);
    let bodies: Vec<&str> = events.iter().filter_map(|e| e["content"]["body"].as_str()).collect();
    ensure!(status == 200 && bodies == ["Maintenance at noon"], "{status} {woken}");
    ensure!(started.elapsed() < Duration::from_secs(10), "woken only after {:?}", started.elapsed());
    Ok(())
}

/// A process that sends an event knows who is in the room, whoever let them in: a member who
/// joined through another process a moment ago (before this one heard of it) is notified of
/// the next message sent through this one, and counts it unread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_who_joined_through_another_process_is_notified_at_once() -> Result<()> {
    if myelin_e2e::repeat_of_sqlite_pass("a_member_who_joined_through_another_process_is_notified_at_once") {
        return Ok(());
    }
    let a = TestServer::start_postgres().await?;
    // The sender's process hears of the other's writes late.
    let b = a.start_peer_with_env(&[("MYELIN_BUS_DELAY_MS", "300")]).await?;
    let alice = a.register("alice").await?.on(&b);
    let bob = a.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    for i in 0..3 {
        alice.send_message(&room, &format!("before bob {i}")).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure!(bob.join(&room).await?.0 == 200);
    alice.send_message(&room, "after the join").await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, sync) = bob.get("/_matrix/client/v3/sync?timeout=0").await?;
        let count = &sync["rooms"]["join"][&room]["unread_notifications"]["notification_count"];
        if status == 200 && count == 1 {
            break;
        }
        ensure!(Instant::now() < deadline, "bob's unread count is {count}: {sync}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A transaction retried through the other process (which did not send it) gets the event
    // first sent, once; and through the same process again, from its memory.
    let (status, first) = alice.send_with_txn(&room, "once", "retried-txn").await?;
    ensure!(status == 200, "{status} {first}");
    for client in [alice.on(&a), alice.clone()] {
        let (status, again) = client.send_with_txn(&room, "once", "retried-txn").await?;
        ensure!(status == 200 && again["event_id"] == first["event_id"], "{first} {again}");
    }
    let messages = bob.all_messages(&room, 50).await?;
    let once = messages.iter().filter(|e| e["content"]["body"] == "once").count();
    ensure!(once == 1, "the retried transaction was sent {once} times: {messages:?}");
    Ok(())
}
