//! Call joins (MatrixRTC), the Matrix side of them, as matrix-js-sdk's `MatrixRTCSession` does
//! them: an OpenID token (for the SFU's JWT service), the member's leave scheduled as a delayed
//! state event (MSC4140), the `org.matrix.msc3401.call.member` state, then the leave's keep-alive
//! restarts, and the hang-up (the delayed leave sent at once). Each call is its own room with
//! the caller and a member who long-polls `/sync`.
//!
//! Measured per call: the caller's join (its three requests, one after another), until the
//! other member's `/sync` shows the membership; one restart's round trip; the hang-up until the
//! other member sees the membership end. The JWT request itself is not measured: the JWT service
//! is a separate program beside Synapse (lk-jwt-service, not installable here) and needs an SFU.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Server, User, encode};
use crate::scenarios::{Params, register_users};

const MEMBER_TYPE: &str = "org.matrix.msc3401.call.member";
/// The delayed leave's delay (Element Call's order of magnitude).
const LEAVE_DELAY_MS: u64 = 10_000;
/// Restarts timed per call.
const RESTARTS: usize = 3;
/// How long the other member may take to see a change before the call counts as failed.
const SEEN_LIMIT: Duration = Duration::from_secs(30);

pub struct CallResult {
    /// Per call: the caller's join requests, in ms.
    pub join_ms: Vec<f64>,
    /// Per call: from the start of the join until the other member saw the membership.
    pub join_seen_ms: Vec<f64>,
    /// Per restart: its round trip.
    pub restart_ms: Vec<f64>,
    /// Per call: from the hang-up request until the other member saw the membership end.
    pub hangup_seen_ms: Vec<f64>,
}

/// What the watching member has seen: (room, "join" | "leave") → when.
type Seen = Arc<Mutex<HashMap<(String, &'static str), Instant>>>;

/// `calls` calls, one after another, each in its own room.
pub async fn call_joins(server: &Server, params: &Params, calls: usize) -> Result<CallResult> {
    let users = register_users(server, params, "call", calls + 1).await?;
    let (watcher, callers) = users.split_first().context("no users")?;
    let mut rooms = Vec::with_capacity(calls);
    for caller in callers {
        // The caller creates the room: its power level lets it send call membership on any
        // server, whatever default the server gives members for it.
        let room = caller.create_room(&json!({ "preset": "public_chat" })).await?;
        watcher.join_via(&room, None).await?;
        rooms.push(room);
    }
    let seen: Seen = Arc::default();
    let since = initial_token(watcher).await?;
    let listening = tokio::spawn(watch(watcher.clone(), rooms.clone(), since, seen.clone()));

    let mut result = CallResult {
        join_ms: Vec::new(),
        join_seen_ms: Vec::new(),
        restart_ms: Vec::new(),
        hangup_seen_ms: Vec::new(),
    };
    for (caller, room) in callers.iter().zip(&rooms) {
        let start = Instant::now();
        let delay_id = join_call(caller, room).await?;
        result.join_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        let seen_at = wait_seen(&seen, room, "join", &listening).await?;
        result.join_seen_ms.push(seen_at.duration_since(start).as_secs_f64() * 1000.0);
        for _ in 0..RESTARTS {
            let start = Instant::now();
            delayed_action(caller, &delay_id, "restart").await?;
            result.restart_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        let start = Instant::now();
        delayed_action(caller, &delay_id, "send").await?;
        let seen_at = wait_seen(&seen, room, "leave", &listening).await?;
        result.hangup_seen_ms.push(seen_at.duration_since(start).as_secs_f64() * 1000.0);
    }
    listening.abort();
    Ok(result)
}

/// The caller's join: OpenID token, delayed leave, membership. Answers the leave's delay id.
async fn join_call(caller: &User, room: &str) -> Result<String> {
    let path = format!("/_matrix/client/v3/user/{}/openid/request_token", encode(&caller.user_id));
    let openid = caller.call(Method::POST, &path, &[], Some(&json!({})), None).await?;
    openid.get("access_token").and_then(Value::as_str).context("no OpenID token")?;
    let key = format!("_{}_{}", caller.user_id, caller.device_id);
    let state_path = format!("/_matrix/client/v3/rooms/{}/state/{MEMBER_TYPE}/{}", encode(room), encode(&key));
    let delay = LEAVE_DELAY_MS.to_string();
    let scheduled = caller
        .call(Method::PUT, &state_path, &[("org.matrix.msc4140.delay", delay.as_str())], Some(&json!({})), None)
        .await?;
    let delay_id = scheduled.get("delay_id").and_then(Value::as_str).context("the leave was not delayed")?.to_owned();
    let membership = json!({
        "application": "m.call",
        "call_id": "",
        "scope": "m.room",
        "device_id": caller.device_id,
        "expires": 14_400_000,
        "focus_active": { "type": "livekit", "focus_selection": "oldest_membership" },
        "foci_preferred": [{ "type": "livekit", "livekit_service_url": "https://jwt.example.org", "livekit_alias": room }],
    });
    caller.call(Method::PUT, &state_path, &[], Some(&membership), None).await?;
    Ok(delay_id)
}

/// `restart` or `send` of a delayed event (the form every server with MSC4140 takes).
async fn delayed_action(caller: &User, delay_id: &str, action: &str) -> Result<()> {
    let path = format!("/_matrix/client/unstable/org.matrix.msc4140/delayed_events/{}", encode(delay_id));
    caller.call(Method::POST, &path, &[], Some(&json!({ "action": action })), None).await?;
    Ok(())
}

/// When the watcher first saw `what` in `room`.
async fn wait_seen(
    seen: &Seen,
    room: &str,
    what: &'static str,
    listening: &tokio::task::JoinHandle<Result<()>>,
) -> Result<Instant> {
    let deadline = Instant::now() + SEEN_LIMIT;
    loop {
        if let Some(at) = seen.lock().map_err(|_| anyhow::anyhow!("watcher poisoned"))?.get(&(room.to_owned(), what)) {
            return Ok(*at);
        }
        if listening.is_finished() {
            bail!("the watching member's sync stopped");
        }
        if Instant::now() > deadline {
            bail!("the other member did not see the call's {what} in {room} within {SEEN_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn initial_token(user: &User) -> Result<String> {
    let filter = json!({ "room": { "timeline": { "limit": 1 } } }).to_string();
    let sync = user.sync(&[("filter", filter.as_str())], Duration::from_secs(60)).await?;
    sync.get("next_batch").and_then(Value::as_str).map(str::to_owned).context("no next_batch")
}

/// Long-polls and notes when each room's membership appears and ends.
async fn watch(user: User, rooms: Vec<String>, mut since: String, seen: Seen) -> Result<()> {
    let filter = json!({ "room": { "timeline": { "limit": 100 } } }).to_string();
    loop {
        let query = [("since", since.as_str()), ("timeout", "30000"), ("filter", filter.as_str())];
        let sync = user.sync(&query, Duration::from_secs(75)).await?;
        let arrived = Instant::now();
        for room in &rooms {
            let pointer = format!("/rooms/join/{}/timeline/events", room.replace('~', "~0").replace('/', "~1"));
            for ev in sync.pointer(&pointer).and_then(Value::as_array).into_iter().flatten() {
                if ev.get("type").and_then(Value::as_str) != Some(MEMBER_TYPE) {
                    continue;
                }
                let ended = ev.get("content").and_then(Value::as_object).is_none_or(|c| c.is_empty());
                let what = if ended { "leave" } else { "join" };
                seen.lock()
                    .map_err(|_| anyhow::anyhow!("watcher poisoned"))?
                    .entry((room.clone(), what))
                    .or_insert(arrived);
            }
        }
        since = sync.get("next_batch").and_then(Value::as_str).context("no next_batch")?.to_owned();
    }
}
