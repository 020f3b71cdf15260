//! End-to-end encryption key infrastructure over raw HTTP, with real ed25519 signatures: claim
//! races and order, idempotent and conflicting uploads, fallback keys, fresh counts on long-poll,
//! 250 to-device messages, device-list changes (leave, rejoin, deletion, id reuse,
//! `/keys/changes`), cross-signing with and without user-interactive auth, and bad input.

use std::collections::HashSet;

use anyhow::{Context, Result, ensure};
use myelin_e2e::{
    Client, TestServer,
    device_keys::{DeviceKeys, cross_signing_pair, key_pair, signed},
    errcode, next_batch,
};
use serde_json::{Value, json};

async fn upload(client: &Client, body: Value) -> Result<(u16, Value)> {
    client.post("/_matrix/client/v3/keys/upload", &body).await
}

/// Registers a user and uploads its device keys; returns the client and its keys.
async fn device(server: &TestServer, name: &str) -> Result<(Client, DeviceKeys)> {
    let client = server.register(name).await?;
    let keys = DeviceKeys::new(&client.device_id)?;
    let (status, body) = upload(&client, json!({ "device_keys": keys.device_keys(&client)? })).await?;
    ensure!(status == 200, "device keys upload: {status} {body}");
    Ok((client, keys))
}

async fn upload_otks(client: &Client, keys: &DeviceKeys, ids: &[&str]) -> Result<Value> {
    let mut map = serde_json::Map::new();
    for id in ids {
        let (key_id, key) = keys.otk(client, id, false)?;
        map.insert(key_id, key);
    }
    let (status, body) = upload(client, json!({ "one_time_keys": map })).await?;
    ensure!(status == 200, "otk upload: {status} {body}");
    Ok(body)
}

async fn claim_one(claimer: &Client, owner: &Client) -> Result<Option<String>> {
    let body = json!({ "one_time_keys": { owner.user_id.clone(): { owner.device_id.clone(): "signed_curve25519" } } });
    let (status, resp) = claimer.post("/_matrix/client/v3/keys/claim", &body).await?;
    ensure!(status == 200, "claim: {status} {resp}");
    Ok(resp["one_time_keys"][&owner.user_id][&owner.device_id].as_object().and_then(|m| m.keys().next().cloned()))
}

async fn counts(client: &Client) -> Result<Value> {
    let sync = client.sync(None, 0, Some(&json!({ "room": { "rooms": [] } }))).await?;
    Ok(sync["device_one_time_keys_count"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_time_keys_are_claimed_once_in_upload_order_then_the_fallback() -> Result<()> {
    let server = TestServer::start().await?;
    let (alice, keys) = device(&server, "alice").await?;
    let bob = server.register("bob").await?;
    // Two uploads: the first one's keys go out first, whatever their names.
    upload_otks(&alice, &keys, &["z1", "z2", "z3", "z4", "z5"]).await?;
    upload_otks(&alice, &keys, &["a1", "a2", "a3", "a4", "a5"]).await?;
    let (fb_id, fb) = keys.otk(&alice, "fb", true)?;
    let (status, body) = upload(&alice, json!({ "fallback_keys": { fb_id.clone(): fb } })).await?;
    ensure!(status == 200 && body["one_time_key_counts"]["signed_curve25519"] == 10, "{status} {body}");
    let sync = alice.sync(None, 0, None).await?;
    ensure!(sync["device_unused_fallback_key_types"] == json!(["signed_curve25519"]), "unused fallback: {sync}");

    // The first claim takes the oldest key. A user of another server in the same claim gets that
    // server's entry in `failures` (no federation here) and does not spoil the local answer.
    let body = json!({ "one_time_keys": {
        alice.user_id.clone(): { alice.device_id.clone(): "signed_curve25519" },
        "@carol:remote.invalid": { "PHONE": "signed_curve25519" },
    } });
    let (status, resp) = bob.post("/_matrix/client/v3/keys/claim", &body).await?;
    ensure!(status == 200 && resp["failures"]["remote.invalid"]["errcode"] == "M_UNKNOWN", "{status} {resp}");
    let first = resp["one_time_keys"][&alice.user_id][&alice.device_id].as_object().context("alice's key")?;
    ensure!(first.contains_key("signed_curve25519:z1"), "oldest key first: {resp}");
    let query = json!({ "device_keys": { alice.user_id.clone(): [], "@carol:remote.invalid": [] } });
    let (status, resp) = bob.post("/_matrix/client/v3/keys/query", &query).await?;
    ensure!(
        status == 200
            && resp["failures"]["remote.invalid"]["errcode"] == "M_UNKNOWN"
            && resp["device_keys"][&alice.user_id][&alice.device_id].is_object(),
        "{status} {resp}"
    );
    // 18 concurrent claims for the 9 left: 9 distinct keys, the other 9 get the fallback key.
    let mut tasks = Vec::new();
    for _ in 0..18 {
        let (bob, alice) = (bob.clone(), alice.clone());
        tasks.push(tokio::spawn(async move { claim_one(&bob, &alice).await }));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await??.context("every claim gets a key")?);
    }
    let otks: HashSet<&String> = got.iter().filter(|k| **k != fb_id).collect();
    ensure!(otks.len() == 9, "9 distinct one-time keys handed out, got {got:?}");
    ensure!(got.iter().filter(|k| **k == fb_id).count() == 9, "the rest got the fallback key: {got:?}");
    ensure!(counts(&alice).await?["signed_curve25519"] == 0, "no one-time key left");
    let sync = alice.sync(None, 0, None).await?;
    ensure!(sync["device_unused_fallback_key_types"] == json!([]), "the fallback key is used: {sync}");

    // Re-uploading the same fallback key keeps it used; a new one is unused.
    let (status, _) =
        upload(&alice, json!({ "fallback_keys": { fb_id.clone(): keys.otk(&alice, "fb", true)?.1 } })).await?;
    ensure!(status == 200);
    ensure!(alice.sync(None, 0, None).await?["device_unused_fallback_key_types"] == json!([]), "still used");
    let (fb2_id, fb2) = keys.otk(&alice, "fb2", true)?;
    ensure!(upload(&alice, json!({ "fallback_keys": { fb2_id: fb2 } })).await?.0 == 200);
    ensure!(alice.sync(None, 0, None).await?["device_unused_fallback_key_types"] == json!(["signed_curve25519"]));

    // A claimed key uploaded again is never handed out again.
    upload_otks(&alice, &keys, &["z1"]).await?;
    ensure!(counts(&alice).await?["signed_curve25519"] == 0, "a claimed key id is not stored again");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploads_are_idempotent_and_conflicts_store_nothing() -> Result<()> {
    let server = TestServer::start().await?;
    let (alice, keys) = device(&server, "alice").await?;
    upload_otks(&alice, &keys, &["k1", "k2"]).await?;
    // The same upload twice, and concurrently: no doubled counts.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let alice = alice.clone();
        let body = {
            let mut map = serde_json::Map::new();
            for id in ["k1", "k2", "k3"] {
                let (key_id, key) = keys.otk(&alice, id, false)?;
                map.insert(key_id, key);
            }
            json!({ "one_time_keys": map })
        };
        tasks.push(tokio::spawn(async move { upload(&alice, body).await }));
    }
    for t in tasks {
        let (status, body) = t.await??;
        ensure!(status == 200, "identical re-upload: {status} {body}");
    }
    ensure!(counts(&alice).await?["signed_curve25519"] == 3, "3 keys, not more");
    // Same id, different key: refused, and the other keys of that upload are not stored either.
    let (other_pair, _) = key_pair(&alice.device_id)?;
    let clash = signed(&alice.user_id, &other_pair, json!({ "key": "something-else" }))?;
    let (k4_id, k4) = keys.otk(&alice, "k4", false)?;
    let (status, body) =
        upload(&alice, json!({ "one_time_keys": { "signed_curve25519:k1": clash, k4_id: k4 } })).await?;
    ensure!(status == 400, "a different key under an existing id: {status} {body}");
    ensure!(counts(&alice).await?["signed_curve25519"] == 3, "nothing of the refused upload was stored");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_keys_are_refused_and_nothing_is_stored() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let keys = DeviceKeys::new(&alice.device_id)?;
    let good = keys.device_keys(&alice)?;

    let mut unsigned = good.clone();
    unsigned.as_object_mut().context("object")?.remove("signatures");
    let mut forged = good.clone();
    forged["keys"][format!("curve25519:{}", alice.device_id)] = json!("c3dhcHBlZGtleXN3YXBwZWRrZXlzc3dhcHBlZGtleQ");
    let mut foreign = good.clone();
    foreign["user_id"] = json!(bob.user_id);
    let too_many: serde_json::Map<String, Value> =
        (0..1001).map(|i| (format!("curve25519:k{i}"), json!("a2V5"))).collect();
    let cases = [
        (json!({ "device_keys": unsigned }), 400, "M_INVALID_SIGNATURE"),
        (json!({ "device_keys": forged }), 400, "M_INVALID_SIGNATURE"),
        (json!({ "device_keys": foreign }), 400, "M_INVALID_PARAM"),
        (json!({ "device_keys": null }), 400, "M_BAD_JSON"),
        (json!({ "device_keys": good.clone(), "one_time_keys": { "nocolon": "a2V5" } }), 400, "M_INVALID_PARAM"),
        (json!({ "device_keys": good.clone(), "one_time_keys": { ":x": "a2V5" } }), 400, "M_INVALID_PARAM"),
        (json!({ "device_keys": good.clone(), "one_time_keys": { "curve25519:x": 5 } }), 400, "M_BAD_JSON"),
        (
            json!({ "device_keys": good.clone(), "one_time_keys": { "signed_curve25519:x": { "key": "k" } } }),
            400,
            "M_BAD_JSON",
        ),
        (json!({ "device_keys": good.clone(), "one_time_keys": too_many }), 413, "M_TOO_LARGE"),
    ];
    for (body, status, code) in cases {
        let (got, resp) = upload(&alice, body.clone()).await?;
        ensure!(got == status && errcode(&resp) == code, "expected {status} {code} for {body:.200}, got {got} {resp}");
    }
    // A one-time key signed by someone else's key.
    let (other, _) = key_pair(&alice.device_id)?;
    let bad_otk = signed(&alice.user_id, &other, json!({ "key": "k" }))?;
    let (got, resp) =
        upload(&alice, json!({ "device_keys": good, "one_time_keys": { "signed_curve25519:x": bad_otk } })).await?;
    ensure!(got == 400 && errcode(&resp) == "M_INVALID_SIGNATURE", "{got} {resp}");

    // None of it was stored.
    let (status, resp) =
        bob.post("/_matrix/client/v3/keys/query", &json!({ "device_keys": { alice.user_id.clone(): [] } })).await?;
    ensure!(status == 200 && resp["device_keys"][&alice.user_id] == json!({}), "no keys stored: {resp}");
    ensure!(counts(&alice).await?["signed_curve25519"] == 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claim_wakes_the_owners_long_poll_with_the_new_count() -> Result<()> {
    let server = TestServer::start().await?;
    let (alice, keys) = device(&server, "alice").await?;
    let bob = server.register("bob").await?;
    upload_otks(&alice, &keys, &["k1", "k2"]).await?;
    let since = next_batch(&alice.sync(None, 0, None).await?)?;
    let poll = {
        let alice = alice.clone();
        tokio::spawn(async move { alice.sync(Some(&since), 20_000, None).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    claim_one(&bob, &alice).await?;
    let sync = poll.await??;
    ensure!(started.elapsed().as_secs() < 5, "the long-poll returned only at its timeout");
    ensure!(sync["device_one_time_keys_count"]["signed_curve25519"] == 1, "fresh count: {sync}");
    // The next long-poll compares with the count that answer gave: nothing moved, so it waits.
    let started = std::time::Instant::now();
    let quiet = alice.sync(Some(&next_batch(&sync)?), 1_500, None).await?;
    ensure!(started.elapsed().as_millis() >= 1_400, "returned at once: {quiet}");
    ensure!(quiet["device_one_time_keys_count"]["signed_curve25519"] == 1, "{quiet}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn to_device_messages_arrive_in_order_at_most_100_at_a_time_and_survive_replays() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let first = next_batch(&alice.sync(None, 0, None).await?)?;
    // 250 messages, one request each; one request is retried with its transaction id.
    for batch in 0..5 {
        let content: Vec<Value> = (0..50).map(|i| json!({ "n": batch * 50 + i })).collect();
        for (i, c) in content.into_iter().enumerate() {
            let path = format!("/_matrix/client/v3/sendToDevice/m.test/b{batch}m{i}");
            let body = json!({ "messages": { alice.user_id.clone(): { alice.device_id.clone(): c } } });
            let (status, resp) = bob.put(&path, &body).await?;
            ensure!(status == 200, "{status} {resp}");
            if batch == 2 && i == 7 {
                ensure!(bob.put(&path, &body).await?.0 == 200, "a retried transaction is accepted");
            }
        }
    }
    // Read them: batches of at most 100, in order; replaying a token returns the same batch.
    let mut since = first;
    let mut received = Vec::new();
    let mut replayed = false;
    for _ in 0..10 {
        let sync = alice.sync(Some(&since), 0, None).await?;
        let events = sync["to_device"]["events"].as_array().cloned().unwrap_or_default();
        ensure!(events.len() <= 100, "{} to-device messages in one response", events.len());
        if events.is_empty() {
            break;
        }
        if !replayed && received.len() == 100 {
            // The client crashed before processing this response: the same token again.
            let again = alice.sync(Some(&since), 0, None).await?;
            ensure!(again["to_device"]["events"] == json!(events), "a replayed token gets the same messages");
            replayed = true;
        }
        for e in &events {
            ensure!(e["sender"] == json!(bob.user_id) && e["type"] == "m.test", "{e}");
            received.push(e["content"]["n"].as_u64().context("n")?);
        }
        since = next_batch(&sync)?;
    }
    ensure!(replayed, "the replay step ran");
    ensure!(received == (0..250).collect::<Vec<u64>>(), "250 messages once each in order, got {} ", received.len());
    Ok(())
}

/// `changed` and `left` of an incremental sync.
async fn device_lists(client: &Client, since: &str) -> Result<(Vec<String>, Vec<String>, String)> {
    let sync = client.sync(Some(since), 0, None).await?;
    let list = |k: &str| -> Vec<String> {
        sync["device_lists"][k]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    Ok((list("changed"), list("left"), next_batch(&sync)?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn device_lists_follow_room_sharing_deletion_and_reuse() -> Result<()> {
    let server = TestServer::start().await?;
    let (alice, _) = device(&server, "alice").await?;
    let (bob, _) = device(&server, "bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    let since = next_batch(&alice.sync(None, 0, None).await?)?;
    ensure!(bob.join(&room).await?.0 == 200);
    let (changed, _, since) = device_lists(&alice, &since).await?;
    ensure!(changed.contains(&bob.user_id), "bob starts sharing a room: changed {changed:?}");

    // Bob adds a device: alice hears; offline catch-up through /keys/changes says the same.
    let bob_phone = server.login("bob").await?;
    let phone_keys = DeviceKeys::new(&bob_phone.device_id)?;
    ensure!(upload(&bob_phone, json!({ "device_keys": phone_keys.device_keys(&bob_phone)? })).await?.0 == 200);
    let (status, changes) = alice
        .get(&format!(
            "/_matrix/client/v3/keys/changes?from={since}&to={}",
            next_batch(&alice.sync(None, 0, None).await?)?
        ))
        .await?;
    ensure!(status == 200 && changes["changed"] == json!([bob.user_id]), "/keys/changes: {status} {changes}");
    let (changed, _, since) = device_lists(&alice, &since).await?;
    ensure!(changed.contains(&bob.user_id), "bob's new device: changed {changed:?}");

    // Bob deletes the phone: keys gone, alice told; the id reused later starts clean.
    let (status, _) = bob.post(
        "/_matrix/client/v3/delete_devices",
        &json!({ "devices": [bob_phone.device_id], "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "bob" }, "password": "bob-password" } }),
    ).await?;
    ensure!(status == 200, "delete_devices: {status}");
    let (changed, _, since) = device_lists(&alice, &since).await?;
    ensure!(changed.contains(&bob.user_id), "deletion announced: {changed:?}");
    let (_, query) =
        alice.post("/_matrix/client/v3/keys/query", &json!({ "device_keys": { bob.user_id.clone(): [] } })).await?;
    ensure!(
        query["device_keys"][&bob.user_id].get(&bob_phone.device_id).is_none(),
        "deleted device's keys are gone: {query}"
    );
    let (status, relogin) = server
        .anonymous()
        .post("/_matrix/client/v3/login", &json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "bob" }, "password": "bob-password", "device_id": bob_phone.device_id }))
        .await?;
    ensure!(status == 200, "login with the old device id: {relogin}");
    let reused = server.anonymous().with_session(&relogin);
    let fresh = reused.sync(None, 0, None).await?;
    ensure!(
        fresh["to_device"]["events"] == json!([]) && fresh["device_one_time_keys_count"]["signed_curve25519"] == 0,
        "reused id starts clean: {fresh}"
    );

    // Bob leaves: alice no longer shares a room with him.
    ensure!(bob.post(&myelin_e2e::room_path(&room, "leave"), &json!({})).await?.0 == 200);
    let (_, left, since) = device_lists(&alice, &since).await?;
    ensure!(left.contains(&bob.user_id), "bob left the only shared room: left {left:?}");
    ensure!(bob.join(&room).await?.0 == 200);
    let (changed, left, _) = device_lists(&alice, &since).await?;
    ensure!(
        changed.contains(&bob.user_id) && !left.contains(&bob.user_id),
        "rejoin: changed {changed:?} left {left:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cross_signing_needs_auth_only_to_replace_keys() -> Result<()> {
    let server = TestServer::start().await?;
    let (alice, device_keys) = device(&server, "alice").await?;
    let uid = alice.user_id.clone();
    let (m_pair, m_pub) = cross_signing_pair()?;
    let (s_pair, s_pub) = cross_signing_pair()?;
    let master_key = json!({ "user_id": uid, "usage": ["master"], "keys": { format!("ed25519:{m_pub}"): m_pub } });
    let self_signing = signed(
        &uid,
        &m_pair,
        json!({ "user_id": uid, "usage": ["self_signing"], "keys": { format!("ed25519:{s_pub}"): s_pub } }),
    )?;
    let body = json!({ "master_key": master_key, "self_signing_key": self_signing });

    // The first upload needs no auth; an exact re-upload neither.
    let (status, resp) = alice.post("/_matrix/client/v3/keys/device_signing/upload", &body).await?;
    ensure!(status == 200, "first cross-signing upload: {status} {resp}");
    let (status, resp) = alice.post("/_matrix/client/v3/keys/device_signing/upload", &body).await?;
    ensure!(status == 200, "exact re-upload: {status} {resp}");
    // New keys need the password.
    let (_, m2_pub) = cross_signing_pair()?;
    let replaced = json!({ "master_key": { "user_id": uid, "usage": ["master"], "keys": { format!("ed25519:{m2_pub}"): m2_pub } } });
    let (status, resp) = alice.post("/_matrix/client/v3/keys/device_signing/upload", &replaced).await?;
    ensure!(status == 401 && resp["flows"].is_array(), "replacing keys needs auth: {status} {resp}");

    // The self-signing key signs the device; a garbage signature is a per-key failure.
    let device_obj = device_keys.device_keys(&alice)?;
    let mut signed_device = signed(&uid, &s_pair, device_obj.clone())?;
    let (status, resp) = alice
        .post(
            "/_matrix/client/v3/keys/signatures/upload",
            &json!({ uid.clone(): { alice.device_id.clone(): signed_device.clone() } }),
        )
        .await?;
    ensure!(status == 200 && resp["failures"] == json!({}), "valid signature: {status} {resp}");
    signed_device["signatures"][&uid][format!("ed25519:{s_pub}")] = json!("AAAA");
    let (status, resp) = alice
        .post(
            "/_matrix/client/v3/keys/signatures/upload",
            &json!({ uid.clone(): { alice.device_id.clone(): signed_device } }),
        )
        .await?;
    ensure!(status == 200 && errcode(&resp["failures"][&uid][&alice.device_id]) == "M_INVALID_SIGNATURE", "{resp}");

    let (_, query) =
        alice.post("/_matrix/client/v3/keys/query", &json!({ "device_keys": { uid.clone(): [] } })).await?;
    ensure!(
        query["master_keys"][&uid]["keys"][format!("ed25519:{m_pub}")] == json!(m_pub),
        "master key served: {query}"
    );
    let sigs = &query["device_keys"][&uid][&alice.device_id]["signatures"][&uid];
    ensure!(sigs.get(format!("ed25519:{s_pub}")).is_some(), "the device carries the self-signing signature: {sigs}");
    Ok(())
}

fn backup_key(index: u64, forwarded: u64, verified: bool, tag: &str) -> Value {
    json!({
        "first_message_index": index,
        "forwarded_count": forwarded,
        "is_verified": verified,
        "session_data": { "ciphertext": tag, "ephemeral": "e", "mac": "m" },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_backup_versions_etags_counts_and_replacement_order() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let (status, body) = alice.get("/_matrix/client/v3/room_keys/version").await?;
    ensure!(status == 404 && errcode(&body) == "M_NOT_FOUND", "no backup yet: {status} {body}");
    let create = json!({ "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": { "public_key": "abc" } });
    let (status, v1) = alice.post("/_matrix/client/v3/room_keys/version", &create).await?;
    ensure!(status == 200 && v1["version"] == "1", "{status} {v1}");

    let session = "/_matrix/client/v3/room_keys/keys/!r:localhost/s1?version=1";
    let (status, first) = alice.put(session, &backup_key(5, 1, false, "a")).await?;
    ensure!(status == 200 && first["count"] == 1, "{status} {first}");
    // A worse copy (higher index) changes nothing, etag included.
    let (_, same) = alice.put(session, &backup_key(9, 0, false, "worse")).await?;
    ensure!(same["etag"] == first["etag"] && same["count"] == 1, "a worse key is ignored: {same}");
    // Lower index wins; then a verified copy wins even with a higher index.
    let (_, better) = alice.put(session, &backup_key(2, 3, false, "lower-index")).await?;
    ensure!(better["etag"] != first["etag"], "a better key changes the etag");
    let (_, verified) = alice.put(session, &backup_key(7, 0, true, "verified")).await?;
    ensure!(verified["etag"] != better["etag"]);
    let (_, unverified) = alice.put(session, &backup_key(0, 0, false, "unverified-but-earlier")).await?;
    ensure!(unverified["etag"] == verified["etag"], "an unverified key never replaces a verified one");
    // Equal index: fewer forwards wins.
    let (_, fewer) = alice.put(session, &backup_key(7, 0, true, "same")).await?;
    ensure!(fewer["etag"] == verified["etag"], "identical ranking keeps the stored key");
    let (status, got) = alice.get(session).await?;
    ensure!(status == 200 && got["session_data"]["ciphertext"] == "verified", "{status} {got}");

    // Bulk upload and counts.
    let bulk = json!({ "rooms": { "!r:localhost": { "sessions": { "s2": backup_key(0, 0, false, "b"), "s3": backup_key(0, 0, false, "c") } } } });
    let (status, all) = alice.put("/_matrix/client/v3/room_keys/keys?version=1", &bulk).await?;
    ensure!(status == 200 && all["count"] == 3, "{status} {all}");
    let (_, v) = alice.get("/_matrix/client/v3/room_keys/version").await?;
    ensure!(v["count"] == 3 && v["etag"] == all["etag"] && v["version"] == "1", "version info: {v}");

    // A new version: the old one no longer takes writes; reads of it still work.
    let (_, v2) = alice.post("/_matrix/client/v3/room_keys/version", &create).await?;
    ensure!(v2["version"] == "2");
    let (status, wrong) = alice.put(session, &backup_key(0, 0, true, "x")).await?;
    ensure!(
        status == 403 && errcode(&wrong) == "M_WRONG_ROOM_KEYS_VERSION" && wrong["current_version"] == "2",
        "writing an old version: {status} {wrong}"
    );
    let (status, old) = alice.get("/_matrix/client/v3/room_keys/keys?version=1").await?;
    ensure!(status == 200 && old["rooms"]["!r:localhost"]["sessions"].as_object().map(|s| s.len()) == Some(3), "{old}");

    // Only auth_data may change; deleting twice is fine; a deleted version is gone.
    let (status, _) =
        alice.put("/_matrix/client/v3/room_keys/version/2", &json!({ "algorithm": "other", "auth_data": {} })).await?;
    ensure!(status == 400, "changing the algorithm is refused");
    let (status, _) = alice
        .put(
            "/_matrix/client/v3/room_keys/version/2",
            &json!({ "algorithm": create["algorithm"], "auth_data": { "public_key": "new" } }),
        )
        .await?;
    ensure!(status == 200);
    ensure!(alice.delete("/_matrix/client/v3/room_keys/version/2", &json!({})).await?.0 == 200);
    ensure!(alice.delete("/_matrix/client/v3/room_keys/version/2", &json!({})).await?.0 == 200, "second delete");
    ensure!(alice.get("/_matrix/client/v3/room_keys/version/2").await?.0 == 404);
    let (_, current) = alice.get("/_matrix/client/v3/room_keys/version").await?;
    ensure!(current["version"] == "1", "version 1 is current again: {current}");
    let (_, v3) = alice.post("/_matrix/client/v3/room_keys/version", &create).await?;
    ensure!(v3["version"] == "3", "numbers are never reused: {v3}");
    // Another user sees none of it.
    let bob = server.register("bob").await?;
    ensure!(bob.get("/_matrix/client/v3/room_keys/version").await?.0 == 404);
    Ok(())
}

const MSC3814: &str = "/_matrix/client/unstable/org.matrix.msc3814.v1";

/// A dehydrated device `id` of `owner`: signed device keys (marked dehydrated) and one OTK.
fn dehydrated_body(owner: &Client, id: &str, data: &str) -> Result<Value> {
    let (pair, public) = key_pair(id)?;
    let keys = signed(
        &owner.user_id,
        &pair,
        json!({
            "user_id": owner.user_id, "device_id": id, "dehydrated": true,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
            "keys": { format!("curve25519:{id}"): "Y3VydmU", format!("ed25519:{id}"): public },
        }),
    )?;
    let otk = signed(&owner.user_id, &pair, json!({ "key": "b3Rr" }))?;
    Ok(json!({
        "device_id": id,
        "device_data": { "algorithm": "org.matrix.msc3814.v1.olm", "account": data },
        "initial_device_display_name": "Dehydrated device",
        "device_keys": keys,
        "one_time_keys": { "signed_curve25519:AAAA": otk },
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dehydrated_device_collects_keys_until_rehydrated() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let (status, _) = alice.get(&format!("{MSC3814}/dehydrated_device")).await?;
    ensure!(status == 404, "no dehydrated device yet");
    // The id of one of her ordinary devices is not free.
    let taken = dehydrated_body(&alice, &alice.device_id, "v0")?;
    let (status, body) = alice.put(&format!("{MSC3814}/dehydrated_device"), &taken).await?;
    ensure!(
        status == 400
            && body["errcode"] == "M_INVALID_PARAM"
            && body["error"].as_str().is_some_and(|e| e.contains("in use")),
        "a device id in use: {status} {body}"
    );
    let (status, put) =
        alice.put(&format!("{MSC3814}/dehydrated_device"), &dehydrated_body(&alice, "DEHYD1", "v1")?).await?;
    ensure!(status == 200 && put["device_id"] == "DEHYD1", "{status} {put}");
    let (_, got) = alice.get(&format!("{MSC3814}/dehydrated_device")).await?;
    ensure!(got["device_id"] == "DEHYD1" && got["device_data"]["account"] == "v1", "{got}");
    // Its keys are visible and claimable like any device's.
    let (_, query) =
        bob.post("/_matrix/client/v3/keys/query", &json!({ "device_keys": { alice.user_id.clone(): [] } })).await?;
    ensure!(query["device_keys"][&alice.user_id]["DEHYD1"]["dehydrated"] == true, "{query}");

    // 150 room keys arrive for it while alice is offline (through `*`: it is one of her devices).
    for i in 0..150 {
        let body = json!({ "messages": { alice.user_id.clone(): { "*": { "i": i } } } });
        ensure!(bob.put(&format!("/_matrix/client/v3/sendToDevice/m.room_key/t{i}"), &body).await?.0 == 200);
    }
    // Pages of 100 by GET, the older POST form gives the same, and nothing is consumed.
    let (status, page1) = alice.get(&format!("{MSC3814}/dehydrated_device/DEHYD1/events")).await?;
    ensure!(status == 200 && page1["events"].as_array().map(Vec::len) == Some(100), "{status}");
    let next = page1["next_batch"].as_str().context("more remain")?.to_owned();
    let (_, page1_post) = alice.post(&format!("{MSC3814}/dehydrated_device/DEHYD1/events"), &json!({})).await?;
    ensure!(page1_post["events"] == page1["events"], "POST form, and nothing was deleted");
    let (_, page2) = alice.get(&format!("{MSC3814}/dehydrated_device/DEHYD1/events?next_batch={next}")).await?;
    let page2_events = page2["events"].as_array().context("events")?;
    ensure!(page2_events.len() == 50, "last page: {}", page2_events.len());
    // The last page still carries a token, and following it gives an empty page (the clients'
    // loop ends there; without a token they would start from the beginning again).
    let last = page2["next_batch"].as_str().context("a token on the last page")?;
    let (_, page3) = alice.get(&format!("{MSC3814}/dehydrated_device/DEHYD1/events?next_batch={last}")).await?;
    ensure!(page3["events"].as_array().is_some_and(Vec::is_empty) && page3["next_batch"] == last, "{page3}");
    ensure!(page2_events[49]["content"]["i"] == 149 && page1["events"][0]["content"]["i"] == 0, "in order");
    let (status, _) = alice.get(&format!("{MSC3814}/dehydrated_device/OTHER/events")).await?;
    ensure!(status == 403, "another device id is refused");

    // Logging out everywhere does not touch it; replacing it removes the old one's keys.
    let spare = server.login("alice").await?;
    ensure!(spare.post("/_matrix/client/v3/logout/all", &json!({})).await?.0 == 200);
    let alice = server.login("alice").await?;
    ensure!(alice.get(&format!("{MSC3814}/dehydrated_device")).await?.1["device_id"] == "DEHYD1", "kept");
    ensure!(
        alice.put(&format!("{MSC3814}/dehydrated_device"), &dehydrated_body(&alice, "DEHYD2", "v2")?).await?.0 == 200
    );
    let (_, query) =
        bob.post("/_matrix/client/v3/keys/query", &json!({ "device_keys": { alice.user_id.clone(): [] } })).await?;
    ensure!(
        query["device_keys"][&alice.user_id].get("DEHYD1").is_none()
            && query["device_keys"][&alice.user_id].get("DEHYD2").is_some(),
        "{query}"
    );
    // A badly signed one is refused and the current one stays.
    let mut bad = dehydrated_body(&alice, "DEHYD3", "v3")?;
    bad["device_keys"]["keys"]["curve25519:DEHYD3"] = json!("b3RoZXI");
    let (status, resp) = alice.put(&format!("{MSC3814}/dehydrated_device"), &bad).await?;
    ensure!(status == 400 && errcode(&resp) == "M_INVALID_SIGNATURE", "{status} {resp}");
    ensure!(alice.get(&format!("{MSC3814}/dehydrated_device")).await?.1["device_id"] == "DEHYD2");
    let (status, del) = alice.delete(&format!("{MSC3814}/dehydrated_device"), &json!({})).await?;
    ensure!(status == 200 && del["device_id"] == "DEHYD2");
    ensure!(alice.get(&format!("{MSC3814}/dehydrated_device")).await?.0 == 404);
    Ok(())
}
