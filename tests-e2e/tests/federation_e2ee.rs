//! End-to-end encryption across two real Myelin servers on one machine (server names
//! `127.0.0.1:<federation port>`): key queries and claims for remote users go to their server,
//! device-list changes cross as EDUs and reach the other side's sync, to-device messages cross,
//! OpenID tokens are checked by the issuing server. Requests the test signs itself use a
//! server's own signing key from its data directory. The last test does the same with a real
//! Synapse as the other server.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use myelin_e2e::{
    Client, SynapsePeer, TestServer,
    device_keys::{DeviceKeys, signed},
    enc, errcode,
    federation::{signing_key, x_matrix},
    next_batch,
};
use serde_json::{Value, json};

/// How long something may take to cross (the sender's queue runs at once; slack for CI).
const CROSSING: Duration = Duration::from_secs(20);

/// Uploads the device keys and `otks` signed one-time keys (`AAAA0`, `AAAA1`, …).
async fn upload(keys: &DeviceKeys, client: &Client, otks: usize) -> Result<Value> {
    let mut one_time_keys = serde_json::Map::new();
    for i in 0..otks {
        let key = signed(&client.user_id, &keys.pair, json!({ "key": format!("otk-{}-{i}", client.device_id) }))?;
        one_time_keys.insert(format!("signed_curve25519:AAAA{i}"), key);
    }
    let body = json!({ "device_keys": keys.device_keys(client)?, "one_time_keys": one_time_keys });
    let (status, answer) = client.post("/_matrix/client/v3/keys/upload", &body).await?;
    ensure!(status == 200, "upload: {status} {answer}");
    Ok(answer)
}

/// A federation request from `from` to `to`, signed with `from`'s key, sent to `to`'s client
/// listener (which serves the federation routes too).
async fn signed_request(
    from: &TestServer,
    to: &TestServer,
    method: reqwest::Method,
    uri: &str,
    content: Option<&Value>,
) -> Result<(u16, Value)> {
    let key = signing_key(from)?;
    let auth = x_matrix(&key, from.server_name(), to.server_name(), method.as_str(), uri, content)?;
    to.anonymous().with_header("Authorization", &auth).request(method, uri, content).await
}

/// Syncs `client` (long-polling from `since`) until `check` holds for a response; returns it.
async fn sync_until(client: &Client, since: &str, what: &str, check: impl Fn(&Value) -> bool) -> Result<Value> {
    let deadline = Instant::now() + CROSSING;
    let mut since = since.to_owned();
    loop {
        let sync = client.sync(Some(&since), 1_000, None).await?;
        if check(&sync) {
            return Ok(sync);
        }
        if Instant::now() > deadline {
            bail!("{what}: not seen by {} (last sync {sync})", client.user_id);
        }
        since = next_batch(&sync)?;
    }
}

/// Retries `probe` until it answers something `check` accepts.
async fn eventually(
    what: &str,
    mut probe: impl AsyncFnMut() -> Result<Value>,
    check: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = Instant::now() + CROSSING;
    loop {
        let value = probe().await?;
        if check(&value) {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("{what}: still {value}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn query(client: &Client, user: &str) -> Result<Value> {
    let (status, body) = client.post("/_matrix/client/v3/keys/query", &json!({ "device_keys": { user: [] } })).await?;
    ensure!(status == 200, "keys/query: {status} {body}");
    Ok(body)
}

fn to_device_events(sync: &Value) -> Vec<Value> {
    sync["to_device"]["events"].as_array().cloned().unwrap_or_default()
}

/// Alice on A, Bob on B, in one room made on A.
async fn alice_and_bob(a: &TestServer, b: &TestServer) -> Result<(Client, Client, String)> {
    let alice = a.register("alice").await?;
    let bob = b.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    let (status, body) = bob
        .post(&format!("/_matrix/client/v3/join/{}?server_name={}", enc(&room), enc(a.server_name())), &json!({}))
        .await?;
    ensure!(status == 200, "join over federation: {status} {body}\nA's log:\n{}\nB's log:\n{}", a.log(), b.log());
    // A knows Bob is in the room once Bob's join arrived there.
    eventually(
        "A sees Bob's join",
        async || Ok(alice.get(&myelin_e2e::room_path(&room, "joined_members")).await?.1),
        |m| m["joined"].get(&bob.user_id).is_some(),
    )
    .await?;
    Ok((alice, bob, room))
}

#[tokio::test]
async fn keys_device_lists_and_to_device_messages_cross_servers() -> Result<()> {
    let a = TestServer::start_federating().await?;
    let b = TestServer::start_federating().await?;
    let (alice, bob, _room) = alice_and_bob(&a, &b).await?;
    let alice_keys = DeviceKeys::new(&alice.device_id)?;
    let counts = upload(&alice_keys, &alice, 3).await?;
    assert_eq!(counts["one_time_key_counts"]["signed_curve25519"], 3);
    let bob_since = next_batch(&bob.sync(None, 0, None).await?)?;

    // Bob queries Alice's keys through B: A answers with her signed device keys.
    let answer = query(&bob, &alice.user_id).await?;
    let device = &answer["device_keys"][&alice.user_id][&alice.device_id];
    assert_eq!(device, &alice_keys.device_keys(&alice)?, "Alice's device keys as uploaded: {answer}");
    assert_eq!(answer["failures"], json!({}), "{answer}");

    // Bob claims two of her one-time keys through B: each once, oldest first.
    let claim = json!({ "one_time_keys": { &alice.user_id: { &alice.device_id: "signed_curve25519" } } });
    let mut claimed = Vec::new();
    for _ in 0..2 {
        let (status, body) = bob.post("/_matrix/client/v3/keys/claim", &claim).await?;
        ensure!(status == 200, "claim: {status} {body}");
        let keys = body["one_time_keys"][&alice.user_id][&alice.device_id].as_object().context("claimed")?.clone();
        ensure!(keys.len() == 1, "one key per claim: {body}");
        claimed.extend(keys.keys().cloned());
    }
    assert_eq!(claimed, ["signed_curve25519:AAAA0", "signed_curve25519:AAAA1"]);
    let (_, counts) = alice.post("/_matrix/client/v3/keys/upload", &json!({})).await?;
    assert_eq!(counts["one_time_key_counts"]["signed_curve25519"], 1, "A's counts follow remote claims");

    // Alice logs in a second device and uploads its keys: Bob's sync on B reports her device list
    // changed, and his query shows both devices.
    let alice2 = a.login("alice").await?;
    upload(&DeviceKeys::new(&alice2.device_id)?, &alice2, 1).await?;
    let sync = sync_until(&bob, &bob_since, "Alice's device list change", |s| {
        s["device_lists"]["changed"].as_array().is_some_and(|c| c.iter().any(|u| u == alice.user_id.as_str()))
    })
    .await
    .with_context(|| format!("A's log:\n{}\nB's log:\n{}", a.log(), b.log()))?;
    let bob_since = next_batch(&sync)?;
    let answer = eventually(
        "Bob sees Alice's second device",
        async || query(&bob, &alice.user_id).await,
        |q| q["device_keys"][&alice.user_id].as_object().is_some_and(|d| d.len() == 2),
    )
    .await?;
    assert!(answer["device_keys"][&alice.user_id][&alice2.device_id]["keys"].is_object(), "{answer}");

    // Alice's second device goes: Bob hears of it too.
    let (status, body) = alice2.post("/_matrix/client/v3/logout", &json!({})).await?;
    ensure!(status == 200, "logout: {status} {body}");
    let sync = sync_until(&bob, &bob_since, "Alice's device deletion", |s| {
        s["device_lists"]["changed"].as_array().is_some_and(|c| c.iter().any(|u| u == alice.user_id.as_str()))
    })
    .await?;
    let _ = sync;
    eventually(
        "Bob no longer sees Alice's second device",
        async || query(&bob, &alice.user_id).await,
        |q| q["device_keys"][&alice.user_id].as_object().is_some_and(|d| d.len() == 1),
    )
    .await?;

    // A to-device message from Bob reaches Alice's device over federation, once per txn id.
    let alice_since = next_batch(&alice.sync(None, 0, None).await?)?;
    let message = json!({ "messages": { &alice.user_id: { &alice.device_id: { "secret": "s1" } } } });
    for _ in 0..2 {
        let (status, body) = bob.put("/_matrix/client/v3/sendToDevice/m.test.secret/txn1", &message).await?;
        ensure!(status == 200, "sendToDevice: {status} {body}");
    }
    let everyone = json!({ "messages": { &alice.user_id: { "*": { "secret": "s2" } } } });
    let (status, body) = bob.put("/_matrix/client/v3/sendToDevice/m.test.secret/txn2", &everyone).await?;
    ensure!(status == 200, "sendToDevice *: {status} {body}");
    let mut received = Vec::new();
    let mut since = alice_since;
    let deadline = Instant::now() + CROSSING;
    while received.len() < 2 && Instant::now() < deadline {
        let sync = alice.sync(Some(&since), 1_000, None).await?;
        received.extend(to_device_events(&sync));
        since = next_batch(&sync)?;
    }
    // One more sync: nothing further arrives (the repeated transaction id sent nothing).
    received.extend(to_device_events(&alice.sync(Some(&since), 500, None).await?));
    let secrets: Vec<&str> = received.iter().filter_map(|e| e["content"]["secret"].as_str()).collect();
    assert_eq!(secrets, ["s1", "s2"], "Alice's device gets each message once: {received:?}");
    for event in &received {
        assert_eq!(event["sender"], bob.user_id.as_str());
        assert_eq!(event["type"], "m.test.secret");
    }

    // And the other way: Bob's keys reach Alice through A.
    upload(&DeviceKeys::new(&bob.device_id)?, &bob, 1).await?;
    eventually(
        "Alice sees Bob's device keys",
        async || query(&alice, &bob.user_id).await,
        |q| q["device_keys"][&bob.user_id][&bob.device_id]["keys"].is_object(),
    )
    .await?;
    Ok(())
}

/// What other servers may not do: speak for users of a third server, claim keys of users who are
/// not the answering server's.
#[tokio::test]
async fn servers_speak_only_for_their_own_users() -> Result<()> {
    let a = TestServer::start_federating().await?;
    let b = TestServer::start_federating().await?;
    let (alice, bob, _room) = alice_and_bob(&a, &b).await?;
    upload(&DeviceKeys::new(&alice.device_id)?, &alice, 2).await?;
    let alice_since = next_batch(&alice.sync(None, 0, None).await?)?;

    // B sends A EDUs about a user of another server (and about Alice): A ignores them.
    let stranger = "@mallory:elsewhere.example";
    let txn = json!({
        "origin": b.server_name(),
        "origin_server_ts": 1,
        "pdus": [],
        "edus": [
            { "edu_type": "m.device_list_update", "content": {
                "user_id": stranger, "device_id": "EVIL", "stream_id": 1, "prev_id": [], "deleted": false } },
            { "edu_type": "m.device_list_update", "content": {
                "user_id": alice.user_id, "device_id": "EVIL", "stream_id": 1, "prev_id": [], "deleted": false } },
            { "edu_type": "m.signing_key_update", "content": { "user_id": alice.user_id } },
            { "edu_type": "m.direct_to_device", "content": {
                "sender": stranger, "type": "m.test", "message_id": "m1",
                "messages": { &alice.user_id: { "*": { "forged": true } } } } },
            { "edu_type": "m.direct_to_device", "content": "garbage" },
            { "edu_type": "m.device_list_update", "content": { "user_id": 5 } },
        ],
    });
    let (status, body) =
        signed_request(&b, &a, reqwest::Method::PUT, "/_matrix/federation/v1/send/bad-edus", Some(&txn)).await?;
    ensure!(status == 200, "transaction: {status} {body}");
    let sync = alice.sync(Some(&alice_since), 1_000, None).await?;
    assert!(to_device_events(&sync).is_empty(), "no forged to-device message: {sync}");
    let changed = sync["device_lists"]["changed"].as_array().cloned().unwrap_or_default();
    assert!(!changed.iter().any(|u| u == stranger || u == alice.user_id.as_str()), "no forged change: {sync}");
    let answer = query(&alice, &alice.user_id).await?;
    assert!(answer["device_keys"][&alice.user_id].get("EVIL").is_none(), "{answer}");

    // Claims and queries served over federation answer for local users only.
    let claim = json!({ "one_time_keys": {
        &bob.user_id: { &bob.device_id: "signed_curve25519" },
        stranger: { "X": "signed_curve25519" },
        &alice.user_id: { &alice.device_id: "signed_curve25519" },
    } });
    let (status, body) =
        signed_request(&b, &a, reqwest::Method::POST, "/_matrix/federation/v1/user/keys/claim", Some(&claim)).await?;
    ensure!(status == 200, "claim: {status} {body}");
    let users: Vec<&String> = body["one_time_keys"].as_object().context("one_time_keys")?.keys().collect();
    assert_eq!(users, [&alice.user_id], "only A's user: {body}");
    let query_body = json!({ "device_keys": { &bob.user_id: [], stranger: [], &alice.user_id: [] } });
    let (status, body) =
        signed_request(&b, &a, reqwest::Method::POST, "/_matrix/federation/v1/user/keys/query", Some(&query_body))
            .await?;
    ensure!(status == 200, "query: {status} {body}");
    let users: Vec<&String> = body["device_keys"].as_object().context("device_keys")?.keys().collect();
    assert_eq!(users, [&alice.user_id], "only A's user: {body}");

    // /user/devices: a local user's list with its stream id; anyone else is refused.
    let uri = format!("/_matrix/federation/v1/user/devices/{}", enc(&alice.user_id));
    let (status, body) = signed_request(&b, &a, reqwest::Method::GET, &uri, None).await?;
    ensure!(status == 200, "user/devices: {status} {body}");
    assert_eq!(body["user_id"], alice.user_id.as_str());
    assert!(body["stream_id"].as_i64().is_some_and(|id| id >= 1), "{body}");
    assert_eq!(body["devices"][0]["device_id"], alice.device_id.as_str(), "{body}");
    assert!(body["devices"][0]["keys"].is_object(), "{body}");
    let uri = format!("/_matrix/federation/v1/user/devices/{}", enc(&bob.user_id));
    let (status, body) = signed_request(&b, &a, reqwest::Method::GET, &uri, None).await?;
    assert_eq!(status, 400, "{body}");
    // Unsigned: refused.
    let (status, body) = a.anonymous().post("/_matrix/federation/v1/user/keys/query", &query_body).await?;
    assert_eq!((status, errcode(&body)), (401, "M_UNAUTHORIZED"), "{body}");
    Ok(())
}

/// An OpenID token from B's client API is checked by B's federation `/openid/userinfo` (what a
/// MatrixRTC JWT service does); unknown tokens are 401 `M_UNKNOWN_TOKEN`.
#[tokio::test]
async fn openid_tokens_round_trip() -> Result<()> {
    let b = TestServer::start_federating().await?;
    let bob = b.register("bob").await?;
    let path = format!("/_matrix/client/v3/user/{}/openid/request_token", enc(&bob.user_id));
    let (status, token) = bob.post(&path, &json!({})).await?;
    ensure!(status == 200, "request_token: {status} {token}");
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["matrix_server_name"], b.server_name());
    assert!(token["expires_in"].as_u64().is_some_and(|e| e > 0), "{token}");
    let access = token["access_token"].as_str().context("access_token")?;

    // The checking service talks to the issuing server's federation API, unsigned.
    let federation = b.federation_url().context("federation listener")?;
    let https = reqwest_tls::Client::builder().tls_danger_accept_invalid_certs(true).build()?;
    let url = format!("{federation}/_matrix/federation/v1/openid/userinfo?access_token={}", enc(access));
    let response = https.get(&url).send().await?;
    assert_eq!(response.status().as_u16(), 200);
    let info: Value = response.json().await?;
    assert_eq!(info, json!({ "sub": bob.user_id }));

    for bad in [format!("?access_token={}", enc(&format!("{access}x"))), String::new()] {
        let (status, body) = b.anonymous().get(&format!("/_matrix/federation/v1/openid/userinfo{bad}")).await?;
        assert_eq!((status, errcode(&body)), (401, "M_UNKNOWN_TOKEN"), "{bad}: {body}");
    }
    // A token only for oneself; none without a session.
    let other = format!("/_matrix/client/v3/user/{}/openid/request_token", enc("@someone:elsewhere.example"));
    let (status, body) = bob.post(&other, &json!({})).await?;
    assert_eq!((status, errcode(&body)), (403, "M_FORBIDDEN"), "{body}");
    let (status, body) = b.anonymous().post(&path, &json!({})).await?;
    assert_eq!(status, 401, "{body}");
    Ok(())
}

/// A sends B's user's device-list updates on from where its kept list is; an update after a gap
/// (a `prev_id` it has not seen) makes it resync the whole list from B's `/user/devices`.
#[tokio::test]
async fn device_list_gaps_are_resynced() -> Result<()> {
    let a = TestServer::start_federating().await?;
    let b = TestServer::start_federating().await?;
    let (alice, bob, _room) = alice_and_bob(&a, &b).await?;
    let alice_since = next_batch(&alice.sync(None, 0, None).await?)?;

    // Bob's first device keys: A hears of it, resyncs (it kept nothing yet), and tells Alice.
    upload(&DeviceKeys::new(&bob.device_id)?, &bob, 1).await?;
    sync_until(&alice, &alice_since, "Bob's device list change", |s| {
        s["device_lists"]["changed"].as_array().is_some_and(|c| c.iter().any(|u| u == bob.user_id.as_str()))
    })
    .await
    .with_context(|| format!("A's log:\n{}", a.log()))?;
    let uri = format!("/_matrix/federation/v1/user/devices/{}", enc(&bob.user_id));
    let (status, devices) = signed_request(&a, &b, reqwest::Method::GET, &uri, None).await?;
    ensure!(status == 200, "B's /user/devices: {status} {devices}");
    let stream_id = devices["stream_id"].as_i64().context("stream_id")?;

    let update = |txn: &str, device: &str, stream_id: i64, prev: i64| {
        let edu = json!({ "edu_type": "m.device_list_update", "content": {
            "user_id": bob.user_id, "device_id": device, "stream_id": stream_id, "prev_id": [prev],
            "deleted": false, "device_display_name": device,
            "keys": { "user_id": bob.user_id, "device_id": device, "algorithms": [], "keys": {} },
        } });
        (
            format!("/_matrix/federation/v1/send/{txn}"),
            json!({
                "origin": b.server_name(), "origin_server_ts": 1, "pdus": [], "edus": [edu],
            }),
        )
    };
    let devices_of_bob = async || -> Result<Vec<String>> {
        let answer = query(&alice, &bob.user_id).await?;
        let mut ids: Vec<String> =
            answer["device_keys"][&bob.user_id].as_object().context("devices")?.keys().cloned().collect();
        ids.sort();
        Ok(ids)
    };

    // The next update in order is applied to A's kept list (B itself never had this device, so
    // only the kept list can show it).
    let (path, txn) = update("next", "GHOST", stream_id + 1, stream_id);
    let (status, body) = signed_request(&b, &a, reqwest::Method::PUT, &path, Some(&txn)).await?;
    ensure!(status == 200, "transaction: {status} {body}");
    let mut expected = vec![bob.device_id.clone(), "GHOST".to_owned()];
    expected.sort();
    assert_eq!(devices_of_bob().await?, expected, "the update followed the kept list");

    // An update after a gap: A resyncs from B, whose list has neither ghost.
    let (path, txn) = update("gap", "GHOST2", stream_id + 10, stream_id + 9);
    let (status, body) = signed_request(&b, &a, reqwest::Method::PUT, &path, Some(&txn)).await?;
    ensure!(status == 200, "transaction: {status} {body}");
    let deadline = Instant::now() + CROSSING;
    loop {
        let ids = devices_of_bob().await?;
        if ids == [bob.device_id.clone()] {
            break;
        }
        ensure!(Instant::now() < deadline, "A never resynced Bob's list: {ids:?}\nA's log:\n{}", a.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Once resynced, A's kept list is at B's stream id again: the update that follows it is
    // applied (sent until the resync has finished; one sent while the list is stale is not).
    let mut expected = vec![bob.device_id.clone(), "GHOST3".to_owned()];
    expected.sort();
    for attempt in 0.. {
        let (path, txn) = update(&format!("after-{attempt}"), "GHOST3", stream_id + 1, stream_id);
        let (status, body) = signed_request(&b, &a, reqwest::Method::PUT, &path, Some(&txn)).await?;
        ensure!(status == 200, "transaction: {status} {body}");
        let ids = devices_of_bob().await?;
        if ids == expected {
            break;
        }
        ensure!(Instant::now() < deadline, "the resynced list does not follow B: {ids:?}\nA's log:\n{}", a.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// The same with a real Synapse as the other server: Sam on Synapse queries and claims Alice's
/// keys, sees her second device arrive; Alice queries Sam's keys; to-device messages cross both
/// ways.
#[tokio::test]
async fn e2ee_with_synapse() -> Result<()> {
    let myelin = TestServer::start_federating().await?;
    let synapse = SynapsePeer::start().await?;
    let logs = || format!("Myelin's log:\n{}\nSynapse's log:\n{}", myelin.log(), synapse.log());
    let alice = myelin.register("alice").await?;
    let sam = synapse.register("sam").await?;
    upload(&DeviceKeys::new(&alice.device_id)?, &alice, 2).await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    let (status, body) = sam
        .post(&format!("/_matrix/client/v3/join/{}?server_name={}", enc(&room), enc(myelin.server_name())), &json!({}))
        .await?;
    ensure!(status == 200, "Synapse user joining: {status} {body}\n{}", logs());
    upload(&DeviceKeys::new(&sam.device_id)?, &sam, 1).await?;

    let answer = eventually(
        "Sam sees Alice's device keys",
        async || query(&sam, &alice.user_id).await,
        |q| q["device_keys"][&alice.user_id][&alice.device_id]["keys"].is_object(),
    )
    .await
    .with_context(logs)?;
    assert_eq!(answer["failures"], json!({}), "{answer}");
    let claim = json!({ "one_time_keys": { &alice.user_id: { &alice.device_id: "signed_curve25519" } } });
    let (status, body) = sam.post("/_matrix/client/v3/keys/claim", &claim).await?;
    ensure!(status == 200, "claim: {status} {body}");
    let keys = body["one_time_keys"][&alice.user_id][&alice.device_id].as_object().context("claimed")?;
    assert!(keys.contains_key("signed_curve25519:AAAA0"), "{body}\n{}", logs());

    eventually(
        "Alice sees Sam's device keys",
        async || query(&alice, &sam.user_id).await,
        |q| q["device_keys"][&sam.user_id][&sam.device_id]["keys"].is_object(),
    )
    .await
    .with_context(logs)?;

    // Alice's second device reaches Synapse (as an update or through a resync).
    let alice2 = myelin.login("alice").await?;
    upload(&DeviceKeys::new(&alice2.device_id)?, &alice2, 1).await?;
    eventually(
        "Sam sees Alice's second device",
        async || query(&sam, &alice.user_id).await,
        |q| q["device_keys"][&alice.user_id][&alice2.device_id]["keys"].is_object(),
    )
    .await
    .with_context(logs)?;

    // A to-device message from Synapse arrives on Alice's device.
    let since = next_batch(&alice.sync(None, 0, None).await?)?;
    let message = json!({ "messages": { &alice.user_id: { &alice.device_id: { "secret": "from synapse" } } } });
    let (status, body) = sam.put("/_matrix/client/v3/sendToDevice/m.test.secret/t1", &message).await?;
    ensure!(status == 200, "sendToDevice: {status} {body}");
    sync_until(&alice, &since, "Sam's to-device message", |s| {
        to_device_events(s)
            .iter()
            .any(|e| e["content"]["secret"] == "from synapse" && e["sender"] == sam.user_id.as_str())
    })
    .await
    .with_context(logs)?;

    // And one from Myelin arrives on Sam's device.
    let since = next_batch(&sam.sync(None, 0, None).await?)?;
    let message = json!({ "messages": { &sam.user_id: { "*": { "secret": "from myelin" } } } });
    let (status, body) = alice.put("/_matrix/client/v3/sendToDevice/m.test.secret/t1", &message).await?;
    ensure!(status == 200, "sendToDevice: {status} {body}");
    sync_until(&sam, &since, "Alice's to-device message", |s| {
        to_device_events(s)
            .iter()
            .any(|e| e["content"]["secret"] == "from myelin" && e["sender"] == alice.user_id.as_str())
    })
    .await
    .with_context(logs)?;
    Ok(())
}
