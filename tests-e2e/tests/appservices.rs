//! Application services with a real framework as the peer: a bridge built on mautrix-python
//! (`tests-e2e/python/bridge.py`) registered with Myelin through a Synapse-format registration
//! file. It receives transactions (events and ephemeral events), registers puppets in its
//! namespace and talks through them, answers user and alias queries; its namespaces are its own
//! (`M_EXCLUSIVE`); its token masquerades only as its users; the ping reaches it.

use anyhow::{Context, Result, ensure};
use myelin_e2e::{
    Client, NO_RATE_LIMITS, TestServer,
    bridge::{BRIDGE_AS_TOKEN, MautrixBridge, write_registration},
    enc, errcode, room_path,
};
use serde_json::{Value, json};

async fn bridged_server() -> Result<(TestServer, MautrixBridge)> {
    let port = MautrixBridge::port()?;
    let dir = std::env::temp_dir().join(format!("myelin-as-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir)?;
    let registration = write_registration(&dir, port)?;
    let registration = registration.display().to_string();
    let server = TestServer::start_with_env(NO_RATE_LIMITS, &[("MYELIN_APPSERVICES", &registration)]).await?;
    let bridge = MautrixBridge::start(&server.base_url(), server.server_name(), port).await?;
    Ok((server, bridge))
}

/// The bridge's own token, acting as `user_id` if given.
fn as_bridge(server: &TestServer, user_id: Option<&str>) -> Client {
    let client = server.anonymous().with_token(Some(BRIDGE_AS_TOKEN));
    match user_id {
        Some(user) => client.with_query("user_id", user),
        None => client,
    }
}

async fn wait_for_message(client: &Client, room: &str, body: &str) -> Result<Value> {
    for _ in 0..100 {
        let messages = client.all_messages(room, 50).await?;
        if let Some(found) = messages.iter().find(|m| m["content"]["body"] == body) {
            return Ok(found.clone());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    anyhow::bail!("{body:?} never arrived in {room}")
}

#[tokio::test]
async fn a_mautrix_bridge_receives_events_and_answers_through_its_puppets() -> Result<()> {
    let (server, bridge) = bridged_server().await?;
    let alice = server.register("alice").await?;
    let bot = server.user_id("bridgebot");
    let room = alice.create_room(json!({ "name": "Bridged", "invite": [bot] })).await?;

    // The bot is invited (an event about its user), joins; a message wakes its puppet.
    bridge.wait_for("the bot's invite", |v| v["type"] == "m.room.member" && v["state_key"] == bot.as_str()).await?;
    let mut joined = false;
    for _ in 0..100 {
        let (_, members) = alice.get(&room_path(&room, "joined_members")).await?;
        if members["joined"].get(&bot).is_some() {
            joined = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    ensure!(joined, "the bot joined");
    let hello = alice.send_message(&room, "hello bridge").await?;
    let received = bridge.wait_for("alice's message", |v| v["event_id"] == hello.as_str()).await?;
    ensure!(
        received["sender"] == alice.user_id.as_str() && received["content"]["body"] == "hello bridge",
        "{received}"
    );
    let echo = wait_for_message(&alice, &room, "echo: hello bridge").await?;
    let puppet = server.user_id("bridge_alice");
    ensure!(echo["sender"] == puppet.as_str(), "the puppet answered: {echo}");
    // The puppet's own message is an event the bridge is interested in too (its sender).
    bridge.wait_for("the puppet's echo", |v| v["sender"] == puppet.as_str() && v["type"] == "m.room.message").await?;

    // Ephemeral events (MSC2409): alice typing reaches the bridge.
    let (status, body) = alice
        .put(&room_path(&room, &format!("typing/{}", enc(&alice.user_id))), &json!({ "typing": true, "timeout": 5000 }))
        .await?;
    ensure!(status == 200, "{status} {body}");
    bridge.wait_for("alice typing", |v| v["type"] == "m.typing").await?;

    // An alias in the bridge's namespace that does not exist yet: the bridge is asked and
    // makes a room with it; alice joins it.
    let lobby = format!("#bridge_lobby:{}", server.server_name());
    let (status, body) = alice.post(&format!("/_matrix/client/v3/join/{}", enc(&lobby)), &json!({})).await?;
    ensure!(status == 200, "joined through the alias query: {status} {body}");
    bridge.wait_for("the alias query", |v| v["kind"] == "query_alias" && v["alias"] == lobby.as_str()).await?;

    // A user in its namespace that does not exist yet: the bridge is asked and registers it.
    let ghost = server.user_id("bridge_ghost");
    let (status, body) = alice.get(&format!("/_matrix/client/v3/profile/{}", enc(&ghost))).await?;
    ensure!(status == 200, "the profile of a user the bridge made on demand: {status} {body}");
    bridge.wait_for("the user query", |v| v["kind"] == "query_user" && v["user_id"] == ghost.as_str()).await?;
    Ok(())
}

#[tokio::test]
async fn namespaces_masquerading_registration_and_ping() -> Result<()> {
    let (server, _bridge) = bridged_server().await?;
    let alice = server.register("alice").await?;

    // The bridge's namespaces are its own.
    let (status, body) = server
        .anonymous()
        .post(
            "/_matrix/client/v3/register",
            &json!({ "username": "bridge_mallory", "password": "mallory-password-1", "auth": { "type": "m.login.dummy" } }),
        )
        .await?;
    ensure!(status == 400 && errcode(&body) == "M_EXCLUSIVE", "{status} {body}");
    let (status, body) =
        alice.post("/_matrix/client/v3/createRoom", &json!({ "room_alias_name": "bridge_stolen" })).await?;
    ensure!(status == 400 && errcode(&body) == "M_EXCLUSIVE", "{status} {body}");
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    let alias = format!("#bridge_mine:{}", server.server_name());
    let (status, body) =
        alice.put(&format!("/_matrix/client/v3/directory/room/{}", enc(&alias)), &json!({ "room_id": room })).await?;
    ensure!(status == 400 && errcode(&body) == "M_EXCLUSIVE", "{status} {body}");

    // The bridge registers its users without a password; not outside its namespace.
    let bridge = as_bridge(&server, None);
    let register =
        |name: &str| json!({ "type": "m.login.application_service", "username": name, "inhibit_login": true });
    let (status, body) = bridge.post("/_matrix/client/v3/register", &register("bridge_bob")).await?;
    ensure!(status == 200 && body["user_id"] == server.user_id("bridge_bob").as_str(), "{status} {body}");
    let (status, body) = bridge.post("/_matrix/client/v3/register", &register("carol")).await?;
    ensure!(status == 400 && errcode(&body) == "M_EXCLUSIVE", "{status} {body}");
    let (status, body) = server.anonymous().post("/_matrix/client/v3/register", &register("bridge_eve")).await?;
    ensure!(status == 403, "only the bridge may: {status} {body}");

    // Masquerading: its users only, registered ones only.
    let bob = server.user_id("bridge_bob");
    // A bridged message keeps the time it was sent elsewhere (`ts`); nobody else's `ts` counts.
    let as_bob = as_bridge(&server, Some(&bob));
    let (status, body) = as_bob.join(&room).await?;
    ensure!(status == 200, "{status} {body}");
    let message = json!({ "msgtype": "m.text", "body": "from the past" });
    let (status, sent) =
        as_bob.with_query("ts", "1600000000000").put(&room_path(&room, "send/m.room.message/ts1"), &message).await?;
    ensure!(status == 200, "{status} {sent}");
    let event = |id: &Value| room_path(&room, &format!("event/{}", enc(id.as_str().unwrap_or_default())));
    let (_, seen) = alice.get(&event(&sent["event_id"])).await?;
    ensure!(seen["origin_server_ts"] == 1_600_000_000_000u64, "{seen}");
    let (status, mine) =
        alice.with_query("ts", "1").put(&room_path(&room, "send/m.room.message/ts2"), &message).await?;
    ensure!(status == 200, "{status} {mine}");
    let (_, seen) = alice.get(&event(&mine["event_id"])).await?;
    ensure!(seen["origin_server_ts"].as_u64().is_some_and(|ts| ts > 1_600_000_000_000), "{seen}");
    let (status, body) = as_bridge(&server, Some(&bob)).get("/_matrix/client/v3/account/whoami").await?;
    ensure!(status == 200 && body["user_id"] == bob.as_str(), "{status} {body}");
    let (status, body) = as_bridge(&server, None).get("/_matrix/client/v3/account/whoami").await?;
    ensure!(status == 200 && body["user_id"] == server.user_id("bridgebot").as_str(), "{status} {body}");
    let (status, body) = as_bridge(&server, Some(&alice.user_id)).get("/_matrix/client/v3/account/whoami").await?;
    ensure!(status == 403 && errcode(&body) == "M_FORBIDDEN", "not alice: {status} {body}");
    let ghost = server.user_id("bridge_nobody");
    let (status, body) = as_bridge(&server, Some(&ghost)).get("/_matrix/client/v3/account/whoami").await?;
    ensure!(status == 403, "not a user it has not registered: {status} {body}");
    let (status, body) = as_bridge(&server, Some(&bob))
        .with_query("device_id", "NOSUCHDEVICE")
        .get("/_matrix/client/v3/account/whoami")
        .await?;
    ensure!(status == 400 && errcode(&body) == "M_UNKNOWN_DEVICE", "{status} {body}");

    // A device made by the bridge (MSC4190), then used with device_id.
    let (status, body) = as_bridge(&server, Some(&bob))
        .put("/_matrix/client/v3/devices/BRIDGEDEV", &json!({ "display_name": "Bridge device" }))
        .await?;
    ensure!(status == 201, "created: {status} {body}");
    let (status, body) = as_bridge(&server, Some(&bob))
        .with_query("org.matrix.msc3202.device_id", "BRIDGEDEV")
        .get("/_matrix/client/v3/account/whoami")
        .await?;
    ensure!(status == 200 && body["device_id"] == "BRIDGEDEV", "{status} {body}");
    let (status, body) =
        as_bridge(&server, Some(&bob)).delete("/_matrix/client/v3/devices/BRIDGEDEV", &json!({})).await?;
    ensure!(status == 200, "deleted without user-interactive auth: {status} {body}");

    // The ping reaches the bridge; another service's id is refused.
    let (status, body) =
        bridge.post("/_matrix/client/v1/appservice/testbridge/ping", &json!({ "transaction_id": "t1" })).await?;
    ensure!(status == 200 && body["duration_ms"].is_u64(), "{status} {body}");
    let (status, body) = bridge.post("/_matrix/client/v1/appservice/other/ping", &json!({})).await?;
    ensure!(status == 403 && errcode(&body) == "M_FORBIDDEN", "{status} {body}");
    let (status, body) = alice.post("/_matrix/client/v1/appservice/testbridge/ping", &json!({})).await?;
    ensure!(status == 403, "{status} {body}");
    Ok(())
}

/// A registration file with a mistake stops the start and `config check` with what is wrong.
#[tokio::test]
async fn a_bad_registration_file_is_refused_by_config_check() -> Result<()> {
    let server = TestServer::start_with(NO_RATE_LIMITS).await?;
    let bad = server.data_dir().join("bad.yaml");
    std::fs::write(&bad, "id: x\nurl: ftp://nowhere\nas_token: a\nhs_token: a\nsender_localpart: bot\n")?;
    let out = std::process::Command::new(myelin_e2e::server_binary())
        .args(["--data-dir", &server.data_dir().display().to_string()])
        .env("MYELIN_APPSERVICES", bad.display().to_string())
        .args(["config", "check"])
        .output()
        .context("run config check")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success() && stderr.contains("must differ") && stderr.contains("ftp://"), "{stderr}");
    Ok(())
}

/// What the test's own application service received: (transaction id, body) in order.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>;

/// An application service that answers 500 to its first `failures` transactions, then 200,
/// recording each transaction it is sent.
async fn flaky_service(failures: usize) -> Result<(u16, Received)> {
    use axum::{
        Json, Router,
        extract::{Path, State},
        http::StatusCode,
        routing::put,
    };
    let received: Received = Default::default();
    let failures = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(failures));
    let app = Router::new()
        .route(
            "/_matrix/app/v1/transactions/{txn}",
            put(
                |State((received, failures)): State<(Received, std::sync::Arc<std::sync::atomic::AtomicUsize>)>,
                 Path(txn): Path<String>,
                 Json(body): Json<Value>| async move {
                    if let Ok(mut r) = received.lock() {
                        r.push((txn, body));
                    }
                    let left = failures.load(std::sync::atomic::Ordering::SeqCst);
                    if left > 0 {
                        failures.store(left - 1, std::sync::atomic::Ordering::SeqCst);
                        return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({})));
                    }
                    (StatusCode::OK, Json(json!({})))
                },
            ),
        )
        .with_state((received.clone(), failures));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((port, received))
}

/// Transactions are durable and retried unchanged: the service fails twice, the server is
/// killed meanwhile; every message arrives once, in order, and a retried transaction id always
/// carries the same body.
#[tokio::test]
async fn transactions_survive_failures_and_restarts_and_are_retried_unchanged() -> Result<()> {
    let (port, received) = flaky_service(2).await?;
    let dir = std::env::temp_dir().join(format!("myelin-as-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir)?;
    let registration = write_registration(&dir, port)?.display().to_string();
    let mut server = TestServer::start_with_env(NO_RATE_LIMITS, &[("MYELIN_APPSERVICES", &registration)]).await?;
    let alice = server.register("alice").await?;
    let bot = server.user_id("bridgebot");
    let room = alice.create_room(json!({ "invite": [bot] })).await?;
    // The service's bot joins: the room's events interest the service from then on.
    let (status, body) = as_bridge(&server, None).join(&room).await?;
    ensure!(status == 200, "{status} {body}");
    let mut sent = Vec::new();
    for i in 0..30 {
        sent.push(alice.send_message(&room, &format!("message {i}")).await?);
    }
    server.kill9();
    server.start_again().await?;
    for i in 30..60 {
        sent.push(alice.send_message(&room, &format!("message {i}")).await?);
    }
    let accepted = |r: &[(String, Value)]| -> Vec<String> {
        // The transactions answered 200 (all but the first two attempts), each id once: a
        // service recognises a transaction it already took by its id.
        let mut seen: Vec<String> = Vec::new();
        let mut txns = std::collections::HashSet::new();
        for (txn, body) in r.iter().skip(2) {
            if !txns.insert(txn.clone()) {
                continue;
            }
            for event in body["events"].as_array().into_iter().flatten() {
                if event["type"] == "m.room.message" {
                    seen.push(event["event_id"].as_str().unwrap_or_default().to_owned());
                }
            }
        }
        seen
    };
    let mut delivered = Vec::new();
    for _ in 0..300 {
        delivered = accepted(&received.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone());
        if delivered.len() >= sent.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    ensure!(
        delivered == sent,
        "every message once, in order: got {} of {}\n{}",
        delivered.len(),
        sent.len(),
        server.log()
    );
    let all = received.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    for (i, (txn, body)) in all.iter().enumerate() {
        for (later_txn, later_body) in &all[i + 1..] {
            if later_txn == txn {
                ensure!(later_body == body, "transaction {txn} was retried with another body");
            }
        }
    }
    ensure!(all.len() >= 3 && all[0].0 == all[1].0 && all[1].0 == all[2].0, "the failed transaction was retried as is");
    Ok(())
}

/// SIGHUP reads the registration files and the log filter again; a broken file changes nothing.
#[tokio::test]
async fn sighup_reloads_registration_files_and_the_log_filter() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("myelin-as-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir)?;
    let registration = write_registration(&dir, 9)?;
    let path = registration.display().to_string();
    let config = format!("log_filter = \"info\"\n{NO_RATE_LIMITS}");
    let server = TestServer::start_with_env(&config, &[("MYELIN_APPSERVICES", &path)]).await?;
    let register = |name: &str| json!({ "username": name, "password": format!("{name}-password-1"), "auth": { "type": "m.login.dummy" } });
    let (status, body) = server.anonymous().post("/_matrix/client/v3/register", &register("other_one")).await?;
    ensure!(status == 200, "not in any namespace yet: {status} {body}");

    // The bridge now claims @other_… too, and the log is to say more.
    let yaml =
        std::fs::read_to_string(&registration)?.replace("regex: \"@bridge_.*\"", "regex: \"@(bridge|other)_.*\"");
    std::fs::write(&registration, yaml)?;
    std::fs::write(server.config_path(), format!("log_filter = \"debug\"\n{NO_RATE_LIMITS}"))?;
    server.signal("HUP")?;
    let mut claimed = false;
    for attempt in 0..50 {
        // A fresh name each time: a request the reload has not reached yet registers its name.
        let name = format!("other_two_{attempt}");
        let (status, body) = server.anonymous().post("/_matrix/client/v3/register", &register(&name)).await?;
        if status == 400 && errcode(&body) == "M_EXCLUSIVE" {
            claimed = true;
            break;
        }
        ensure!(status == 200, "registered while the reload is on its way, or refused as exclusive: {status} {body}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    ensure!(claimed, "the new namespace applies after SIGHUP\n{}", server.log());
    for _ in 0..50 {
        if server.log().contains("SIGHUP: configuration reloaded") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    ensure!(server.log().contains("SIGHUP: configuration reloaded"), "{}", server.log());
    // A request once the filter says debug: its debug lines are written.
    server.anonymous().get("/_matrix/client/versions").await?;
    ensure!(server.log().contains("DEBUG"), "debug lines once the filter says debug");

    // A broken file: refused, the namespaces in use stay.
    std::fs::write(&registration, "id: [")?;
    server.signal("HUP")?;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    ensure!(server.log().contains("reload refused"), "{}", server.log());
    let (status, body) = server.anonymous().post("/_matrix/client/v3/register", &register("other_three")).await?;
    ensure!(status == 400 && errcode(&body) == "M_EXCLUSIVE", "{status} {body}");
    Ok(())
}

/// To-device messages to a service's users reach the service (MSC2409), as the service reads
/// them: recipient, device, sender, type and content; with the one-time key counts of the
/// recipient's devices (MSC3202), which the service keeps topped up.
#[tokio::test]
async fn to_device_messages_and_key_counts_reach_the_service() -> Result<()> {
    let (port, received) = flaky_service(0).await?;
    let dir = std::env::temp_dir().join(format!("myelin-as-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir)?;
    let registration = write_registration(&dir, port)?;
    let yaml = std::fs::read_to_string(&registration)?;
    std::fs::write(&registration, format!("{yaml}org.matrix.msc3202: true\n"))?;
    let registration = registration.display().to_string();
    let server = TestServer::start_with_env(NO_RATE_LIMITS, &[("MYELIN_APPSERVICES", &registration)]).await?;
    let alice = server.register("alice").await?;
    let bridge = as_bridge(&server, None);
    let register = json!({ "type": "m.login.application_service", "username": "bridge_bob", "inhibit_login": true });
    let (status, body) = bridge.post("/_matrix/client/v3/register", &register).await?;
    ensure!(status == 200, "{status} {body}");
    let bob = server.user_id("bridge_bob");
    let (status, body) = as_bridge(&server, Some(&bob)).put("/_matrix/client/v3/devices/BOBDEV", &json!({})).await?;
    ensure!(status == 201, "{status} {body}");
    // One-time keys uploaded for the bridge's device, as the bridge does (device_id masquerading).
    let keys = json!({ "one_time_keys": { "curve25519:AAAAAQ": "dGhpcyBpcyBub3QgYSByZWFsIGtleSBidXQgYSB0ZXN0" } });
    let (status, body) = as_bridge(&server, Some(&bob))
        .with_query("org.matrix.msc3202.device_id", "BOBDEV")
        .post("/_matrix/client/v3/keys/upload", &keys)
        .await?;
    ensure!(status == 200 && body["one_time_key_counts"]["curve25519"] == 1, "{status} {body}");
    let message = json!({ "messages": { (bob.as_str()): { "BOBDEV": { "algorithm": "m.olm.v1.curve25519-aes-sha2", "ciphertext": {} } } } });
    let (status, body) = alice.put("/_matrix/client/v3/sendToDevice/m.room.encrypted/t1", &message).await?;
    ensure!(status == 200, "{status} {body}");
    let mut found = Value::Null;
    let mut counts = Value::Null;
    for _ in 0..100 {
        let all = received.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
        if let Some((m, c)) = all
            .iter()
            .flat_map(|(_, body)| {
                let counts = body["org.matrix.msc3202.device_one_time_keys_count"].clone();
                let messages = body["de.sorunome.msc2409.to_device"].as_array().cloned().unwrap_or_default();
                messages.into_iter().map(move |m| (m, counts.clone()))
            })
            .next()
        {
            found = m;
            counts = c;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    ensure!(
        found["to_user_id"] == bob.as_str()
            && found["to_device_id"] == "BOBDEV"
            && found["sender"] == alice.user_id.as_str()
            && found["type"] == "m.room.encrypted"
            && found["content"]["algorithm"] == "m.olm.v1.curve25519-aes-sha2",
        "{found}"
    );
    ensure!(counts[bob.as_str()]["BOBDEV"]["curve25519"] == 1, "the device's key count: {counts}");

    // Device lists (MSC3202): the bot shares a room with alice; she signs out of a device and the
    // service is told her device list changed, without any event to carry it.
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    let (status, body) = bridge.join(&room).await?;
    ensure!(status == 200, "{status} {body}");
    let joined_at = received.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.len();
    for _ in 0..100 {
        if received.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.len() > joined_at {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let seen = received.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.len();
    let (status, body) = alice.post("/_matrix/client/v3/logout", &json!({})).await?;
    ensure!(status == 200, "{status} {body}");
    let mut changed = Value::Null;
    for _ in 0..100 {
        let all = received.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
        if let Some(lists) =
            all[seen..].iter().map(|(_, b)| b["org.matrix.msc3202.device_lists"].clone()).find(|l| !l.is_null())
        {
            changed = lists;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    ensure!(
        changed["changed"].as_array().is_some_and(|c| c.iter().any(|u| u == alice.user_id.as_str())),
        "alice's new device: {changed}"
    );
    Ok(())
}
