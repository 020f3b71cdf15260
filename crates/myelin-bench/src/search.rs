//! Search (`POST /search`): a room of `messages` messages, then the latency of queries a user
//! types — a common word (in a quarter of the messages), a rare one (one in a thousand), a
//! two-word phrase — by rank and newest first, first page of 10.

use std::{sync::Arc, time::Instant};

use anyhow::{Context, Result, bail};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::{sync::Semaphore, task::JoinSet};

use crate::client::User;
use crate::scenarios::{Params, register_users};

/// Sends in flight while filling the room.
const FILL_CONCURRENCY: usize = 16;

pub struct SearchResult {
    /// Messages per second while filling (the index is written with each).
    pub fill_msgs_per_s: f64,
    pub common_rank_ms: Vec<f64>,
    pub common_recent_ms: Vec<f64>,
    pub rare_ms: Vec<f64>,
    pub phrase_ms: Vec<f64>,
}

/// Message `i`: a common word (`common0`–`common3`), a rare one (`rare0`–`rare999`) right after
/// it, and filler.
fn message(i: usize) -> String {
    let filler: Vec<String> = (0..6).map(|k| format!("filler{}", (i * 7 + k * 13) % 500)).collect();
    format!("common{} rare{} {}", i % 4, i % 1000, filler.join(" "))
}

/// One search; answers how many results came back.
async fn search(user: &User, term: &str, order: &str) -> Result<usize> {
    let body = json!({
        "search_categories": { "room_events": { "search_term": term, "order_by": order, "filter": { "limit": 10 } } }
    });
    let value: Value = user.call(Method::POST, "/_matrix/client/v3/search", &[], Some(&body), None).await?;
    let results = value["search_categories"]["room_events"]["results"].as_array().context("search without results")?;
    Ok(results.len())
}

async fn timed(user: &User, term: &str, order: &str, expect_results: bool) -> Result<f64> {
    let started = Instant::now();
    let found = search(user, term, order).await?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if expect_results && found == 0 {
        bail!("search for {term:?} ({order}) found nothing");
    }
    Ok(ms)
}

pub async fn search_latency(
    params: &Params,
    server: &crate::client::Server,
    messages: usize,
    repeats: usize,
) -> Result<SearchResult> {
    let users = register_users(server, params, "search", 1).await?;
    let user = users.first().context("no user")?.clone();
    let room = user.create_room(&json!({ "preset": "private_chat" })).await?;

    let started = Instant::now();
    let slots = Arc::new(Semaphore::new(FILL_CONCURRENCY));
    let mut sends = JoinSet::new();
    for i in 0..messages {
        let permit = slots.clone().acquire_owned().await?;
        let (user, room) = (user.clone(), room.clone());
        sends.spawn(async move {
            let _permit = permit;
            user.send_text(&room, &format!("s{i}"), &message(i)).await
        });
        while let Some(done) = sends.try_join_next() {
            done??;
        }
    }
    while let Some(done) = sends.join_next().await {
        done??;
    }
    let fill_msgs_per_s = messages as f64 / started.elapsed().as_secs_f64();

    let mut result = SearchResult {
        fill_msgs_per_s,
        common_rank_ms: Vec::new(),
        common_recent_ms: Vec::new(),
        rare_ms: Vec::new(),
        phrase_ms: Vec::new(),
    };
    let rare_kinds = messages.min(1000);
    for r in 0..repeats {
        let common = format!("common{}", r % 4);
        result.common_rank_ms.push(timed(&user, &common, "rank", true).await?);
        result.common_recent_ms.push(timed(&user, &common, "recent", true).await?);
        let n = (r * 37) % rare_kinds;
        result.rare_ms.push(timed(&user, &format!("rare{n}"), "rank", true).await?);
        result.phrase_ms.push(timed(&user, &format!("\"common{} rare{n}\"", n % 4), "rank", true).await?);
    }
    Ok(result)
}
