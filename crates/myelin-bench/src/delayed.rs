//! Delayed-event timers (MSC4140): many delayed messages scheduled at once in many rooms, each
//! due at its own time; how late a member of the rooms sees each one. Calls rest on these timers
//! (a member's leave fires when its client stops restarting it), so their precision is what a
//! call's "left" feels like.
//!
//! Lateness of an event = when a listening member's long-poll `/sync` returned it − (the
//! wall-clock time its schedule request was sent + its delay). The server received the request
//! after it was sent, so this over-states lateness by the request's way in; clocks are the same
//! machine's. (`origin_server_ts` cannot be used: Synapse stamps a delayed event with the time
//! it was due, not the time it was sent.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::{Server, User, encode};
use crate::scenarios::{Params, join_all, register_users};

/// Delayed events one user may have pending on Synapse (its default per-user limit).
const PER_USER: usize = 100;
/// Timers per room (calls are many rooms of a few members; a room's timers fire in order).
const PER_ROOM: usize = 50;
/// Delays are spread evenly over this window, from its start.
const FIRST_DELAY_MS: u64 = 3_000;
const DELAY_SPREAD_MS: u64 = 3_000;
/// Concurrent schedule requests.
const SCHEDULE_CONCURRENCY: usize = 16;
/// A timer not seen this long after the last one was due counts as never fired.
const LATE_LIMIT_MS: u64 = 60_000;

pub struct DelayedResult {
    /// Per timer: how late it fired, in ms.
    pub lateness_ms: Vec<f64>,
    /// Timers whose event never arrived.
    pub missed: usize,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Schedules `timers` delayed messages in rooms of [`PER_ROOM`] (spread over users of
/// [`PER_USER`] each) while another member long-polls them, and reports when that member saw
/// each one.
pub async fn delayed_timers(server: &Server, params: &Params, timers: usize) -> Result<DelayedResult> {
    let users = register_users(server, params, "dly", timers.div_ceil(PER_USER) + 1).await?;
    let (listener, senders) = users.split_first().context("no users")?;
    let mut rooms = Vec::new();
    for _ in 0..timers.div_ceil(PER_ROOM) {
        let room = listener.create_room(&json!({ "preset": "public_chat" })).await?;
        join_all(senders, &room, params).await?;
        rooms.push(room);
    }

    let seen: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let since = initial_token(listener).await?;
    let listening = tokio::spawn(listen(listener.clone(), rooms.clone(), since, seen.clone(), timers));

    // Timer i is due FIRST_DELAY_MS + i * spread / timers after its request was sent.
    let mut due_at: HashMap<String, u64> = HashMap::new();
    let limit = Arc::new(Semaphore::new(SCHEDULE_CONCURRENCY));
    let mut tasks = JoinSet::new();
    for i in 0..timers {
        let user = senders[i / PER_USER].clone();
        let room = rooms[i % rooms.len()].clone();
        let limit = limit.clone();
        let delay = FIRST_DELAY_MS + (i as u64 * DELAY_SPREAD_MS) / timers.max(1) as u64;
        tasks.spawn(async move {
            let _slot = limit.acquire().await?;
            let label = format!("timer {i}");
            let sent = now_ms();
            schedule(&user, &room, &label, delay).await?;
            anyhow::Ok((label, sent + delay))
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (label, due) = done??;
        due_at.insert(label, due);
    }

    // The listener stops when it has seen them all, or a minute after the last was due.
    let last_due = due_at.values().copied().max().unwrap_or(0);
    let wait = Duration::from_millis(last_due.saturating_sub(now_ms()) + LATE_LIMIT_MS);
    // Timers not seen by then count as never fired.
    let mut listening = listening;
    if let Ok(done) = tokio::time::timeout(wait, &mut listening).await {
        done??;
    }
    listening.abort();
    let seen = seen.lock().map_err(|_| anyhow::anyhow!("listener poisoned"))?.clone();
    let mut lateness_ms = Vec::with_capacity(timers);
    let mut missed = 0;
    for (label, due) in &due_at {
        match seen.get(label) {
            Some(&at) => lateness_ms.push(at as f64 - *due as f64),
            None => missed += 1,
        }
    }
    Ok(DelayedResult { lateness_ms, missed })
}

/// A `since` token from an initial sync that carries almost nothing.
async fn initial_token(user: &User) -> Result<String> {
    let filter = json!({ "room": { "timeline": { "limit": 1 } } }).to_string();
    let sync = user.sync(&[("filter", filter.as_str())], Duration::from_secs(60)).await?;
    sync.get("next_batch").and_then(Value::as_str).map(str::to_owned).context("no next_batch")
}

/// Long-polls the rooms and notes when each timer's message arrives, until `want` have; a
/// message seen twice (a timer fired twice) is an error.
async fn listen(
    user: User,
    rooms: Vec<String>,
    mut since: String,
    seen: Arc<Mutex<HashMap<String, u64>>>,
    want: usize,
) -> Result<()> {
    let filter = json!({ "room": { "timeline": { "limit": 1000 } } }).to_string();
    loop {
        let query = [("since", since.as_str()), ("timeout", "30000"), ("filter", filter.as_str())];
        let sync = user.sync(&query, Duration::from_secs(75)).await?;
        let arrived = now_ms();
        let events: Vec<Value> = rooms
            .iter()
            .filter_map(|room| {
                sync.pointer(&format!("/rooms/join/{}/timeline/events", room.replace('~', "~0").replace('/', "~1")))
            })
            .filter_map(Value::as_array)
            .flatten()
            .cloned()
            .collect();
        {
            let mut seen = seen.lock().map_err(|_| anyhow::anyhow!("listener poisoned"))?;
            for ev in events.iter().filter(|e| e.get("type").and_then(Value::as_str) == Some("m.room.message")) {
                let body = ev.pointer("/content/body").and_then(Value::as_str).unwrap_or_default();
                if seen.insert(body.to_owned(), arrived).is_some() {
                    bail!("{body:?} was sent twice");
                }
            }
            if seen.len() >= want {
                return Ok(());
            }
        }
        since = sync.get("next_batch").and_then(Value::as_str).context("no next_batch")?.to_owned();
    }
}

async fn schedule(user: &User, room: &str, label: &str, delay_ms: u64) -> Result<()> {
    let txn = format!("dly{:016x}", rand_u64());
    let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}", encode(room));
    let delay = delay_ms.to_string();
    let body = json!({ "msgtype": "m.text", "body": label });
    let answer =
        user.call(Method::PUT, &path, &[("org.matrix.msc4140.delay", delay.as_str())], Some(&body), None).await?;
    if answer.get("delay_id").and_then(Value::as_str).is_none() {
        bail!("the server sent the event at once instead of delaying it (no delayed events?): {answer}");
    }
    Ok(())
}

fn rand_u64() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now())
}
