//! Application service load: many messages in a room the service's bot is in, sent as fast as
//! the senders can, to a slow service (each transaction answered after a delay). Measured: how
//! long until the service has every message, how many it got twice (across transactions of
//! different ids) or never, and how many transactions it took. The service is a small receiver
//! in the bench on the port its registration file names (`--appservice name=PORT:AS_TOKEN`).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use axum::{
    Json, Router,
    extract::{Path, State},
    routing::{post, put},
};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    client::{Server, encode},
    scenarios::{Params, register_users},
};

pub struct AppserviceResult {
    pub messages: usize,
    /// From the first send to the last message sent.
    pub send_secs: f64,
    /// From the first send until the service had every message.
    pub drain_secs: f64,
    pub lost: usize,
    pub duplicated: usize,
    pub transactions: usize,
}

/// What the service received: event ids of the bench's messages (with how often), and the
/// transaction ids it took.
#[derive(Default)]
struct Received {
    events: HashMap<String, usize>,
    txns: HashSet<String>,
}

type Shared = Arc<Mutex<Received>>;

async fn transaction(
    State((received, delay, tag)): State<(Shared, Duration, String)>,
    Path(txn): Path<String>,
    Json(body): Json<Value>,
) -> Json<Value> {
    tokio::time::sleep(delay).await;
    let mut r = received.lock().unwrap_or_else(|e| e.into_inner());
    // A transaction id seen before is a retry the service already took (as the spec asks).
    if r.txns.insert(txn) {
        for event in body["events"].as_array().into_iter().flatten() {
            if event["content"]["body"].as_str().is_some_and(|b| b.starts_with(&tag))
                && let Some(id) = event["event_id"].as_str()
            {
                *r.events.entry(id.to_owned()).or_default() += 1;
            }
        }
    }
    Json(json!({}))
}

async fn not_found() -> (axum::http::StatusCode, Json<Value>) {
    (axum::http::StatusCode::NOT_FOUND, Json(json!({})))
}

/// `messages` messages from `params.senders` senders (one room) through a service answering
/// each transaction after `delay`.
pub async fn appservice_load(
    params: &Params,
    server: &Server,
    port: u16,
    as_token: &str,
    messages: usize,
    delay: Duration,
) -> Result<AppserviceResult> {
    let tag = format!("{}-as", params.prefix);
    let received: Shared = Arc::default();
    let app = Router::new()
        .route("/_matrix/app/v1/transactions/{txn}", put(transaction))
        .route("/transactions/{txn}", put(transaction))
        .route("/_matrix/app/v1/users/{user}", axum::routing::get(not_found))
        .route("/_matrix/app/v1/rooms/{alias}", axum::routing::get(not_found))
        .route("/_matrix/app/v1/ping", post(|| async { Json(json!({})) }))
        .with_state((received.clone(), delay, tag.clone()));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("the service's port {port}"))?;
    let service = tokio::spawn(async move { axum::serve(listener, app).await });

    let senders = register_users(server, params, "as", params.senders.max(1)).await?;
    let owner = senders.first().context("no sender")?;
    let room = owner.create_room(&json!({ "preset": "public_chat" })).await?;
    for sender in senders.iter().skip(1) {
        sender.join_via(&room, None).await?;
    }
    // The service's bot joins with its token: the room's events interest the service.
    let join = format!("/_matrix/client/v3/join/{}", encode(&room));
    server.call(Method::POST, &join, Some(as_token), &[], Some(&json!({})), None).await?;

    let per_sender = messages.div_ceil(senders.len());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (s, sender) in senders.iter().enumerate() {
        let (sender, room, tag) = (sender.clone(), room.clone(), tag.clone());
        let count = per_sender.min(messages.saturating_sub(s * per_sender));
        tasks.push(tokio::spawn(async move {
            for i in 0..count {
                sender.send_text(&room, &format!("{tag}-{s}-{i}"), &format!("{tag} {s} {i}")).await?;
            }
            anyhow::Ok(count)
        }));
    }
    let mut sent = 0;
    for task in tasks {
        sent += task.await??;
    }
    let send_secs = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + params.delivery_timeout.max(Duration::from_secs(600));
    loop {
        let have = received.lock().unwrap_or_else(|e| e.into_inner()).events.len();
        if have >= sent {
            break;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_secs = started.elapsed().as_secs_f64();
    // Anything late or repeated shows within a few transactions more.
    tokio::time::sleep(delay * 3 + Duration::from_millis(200)).await;
    service.abort();
    let r = received.lock().unwrap_or_else(|e| e.into_inner());
    let unique = r.events.len();
    if unique == 0 {
        bail!("the service received none of the {sent} messages");
    }
    Ok(AppserviceResult {
        messages: sent,
        send_secs,
        drain_secs,
        lost: sent.saturating_sub(unique),
        duplicated: r.events.values().map(|n| n - 1).sum(),
        transactions: r.txns.len(),
    })
}
