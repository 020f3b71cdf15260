//! Myelin and a real Synapse (from PyPI) federating on one machine, driven only through their
//! client APIs: a Synapse user joins a room that lives on Myelin and a Myelin user joins a room
//! that lives on Synapse; messages cross both ways; leaving is seen on the other side.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use myelin_e2e::{Client, SynapsePeer, TestServer, bodies, check_whole_history, enc, room_path};
use serde_json::json;

/// Slack for a message to cross (Synapse's sender batches; CI machines are slow).
const CROSSING: Duration = Duration::from_secs(30);

async fn wait_until<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<String>>>,
{
    let deadline = Instant::now() + CROSSING;
    loop {
        let last = match check().await? {
            None => return Ok(()),
            Some(last) => last,
        };
        if Instant::now() > deadline {
            bail!("{what}: still {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn sees_message(client: &Client, room: &str, body: &str, who: &str) -> Result<()> {
    wait_until(&format!("{who} sees {body:?}"), || async {
        let seen = bodies(&client.all_messages(room, 50).await?);
        Ok((!seen.iter().any(|b| b == body)).then(|| format!("{seen:?}")))
    })
    .await
}

async fn sees_members(client: &Client, room: &str, expected: &[String], who: &str) -> Result<()> {
    let mut expected = expected.to_vec();
    expected.sort();
    wait_until(&format!("{who} sees members {expected:?}"), || async {
        let (status, body) = client.get(&room_path(room, "joined_members")).await?;
        let mut members: Vec<String> =
            body["joined"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        members.sort();
        Ok((status != 200 || members != expected).then(|| format!("{status} {members:?}")))
    })
    .await
}

async fn join_via(client: &Client, room: &str, server: &str) -> Result<(u16, serde_json::Value)> {
    client.post(&format!("/_matrix/client/v3/join/{}?server_name={}", enc(room), enc(server)), &json!({})).await
}

async fn myelin_and_synapse_share_rooms(version: &str) -> Result<()> {
    let myelin = TestServer::start_federating().await?;
    let synapse = SynapsePeer::start().await?;
    let alice = myelin.register("alice").await?;
    let sam = synapse.register("sam").await?;
    let logs = || format!("Myelin's log:\n{}\nSynapse's log:\n{}", myelin.log(), synapse.log());

    // A room on Myelin, joined from Synapse.
    let room = alice.create_room(json!({ "preset": "public_chat", "room_version": version })).await?;
    let (status, body) = join_via(&sam, &room, myelin.server_name()).await?;
    if status != 200 {
        bail!("Synapse user joining a Myelin room: {status} {body}\n{}", logs());
    }
    let members = vec![myelin.user_id("alice"), synapse.user_id("sam")];
    sees_members(&alice, &room, &members, "Myelin").await.with_context(logs)?;
    sees_members(&sam, &room, &members, "Synapse").await.with_context(logs)?;
    alice.send_message(&room, "from Myelin").await?;
    sees_message(&sam, &room, "from Myelin", "Synapse").await.with_context(logs)?;
    sam.send_message(&room, "from Synapse").await?;
    sees_message(&alice, &room, "from Synapse", "Myelin").await.with_context(logs)?;

    // A room on Synapse, joined from Myelin.
    let room = sam.create_room(json!({ "preset": "public_chat", "room_version": version })).await?;
    let (status, body) = join_via(&alice, &room, &synapse.server_name()).await?;
    if status != 200 {
        bail!("Myelin user joining a Synapse room: {status} {body}\n{}", logs());
    }
    sees_members(&sam, &room, &members, "Synapse").await.with_context(logs)?;
    sees_members(&alice, &room, &members, "Myelin").await.with_context(logs)?;
    sam.send_message(&room, "hello from Synapse").await?;
    sees_message(&alice, &room, "hello from Synapse", "Myelin").await.with_context(logs)?;
    alice.send_message(&room, "hello from Myelin").await?;
    sees_message(&sam, &room, "hello from Myelin", "Synapse").await.with_context(logs)?;

    // Leaving is seen by the other server.
    let (status, body) = alice.post(&room_path(&room, "leave"), &json!({})).await?;
    assert_eq!(status, 200, "leave: {body}");
    sees_members(&sam, &room, &[synapse.user_id("sam")], "Synapse").await.with_context(logs)?;
    Ok(())
}

#[tokio::test]
async fn myelin_and_synapse_share_version_10_rooms() -> Result<()> {
    myelin_and_synapse_share_rooms("10").await
}

#[tokio::test]
async fn myelin_and_synapse_share_version_11_rooms() -> Result<()> {
    myelin_and_synapse_share_rooms("11").await
}

#[tokio::test]
async fn myelin_and_synapse_share_version_12_rooms() -> Result<()> {
    myelin_and_synapse_share_rooms("12").await
}

/// Waits until `client`'s sync shows `room` in `rooms.{section}` and answers that entry.
async fn sync_shows(client: &Client, room: &str, section: &str, who: &str) -> Result<serde_json::Value> {
    let deadline = Instant::now() + CROSSING;
    loop {
        let sync = client.sync(None, 0, None).await?;
        let found = &sync["rooms"][section][room];
        if found.is_object() {
            return Ok(found.clone());
        }
        if Instant::now() > deadline {
            bail!("{who} never saw {room} in rooms.{section}: {}", sync["rooms"]);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn sees_membership(client: &Client, room: &str, user: &str, expected: &str, who: &str) -> Result<()> {
    wait_until(&format!("{who} sees {user} as {expected}"), || async {
        let (status, body) = client.get(&room_path(room, &format!("state/m.room.member/{}", enc(user)))).await?;
        Ok((status != 200 || body["membership"] != expected).then(|| format!("{status} {body}")))
    })
    .await
}

/// Invites both ways between Myelin and Synapse: a Synapse user invited to a Myelin room joins
/// and is later banned (and cannot come back); a Myelin user invited to Synapse rooms rejects one
/// invite and accepts another (joining through the inviter, no `via`); profiles are asked across.
async fn invites_between_myelin_and_synapse(version: &str) -> Result<()> {
    let myelin = TestServer::start_federating().await?;
    let synapse = SynapsePeer::start().await?;
    let alice = myelin.register("alice").await?;
    let sam = synapse.register("sam").await?;
    let logs = || format!("Myelin's log:\n{}\nSynapse's log:\n{}", myelin.log(), synapse.log());
    let (alice_id, sam_id) = (myelin.user_id("alice"), synapse.user_id("sam"));

    // Myelin invites a Synapse user, who joins without naming a server.
    let room = alice.create_room(json!({ "preset": "private_chat", "room_version": version, "name": "M" })).await?;
    let (status, body) = alice.post(&room_path(&room, "invite"), &json!({ "user_id": sam_id })).await?;
    if status != 200 {
        bail!("Myelin inviting a Synapse user: {status} {body}\n{}", logs());
    }
    let invite = sync_shows(&sam, &room, "invite", "Synapse").await.with_context(logs)?;
    let state = invite["invite_state"]["events"].as_array().cloned().unwrap_or_default();
    assert!(state.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "M"), "{state:?}");
    let (status, body) = sam.post(&room_path(&room, "join"), &json!({})).await?;
    if status != 200 {
        bail!("Synapse user accepting a Myelin invite: {status} {body}\n{}", logs());
    }
    let members = vec![alice_id.clone(), sam_id.clone()];
    sees_members(&alice, &room, &members, "Myelin").await.with_context(logs)?;
    sam.send_message(&room, "thanks").await?;
    sees_message(&alice, &room, "thanks", "Myelin").await.with_context(logs)?;

    // Myelin bans the Synapse user; Synapse sees it and the user cannot join again.
    let (status, body) = alice.post(&room_path(&room, "ban"), &json!({ "user_id": sam_id })).await?;
    assert_eq!(status, 200, "ban: {body}");
    wait_until("Synapse sees the ban", || async {
        let (_, body) = sam.get("/_matrix/client/v3/joined_rooms").await?;
        let joined = body["joined_rooms"].as_array().is_some_and(|r| r.iter().any(|r| r == room.as_str()));
        Ok(joined.then(|| body.to_string()))
    })
    .await
    .with_context(logs)?;
    let (status, body) = join_via(&sam, &room, myelin.server_name()).await?;
    assert_ne!(status, 200, "a banned Synapse user cannot join again: {body}");
    sees_membership(&alice, &room, &sam_id, "ban", "Myelin").await?;

    // Synapse invites a Myelin user, who rejects.
    let room = sam.create_room(json!({ "preset": "private_chat", "room_version": version, "name": "S1" })).await?;
    let (status, body) = sam.post(&room_path(&room, "invite"), &json!({ "user_id": alice_id })).await?;
    if status != 200 {
        bail!("Synapse inviting a Myelin user: {status} {body}\n{}", logs());
    }
    let invite = sync_shows(&alice, &room, "invite", "Myelin").await.with_context(logs)?;
    let state = invite["invite_state"]["events"].as_array().cloned().unwrap_or_default();
    assert!(state.iter().any(|e| e["type"] == "m.room.create"), "{state:?}");
    assert!(state.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "S1"), "{state:?}");
    let (status, body) = alice.post(&room_path(&room, "leave"), &json!({})).await?;
    if status != 200 {
        bail!("Myelin user rejecting a Synapse invite: {status} {body}\n{}", logs());
    }
    sees_membership(&sam, &room, &alice_id, "leave", "Synapse").await.with_context(logs)?;

    // Synapse invites again elsewhere; the Myelin user accepts through the inviter.
    let room = sam.create_room(json!({ "preset": "private_chat", "room_version": version, "name": "S2" })).await?;
    let (status, body) = sam.post(&room_path(&room, "invite"), &json!({ "user_id": alice_id })).await?;
    assert_eq!(status, 200, "invite: {body}");
    sync_shows(&alice, &room, "invite", "Myelin").await.with_context(logs)?;
    let (status, body) = alice.post(&room_path(&room, "join"), &json!({})).await?;
    if status != 200 {
        bail!("Myelin user accepting a Synapse invite: {status} {body}\n{}", logs());
    }
    sees_members(&sam, &room, &members, "Synapse").await.with_context(logs)?;
    sam.send_message(&room, "welcome to Synapse").await?;
    sees_message(&alice, &room, "welcome to Synapse", "Myelin").await.with_context(logs)?;

    // Power levels set on Synapse are seen on Myelin.
    let (status, mut levels) = sam.get(&room_path(&room, "state/m.room.power_levels/")).await?;
    assert_eq!(status, 200, "{levels}");
    levels["users"][&alice_id] = json!(50);
    let (status, body) = sam.put(&room_path(&room, "state/m.room.power_levels/"), &levels).await?;
    assert_eq!(status, 200, "{body}");
    wait_until("Myelin sees the power levels", || async {
        let (_, seen) = alice.get(&room_path(&room, "state/m.room.power_levels/")).await?;
        Ok((seen["users"][&alice_id] != 50).then(|| seen.to_string()))
    })
    .await
    .with_context(logs)?;

    // Profiles across.
    let (status, body) = alice
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", enc(&alice_id)),
            &json!({ "displayname": "Alice M" }),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let (status, body) = sam.get(&format!("/_matrix/client/v3/profile/{}", enc(&alice_id))).await?;
    assert_eq!((status, body["displayname"].clone()), (200, json!("Alice M")), "{body}\n{}", logs());
    let (status, body) = alice.get(&format!("/_matrix/client/v3/profile/{}", enc(&sam_id))).await?;
    assert_eq!((status, body["displayname"].clone()), (200, json!("sam")), "{body}\n{}", logs());
    Ok(())
}

#[tokio::test]
async fn invites_between_myelin_and_synapse_version_11() -> Result<()> {
    invites_between_myelin_and_synapse("11").await
}

#[tokio::test]
async fn invites_between_myelin_and_synapse_version_12() -> Result<()> {
    invites_between_myelin_and_synapse("12").await
}

/// Knocks both ways: a Myelin user knocks on a Synapse room and a Synapse user on a Myelin room;
/// each is let in by an invite and joins. Each directory is read from the other server.
#[tokio::test]
async fn knocks_and_directories_between_myelin_and_synapse() -> Result<()> {
    let myelin = TestServer::start_federating().await?;
    let synapse = SynapsePeer::start().await?;
    let alice = myelin.register("alice").await?;
    let sam = synapse.register("sam").await?;
    let logs = || format!("Myelin's log:\n{}\nSynapse's log:\n{}", myelin.log(), synapse.log());
    let (alice_id, sam_id) = (myelin.user_id("alice"), synapse.user_id("sam"));
    let knock_rule = json!([{ "type": "m.room.join_rules", "state_key": "", "content": { "join_rule": "knock" } }]);
    let knock = |client: &Client, room: &str, server: &str| {
        let path = format!("/_matrix/client/v3/knock/{}?server_name={}", enc(room), enc(server));
        let client = client.clone();
        async move { client.post(&path, &json!({ "reason": "hello" })).await }
    };

    // Myelin knocks on Synapse.
    let room = sam.create_room(json!({ "room_version": "11", "name": "S", "initial_state": knock_rule })).await?;
    let (status, body) = knock(&alice, &room, &synapse.server_name()).await?;
    if status != 200 {
        bail!("Myelin knocking on a Synapse room: {status} {body}\n{}", logs());
    }
    let entry = sync_shows(&alice, &room, "knock", "Myelin").await.with_context(logs)?;
    let state = entry["knock_state"]["events"].as_array().cloned().unwrap_or_default();
    assert!(state.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "S"), "{state:?}");
    sees_membership(&sam, &room, &alice_id, "knock", "Synapse").await.with_context(logs)?;
    let (status, body) = sam.post(&room_path(&room, "invite"), &json!({ "user_id": alice_id })).await?;
    assert_eq!(status, 200, "invite: {body}");
    sync_shows(&alice, &room, "invite", "Myelin").await.with_context(logs)?;
    let (status, body) = alice.post(&room_path(&room, "join"), &json!({})).await?;
    if status != 200 {
        bail!("Myelin joining after the knock: {status} {body}\n{}", logs());
    }
    sees_members(&sam, &room, &[alice_id.clone(), sam_id.clone()], "Synapse").await.with_context(logs)?;

    // Synapse knocks on Myelin.
    let room = alice.create_room(json!({ "room_version": "11", "name": "M", "initial_state": knock_rule })).await?;
    let (status, body) = knock(&sam, &room, myelin.server_name()).await?;
    if status != 200 {
        bail!("Synapse knocking on a Myelin room: {status} {body}\n{}", logs());
    }
    sees_membership(&alice, &room, &sam_id, "knock", "Myelin").await.with_context(logs)?;
    let (status, body) = alice.post(&room_path(&room, "invite"), &json!({ "user_id": sam_id })).await?;
    assert_eq!(status, 200, "invite: {body}");
    sync_shows(&sam, &room, "invite", "Synapse").await.with_context(logs)?;
    let (status, body) = sam.post(&room_path(&room, "join"), &json!({})).await?;
    if status != 200 {
        bail!("Synapse joining after the knock: {status} {body}\n{}", logs());
    }
    sees_members(&alice, &room, &[alice_id.clone(), sam_id.clone()], "Myelin").await.with_context(logs)?;

    // Directories across.
    let published = alice.create_room(json!({ "preset": "public_chat", "visibility": "public", "name": "ML" })).await?;
    let (status, body) =
        sam.get(&format!("/_matrix/client/v3/publicRooms?server={}", enc(myelin.server_name()))).await?;
    assert_eq!(status, 200, "{body}\n{}", logs());
    assert!(body["chunk"].as_array().is_some_and(|c| c.iter().any(|r| r["room_id"] == published.as_str())), "{body}");
    // Synapse publishes only its admins' rooms by default (`room_list_publication_rules`): its
    // directory answers, but empty.
    let (status, body) =
        alice.get(&format!("/_matrix/client/v3/publicRooms?server={}", enc(&synapse.server_name()))).await?;
    assert_eq!(status, 200, "{body}\n{}", logs());
    assert!(body["chunk"].is_array(), "{body}");
    Ok(())
}

/// Server ACLs both ways (every IP literal denied, as both servers are `127.0.0.1:port`): Myelin
/// refuses a Synapse user's join to its room, Synapse refuses a Myelin user's join to its room.
#[tokio::test]
async fn server_acls_between_myelin_and_synapse() -> Result<()> {
    let myelin = TestServer::start_federating().await?;
    let synapse = SynapsePeer::start().await?;
    let alice = myelin.register("alice").await?;
    let sam = synapse.register("sam").await?;
    let logs = || format!("Myelin's log:\n{}\nSynapse's log:\n{}", myelin.log(), synapse.log());
    let acl = json!([{ "type": "m.room.server_acl", "state_key": "",
                       "content": { "allow": ["*"], "deny": [], "allow_ip_literals": false } }]);

    let room = alice.create_room(json!({ "preset": "public_chat", "initial_state": acl })).await?;
    let (status, body) = join_via(&sam, &room, myelin.server_name()).await?;
    assert_eq!(status, 403, "Myelin refuses a denied Synapse: {body}\n{}", logs());

    let room = sam.create_room(json!({ "preset": "public_chat", "initial_state": acl })).await?;
    let (status, body) = join_via(&alice, &room, &synapse.server_name()).await?;
    assert_eq!(status, 403, "Synapse refuses a denied Myelin: {body}\n{}", logs());
    Ok(())
}

/// History from before a join, both ways: a Myelin user joining a room that has lived on
/// Synapse pages back through all of it (Myelin backfills from Synapse), and a Synapse user
/// joining a room that has lived on Myelin does the same (Synapse backfills from Myelin).
#[tokio::test]
async fn history_from_before_a_join_between_myelin_and_synapse() -> Result<()> {
    let myelin = TestServer::start_federating().await?;
    let synapse = SynapsePeer::start().await?;
    let alice = myelin.register("alice").await?;
    let sam = synapse.register("sam").await?;
    let logs = || format!("Myelin's log:\n{}\nSynapse's log:\n{}", myelin.log(), synapse.log());

    let history: Vec<String> = (0..35).map(|i| format!("said on Synapse {i}")).collect();
    let room = sam.create_room(json!({ "preset": "public_chat", "room_version": "11" })).await?;
    for body in &history {
        sam.send_message(&room, body).await?;
    }
    let (status, body) = join_via(&alice, &room, &synapse.server_name()).await?;
    if status != 200 {
        bail!("Myelin user joining a Synapse room: {status} {body}\n{}", logs());
    }
    check_whole_history(&alice, &room, 10, &history).await.with_context(logs)?;

    let history: Vec<String> = (0..35).map(|i| format!("said on Myelin {i}")).collect();
    let room = alice.create_room(json!({ "preset": "public_chat", "room_version": "11" })).await?;
    for body in &history {
        alice.send_message(&room, body).await?;
    }
    let (status, body) = join_via(&sam, &room, myelin.server_name()).await?;
    if status != 200 {
        bail!("Synapse user joining a Myelin room: {status} {body}\n{}", logs());
    }
    check_whole_history(&sam, &room, 10, &history).await.with_context(logs)?;
    Ok(())
}

/// Restricted rooms both ways: a Myelin user joins a Synapse room open to the members of another
/// Synapse room once in that room (Synapse vouches), and a Synapse user does the same with rooms
/// on Myelin (Myelin vouches and signs).
#[tokio::test]
async fn restricted_joins_between_myelin_and_synapse() -> Result<()> {
    let myelin = TestServer::start_federating().await?;
    let synapse = SynapsePeer::start().await?;
    let alice = myelin.register("alice").await?;
    let sam = synapse.register("sam").await?;
    let logs = || format!("Myelin's log:\n{}\nSynapse's log:\n{}", myelin.log(), synapse.log());

    let space = sam.create_room(json!({ "preset": "public_chat", "room_version": "10" })).await?;
    let room = sam.create_room(myelin_e2e::restricted_room(&space, "10")).await?;
    let (status, body) = join_via(&alice, &room, &synapse.server_name()).await?;
    assert_eq!(status, 403, "a Myelin user in no allowed room is refused: {body}");
    let (status, body) = join_via(&alice, &space, &synapse.server_name()).await?;
    assert_eq!(status, 200, "joining the Synapse space: {body}");
    let (status, body) = join_via(&alice, &room, &synapse.server_name()).await?;
    if status != 200 {
        bail!("Myelin user's restricted join through Synapse: {status} {body}\n{}", logs());
    }
    let members = vec![myelin.user_id("alice"), synapse.user_id("sam")];
    sees_members(&sam, &room, &members, "Synapse").await.with_context(logs)?;

    let space = alice.create_room(json!({ "preset": "public_chat", "room_version": "10" })).await?;
    let room = alice.create_room(myelin_e2e::restricted_room(&space, "10")).await?;
    let (status, body) = join_via(&sam, &room, myelin.server_name()).await?;
    assert_eq!(status, 403, "a Synapse user in no allowed room is refused: {body}");
    let (status, body) = join_via(&sam, &space, myelin.server_name()).await?;
    assert_eq!(status, 200, "joining the Myelin space: {body}");
    let (status, body) = join_via(&sam, &room, myelin.server_name()).await?;
    if status != 200 {
        bail!("Synapse user's restricted join through Myelin: {status} {body}\n{}", logs());
    }
    sees_members(&alice, &room, &members, "Myelin").await.with_context(logs)?;
    sees_members(&sam, &room, &members, "Synapse").await.with_context(logs)?;
    Ok(())
}

/// A Myelin user joins a room on Synapse with partial state (Synapse leaves the members out of
/// its answer): she is in at once, the member list she asks for is whole once Myelin has
/// fetched the state behind the join, and messages cross both ways with members Myelin had no
/// event of.
#[tokio::test]
async fn joining_a_synapse_room_with_partial_state() -> Result<()> {
    let myelin =
        TestServer::start_federating_with_env(&[("RUST_LOG", "warn,myelin_service::federation::partial_state=info")])
            .await?;
    let synapse = SynapsePeer::start().await?;
    let alice = myelin.register("alice").await?;
    let sam = synapse.register("sam").await?;
    let logs = || format!("Myelin's log:\n{}\nSynapse's log:\n{}", myelin.log(), synapse.log());
    let room =
        sam.create_room(json!({ "preset": "public_chat", "name": "Synapse's room", "room_version": "11" })).await?;
    let mut members = vec![synapse.user_id("sam")];
    let mut others = Vec::new();
    for i in 0..4 {
        let user = synapse.register(&format!("member{i}")).await?;
        let (status, body) = user.join(&room).await?;
        assert_eq!(status, 200, "{body}");
        members.push(synapse.user_id(&format!("member{i}")));
        others.push(user);
    }
    let (status, body) = join_via(&alice, &room, &synapse.server_name()).await?;
    if status != 200 {
        bail!("Myelin user joining a Synapse room: {status} {body}\n{}", logs());
    }
    members.push(myelin.user_id("alice"));
    others[2].send_message(&room, "from a member left out").await?;
    sees_members(&alice, &room, &members, "Myelin").await.with_context(logs)?;
    sees_message(&alice, &room, "from a member left out", "Myelin").await.with_context(logs)?;
    alice.send_message(&room, "from Myelin").await?;
    sees_message(&others[0], &room, "from Myelin", "Synapse").await.with_context(logs)?;
    assert!(myelin.log().contains("the room's whole state is known"), "joined with partial state\n{}", logs());
    Ok(())
}

/// The names `/hierarchy` of `space` shows `client`, sorted.
async fn hierarchy_names(client: &Client, space: &str) -> Result<Vec<String>> {
    let (status, body) = client.get(&format!("/_matrix/client/v1/rooms/{}/hierarchy", enc(space))).await?;
    if status != 200 {
        bail!("hierarchy: {status} {body}");
    }
    let mut names: Vec<String> =
        body["rooms"].as_array().into_iter().flatten().filter_map(|r| r["name"].as_str().map(str::to_owned)).collect();
    names.sort();
    Ok(names)
}

/// Spaces across servers both ways: a Myelin user in a Synapse space sees its child rooms on
/// Synapse (Myelin asks Synapse's `/hierarchy`), and a Synapse user in a Myelin space sees its
/// child rooms on Myelin (Synapse asks Myelin's).
#[tokio::test]
async fn space_hierarchies_between_myelin_and_synapse() -> Result<()> {
    let myelin = TestServer::start_federating().await?;
    let synapse = SynapsePeer::start().await?;
    let alice = myelin.register("alice").await?;
    let sam = synapse.register("sam").await?;
    let logs = || format!("Myelin's log:\n{}\nSynapse's log:\n{}", myelin.log(), synapse.log());
    for (owner, owner_server, member, member_server) in [
        (&sam, synapse.server_name(), &alice, myelin.server_name().to_owned()),
        (&alice, myelin.server_name().to_owned(), &sam, synapse.server_name()),
    ] {
        let space = owner
            .create_room(json!({ "preset": "public_chat", "name": "Space", "creation_content": { "type": "m.space" } }))
            .await?;
        let child = owner.create_room(json!({ "preset": "public_chat", "name": "Child" })).await?;
        let path = room_path(&space, &format!("state/m.space.child/{}", enc(&child)));
        let (status, body) = owner.put(&path, &json!({ "via": [owner_server] })).await?;
        assert_eq!(status, 200, "{body}");
        let (status, body) = join_via(member, &space, &owner_server).await?;
        if status != 200 {
            bail!("{member_server} joining the space: {status} {body}\n{}", logs());
        }
        let mut last = Vec::new();
        for _ in 0..50 {
            last = hierarchy_names(member, &space).await?;
            if last == ["Child", "Space"] {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(last, ["Child", "Space"], "{member_server} shows the space's child\n{}", logs());
    }
    Ok(())
}

/// Media across Myelin and Synapse both ways (authenticated media over federation): a Synapse
/// user's upload downloaded by a Myelin user (Myelin reads Synapse's multipart answer), and a
/// Myelin user's upload downloaded by a Synapse user (Synapse reads Myelin's).
#[tokio::test]
async fn media_crosses_between_myelin_and_synapse() -> Result<()> {
    let myelin = TestServer::start_federating().await?;
    let synapse = SynapsePeer::start().await?;
    let alice = myelin.register("alice").await?;
    let sam = synapse.register("sam").await?;
    let logs = || format!("Myelin's log:\n{}\nSynapse's log:\n{}", myelin.log(), synapse.log());
    let upload = |client: &Client, bytes: Vec<u8>| {
        let client = client.clone();
        async move {
            let (status, body) = client
                .send_bytes(reqwest::Method::POST, "/_matrix/media/v3/upload?filename=note.txt", "text/plain", bytes)
                .await?;
            let uri = body["content_uri"].as_str().map(str::to_owned);
            uri.filter(|_| status == 200).with_context(|| format!("upload: {status} {body}"))
        }
    };
    let download = |client: &Client, uri: &str| {
        let client = client.clone();
        let path = format!("/_matrix/client/v1/media/download/{}", uri.trim_start_matches("mxc://"));
        async move { client.get_bytes(&path).await }
    };

    let from_synapse: Vec<u8> = b"written on Synapse ".repeat(1000);
    let uri = upload(&sam, from_synapse.clone()).await?;
    let (status, headers, body) = download(&alice, &uri).await?;
    if status != 200 || body != from_synapse {
        bail!("Myelin fetching Synapse's media: {status} {} bytes\n{}", body.len(), logs());
    }
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.starts_with("text/plain") {
        bail!("content type {content_type:?}");
    }

    let from_myelin: Vec<u8> = b"written on Myelin ".repeat(1000);
    let uri = upload(&alice, from_myelin.clone()).await?;
    let (status, _, body) = download(&sam, &uri).await?;
    if status != 200 || body != from_myelin {
        bail!("Synapse fetching Myelin's media: {status} {}\n{}", String::from_utf8_lossy(&body), logs());
    }
    Ok(())
}
