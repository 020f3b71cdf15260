//! Rooms: creation presets, membership with power levels, state, redaction, history, directory.

use std::collections::HashSet;

use anyhow::{Context, Result, ensure};
use myelin_e2e::{TestServer, bodies, enc, errcode, room_path};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_private_and_direct_rooms() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let carol = server.register("carol").await?;

    let public = alice
        .create_room(
            json!({ "preset": "public_chat", "room_alias_name": "town", "visibility": "public", "name": "Town" }),
        )
        .await?;
    let (status, body) = bob.join("#town:localhost").await?;
    ensure!(status == 200 && body["room_id"] == public.as_str(), "join by alias: {status} {body}");
    let (status, _) = carol.post(&room_path(&public, "join"), &json!({})).await?;
    ensure!(status == 200, "join by id");
    let (_, dir) = carol.get("/_matrix/client/v3/publicRooms").await?;
    let listed = dir["chunk"].as_array().context("chunk")?.iter().find(|r| r["room_id"] == public.as_str()).cloned();
    let listed = listed.context("public room listed in the directory")?;
    ensure!(
        listed["name"] == "Town" && listed["num_joined_members"] == 3 && listed["canonical_alias"] == "#town:localhost",
        "{listed}"
    );
    let (_, alias) = carol.get("/_matrix/client/v3/directory/room/%23town:localhost").await?;
    ensure!(alias["room_id"] == public.as_str(), "alias lookup: {alias}");

    let private = alice.create_room(json!({ "preset": "private_chat" })).await?;
    let (status, body) = carol.join(&private).await?;
    ensure!(status == 403 && body["errcode"] == "M_FORBIDDEN", "private room without invite: {status} {body}");
    let (status, _) = alice.post(&room_path(&private, "invite"), &json!({ "user_id": "@carol:localhost" })).await?;
    ensure!(status == 200, "invite");
    let (status, _) = carol.join(&private).await?;
    ensure!(status == 200, "join after invite");

    let dm = alice
        .create_room(json!({ "preset": "trusted_private_chat", "is_direct": true, "invite": ["@bob:localhost"] }))
        .await?;
    let sync = bob.sync(None, 0, None).await?;
    let invite = &sync["rooms"]["invite"][dm.as_str()]["invite_state"]["events"];
    let own = invite
        .as_array()
        .context("invite_state")?
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == "@bob:localhost");
    ensure!(
        own.is_some_and(|e| e["content"]["is_direct"] == true && e["content"]["membership"] == "invite"),
        "DM invite: {invite}"
    );

    let (_, joined) = carol.get("/_matrix/client/v3/joined_rooms").await?;
    let joined: Vec<&str> =
        joined["joined_rooms"].as_array().context("joined_rooms")?.iter().filter_map(Value::as_str).collect();
    ensure!(
        joined.contains(&public.as_str()) && joined.contains(&private.as_str()) && !joined.contains(&dm.as_str()),
        "{joined:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_levels_govern_kick_ban_and_state() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    bob.join(&room).await?;

    let (status, body) = bob.post(&room_path(&room, "kick"), &json!({ "user_id": "@alice:localhost" })).await?;
    ensure!(status == 403 && body["errcode"] == "M_FORBIDDEN", "member kicks creator: {status} {body}");
    let (status, body) =
        bob.put(&room_path(&room, "state/m.room.power_levels"), &json!({ "users": { "@bob:localhost": 100 } })).await?;
    ensure!(status == 403 && body["errcode"] == "M_FORBIDDEN", "member raises own power: {status} {body}");
    let (status, body) = bob.put(&room_path(&room, "state/m.room.name"), &json!({ "name": "mine" })).await?;
    ensure!(status == 403, "member renames room (state_default 50): {status} {body}");
    let (status, _) = alice.put(&room_path(&room, "state/m.room.topic"), &json!({ "topic": "rules" })).await?;
    ensure!(status == 200, "creator sets the topic");
    let (_, topic) = bob.get(&room_path(&room, "state/m.room.topic")).await?;
    ensure!(topic["topic"] == "rules", "topic content: {topic}");
    let (status, state) = bob.get(&room_path(&room, "state")).await?;
    let state = state.as_array().cloned().with_context(|| format!("GET /state is a list: {status} {state}"))?;
    let has = |ty: &str, key: &str| state.iter().any(|e| e["type"] == ty && e["state_key"] == key);
    ensure!(
        has("m.room.create", "")
            && has("m.room.power_levels", "")
            && has("m.room.join_rules", "")
            && has("m.room.member", "@alice:localhost")
            && has("m.room.member", "@bob:localhost")
            && state.iter().any(|e| e["type"] == "m.room.topic" && e["content"]["topic"] == "rules"),
        "GET /state shows the whole current state: {state:?}"
    );
    let keys: HashSet<(String, String)> =
        state.iter().map(|e| (e["type"].to_string(), e["state_key"].to_string())).collect();
    ensure!(keys.len() == state.len(), "GET /state has one event per (type, state_key)");
    let (status, body) = alice.get(&room_path(&room, "state/m.room.tombstone")).await?;
    ensure!(status == 404 && body["errcode"] == "M_NOT_FOUND", "absent state is M_NOT_FOUND: {status} {body}");

    let (status, _) =
        alice.post(&room_path(&room, "kick"), &json!({ "user_id": "@bob:localhost", "reason": "out" })).await?;
    ensure!(status == 200, "creator kicks");
    let (status, _) = bob.join(&room).await?;
    ensure!(status == 200, "a kicked user may rejoin a public room");
    let (status, _) = alice.post(&room_path(&room, "ban"), &json!({ "user_id": "@bob:localhost" })).await?;
    ensure!(status == 200, "ban");
    let (status, body) = bob.join(&room).await?;
    ensure!(status == 403 && body["errcode"] == "M_FORBIDDEN", "banned user rejoins: {status} {body}");
    let (status, _) = alice.post(&room_path(&room, "unban"), &json!({ "user_id": "@bob:localhost" })).await?;
    ensure!(status == 200, "unban");
    let (status, _) = bob.join(&room).await?;
    ensure!(status == 200, "rejoin after unban");
    let (status, body) = bob.post(&room_path(&room, "forget"), &json!({})).await?;
    ensure!(status == 400, "forgetting a room one is still in is refused: {status} {body}");
    let (status, _) = bob.post(&room_path(&room, "leave"), &json!({})).await?;
    ensure!(status == 200, "leave");
    let (_, joined) = bob.get("/_matrix/client/v3/joined_rooms").await?;
    ensure!(joined["joined_rooms"] == json!([]), "after leaving, bob's joined_rooms is empty: {joined}");
    let include_leave = json!({ "room": { "include_leave": true } });
    let sync = bob.sync(None, 0, Some(&include_leave)).await?;
    ensure!(!sync["rooms"]["leave"][room.as_str()].is_null(), "a left room is in sync's leave section: {sync}");
    let (status, _) = bob.post(&room_path(&room, "forget"), &json!({})).await?;
    ensure!(status == 200, "forget after leaving");
    let sync = bob.sync(None, 0, Some(&include_leave)).await?;
    ensure!(
        sync["rooms"]["leave"][room.as_str()].is_null() && sync["rooms"]["join"][room.as_str()].is_null(),
        "a forgotten room disappears from bob's sync: {}",
        sync["rooms"]
    );
    let (_, members) = alice.get(&room_path(&room, "members?membership=join")).await?;
    let ids: Vec<&str> =
        members["chunk"].as_array().context("chunk")?.iter().filter_map(|m| m["state_key"].as_str()).collect();
    ensure!(ids == ["@alice:localhost"], "members: {ids:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_paginate_complete_in_both_directions() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let room = alice.create_room(json!({})).await?;
    let sent: Vec<String> = (0..1000).map(|i| format!("m{i:04}")).collect();
    let mut ids = Vec::new();
    for body in &sent {
        ids.push(alice.send_message(&room, body).await?);
    }
    let back = alice.all_messages(&room, 100).await?;
    let got = bodies(&back);
    ensure!(
        got == sent,
        "paging back with dir=b limit=100 should show m0000..m0999 in order; user saw {} messages, first difference at {:?}",
        got.len(),
        got.iter().zip(&sent).position(|(a, b)| a != b)
    );
    ensure!(back.first().is_some_and(|e| e["type"] == "m.room.create"), "history starts at m.room.create");

    let forward = alice.all_messages_forward(&room, 100).await?;
    let got = bodies(&forward);
    ensure!(
        got == sent,
        "paging forward with dir=f limit=100 should show m0000..m0999 in order; user saw {} messages, first difference at {:?}",
        got.len(),
        got.iter().zip(&sent).position(|(a, b)| a != b)
    );
    let back_ids: Vec<&Value> = back.iter().map(|e| &e["event_id"]).collect();
    let forward_ids: Vec<&Value> = forward.iter().map(|e| &e["event_id"]).collect();
    ensure!(back_ids == forward_ids, "both directions show the same events, state included");
    let got_ids: Vec<&str> =
        forward.iter().filter(|e| e["type"] == "m.room.message").filter_map(|e| e["event_id"].as_str()).collect();
    ensure!(got_ids == ids.iter().map(String::as_str).collect::<Vec<_>>(), "event ids match the sends");

    let middle = &ids[500];
    let (status, ctx) = alice.get(&room_path(&room, &format!("context/{}?limit=10", enc(middle)))).await?;
    ensure!(status == 200 && ctx["event"]["content"]["body"] == "m0500", "context event: {ctx}");
    ensure!(
        bodies(ctx["events_before"].as_array().context("before")?) == ["m0499", "m0498", "m0497", "m0496", "m0495"],
        "{ctx}"
    );
    ensure!(
        bodies(ctx["events_after"].as_array().context("after")?) == ["m0501", "m0502", "m0503", "m0504", "m0505"],
        "{ctx}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redaction_idempotency_relations_and_threads() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    bob.join(&room).await?;

    let (s1, first) = alice.send_with_txn(&room, "once", "same-txn").await?;
    let (s2, second) = alice.send_with_txn(&room, "once", "same-txn").await?;
    ensure!(s1 == 200 && s2 == 200 && first["event_id"] == second["event_id"], "txn idempotency: {first} {second}");
    let history = alice.all_messages(&room, 50).await?;
    ensure!(bodies(&history).iter().filter(|b| *b == "once").count() == 1, "one event for a repeated txn id");

    let secret = alice.send_message(&room, "secret").await?;
    let (status, body) = bob.put(&room_path(&room, &format!("redact/{}/r1", enc(&secret))), &json!({})).await?;
    ensure!(status == 403, "bob may not redact alice's message: {status} {body}");
    let (status, _) =
        alice.put(&room_path(&room, &format!("redact/{}/r1", enc(&secret))), &json!({ "reason": "oops" })).await?;
    ensure!(status == 200, "alice redacts her message");
    let (_, ev) = bob.get(&room_path(&room, &format!("event/{}", enc(&secret)))).await?;
    ensure!(
        ev["content"] == json!({}) && ev["unsigned"]["redacted_because"]["content"]["reason"] == "oops",
        "redacted event: {ev}"
    );
    let history = bob.all_messages(&room, 50).await?;
    ensure!(!bodies(&history).contains(&"secret".to_owned()), "redacted body gone from /messages");
    let in_history = history
        .iter()
        .find(|e| e["event_id"] == secret.as_str())
        .context("the redacted event stays in /messages (as a redacted event)")?;
    ensure!(
        in_history["content"] == json!({}) && in_history["unsigned"]["redacted_because"]["type"] == "m.room.redaction",
        "redacted event in /messages: {in_history}"
    );
    let redaction =
        history.iter().find(|e| e["type"] == "m.room.redaction").context("the redaction itself is in /messages")?;
    ensure!(
        redaction["redacts"] == secret.as_str() || redaction["content"]["redacts"] == secret.as_str(),
        "the redaction names the redacted event: {redaction}"
    );

    let root = alice.send_message(&room, "thread root").await?;
    let (status, reply) = bob
        .put(
            &room_path(&room, "send/m.room.message/reply1"),
            &json!({ "msgtype": "m.text", "body": "in thread", "m.relates_to": { "rel_type": "m.thread", "event_id": root } }),
        )
        .await?;
    ensure!(status == 200, "thread reply: {reply}");
    let (status, rel) =
        alice.get(&format!("/_matrix/client/v1/rooms/{}/relations/{}/m.thread", enc(&room), enc(&root))).await?;
    ensure!(status == 200 && bodies(rel["chunk"].as_array().context("chunk")?) == ["in thread"], "relations: {rel}");
    let (status, threads) = alice.get(&format!("/_matrix/client/v1/rooms/{}/threads", enc(&room))).await?;
    let first = &threads["chunk"][0];
    ensure!(status == 200 && first["event_id"] == root.as_str(), "threads: {threads}");
    ensure!(first["unsigned"]["m.relations"]["m.thread"]["count"] == 1, "thread summary: {first}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_upgrade_leaves_a_tombstone() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let old = alice.create_room(json!({ "room_version": "10", "name": "Old", "room_alias_name": "up" })).await?;
    let last_before = alice.send_message(&old, "the last word").await?;
    let (status, body) = alice.post(&room_path(&old, "upgrade"), &json!({ "new_version": "12" })).await?;
    ensure!(status == 200, "upgrade: {body}");
    let new = body["replacement_room"].as_str().context("replacement_room")?;
    let (_, tomb) = alice.get(&room_path(&old, "state/m.room.tombstone")).await?;
    ensure!(tomb["replacement_room"] == new, "tombstone: {tomb}");
    let (_, create) = alice.get(&room_path(new, "state/m.room.create")).await?;
    ensure!(create["predecessor"]["room_id"] == old.as_str() && create["room_version"] == "12", "create: {create}");
    // Clients link to the old room at `predecessor.event_id`: its last event before the upgrade.
    ensure!(create["predecessor"]["event_id"] == last_before.as_str(), "the old room's last event: {create}");
    let (_, name) = alice.get(&room_path(new, "state/m.room.name")).await?;
    ensure!(name["name"] == "Old", "name copied: {name}");
    let (_, alias) = alice.get("/_matrix/client/v3/directory/room/%23up:localhost").await?;
    ensure!(alias["room_id"] == new, "alias moved: {alias}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_room_version_works() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    for version in ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"] {
        let room = alice.create_room(json!({ "room_version": version, "preset": "public_chat" })).await?;
        let (status, body) = bob.join(&room).await?;
        ensure!(status == 200, "v{version} join: {body}");
        let id = bob.send_message(&room, &format!("hello v{version}")).await?;
        let (status, body) = alice.put(&room_path(&room, &format!("redact/{}/x", enc(&id))), &json!({})).await?;
        ensure!(status == 200, "v{version} redact: {body}");
        let (_, create) = alice.get(&room_path(&room, "state/m.room.create")).await?;
        ensure!(create["room_version"] == version, "v{version} create: {create}");
    }
    let (status, body) = alice.post("/_matrix/client/v3/createRoom", &json!({ "room_version": "99" })).await?;
    ensure!(status == 400 && body["errcode"] == "M_UNSUPPORTED_ROOM_VERSION", "{status} {body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_data_tags_filters_and_push_rules() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let room = alice.create_room(json!({})).await?;
    let (status, _) = alice
        .put("/_matrix/client/v3/user/@alice:localhost/account_data/m.direct", &json!({ "@bob:localhost": [room] }))
        .await?;
    ensure!(status == 200, "put account data");
    let (_, direct) = alice.get("/_matrix/client/v3/user/@alice:localhost/account_data/m.direct").await?;
    ensure!(direct["@bob:localhost"][0] == room.as_str(), "{direct}");
    let (status, _) = alice
        .put(
            &format!("/_matrix/client/v3/user/@alice:localhost/rooms/{}/tags/m.favourite", enc(&room)),
            &json!({ "order": 0.5 }),
        )
        .await?;
    ensure!(status == 200, "tag");
    let (_, tags) = alice.get(&format!("/_matrix/client/v3/user/@alice:localhost/rooms/{}/tags", enc(&room))).await?;
    ensure!(tags["tags"]["m.favourite"]["order"] == 0.5, "{tags}");
    let (_, ignored) = alice
        .put(
            "/_matrix/client/v3/user/@alice:localhost/account_data/m.ignored_user_list",
            &json!({ "ignored_users": {} }),
        )
        .await?;
    ensure!(ignored == json!({}), "ignored users stored");

    let (status, body) = alice
        .post("/_matrix/client/v3/user/@alice:localhost/filter", &json!({ "room": { "timeline": { "limit": 3 } } }))
        .await?;
    let filter_id = body["filter_id"].as_str().context("filter_id")?.to_owned();
    ensure!(status == 200, "create filter");
    let (_, filter) = alice.get(&format!("/_matrix/client/v3/user/@alice:localhost/filter/{filter_id}")).await?;
    ensure!(filter["room"]["timeline"]["limit"] == 3, "{filter}");
    // Parts of a filter that are objects must be objects; a wrong shape is 400, not ignored.
    for bad in [
        json!([]),
        json!({ "room": [] }),
        json!({ "room": { "timeline": [] } }),
        json!({ "room": { "state": "all" } }),
        json!({ "presence": 5 }),
        json!({ "room": { "timeline": { "limit": "ten" } } }),
        json!({ "room": { "timeline": { "types": "m.room.message" } } }),
    ] {
        let (status, body) = alice.post("/_matrix/client/v3/user/@alice:localhost/filter", &bad).await?;
        ensure!(status == 400 && body["errcode"] == "M_BAD_JSON", "{bad}: {status} {body}");
    }
    let (status, _) =
        alice.post("/_matrix/client/v3/user/@alice:localhost/filter", &json!({ "room": null, "x": [] })).await?;
    ensure!(status == 200, "null parts and unknown fields are fine");

    let (_, rules) = alice.get("/_matrix/client/v3/pushrules/").await?;
    ensure!(
        rules["global"]["override"].as_array().is_some_and(|r| r.iter().any(|x| x["rule_id"] == ".m.rule.master")),
        "default rules"
    );
    let (status, _) = alice
        .put("/_matrix/client/v3/pushrules/global/content/lunch", &json!({ "pattern": "lunch", "actions": ["notify"] }))
        .await?;
    ensure!(status == 200, "add push rule");
    let (status, _) =
        alice.put("/_matrix/client/v3/pushrules/global/content/lunch/enabled", &json!({ "enabled": false })).await?;
    ensure!(status == 200, "disable push rule");
    let (_, enabled) = alice.get("/_matrix/client/v3/pushrules/global/content/lunch/enabled").await?;
    ensure!(enabled["enabled"] == false, "{enabled}");
    let (status, _) = alice.delete("/_matrix/client/v3/pushrules/global/content/lunch", &json!({})).await?;
    ensure!(status == 200, "delete push rule");
    let (status, _) = alice.get("/_matrix/client/v3/pushrules/global/content/lunch").await?;
    ensure!(status == 404, "deleted rule is gone");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knocking_and_read_markers() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice
        .create_room(json!({ "initial_state": [{ "type": "m.room.join_rules", "content": { "join_rule": "knock" } }] }))
        .await?;
    let (status, body) = bob.join(&room).await?;
    ensure!(status == 403, "a knock room cannot be joined directly: {body}");
    let (status, body) =
        bob.post(&format!("/_matrix/client/v3/knock/{}", enc(&room)), &json!({ "reason": "let me in" })).await?;
    ensure!(status == 200 && body["room_id"] == room.as_str(), "knock: {status} {body}");
    let sync = bob.sync(None, 0, None).await?;
    ensure!(!sync["rooms"]["knock"][room.as_str()].is_null(), "the knock shows in bob's sync: {}", sync["rooms"]);
    let (_, members) = alice.get(&room_path(&room, "members?membership=knock")).await?;
    ensure!(members["chunk"][0]["content"]["reason"] == "let me in", "alice sees the knock: {members}");
    alice.post(&room_path(&room, "invite"), &json!({ "user_id": "@bob:localhost" })).await?;
    let (status, _) = bob.join(&room).await?;
    ensure!(status == 200, "join after the knock is accepted");

    let last = alice.send_message(&room, "read me").await?;
    let (status, _) =
        bob.post(&room_path(&room, "read_markers"), &json!({ "m.fully_read": last, "m.read": last })).await?;
    ensure!(status == 200, "read markers");
    let (_, marker) = bob
        .get(&format!("/_matrix/client/v3/user/@bob:localhost/rooms/{}/account_data/m.fully_read", enc(&room)))
        .await?;
    ensure!(marker["event_id"] == last.as_str(), "fully read marker stored: {marker}");
    let (status, _) = bob.post(&room_path(&room, "read_markers"), &json!({ "m.read": "$unknown" })).await?;
    ensure!(status == 404, "a receipt for an unknown event is refused");
    Ok(())
}

/// Sends a thread reply to `root`, returning its event id.
async fn thread_reply(client: &myelin_e2e::Client, room: &str, root: &str, body: &str) -> Result<String> {
    let txn = format!("r{:016x}", rand::random::<u64>());
    let content = json!({
        "msgtype": "m.text",
        "body": body,
        "m.relates_to": { "rel_type": "m.thread", "event_id": root },
    });
    let (status, resp) = client.put(&room_path(room, &format!("send/m.room.message/{txn}")), &content).await?;
    ensure!(status == 200, "thread reply {body:?}: {status} {resp}");
    resp["event_id"].as_str().map(str::to_owned).context("event_id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_hidden_by_history_visibility_stays_hidden_in_relations_and_threads() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    bob.join(&room).await?;
    let root = alice.send_message(&room, "root").await?;
    let seen = thread_reply(&alice, &room, &root, "before bob left").await?;
    let (status, _) = bob.post(&room_path(&room, "leave"), &json!({})).await?;
    ensure!(status == 200, "leave");
    // Sent after Bob left: he may never see it, whichever endpoint he asks.
    let hidden = thread_reply(&alice, &room, &root, "after bob left").await?;

    let relations = format!("/_matrix/client/v1/rooms/{}/relations/{}", enc(&room), enc(&root));
    let (status, alice_view) = alice.get(&relations).await?;
    ensure!(status == 200, "alice's relations: {status} {alice_view}");
    let ids = |body: &Value| -> Vec<String> {
        body["chunk"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
            .collect()
    };
    ensure!(ids(&alice_view) == vec![hidden.clone(), seen.clone()], "alice sees both replies: {alice_view}");
    let (status, bob_view) = bob.get(&relations).await?;
    ensure!(status == 200, "bob's relations: {status} {bob_view}");
    ensure!(ids(&bob_view) == vec![seen.clone()], "bob's relations must not show the later reply: {bob_view}");

    let threads = format!("/_matrix/client/v1/rooms/{}/threads", enc(&room));
    let (status, alice_threads) = alice.get(&threads).await?;
    ensure!(status == 200, "alice's threads: {status} {alice_threads}");
    let summary = &alice_threads["chunk"][0]["unsigned"]["m.relations"]["m.thread"];
    ensure!(summary["latest_event"]["event_id"] == hidden.as_str() && summary["count"] == 2, "{alice_threads}");
    let (status, bob_threads) = bob.get(&threads).await?;
    ensure!(status == 200, "bob's threads: {status} {bob_threads}");
    ensure!(bob_threads["chunk"][0]["event_id"] == root.as_str(), "bob still sees the root: {bob_threads}");
    let summary = &bob_threads["chunk"][0]["unsigned"]["m.relations"]["m.thread"];
    ensure!(
        summary["latest_event"]["event_id"] == seen.as_str() && summary["count"] == 1,
        "bob's thread summary must not count or show the later reply: {bob_threads}"
    );
    ensure!(!bob_threads.to_string().contains(&hidden), "the hidden reply leaks into bob's threads: {bob_threads}");
    Ok(())
}

/// A restricted room: a user joined to none of the allowed rooms is refused; once joined to one,
/// they may join without an invite, vouched for by a member who may invite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_rooms_admit_the_members_of_the_allowed_rooms() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let space = alice.create_room(json!({ "preset": "public_chat" })).await?;
    let room = alice.create_room(myelin_e2e::restricted_room(&space, "10")).await?;

    let (status, body) = bob.join(&room).await?;
    ensure!(status == 403 && body["errcode"] == "M_FORBIDDEN", "not in the space: {status} {body}");
    let (status, body) = bob.join(&space).await?;
    ensure!(status == 200, "joining the space: {status} {body}");
    let (status, body) = bob.join(&room).await?;
    ensure!(status == 200, "joining the restricted room from the space: {status} {body}");
    let bob_id = server.user_id("bob");
    let (status, member) = bob.get(&room_path(&room, &format!("state/m.room.member/{}", enc(&bob_id)))).await?;
    ensure!(status == 200, "{member}");
    ensure!(member["membership"] == "join", "{member}");
    ensure!(member["join_authorised_via_users_server"] == server.user_id("alice"), "vouched for by Alice: {member}");
    Ok(())
}

/// The names of the rooms of a `/hierarchy` answer, in order.
fn hierarchy_names(body: &Value) -> Vec<String> {
    body["rooms"].as_array().into_iter().flatten().filter_map(|r| r["name"].as_str().map(str::to_owned)).collect()
}

/// A space's hierarchy shows the rooms under it that the asking user may see, breadth first,
/// within the depth asked, the suggested ones alone if asked, page by page; a child without
/// `via` is no child; a room the user may not see is left out, and asking for it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_space_hierarchy_shows_the_rooms_a_user_may_see() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = |name: &str, space: bool| {
        let mut body = json!({ "preset": "public_chat", "name": name });
        if space {
            body["creation_content"] = json!({ "type": "m.space" });
        }
        body
    };
    let space = alice.create_room(room("Space", true)).await?;
    let public = alice.create_room(room("Public", false)).await?;
    let private = alice.create_room(json!({ "preset": "private_chat", "name": "Private" })).await?;
    let sub = alice.create_room(room("Subspace", true)).await?;
    let deep = alice.create_room(room("Deep", false)).await?;
    let removed = alice.create_room(room("Removed", false)).await?;
    let via = json!([server.server_name()]);
    for (parent, child, suggested, via) in [
        (&space, &public, true, via.clone()),
        (&space, &private, false, via.clone()),
        (&space, &sub, false, via.clone()),
        (&space, &removed, false, json!([])),
        (&sub, &deep, false, via.clone()),
    ] {
        let path = room_path(parent, &format!("state/m.space.child/{}", enc(child)));
        let (status, body) = alice.put(&path, &json!({ "via": via, "suggested": suggested })).await?;
        ensure!(status == 200, "{body}");
    }
    let hierarchy = |query: &str| {
        let path = format!("/_matrix/client/v1/rooms/{}/hierarchy{query}", enc(&space));
        let bob = &bob;
        async move { bob.get(&path).await }
    };
    let (status, body) = hierarchy("").await?;
    ensure!(status == 200, "{body}");
    let names = hierarchy_names(&body);
    ensure!(names.first().map(String::as_str) == Some("Space"), "the space comes first: {names:?}");
    let mut sorted = names.clone();
    sorted.sort();
    ensure!(sorted == ["Deep", "Public", "Space", "Subspace"], "what Bob may see: {names:?}");
    ensure!(names.last().map(String::as_str) == Some("Deep"), "breadth first: {names:?}");
    ensure!(body["rooms"][0]["room_type"] == "m.space", "{body}");
    ensure!(body["rooms"][0]["children_state"].as_array().map(Vec::len) == Some(3), "three children: {body}");
    ensure!(body.get("next_batch").is_none(), "one page: {body}");

    let (_, shallow) = hierarchy("?max_depth=1").await?;
    ensure!(!hierarchy_names(&shallow).contains(&"Deep".to_owned()), "{shallow}");
    let (_, suggested) = hierarchy("?suggested_only=true").await?;
    ensure!(hierarchy_names(&suggested) == ["Space", "Public"], "{suggested}");

    let (_, first) = hierarchy("?limit=2").await?;
    let next = first["next_batch"].as_str().context("a second page")?.to_owned();
    let (_, second) = hierarchy(&format!("?limit=2&from={next}")).await?;
    let mut paged = hierarchy_names(&first);
    paged.extend(hierarchy_names(&second));
    ensure!(paged == names, "the pages make the whole walk: {paged:?}");

    let (status, _) = alice.get(&format!("/_matrix/client/v1/rooms/{}/hierarchy", enc(&space))).await?;
    ensure!(status == 200);
    let (_, as_alice) = alice.get(&format!("/_matrix/client/v1/rooms/{}/hierarchy", enc(&space))).await?;
    ensure!(hierarchy_names(&as_alice).contains(&"Private".to_owned()), "Alice is in the private room");
    let (status, body) = bob.get(&format!("/_matrix/client/v1/rooms/{}/hierarchy", enc(&private))).await?;
    ensure!(status == 403 && body["errcode"] == "M_FORBIDDEN", "{status} {body}");
    let (status, body) = hierarchy("?from=nonsense").await?;
    ensure!(status == 400, "{status} {body}");
    Ok(())
}

/// The membership of `user` in `room` as the room's state shows it, and its event id.
async fn membership_of(client: &myelin_e2e::Client, room: &str, user: &str) -> Result<(String, String)> {
    let (status, state) = client.get(&room_path(room, "state")).await?;
    ensure!(status == 200, "{status} {state}");
    let event = state
        .as_array()
        .and_then(|events| events.iter().find(|e| e["type"] == "m.room.member" && e["state_key"] == user))
        .with_context(|| format!("no member event for {user}"))?;
    Ok((
        event["content"]["membership"].as_str().unwrap_or_default().to_owned(),
        event["event_id"].as_str().unwrap_or_default().to_owned(),
    ))
}

/// A kick needs someone in the room (joined, invited or knocking): a banned user is not
/// unbanned by a kick, and nobody is kicked out of a room they are not in (403 each, as Synapse
/// answers); a banned user cannot be invited.
#[tokio::test]
async fn a_kick_needs_someone_in_the_room() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let carol = server.register("carol").await?;
    let dave = server.register("dave").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    ensure!(bob.join(&room).await?.0 == 200);
    let act = |action: &str, user: &str| {
        let path = room_path(&room, action);
        let body = json!({ "user_id": user, "reason": "test" });
        let alice = &alice;
        async move { alice.post(&path, &body).await }
    };

    ensure!(act("ban", &bob.user_id).await?.0 == 200);
    let (status, body) = act("kick", &bob.user_id).await?;
    ensure!(status == 403 && myelin_e2e::errcode(&body) == "M_FORBIDDEN", "kick of a banned user: {status} {body}");
    ensure!(membership_of(&alice, &room, &bob.user_id).await?.0 == "ban", "still banned");
    let (status, body) = act("invite", &bob.user_id).await?;
    ensure!(status == 403, "invite of a banned user: {status} {body}");
    let (status, body) = act("kick", &carol.user_id).await?;
    ensure!(status == 403 && myelin_e2e::errcode(&body) == "M_FORBIDDEN", "never joined: {status} {body}");
    ensure!(act("unban", &bob.user_id).await?.0 == 200);
    let (status, body) = act("kick", &bob.user_id).await?;
    ensure!(status == 403, "left already: {status} {body}");

    // Kicking an invited user takes the invite back.
    ensure!(act("invite", &dave.user_id).await?.0 == 200);
    let (status, body) = act("kick", &dave.user_id).await?;
    ensure!(status == 200, "{status} {body}");
    ensure!(membership_of(&alice, &room, &dave.user_id).await?.0 == "leave");
    Ok(())
}

/// The same state from the same sender is one event (Synapse's de-duplication): joining twice
/// and re-sending identical state answer the existing event; other content is a new event.
#[tokio::test]
async fn the_same_state_twice_is_one_event() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    ensure!(bob.join(&room).await?.0 == 200);
    let (_, joined) = membership_of(&alice, &room, &bob.user_id).await?;
    ensure!(bob.join(&room).await?.0 == 200);
    ensure!(membership_of(&alice, &room, &bob.user_id).await?.1 == joined, "a second join is the first one");

    let topic = room_path(&room, "state/m.room.topic/");
    let (_, first) = alice.put(&topic, &json!({ "topic": "cats" })).await?;
    let (_, again) = alice.put(&topic, &json!({ "topic": "cats" })).await?;
    ensure!(first["event_id"].is_string() && again["event_id"] == first["event_id"], "{first} {again}");
    let (_, other) = alice.put(&topic, &json!({ "topic": "dogs" })).await?;
    ensure!(other["event_id"] != first["event_id"], "new content, new event");
    let (_, back) = alice.put(&topic, &json!({ "topic": "cats" })).await?;
    ensure!(back["event_id"] != first["event_id"], "the old content again is a change: {back}");

    let messages = alice.all_messages(&room, 50).await?;
    let member_events =
        messages.iter().filter(|e| e["type"] == "m.room.member" && e["state_key"] == bob.user_id.as_str()).count();
    ensure!(member_events == 1, "one join in the timeline, not {member_events}");
    let topics = messages.iter().filter(|e| e["type"] == "m.room.topic").count();
    ensure!(topics == 3, "cats, dogs, cats: {topics}");
    Ok(())
}

/// `m.room.canonical_alias` may only add aliases that exist and point to the room (400
/// `M_BAD_ALIAS`); unchanged ones are not checked again.
#[tokio::test]
async fn a_canonical_alias_must_point_to_the_room() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let room = alice.create_room(json!({ "preset": "public_chat", "room_alias_name": "home" })).await?;
    let elsewhere = alice.create_room(json!({ "preset": "public_chat", "room_alias_name": "away" })).await?;
    ensure!(room != elsewhere);
    let home = format!("#home:{}", server.server_name());
    let away = format!("#away:{}", server.server_name());
    let path = room_path(&room, "state/m.room.canonical_alias/");
    let bad = |body: Value| {
        let (alice, path) = (&alice, path.clone());
        async move {
            let (status, answer) = alice.put(&path, &body).await?;
            anyhow::Ok((status, myelin_e2e::errcode(&answer).to_owned()))
        }
    };
    ensure!(
        bad(json!({ "alias": format!("#missing:{}", server.server_name()) })).await? == (400, "M_BAD_ALIAS".into())
    );
    ensure!(bad(json!({ "alias": away })).await? == (400, "M_BAD_ALIAS".into()), "another room's alias");
    ensure!(bad(json!({ "alias": home, "alt_aliases": [away] })).await? == (400, "M_BAD_ALIAS".into()));
    ensure!(bad(json!({ "alias": home, "alt_aliases": "x" })).await? == (400, "M_INVALID_PARAM".into()));
    ensure!(bad(json!({ "alias": "not an alias" })).await?.0 == 400);

    let (status, body) = alice.put(&path, &json!({ "alias": home })).await?;
    ensure!(status == 200, "{status} {body}");
    // The alias goes; the state keeps naming it and may be re-sent with something else beside.
    let (status, _) = alice.delete(&format!("/_matrix/client/v3/directory/room/{}", enc(&home)), &json!({})).await?;
    ensure!(status == 200);
    let (status, body) = alice.put(&path, &json!({ "alias": home, "alt_aliases": [] })).await?;
    ensure!(status == 200, "an unchanged alias is not checked again: {status} {body}");
    Ok(())
}

/// The old `POST /rooms/{roomId}/send/{eventType}` (no transaction id): every request is a new
/// event.
#[tokio::test]
async fn sending_without_a_transaction_id() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let room = alice.create_room(json!({})).await?;
    let path = room_path(&room, "send/m.room.message");
    let content = json!({ "msgtype": "m.text", "body": "old bot" });
    let (status, first) = alice.post(&path, &content).await?;
    ensure!(status == 200 && first["event_id"].is_string(), "{status} {first}");
    let (_, second) = alice.post(&path, &content).await?;
    ensure!(second["event_id"].is_string() && second["event_id"] != first["event_id"], "{first} {second}");
    let bodies: Vec<String> = alice
        .all_messages(&room, 10)
        .await?
        .iter()
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect();
    ensure!(bodies.iter().filter(|b| *b == "old bot").count() == 2, "{bodies:?}");
    Ok(())
}

/// Room summaries (MSC3266), as a client previews a room before joining: an open room to anyone
/// (by id or alias, on the stable and unstable paths), an invite-only room only to its members
/// and invitees (with their membership), an unknown or hidden room 404.
#[tokio::test]
async fn room_summaries_preview_what_the_asker_may_see() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let carol = server.register("carol").await?;
    let open = alice
        .create_room(json!({
            "preset": "public_chat", "name": "Open garden", "topic": "flowers",
            "room_alias_name": "garden",
            "initial_state": [{ "type": "m.room.encryption", "state_key": "", "content": { "algorithm": "m.megolm.v1.aes-sha2" } }],
        }))
        .await?;
    let alias = format!("#garden:{}", server.server_name());
    for path in [
        format!("/_matrix/client/v1/room_summary/{}", enc(&open)),
        format!("/_matrix/client/v1/room_summary/{}", enc(&alias)),
        format!("/_matrix/client/unstable/im.nheko.summary/summary/{}", enc(&open)),
        format!("/_matrix/client/unstable/im.nheko.summary/rooms/{}/summary", enc(&alias)),
    ] {
        let (status, body) = server.anonymous().get(&path).await?;
        ensure!(status == 200, "{path}: {status} {body}");
        ensure!(
            body["room_id"] == open.as_str() && body["name"] == "Open garden" && body["topic"] == "flowers",
            "{body}"
        );
        ensure!(body["canonical_alias"] == alias.as_str() && body["join_rule"] == "public", "{body}");
        ensure!(body["num_joined_members"] == 1 && body["room_version"] == "12", "{body}");
        ensure!(body["encryption"] == "m.megolm.v1.aes-sha2" && body.get("membership").is_none(), "{body}");
        ensure!(body.get("children_state").is_none(), "{body}");
    }
    let (status, body) = bob.get(&format!("/_matrix/client/v1/room_summary/{}", enc(&open))).await?;
    ensure!(status == 200 && body["membership"] == "leave", "{status} {body}");

    let private = alice.create_room(json!({ "preset": "private_chat", "name": "Secret" })).await?;
    let path = format!("/_matrix/client/v1/room_summary/{}", enc(&private));
    let (status, invited) = alice
        .post(&format!("/_matrix/client/v3/rooms/{}/invite", enc(&private)), &json!({ "user_id": bob.user_id }))
        .await?;
    ensure!(status == 200, "{invited}");
    for (who, client, expected) in
        [("alice", &alice, Some("join")), ("bob", &bob, Some("invite")), ("carol", &carol, None)]
    {
        let (status, body) = client.get(&path).await?;
        match expected {
            Some(membership) => ensure!(
                status == 200 && body["membership"] == membership && body["name"] == "Secret",
                "{who}: {status} {body}"
            ),
            None => ensure!(status == 404 && errcode(&body) == "M_NOT_FOUND", "{who}: {status} {body}"),
        }
    }
    let (status, body) = server.anonymous().get(&path).await?;
    ensure!(status == 404, "anonymous: {status} {body}");
    let (status, body) = alice.get(&format!("/_matrix/client/v1/room_summary/{}", enc("!nothere:localhost"))).await?;
    ensure!(status == 404 && errcode(&body) == "M_NOT_FOUND", "{status} {body}");
    let (status, body) = alice.get("/_matrix/client/v1/room_summary/not-a-room").await?;
    ensure!(status == 400 && errcode(&body) == "M_INVALID_PARAM", "{status} {body}");
    Ok(())
}

/// Reporting an event, a room or a user: kept for the admins; an event the reporter cannot see,
/// or an unknown room or user, is 404; bad bodies are refused.
#[tokio::test]
async fn events_rooms_and_users_can_be_reported() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    ensure!(bob.join(&room).await?.0 == 200);
    let bad = alice.send_message(&room, "something nasty").await?;
    let private = alice.create_room(json!({ "preset": "private_chat" })).await?;
    let hidden = alice.send_message(&private, "not for bob").await?;

    let report = |room: &str, event: &str| format!("/_matrix/client/v3/rooms/{}/report/{}", enc(room), enc(event));
    let (status, body) = bob.post(&report(&room, &bad), &json!({ "reason": "spam", "score": -100 })).await?;
    ensure!(status == 200 && body == json!({}), "{status} {body}");
    let (status, body) = bob.post(&report(&room, &bad), &json!({})).await?;
    ensure!(status == 200, "reason and score are optional: {status} {body}");
    for (path, what) in [
        (report(&private, &hidden), "an event bob cannot see"),
        (report(&room, &hidden), "an event of another room"),
        (report(&room, "$nothere"), "an unknown event"),
        (format!("/_matrix/client/v3/rooms/{}/report", enc("!nothere:localhost")), "an unknown room"),
        (format!("/_matrix/client/v3/users/{}/report", enc("@nobody:localhost")), "an unknown user"),
    ] {
        let (status, body) = bob.post(&path, &json!({ "reason": "x" })).await?;
        ensure!(status == 404 && errcode(&body) == "M_NOT_FOUND", "{what}: {status} {body}");
    }
    for (body, what) in [(json!({ "score": 5 }), "score above 0"), (json!({ "reason": 7 }), "reason not a string")] {
        let (status, answer) = bob.post(&report(&room, &bad), &body).await?;
        ensure!(status == 400 && errcode(&answer) == "M_INVALID_PARAM", "{what}: {status} {answer}");
    }
    let (status, body) = bob
        .post(&format!("/_matrix/client/v3/rooms/{}/report", enc(&room)), &json!({ "reason": "a spam room" }))
        .await?;
    ensure!(status == 200, "{status} {body}");
    let (status, body) = bob
        .post(&format!("/_matrix/client/v3/users/{}/report", enc(&alice.user_id)), &json!({ "reason": "troll" }))
        .await?;
    ensure!(status == 200, "{status} {body}");
    let (status, body) = server.anonymous().post(&report(&room, &bad), &json!({})).await?;
    ensure!(status == 401, "{status} {body}");
    Ok(())
}

/// An invite to a room everyone has since left cannot be accepted (404, as on Synapse, whose
/// server is no longer in such a room): the room is gone.
#[tokio::test]
async fn an_invite_to_a_room_everyone_left_cannot_be_accepted() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "private_chat" })).await?;
    let (status, body) = alice.post(&room_path(&room, "invite"), &json!({ "user_id": bob.user_id })).await?;
    ensure!(status == 200, "{body}");
    let (status, body) = alice.post(&room_path(&room, "leave"), &json!({})).await?;
    ensure!(status == 200, "{body}");
    let (status, body) = bob.join(&room).await?;
    ensure!(status == 404 && errcode(&body) == "M_NOT_FOUND", "{status} {body}");
    let (status, body) = bob.post(&room_path(&room, "leave"), &json!({})).await?;
    ensure!(status == 200, "the invite can still be declined: {status} {body}");
    Ok(())
}

/// Mutual rooms: the rooms two users are both joined to (stable and MSC2666 paths).
#[tokio::test]
async fn mutual_rooms_are_the_rooms_both_are_joined_to() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let shared = alice.create_room(json!({ "preset": "public_chat" })).await?;
    let left = alice.create_room(json!({ "preset": "public_chat" })).await?;
    alice.create_room(json!({ "preset": "public_chat" })).await?;
    ensure!(bob.join(&shared).await?.0 == 200 && bob.join(&left).await?.0 == 200);
    ensure!(bob.post(&room_path(&left, "leave"), &json!({})).await?.0 == 200);
    for path in ["/_matrix/client/v1/mutual_rooms", "/_matrix/client/unstable/uk.half-shot.msc2666/user/mutual_rooms"] {
        let (status, body) = alice.get(&format!("{path}?user_id={}", enc(&bob.user_id))).await?;
        ensure!(status == 200 && body["joined"] == json!([shared]), "{path}: {status} {body}");
    }
    let (status, body) = alice.get(&format!("/_matrix/client/v1/mutual_rooms?user_id={}", enc(&alice.user_id))).await?;
    ensure!(status == 400 && errcode(&body) == "M_INVALID_PARAM", "oneself: {status} {body}");
    let (status, body) = alice.get("/_matrix/client/v1/mutual_rooms").await?;
    ensure!(status == 400 && errcode(&body) == "M_MISSING_PARAM", "{status} {body}");
    Ok(())
}

/// Jump to date: the event nearest a time in either direction, only for those who may read it.
#[tokio::test]
async fn timestamp_to_event_finds_the_nearest_event_in_either_direction() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "private_chat" })).await?;
    let first = alice.send_message(&room, "first").await?;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let second = alice.send_message(&room, "second").await?;
    let ts_of = |event: String| {
        let alice = alice.clone();
        let room = room.clone();
        async move {
            let (status, body) = alice.get(&room_path(&room, &format!("event/{}", enc(&event)))).await?;
            ensure!(status == 200, "{body}");
            body["origin_server_ts"].as_u64().context("origin_server_ts")
        }
    };
    let (t1, t2) = (ts_of(first.clone()).await?, ts_of(second.clone()).await?);
    ensure!(t2 > t1);
    let jump = |ts: u64, dir: &str| room_path(&room, &format!("timestamp_to_event?ts={ts}&dir={dir}"));
    let jump = |ts, dir| jump(ts, dir).replace("/client/v3/", "/client/v1/");
    let (status, body) = alice.get(&jump(t1 + 1, "f")).await?;
    ensure!(status == 200 && body["event_id"] == second.as_str() && body["origin_server_ts"] == t2, "{body}");
    let (status, body) = alice.get(&jump(t2 - 1, "b")).await?;
    ensure!(status == 200 && body["event_id"] == first.as_str(), "{body}");
    let (status, body) = alice.get(&jump(t2 + 60_000, "f")).await?;
    ensure!(status == 404 && errcode(&body) == "M_NOT_FOUND", "nothing later: {status} {body}");
    let (status, body) = alice.get(&jump(t1, "sideways")).await?;
    ensure!(status == 400 && errcode(&body) == "M_INVALID_PARAM", "{status} {body}");
    let (status, body) = bob.get(&jump(t1, "f")).await?;
    ensure!(status == 403, "not a member: {status} {body}");
    Ok(())
}
