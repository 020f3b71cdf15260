//! Push delivery latency: a message sent in a room of two, until the other member's push gateway
//! (a small one in the bench, on loopback, answering at once) receives its notification. What a
//! phone owner waits for, minus the gateway's own hop to Apple or Google.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use axum::{Json, Router, extract::State, routing::post};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::scenarios::{Params, register_users};

pub struct PushResult {
    pub latencies_ms: Vec<f64>,
}

/// When each event's notification reached the gateway.
#[derive(Clone, Default)]
struct Arrivals {
    at: Arc<Mutex<HashMap<String, Instant>>>,
    arrived: Arc<Notify>,
}

async fn notify(State(arrivals): State<Arrivals>, Json(body): Json<Value>) -> Json<Value> {
    let now = Instant::now();
    if let Some(event_id) = body["notification"]["event_id"].as_str() {
        arrivals.at.lock().unwrap_or_else(|e| e.into_inner()).entry(event_id.to_owned()).or_insert(now);
        arrivals.arrived.notify_waiters();
    }
    Json(json!({ "rejected": [] }))
}

impl Arrivals {
    async fn wait_for(&self, event_id: &str, within: Duration) -> Result<Instant> {
        let deadline = Instant::now() + within;
        loop {
            let notified = self.arrived.notified();
            if let Some(at) = self.at.lock().unwrap_or_else(|e| e.into_inner()).get(event_id) {
                return Ok(*at);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("no notification for {event_id} within {within:?}");
            }
            let _ = tokio::time::timeout(left, notified).await;
        }
    }
}

pub async fn push_latency(params: &Params, server: &crate::client::Server, messages: usize) -> Result<PushResult> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/_matrix/push/v1/notify", listener.local_addr()?);
    let arrivals = Arrivals::default();
    let app = Router::new().route("/_matrix/push/v1/notify", post(notify)).with_state(arrivals.clone());
    let gateway = tokio::spawn(async move { axum::serve(listener, app).await });

    let users = register_users(server, params, "push", 2).await?;
    let (receiver, sender) = (users.first().context("no user")?, users.get(1).context("no second user")?);
    let room = receiver.create_room(&json!({ "preset": "public_chat" })).await?;
    sender.join_via(&room, None).await?;
    let pusher = json!({
        "kind": "http", "app_id": "org.example.bench", "pushkey": "bench-key", "app_display_name": "Bench",
        "device_display_name": "Bench", "lang": "en", "data": { "url": url },
    });
    receiver.call(Method::POST, "/_matrix/client/v3/pushers/set", &[], Some(&pusher), None).await?;

    // The first push sets up connections and caches: not measured.
    let first = sender.send_text(&room, "push-warm-up", "warming up").await?;
    arrivals.wait_for(&first, Duration::from_secs(30)).await.context("the warm-up push")?;
    let mut latencies_ms = Vec::with_capacity(messages);
    for i in 0..messages {
        let started = Instant::now();
        let event_id = sender.send_text(&room, &format!("push-{i}"), &format!("push {i}")).await?;
        let at = arrivals.wait_for(&event_id, Duration::from_secs(10)).await?;
        latencies_ms.push(at.duration_since(started).as_secs_f64() * 1000.0);
    }
    gateway.abort();
    Ok(PushResult { latencies_ms })
}
