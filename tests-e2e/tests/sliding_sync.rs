//! Simplified sliding sync (MSC4186) as Element X speaks it, request by request: lists and
//! ranges, positions and replays, long-polls, timelines, required state, lazy members, room
//! fields, invites, filters, subscriptions, extensions, and bad input.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use myelin_e2e::{Client, TestServer, bodies, enc, errcode};
use serde_json::{Value, json};

const SS: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

/// Element X's room list request (`matrix-sdk-ui`'s RoomListService) for `ranges`.
fn room_list(ranges: Value) -> Value {
    json!({
        "conn_id": "room-list",
        "lists": { "all_rooms": {
            "ranges": ranges,
            "timeline_limit": 1,
            "required_state": [
                ["m.room.name", ""], ["m.room.encryption", ""], ["m.room.member", "$LAZY"],
                ["m.room.member", "$ME"], ["m.room.topic", ""], ["m.room.avatar", ""],
                ["m.room.canonical_alias", ""], ["m.room.power_levels", ""],
                ["org.matrix.msc3401.call.member", "*"], ["m.room.join_rules", ""],
                ["m.room.tombstone", ""], ["m.room.create", ""], ["m.room.history_visibility", ""],
                ["io.element.functional_members", ""], ["m.space.parent", "*"], ["m.space.child", "*"],
            ],
            "filters": {},
        }},
        "extensions": { "account_data": { "enabled": true }, "receipts": { "enabled": true, "rooms": ["*"] },
                        "typing": { "enabled": true } },
    })
}

async fn ss(client: &Client, pos: Option<&str>, timeout_ms: u64, body: &Value) -> Result<(u16, Value)> {
    let mut path = format!("{SS}?timeout={timeout_ms}");
    if let Some(pos) = pos {
        path.push_str(&format!("&pos={}", enc(pos)));
    }
    client.post(&path, body).await
}

/// A successful response (and its `pos`).
async fn ok(client: &Client, pos: Option<&str>, timeout_ms: u64, body: &Value) -> Result<(Value, String)> {
    let (status, resp) = ss(client, pos, timeout_ms, body).await?;
    ensure!(status == 200, "sliding sync answered {status}: {resp}");
    let pos = resp["pos"].as_str().context("pos")?.to_owned();
    Ok((resp, pos))
}

fn room_ids(resp: &Value) -> Vec<String> {
    let mut ids: Vec<String> = resp["rooms"].as_object().map(|r| r.keys().cloned().collect()).unwrap_or_default();
    ids.sort();
    ids
}

fn texts(room: &Value) -> Vec<String> {
    bodies(room["timeline"].as_array().map(Vec::as_slice).unwrap_or_default())
}

fn has_state(room: &Value, ty: &str, key: &str) -> bool {
    room["required_state"].as_array().is_some_and(|s| s.iter().any(|e| e["type"] == ty && e["state_key"] == key))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_list_arrives_in_activity_order_and_grows_without_repeats() -> Result<()> {
    let server = TestServer::start().await?;
    let (status, versions) = server.anonymous().get("/_matrix/client/versions").await?;
    ensure!(status == 200 && versions["unstable_features"]["org.matrix.simplified_msc3575"] == true, "{versions}");
    let alice = server.register("alice").await?;
    let mut rooms = Vec::new();
    for i in 0..6 {
        let room = alice.create_room(json!({ "name": format!("room {i}") })).await?;
        alice.send_message(&room, &format!("hello {i}")).await?;
        rooms.push(room);
    }
    // Activity: room 2 gets the newest message; a state change in room 4 does not bump it.
    alice.send_message(&rooms[2], "newest").await?;
    let (s, _) = alice
        .put(&format!("/_matrix/client/v3/rooms/{}/state/m.room.topic/", enc(&rooms[4])), &json!({ "topic": "t" }))
        .await?;
    ensure!(s == 200);

    let (first, pos) = ok(&alice, None, 0, &room_list(json!([[0, 2]]))).await?;
    ensure!(first["lists"]["all_rooms"]["count"] == 6, "count of all rooms: {first}");
    let mut expected = vec![rooms[2].clone(), rooms[5].clone(), rooms[4].clone()];
    expected.sort();
    ensure!(room_ids(&first) == expected, "the 3 most active rooms: {:?}", room_ids(&first));
    let newest = &first["rooms"][&rooms[2]];
    ensure!(newest["initial"] == true && newest["name"] == "room 2" && texts(newest) == ["newest"], "{newest}");
    ensure!(newest["limited"] == true && newest["prev_batch"].is_string() && newest["num_live"] == 0, "{newest}");
    ensure!(
        first["rooms"][&rooms[2]]["bump_stamp"].as_i64() > first["rooms"][&rooms[5]]["bump_stamp"].as_i64()
            && first["rooms"][&rooms[5]]["bump_stamp"].as_i64() > first["rooms"][&rooms[4]]["bump_stamp"].as_i64(),
        "bump_stamp follows messages, not state changes"
    );
    for key in ["m.room.create", "m.room.name", "m.room.power_levels", "m.room.join_rules"] {
        ensure!(has_state(newest, key, ""), "required_state has {key}: {newest}");
    }
    ensure!(has_state(newest, "m.room.member", &alice.user_id), "$ME and $LAZY give alice's membership");
    ensure!(!has_state(newest, "m.room.topic", ""), "no topic was set, none is invented: {newest}");
    ensure!(
        first["extensions"]["account_data"]["global"]
            .as_array()
            .is_some_and(|g| g.iter().any(|e| e["type"] == "m.push_rules")),
        "push rules on the first response"
    );

    // Growing the range sends only the rooms not sent yet.
    let (grown, pos2) = ok(&alice, Some(&pos), 0, &room_list(json!([[0, 5]]))).await?;
    let mut rest = vec![rooms[0].clone(), rooms[1].clone(), rooms[3].clone()];
    rest.sort();
    ensure!(room_ids(&grown) == rest, "only the 3 new rooms: {:?}", room_ids(&grown));
    // Nothing new: an immediate answer without rooms.
    let (same, _) = ok(&alice, Some(&pos2), 0, &room_list(json!([[0, 5]]))).await?;
    ensure!(room_ids(&same).is_empty(), "nothing repeated: {same}");
    Ok(())
}

/// A live update that only moves the connection forward (new messages in a room already live)
/// is not stored: its `pos` names the stored state and how far it moved. Every such position stays
/// good, any number of steps back, until the connection's state changes twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_updates_keep_every_position_good_until_the_state_changes_twice() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat", "name": "busy" })).await?;
    ensure!(bob.join(&room).await?.0 == 200);
    alice.send_message(&room, "before").await?;
    let list = |limit: usize| {
        json!({ "conn_id": "busy", "lists": { "all": {
            "ranges": [[0, 9]], "timeline_limit": limit, "required_state": [["m.room.member", "$LAZY"]] } } })
    };
    let (_, mut pos) = ok(&bob, None, 0, &list(10)).await?;
    let mut positions = vec![pos.clone()];
    for i in 0..4 {
        alice.send_message(&room, &format!("live {i}")).await?;
        let (resp, next) = ok(&bob, Some(&pos), 0, &list(10)).await?;
        ensure!(texts(&resp["rooms"][&room]) == [format!("live {i}")], "{resp}");
        pos = next;
        positions.push(pos.clone());
    }
    // Each position given replays exactly what came after it.
    for (i, old) in positions.iter().enumerate() {
        let (resp, _) = ok(&bob, Some(old), 0, &list(10)).await?;
        let expected: Vec<String> = (i..4).map(|j| format!("live {j}")).collect();
        if expected.is_empty() {
            ensure!(room_ids(&resp).is_empty(), "nothing after the newest position: {resp}");
        } else {
            ensure!(texts(&resp["rooms"][&room]) == expected, "replay from position {i}: {resp}");
        }
    }
    // A made-up move (backwards, or with a part too many) is unknown.
    let parts: Vec<&str> = pos.split('.').collect();
    ensure!(parts.len() == 4, "a live update's position says how far it moved: {pos}");
    for bad in [format!("{}.{}.1.{}", parts[0], parts[1], parts[3]), format!("{pos}.1")] {
        let (status, body) = ss(&bob, Some(&bad), 0, &list(10)).await?;
        ensure!(status == 400 && errcode(&body) == "M_UNKNOWN_POS", "{bad}: {status} {body}");
    }

    // A changed request changes the state: it is stored, and after two such changes the
    // positions before them are gone while the newest goes on.
    for (text, limit) in [("changed once", 5), ("changed twice", 4)] {
        alice.send_message(&room, text).await?;
        let (resp, next) = ok(&bob, Some(&pos), 0, &list(limit)).await?;
        ensure!(texts(&resp["rooms"][&room]) == [text], "{resp}");
        pos = next;
    }
    for old in &positions {
        let (status, body) = ss(&bob, Some(old), 0, &list(4)).await?;
        ensure!(status == 400 && errcode(&body) == "M_UNKNOWN_POS", "{old}: {status} {body}");
    }
    alice.send_message(&room, "after").await?;
    let (resp, _) = ok(&bob, Some(&pos), 0, &list(4)).await?;
    ensure!(texts(&resp["rooms"][&room]) == ["after"], "{resp}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_wake_on_news_and_positions_replay_or_are_unknown() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    bob.join(&room).await?;
    let (_, pos) = ok(&bob, None, 0, &room_list(json!([[0, 19]]))).await?;

    // An idle long-poll returns after its timeout with nothing.
    let start = Instant::now();
    let (idle, idle_pos) = ok(&bob, Some(&pos), 500, &room_list(json!([[0, 19]]))).await?;
    ensure!(start.elapsed() >= Duration::from_millis(450) && room_ids(&idle).is_empty(), "{idle}");

    // A message wakes the long-poll at once, with just the new event.
    let poll = {
        let (bob, pos) = (bob.clone(), idle_pos.clone());
        tokio::spawn(async move { ok(&bob, Some(&pos), 20_000, &room_list(json!([[0, 19]]))).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent_at = Instant::now();
    alice.send_message(&room, "wake up").await?;
    let (woken, next) = poll.await??;
    ensure!(sent_at.elapsed() < Duration::from_secs(5), "woken promptly");
    let entry = &woken["rooms"][&room];
    ensure!(texts(entry) == ["wake up"] && entry["limited"] == false && entry["num_live"] == 1, "{entry}");
    ensure!(entry.get("initial").is_none(), "a known room is not initial: {entry}");

    // The client lost that response and replays its previous pos: the same news again.
    let (replayed, _) = ok(&bob, Some(&idle_pos), 0, &room_list(json!([[0, 19]]))).await?;
    ensure!(texts(&replayed["rooms"][&room]) == ["wake up"], "replay: {replayed}");
    // Positions that were never given, of another connection or malformed are unknown.
    for bad in ["zzzz.1", "garbage", "", &next.replace('.', "x")] {
        let (status, body) = ss(&bob, Some(bad), 0, &room_list(json!([[0, 19]]))).await?;
        ensure!(status == 400 && errcode(&body) == "M_UNKNOWN_POS", "{bad:?}: {status} {body}");
    }
    let (status, body) = ss(&alice, Some(&next), 0, &room_list(json!([[0, 19]]))).await?;
    ensure!(status == 400 && errcode(&body) == "M_UNKNOWN_POS", "another user's pos: {body}");
    let mut other_conn = room_list(json!([[0, 19]]));
    other_conn["conn_id"] = "notifications".into();
    let (status, body) = ss(&bob, Some(&next), 0, &other_conn).await?;
    ensure!(status == 400 && errcode(&body) == "M_UNKNOWN_POS", "another connection's pos: {body}");
    // A request without pos starts the connection again: the old positions die.
    ok(&bob, None, 0, &room_list(json!([[0, 19]]))).await?;
    let (status, body) = ss(&bob, Some(&next), 0, &room_list(json!([[0, 19]]))).await?;
    ensure!(status == 400 && errcode(&body) == "M_UNKNOWN_POS", "pos of the replaced connection: {body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_at_the_head_waits_only_when_nothing_it_asks_for_can_be_new() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    for _ in 0..2 {
        let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
        bob.join(&room).await?;
    }
    // The same request again from the head: nothing, after its timeout.
    let (first, pos) = ok(&bob, None, 0, &room_list(json!([[0, 0]]))).await?;
    ensure!(room_ids(&first).len() == 1, "a window of one room: {first}");
    let start = Instant::now();
    let (idle, pos) = ok(&bob, Some(&pos), 300, &room_list(json!([[0, 0]]))).await?;
    ensure!(start.elapsed() >= Duration::from_millis(250) && room_ids(&idle).is_empty(), "{idle}");
    // A wider window from the same position has the other room at once.
    let start = Instant::now();
    let (wider, _) = ok(&bob, Some(&pos), 20_000, &room_list(json!([[0, 1]]))).await?;
    ensure!(start.elapsed() < Duration::from_secs(5), "a changed request waited for news");
    ensure!(room_ids(&wider).len() == 1 && room_ids(&wider) != room_ids(&first), "the room come into range: {wider}");

    // To-device messages beyond what a response carried come with the next request at once.
    let encryption = |since: Option<&str>| json!({ "conn_id": "encryption", "extensions": { "to_device": { "enabled": true, "limit": 1, "since": since } } });
    let (first, pos) = ok(&bob, None, 0, &encryption(None)).await?;
    let since = first["extensions"]["to_device"]["next_batch"].as_str().context("next_batch")?.to_owned();
    for i in 0..2 {
        let body = json!({ "messages": { bob.user_id.clone(): { bob.device_id.clone(): { "i": i } } } });
        ensure!(alice.put(&format!("/_matrix/client/v3/sendToDevice/m.test/w{i}"), &body).await?.0 == 200);
    }
    let (page, pos) = ok(&bob, Some(&pos), 20_000, &encryption(Some(&since))).await?;
    ensure!(page["extensions"]["to_device"]["events"][0]["content"]["i"] == 0, "{page}");
    let since = page["extensions"]["to_device"]["next_batch"].as_str().context("next_batch")?.to_owned();
    let start = Instant::now();
    let (page, _) = ok(&bob, Some(&pos), 20_000, &encryption(Some(&since))).await?;
    ensure!(start.elapsed() < Duration::from_secs(5), "an undelivered to-device message waited for news");
    ensure!(page["extensions"]["to_device"]["events"][0]["content"]["i"] == 1, "{page}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_out_of_range_come_back_with_a_delta_and_membership_changes_show() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let quiet = alice.create_room(json!({ "preset": "public_chat", "name": "quiet" })).await?;
    let busy = alice.create_room(json!({ "preset": "public_chat", "name": "busy" })).await?;
    bob.join(&quiet).await?;
    bob.join(&busy).await?;
    alice.send_message(&busy, "busy 0").await?;
    let mut body = room_list(json!([[0, 0]]));
    body["lists"]["all_rooms"]["timeline_limit"] = 3.into();
    let (first, pos) = ok(&bob, None, 0, &body).await?;
    ensure!(room_ids(&first) == [busy.clone()], "only the top room: {first}");
    let (_, pos) = ok(&bob, Some(&pos), 0, &{
        let mut b = body.clone();
        b["lists"]["all_rooms"]["ranges"] = json!([[0, 1]]);
        b
    })
    .await?;

    // `quiet` drops out of the window [0,0]; it gets 5 messages while out of range.
    for i in 0..5 {
        alice.send_message(&quiet, &format!("quiet {i}")).await?;
    }
    alice.send_message(&busy, "busy 1").await?;
    let (_, pos) = ok(&bob, Some(&pos), 0, &body).await?;
    // Back in range (it is the newest now): a delta, limited to 3, not initial.
    alice.send_message(&quiet, "quiet 5").await?;
    let (back, pos) = ok(&bob, Some(&pos), 0, &body).await?;
    let entry = &back["rooms"][&quiet];
    ensure!(entry.get("initial").is_none(), "a room sent before is not initial again: {entry}");
    ensure!(texts(entry) == ["quiet 3", "quiet 4", "quiet 5"] && entry["limited"] == true, "{entry}");
    // prev_batch continues backwards with /messages.
    let prev = entry["prev_batch"].as_str().context("prev_batch")?;
    let (_, page) =
        bob.get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=2&from={}", enc(&quiet), enc(prev))).await?;
    ensure!(bodies(page["chunk"].as_array().context("chunk")?) == ["quiet 2", "quiet 1"], "{page}");

    // Bob is kicked from `quiet`: the leave arrives and nothing after it.
    let (s, _) = alice
        .post(&format!("/_matrix/client/v3/rooms/{}/kick", enc(&quiet)), &json!({ "user_id": bob.user_id }))
        .await?;
    ensure!(s == 200);
    alice.send_message(&quiet, "after the kick").await?;
    let (kicked, _) = ok(&bob, Some(&pos), 0, &body).await?;
    let entry = &kicked["rooms"][&quiet];
    let tl = entry["timeline"].as_array().context("timeline")?;
    ensure!(tl.iter().any(|e| e["type"] == "m.room.member" && e["content"]["membership"] == "leave"), "{entry}");
    ensure!(!texts(entry).contains(&"after the kick".to_owned()), "nothing after the kick leaks: {entry}");

    // A room bob newly joins is initial.
    let third = alice.create_room(json!({ "preset": "public_chat", "name": "third" })).await?;
    alice.send_message(&third, "before bob").await?;
    bob.join(&third).await?;
    let (joined, _) = ok(&bob, Some(&pos), 0, &body).await?;
    ensure!(joined["rooms"][&third]["initial"] == true && joined["rooms"][&third]["name"] == "third", "{joined}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_state_wildcards_me_lazy_members_and_growing_configs() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let carol = server.register("carol").await?;
    let room = alice.create_room(json!({ "preset": "public_chat", "name": "R", "topic": "T" })).await?;
    bob.join(&room).await?;
    carol.join(&room).await?;
    alice.send_message(&room, "from alice").await?;
    let sub = |required: Value, limit: u64| json!({ "conn_id": "c", "room_subscriptions": { room.clone(): { "required_state": required, "timeline_limit": limit } } });

    // Exact and $ME.
    let (resp, pos) = ok(&bob, None, 0, &sub(json!([["m.room.name", ""], ["m.room.member", "$ME"]]), 1)).await?;
    let entry = &resp["rooms"][&room];
    ensure!(has_state(entry, "m.room.name", "") && has_state(entry, "m.room.member", &bob.user_id), "{entry}");
    ensure!(!has_state(entry, "m.room.topic", "") && !has_state(entry, "m.room.member", &alice.user_id), "{entry}");
    // A grown config returns at once, with the new state only wanted now.
    let start = Instant::now();
    let (grown, pos) = ok(
        &bob,
        Some(&pos),
        10_000,
        &sub(json!([["m.room.name", ""], ["m.room.member", "$ME"], ["m.room.topic", ""]]), 1),
    )
    .await?;
    ensure!(start.elapsed() < Duration::from_secs(5), "an expanded config answers immediately");
    ensure!(has_state(&grown["rooms"][&room], "m.room.topic", ""), "{grown}");
    // Type wildcard.
    let (resp, _) = ok(&bob, Some(&pos), 0, &sub(json!([["m.room.member", "*"]]), 1)).await?;
    let members = &resp["rooms"][&room];
    ensure!(
        [&alice.user_id, &bob.user_id, &carol.user_id].iter().all(|u| has_state(members, "m.room.member", u)),
        "{members}"
    );
    // Everything.
    let (resp, _) = ok(&carol, None, 0, &sub(json!([["*", "*"]]), 1)).await?;
    ensure!(resp["rooms"][&room]["required_state"].as_array().map_or(0, Vec::len) >= 8, "all state: {resp}");

    // $LAZY: the senders of the timeline, once per connection, again on another connection.
    let lazy = sub(json!([["m.room.member", "$LAZY"]]), 1);
    let (resp, pos) = ok(&carol, None, 0, &lazy).await?;
    ensure!(has_state(&resp["rooms"][&room], "m.room.member", &alice.user_id), "alice sent a message: {resp}");
    alice.send_message(&room, "again").await?;
    let (resp, pos) = ok(&carol, Some(&pos), 0, &lazy).await?;
    ensure!(!has_state(&resp["rooms"][&room], "m.room.member", &alice.user_id), "sent once per connection: {resp}");
    bob.send_message(&room, "bob speaks").await?;
    let (resp, _) = ok(&carol, Some(&pos), 0, &lazy).await?;
    ensure!(has_state(&resp["rooms"][&room], "m.room.member", &bob.user_id), "a new sender's membership: {resp}");
    let mut other = lazy.clone();
    other["conn_id"] = "other".into();
    let (resp, _) = ok(&carol, None, 0, &other).await?;
    ensure!(has_state(&resp["rooms"][&room], "m.room.member", &bob.user_id), "per connection: {resp}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_heroes_counts_invites_and_filters() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let eve = server.register("eve").await?;
    // An unnamed DM (heroes), an encrypted named room, a space, an invite, and an invite from an ignored user.
    let dm = alice.create_room(json!({ "is_direct": true, "invite": [bob.user_id] })).await?;
    bob.join(&dm).await?;
    let (s, _) = bob
        .put(
            &format!("/_matrix/client/v3/user/{}/account_data/m.direct", enc(&bob.user_id)),
            &json!({ alice.user_id.clone(): [dm] }),
        )
        .await?;
    ensure!(s == 200);
    let secret = bob.create_room(json!({ "name": "secret", "initial_state": [{ "type": "m.room.encryption", "state_key": "", "content": { "algorithm": "m.megolm.v1.aes-sha2" } }] })).await?;
    let space = bob.create_room(json!({ "name": "space", "creation_content": { "type": "m.space" } })).await?;
    let invite = alice.create_room(json!({ "name": "invitation", "invite": [bob.user_id] })).await?;
    let spam = eve.create_room(json!({ "name": "spam", "invite": [bob.user_id] })).await?;
    let (s, _) = bob
        .put(
            &format!("/_matrix/client/v3/user/{}/account_data/m.ignored_user_list", enc(&bob.user_id)),
            &json!({ "ignored_users": { eve.user_id.clone(): {} } }),
        )
        .await?;
    ensure!(s == 200);
    let (s, _) = bob
        .put(
            &format!("/_matrix/client/v3/user/{}/rooms/{}/tags/m.favourite", enc(&bob.user_id), enc(&secret)),
            &json!({}),
        )
        .await?;
    ensure!(s == 200);

    let list = |filters: Value| json!({ "lists": { "l": { "ranges": [[0, 20]], "timeline_limit": 0, "required_state": [], "filters": filters } } });
    let (all, _) = ok(&bob, None, 0, &list(json!({}))).await?;
    ensure!(all["lists"]["l"]["count"] == 4, "dm, secret, space, invite; not the ignored user's invite: {all}");
    ensure!(all["rooms"].get(&spam).is_none(), "ignored inviter's room hidden");
    let d = &all["rooms"][&dm];
    ensure!(d["is_dm"] == true && d.get("name").is_none() && d["joined_count"] == 2, "{d}");
    ensure!(d["heroes"].as_array().is_some_and(|h| h.len() == 1 && h[0]["user_id"] == alice.user_id), "heroes: {d}");
    let inv = &all["rooms"][&invite];
    let stripped = inv["invite_state"].as_array().context("invite_state")?;
    ensure!(
        stripped.iter().any(|e| e["type"] == "m.room.member"
            && e["state_key"] == bob.user_id
            && e["content"]["membership"] == "invite"),
        "the invite state includes bob's own membership: {inv}"
    );
    ensure!(inv["name"] == "invitation", "{inv}");
    let count = |filters: Value| {
        let bob = bob.clone();
        async move { ok(&bob, None, 0, &list(filters)).await.map(|(r, _)| r["lists"]["l"]["count"].clone()) }
    };
    ensure!(count(json!({ "is_dm": true })).await? == 1);
    ensure!(count(json!({ "is_encrypted": true })).await? == 1);
    ensure!(count(json!({ "is_invite": true })).await? == 1);
    ensure!(count(json!({ "is_invite": false })).await? == 3);
    ensure!(count(json!({ "room_types": ["m.space"] })).await? == 1);
    let (spaces, _) = ok(&bob, None, 0, &list(json!({ "room_types": ["m.space"] }))).await?;
    ensure!(room_ids(&spaces) == [space.clone()], "the space: {spaces}");
    ensure!(count(json!({ "not_room_types": ["m.space"] })).await? == 3);
    ensure!(count(json!({ "room_types": [null] })).await? == 3);
    ensure!(count(json!({ "tags": ["m.favourite"] })).await? == 1);
    ensure!(count(json!({ "not_tags": ["m.favourite"] })).await? == 3);

    // What the filters read is kept between requests (a room's type and encryption, the user's
    // m.direct), and follows changes: encryption turned on in the DM, the DM gone from m.direct.
    let (s, _) = alice
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.encryption/", enc(&dm)),
            &json!({ "algorithm": "m.megolm.v1.aes-sha2" }),
        )
        .await?;
    ensure!(s == 200);
    ensure!(count(json!({ "is_encrypted": true })).await? == 2, "the DM is encrypted now");
    let (s, _) =
        bob.put(&format!("/_matrix/client/v3/user/{}/account_data/m.direct", enc(&bob.user_id)), &json!({})).await?;
    ensure!(s == 200);
    ensure!(count(json!({ "is_dm": true })).await? == 0, "no DM in m.direct any more");
    ensure!(count(json!({ "is_encrypted": true })).await? == 2);

    // Subscriptions to rooms bob cannot see are ignored, not leaked.
    let private = alice.create_room(json!({ "name": "private" })).await?;
    let (resp, _) = ok(&bob, None, 0, &json!({ "room_subscriptions": { private.clone(): { "timeline_limit": 5 }, dm.clone(): { "timeline_limit": 5 } } })).await?;
    ensure!(room_ids(&resp) == [dm.clone()], "only the visible room: {resp}");
    Ok(())
}

/// Counts and heroes stay right on a live connection while other users join and leave between
/// messages (the room's member summary is shared by its listeners and kept between memberships),
/// and each listener's unread count is its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_counts_heroes_and_unread_follow_memberships() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let carol = server.register("carol").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    bob.join(&room).await?;
    let body = json!({ "lists": { "l": { "ranges": [[0, 9]], "timeline_limit": 1, "required_state": [] } } });
    let heroes = |entry: &Value| -> Vec<String> {
        let mut ids: Vec<String> = entry["heroes"]
            .as_array()
            .map(|h| h.iter().filter_map(|m| m["user_id"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        ids.sort();
        ids
    };
    let (first, bob_pos) = ok(&bob, None, 0, &body).await?;
    let (_, alice_pos) = ok(&alice, None, 0, &body).await?;
    let entry = &first["rooms"][&room];
    ensure!(entry["joined_count"] == 2 && heroes(entry) == [alice.user_id.clone()], "{entry}");

    // A message: both listeners read the room's summary; only bob has an unread message.
    alice.send_message(&room, "one").await?;
    let (resp, bob_pos) = ok(&bob, Some(&bob_pos), 5_000, &body).await?;
    ensure!(resp["rooms"][&room]["notification_count"] == 1, "{resp}");
    let (resp, alice_pos) = ok(&alice, Some(&alice_pos), 5_000, &body).await?;
    ensure!(resp["rooms"][&room]["notification_count"] == 0, "the sender's own message: {resp}");

    // Carol joins: the summary read before no longer holds.
    carol.join(&room).await?;
    let (resp, bob_pos) = ok(&bob, Some(&bob_pos), 5_000, &body).await?;
    let entry = &resp["rooms"][&room];
    ensure!(entry["joined_count"] == 3, "{resp}");
    ensure!(heroes(entry) == [alice.user_id.clone(), carol.user_id.clone()], "{entry}");
    let (resp, alice_pos) = ok(&alice, Some(&alice_pos), 5_000, &body).await?;
    let entry = &resp["rooms"][&room];
    ensure!(entry["joined_count"] == 3, "{resp}");
    ensure!(heroes(entry) == [bob.user_id.clone(), carol.user_id.clone()], "not alice's own hero: {entry}");

    // More messages, then carol leaves between two of them.
    alice.send_message(&room, "two").await?;
    let (resp, bob_pos) = ok(&bob, Some(&bob_pos), 5_000, &body).await?;
    ensure!(resp["rooms"][&room]["notification_count"] == 2 && texts(&resp["rooms"][&room]) == ["two"], "{resp}");
    let (s, _) = carol.post(&format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)), &json!({})).await?;
    ensure!(s == 200);
    alice.send_message(&room, "three").await?;
    let (resp, _) = ok(&bob, Some(&bob_pos), 5_000, &body).await?;
    let entry = &resp["rooms"][&room];
    ensure!(entry["joined_count"] == 2 && heroes(entry) == [alice.user_id.clone()], "{resp}");
    ensure!(entry["notification_count"] == 3, "{resp}");
    let (resp, _) = ok(&alice, Some(&alice_pos), 5_000, &body).await?;
    ensure!(resp["rooms"][&room]["joined_count"] == 2, "{resp}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extensions_to_device_e2ee_receipts_typing_account_data() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    bob.join(&room).await?;
    let encryption = |since: Option<&str>| {
        let mut to_device = json!({ "enabled": true, "limit": 60 });
        if let Some(s) = since {
            to_device["since"] = s.into();
        }
        json!({ "conn_id": "encryption", "extensions": { "to_device": to_device, "e2ee": { "enabled": true } } })
    };
    let (first, pos) = ok(&bob, None, 0, &encryption(None)).await?;
    ensure!(first["extensions"]["e2ee"]["device_one_time_keys_count"].is_object(), "{first}");
    ensure!(first["extensions"]["e2ee"]["device_unused_fallback_key_types"].is_array(), "{first}");
    for i in 0..150 {
        let body = json!({ "messages": { bob.user_id.clone(): { bob.device_id.clone(): { "i": i } } } });
        ensure!(alice.put(&format!("/_matrix/client/v3/sendToDevice/m.test/t{i}"), &body).await?.0 == 200);
    }
    // 60 at a time (the requested limit), in order; a lost response is delivered again.
    let since = first["extensions"]["to_device"]["next_batch"].as_str().context("next_batch")?.to_owned();
    let (page1, pos) = ok(&bob, Some(&pos), 0, &encryption(Some(&since))).await?;
    let events = page1["extensions"]["to_device"]["events"].as_array().context("events")?;
    ensure!(events.len() == 60 && events[0]["content"]["i"] == 0, "{}", events.len());
    let next = page1["extensions"]["to_device"]["next_batch"].as_str().context("next_batch")?.to_owned();
    let (again, pos) = ok(&bob, Some(&pos), 0, &encryption(Some(&since))).await?;
    ensure!(again["extensions"]["to_device"]["events"] == page1["extensions"]["to_device"]["events"], "replayed since");
    let mut seen = 60;
    let mut since = next;
    let mut pos = pos;
    while seen < 150 {
        let (page, p) = ok(&bob, Some(&pos), 0, &encryption(Some(&since))).await?;
        let events = page["extensions"]["to_device"]["events"].as_array().context("events")?;
        ensure!(!events.is_empty() && events[0]["content"]["i"] == seen, "in order from {seen}: {page}");
        seen += events.len();
        since = page["extensions"]["to_device"]["next_batch"].as_str().context("next_batch")?.to_owned();
        pos = p;
    }
    ensure!(seen == 150, "none twice: {seen}");
    // Device lists: alice (who shares a room with bob) deletes a device: bob hears `changed`.
    let (_, pos_before) = ok(&bob, Some(&pos), 0, &encryption(Some(&since))).await?;
    let phone = server.login("alice").await?;
    ensure!(phone.post("/_matrix/client/v3/logout", &json!({})).await?.0 == 200);
    let (after, _) = ok(&bob, Some(&pos_before), 5_000, &encryption(Some(&since))).await?;
    let changed = after["extensions"]["e2ee"]["device_lists"]["changed"].as_array().context("changed")?;
    ensure!(changed.iter().any(|u| *u == alice.user_id), "alice's device list changed: {after}");

    // Receipts, typing and account data through the room list connection.
    let msg = alice.send_message(&room, "read me").await?;
    let (_, pos) = ok(&bob, None, 0, &room_list(json!([[0, 9]]))).await?;
    let (s, _) = alice
        .post(&format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(&room), enc(&msg)), &json!({}))
        .await?;
    ensure!(s == 200);
    let (s, _) = alice
        .put(
            &format!("/_matrix/client/v3/rooms/{}/typing/{}", enc(&room), enc(&alice.user_id)),
            &json!({ "typing": true, "timeout": 10000 }),
        )
        .await?;
    ensure!(s == 200);
    let (s, _) = bob
        .put(&format!("/_matrix/client/v3/user/{}/rooms/{}/tags/u.work", enc(&bob.user_id), enc(&room)), &json!({}))
        .await?;
    ensure!(s == 200);
    let (resp, _) = ok(&bob, Some(&pos), 0, &room_list(json!([[0, 9]]))).await?;
    let ext = &resp["extensions"];
    ensure!(ext["receipts"]["rooms"][&room]["content"][&msg]["m.read"][&alice.user_id].is_object(), "receipt: {ext}");
    ensure!(ext["typing"]["rooms"][&room]["content"]["user_ids"] == json!([alice.user_id]), "typing: {ext}");
    ensure!(
        ext["account_data"]["rooms"][&room].as_array().is_some_and(|a| a.iter().any(|e| e["type"] == "m.tag")),
        "tags: {ext}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_store_nothing() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let huge_lists: serde_json::Map<String, Value> =
        (0..101).map(|i| (format!("l{i}"), json!({ "ranges": [[0, 1]] }))).collect();
    let cases = [
        (json!({ "lists": { "a": { "ranges": [[5, 1]] } } }), "M_INVALID_PARAM"),
        (json!({ "lists": { "a": { "ranges": [[-1, 1]] } } }), "M_INVALID_PARAM"),
        (json!({ "lists": { "a": { "ranges": [[0]] } } }), "M_INVALID_PARAM"),
        (json!({ "lists": { "a": { "ranges": "0-10" } } }), "M_BAD_JSON"),
        (json!({ "lists": Value::Object(huge_lists) }), "M_INVALID_PARAM"),
        (json!({ "lists": { "a": { "ranges": [[0, 1]], "timeline_limit": 5000 } } }), "M_INVALID_PARAM"),
        (json!({ "lists": { "a": { "ranges": [[0, 1]], "filters": { "is_awesome": true } } } }), "M_INVALID_PARAM"),
        (json!({ "lists": { "a": { "ranges": [[0, 1]], "required_state": [["m.room.name"]] } } }), "M_BAD_JSON"),
        (json!({ "conn_id": "x".repeat(65) }), "M_INVALID_PARAM"),
        (json!({ "conn_id": 7 }), "M_BAD_JSON"),
        (json!({ "room_subscriptions": { "not a room": {} } }), "M_INVALID_PARAM"),
        (json!([1, 2, 3]), "M_BAD_JSON"),
    ];
    for (body, code) in cases {
        let (status, resp) = ss(&alice, None, 0, &body).await?;
        ensure!(status == 400 && errcode(&resp) == code, "{body}: {status} {resp}");
    }
    let (status, resp) = alice.raw(reqwest::Method::POST, &format!("{SS}?timeout=0"), b"{not json".to_vec()).await?;
    ensure!(status == 400 && errcode(&resp) == "M_NOT_JSON", "{status} {resp}");
    let (status, resp) = ss(&server.anonymous(), None, 0, &json!({})).await?;
    ensure!(status == 401 && errcode(&resp) == "M_MISSING_TOKEN", "{status} {resp}");
    let (status, resp) = alice.post(&format!("{SS}?timeout=soon"), &json!({})).await?;
    ensure!(status == 400 && errcode(&resp) == "M_INVALID_PARAM", "{status} {resp}");
    // None of these created a connection: a pos for conn "" is still unknown after them.
    let (status, resp) = ss(&alice, Some("abc.1"), 0, &json!({})).await?;
    ensure!(status == 400 && errcode(&resp) == "M_UNKNOWN_POS", "{status} {resp}");
    // Unknown extensions are ignored.
    let (status, resp) =
        ss(&alice, None, 0, &json!({ "extensions": { "io.example.future": { "enabled": true } } })).await?;
    ensure!(status == 200, "{status} {resp}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_room_of_the_first_window_carries_its_name() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let mut rooms = Vec::new();
    for name in ["A", "B", "C"] {
        let room = bob.create_room(json!({ "preset": "public_chat", "name": name })).await?;
        alice.join(&room).await?;
        bob.send_message(&room, &format!("hello from {name}")).await?;
        rooms.push(room);
    }
    let (first, _) = ok(&alice, None, 0, &room_list(json!([[0, 19]]))).await?;
    for (room, name) in rooms.iter().zip(["A", "B", "C"]) {
        let entry = &first["rooms"][room];
        ensure!(entry["name"] == name && has_state(entry, "m.room.name", ""), "{name}: {entry}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_and_typing_cover_the_lists_and_subscriptions_asked_for() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let mut rooms = Vec::new();
    for name in ["older", "newer"] {
        let room = alice.create_room(json!({ "preset": "public_chat", "name": name })).await?;
        ensure!(bob.join(&room).await?.0 == 200);
        rooms.push(room);
    }
    for room in &rooms {
        let msg = alice.send_message(room, "read me").await?;
        let receipt = format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(room), enc(&msg));
        ensure!(alice.post(&receipt, &json!({})).await?.0 == 200);
        let typing = format!("/_matrix/client/v3/rooms/{}/typing/{}", enc(room), enc(&alice.user_id));
        ensure!(alice.put(&typing, &json!({ "typing": true, "timeout": 20000 })).await?.0 == 200);
    }
    let (older, newer) = (&rooms[0], &rooms[1]);
    // The list's range holds the newer room only; the older one is subscribed.
    let request = |receipts: Value, typing: Value| {
        json!({
            "conn_id": "scoped",
            "lists": { "newest": { "ranges": [[0, 0]], "timeline_limit": 1, "required_state": [] } },
            "room_subscriptions": { older: { "timeline_limit": 1, "required_state": [] } },
            "extensions": { "receipts": receipts, "typing": typing },
        })
    };
    let covered = |resp: &Value, ext: &str| -> Vec<String> {
        let mut ids: Vec<String> =
            resp["extensions"][ext]["rooms"].as_object().map(|r| r.keys().cloned().collect()).unwrap_or_default();
        ids.sort();
        ids
    };
    let mut both = vec![older.clone(), newer.clone()];
    both.sort();

    let (resp, _) = ok(
        &bob,
        None,
        0,
        &request(
            json!({ "enabled": true, "lists": ["newest"], "rooms": [] }),
            json!({ "enabled": true, "lists": [], "rooms": ["*"] }),
        ),
    )
    .await?;
    ensure!(room_ids(&resp) == both, "both rooms are in the response: {resp}");
    ensure!(covered(&resp, "receipts") == [newer.clone()], "receipts for the list only: {resp}");
    ensure!(covered(&resp, "typing") == [older.clone()], "typing for the subscription only: {resp}");

    // A subscription named explicitly; a list that does not exist covers nothing.
    let (resp, _) = ok(
        &bob,
        None,
        0,
        &request(
            json!({ "enabled": true, "lists": ["nope"], "rooms": [older] }),
            json!({ "enabled": true, "lists": ["*"], "rooms": [] }),
        ),
    )
    .await?;
    ensure!(covered(&resp, "receipts") == [older.clone()], "receipts for the named subscription: {resp}");
    ensure!(covered(&resp, "typing") == [newer.clone()], "typing for every list: {resp}");

    // Neither given: everything in the response (the default, as Synapse).
    let (resp, _) = ok(&bob, None, 0, &request(json!({ "enabled": true }), json!({ "enabled": true }))).await?;
    ensure!(covered(&resp, "receipts") == both && covered(&resp, "typing") == both, "{resp}");

    // Malformed scopes are refused.
    let (status, resp) =
        ss(&bob, None, 0, &request(json!({ "enabled": true, "lists": "newest" }), json!({ "enabled": true }))).await?;
    ensure!(status == 400 && errcode(&resp) == "M_BAD_JSON", "{status} {resp}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_keeps_twenty_connections_and_drops_the_least_recently_used() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let other_device = server.login("alice").await?;
    let body = |conn: &str| json!({ "conn_id": conn, "lists": { "all": { "ranges": [[0, 9]], "timeline_limit": 1 } } });
    let (_, other_pos) = ok(&other_device, None, 0, &body("c00")).await?;
    let mut positions = Vec::new();
    for i in 0..25 {
        let conn = format!("c{i:02}");
        let (_, pos) = ok(&alice, None, 0, &body(&conn)).await?;
        positions.push((conn, pos));
    }
    // Asking with a position that is still known and has no news stores nothing, so the checks
    // below do not change which connections are kept.
    let mut unknown = Vec::new();
    for (conn, pos) in &positions {
        let (status, resp) = ss(&alice, Some(pos), 0, &body(conn)).await?;
        match status {
            200 => {}
            400 if errcode(&resp) == "M_UNKNOWN_POS" => unknown.push(conn.clone()),
            _ => anyhow::bail!("{conn}: {status} {resp}"),
        }
    }
    ensure!(unknown.len() == 5, "25 connections, 20 kept: unknown {unknown:?}");
    ensure!(!unknown.contains(&"c24".to_owned()), "the newest connection is kept: {unknown:?}");
    // Another device's connections are its own.
    let (status, resp) = ss(&other_device, Some(&other_pos), 0, &body("c00")).await?;
    ensure!(status == 200, "the other device's connection: {status} {resp}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_larger_timeline_limit_expands_a_known_room_once() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let room = alice.create_room(json!({ "preset": "private_chat", "name": "history" })).await?;
    for i in 0..6 {
        alice.send_message(&room, &format!("message {i}")).await?;
    }
    let list = json!({ "ranges": [[0, 9]], "timeline_limit": 1, "required_state": [["m.room.name", ""]] });
    let with_subscription = |limit: usize| {
        json!({
            "conn_id": "expand",
            "lists": { "all": list },
            "room_subscriptions": { &room: { "timeline_limit": limit, "required_state": [["m.room.name", ""]] } },
        })
    };
    let list_only = json!({ "conn_id": "expand", "lists": { "all": list } });

    let (first, pos) = ok(&alice, None, 0, &list_only).await?;
    ensure!(texts(&first["rooms"][&room]) == ["message 5"], "{first}");

    // Opening the room (Element X subscribes with timeline_limit 20): the newest events at once.
    let (opened, pos) = ok(&alice, Some(&pos), 0, &with_subscription(4)).await?;
    let entry = &opened["rooms"][&room];
    ensure!(texts(entry) == ["message 2", "message 3", "message 4", "message 5"], "expanded timeline: {entry}");
    ensure!(entry["unstable_expanded_timeline"] == true && entry["limited"] == true, "{entry}");
    ensure!(entry.get("initial").is_none(), "a known room is not initial: {entry}");
    ensure!(entry["required_state"].as_array().is_some_and(Vec::is_empty), "no state changed: {entry}");
    ensure!(entry["prev_batch"].is_string(), "{entry}");

    // Asked again with the same limit, and after the subscription is dropped and made again,
    // nothing is resent: the client still has those events.
    let (again, pos) = ok(&alice, Some(&pos), 0, &with_subscription(4)).await?;
    ensure!(again["rooms"].get(&room).is_none(), "{again}");
    let (_, pos) = ok(&alice, Some(&pos), 0, &list_only).await?;
    let (resubscribed, pos) = ok(&alice, Some(&pos), 0, &with_subscription(4)).await?;
    ensure!(resubscribed["rooms"].get(&room).is_none(), "{resubscribed}");

    // A larger limit still expands, and a new message afterwards is an ordinary delta.
    let (more, pos) = ok(&alice, Some(&pos), 0, &with_subscription(10)).await?;
    ensure!(texts(&more["rooms"][&room]).len() == 6 && more["rooms"][&room]["limited"] == true, "{more}");
    alice.send_message(&room, "new").await?;
    let (delta, _) = ok(&alice, Some(&pos), 0, &with_subscription(10)).await?;
    let entry = &delta["rooms"][&room];
    ensure!(texts(entry) == ["new"] && entry.get("unstable_expanded_timeline").is_none(), "{entry}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_expires_and_a_used_one_does_not() -> Result<()> {
    let server = TestServer::start_with("[limits]\nsliding_sync_connection_idle_ms = 1500\n").await?;
    let alice = server.register("alice").await?;
    alice.create_room(json!({ "name": "r" })).await?;
    let body = json!({ "conn_id": "idle", "lists": { "all": { "ranges": [[0, 9]], "timeline_limit": 1 } } });
    let (_, mut pos) = ok(&alice, None, 0, &body).await?;
    // Requests without news still count as use (the row is touched at least four times per
    // expiry period, which may hand out a new `pos`), so this connection lives past 1.5 s.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (resp, next) = ok(&alice, Some(&pos), 0, &body).await?;
        ensure!(resp["rooms"].as_object().is_none_or(|r| r.is_empty()), "{resp}");
        pos = next;
    }
    // Left alone for longer than the expiry, it is forgotten; a new connection starts afresh.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let (status, resp) = ss(&alice, Some(&pos), 0, &body).await?;
    ensure!(status == 400 && errcode(&resp) == "M_UNKNOWN_POS", "{status} {resp}");
    let (fresh, _) = ok(&alice, None, 0, &body).await?;
    ensure!(fresh["lists"]["all"]["count"] == 1, "{fresh}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kicked_user_gets_the_receipts_of_the_timeline_up_to_the_kick() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat", "name": "strict" })).await?;
    ensure!(bob.join(&room).await?.0 == 200);
    let msg = alice.send_message(&room, "last words").await?;
    let receipt = format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(&room), enc(&msg));
    ensure!(alice.post(&receipt, &json!({})).await?.0 == 200);
    let kick = json!({ "user_id": bob.user_id });
    ensure!(alice.post(&format!("/_matrix/client/v3/rooms/{}/kick", enc(&room)), &kick).await?.0 == 200);
    let body = json!({
        "conn_id": "kicked",
        "lists": { "all": { "ranges": [[0, 9]], "timeline_limit": 5, "required_state": [] } },
        "extensions": { "receipts": { "enabled": true }, "typing": { "enabled": true } },
    });
    let (resp, _) = ok(&bob, None, 0, &body).await?;
    ensure!(texts(&resp["rooms"][&room]).contains(&"last words".to_owned()), "the room up to the kick: {resp}");
    let receipts = &resp["extensions"]["receipts"]["rooms"][&room]["content"][&msg]["m.read"];
    ensure!(receipts[&alice.user_id].is_object(), "alice's receipt on the last message bob saw: {resp}");
    Ok(())
}
