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
use myelin_e2e::{Client, TestServer, errcode};
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
