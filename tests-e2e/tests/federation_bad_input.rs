//! What a misbehaving or malicious server sends, and what the receiving server makes of it. The
//! test speaks for server B with B's own signing key (A fetches B's keys over federation, as for
//! any request) and sends A transactions with PDUs that are good, tampered with, wrongly signed,
//! unauthorised or malformed; then oversized, non-JSON and replayed requests. Each bad PDU is
//! refused alone (the others of its transaction are accepted); nothing refused reaches a user.

use anyhow::{Context, Result, ensure};
use myelin_e2e::{TestServer, bodies, federation::FederationIdentity, room_path};
use ruma::{RoomVersionId, signatures::Ed25519KeyPair};
use serde_json::{Value, json};

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[tokio::test]
async fn bad_pdus_are_refused_one_by_one_and_bad_requests_cleanly() -> Result<()> {
    let a = TestServer::start_federating().await?;
    let b = TestServer::start_federating().await?;
    let alice = a.register("alice").await?;
    let bob = b.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat", "room_version": "11" })).await?;
    let path =
        format!("/_matrix/client/v3/join/{}?server_name={}", myelin_e2e::enc(&room), myelin_e2e::enc(a.server_name()));
    let (status, body) = bob.post(&path, &json!({})).await?;
    ensure!(status == 200, "join: {status} {body}");
    let bob_id = b.user_id("bob");

    // What a PDU from B needs: the room's auth events for Bob, and the newest event as prev.
    let (_, state) = alice.get(&room_path(&room, "state")).await?;
    let state_id = |kind: &str, key: &str| -> Result<String> {
        state
            .as_array()
            .context("state")?
            .iter()
            .find(|e| e["type"] == kind && e["state_key"] == key)
            .and_then(|e| e["event_id"].as_str().map(str::to_owned))
            .with_context(|| format!("{kind} {key} in {state}"))
    };
    let auth_events =
        vec![state_id("m.room.create", "")?, state_id("m.room.power_levels", "")?, state_id("m.room.member", &bob_id)?];
    let (_, page) = alice.get(&format!("{}?dir=b&limit=1", room_path(&room, "messages"))).await?;
    let newest = page["chunk"][0]["event_id"].as_str().context("newest event")?.to_owned();
    let message = |sender: &str, body: &str| {
        json!({
            "room_id": room, "sender": sender, "type": "m.room.message",
            "content": { "msgtype": "m.text", "body": body },
            "origin_server_ts": now_ms(), "depth": 1000,
            "prev_events": [newest], "auth_events": auth_events,
        })
    };
    let me = FederationIdentity::of(&b)?;
    let v11 = RoomVersionId::V11;
    let (good_id, good) = me.sign_pdu(&message(&bob_id, "legit"), &v11)?;
    // The content changed after signing: the hash fails, the signature (over the redacted
    // event) holds: the event is kept redacted.
    let (tampered_id, mut tampered) = me.sign_pdu(&message(&bob_id, "original"), &v11)?;
    tampered["content"]["body"] = "altered".into();
    // Signed with a key that is not B's, under B's key id.
    let impostor =
        FederationIdentity::with_key(&b, Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), me.key_version())?)?;
    let (forged_id, forged) = impostor.sign_pdu(&message(&bob_id, "forged"), &v11)?;
    // A user of B who is not in the room.
    let (intruder_id, intruder) = me.sign_pdu(&message(&b.user_id("mallory"), "intruder"), &v11)?;
    // No type: malformed, dropped without an answer.
    let mut malformed = message(&bob_id, "malformed");
    malformed.as_object_mut().context("object")?.remove("type");
    let txn = json!({
        "origin": b.server_name(), "origin_server_ts": now_ms(),
        "pdus": [good, tampered, forged, intruder, malformed], "edus": [],
    });
    let (status, answer) = me.request(&a, "PUT", "/_matrix/federation/v1/send/bad-1", Some(&txn)).await?;
    ensure!(status == 200, "a transaction with bad PDUs is still a 200: {status} {answer}");
    let results = &answer["pdus"];
    ensure!(results[&good_id] == json!({}), "the good PDU is accepted: {answer}");
    ensure!(results[&tampered_id] == json!({}), "the tampered PDU is kept redacted: {answer}");
    ensure!(results[&forged_id]["error"].is_string(), "the forged PDU is refused: {answer}");
    ensure!(results[&intruder_id]["error"].is_string(), "the intruder's PDU is refused: {answer}");
    ensure!(results.as_object().map(|r| r.len()) == Some(4), "the malformed PDU has no entry: {answer}");

    // What Alice sees: the good message, the tampered one without its body, nothing else.
    let seen = bodies(&alice.all_messages(&room, 50).await?);
    ensure!(seen.contains(&"legit".to_owned()), "{seen:?}");
    for hidden in ["original", "altered", "forged", "intruder", "malformed"] {
        ensure!(!seen.contains(&hidden.to_owned()), "{hidden} must not be seen: {seen:?}");
    }
    let (status, event) = alice.get(&room_path(&room, &format!("event/{tampered_id}"))).await?;
    ensure!(status == 200 && event["content"] == json!({}), "the tampered event is redacted: {status} {event}");
    let (status, _) = alice.get(&room_path(&room, &format!("event/{forged_id}"))).await?;
    ensure!(status == 404, "the forged event is not stored: {status}");

    // The same transaction again: the same answer, nothing twice.
    let (status, again) = me.request(&a, "PUT", "/_matrix/federation/v1/send/bad-1", Some(&txn)).await?;
    ensure!(status == 200 && again == answer, "a replayed transaction gets its first answer: {again}");
    let legit = bodies(&alice.all_messages(&room, 50).await?).iter().filter(|b| *b == "legit").count();
    ensure!(legit == 1, "the replay added nothing");

    // Too many PDUs, not JSON, too large, a body that is not an object.
    let many: Vec<Value> = (0..51).map(|i| message(&bob_id, &format!("m{i}"))).collect();
    let txn = json!({ "origin": b.server_name(), "origin_server_ts": now_ms(), "pdus": many, "edus": [] });
    let (status, err) = me.request(&a, "PUT", "/_matrix/federation/v1/send/bad-2", Some(&txn)).await?;
    ensure!(status == 400 && err["errcode"] == "M_BAD_JSON", "51 PDUs: {status} {err}");
    let (status, err) = me.request(&a, "PUT", "/_matrix/federation/v1/send/bad-3", Some(&json!([1, 2]))).await?;
    ensure!(status == 400 && err["errcode"] == "M_BAD_JSON", "an array: {status} {err}");
    let url = format!("{}/_matrix/federation/v1/send/bad-4", a.federation_url().context("federates")?);
    let client = myelin_e2e::federation::https()?;
    let response = client.put(&url).header("Authorization", "X-Matrix origin=\"x\"").body("not json").send().await?;
    let status = response.status().as_u16();
    let err: Value = response.json().await.unwrap_or(Value::Null);
    ensure!(status == 400 && err["errcode"] == "M_NOT_JSON", "not JSON: {status} {err}");
    let huge = vec![b' '; 9 << 20];
    let response = client.put(&url).body(huge).send().await?;
    let status = response.status().as_u16();
    ensure!(status == 413, "a body over the limit: {status}");
    Ok(())
}
