//! Guest accounts: off unless configured; a guest reaches only the guest part of the API, joins
//! only rooms open to guests, and leaves them when they close.

use anyhow::{Context, Result, ensure};
use myelin_e2e::{NO_RATE_LIMITS, TestServer, enc, errcode, room_path};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_use_only_their_part_of_the_api_and_rooms_open_to_them() -> Result<()> {
    let closed = TestServer::start().await?;
    let (status, body) = closed.anonymous().post("/_matrix/client/v3/register?kind=guest", &json!({})).await?;
    ensure!(status == 403 && errcode(&body) == "M_GUEST_ACCESS_FORBIDDEN", "off by default: {status} {body}");

    let server = TestServer::start_with(&format!("{NO_RATE_LIMITS}[registration]\nallow_guests = true\n")).await?;
    let anon = server.anonymous();
    let (status, body) = anon.post("/_matrix/client/v3/register?kind=nonsense", &json!({})).await?;
    ensure!(status == 400 && errcode(&body) == "M_INVALID_PARAM", "{status} {body}");
    let (status, body) = anon.post("/_matrix/client/v3/register?kind=guest", &json!({})).await?;
    ensure!(status == 200, "{status} {body}");
    let guest = anon.with_token(body["access_token"].as_str());
    let guest_id = body["user_id"].as_str().context("user_id")?.to_owned();
    let (status, body) = guest.get("/_matrix/client/v3/account/whoami").await?;
    ensure!(status == 200 && body["is_guest"] == true && body["user_id"] == guest_id.as_str(), "{status} {body}");
    let (status, body) = guest.get("/_matrix/client/v3/sync?timeout=0").await?;
    ensure!(status == 200, "guests sync: {status} {body}");

    // Not for guests: creating rooms, uploads, the directory.
    for (method, path) in [
        (reqwest::Method::POST, "/_matrix/client/v3/createRoom"),
        (reqwest::Method::POST, "/_matrix/media/v3/upload"),
        (reqwest::Method::POST, "/_matrix/client/v3/user_directory/search"),
    ] {
        let (status, body) = guest.request(method, path, Some(&json!({}))).await?;
        ensure!(status == 403 && errcode(&body) == "M_GUEST_ACCESS_FORBIDDEN", "{path}: {status} {body}");
    }

    // Rooms: only those whose guest access is can_join.
    let alice = server.register("alice").await?;
    let closed_room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    let (status, body) = guest.join(&closed_room).await?;
    ensure!(status == 403 && errcode(&body) == "M_FORBIDDEN", "no guest access: {status} {body}");
    let open_room = alice
        .create_room(json!({
            "preset": "public_chat",
            "initial_state": [{ "type": "m.room.guest_access", "state_key": "", "content": { "guest_access": "can_join" } }],
        }))
        .await?;
    let (status, body) = guest.join(&open_room).await?;
    ensure!(status == 200, "can_join: {status} {body}");
    let (status, body) = guest
        .put(
            &room_path(&open_room, "send/m.room.message/g1"),
            &json!({ "msgtype": "m.text", "body": "hi from a guest" }),
        )
        .await?;
    ensure!(status == 200, "guests send: {status} {body}");
    let (status, body) = guest.get(&room_path(&open_room, "messages?dir=b&limit=5")).await?;
    ensure!(status == 200, "guests read: {status} {body}");
    let (status, body) = guest.post(&room_path(&open_room, "invite"), &json!({ "user_id": alice.user_id })).await?;
    ensure!(status == 403 && errcode(&body) == "M_GUEST_ACCESS_FORBIDDEN", "no invites: {status} {body}");

    // The room closes to guests: the guest is made to leave.
    let (status, body) = alice
        .put(&room_path(&open_room, "state/m.room.guest_access/"), &json!({ "guest_access": "forbidden" }))
        .await?;
    ensure!(status == 200, "{status} {body}");
    let (status, body) = alice.get(&room_path(&open_room, &format!("state/m.room.member/{}", enc(&guest_id)))).await?;
    ensure!(status == 200 && body["membership"] == "leave", "the guest left: {status} {body}");
    let (status, body) = guest.join(&open_room).await?;
    ensure!(status == 403, "closed now: {status} {body}");
    Ok(())
}

/// A guest upgrades to a full account by registering with their guest access token and their own
/// localpart as the user name: same user id, rooms kept, a password to log in with, no longer a
/// guest (for the new session and the old token alike). Someone else's name, a full user's token
/// or a second upgrade are refused.
#[tokio::test]
async fn a_guest_upgrades_to_a_full_account_and_keeps_their_rooms() -> Result<()> {
    let server = TestServer::start_with(&format!("{NO_RATE_LIMITS}[registration]\nallow_guests = true\n")).await?;
    let anon = server.anonymous();
    let (status, body) = anon.post("/_matrix/client/v3/register?kind=guest", &json!({})).await?;
    ensure!(status == 200, "{status} {body}");
    let guest_token = body["access_token"].as_str().context("access_token")?.to_owned();
    let guest_id = body["user_id"].as_str().context("user_id")?.to_owned();
    let localpart = guest_id.trim_start_matches('@').split(':').next().unwrap_or_default().to_owned();
    let guest = anon.with_token(Some(&guest_token));
    let alice = server.register("alice").await?;
    let room = alice
        .create_room(json!({ "preset": "public_chat", "initial_state": [
            { "type": "m.room.guest_access", "state_key": "", "content": { "guest_access": "can_join" } }
        ] }))
        .await?;
    ensure!(guest.join(&room).await?.0 == 200);

    let upgrade = |username: &str, token: &str| {
        json!({ "username": username, "password": "upgraded-password", "guest_access_token": token,
                "auth": { "type": "m.login.dummy" } })
    };
    let (status, body) = anon.post("/_matrix/client/v3/register", &upgrade("someoneelse", &guest_token)).await?;
    ensure!(status == 403 && errcode(&body) == "M_FORBIDDEN", "another name: {status} {body}");
    let (status, body) =
        anon.post("/_matrix/client/v3/register", &upgrade("alice", alice.token.as_deref().unwrap_or_default())).await?;
    ensure!(status == 403 && errcode(&body) == "M_FORBIDDEN", "a full user's token: {status} {body}");

    let (status, body) = anon.post("/_matrix/client/v3/register", &upgrade(&localpart, &guest_token)).await?;
    ensure!(status == 200 && body["user_id"] == guest_id.as_str(), "{status} {body}");
    let upgraded = anon.with_token(body["access_token"].as_str());
    let (_, whoami) = upgraded.get("/_matrix/client/v3/account/whoami").await?;
    ensure!(whoami["user_id"] == guest_id.as_str() && whoami["is_guest"] == false, "{whoami}");
    let (_, whoami) = guest.get("/_matrix/client/v3/account/whoami").await?;
    ensure!(whoami["is_guest"] == false, "the guest's own token is a full user's now: {whoami}");
    let (status, body) = upgraded.get("/_matrix/client/v3/joined_rooms").await?;
    ensure!(status == 200 && body["joined_rooms"][0] == room.as_str(), "the rooms are kept: {status} {body}");
    let (status, body) = upgraded.post("/_matrix/client/v3/createRoom", &json!({})).await?;
    ensure!(status == 200, "the whole API now: {status} {body}");
    let (status, body) = anon.post("/_matrix/client/v3/register", &upgrade(&localpart, &guest_token)).await?;
    ensure!(status == 403, "upgraded once: {status} {body}");
    let (status, body) = anon
        .post(
            "/_matrix/client/v3/login",
            &json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": localpart },
                     "password": "upgraded-password" }),
        )
        .await?;
    ensure!(status == 200 && body["user_id"] == guest_id.as_str(), "logs in with the password: {status} {body}");
    Ok(())
}
