//! Delayed-event timers (MSC4140): many delayed messages scheduled at once, each due at its own
//! time; how late the server sends each one. Calls rest on these timers (a member's leave fires
//! when its client stops restarting it), so their precision is what a call's "left" feels like.
//!
//! Lateness of an event = its `origin_server_ts` − (the wall-clock time its schedule request was
//! sent + its delay). The server received the request after it was sent, so this over-states
//! lateness by the request's way in (well under a millisecond on loopback); clocks are the same
//! machine's.

use std::collections::HashMap;
use std::sync::Arc;
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
/// Delays are spread evenly over this window, from its start.
const FIRST_DELAY_MS: u64 = 3_000;
const DELAY_SPREAD_MS: u64 = 3_000;
/// Concurrent schedule requests.
const SCHEDULE_CONCURRENCY: usize = 16;

pub struct DelayedResult {
    /// Per timer: how late it fired, in ms.
    pub lateness_ms: Vec<f64>,
    /// Timers whose event never arrived.
    pub missed: usize,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Schedules `timers` delayed messages in one room (spread over users of [`PER_USER`] each) and
/// reads back when each was sent.
pub async fn delayed_timers(server: &Server, params: &Params, timers: usize) -> Result<DelayedResult> {
    let users = register_users(server, params, "dly", timers.div_ceil(PER_USER)).await?;
    let owner = users.first().context("no users")?.clone();
    let room = owner.create_room(&json!({ "preset": "public_chat" })).await?;
    join_all(&users[1..], &room, params).await?;

    // Timer i is due FIRST_DELAY_MS + i * spread / timers after its request was sent.
    let mut due_at: HashMap<String, u64> = HashMap::new();
    let limit = Arc::new(Semaphore::new(SCHEDULE_CONCURRENCY));
    let mut tasks = JoinSet::new();
    for i in 0..timers {
        let user = users[i / PER_USER].clone();
        let room = room.clone();
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

    // Wait past the last due time, then read the room's messages.
    let last_due = due_at.values().copied().max().unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(last_due.saturating_sub(now_ms()) + 2_000)).await;
    let sent_at = messages_sent_at(&owner, &room).await?;
    let mut lateness_ms = Vec::with_capacity(timers);
    let mut missed = 0;
    for (label, due) in &due_at {
        match sent_at.get(label) {
            Some(&ts) => lateness_ms.push(ts as f64 - *due as f64),
            None => missed += 1,
        }
    }
    Ok(DelayedResult { lateness_ms, missed })
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

/// `origin_server_ts` of every message in the room, by body (a body seen twice is an error: a
/// timer fired twice).
async fn messages_sent_at(user: &User, room: &str) -> Result<HashMap<String, u64>> {
    let mut out = HashMap::new();
    let mut from: Option<String> = None;
    loop {
        let path = format!("/_matrix/client/v3/rooms/{}/messages", encode(room));
        let mut query = vec![("dir", "b"), ("limit", "500")];
        if let Some(from) = &from {
            query.push(("from", from.as_str()));
        }
        let page = user.call(Method::GET, &path, &query, None, None).await?;
        let chunk = page.get("chunk").and_then(Value::as_array).cloned().unwrap_or_default();
        for ev in &chunk {
            if ev.get("type").and_then(Value::as_str) != Some("m.room.message") {
                continue;
            }
            let body = ev.pointer("/content/body").and_then(Value::as_str).unwrap_or_default().to_owned();
            let ts = ev.get("origin_server_ts").and_then(Value::as_u64).unwrap_or(0);
            if out.insert(body.clone(), ts).is_some() {
                bail!("{body:?} was sent twice");
            }
        }
        match page.get("end").and_then(Value::as_str) {
            Some(end) if !chunk.is_empty() => from = Some(end.to_owned()),
            _ => return Ok(out),
        }
    }
}
