//! MatrixRTC on the wire: delayed events (MSC4140) as calls use them — a dead man's switch that
//! restarts hold and that fires on time when they stop, survives `kill -9`, and fires once across
//! processes — with every management path and error; transport discovery; and the embedded
//! LiveKit JWT service checked as the SFU would check its tokens.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use base64::Engine;
use hmac::{Hmac, Mac};
use myelin_e2e::{Client, NO_RATE_LIMITS, TestServer, enc, errcode, fake_sfu::FakeSfu, room_path};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const MEMBER_TYPE: &str = "org.matrix.msc3401.call.member";
const DELAYED: &str = "/_matrix/client/unstable/org.matrix.msc4140/delayed_events";
const LIVEKIT_SECRET: &str = "a-livekit-api-secret-of-thirty-two-chars";

/// The server's LiveKit settings for an SFU at `url`.
fn livekit_env(url: &str) -> [(&'static str, &str); 3] {
    [("MYELIN_LIVEKIT_URL", url), ("MYELIN_LIVEKIT_KEY", "devkey"), ("MYELIN_LIVEKIT_SECRET", LIVEKIT_SECRET)]
}

/// `PUT` of a state event, delayed by `delay_ms`; answers the delay id.
async fn delay_state(client: &Client, room: &str, key: &str, content: Value, delay_ms: u64) -> Result<String> {
    let path = room_path(room, &format!("state/{MEMBER_TYPE}/{}?org.matrix.msc4140.delay={delay_ms}", enc(key)));
    let (status, body) = client.put(&path, &content).await?;
    ensure!(status == 200, "delayed state: {status} {body}");
    body["delay_id"].as_str().map(str::to_owned).context("no delay_id")
}

/// A delayed `m.room.message`; answers the delay id.
async fn delay_message(client: &Client, room: &str, body: &str, delay_ms: u64) -> Result<String> {
    let txn = format!("d{:016x}", rand::random::<u64>());
    let path = room_path(room, &format!("send/m.room.message/{txn}?org.matrix.msc4140.delay={delay_ms}"));
    let (status, resp) = client.put(&path, &json!({ "msgtype": "m.text", "body": body })).await?;
    ensure!(status == 200, "delayed send: {status} {resp}");
    resp["delay_id"].as_str().map(str::to_owned).context("no delay_id")
}

/// The call member state at `key` (its content), as the room shows it now.
async fn member_state(client: &Client, room: &str, key: &str) -> Result<Option<Value>> {
    let (status, body) = client.get(&room_path(room, &format!("state/{MEMBER_TYPE}/{}", enc(key)))).await?;
    Ok((status == 200).then_some(body))
}

/// The full state event at `key`, from `/state`.
async fn member_event(client: &Client, room: &str, key: &str) -> Result<Option<Value>> {
    let (status, body) = client.get(&room_path(room, "state")).await?;
    ensure!(status == 200, "state: {status} {body}");
    Ok(body
        .as_array()
        .and_then(|events| events.iter().find(|e| e["type"] == MEMBER_TYPE && e["state_key"] == key).cloned()))
}

/// The bodies of the room's messages, oldest first.
async fn message_bodies(client: &Client, room: &str) -> Result<Vec<String>> {
    Ok(client
        .all_messages_forward(room, 100)
        .await?
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect())
}

fn join_content(device: &str) -> Value {
    json!({ "application": "m.call", "call_id": "", "scope": "m.room", "device_id": device, "expires": 14_400_000 })
}

/// A call: the members join with a delayed leave and restart it every 400 ms; it stays pending
/// while they do, and fires on its time once they stop (as when a client dies).
#[tokio::test]
async fn a_dead_mans_switch_holds_while_restarted_and_fires_on_time() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let room = alice.create_room(json!({ "preset": "private_chat" })).await?;
    let key = format!("_{}_{}_m.call", alice.user_id, alice.device_id);

    let delay_ms = 1_500;
    let delay_id = delay_state(&alice, &room, &key, json!({}), delay_ms).await?;
    let (status, body) = alice
        .put(&room_path(&room, &format!("state/{MEMBER_TYPE}/{}", enc(&key))), &join_content(&alice.device_id))
        .await?;
    ensure!(status == 200, "join the call: {status} {body}");

    // The last restart happened between these two instants.
    let (mut restart_sent, mut restart_answered) = (Instant::now(), Instant::now());
    let held_until = Instant::now() + Duration::from_millis(3_500);
    while Instant::now() < held_until {
        tokio::time::sleep(Duration::from_millis(400)).await;
        restart_sent = Instant::now();
        let (status, body) = alice.post(&format!("{DELAYED}/{delay_id}/restart"), &json!({})).await?;
        ensure!(status == 200, "restart: {status} {body}");
        restart_answered = Instant::now();
    }
    ensure!(
        member_state(&alice, &room, &key).await? == Some(join_content(&alice.device_id)),
        "restarted every 400 ms, a 1.5 s delayed leave has not fired"
    );

    // The client "dies": no more restarts. The leave arrives when it was due, not before.
    let delay = Duration::from_millis(delay_ms);
    let fired_at = loop {
        if member_state(&alice, &room, &key).await? == Some(json!({})) {
            break Instant::now();
        }
        ensure!(Instant::now() < restart_answered + delay + Duration::from_secs(5), "the delayed leave never fired");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let early = (restart_sent + delay).saturating_duration_since(fired_at);
    let late = fired_at.saturating_duration_since(restart_answered + delay);
    eprintln!("delayed leave: seen at most {late:?} after its time (polling every 10 ms)");
    // The server moved the timer while the restart was in flight: the event cannot be seen before
    // the restart was sent plus the delay, and a timer fires within milliseconds (the bound has
    // slack for a loaded CI machine).
    ensure!(early.is_zero(), "fired {early:?} before its time");
    ensure!(late < Duration::from_millis(500), "fired {late:?} late");

    // Sent from the scheduling device: its sender sees the delay id, others do not.
    let event = member_event(&alice, &room, &key).await?.context("the leave event")?;
    ensure!(event["sender"] == alice.user_id.as_str());
    let (status, listed) = alice.get(DELAYED).await?;
    ensure!(status == 200 && listed["delayed_events"] == json!([]), "nothing pending after it fired: {listed}");
    let (status, body) = alice.post(&format!("{DELAYED}/{delay_id}/restart"), &json!({})).await?;
    ensure!(status == 404 && errcode(&body) == "M_NOT_FOUND", "a fired event cannot be restarted: {status} {body}");
    Ok(())
}

/// Listing, cancel / restart / send in both path forms, with and without a token, and every
/// error a client can provoke.
#[tokio::test]
async fn delayed_events_are_managed_and_limited() -> Result<()> {
    let config = format!("{NO_RATE_LIMITS}\n[rtc]\nmax_event_delay_ms = 60000\nmax_delayed_events_per_user = 3\n");
    let server = TestServer::start_with(&config).await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    ensure!(bob.join(&room).await?.0 == 200);

    // Advertised: the unstable feature and the capability with the configured limits.
    let (_, versions) = alice.get("/_matrix/client/versions").await?;
    ensure!(versions["unstable_features"]["org.matrix.msc4140"] == true, "{versions}");
    let (_, caps) = alice.get("/_matrix/client/v3/capabilities").await?;
    ensure!(
        caps["capabilities"]["org.matrix.msc4140.delayed_events"]
            == json!({ "max_delay_ms": 60000, "max_scheduled": 3 }),
        "{caps}"
    );

    let first = delay_message(&alice, &room, "first", 50_000).await?;
    let second = delay_message(&alice, &room, "second", 40_000).await?;
    let (status, listed) = alice.get(DELAYED).await?;
    ensure!(status == 200, "{listed}");
    let ids: Vec<&str> =
        listed["delayed_events"].as_array().context("list")?.iter().filter_map(|e| e["delay_id"].as_str()).collect();
    ensure!(ids == [second.as_str(), first.as_str()], "soonest first: {listed}");
    let entry = &listed["delayed_events"][0];
    ensure!(
        entry["room_id"] == room.as_str() && entry["type"] == "m.room.message" && entry["delay"] == 40_000,
        "{entry}"
    );
    ensure!(
        entry["content"]["body"] == "second" && entry["running_since"].is_u64() && entry.get("state_key").is_none()
    );
    let (_, bobs) = bob.get(DELAYED).await?;
    ensure!(bobs["delayed_events"] == json!([]), "a user lists their own only: {bobs}");

    // Bob's token does not find alice's events; no token at all acts on the id (the capability).
    let (status, body) = bob.post(&format!("{DELAYED}/{first}/send"), &json!({})).await?;
    ensure!(status == 404 && errcode(&body) == "M_NOT_FOUND", "another user's event: {status} {body}");
    let anonymous = server.anonymous();
    let (status, body) = anonymous.post(&format!("{DELAYED}/{first}"), &json!({ "action": "restart" })).await?;
    ensure!(status == 200 && body == json!({}), "restart without a token: {status} {body}");

    // `send` now: the event appears at once, and its sender sees the delay id in `unsigned`.
    let (status, body) = alice.post(&format!("{DELAYED}/{first}"), &json!({ "action": "send" })).await?;
    ensure!(status == 200, "send: {status} {body}");
    ensure!(message_bodies(&alice, &room).await? == ["first"], "sent at once");
    let sent = alice
        .all_messages_forward(&room, 100)
        .await?
        .into_iter()
        .find(|e| e["content"]["body"] == "first")
        .context("sent")?;
    ensure!(sent["unsigned"]["org.matrix.msc4140.delay_id"] == first.as_str(), "the sender sees its delay id: {sent}");
    ensure!(sent["unsigned"].get("transaction_id").is_none(), "{sent}");
    let seen_by_bob = bob
        .all_messages_forward(&room, 100)
        .await?
        .into_iter()
        .find(|e| e["content"]["body"] == "first")
        .context("bob")?;
    ensure!(seen_by_bob["unsigned"].get("org.matrix.msc4140.delay_id").is_none(), "others do not: {seen_by_bob}");

    // `cancel`: gone for good.
    let (status, _) = alice.post(&format!("{DELAYED}/{second}/cancel"), &json!({})).await?;
    ensure!(status == 200);
    for action in ["cancel", "restart", "send"] {
        let (status, body) = alice.post(&format!("{DELAYED}/{second}/{action}"), &json!({})).await?;
        ensure!(status == 404 && errcode(&body) == "M_NOT_FOUND", "{action} after cancel: {status} {body}");
    }

    // Malformed management requests.
    let (status, body) = alice.post(&format!("{DELAYED}/{first}"), &json!({})).await?;
    ensure!(status == 400 && errcode(&body) == "M_MISSING_PARAM", "no action: {status} {body}");
    let (status, body) = alice.post(&format!("{DELAYED}/{first}"), &json!({ "action": "explode" })).await?;
    ensure!(status == 400 && errcode(&body) == "M_INVALID_PARAM", "unknown action: {status} {body}");
    let (status, body) = alice.post(&format!("{DELAYED}/{first}/explode"), &json!({})).await?;
    ensure!(status == 404 && errcode(&body) == "M_UNRECOGNIZED", "unknown action path: {status} {body}");
    let (status, body) =
        alice.with_token(Some("nonsense")).post(&format!("{DELAYED}/{first}/send"), &json!({})).await?;
    ensure!(status == 401 && errcode(&body) == "M_UNKNOWN_TOKEN", "a wrong token is refused: {status} {body}");

    // Scheduling errors: a bad delay, one past the maximum (the shape matrix-js-sdk shrinks its
    // delay on), a room the user is not in, too many pending.
    for bad in ["-5", "soon", "1.5"] {
        let path = room_path(&room, &format!("send/m.room.message/bad{bad}?org.matrix.msc4140.delay={bad}"));
        let (status, body) = alice.put(&path, &json!({ "body": "x" })).await?;
        ensure!(status == 400 && errcode(&body) == "M_INVALID_PARAM", "delay {bad}: {status} {body}");
    }
    let path = room_path(&room, "send/m.room.message/toolong?org.matrix.msc4140.delay=60001");
    let (status, body) = alice.put(&path, &json!({ "body": "x" })).await?;
    ensure!(
        status == 400
            && body["org.matrix.msc4140.errcode"] == "M_MAX_DELAY_EXCEEDED"
            && body["org.matrix.msc4140.max_delay"] == 60000,
        "past the maximum: {status} {body}"
    );
    let carol = server.register("carol").await?;
    let path = room_path(&room, "send/m.room.message/outsider?org.matrix.msc4140.delay=1000");
    let (status, body) = carol.put(&path, &json!({ "body": "x" })).await?;
    ensure!(status == 403 && errcode(&body) == "M_FORBIDDEN", "not in the room: {status} {body}");
    // A retried schedule (same transaction id, its answer lost): the same delayed event.
    let retried = room_path(&room, "send/m.room.message/retried?org.matrix.msc4140.delay=30000");
    let (_, one) = alice.put(&retried, &json!({ "body": "once" })).await?;
    let (_, two) = alice.put(&retried, &json!({ "body": "once" })).await?;
    ensure!(one["delay_id"].is_string() && one == two, "one delayed event per transaction id: {one} {two}");
    let (status, body) =
        alice.put(&room_path(&room, "send/m.room.message/org.matrix.msc4140.delay:x"), &json!({ "body": "x" })).await?;
    ensure!(status == 400 && errcode(&body) == "M_INVALID_PARAM", "the server's own txn prefix: {status} {body}");
    let path = room_path(&room, &format!("state/m.room.member/{}?org.matrix.msc4140.delay=1000", enc(&alice.user_id)));
    let (status, body) = alice.put(&path, &json!({ "membership": "leave" })).await?;
    ensure!(status == 400 && errcode(&body) == "M_INVALID_PARAM", "membership is not delayed: {status} {body}");

    // Alice has one pending now (one sent, one cancelled, one retried): two places left.
    for i in 0..2 {
        delay_message(&alice, &room, &format!("filler {i}"), 30_000).await?;
    }
    let path = room_path(&room, "send/m.room.message/fourth?org.matrix.msc4140.delay=1000");
    let (status, body) = alice.put(&path, &json!({ "body": "x" })).await?;
    ensure!(
        status == 429 && errcode(&body) == "M_LIMIT_EXCEEDED" && body["retry_after_ms"].is_u64(),
        "fourth: {status} {body}"
    );
    Ok(())
}

/// A write to a state entry by another user cancels the delayed writes to it others have
/// pending; the writer's own pending write stays.
#[tokio::test]
async fn another_users_write_cancels_a_pending_delayed_state_write() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    ensure!(bob.join(&room).await?.0 == 200);
    let key = "_shared_slot";

    let alices = delay_state(&alice, &room, key, json!({ "by": "alice" }), 30_000).await?;
    let bobs = delay_state(&bob, &room, key, json!({ "by": "bob later" }), 30_000).await?;
    // Alice writes it herself: her own pending write stays, bob's goes.
    let path = room_path(&room, &format!("state/{MEMBER_TYPE}/{key}"));
    ensure!(alice.put(&path, &join_content("A")).await?.0 == 200, "call.member is open to members by default");
    let (_, listed) = alice.get(DELAYED).await?;
    ensure!(listed["delayed_events"][0]["delay_id"] == alices.as_str(), "her own stays: {listed}");
    let (_, listed) = bob.get(DELAYED).await?;
    ensure!(listed["delayed_events"] == json!([]), "bob's is cancelled by alice's write: {listed}");
    let (status, _) = bob.post(&format!("{DELAYED}/{bobs}/send"), &json!({})).await?;
    ensure!(status == 404, "a cancelled event cannot be sent");

    // Bob's write cancels alice's.
    ensure!(bob.put(&path, &join_content("B")).await?.0 == 200);
    let (_, listed) = alice.get(DELAYED).await?;
    ensure!(listed["delayed_events"] == json!([]), "cancelled by bob's write: {listed}");
    ensure!(member_state(&alice, &room, key).await? == Some(join_content("B")));
    Ok(())
}

/// Delayed events due while the server was down (killed with SIGKILL) are sent once each when
/// it is back, in the order they were due — not the order they were scheduled.
#[tokio::test]
async fn overdue_delayed_events_are_sent_once_in_order_after_a_crash() -> Result<()> {
    let mut server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let room = alice.create_room(json!({ "preset": "private_chat" })).await?;
    delay_message(&alice, &room, "third", 1_400).await?;
    delay_message(&alice, &room, "first", 1_000).await?;
    delay_message(&alice, &room, "second", 1_200).await?;
    server.kill9();
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    server.start_again().await?;
    let alice = alice.on(&server);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let bodies = message_bodies(&alice, &room).await?;
        if bodies.len() >= 3 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let bodies = message_bodies(&alice, &room).await?;
            ensure!(bodies == ["first", "second", "third"], "once each, in the order due: {bodies:?}");
            break;
        }
        ensure!(Instant::now() < deadline, "overdue events not sent after the restart: {bodies:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, listed) = alice.get(DELAYED).await?;
    ensure!(listed["delayed_events"] == json!([]), "{listed}");
    Ok(())
}

/// Two processes on one PostgreSQL database: each delayed event is sent by exactly one of them.
#[tokio::test]
async fn each_delayed_event_fires_once_across_processes() -> Result<()> {
    if myelin_e2e::repeat_of_sqlite_pass("each_delayed_event_fires_once_across_processes") {
        return Ok(());
    }
    let a = TestServer::start_postgres().await?;
    let b = a.start_peer().await?;
    let alice = a.register("alice").await?;
    let room = alice.create_room(json!({ "preset": "private_chat" })).await?;
    let on_b = alice.on(&b);
    let count = 20;
    for i in 0..count {
        let via = if i % 2 == 0 { &alice } else { &on_b };
        delay_message(via, &room, &format!("m{i:02}"), 800).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while message_bodies(&alice, &room).await?.len() < count {
        ensure!(Instant::now() < deadline, "not every delayed event was sent");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut bodies = message_bodies(&on_b, &room).await?;
    bodies.sort();
    let want: Vec<String> = (0..count).map(|i| format!("m{i:02}")).collect();
    ensure!(bodies == want, "each exactly once: {bodies:?}");
    Ok(())
}

/// The SHA-256 of the parts as a JSON array, unpadded standard base64 (the reference service's
/// identities and room names).
fn livekit_hash(parts: &[&str]) -> String {
    let json = serde_json::to_string(parts).expect("json");
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(json.as_bytes()))
}

/// The claims of a LiveKit JWT after checking its HS256 signature with `secret`.
fn verified_claims(jwt: &str, secret: &str) -> Result<Value> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = jwt.split('.').collect();
    ensure!(parts.len() == 3, "not a JWT: {jwt}");
    let header: Value = serde_json::from_slice(&b64.decode(parts[0])?)?;
    ensure!(header["alg"] == "HS256", "{header}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())?;
    mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
    mac.verify_slice(&b64.decode(parts[2])?).map_err(|_| anyhow::anyhow!("bad signature"))?;
    Ok(serde_json::from_slice(&b64.decode(parts[1])?)?)
}

async fn openid_token(client: &Client) -> Result<Value> {
    let (status, token) = client
        .post(&format!("/_matrix/client/v3/user/{}/openid/request_token", enc(&client.user_id)), &json!({}))
        .await?;
    ensure!(status == 200, "openid: {status} {token}");
    Ok(token)
}

/// The embedded JWT service: discovered through `rtc/transports` and `.well-known`, it turns an
/// OpenID token of a room member into a LiveKit token the SFU accepts (having the SFU create the
/// call's room: this server's users have full access), and refuses everyone else.
#[tokio::test]
async fn the_livekit_jwt_service_admits_room_members_only() -> Result<()> {
    let sfu = FakeSfu::start("devkey", LIVEKIT_SECRET).await?;
    let server = TestServer::start_with_env(NO_RATE_LIMITS, &livekit_env(sfu.url())).await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "private_chat" })).await?;

    // Discovery.
    let (status, body) = server.anonymous().get("/_matrix/client/unstable/org.matrix.msc4143/rtc/transports").await?;
    ensure!(status == 401, "transports need a token: {status} {body}");
    let (status, transports) = alice.get("/_matrix/client/unstable/org.matrix.msc4143/rtc/transports").await?;
    ensure!(status == 200, "{transports}");
    let service = transports["rtc_transports"][0]["livekit_service_url"].as_str().context("service url")?.to_owned();
    ensure!(transports["rtc_transports"][0]["type"] == "livekit");
    ensure!(service == format!("{}/_myelin/livekit/jwt", server.base_url()), "on Myelin's own listener: {service}");
    let (_, stable) = alice.get("/_matrix/client/v1/rtc/transports").await?;
    ensure!(stable == transports, "{stable}");
    let (_, well_known) = server.anonymous().get("/.well-known/matrix/client").await?;
    ensure!(well_known["org.matrix.msc4143.rtc_foci"] == transports["rtc_transports"], "{well_known}");
    let jwt_service = Client::new(&service);
    let (status, _) = jwt_service.get("/healthz").await?;
    ensure!(status == 200);

    // A member's token: the reference service's identity and room, signed with the secret.
    let token = openid_token(&alice).await?;
    let request = json!({
        "room_id": room,
        "slot_id": "m.call#ROOM",
        "openid_token": token,
        "member": { "id": "member-1", "claimed_user_id": alice.user_id, "claimed_device_id": alice.device_id },
    });
    let (status, granted) = jwt_service.post("/get_token", &request).await?;
    ensure!(status == 200, "get_token: {status} {granted}");
    ensure!(granted["url"] == sfu.url(), "{granted}");
    let jwt = granted["jwt"].as_str().context("jwt")?;
    let claims = verified_claims(jwt, LIVEKIT_SECRET)?;
    ensure!(verified_claims(jwt, "another secret").is_err(), "only the configured secret verifies it");
    ensure!(claims["iss"] == "devkey", "{claims}");
    ensure!(claims["sub"] == livekit_hash(&[&alice.user_id, &alice.device_id, "member-1"]), "{claims}");
    ensure!(claims["video"]["room"] == livekit_hash(&[&room, "m.call#ROOM"]), "{claims}");
    ensure!(claims["video"]["roomJoin"] == true && claims["video"]["canPublish"] == true, "{claims}");
    let (exp, nbf) = (claims["exp"].as_u64().context("exp")?, claims["nbf"].as_u64().context("nbf")?);
    ensure!(exp - nbf == 3600, "an hour: {claims}");
    let created = sfu.calls("CreateRoom");
    ensure!(created.len() == 1, "the call's room created on the SFU first: {created:?}");
    ensure!(created[0].body["name"] == claims["video"]["room"], "{:?}", created[0]);
    ensure!(created[0].body["empty_timeout"] == 300 && created[0].body["departure_timeout"] == 20, "{:?}", created[0]);
    ensure!(sfu.refused() == 0, "every call to the SFU's API carried a valid token");

    // The legacy endpoint: identity `user:device`, the room's call.
    let legacy = json!({ "room": room, "openid_token": openid_token(&alice).await?, "device_id": alice.device_id });
    let (status, granted) = jwt_service.post("/sfu/get", &legacy).await?;
    ensure!(status == 200, "sfu/get: {status} {granted}");
    let claims = verified_claims(granted["jwt"].as_str().context("jwt")?, LIVEKIT_SECRET)?;
    ensure!(claims["sub"] == format!("{}:{}", alice.user_id, alice.device_id), "{claims}");
    ensure!(claims["video"]["room"] == livekit_hash(&[&room, "m.call#ROOM"]), "{claims}");

    // Refusals.
    let mut not_member = request.clone();
    not_member["openid_token"] = openid_token(&bob).await?;
    not_member["member"]["claimed_user_id"] = json!(bob.user_id);
    let (status, body) = jwt_service.post("/get_token", &not_member).await?;
    ensure!(status == 403 && errcode(&body) == "M_FORBIDDEN", "bob is not in the room: {status} {body}");
    let mut impostor = request.clone();
    impostor["openid_token"] = openid_token(&bob).await?;
    let (status, body) = jwt_service.post("/get_token", &impostor).await?;
    ensure!(status == 401 && errcode(&body) == "M_UNAUTHORIZED", "bob claiming to be alice: {status} {body}");
    let mut forged = request.clone();
    forged["openid_token"]["access_token"] = json!("forged");
    let (status, body) = jwt_service.post("/get_token", &forged).await?;
    ensure!(status == 401 && errcode(&body) == "M_UNAUTHORIZED", "unknown OpenID token: {status} {body}");
    let mut extra = request.clone();
    extra["surprise"] = json!(1);
    let (status, body) = jwt_service.post("/get_token", &extra).await?;
    ensure!(status == 400 && errcode(&body) == "M_NOT_JSON", "unknown field: {status} {body}");
    let (status, body) = jwt_service.raw(reqwest::Method::POST, "/get_token", b"{not json".to_vec()).await?;
    ensure!(status == 400 && errcode(&body) == "M_NOT_JSON", "not JSON: {status} {body}");
    for missing in ["room_id", "slot_id", "member", "openid_token"] {
        let mut partial = request.clone();
        partial.as_object_mut().context("object")?.remove(missing);
        let (status, body) = jwt_service.post("/get_token", &partial).await?;
        ensure!(status == 400 && errcode(&body) == "M_BAD_JSON", "without {missing}: {status} {body}");
    }
    let (status, body) = jwt_service.post("/sfu/get", &json!({ "openid_token": token })).await?;
    ensure!(status == 400 && errcode(&body) == "M_BAD_JSON", "sfu/get without a room: {status} {body}");
    let mut half_delegation = request.clone();
    half_delegation["delay_id"] = json!("someid");
    let (status, body) = jwt_service.post("/get_token", &half_delegation).await?;
    ensure!(status == 400 && errcode(&body) == "M_BAD_JSON", "delay_id without delay_timeout: {status} {body}");

    // An SFU whose API fails: no token (the room would not exist for the client to join).
    drop(sfu);
    let down = TestServer::start_with_env(NO_RATE_LIMITS, &livekit_env("ws://127.0.0.1:9")).await?;
    let carol = down.register("carol").await?;
    let room = carol.create_room(json!({})).await?;
    let jwt_down = Client::new(&format!("{}/_myelin/livekit/jwt", down.base_url()));
    let mut request = request.clone();
    request["room_id"] = json!(room);
    request["openid_token"] = openid_token(&carol).await?;
    request["member"]["claimed_user_id"] = json!(carol.user_id);
    let (status, body) = jwt_down.post("/get_token", &request).await?;
    ensure!(status == 500 && errcode(&body) == "M_UNKNOWN", "the SFU is unreachable: {status} {body}");

    // Browsers (Element Call is a web page) may call it from anywhere.
    let preflight = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{service}/get_token"))
        .header("Origin", "https://call.example.org")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .await?;
    ensure!(preflight.status().is_success(), "preflight: {}", preflight.status());
    ensure!(preflight.headers().contains_key("access-control-allow-origin"), "{:?}", preflight.headers());
    Ok(())
}

/// Without a LiveKit SFU configured nothing is advertised and the JWT service is absent.
#[tokio::test]
async fn without_livekit_no_transport_is_advertised() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let (status, body) = alice.get("/_matrix/client/unstable/org.matrix.msc4143/rtc/transports").await?;
    ensure!(status == 200 && body == json!({ "rtc_transports": [] }), "{status} {body}");
    let (_, well_known) = server.anonymous().get("/.well-known/matrix/client").await?;
    ensure!(well_known.get("org.matrix.msc4143.rtc_foci").is_none(), "{well_known}");
    let jwt_service = Client::new(&format!("{}/_myelin/livekit/jwt", server.base_url()));
    let (status, _) = jwt_service.get("/healthz").await?;
    ensure!(status == 404);
    let (status, body) = jwt_service.post("/get_token", &json!({})).await?;
    ensure!(status == 404 && errcode(&body) == "M_NOT_FOUND", "{status} {body}");
    Ok(())
}

const STICKY_TYPE: &str = "org.matrix.msc4143.rtc.member";

/// Sends a sticky event for `duration_ms` (optionally delayed); answers the send's JSON.
async fn send_sticky(client: &Client, room: &str, key: &str, duration_ms: u64, delay_ms: Option<u64>) -> Result<Value> {
    let txn = format!("s{:016x}", rand::random::<u64>());
    let mut path =
        room_path(room, &format!("send/{STICKY_TYPE}/{txn}?org.matrix.msc4354.sticky_duration_ms={duration_ms}"));
    if let Some(delay) = delay_ms {
        path.push_str(&format!("&org.matrix.msc4140.delay={delay}"));
    }
    let (status, body) = client.put(&path, &json!({ "msc4354_sticky_key": key, "member": { "id": key } })).await?;
    ensure!(status == 200, "sticky send: {status} {body}");
    Ok(body)
}

/// The ids of a synced room's sticky events, and the events.
fn sticky_of(sync: &Value, room: &str) -> Vec<Value> {
    sync["rooms"]["join"][room]["msc4354_sticky"]["events"].as_array().cloned().unwrap_or_default()
}

/// Sticky events (MSC4354): a member who joins later is sent the unexpired ones with the time
/// they have left; a client whose timeline skipped one gets it beside the timeline; one in the
/// timeline is not repeated; expired ones are not sent; a delayed event can be sticky.
#[tokio::test]
async fn sticky_events_reach_later_joiners_and_gapped_syncs_until_they_expire() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    ensure!(bob.join(&room).await?.0 == 200);
    let (_, versions) = alice.get("/_matrix/client/versions").await?;
    ensure!(versions["unstable_features"]["org.matrix.msc4354"] == true, "{versions}");
    let bob_since = myelin_e2e::next_batch(&bob.sync(None, 0, None).await?)?;

    let long = send_sticky(&alice, &room, "long", 600_000, None).await?;
    let long_id = long["event_id"].as_str().context("event id")?.to_owned();
    let short = send_sticky(&alice, &room, "short", 1_500, None).await?;
    let short_id = short["event_id"].as_str().context("event id")?.to_owned();

    // Bob's incremental sync has both in the timeline: not repeated as sticky.
    let sync = bob.sync(Some(&bob_since), 0, None).await?;
    let in_timeline: Vec<String> =
        myelin_e2e::timeline(&sync, &room).iter().filter_map(|e| e["event_id"].as_str().map(str::to_owned)).collect();
    ensure!(in_timeline.contains(&long_id) && in_timeline.contains(&short_id), "{sync}");
    ensure!(sticky_of(&sync, &room).is_empty(), "a timeline event is not repeated: {sync}");
    let bob_since = myelin_e2e::next_batch(&sync)?;

    // A gap: ten messages after another sticky event, and a timeline of one.
    let gapped = send_sticky(&alice, &room, "gapped", 600_000, None).await?;
    for i in 0..10 {
        alice.send_message(&room, &format!("chatter {i}")).await?;
    }
    let filter = json!({ "room": { "timeline": { "limit": 1 } } });
    let sync = bob.sync(Some(&bob_since), 0, Some(&filter)).await?;
    let sticky = sticky_of(&sync, &room);
    let sticky: Vec<&str> = sticky.iter().filter_map(|e| e["event_id"].as_str()).collect();
    ensure!(sticky == [gapped["event_id"].as_str().context("id")?], "the skipped sticky event, alone: {sync}");

    // Carol joins later: every unexpired one, with its time left, whatever she may see of the
    // history before her join.
    let carol = server.register("carol").await?;
    ensure!(carol.join(&room).await?.0 == 200);
    let sync = carol.sync(None, 0, Some(&filter)).await?;
    let sticky = sticky_of(&sync, &room);
    let ids: Vec<&str> = sticky.iter().filter_map(|e| e["event_id"].as_str()).collect();
    ensure!(ids.contains(&long_id.as_str()), "the long one reaches a later joiner: {sync}");
    let long_event = sticky.iter().find(|e| e["event_id"] == long_id.as_str()).context("long")?;
    let ttl = long_event["unsigned"]["msc4354_sticky_duration_ttl_ms"].as_u64().context("ttl")?;
    ensure!(ttl > 500_000 && ttl <= 600_000, "time left: {ttl}");
    ensure!(long_event["content"]["msc4354_sticky_key"] == "long" && long_event["sender"] == alice.user_id.as_str());

    // After 1.5 s the short one has expired: a new joiner does not get it.
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let dave = server.register("dave").await?;
    ensure!(dave.join(&room).await?.0 == 200);
    let sync = dave.sync(None, 0, Some(&filter)).await?;
    let ids: Vec<String> =
        sticky_of(&sync, &room).iter().filter_map(|e| e["event_id"].as_str().map(str::to_owned)).collect();
    ensure!(ids.contains(&long_id) && !ids.contains(&short_id), "expired ones are not sent: {ids:?}");

    // A delayed sticky event (matrix-js-sdk's call leave) is sticky when it fires.
    let scheduled = send_sticky(&alice, &room, "leave", 600_000, Some(300)).await?;
    ensure!(scheduled["delay_id"].is_string(), "{scheduled}");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let erin = server.register("erin").await?;
    ensure!(erin.join(&room).await?.0 == 200);
    let sync = erin.sync(None, 0, Some(&filter)).await?;
    ensure!(
        sticky_of(&sync, &room).iter().any(|e| e["content"]["msc4354_sticky_key"] == "leave"),
        "the delayed one fired sticky: {sync}"
    );

    // Sliding sync's extension gives a new room its sticky events too.
    let body = json!({
        "lists": { "all": { "ranges": [[0, 9]], "timeline_limit": 1 } },
        "extensions": { "org.matrix.msc4354.sticky_events": { "enabled": true } },
    });
    let (status, resp) = erin.post("/_matrix/client/unstable/org.matrix.simplified_msc3575/sync", &body).await?;
    ensure!(status == 200, "{resp}");
    let ext = &resp["extensions"]["org.matrix.msc4354.sticky_events"];
    let events = ext["rooms"][&room]["events"].as_array().context("sticky extension")?;
    ensure!(events.iter().any(|e| e["event_id"] == long_id.as_str()), "{ext}");

    // Out of range.
    let path = room_path(&room, &format!("send/{STICKY_TYPE}/toolong?org.matrix.msc4354.sticky_duration_ms=3600001"));
    let (status, body) = alice.put(&path, &json!({})).await?;
    ensure!(status == 400 && errcode(&body) == "M_INVALID_PARAM", "{status} {body}");
    Ok(())
}

/// The unread counts a synced room shows (notifications, highlights).
fn unread(sync: &Value, room: &str) -> (u64, u64) {
    let counts = &sync["rooms"]["join"][room]["unread_notifications"];
    (counts["notification_count"].as_u64().unwrap_or(0), counts["highlight_count"].as_u64().unwrap_or(0))
}

/// Ringing: a call notification (MSC4075, and its legacy name) that mentions the room or the
/// callee notifies the callee through the default push rules, highlighted; a decline (MSC4310)
/// does not notify the caller.
#[tokio::test]
async fn a_call_notification_rings_and_a_decline_does_not() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "private_chat", "invite": [bob.user_id] })).await?;
    ensure!(bob.join(&room).await?.0 == 200);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;

    let ring = json!({
        "m.mentions": { "user_ids": [], "room": true },
        "notification_type": "ring",
        "sender_ts": now,
        "lifetime": 30000,
    });
    let path = room_path(&room, "send/org.matrix.msc4075.rtc.notification/ring1");
    let (status, sent) = alice.put(&path, &ring).await?;
    ensure!(status == 200, "{sent}");
    let sync = bob.sync(None, 0, None).await?;
    ensure!(unread(&sync, &room) == (1, 1), "a room mention rings, highlighted: {:?}", unread(&sync, &room));

    let legacy = json!({ "m.mentions": { "user_ids": [bob.user_id] }, "notify_type": "ring", "application": "m.call", "call_id": "" });
    let (status, _) = alice.put(&room_path(&room, "send/org.matrix.msc4075.call.notify/ring2"), &legacy).await?;
    ensure!(status == 200);
    let sync = bob.sync(None, 0, None).await?;
    ensure!(unread(&sync, &room) == (2, 2), "the legacy one, mentioning bob, too: {:?}", unread(&sync, &room));

    let decline = json!({ "m.relates_to": { "rel_type": "m.reference", "event_id": sent["event_id"] } });
    let (status, _) = bob.put(&room_path(&room, "send/org.matrix.msc4310.rtc.decline/no"), &decline).await?;
    ensure!(status == 200);
    let sync = alice.sync(None, 0, None).await?;
    ensure!(unread(&sync, &room) == (0, 0), "a decline does not notify: {:?}", unread(&sync, &room));
    Ok(())
}

/// A remote member of a room gets a LiveKit token for its call: the JWT service checks the
/// member's OpenID token with the member's own server over federation; a remote user who is not
/// in the room, or whose server does not know the token, gets none.
#[tokio::test]
async fn the_jwt_service_checks_a_remote_members_openid_token_with_its_server() -> Result<()> {
    let sfu = FakeSfu::start("devkey", LIVEKIT_SECRET).await?;
    let a = TestServer::start_federating_with_env(&livekit_env(sfu.url())).await?;
    let b = TestServer::start_federating().await?;
    let alice = a.register("alice").await?;
    let bob = b.register("bob").await?;
    let carol = b.register("carol").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    let join = format!("/_matrix/client/v3/join/{}?server_name={}", enc(&room), enc(a.server_name()));
    let (status, body) = bob.post(&join, &json!({})).await?;
    ensure!(status == 200, "join over federation: {status} {body}");

    let jwt_service = Client::new(&format!("{}/_myelin/livekit/jwt", a.base_url()));
    let request = |client: &Client, token: Value| {
        json!({
            "room_id": room,
            "slot_id": "m.call#ROOM",
            "openid_token": token,
            "member": { "id": "m", "claimed_user_id": client.user_id, "claimed_device_id": client.device_id },
        })
    };
    let (status, granted) = jwt_service.post("/get_token", &request(&bob, openid_token(&bob).await?)).await?;
    ensure!(status == 200, "bob, on B, in the room: {status} {granted}\nA's log:\n{}", a.log());
    let claims = verified_claims(granted["jwt"].as_str().context("jwt")?, LIVEKIT_SECRET)?;
    ensure!(claims["sub"] == livekit_hash(&[&bob.user_id, &bob.device_id, "m"]), "{claims}");
    ensure!(sfu.calls("CreateRoom").is_empty(), "B is not a full-access server: bob only joins a room that exists");
    let mut delegating = request(&bob, openid_token(&bob).await?);
    delegating["delay_id"] = json!("bobs-delay");
    delegating["delay_timeout"] = json!(5000);
    let (status, body) = jwt_service.post("/get_token", &delegating).await?;
    ensure!(status == 400 && errcode(&body) == "M_BAD_JSON", "no delegation for restricted users: {status} {body}");
    let (status, body) = jwt_service.post("/delegate_delayed_leave", &delegating).await?;
    ensure!(status == 403 && errcode(&body) == "M_FORBIDDEN", "nor on its own endpoint: {status} {body}");

    let (status, body) = jwt_service.post("/get_token", &request(&carol, openid_token(&carol).await?)).await?;
    ensure!(status == 403 && errcode(&body) == "M_FORBIDDEN", "carol is not in the room: {status} {body}");
    let mut forged = request(&bob, openid_token(&bob).await?);
    forged["openid_token"]["access_token"] = json!("not-a-token-of-b");
    let (status, body) = jwt_service.post("/get_token", &forged).await?;
    ensure!(status == 401 && errcode(&body) == "M_UNAUTHORIZED", "B does not know the token: {status} {body}");
    Ok(())
}

/// Posts an SFU webhook to the JWT service; answers the status.
async fn post_webhook(service: &str, body: &str, token: &str) -> Result<u16> {
    let response = reqwest::Client::new()
        .post(format!("{service}/sfu_webhook"))
        .header("Authorization", token)
        .header("Content-Type", "application/webhook+json")
        .body(body.to_owned())
        .send()
        .await?;
    Ok(response.status().as_u16())
}

/// Waits up to `within` for the call member state at `key` to become `{}` (the leave); answers
/// how long it took.
async fn wait_for_leave(client: &Client, room: &str, key: &str, within: Duration) -> Result<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if member_state(client, room, key).await? == Some(json!({})) {
            return Ok(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("no leave within {within:?}")
}

/// Delegated leave (`/delegate_delayed_leave`): while the member's participant is on the SFU the
/// server keeps its delayed leave from firing, past several of its delays; the SFU's
/// `participant_left` webhook sends it at once; a participant the SFU no longer has (a webhook
/// lost) is found at the next restart. Forged webhooks and foreign delay ids are refused.
#[tokio::test]
async fn a_delegated_leave_lasts_while_the_participant_is_on_the_sfu() -> Result<()> {
    let sfu = FakeSfu::start("devkey", LIVEKIT_SECRET).await?;
    let server = TestServer::start_with_env(NO_RATE_LIMITS, &livekit_env(sfu.url())).await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    ensure!(bob.join(&room).await?.0 == 200);
    let service = format!("{}/_myelin/livekit/jwt", server.base_url());
    let jwt_service = Client::new(&service);
    let lk_room = livekit_hash(&[&room, "m.call#ROOM"]);

    // Alice joins the call as Element Call does: leave scheduled, membership sent, then the leave
    // handed to the JWT service with her token request's member.
    const DELAY_MS: u64 = 1_500;
    let key = format!("_{}_{}", alice.user_id, alice.device_id);
    let delay_id = delay_state(&alice, &room, &key, json!({}), DELAY_MS).await?;
    let (status, _) =
        alice.put(&room_path(&room, &format!("state/{MEMBER_TYPE}/{}", enc(&key))), &json!({ "joined": true })).await?;
    ensure!(status == 200);
    let delegate = |client: &Client, token: Value, member: &str, delay_id: &str| {
        json!({
            "room_id": room,
            "slot_id": "m.call#ROOM",
            "openid_token": token,
            "member": { "id": member, "claimed_user_id": client.user_id, "claimed_device_id": client.device_id },
            "delay_id": delay_id,
            "delay_timeout": DELAY_MS,
        })
    };
    let alice_identity = livekit_hash(&[&alice.user_id, &alice.device_id, "alice-member"]);
    sfu.set_present(&lk_room, &alice_identity, true);
    let (status, body) = jwt_service
        .post("/delegate_delayed_leave", &delegate(&alice, openid_token(&alice).await?, "alice-member", &delay_id))
        .await?;
    ensure!(status == 200 && body == json!({}), "delegated: {status} {body}");

    // Three delays later she is still in the call: the server restarted her leave.
    tokio::time::sleep(Duration::from_millis(3 * DELAY_MS)).await;
    ensure!(member_state(&alice, &room, &key).await? == Some(json!({ "joined": true })), "kept alive");
    let lookups = sfu.calls("GetParticipant");
    ensure!(
        !lookups.is_empty() && lookups.iter().all(|c| c.body["identity"] == alice_identity.as_str()),
        "{lookups:?}"
    );

    // A forged webhook changes nothing.
    let (body, token) = sfu.webhook("participant_left", &lk_room, &alice_identity, Some("CLIENT_INITIATED"));
    let forged = myelin_e2e::fake_sfu::webhook_token("devkey", "not-the-secret", body.as_bytes());
    ensure!(post_webhook(&service, &body, &forged).await? == 401, "forged");
    ensure!(post_webhook(&service, &body.replace("CLIENT", "SERVER"), &token).await? == 401, "another body");
    ensure!(post_webhook(&service, &body, "").await? == 401, "unsigned");
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(member_state(&alice, &room, &key).await? == Some(json!({ "joined": true })), "still in");

    // She hangs up: the SFU's webhook sends her leave at once.
    sfu.set_present(&lk_room, &alice_identity, false);
    ensure!(post_webhook(&service, &body, &token).await? == 200, "the SFU's webhook");
    let took = wait_for_leave(&alice, &room, &key, Duration::from_millis(DELAY_MS)).await?;
    ensure!(took < Duration::from_millis(500), "sent on the webhook, not at the delay: {took:?}");
    let (status, _) = alice.post(&format!("{DELAYED}/{delay_id}"), &json!({ "action": "restart" })).await?;
    ensure!(status == 404, "the delayed leave is gone");

    // Bob's webhook is lost: the server finds him gone when it asks the SFU before a restart.
    let bob_key = format!("_{}_{}", bob.user_id, bob.device_id);
    let bob_delay = delay_state(&bob, &room, &bob_key, json!({}), DELAY_MS).await?;
    let (status, _) = bob
        .put(&room_path(&room, &format!("state/{MEMBER_TYPE}/{}", enc(&bob_key))), &json!({ "joined": true }))
        .await?;
    ensure!(status == 200);
    let bob_identity = livekit_hash(&[&bob.user_id, &bob.device_id, "bob-member"]);
    let (status, body) = jwt_service
        .post("/delegate_delayed_leave", &delegate(&bob, openid_token(&bob).await?, "bob-member", &bob_delay))
        .await?;
    ensure!(status == 200, "{status} {body}");
    let (joined, token) = sfu.webhook("participant_joined", &lk_room, &bob_identity, None);
    sfu.set_present(&lk_room, &bob_identity, true);
    ensure!(post_webhook(&service, &joined, &token).await? == 200);
    tokio::time::sleep(Duration::from_millis(2 * DELAY_MS)).await;
    ensure!(member_state(&bob, &room, &bob_key).await? == Some(json!({ "joined": true })), "bob kept alive");
    let gone_at = Instant::now();
    sfu.set_present(&lk_room, &bob_identity, false);
    wait_for_leave(&bob, &room, &bob_key, Duration::from_millis(2 * DELAY_MS)).await?;
    ensure!(gone_at.elapsed() <= Duration::from_millis(DELAY_MS + 300), "at the next check: {:?}", gone_at.elapsed());

    // Refusals: another user's delay id, a missing delay, a user not in the room.
    let other = delay_state(&bob, &room, &bob_key, json!({}), 60_000).await?;
    let (status, body) = jwt_service
        .post("/delegate_delayed_leave", &delegate(&alice, openid_token(&alice).await?, "m2", &other))
        .await?;
    ensure!(status == 404 && errcode(&body) == "M_NOT_FOUND", "bob's delay id for alice: {status} {body}");
    let mut no_delay = delegate(&alice, openid_token(&alice).await?, "m2", &other);
    no_delay.as_object_mut().context("object")?.remove("delay_id");
    let (status, body) = jwt_service.post("/delegate_delayed_leave", &no_delay).await?;
    ensure!(status == 400 && errcode(&body) == "M_BAD_JSON", "{status} {body}");
    let carol = server.register("carol").await?;
    let (status, body) = jwt_service
        .post("/delegate_delayed_leave", &delegate(&carol, openid_token(&carol).await?, "m3", &other))
        .await?;
    ensure!(status == 403 && errcode(&body) == "M_FORBIDDEN", "carol is not in the room: {status} {body}");
    ensure!(sfu.refused() == 0, "every call to the SFU's API carried a valid token");
    Ok(())
}

/// A server that joins a room later is pushed the unexpired sticky events of the room's servers
/// (MSC4354): bob, on B, joins after alice on A sent her call membership as a sticky event and
/// chatted on; B's sync gives bob the membership though it is far behind his join.
#[tokio::test]
async fn a_server_that_joins_later_is_sent_the_sticky_events() -> Result<()> {
    let a = TestServer::start_federating().await?;
    let b = TestServer::start_federating().await?;
    let alice = a.register("alice").await?;
    let bob = b.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    let sticky = send_sticky(&alice, &room, "alice-call", 600_000, None).await?;
    let sticky_id = sticky["event_id"].as_str().context("event id")?.to_owned();
    let expired = send_sticky(&alice, &room, "short", 1, None).await?;
    for i in 0..30 {
        alice.send_message(&room, &format!("after the call started {i}")).await?;
    }
    let join = format!("/_matrix/client/v3/join/{}?server_name={}", enc(&room), enc(a.server_name()));
    let (status, body) = bob.post(&join, &json!({})).await?;
    ensure!(status == 200, "join over federation: {status} {body}");

    let start = Instant::now();
    let mut since: Option<String> = None;
    let mut seen: Vec<Value> = Vec::new();
    while start.elapsed() < Duration::from_secs(20) && !seen.iter().any(|e| e["event_id"] == sticky_id.as_str()) {
        let sync = bob.sync(since.as_deref(), 2_000, None).await?;
        seen.extend(sticky_of(&sync, &room));
        seen.extend(myelin_e2e::timeline(&sync, &room));
        since = Some(myelin_e2e::next_batch(&sync)?);
    }
    let got = seen.iter().find(|e| e["event_id"] == sticky_id.as_str());
    let got = got
        .with_context(|| format!("bob never got alice's sticky event; A's log:\n{}\nB's log:\n{}", a.log(), b.log()))?;
    ensure!(got["content"]["msc4354_sticky_key"] == "alice-call", "{got}");
    ensure!(!seen.iter().any(|e| e["event_id"] == expired["event_id"]), "an expired one is not pushed: {seen:?}");
    Ok(())
}

/// Sliding sync's sticky extension, for a room that left the window and came back: the sticky
/// event written while it was out is sent when it returns, though the connection's position
/// moved past it meanwhile.
#[tokio::test]
async fn a_room_back_in_the_sliding_window_brings_its_sticky_events() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let call_room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    let chat_room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    ensure!(bob.join(&call_room).await?.0 == 200 && bob.join(&chat_room).await?.0 == 200);
    const SS: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";
    let body = json!({
        "lists": { "top": { "ranges": [[0, 0]], "timeline_limit": 1 } },
        "extensions": { "org.matrix.msc4354.sticky_events": { "enabled": true } },
    });
    let request = |pos: Option<String>| {
        let path = match pos {
            Some(pos) => format!("{SS}?pos={pos}&timeout=0"),
            None => format!("{SS}?timeout=0"),
        };
        let (alice, body) = (&alice, body.clone());
        async move {
            let (status, resp) = alice.post(&path, &body).await?;
            ensure!(status == 200, "{status} {resp}");
            anyhow::Ok(resp)
        }
    };
    // The rooms the response carries (a window of one: the one in it, when it has news).
    let window = |resp: &Value| -> Value {
        resp["rooms"].as_object().map(|rooms| rooms.keys().cloned().collect::<Vec<_>>()).unwrap_or_default().into()
    };
    let sticky_ids = |resp: &Value, room: &str| -> Vec<String> {
        resp["extensions"]["org.matrix.msc4354.sticky_events"]["rooms"][room]["events"]
            .as_array()
            .map(|events| events.iter().filter_map(|e| e["event_id"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };

    // The call room is sent first (the most recent), then the chat room takes the window.
    bob.send_message(&call_room, "hello").await?;
    let first = request(None).await?;
    ensure!(window(&first) == json!([call_room]), "{first}");
    let pos = first["pos"].as_str().context("pos")?.to_owned();
    let sticky = send_sticky(&bob, &call_room, "bob-call", 600_000, None).await?;
    let sticky_id = sticky["event_id"].as_str().context("event id")?.to_owned();
    bob.send_message(&chat_room, "meanwhile").await?;
    let second = request(Some(pos)).await?;
    ensure!(window(&second) == json!([chat_room]), "{second}");
    ensure!(sticky_ids(&second, &call_room).is_empty(), "the call room is out of the window: {second}");
    let pos = second["pos"].as_str().context("pos")?.to_owned();

    // The call room comes back with a timeline of one: its sticky event comes beside it.
    for i in 0..3 {
        bob.send_message(&call_room, &format!("back {i}")).await?;
    }
    let third = request(Some(pos)).await?;
    ensure!(window(&third) == json!([call_room]), "{third}");
    ensure!(sticky_ids(&third, &call_room) == [sticky_id.clone()], "the sticky event from its time out: {third}");
    Ok(())
}

/// Timers do not wait on other servers: with a room's other server hanging (its federation
/// sends stuck until they time out), a delayed event still fires on time.
#[tokio::test]
async fn a_hanging_server_does_not_hold_up_a_delayed_event() -> Result<()> {
    let a = TestServer::start_federating().await?;
    let b = TestServer::start_federating().await?;
    let alice = a.register("alice").await?;
    let bob = b.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    let join = format!("/_matrix/client/v3/join/{}?server_name={}", enc(&room), enc(a.server_name()));
    let (status, body) = bob.post(&join, &json!({})).await?;
    ensure!(status == 200, "join over federation: {status} {body}");

    b.freeze(true)?;
    // A message for B: A's send to B now hangs until its request times out (30 s).
    alice.send_message(&room, "into the void").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let key = format!("_{}_{}", alice.user_id, alice.device_id);
    let scheduled = Instant::now();
    delay_state(&alice, &room, &key, json!({ "left": true }), 1_000).await?;
    let mut fired = None;
    while scheduled.elapsed() < Duration::from_secs(10) {
        if member_state(&alice, &room, &key).await? == Some(json!({ "left": true })) {
            fired = Some(scheduled.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.freeze(false)?;
    let fired = fired.context("the delayed event did not fire while B hung")?;
    ensure!(fired < Duration::from_millis(1_500), "fired {fired:?} after scheduling a 1 s delay");
    Ok(())
}
