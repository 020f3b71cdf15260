//! The benchmark scenarios. Each one registers its own users (with the run's
//! random prefix), sets up rooms, measures, and returns its figures.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::client::{Server, User, encode};
use crate::stats::{mean, median, ms, percentile};

/// Knobs shared by all scenarios.
#[derive(Clone, Debug)]
pub struct Params {
    /// Random per-run prefix for user names (lowercase, Matrix-localpart safe).
    pub prefix: String,
    /// Send scenario: number of concurrent senders.
    pub senders: usize,
    /// Send scenario: messages per sender.
    pub count: usize,
    /// Fan-out scenario: number of long-polling listeners.
    pub listeners: usize,
    /// Fan-out scenario: number of measured messages.
    pub fanout_messages: usize,
    /// Initial-sync scenario: number of rooms.
    pub rooms: usize,
    /// Initial-sync scenario: number of timed initial syncs.
    pub sync_repeats: usize,
    /// Parallelism for setup work (registration, room creation, joins).
    pub setup_concurrency: usize,
    /// Fan-out: how long to wait for all listeners to see one message.
    pub delivery_timeout: Duration,
    /// Keys scenario: devices a room key is shared with (10 per user).
    pub key_devices: usize,
    /// Keys scenario: timed repetitions of each request.
    pub key_repeats: usize,
    /// Federation scenario: listeners on the other server.
    pub federation_listeners: usize,
    /// Federation scenario: measured messages.
    pub federation_messages: usize,
    /// Sliding-sync scenario: rooms the user is in.
    pub ss_rooms: usize,
    /// Wide fan-out scenario: rooms, and listeners spread over them.
    pub wide_rooms: usize,
    pub wide_listeners: usize,
    /// Fan-out scenarios: listeners long-poll simplified sliding sync instead of /sync.
    pub fanout_sliding: bool,
}

const PASSWORD: &str = "myelin-bench-password-1";
/// `timeout` query parameter of long-poll syncs, in ms.
const LONG_POLL_MS: &str = "30000";
/// HTTP timeout for a long-poll sync (must exceed the long-poll timeout).
const LONG_POLL_HTTP_TIMEOUT: Duration = Duration::from_secs(75);
/// HTTP timeout for a full initial sync of many rooms.
const INITIAL_SYNC_HTTP_TIMEOUT: Duration = Duration::from_secs(300);
/// A listener gives up after this many consecutive failed syncs.
const MAX_CONSECUTIVE_SYNC_ERRORS: u32 = 10;
/// Hard cap on sync iterations per listener (the loop is also aborted when done).
const MAX_SYNC_ITERATIONS: u32 = 100_000;

pub struct SendResult {
    pub messages: usize,
    pub elapsed: Duration,
    pub latencies_ms: Vec<f64>,
}

impl SendResult {
    pub fn throughput(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub struct FanoutResult {
    /// Per message: time from send start until the last listener saw it (complete deliveries only).
    pub last_seen_ms: Vec<f64>,
    /// Per (message, listener): time from send start until that listener saw it.
    pub per_listener_ms: Vec<f64>,
    /// (message, listener) pairs that were not seen within the delivery timeout.
    pub missed: usize,
    /// The server's own account, if it exposes its metrics: the time its syncs spent building
    /// answers during the measured messages (seconds), and how many answers it built.
    pub server_build: Option<(f64, f64)>,
    /// The server's resident memory with every listener connected, after the last message (MB).
    pub rss_listening_mb: Option<f64>,
    /// CPU time used during the measured messages (ms, user and system): by the server (when its
    /// pid is known) and by this benchmark's own listeners and sender.
    pub server_cpu_ms: Option<f64>,
    pub client_cpu_ms: Option<f64>,
    /// Per (message, listener) for listeners on another process than the sender's (a target
    /// given as several URLs): included in `per_listener_ms` too.
    pub per_listener_elsewhere_ms: Vec<f64>,
}

pub struct InitialSyncResult {
    pub durations_ms: Vec<f64>,
    pub rooms_seen: usize,
    pub response_bytes: usize,
}

impl InitialSyncResult {
    pub fn median_ms(&self) -> Option<f64> {
        median(&self.durations_ms)
    }
}

/// Registers `n` users named `{prefix}{tag}{i}`, `concurrency` at a time.
pub(crate) async fn register_users(server: &Server, params: &Params, tag: &str, n: usize) -> Result<Vec<User>> {
    let sem = Arc::new(Semaphore::new(params.setup_concurrency.max(1)));
    let mut set = JoinSet::new();
    for i in 0..n {
        let server = server.clone();
        let sem = Arc::clone(&sem);
        let name = format!("{}{tag}{i}", params.prefix);
        set.spawn(async move {
            let _permit = sem.acquire_owned().await.context("semaphore closed")?;
            let user = server.register(&name, PASSWORD).await.with_context(|| format!("registering {name}"))?;
            Ok::<_, anyhow::Error>((i, user))
        });
    }
    let mut users: Vec<Option<User>> = vec![None; n];
    while let Some(joined) = set.join_next().await {
        let (i, user) = joined.context("registration task panicked")??;
        if let Some(slot) = users.get_mut(i) {
            *slot = Some(user);
        }
    }
    users.into_iter().map(|u| u.ok_or_else(|| anyhow!("a user was not registered"))).collect()
}

/// Makes every user in `users` join `room_id`, `concurrency` at a time.
pub(crate) async fn join_all(users: &[User], room_id: &str, params: &Params) -> Result<()> {
    join_all_via(users, room_id, None, params).await
}

/// Joins every user to the room, through `via` (a server name) when the room lives elsewhere.
async fn join_all_via(users: &[User], room_id: &str, via: Option<&str>, params: &Params) -> Result<()> {
    let sem = Arc::new(Semaphore::new(params.setup_concurrency.max(1)));
    let mut set = JoinSet::new();
    for user in users {
        let user = user.clone();
        let sem = Arc::clone(&sem);
        let room_id = room_id.to_owned();
        let via = via.map(str::to_owned);
        set.spawn(async move {
            let _permit = sem.acquire_owned().await.context("semaphore closed")?;
            user.join_via(&room_id, via.as_deref()).await
        });
    }
    while let Some(joined) = set.join_next().await {
        joined.context("join task panicked")??;
    }
    Ok(())
}

fn public_room(name: &str) -> Value {
    json!({ "preset": "public_chat", "name": name, "visibility": "private" })
}

/// Send throughput: `senders` users in one room, each sending `count` messages
/// back to back; all senders run concurrently.
pub async fn send(server: &Server, params: &Params) -> Result<SendResult> {
    let senders = params.senders.max(1);
    eprintln!("  send: registering {senders} users");
    let users = register_users(server, params, "s", senders).await?;
    let (owner, others) = users.split_first().context("no senders")?;
    let room_id = owner.create_room(&public_room("myelin-bench send")).await?;
    eprintln!("  send: {} users joining {room_id}", others.len());
    join_all(others, &room_id, params).await?;

    eprintln!("  send: {senders} senders x {} messages, concurrently", params.count);
    let pairs = users.iter().map(|user| (user.clone(), room_id.clone())).collect();
    send_concurrently(pairs, params, "s").await
}

/// Each (user, room) pair sends `params.count` messages back to back, all pairs concurrently;
/// transaction ids carry `tag` so that scenarios never collide.
async fn send_concurrently(pairs: Vec<(User, String)>, params: &Params, tag: &str) -> Result<SendResult> {
    let count = params.count;
    let total = pairs.len() * count;
    let start = Instant::now();
    let mut set = JoinSet::new();
    for (s, (user, room_id)) in pairs.into_iter().enumerate() {
        let txn_prefix = format!("{}-{tag}{s}", params.prefix);
        set.spawn(async move {
            let mut lat = Vec::with_capacity(count);
            for i in 0..count {
                let txn = format!("{txn_prefix}-{i}");
                let t0 = Instant::now();
                user.send_text(&room_id, &txn, &format!("bench message {i} from sender {s}"))
                    .await
                    .with_context(|| format!("sender {s} message {i}"))?;
                lat.push(ms(t0.elapsed()));
            }
            Ok::<_, anyhow::Error>(lat)
        });
    }
    let mut latencies_ms = Vec::with_capacity(total);
    while let Some(joined) = set.join_next().await {
        latencies_ms.extend(joined.context("sender task panicked")??);
    }
    let elapsed = start.elapsed();
    Ok(SendResult { messages: latencies_ms.len(), elapsed, latencies_ms })
}

/// Send throughput across rooms: `senders` users, each in a room of their own, each sending
/// `count` messages back to back, all concurrently. With several servers (processes of one
/// deployment, one database) the senders are shared out in equal blocks, each talking to its
/// server only: how far the deployment's write throughput grows with processes.
pub async fn rooms_send(servers: &[Server], params: &Params) -> Result<SendResult> {
    let senders = params.senders.max(1);
    eprintln!("  rooms-send: {senders} users over {} server(s), a room each", servers.len());
    let mut users = Vec::with_capacity(senders);
    for (i, server) in servers.iter().enumerate() {
        let share = senders / servers.len() + usize::from(i < senders % servers.len());
        users.extend(register_users(server, params, &format!("r{i}_"), share).await?);
    }
    let mut rooms = Vec::with_capacity(users.len());
    for user in &users {
        rooms.push(user.create_room(&public_room("myelin-bench rooms-send")).await?);
    }
    eprintln!("  rooms-send: {} senders x {} messages, concurrently", users.len(), params.count);
    send_concurrently(users.into_iter().zip(rooms).collect(), params, "r").await
}

/// What the listeners have seen: event id -> (listener index -> when).
#[derive(Default)]
struct Sightings {
    seen: Mutex<HashMap<String, HashMap<usize, Instant>>>,
    notify: Notify,
}

impl Sightings {
    fn record(&self, listener: usize, event_ids: &[String], at: Instant) {
        if event_ids.is_empty() {
            return;
        }
        if let Ok(mut seen) = self.seen.lock() {
            for id in event_ids {
                seen.entry(id.clone()).or_default().entry(listener).or_insert(at);
            }
        }
        self.notify.notify_waiters();
    }

    fn count(&self, event_id: &str) -> usize {
        self.seen.lock().map(|seen| seen.get(event_id).map_or(0, HashMap::len)).unwrap_or(0)
    }

    /// When each listener (by index) saw `event_id`.
    fn times(&self, event_id: &str) -> Vec<(usize, Instant)> {
        self.seen
            .lock()
            .map(|seen| seen.get(event_id).map(|m| m.iter().map(|(i, t)| (*i, *t)).collect()).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Waits until `n` listeners have seen `event_id` or the deadline passes;
    /// returns whether all were seen.
    async fn wait_for(&self, event_id: &str, n: usize, deadline: tokio::time::Instant) -> bool {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count(event_id) >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.count(event_id) >= n;
            }
        }
    }
}

fn timeline_event_ids(sync: &Value, room_id: &str) -> Vec<String> {
    sync.pointer("/rooms/join")
        .and_then(|j| j.get(room_id))
        .and_then(|r| r.pointer("/timeline/events"))
        .and_then(Value::as_array)
        .map(|events| {
            events.iter().filter_map(|e| e.get("event_id").and_then(Value::as_str)).map(str::to_owned).collect()
        })
        .unwrap_or_default()
}

fn next_batch(sync: &Value) -> Result<String> {
    sync.get("next_batch").and_then(Value::as_str).map(str::to_owned).context("sync response without next_batch")
}

/// The request a sliding-sync listener long-polls with: one list, the newest event of each room.
fn sliding_listener_request() -> Value {
    json!({
        "conn_id": "fanout",
        "lists": { "all": { "ranges": [[0, 19]], "timeline_limit": 1, "required_state": [["m.room.create", ""]] } },
    })
}

/// The event ids of `room_id`'s timeline in a sliding-sync response.
fn sliding_timeline_event_ids(resp: &Value, room_id: &str) -> Vec<String> {
    resp.pointer("/rooms")
        .and_then(|r| r.get(room_id))
        .and_then(|r| r.get("timeline"))
        .and_then(Value::as_array)
        .map(|events| {
            events.iter().filter_map(|e| e.get("event_id").and_then(Value::as_str)).map(str::to_owned).collect()
        })
        .unwrap_or_default()
}

fn sliding_pos(resp: &Value) -> Result<String> {
    resp.get("pos").and_then(Value::as_str).map(str::to_owned).context("sliding sync response without pos")
}

/// A listener's first sync, unmeasured: the token its long-polls start from.
async fn first_sync(user: &User, sliding: bool) -> Result<String> {
    if sliding {
        return sliding_pos(&sliding_sync(user, None, 0, &sliding_listener_request()).await?);
    }
    let filter = json!({ "room": { "timeline": { "limit": 1 } } }).to_string();
    next_batch(&user.sync(&[("filter", filter.as_str())], INITIAL_SYNC_HTTP_TIMEOUT).await?)
}

/// One listener: long-polls /sync (or sliding sync) from `since`, recording the event ids it sees.
async fn listen(
    user: User,
    index: usize,
    room_id: String,
    mut since: String,
    sliding: bool,
    sightings: Arc<Sightings>,
) -> Result<()> {
    let mut errors = 0u32;
    let body = sliding_listener_request();
    for _ in 0..MAX_SYNC_ITERATIONS {
        let answer = if sliding {
            sliding_sync(&user, Some(&since), 30_000, &body).await
        } else {
            user.sync(&[("since", since.as_str()), ("timeout", LONG_POLL_MS)], LONG_POLL_HTTP_TIMEOUT).await
        };
        match answer {
            Ok(resp) => {
                let at = Instant::now();
                errors = 0;
                if sliding {
                    sightings.record(index, &sliding_timeline_event_ids(&resp, &room_id), at);
                    since = sliding_pos(&resp)?;
                } else {
                    sightings.record(index, &timeline_event_ids(&resp, &room_id), at);
                    since = next_batch(&resp)?;
                }
            }
            Err(err) => {
                errors += 1;
                if errors >= MAX_CONSECUTIVE_SYNC_ERRORS {
                    return Err(err.context(format!("listener {index} gave up")));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    Ok(())
}

/// Fan-out latency: `listeners` users long-poll /sync in one room while a
/// separate sender sends messages one at a time; for each message, measure
/// how long until every listener has seen it. With several `servers` (processes of one
/// deployment), the sender uses the first and the listeners take turns over all of them.
pub async fn fanout(servers: &[Server], params: &Params, pid: Option<u32>) -> Result<FanoutResult> {
    let server = servers.first().context("no server")?;
    let n = params.listeners.max(1);
    eprintln!("  fanout: registering {n} listeners + 1 sender");
    let mut users = register_users(server, params, "f", n + 1).await?;
    let sender = users.pop().context("no sender")?;
    let listeners: Vec<User> = users
        .into_iter()
        .enumerate()
        .map(|(i, u)| match servers.get(i % servers.len()) {
            Some(other) if i % servers.len() != 0 => u.on(other.clone()),
            _ => u,
        })
        .collect();
    let room_id = sender.create_room(&public_room("myelin-bench fanout")).await?;
    eprintln!("  fanout: {n} listeners joining {room_id}");
    join_all(&listeners, &room_id, params).await?;
    let placed = listeners.into_iter().map(|u| (u, room_id.clone())).collect();
    fanout_in_rooms(&sender, placed, std::slice::from_ref(&room_id), params, pid).await
}

/// Fan-out over many rooms: `wide_listeners` users spread evenly over `wide_rooms` rooms, all
/// long-polling at once; the sender sends one message at a time to each room in turn, each
/// timed until every listener of that room has it. Memory is read with everyone connected.
pub async fn fanout_wide(server: &Server, params: &Params, pid: Option<u32>) -> Result<FanoutResult> {
    let rooms = params.wide_rooms.max(1);
    let n = params.wide_listeners.max(rooms);
    eprintln!("  fanout-wide: registering {n} listeners + 1 sender");
    let mut users = register_users(server, params, "w", n + 1).await?;
    let sender = users.pop().context("no sender")?;
    eprintln!("  fanout-wide: creating {rooms} rooms");
    let mut room_ids = Vec::with_capacity(rooms);
    for i in 0..rooms {
        room_ids.push(sender.create_room(&public_room(&format!("myelin-bench wide {i}"))).await?);
    }
    eprintln!("  fanout-wide: {n} listeners joining their rooms");
    let mut placed = Vec::with_capacity(n);
    for (i, user) in users.into_iter().enumerate() {
        let room_id = room_ids.get(i % rooms).context("no room")?.clone();
        placed.push((user, room_id));
    }
    for (r, room_id) in room_ids.iter().enumerate() {
        let members: Vec<User> =
            placed.iter().enumerate().filter(|(i, _)| i % rooms == r).map(|(_, (u, _))| u.clone()).collect();
        join_all(&members, room_id, params).await?;
    }
    fanout_in_rooms(&sender, placed, &room_ids, params, pid).await
}

/// Cross-server latency: the sender on `sender_server` (federation server name
/// `sender_name`), `federation_listeners` listeners on `listener_server` who joined over
/// federation; for each message, how long until every listener has seen it.
pub async fn federation_fanout(
    sender_server: &Server,
    sender_name: &str,
    listener_server: &Server,
    params: &Params,
) -> Result<FanoutResult> {
    let n = params.federation_listeners.max(1);
    eprintln!("  federation: registering 1 sender and {n} listeners on the other server");
    let sender = register_users(sender_server, params, "xs", 1).await?.pop().context("no sender")?;
    let listeners = register_users(listener_server, params, "xl", n).await?;
    let room_id = sender.create_room(&public_room("myelin-bench federation")).await?;
    eprintln!("  federation: {n} listeners joining {room_id} through {sender_name}");
    join_all_via(&listeners, &room_id, Some(sender_name), params).await?;
    let params = Params { fanout_messages: params.federation_messages, ..params.clone() };
    fanout_to(&sender, listeners, &room_id, &params).await
}

/// A big room on a host server, built once for the join scenario.
pub struct BigRoom {
    pub room_id: String,
    /// Members joined (the creator included).
    pub members: usize,
}

/// Builds the join scenario's room on `host`: `members` users joined, and state events of a
/// filler type up to about `state_events` in all.
pub async fn big_room(host: &Server, params: &Params, members: usize, state_events: usize) -> Result<BigRoom> {
    let members = members.max(1);
    // createRoom's own state events are about six; the rest of the state comes with the room
    // (one request: sent one by one, a server slows down as the state grows).
    let filler = state_events.saturating_sub(members + 6);
    eprintln!("  join: a room with {filler} state events besides its members");
    let creator = register_users(host, params, "bo", 1).await?.pop().context("no creator")?;
    let mut body = public_room("myelin-bench big room");
    body["initial_state"] = (0..filler)
        .map(|i| json!({ "type": "org.myelin.bench.filler", "state_key": i.to_string(), "content": { "i": i } }))
        .collect::<Vec<_>>()
        .into();
    let room_id = creator
        .call(reqwest::Method::POST, "/_matrix/client/v3/createRoom", &[], Some(&body), Some(Duration::from_secs(1800)))
        .await?
        .get("room_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("createRoom response without room_id")?;
    eprintln!("  join: registering {members} members on the host");
    let users = register_users(host, params, "bm", members - 1).await?;
    eprintln!("  join: {} members joining {room_id}", members - 1);
    join_all(&users, &room_id, params).await?;
    Ok(BigRoom { room_id, members })
}

pub struct JoinResult {
    /// The `/join` request, from sending it to its answer.
    pub join_ms: f64,
    /// From sending the join until `/joined_members` on the joining server lists every member.
    pub whole_ms: f64,
}

/// A user of `joiner` joins the big room through `host_name`: how long `/join` takes, and how
/// long until the joining server's member list is whole.
pub async fn join_big_room(joiner: &Server, host_name: &str, room: &BigRoom, params: &Params) -> Result<JoinResult> {
    let user = register_users(joiner, params, "bj", 1).await?.pop().context("no joiner")?;
    let start = Instant::now();
    user.join_via(&room.room_id, Some(host_name)).await?;
    let join_ms = ms(start.elapsed());
    let path = format!("/_matrix/client/v3/rooms/{}/joined_members", encode(&room.room_id));
    loop {
        let answer = user.call(reqwest::Method::GET, &path, &[], None, Some(Duration::from_secs(120))).await;
        let count = answer.ok().and_then(|a| a.get("joined").and_then(Value::as_object).map(|m| m.len())).unwrap_or(0);
        if count > room.members {
            break;
        }
        if start.elapsed() > Duration::from_secs(600) {
            bail!("the member list stayed at {count} of {}", room.members + 1);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(JoinResult { join_ms, whole_ms: ms(start.elapsed()) })
}

/// The measured part of a fan-out: listeners long-poll, the sender sends one message at a time.
async fn fanout_to(sender: &User, listeners: Vec<User>, room_id: &str, params: &Params) -> Result<FanoutResult> {
    let placed = listeners.into_iter().map(|u| (u, room_id.to_owned())).collect();
    fanout_in_rooms(sender, placed, &[room_id.to_owned()], params, None).await
}

/// Listeners (each with the room it is in) long-poll; the sender sends one message at a time,
/// to each of `rooms` in turn.
async fn fanout_in_rooms(
    sender: &User,
    listeners: Vec<(User, String)>,
    rooms: &[String],
    params: &Params,
    pid: Option<u32>,
) -> Result<FanoutResult> {
    let n = listeners.len();
    let sliding = params.fanout_sliding;
    eprintln!("  fanout: initial syncs{}", if sliding { " (sliding sync)" } else { "" });
    let sem = Arc::new(Semaphore::new(params.setup_concurrency.max(1)));
    let mut set = JoinSet::new();
    for (i, (user, _)) in listeners.iter().enumerate() {
        let user = user.clone();
        let sem = Arc::clone(&sem);
        set.spawn(async move {
            let _permit = sem.acquire_owned().await.context("semaphore closed")?;
            Ok::<_, anyhow::Error>((i, first_sync(&user, sliding).await?))
        });
    }
    let mut tokens: Vec<Option<String>> = vec![None; n];
    while let Some(joined) = set.join_next().await {
        let (i, token) = joined.context("initial sync task panicked")??;
        if let Some(slot) = tokens.get_mut(i) {
            *slot = Some(token);
        }
    }

    let mut per_room: HashMap<String, usize> = HashMap::new();
    let sightings = Arc::new(Sightings::default());
    let mut listening = JoinSet::new();
    for (i, ((user, room_id), token)) in listeners.iter().zip(tokens).enumerate() {
        let token = token.context("listener without next_batch")?;
        *per_room.entry(room_id.clone()).or_default() += 1;
        listening.spawn(listen(user.clone(), i, room_id.clone(), token, sliding, Arc::clone(&sightings)));
    }
    let rooms: Vec<(&str, usize)> =
        rooms.iter().map(|r| (r.as_str(), per_room.get(r).copied().unwrap_or(0))).filter(|(_, n)| *n > 0).collect();
    // Listeners on another process than the sender's (several URLs for one target).
    let elsewhere: HashSet<usize> = listeners
        .iter()
        .enumerate()
        .filter(|(_, (u, _))| u.server.base() != sender.server.base())
        .map(|(i, _)| i)
        .collect();
    let mut result = measure_fanout(sender, &rooms, params, pid, &sightings, &elsewhere, &mut listening).await;
    if let (Ok(result), Some(pid)) = (&mut result, pid) {
        result.rss_listening_mb = crate::rss_mb(pid).ok();
    }
    listening.abort_all();
    while listening.join_next().await.is_some() {}
    result
}

/// Sends the messages, one at a time, to each of `rooms` (with its number of listeners) in turn.
async fn measure_fanout(
    sender: &User,
    rooms: &[(&str, usize)],
    params: &Params,
    pid: Option<u32>,
    sightings: &Sightings,
    elsewhere: &HashSet<usize>,
    listening: &mut JoinSet<Result<()>>,
) -> Result<FanoutResult> {
    // Warm-up: one unmeasured message per room that every listener must see, which also
    // guarantees all listeners are in their long-poll loop before measuring.
    for (r, (room_id, n)) in rooms.iter().enumerate() {
        let warm = sender
            .send_text(room_id, &format!("{}-fw{r}", params.prefix), "fanout warm-up")
            .await
            .context("warm-up message")?;
        let deadline = tokio::time::Instant::now() + params.delivery_timeout.max(Duration::from_secs(60));
        if !sightings.wait_for(&warm, *n, deadline).await {
            // A listener that died explains the timeout better than the timeout itself.
            if let Some(Ok(Err(err))) = listening.try_join_next() {
                return Err(err.context("listener failed during warm-up"));
            }
            bail!("warm-up message seen by only {}/{n} listeners", sightings.count(&warm));
        }
    }

    eprintln!("  fanout: sending {} messages one at a time", params.fanout_messages);
    let build_before = sender.server.sync_build_totals().await;
    let server_cpu = || pid.and_then(|pid| crate::cpu_seconds(&pid.to_string()));
    let (server_cpu_before, client_cpu_before) = (server_cpu(), crate::cpu_seconds("self"));
    let mut last_seen_ms = Vec::new();
    let mut per_listener_ms = Vec::new();
    let mut per_listener_elsewhere_ms = Vec::new();
    let mut missed = 0;
    for i in 0..params.fanout_messages {
        let Some((room_id, n)) = rooms.get(i % rooms.len().max(1)).copied() else { bail!("no room with listeners") };
        let t0 = Instant::now();
        let event_id = sender
            .send_text(room_id, &format!("{}-f{i}", params.prefix), &format!("fanout {i}"))
            .await
            .with_context(|| format!("fanout message {i}"))?;
        let deadline = tokio::time::Instant::now() + params.delivery_timeout;
        let complete = sightings.wait_for(&event_id, n, deadline).await;
        let seen = sightings.times(&event_id);
        let times: Vec<f64> = seen.iter().map(|(_, t)| ms(t.saturating_duration_since(t0))).collect();
        per_listener_elsewhere_ms.extend(
            seen.iter().filter(|(l, _)| elsewhere.contains(l)).map(|(_, t)| ms(t.saturating_duration_since(t0))),
        );
        missed += n.saturating_sub(times.len());
        if complete {
            if let Some(last) = times.iter().copied().reduce(f64::max) {
                last_seen_ms.push(last);
            }
        } else {
            eprintln!(
                "  fanout: message {i} seen by only {}/{n} listeners within {:?}",
                times.len(),
                params.delivery_timeout
            );
            if let Some(Ok(Err(err))) = listening.try_join_next() {
                return Err(err.context("listener failed"));
            }
        }
        per_listener_ms.extend(times);
    }
    let cpu_ms = |before: Option<f64>, after: Option<f64>| Some((after? - before?) * 1000.0);
    let server_cpu_ms = cpu_ms(server_cpu_before, server_cpu());
    let client_cpu_ms = cpu_ms(client_cpu_before, crate::cpu_seconds("self"));
    // Syncs still in flight when the last message was seen are not counted: a small undercount.
    let build_after = sender.server.sync_build_totals().await;
    let server_build = match (build_before, build_after) {
        (Some((s0, c0)), Some((s1, c1))) if c1 > c0 => Some((s1 - s0, c1 - c0)),
        _ => None,
    };
    Ok(FanoutResult {
        last_seen_ms,
        per_listener_ms,
        missed,
        server_build,
        rss_listening_mb: None,
        server_cpu_ms,
        client_cpu_ms,
        per_listener_elsewhere_ms,
    })
}

/// Initial sync: one user in `rooms` rooms with one message each; time fresh
/// full initial syncs (no since, no filter), each on a newly logged-in device.
pub async fn initial_sync(server: &Server, params: &Params) -> Result<InitialSyncResult> {
    let mut users = register_users(server, params, "i", 1).await?;
    let user = users.pop().context("no user")?;
    eprintln!("  initial-sync: creating {} rooms with one message each", params.rooms);
    let created = create_rooms_with_a_message(&user, params, "i", params.rooms).await?;

    let mut durations_ms = Vec::new();
    let mut rooms_seen = 0;
    let mut response_bytes = 0;
    for rep in 0..params.sync_repeats.max(1) {
        // A fresh device per run, as a new client would have: servers may cache
        // sync responses per device (Synapse does, for 2 minutes), which would
        // turn repeats into cache hits. The login is not timed.
        let device =
            user.login_new_device(PASSWORD).await.with_context(|| format!("new device for initial sync {rep}"))?;
        let t0 = Instant::now();
        let resp = device.sync(&[], INITIAL_SYNC_HTTP_TIMEOUT).await.with_context(|| format!("initial sync {rep}"))?;
        let elapsed = t0.elapsed();
        durations_ms.push(ms(elapsed));
        rooms_seen = resp
            .pointer("/rooms/join")
            .and_then(Value::as_object)
            .map_or(0, |j| j.keys().filter(|k| created.contains(*k)).count());
        response_bytes = resp.to_string().len();
        eprintln!("  initial-sync: run {rep}: {:.1} ms, {rooms_seen}/{} rooms", ms(elapsed), created.len());
    }
    if rooms_seen < created.len() {
        eprintln!("  initial-sync: WARNING: sync returned {rooms_seen} of {} rooms", created.len());
    }
    Ok(InitialSyncResult { durations_ms, rooms_seen, response_bytes })
}

/// Creates `n` private rooms owned by `user`, each with one message, `setup_concurrency` at a time.
async fn create_rooms_with_a_message(user: &User, params: &Params, tag: &str, n: usize) -> Result<HashSet<String>> {
    let sem = Arc::new(Semaphore::new(params.setup_concurrency.max(1)));
    let mut set = JoinSet::new();
    for r in 0..n {
        let user = user.clone();
        let sem = Arc::clone(&sem);
        let txn = format!("{}-{tag}{r}", params.prefix);
        set.spawn(async move {
            let _permit = sem.acquire_owned().await.context("semaphore closed")?;
            let room_id = user
                .create_room(&json!({ "preset": "private_chat", "name": format!("bench room {r}") }))
                .await
                .with_context(|| format!("creating room {r}"))?;
            user.send_text(&room_id, &txn, &format!("hello room {r}"))
                .await
                .with_context(|| format!("message in room {r}"))?;
            Ok::<_, anyhow::Error>(room_id)
        });
    }
    let mut created = HashSet::new();
    while let Some(joined) = set.join_next().await {
        created.insert(joined.context("room task panicked")??);
    }
    Ok(created)
}

pub struct SlidingSyncResult {
    pub rooms: usize,
    pub first_window_ms: Vec<f64>,
    /// Rooms in the last first-window response (should be 20).
    pub window_rooms: usize,
    /// From sending a message to the long-polling connection returning it.
    pub update_ms: Vec<f64>,
    /// RSS growth per idle connection, when the server's pid is known.
    pub kib_per_connection: Option<f64>,
}

impl SlidingSyncResult {
    pub fn first_window_median_ms(&self) -> Option<f64> {
        median(&self.first_window_ms)
    }
    pub fn update_median_ms(&self) -> Option<f64> {
        median(&self.update_ms)
    }
}

const SLIDING_SYNC_PATH: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

/// The request Element X's room list (matrix-sdk-ui `RoomListService`) starts with.
fn element_x_room_list(conn_id: &str) -> Value {
    json!({
        "conn_id": conn_id,
        "lists": { "all_rooms": {
            "ranges": [[0, 19]],
            "timeline_limit": 1,
            "required_state": [
                ["m.room.name", ""], ["m.room.encryption", ""], ["m.room.member", "$LAZY"],
                ["m.room.member", "$ME"], ["m.room.topic", ""], ["m.room.avatar", ""],
                ["m.room.canonical_alias", ""], ["m.room.power_levels", ""],
                ["org.matrix.msc3401.call.member", "*"], ["m.room.join_rules", ""],
                ["m.room.tombstone", ""], ["m.room.create", ""], ["m.room.history_visibility", ""],
                ["io.element.functional_members", ""], ["m.space.parent", "*"], ["m.space.child", "*"],
                ["org.matrix.msc3672.beacon_info", "*"],
            ],
            "filters": {},
        }},
        "extensions": {
            "account_data": { "enabled": true },
            "receipts": { "enabled": true, "rooms": ["*"] },
            "typing": { "enabled": true },
        },
    })
}

async fn sliding_sync(user: &User, pos: Option<&str>, timeout_ms: u64, body: &Value) -> Result<Value> {
    let timeout = timeout_ms.to_string();
    let mut query = vec![("timeout", timeout.as_str())];
    if let Some(pos) = pos {
        query.push(("pos", pos));
    }
    user.call(
        reqwest::Method::POST,
        SLIDING_SYNC_PATH,
        &query,
        Some(body),
        Some(Duration::from_millis(timeout_ms + 30_000)),
    )
    .await
}

/// Simplified sliding sync (MSC4186) for a user in `ss_rooms` rooms: the first `[0,19]` window of a
/// fresh connection with Element X's required state, then the delay from sending a message to
/// the long-polling connection returning it, then the memory each further idle connection costs.
pub async fn sliding_sync_scenario(server: &Server, params: &Params, pid: Option<u32>) -> Result<SlidingSyncResult> {
    let mut users = register_users(server, params, "ss", 1).await?;
    let user = users.pop().context("no user")?;
    eprintln!("  sliding-sync: creating {} rooms with one message each", params.ss_rooms);
    let created = create_rooms_with_a_message(&user, params, "ss", params.ss_rooms).await?;

    let mut first_window_ms = Vec::new();
    let mut window_rooms = 0;
    let mut last = None;
    for rep in 0..params.sync_repeats.max(1) {
        let device = user.login_new_device(PASSWORD).await.with_context(|| format!("new device {rep}"))?;
        let body = element_x_room_list("room-list");
        let t0 = Instant::now();
        let resp = sliding_sync(&device, None, 0, &body).await.with_context(|| format!("first window {rep}"))?;
        first_window_ms.push(ms(t0.elapsed()));
        window_rooms = resp["rooms"].as_object().map_or(0, |r| r.keys().filter(|k| created.contains(*k)).count());
        let count = resp["lists"]["all_rooms"]["count"].as_u64().unwrap_or(0);
        eprintln!(
            "  sliding-sync: first window {rep}: {:.1} ms, {window_rooms} rooms, count {count}",
            ms(t0.elapsed())
        );
        let pos = resp["pos"].as_str().context("no pos")?.to_owned();
        last = Some((device, pos));
    }
    let (device, mut pos) = last.context("no connection")?;

    // Live updates: a long-poll is waiting when the message is sent.
    let rooms: Vec<&String> = created.iter().collect();
    let mut update_ms = Vec::new();
    for i in 0..params.fanout_messages.max(1) {
        let room = rooms[i % rooms.len()].clone();
        let poller = {
            let (device, pos) = (device.clone(), pos.clone());
            tokio::spawn(async move {
                let body = element_x_room_list("room-list");
                let resp = sliding_sync(&device, Some(&pos), 30_000, &body).await?;
                Ok::<_, anyhow::Error>((Instant::now(), resp))
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let text = format!("live update {i}");
        let t0 = Instant::now();
        user.send_text(&room, &format!("{}-live{i}", params.prefix), &text).await?;
        let (returned_at, resp) = poller.await.context("poller panicked")??;
        let has_it = resp["rooms"][&room]["timeline"]
            .as_array()
            .is_some_and(|tl| tl.iter().any(|e| e["content"]["body"] == text.as_str()));
        if !has_it {
            bail!("the long-poll returned without the new message: {resp}");
        }
        update_ms.push(ms(returned_at.saturating_duration_since(t0)));
        pos = resp["pos"].as_str().context("no pos")?.to_owned();
    }

    // Idle connections: the marginal RSS of each further connection (after its first window). A
    // first 100 warm the server's caches; the growth over the next 300 is divided by 300.
    let kib_per_connection = match pid {
        Some(pid) => {
            let open = |from: usize, to: usize| {
                let device = device.clone();
                async move {
                    for c in from..to {
                        sliding_sync(&device, None, 0, &element_x_room_list(&format!("idle-{c}"))).await?;
                    }
                    Ok::<_, anyhow::Error>(())
                }
            };
            open(0, 100).await?;
            let before = crate::rss_mb(pid)?;
            open(100, 400).await?;
            let after = crate::rss_mb(pid)?;
            Some(((after - before) * 1024.0 / 300.0).max(0.0))
        }
        None => None,
    };
    Ok(SlidingSyncResult { rooms: created.len(), first_window_ms, window_rooms, update_ms, kib_per_connection })
}

pub struct KeysResult {
    pub devices: usize,
    /// Keys handed out by the last claim (should equal `devices`).
    pub claimed: usize,
    pub claim_ms: Vec<f64>,
    pub to_device_ms: Vec<f64>,
}

impl KeysResult {
    pub fn claim_median_ms(&self) -> Option<f64> {
        median(&self.claim_ms)
    }
    pub fn to_device_median_ms(&self) -> Option<f64> {
        median(&self.to_device_ms)
    }
}

/// Sharing a room key with many devices, as a client does before its first message in a big
/// encrypted room: one `/keys/claim` for a one-time key of every device, then one
/// `/sendToDevice` carrying an encrypted message to each. `key_devices` devices (10 per user),
/// each with `key_repeats` one-time keys, so every repetition claims fresh keys.
pub async fn keys(server: &Server, params: &Params) -> Result<KeysResult> {
    let per_user = 10;
    let users = register_users(server, params, "k", params.key_devices.div_ceil(per_user).max(1)).await?;
    eprintln!("  keys: logging in {} devices", params.key_devices);
    let sem = Arc::new(Semaphore::new(params.setup_concurrency.max(1)));
    let mut set = JoinSet::new();
    for (u, user) in users.iter().enumerate() {
        for d in 0..per_user {
            if u * per_user + d >= params.key_devices {
                break;
            }
            let (user, sem, repeats) = (user.clone(), Arc::clone(&sem), params.key_repeats.max(1));
            set.spawn(async move {
                let _permit = sem.acquire_owned().await.context("semaphore closed")?;
                let device = if d == 0 { user } else { user.login_new_device(PASSWORD).await? };
                let otks: serde_json::Map<String, Value> = (0..repeats)
                    .map(|k| {
                        let key = json!({
                            "key": format!("otk{k}-{}", device.device_id),
                            // Servers check the shape; the signature itself is not verifiable
                            // without device keys, which this scenario does not upload.
                            "signatures": { device.user_id.clone(): { format!("ed25519:{}", device.device_id): "c2ln" } },
                        });
                        (format!("signed_curve25519:AAAA{k}"), key)
                    })
                    .collect();
                device
                    .call(
                        reqwest::Method::POST,
                        "/_matrix/client/v3/keys/upload",
                        &[],
                        Some(&json!({ "one_time_keys": otks })),
                        None,
                    )
                    .await?;
                Ok::<_, anyhow::Error>(device)
            });
        }
    }
    let mut devices = Vec::new();
    while let Some(joined) = set.join_next().await {
        devices.push(joined.context("device task panicked")??);
    }
    let sender = devices.first().cloned().context("no device")?;
    let mut wanted: HashMap<String, serde_json::Map<String, Value>> = HashMap::new();
    let mut messages: HashMap<String, serde_json::Map<String, Value>> = HashMap::new();
    let payload = "x".repeat(600);
    for d in &devices {
        wanted.entry(d.user_id.clone()).or_default().insert(d.device_id.clone(), json!("signed_curve25519"));
        messages.entry(d.user_id.clone()).or_default().insert(
            d.device_id.clone(),
            json!({ "algorithm": "m.olm.v1.curve25519-aes-sha2", "sender_key": "bench", "ciphertext": { "k": { "type": 0, "body": payload } } }),
        );
    }
    let mut result = KeysResult { devices: devices.len(), claimed: 0, claim_ms: Vec::new(), to_device_ms: Vec::new() };
    for rep in 0..params.key_repeats.max(1) {
        let t0 = Instant::now();
        let resp = sender
            .call(
                reqwest::Method::POST,
                "/_matrix/client/v3/keys/claim",
                &[],
                Some(&json!({ "one_time_keys": wanted })),
                None,
            )
            .await
            .with_context(|| format!("claim {rep}"))?;
        result.claim_ms.push(ms(t0.elapsed()));
        result.claimed = resp
            .get("one_time_keys")
            .and_then(Value::as_object)
            .map_or(0, |users| users.values().filter_map(Value::as_object).map(|d| d.len()).sum());
        let t0 = Instant::now();
        let path = format!("/_matrix/client/v3/sendToDevice/m.room.encrypted/{}k{rep}", params.prefix);
        sender
            .call(reqwest::Method::PUT, &path, &[], Some(&json!({ "messages": messages })), None)
            .await
            .with_context(|| format!("sendToDevice {rep}"))?;
        result.to_device_ms.push(ms(t0.elapsed()));
        eprintln!(
            "  keys: run {rep}: claim {:.1} ms ({} keys), to-device {:.1} ms",
            result.claim_ms[rep], result.claimed, result.to_device_ms[rep]
        );
    }
    Ok(result)
}

/// p50/p99 helpers used by the report.
pub fn p50(v: &[f64]) -> Option<f64> {
    percentile(v, 50.0)
}
pub fn p99(v: &[f64]) -> Option<f64> {
    percentile(v, 99.0)
}
pub fn avg(v: &[f64]) -> Option<f64> {
    mean(v)
}
