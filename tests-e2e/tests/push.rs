//! Push notifications as a phone gets them: a pusher set through `/pushers/set`, notifications
//! delivered to a push gateway (a small one in the test, speaking the push gateway API), retried
//! when the gateway fails, a rejected pushkey dropping its pusher, and the outbound address
//! policy applying to gateway URLs.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU16, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Result, bail, ensure};
use axum::{Json, Router, extract::State, http::StatusCode, routing::post};
use myelin_e2e::{Client, TestServer, enc, errcode, room_path};
use serde_json::{Value, json};

/// A push gateway: records what it is sent; answers with the status set, rejecting the pushkeys
/// set.
#[derive(Clone, Default)]
struct Gateway {
    addr: String,
    received: Arc<Mutex<Vec<Value>>>,
    status: Arc<AtomicU16>,
    reject: Arc<Mutex<Vec<String>>>,
}

async fn notify(State(g): State<Gateway>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let status = StatusCode::from_u16(g.status.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK);
    if status.is_success() {
        g.received.lock().unwrap_or_else(|e| e.into_inner()).push(body);
    }
    let rejected = g.reject.lock().unwrap_or_else(|e| e.into_inner()).clone();
    (status, Json(json!({ "rejected": rejected })))
}

impl Gateway {
    async fn start() -> Result<(Self, String)> {
        Self::start_on("127.0.0.1").await
    }

    async fn start_on(ip: &str) -> Result<(Self, String)> {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await?;
        let addr = listener.local_addr()?.to_string();
        let gateway = Gateway { addr: addr.clone(), ..Gateway::default() };
        gateway.status.store(200, Ordering::SeqCst);
        let url = format!("http://{addr}/_matrix/push/v1/notify");
        let app = Router::new().route("/_matrix/push/v1/notify", post(notify)).with_state(gateway.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((gateway, url))
    }

    fn received(&self) -> Vec<Value> {
        self.received.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until `count` notifications came.
    async fn wait_for(&self, count: usize, within: Duration, what: &str) -> Result<Vec<Value>> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= count {
                return Ok(got);
            }
            if Instant::now() > deadline {
                bail!("{what}: {} of {count} notifications: {got:?}", got.len());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn pusher(url: &str, pushkey: &str) -> Value {
    json!({
        "pushkey": pushkey,
        "kind": "http",
        "app_id": "org.example.phone",
        "app_display_name": "Phone",
        "device_display_name": "Alice's phone",
        "lang": "en",
        "data": { "url": url, "extra": "kept for the app" },
    })
}

async fn room_of_two(server: &TestServer) -> Result<(Client, Client, String)> {
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat", "name": "Garden" })).await?;
    ensure!(bob.join(&room).await?.0 == 200);
    Ok((alice, bob, room))
}

const LOOPBACK_ALLOWED: &str = "[federation]\nip_range_allowlist = [\"127.0.0.1/32\"]\n";

/// A message to alice reaches her gateway with what a phone shows (sender, room, body, unread
/// count, the app's data without the URL, the sound of a one-to-one room); the pusher is listed;
/// `kind: null` removes it and nothing more is sent.
#[tokio::test]
async fn a_message_reaches_the_push_gateway_with_what_a_phone_shows() -> Result<()> {
    let server = TestServer::start_with(LOOPBACK_ALLOWED).await?;
    let (gateway, url) = Gateway::start().await?;
    let (alice, bob, room) = room_of_two(&server).await?;
    let (status, body) = alice.post("/_matrix/client/v3/pushers/set", &pusher(&url, "key-1")).await?;
    ensure!(status == 200, "{status} {body}");
    let (_, listed) = alice.get("/_matrix/client/v3/pushers").await?;
    ensure!(
        listed["pushers"][0]["pushkey"] == "key-1" && listed["pushers"][0]["data"]["url"] == url.as_str(),
        "{listed}"
    );

    let started = Instant::now();
    let event_id = bob.send_message(&room, "the roses are out").await?;
    let got = gateway.wait_for(1, Duration::from_secs(10), "first message").await?;
    let latency = started.elapsed();
    let n = &got[0]["notification"];
    ensure!(n["event_id"] == event_id.as_str() && n["room_id"] == room.as_str(), "{n}");
    ensure!(n["type"] == "m.room.message" && n["sender"] == bob.user_id.as_str(), "{n}");
    ensure!(n["content"]["body"] == "the roses are out" && n["room_name"] == "Garden", "{n}");
    ensure!(n["sender_display_name"] == "bob", "{n}");
    ensure!(n["counts"]["unread"] == 1, "{n}");
    let device = &n["devices"][0];
    ensure!(device["app_id"] == "org.example.phone" && device["pushkey"] == "key-1", "{device}");
    ensure!(device["data"]["extra"] == "kept for the app" && device["data"].get("url").is_none(), "{device}");
    ensure!(device["tweaks"]["sound"] == "default" && n["prio"] == "high", "a one-to-one room rings: {n}");
    eprintln!("send to gateway: {latency:?}");
    ensure!(latency < Duration::from_secs(3), "delivered promptly: {latency:?}");

    // Her own messages do not notify her; a second message counts two unread.
    alice.send_message(&room, "mine").await?;
    bob.send_message(&room, "second").await?;
    let got = gateway.wait_for(2, Duration::from_secs(10), "second message").await?;
    ensure!(got[1]["notification"]["content"]["body"] == "second", "{got:?}");
    ensure!(got[1]["notification"]["counts"]["unread"] == 2, "{got:?}");

    // The same notifications, listed: newest first, unread, paged.
    let (status, listed) = alice.get("/_matrix/client/v3/notifications?limit=1").await?;
    ensure!(status == 200, "{status} {listed}");
    ensure!(listed["notifications"][0]["event"]["content"]["body"] == "second", "{listed}");
    ensure!(
        listed["notifications"][0]["read"] == false && listed["notifications"][0]["room_id"] == room.as_str(),
        "{listed}"
    );
    let next = listed["next_token"].as_str().unwrap_or_default().to_owned();
    let (_, older) = alice.get(&format!("/_matrix/client/v3/notifications?from={next}")).await?;
    ensure!(
        older["notifications"].as_array().map(Vec::len) == Some(1)
            && older["notifications"][0]["event"]["content"]["body"] == "the roses are out",
        "{older}"
    );

    let mut removal = pusher(&url, "key-1");
    removal["kind"] = Value::Null;
    let (status, body) = alice.post("/_matrix/client/v3/pushers/set", &removal).await?;
    ensure!(status == 200, "{status} {body}");
    let (_, listed) = alice.get("/_matrix/client/v3/pushers").await?;
    ensure!(listed["pushers"].as_array().is_some_and(Vec::is_empty), "{listed}");
    bob.send_message(&room, "into the void").await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ensure!(gateway.received().len() == 2, "nothing after the pusher went: {:?}", gateway.received());

    // Signing the device out takes its pushers with it.
    let (status, body) = alice.post("/_matrix/client/v3/pushers/set", &pusher(&url, "key-1")).await?;
    ensure!(status == 200, "{status} {body}");
    let (status, body) = alice.post("/_matrix/client/v3/logout", &json!({})).await?;
    ensure!(status == 200, "{status} {body}");
    let alice = server.login("alice").await?;
    let (_, listed) = alice.get("/_matrix/client/v3/pushers").await?;
    ensure!(listed["pushers"].as_array().is_some_and(Vec::is_empty), "{listed}");
    Ok(())
}

/// A gateway that redirects to an address the outbound policy refuses is not followed there.
#[tokio::test]
async fn a_gateway_redirect_to_a_refused_address_is_not_followed() -> Result<()> {
    let server = TestServer::start_with(LOOPBACK_ALLOWED).await?;
    // The real receiver, on 127.0.0.2 (not allowed: only 127.0.0.1/32 is).
    let (hidden, _) = Gateway::start_on("127.0.0.2").await?;
    let hidden_url = format!("http://{}/_matrix/push/v1/notify", hidden.addr);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/_matrix/push/v1/notify", listener.local_addr()?);
    let redirector = Router::new().route(
        "/_matrix/push/v1/notify",
        post(move || {
            let to = hidden_url.clone();
            async move { (StatusCode::TEMPORARY_REDIRECT, [("location", to)]) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, redirector).await });
    let (alice, bob, room) = room_of_two(&server).await?;
    let (status, body) = alice.post("/_matrix/client/v3/pushers/set", &pusher(&url, "key-r")).await?;
    ensure!(status == 200, "{status} {body}");
    bob.send_message(&room, "follow me").await?;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    ensure!(hidden.received().is_empty(), "the redirect was followed: {:?}", hidden.received());
    ensure!(server.log().contains("redirect to refused address"), "the push was tried and refused:\n{}", server.log());
    Ok(())
}

/// A gateway that fails gets the notification again after a backoff, in order; `event_id_only`
/// sends only ids and counts; a pushkey the gateway rejects loses its pusher.
#[tokio::test]
async fn failed_pushes_are_retried_and_rejected_pushkeys_lose_their_pusher() -> Result<()> {
    let server = TestServer::start_with(LOOPBACK_ALLOWED).await?;
    let (gateway, url) = Gateway::start().await?;
    let (alice, bob, room) = room_of_two(&server).await?;
    let mut body = pusher(&url, "key-2");
    body["data"]["format"] = "event_id_only".into();
    let (status, answer) = alice.post("/_matrix/client/v3/pushers/set", &body).await?;
    ensure!(status == 200, "{status} {answer}");

    gateway.status.store(503, Ordering::SeqCst);
    let first = bob.send_message(&room, "one").await?;
    let second = bob.send_message(&room, "two").await?;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    ensure!(gateway.received().is_empty());
    gateway.status.store(200, Ordering::SeqCst);
    let got = gateway.wait_for(2, Duration::from_secs(20), "after the gateway recovered").await?;
    let ids: Vec<&str> = got.iter().filter_map(|n| n["notification"]["event_id"].as_str()).collect();
    ensure!(ids == [first.as_str(), second.as_str()], "both, in order, once: {got:?}");
    ensure!(
        got[0]["notification"].get("content").is_none() && got[0]["notification"].get("sender").is_none(),
        "{got:?}"
    );
    ensure!(got[1]["notification"]["counts"]["unread"] == 2, "{got:?}");

    gateway.reject.lock().unwrap_or_else(|e| e.into_inner()).push("key-2".to_owned());
    bob.send_message(&room, "three").await?;
    gateway.wait_for(3, Duration::from_secs(10), "the rejected push").await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, listed) = alice.get("/_matrix/client/v3/pushers").await?;
        if listed["pushers"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        ensure!(Instant::now() < deadline, "the rejected pusher is still there: {listed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Bad pushers are refused with the right errors, and a gateway on a private address is not
/// called unless the outbound policy allows it.
#[tokio::test]
async fn bad_pushers_are_refused_and_private_gateways_are_not_called() -> Result<()> {
    let server = TestServer::start().await?;
    let (gateway, url) = Gateway::start().await?;
    let (alice, bob, room) = room_of_two(&server).await?;
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({ "kind": "http", "app_id": "a", "app_display_name": "A", "device_display_name": "D", "lang": "en", "data": { "url": url } }),
            "M_MISSING_PARAM",
        ),
        (
            {
                let mut p = pusher(&url, "k");
                p["data"] = json!({});
                p
            },
            "M_MISSING_PARAM",
        ),
        (
            {
                let mut p = pusher(&url, "k");
                p["data"]["url"] = "https://push.example/somewhere".into();
                p
            },
            "M_INVALID_PARAM",
        ),
        (
            {
                let mut p = pusher(&url, "k");
                p["data"]["url"] = "ftp://push.example/_matrix/push/v1/notify".into();
                p
            },
            "M_INVALID_PARAM",
        ),
        (
            {
                let mut p = pusher(&url, "k");
                p["kind"] = "carrier-pigeon".into();
                p
            },
            "M_INVALID_PARAM",
        ),
        (
            {
                let mut p = pusher(&url, "k");
                p["app_id"] = "x".repeat(65).into();
                p
            },
            "M_INVALID_PARAM",
        ),
        (
            {
                let mut p = pusher(&url, "k");
                p["data"]["format"] = "full".into();
                p
            },
            "M_INVALID_PARAM",
        ),
        (
            {
                let mut p = pusher(&url, "k");
                p["append"] = "yes".into();
                p
            },
            "M_INVALID_PARAM",
        ),
    ];
    for (body, code) in cases {
        let (status, answer) = alice.post("/_matrix/client/v3/pushers/set", &body).await?;
        ensure!(status == 400 && errcode(&answer) == code, "{body}: {status} {answer}");
    }
    let (status, answer) = server.anonymous().post("/_matrix/client/v3/pushers/set", &pusher(&url, "k")).await?;
    ensure!(status == 401, "{status} {answer}");

    // Loopback is not allowed on this server: the push is refused, never sent.
    let (status, answer) = alice.post("/_matrix/client/v3/pushers/set", &pusher(&url, "k")).await?;
    ensure!(status == 200, "{status} {answer}");
    bob.send_message(&room, "should not leave").await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ensure!(gateway.received().is_empty(), "{:?}", gateway.received());
    Ok(())
}

/// A notification waiting for its gateway survives `kill -9` and arrives once afterwards.
#[tokio::test]
async fn a_push_waiting_for_its_gateway_arrives_once_after_kill_9() -> Result<()> {
    let mut server = TestServer::start_with(LOOPBACK_ALLOWED).await?;
    let (gateway, url) = Gateway::start().await?;
    let (alice, bob, room) = room_of_two(&server).await?;
    let (status, body) = alice.post("/_matrix/client/v3/pushers/set", &pusher(&url, "key-k")).await?;
    ensure!(status == 200, "{status} {body}");
    gateway.status.store(503, Ordering::SeqCst);
    let event_id = bob.send_message(&room, "while the gateway is down").await?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    server.kill9();
    gateway.status.store(200, Ordering::SeqCst);
    server.start_again().await?;
    let got = gateway.wait_for(1, Duration::from_secs(30), "after the restart").await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got_now = gateway.received();
    ensure!(got_now.len() == 1 && got[0]["notification"]["event_id"] == event_id.as_str(), "once: {got_now:?}");
    Ok(())
}

/// How one event of the push-rule table is sent.
enum Send {
    Event(&'static str, Value),
    State(&'static str, &'static str, Value),
}

fn text(body: &str) -> Send {
    Send::Event("m.room.message", json!({ "msgtype": "m.text", "body": body }))
}

fn text_with(body: &str, extra: Value) -> Send {
    let mut content = json!({ "msgtype": "m.text", "body": body });
    if let (Some(content), Some(extra)) = (content.as_object_mut(), extra.as_object()) {
        content.extend(extra.clone());
    }
    Send::Event("m.room.message", content)
}

async fn send_case(client: &Client, room: &str, send: &Send, txn: usize) -> Result<String> {
    let (status, body) = match send {
        Send::Event(kind, content) => {
            client.put(&room_path(room, &format!("send/{kind}/push-table-{txn}")), content).await?
        }
        Send::State(kind, key, content) => {
            client.put(&room_path(room, &format!("state/{kind}/{}", enc(key))), content).await?
        }
    };
    ensure!(status == 200, "sending case {txn}: {status} {body}");
    Ok(body["event_id"].as_str().unwrap_or_default().to_owned())
}

/// What a person notices of a rule's actions: notified, highlighted, which sound.
fn verdict(actions: &Value) -> (bool, bool, Option<String>) {
    let actions = actions.as_array().cloned().unwrap_or_default();
    let notify = actions.iter().any(|a| a == "notify");
    let tweak = |name: &str| actions.iter().find(|a| a["set_tweak"] == name).map(|a| a["value"].clone());
    let highlight = tweak("highlight").is_some_and(|v| v.is_null() || v == true);
    let sound = tweak("sound").and_then(|v| v.as_str().map(str::to_owned));
    (notify, highlight && notify, sound.filter(|_| notify))
}

/// The user's rules as Synapse's evaluator takes them: every rule the user added (in their
/// order), with the conditions its kind implies, and the enabled flags of all rules.
fn rules_for_oracle(pushrules: &Value) -> (Vec<Value>, serde_json::Map<String, Value>) {
    let mut user_rules = Vec::new();
    let mut enabled = serde_json::Map::new();
    for (kind, class) in [("override", 5), ("content", 4), ("room", 3), ("sender", 2), ("underride", 1)] {
        for rule in pushrules["global"][kind].as_array().into_iter().flatten() {
            let id = rule["rule_id"].as_str().unwrap_or_default();
            let full_id = format!("global/{kind}/{id}");
            if rule["enabled"] == false {
                enabled.insert(full_id.clone(), Value::Bool(false));
            }
            if rule["default"] == true {
                continue;
            }
            let conditions = match kind {
                "content" => json!([{ "kind": "event_match", "key": "content.body", "pattern": rule["pattern"] }]),
                "room" => json!([{ "kind": "event_match", "key": "room_id", "pattern": id }]),
                "sender" => json!([{ "kind": "event_match", "key": "sender", "pattern": id }]),
                _ => rule["conditions"].clone(),
            };
            user_rules.push(json!({
                "rule_id": full_id, "priority_class": class, "conditions": conditions, "actions": rule["actions"],
            }));
        }
    }
    (user_rules, enabled)
}

/// Push-rule decisions agree with an independent evaluator (Synapse's, from its PyPI package)
/// case by case over a table of events: every predefined rule that applies to a room event
/// (mentions by id, display name and localpart with word boundaries, intentional mentions turning
/// the legacy rules off, `@room` with and without the sender's permission, notices, reactions,
/// edits, encrypted events, tombstones, server ACLs, one-to-one rooms, invites) and the user's own
/// rules (a keyword, a muted room, a sender, `event_property_is` with an escaped dot,
/// `event_property_contains`, a glob on the type, a disabled default rule). Bob's notifications
/// as he lists them are compared with what Synapse's evaluator says for the same events.
#[tokio::test]
async fn push_rule_decisions_agree_with_synapses_evaluator_case_by_case() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let carol = server.register("carol").await?;
    let (status, body) = bob
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", enc(&bob.user_id)),
            &json!({ "displayname": "Bob Smith" }),
        )
        .await?;
    ensure!(status == 200, "{status} {body}");

    let group = alice.create_room(json!({ "preset": "public_chat" })).await?;
    ensure!(bob.join(&group).await?.0 == 200 && carol.join(&group).await?.0 == 200);
    let dm = alice
        .create_room(json!({ "preset": "trusted_private_chat", "invite": [bob.user_id], "is_direct": true }))
        .await?;
    let muted = alice.create_room(json!({ "preset": "private_chat", "invite": [bob.user_id] })).await?;
    ensure!(bob.join(&dm).await?.0 == 200 && bob.join(&muted).await?.0 == 200);
    let invited_to = alice.create_room(json!({ "preset": "private_chat" })).await?;

    let rules = [
        (
            "content/pineapple",
            json!({ "pattern": "pineapple", "actions": ["notify", { "set_tweak": "sound", "value": "fruit" }] }),
        ),
        (&*format!("room/{}", enc(&muted)), json!({ "actions": [] })),
        (
            &*format!("sender/{}", enc(&carol.user_id)),
            json!({ "actions": ["notify", { "set_tweak": "sound", "value": "carol" }] }),
        ),
        (
            "override/flagged",
            json!({ "conditions": [{ "kind": "event_property_is", "key": "content.m\\.flag", "value": true }],
                    "actions": ["notify", { "set_tweak": "highlight" }] }),
        ),
        (
            "override/urgent",
            json!({ "conditions": [{ "kind": "event_property_contains", "key": "content.tags", "value": "urgent" }],
                    "actions": ["notify", { "set_tweak": "sound", "value": "urgent" }] }),
        ),
        (
            "underride/pings",
            json!({ "conditions": [{ "kind": "event_match", "key": "type", "pattern": "org.example.*" }], "actions": ["notify"] }),
        ),
    ];
    for (path, rule) in &rules {
        let (status, body) = bob.put(&format!("/_matrix/client/v3/pushrules/global/{path}"), rule).await?;
        ensure!(status == 200, "{path}: {status} {body}");
    }
    let (status, body) = bob
        .put("/_matrix/client/v3/pushrules/global/underride/.m.rule.call/enabled", &json!({ "enabled": false }))
        .await?;
    ensure!(status == 200, "{status} {body}");

    let first = alice.send_message(&group, "the first message").await?;
    let encrypted = json!({ "algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgAEnAcBq", "sender_key": "c2VuZGVy",
                            "device_id": "ALICEDEVICE", "session_id": "c2Vzc2lvbg" });
    let me = bob.user_id.clone();
    let table: Vec<(&str, &Client, Send)> = vec![
        ("plain", &alice, text("hello everyone")),
        ("display name", &alice, text("Hey Bob Smith, look at this")),
        ("display name, other case, punctuation", &alice, text("bob smith!")),
        ("display name inside a word", &alice, text("BobSmithy is a different word")),
        ("localpart", &alice, text("bob: ping")),
        ("localpart inside a word", &alice, text("bobcat sighting")),
        ("mentioned by id", &alice, text_with("hi", json!({ "m.mentions": { "user_ids": [me] } }))),
        (
            "empty m.mentions turns the display-name rule off",
            &alice,
            text_with("Bob Smith", json!({ "m.mentions": {} })),
        ),
        ("@room by a moderator", &alice, text("@room lunch?")),
        ("@room by someone without the power", &carol, text("@room lunch?")),
        ("room mention by a moderator", &alice, text_with("lunch", json!({ "m.mentions": { "room": true } }))),
        ("room mention without the power", &carol, text_with("lunch", json!({ "m.mentions": { "room": true } }))),
        (
            "@room with m.mentions but no room mention",
            &alice,
            text_with("@room", json!({ "m.mentions": { "user_ids": [] } })),
        ),
        (
            "a notice naming bob",
            &alice,
            Send::Event("m.room.message", json!({ "msgtype": "m.notice", "body": "a bot says Bob Smith" })),
        ),
        (
            "a reaction",
            &alice,
            Send::Event(
                "m.reaction",
                json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": first, "key": "👍" } }),
            ),
        ),
        (
            "an edit",
            &alice,
            text_with(
                "* fixed",
                json!({ "m.new_content": { "msgtype": "m.text", "body": "fixed" },
                                         "m.relates_to": { "rel_type": "m.replace", "event_id": first } }),
            ),
        ),
        (
            "an edit naming bob",
            &alice,
            text_with(
                "* Bob Smith",
                json!({ "m.new_content": { "msgtype": "m.text", "body": "Bob Smith" },
                                             "m.relates_to": { "rel_type": "m.replace", "event_id": first } }),
            ),
        ),
        ("encrypted in a group", &alice, Send::Event("m.room.encrypted", encrypted.clone())),
        (
            "a call (rule disabled)",
            &alice,
            Send::Event(
                "m.call.invite",
                json!({ "call_id": "c1", "lifetime": 60000, "version": 1,
                                                 "offer": { "type": "offer", "sdp": "v=0" } }),
            ),
        ),
        ("keyword", &alice, text("I like PINEAPPLE pizza")),
        ("keyword inside a word", &alice, text("pineapples")),
        ("escaped key", &alice, text_with("flagged", json!({ "m.flag": true }))),
        ("nested key the escaped one does not mean", &alice, text_with("nested", json!({ "m": { "flag": true } }))),
        ("property contains", &alice, text_with("tags", json!({ "tags": ["x", "urgent"] }))),
        ("glob on the type", &alice, Send::Event("org.example.ping", json!({ "n": 1 }))),
        ("a sender rule", &carol, text("hello from carol")),
        ("a room name", &alice, Send::State("m.room.name", "", json!({ "name": "Garden" }))),
        ("a server ACL", &alice, Send::State("m.room.server_acl", "", json!({ "allow": ["*"], "deny": [] }))),
        (
            "a tombstone",
            &alice,
            Send::State("m.room.tombstone", "", json!({ "body": "moved", "replacement_room": "!elsewhere:localhost" })),
        ),
    ];
    let dm_table: Vec<(&str, &Client, Send)> = vec![
        ("one-to-one", &alice, text("just us")),
        ("encrypted one-to-one", &alice, Send::Event("m.room.encrypted", encrypted)),
        (
            "a notice one-to-one",
            &alice,
            Send::Event("m.room.message", json!({ "msgtype": "m.notice", "body": "ping" })),
        ),
        ("keyword one-to-one", &alice, text("pineapple")),
    ];
    let muted_table: Vec<(&str, &Client, Send)> = vec![
        ("a muted room", &alice, text("muted chatter")),
        ("mentioned in a muted room", &alice, text_with("hi", json!({ "m.mentions": { "user_ids": [me] } }))),
    ];

    // (what, room, joined members, event id, sender's power level)
    let mut sent: Vec<(&str, String, u64, String, i64)> = Vec::new();
    for (room, members, cases) in [(&group, 3, table), (&dm, 2, dm_table), (&muted, 2, muted_table)] {
        for (what, sender, send) in cases {
            let event_id = send_case(sender, room, &send, sent.len()).await?;
            let level = if sender.user_id == alice.user_id { 100 } else { 0 };
            sent.push((what, room.clone(), members, event_id, level));
        }
    }
    let (status, body) = alice.post(&room_path(&invited_to, "invite"), &json!({ "user_id": bob.user_id })).await?;
    ensure!(status == 200, "{status} {body}");
    let invite = alice
        .all_messages(&invited_to, 50)
        .await?
        .into_iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == bob.user_id.as_str())
        .and_then(|e| e["event_id"].as_str().map(str::to_owned))
        .unwrap_or_default();
    sent.push(("an invite", invited_to.clone(), 1, invite, 100));

    // The oracle's view: the events as stored, the power levels of their rooms, Bob's rules.
    let mut cases = Vec::new();
    for (what, room, members, event_id, level) in &sent {
        let (status, event) = alice.get(&room_path(room, &format!("event/{}", enc(event_id)))).await?;
        ensure!(status == 200, "{what}: {status} {event}");
        let (_, power) = alice.get(&room_path(room, "state/m.room.power_levels/")).await?;
        cases.push(json!({
            "event": event, "room_member_count": members, "sender_power_level": level,
            "notification_power_levels": power.get("notifications").cloned().unwrap_or(json!({})),
        }));
    }
    let (status, pushrules) = bob.get("/_matrix/client/v3/pushrules/").await?;
    ensure!(status == 200, "{status} {pushrules}");
    let (user_rules, enabled) = rules_for_oracle(&pushrules);
    let oracle = myelin_e2e::run_synapse_python(
        "push_rule_oracle.py",
        &json!({ "user_id": bob.user_id, "display_name": "Bob Smith", "user_rules": user_rules,
                 "enabled": enabled, "cases": cases }),
    )?;

    ensure!(oracle.as_array().map_or(0, Vec::len) == sent.len(), "one answer per case: {oracle}");
    let (status, listed) = bob.get("/_matrix/client/v3/notifications?limit=200").await?;
    ensure!(status == 200, "{status} {listed}");
    let notified: std::collections::HashMap<String, Value> = listed["notifications"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| Some((n["event"]["event_id"].as_str()?.to_owned(), n["actions"].clone())))
        .collect();
    let mut disagreements = Vec::new();
    let mut notifying = 0;
    for (i, (what, _, _, event_id, _)) in sent.iter().enumerate() {
        let synapse = verdict(&oracle[i]);
        let myelin = verdict(notified.get(event_id).unwrap_or(&Value::Null));
        notifying += usize::from(synapse.0);
        if synapse != myelin {
            disagreements.push(format!(
                "{what}: Synapse {synapse:?} ({}), Myelin {myelin:?} ({})",
                oracle[i],
                notified.get(event_id).unwrap_or(&Value::Null)
            ));
        }
    }
    ensure!(disagreements.is_empty(), "push rules disagree with Synapse's evaluator:\n{}", disagreements.join("\n"));
    // The table exercises both outcomes, highlights and sounds.
    ensure!(notifying > 10 && notifying < sent.len(), "{notifying} of {} notify", sent.len());
    ensure!(sent.iter().enumerate().filter(|(i, _)| verdict(&oracle[*i]).1).count() >= 5, "{oracle}");
    Ok(())
}
