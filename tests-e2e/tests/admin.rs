//! The admin API under `/_synapse/admin` as an admin UI drives it: admins only (403 otherwise),
//! Synapse's shapes, paging and errors; the admin CLI beside it.

use anyhow::{Context, Result, ensure};
use myelin_e2e::{NO_RATE_LIMITS, TestServer, enc, errcode};
use serde_json::{Value, json};

fn names(body: &Value) -> Vec<String> {
    body["users"].as_array().into_iter().flatten().filter_map(|u| u["name"].as_str().map(str::to_owned)).collect()
}

/// Users as synapse-admin lists and changes them: the list in pages with `total` and
/// `next_token`, filtered by name, guests and deactivated users; one user's details; a password
/// reset that logs the user out; deactivation with erasure; whois. Non-admins get 403, other
/// servers' and unknown users 400 and 404; `server_version` needs no token.
#[tokio::test]
async fn admins_list_inspect_reset_and_deactivate_users() -> Result<()> {
    let server = TestServer::start_with(&format!("{NO_RATE_LIMITS}[registration]\nallow_guests = true\n")).await?;
    let out = server.admin(&["user", "create", "root", "--admin", "--password", "root-password"])?;
    ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let root = server.login("root").await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let (status, guest) = server.anonymous().post("/_matrix/client/v3/register?kind=guest", &json!({})).await?;
    ensure!(status == 200, "{status} {guest}");
    let guest_id = guest["user_id"].as_str().context("guest id")?.to_owned();

    let (status, body) = server.anonymous().get("/_synapse/admin/v1/server_version").await?;
    ensure!(status == 200 && body["server_version"].as_str().is_some_and(|v| v.starts_with("Myelin")), "{body}");
    let (status, body) = alice.get("/_synapse/admin/v2/users").await?;
    ensure!(status == 403 && errcode(&body) == "M_FORBIDDEN", "{status} {body}");
    let (status, body) = server.anonymous().get("/_synapse/admin/v2/users").await?;
    ensure!(status == 401 && errcode(&body) == "M_MISSING_TOKEN", "{status} {body}");

    // Pages in user id order.
    let (status, first) = root.get("/_synapse/admin/v2/users?limit=2").await?;
    ensure!(status == 200 && first["total"] == 4 && first["next_token"] == "2", "{status} {first}");
    let (_, rest) = root.get("/_synapse/admin/v2/users?from=2&limit=2").await?;
    ensure!(rest.get("next_token").is_none(), "the last page: {rest}");
    let mut all = names(&first);
    all.extend(names(&rest));
    let mut expected = vec![alice.user_id.clone(), bob.user_id.clone(), guest_id.clone(), root.user_id.clone()];
    expected.sort();
    ensure!(all == expected, "{all:?}");
    let alice_listed = &first["users"][0];
    ensure!(alice_listed["admin"] == 0 && alice_listed["is_guest"] == 0 && alice_listed["deactivated"] == 0, "{first}");
    let (_, filtered) = root.get("/_synapse/admin/v2/users?name=ALI").await?;
    ensure!(names(&filtered) == [alice.user_id.clone()] && filtered["total"] == 1, "{filtered}");
    let (_, no_guests) = root.get("/_synapse/admin/v2/users?guests=false").await?;
    ensure!(!names(&no_guests).contains(&guest_id) && no_guests["total"] == 3, "{no_guests}");
    let (status, body) = root.get("/_synapse/admin/v2/users?limit=x").await?;
    ensure!(status == 400 && errcode(&body) == "M_INVALID_PARAM", "{status} {body}");

    let user_path = |id: &str| format!("/_synapse/admin/v2/users/{}", enc(id));
    let (status, details) = root.get(&user_path(&alice.user_id)).await?;
    ensure!(status == 200 && details["name"] == alice.user_id.as_str() && details["admin"] == false, "{details}");
    ensure!(details["deactivated"] == false && details["threepids"] == json!([]), "{details}");
    let (status, body) = root.get(&user_path("@nobody:localhost")).await?;
    ensure!(status == 404 && errcode(&body) == "M_NOT_FOUND", "{status} {body}");
    let (status, body) = root.get(&user_path("@someone:elsewhere.example")).await?;
    ensure!(status == 400, "{status} {body}");
    let (status, whois) = root.get(&format!("/_synapse/admin/v1/whois/{}", enc(&alice.user_id))).await?;
    ensure!(status == 200 && whois["devices"].as_object().is_some_and(|d| d.len() == 1), "{status} {whois}");

    // A password reset logs alice out; the new password works.
    let reset = format!("/_synapse/admin/v1/reset_password/{}", enc(&alice.user_id));
    let (status, body) = alice.post(&reset, &json!({ "new_password": "mine-now" })).await?;
    ensure!(status == 403, "not for non-admins: {status} {body}");
    let (status, body) = root.post(&reset, &json!({ "new_password": "reset-by-admin" })).await?;
    ensure!(status == 200, "{status} {body}");
    let (status, body) = alice.get("/_matrix/client/v3/account/whoami").await?;
    ensure!(status == 401 && errcode(&body) == "M_UNKNOWN_TOKEN", "logged out: {status} {body}");
    let login = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" },
                        "password": "reset-by-admin" });
    let (status, body) = server.anonymous().post("/_matrix/client/v3/login", &login).await?;
    ensure!(status == 200, "{status} {body}");
    let (status, body) = root.post(&reset, &json!({})).await?;
    ensure!(status == 400 && errcode(&body) == "M_BAD_JSON", "{status} {body}");

    // Deactivation with erasure; listed only when asked for.
    let deactivate = format!("/_synapse/admin/v1/deactivate/{}", enc(&bob.user_id));
    let (status, body) = root.post(&deactivate, &json!({ "erase": true })).await?;
    ensure!(status == 200, "{status} {body}");
    let (status, body) = bob.get("/_matrix/client/v3/account/whoami").await?;
    ensure!(status == 401, "{status} {body}");
    let (_, details) = root.get(&user_path(&bob.user_id)).await?;
    ensure!(details["deactivated"] == true && details["erased"] == true, "{details}");
    let (_, listed) = root.get("/_synapse/admin/v2/users").await?;
    ensure!(!names(&listed).contains(&bob.user_id), "{listed}");
    let (_, listed) = root.get("/_synapse/admin/v2/users?deactivated=true").await?;
    ensure!(names(&listed).contains(&bob.user_id), "{listed}");
    let (status, body) = root
        .raw(reqwest::Method::POST, &format!("/_synapse/admin/v1/deactivate/{}", enc(&guest_id)), b"not json".to_vec())
        .await?;
    ensure!(status == 400 && errcode(&body) == "M_NOT_JSON", "{status} {body}");

    // The CLI lists the same users.
    let out = server.admin(&["user", "list"])?;
    let printed = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success() && printed.contains(&alice.user_id) && !printed.contains(&bob.user_id), "{printed}");
    Ok(())
}

/// An admin made by the CLI, logged in.
async fn root_of(server: &TestServer) -> Result<myelin_e2e::Client> {
    let out = server.admin(&["user", "create", "root", "--admin", "--password", "root-password"])?;
    ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    server.login("root").await
}

/// Every admin endpoint refuses a user who is not an admin (403 `M_FORBIDDEN`) and a request
/// without a token (401), before looking at what it names.
#[tokio::test]
async fn every_admin_endpoint_refuses_non_admins() -> Result<()> {
    let server = TestServer::start_with(NO_RATE_LIMITS).await?;
    let alice = server.register("alice").await?;
    let u = enc(&alice.user_id);
    let r = enc("!room:localhost");
    let endpoints: Vec<(&str, String)> = vec![
        ("GET", "/v2/users".into()),
        ("GET", format!("/v2/users/{u}")),
        ("GET", format!("/v1/whois/{u}")),
        ("POST", format!("/v1/deactivate/{u}")),
        ("POST", format!("/v1/reset_password/{u}")),
        ("GET", format!("/v2/users/{u}/devices")),
        ("GET", format!("/v2/users/{u}/devices/DEV")),
        ("PUT", format!("/v2/users/{u}/devices/DEV")),
        ("DELETE", format!("/v2/users/{u}/devices/DEV")),
        ("POST", format!("/v2/users/{u}/delete_devices")),
        ("GET", format!("/v1/users/{u}/joined_rooms")),
        ("GET", format!("/v1/users/{u}/memberships")),
        ("GET", format!("/v1/users/{u}/pushers")),
        ("GET", format!("/v1/users/{u}/media")),
        ("DELETE", format!("/v1/users/{u}/media")),
        ("POST", format!("/v1/user/{u}/media/quarantine")),
        ("GET", "/v1/rooms".into()),
        ("GET", format!("/v1/rooms/{r}")),
        ("DELETE", format!("/v1/rooms/{r}")),
        ("DELETE", format!("/v2/rooms/{r}")),
        ("GET", format!("/v1/rooms/{r}/members")),
        ("GET", format!("/v1/rooms/{r}/state")),
        ("GET", format!("/v1/rooms/{r}/forward_extremities")),
        ("GET", format!("/v1/rooms/{r}/block")),
        ("PUT", format!("/v1/rooms/{r}/block")),
        ("GET", format!("/v2/rooms/{r}/delete_status")),
        ("GET", "/v2/rooms/delete_status/abc".into()),
        ("GET", format!("/v1/room/{r}/media")),
        ("POST", format!("/v1/room/{r}/media/quarantine")),
        ("GET", "/v1/media/localhost/abc".into()),
        ("DELETE", "/v1/media/localhost/abc".into()),
        ("POST", "/v1/media/quarantine/localhost/abc".into()),
        ("POST", "/v1/media/unquarantine/localhost/abc".into()),
        ("POST", "/v1/media/protect/abc".into()),
        ("POST", "/v1/media/unprotect/abc".into()),
        ("POST", "/v1/media/delete?before_ts=1".into()),
        ("POST", "/v1/purge_media_cache?before_ts=1".into()),
        ("GET", "/v1/statistics/users/media".into()),
        ("GET", "/v1/event_reports".into()),
        ("GET", "/v1/event_reports/1".into()),
        ("DELETE", "/v1/event_reports/1".into()),
        ("POST", "/v1/send_server_notice".into()),
        ("GET", "/v1/registration_tokens".into()),
        ("POST", "/v1/registration_tokens/new".into()),
        ("GET", "/v1/registration_tokens/abc".into()),
        ("PUT", "/v1/registration_tokens/abc".into()),
        ("DELETE", "/v1/registration_tokens/abc".into()),
        ("GET", "/v1/federation/destinations".into()),
        ("GET", "/v1/federation/destinations/example.org".into()),
        ("POST", "/v1/federation/destinations/example.org/reset_connection".into()),
    ];
    for (method, path) in &endpoints {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let full = format!("/_synapse/admin{path}");
        // A body each endpoint would accept from an admin, so only the requester is wrong.
        let body = json!({ "new_password": "x-password-1", "block": true, "devices": [], "user_id": alice.user_id,
                           "content": { "msgtype": "m.text", "body": "hi" } });
        let (status, answer) = alice.request(method.clone(), &full, Some(&body)).await?;
        ensure!(status == 403 && errcode(&answer) == "M_FORBIDDEN", "{method} {path}: {status} {answer}");
        let (status, answer) = server.anonymous().request(method.clone(), &full, Some(&body)).await?;
        ensure!(status == 401, "{method} {path} without a token: {status} {answer}");
    }
    Ok(())
}

/// One user's devices, rooms, memberships, pushers and uploads, as admin UIs show them; a
/// device renamed and logged out by an admin.
#[tokio::test]
async fn admins_see_and_manage_a_users_devices_rooms_and_uploads() -> Result<()> {
    let server = TestServer::start_with(NO_RATE_LIMITS).await?;
    let root = root_of(&server).await?;
    let alice = server.register("alice").await?;
    let second = server.login("alice").await?;
    let u = enc(&alice.user_id);
    let room = alice.create_room(json!({ "name": "Garden" })).await?;
    let left = alice.create_room(json!({})).await?;
    let (status, body) = alice.post(&myelin_e2e::room_path(&left, "leave"), &json!({})).await?;
    ensure!(status == 200, "{status} {body}");
    let pusher = json!({ "kind": "http", "app_id": "org.example.app", "pushkey": "key1", "app_display_name": "App",
                         "device_display_name": "Phone", "lang": "en", "data": { "url": "https://push.example/_matrix/push/v1/notify" } });
    let (status, body) = alice.post("/_matrix/client/v3/pushers/set", &pusher).await?;
    ensure!(status == 200, "{status} {body}");
    for name in ["one.txt", "two.txt"] {
        let (status, body) = alice
            .send_bytes(
                reqwest::Method::POST,
                &format!("/_matrix/media/v3/upload?filename={name}"),
                "text/plain",
                name.as_bytes().to_vec(),
            )
            .await?;
        ensure!(status == 200, "{status} {body}");
    }

    let (status, devices) = root.get(&format!("/_synapse/admin/v2/users/{u}/devices")).await?;
    ensure!(status == 200 && devices["total"] == 2, "{status} {devices}");
    let device = devices["devices"][0]["device_id"].as_str().context("device id")?.to_owned();
    ensure!(devices["devices"][0]["user_id"] == alice.user_id.as_str(), "{devices}");
    let device_path = format!("/_synapse/admin/v2/users/{u}/devices/{}", enc(&device));
    let (status, body) = root.put(&device_path, &json!({ "display_name": "Renamed by admin" })).await?;
    ensure!(status == 200, "{status} {body}");
    let (status, one) = root.get(&device_path).await?;
    ensure!(status == 200 && one["display_name"] == "Renamed by admin", "{status} {one}");
    let (status, body) = root.get(&format!("/_synapse/admin/v2/users/{u}/devices/NOSUCHDEVICE")).await?;
    ensure!(status == 404 && errcode(&body) == "M_NOT_FOUND", "{status} {body}");
    let second_device = second.device_id.clone();
    let (status, body) = root
        .post(&format!("/_synapse/admin/v2/users/{u}/delete_devices"), &json!({ "devices": [second_device] }))
        .await?;
    ensure!(status == 200, "{status} {body}");
    let (status, body) = second.get("/_matrix/client/v3/account/whoami").await?;
    ensure!(status == 401 && errcode(&body) == "M_UNKNOWN_TOKEN", "logged out by the admin: {status} {body}");
    let (_, devices) = root.get(&format!("/_synapse/admin/v2/users/{u}/devices")).await?;
    ensure!(devices["total"] == 1, "{devices}");

    let (status, joined) = root.get(&format!("/_synapse/admin/v1/users/{u}/joined_rooms")).await?;
    ensure!(status == 200 && joined == json!({ "joined_rooms": [room], "total": 1 }), "{status} {joined}");
    let (_, memberships) = root.get(&format!("/_synapse/admin/v1/users/{u}/memberships")).await?;
    ensure!(
        memberships["memberships"][&room] == "join" && memberships["memberships"][&left] == "leave",
        "{memberships}"
    );
    let (_, pushers) = root.get(&format!("/_synapse/admin/v1/users/{u}/pushers")).await?;
    ensure!(pushers["total"] == 1 && pushers["pushers"][0]["pushkey"] == "key1", "{pushers}");
    ensure!(pushers["pushers"][0]["data"]["url"] == "https://push.example/_matrix/push/v1/notify", "{pushers}");

    let (status, media) = root.get(&format!("/_synapse/admin/v1/users/{u}/media?limit=1")).await?;
    ensure!(status == 200 && media["total"] == 2 && media["next_token"] == "1", "{status} {media}");
    ensure!(
        media["media"][0]["upload_name"] == "two.txt" && media["media"][0]["media_length"] == 7,
        "newest first: {media}"
    );
    let (_, stats) = root.get("/_synapse/admin/v1/statistics/users/media").await?;
    ensure!(
        stats["total"] == 1 && stats["users"][0]["media_count"] == 2 && stats["users"][0]["media_length"] == 14,
        "{stats}"
    );
    let (status, deleted) = root.delete(&format!("/_synapse/admin/v1/users/{u}/media"), &json!({})).await?;
    ensure!(status == 200 && deleted["total"] == 2, "{status} {deleted}");
    let (_, media) = root.get(&format!("/_synapse/admin/v1/users/{u}/media")).await?;
    ensure!(media["total"] == 0, "{media}");
    Ok(())
}

fn room_ids(list: &Value) -> Vec<String> {
    list["rooms"].as_array().into_iter().flatten().filter_map(|r| r["room_id"].as_str().map(str::to_owned)).collect()
}

/// Rooms as synapse-admin lists them: sorted by name or members, searched, paged; one room's
/// details, members and state; a blocked room refuses joins; deletion (v1 at once, v2 queued and
/// followed by id) makes this server's members leave, removes local aliases and purges the room.
#[tokio::test]
async fn admins_list_block_and_delete_rooms() -> Result<()> {
    let server = TestServer::start_with(NO_RATE_LIMITS).await?;
    let root = root_of(&server).await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let apples = alice
        .create_room(
            json!({ "name": "Apples", "room_alias_name": "apples", "preset": "public_chat", "visibility": "public" }),
        )
        .await?;
    let bananas = alice.create_room(json!({ "name": "bananas" })).await?;
    let (status, body) = bob.join(&apples).await?;
    ensure!(status == 200, "{status} {body}");
    let message = alice.send_message(&apples, "hello").await?;

    let (status, list) = root.get("/_synapse/admin/v1/rooms").await?;
    ensure!(status == 200 && list["total_rooms"] == 2 && list["offset"] == 0, "{status} {list}");
    ensure!(room_ids(&list) == [apples.clone(), bananas.clone()], "by name, A to Z whatever the case: {list}");
    let first = &list["rooms"][0];
    ensure!(first["name"] == "Apples" && first["joined_members"] == 2 && first["joined_local_members"] == 2, "{first}");
    ensure!(first["canonical_alias"] == "#apples:localhost" && first["public"] == true, "{first}");
    ensure!(first["creator"] == alice.user_id.as_str() && first["join_rules"] == "public", "{first}");
    let (_, by_members) = root.get("/_synapse/admin/v1/rooms?order_by=joined_members&dir=b").await?;
    ensure!(room_ids(&by_members) == [bananas.clone(), apples.clone()], "smallest first when reversed: {by_members}");
    let (_, searched) = root.get("/_synapse/admin/v1/rooms?search_term=BANANA").await?;
    ensure!(room_ids(&searched) == [bananas.clone()] && searched["total_rooms"] == 1, "{searched}");
    let (_, paged) = root.get("/_synapse/admin/v1/rooms?limit=1").await?;
    ensure!(room_ids(&paged) == [apples.clone()] && paged["next_batch"] == 1, "{paged}");
    let (_, page2) = root.get("/_synapse/admin/v1/rooms?limit=1&from=1").await?;
    ensure!(
        room_ids(&page2) == [bananas.clone()] && page2.get("next_batch").is_none() && page2["prev_batch"] == 0,
        "{page2}"
    );
    let (status, body) = root.get("/_synapse/admin/v1/rooms?order_by=colour").await?;
    ensure!(status == 400 && errcode(&body) == "M_INVALID_PARAM", "{status} {body}");

    let a = enc(&apples);
    let (status, details) = root.get(&format!("/_synapse/admin/v1/rooms/{a}")).await?;
    ensure!(status == 200 && details["name"] == "Apples" && details["joined_local_devices"] == 2, "{status} {details}");
    let (status, members) = root.get(&format!("/_synapse/admin/v1/rooms/{a}/members")).await?;
    ensure!(status == 200 && members["total"] == 2, "{status} {members}");
    let (_, state) = root.get(&format!("/_synapse/admin/v1/rooms/{a}/state")).await?;
    let types: Vec<&str> = state["state"].as_array().into_iter().flatten().filter_map(|e| e["type"].as_str()).collect();
    ensure!(types.contains(&"m.room.create") && types.contains(&"m.room.name"), "{state}");
    let (status, extremities) = root.get(&format!("/_synapse/admin/v1/rooms/{a}/forward_extremities")).await?;
    ensure!(status == 200 && extremities["count"] == 1, "{status} {extremities}");
    ensure!(extremities["results"][0]["event_id"] == message.as_str(), "the newest event: {extremities}");
    let (status, body) = root.get("/_synapse/admin/v1/rooms/!nowhere:localhost").await?;
    ensure!(status == 404 && errcode(&body) == "M_NOT_FOUND", "{status} {body}");

    // A blocked room: nobody here may join (or be invited); unblocked, they may again.
    let b = enc(&bananas);
    let (status, body) = root.put(&format!("/_synapse/admin/v1/rooms/{b}/block"), &json!({ "block": true })).await?;
    ensure!(status == 200 && body["block"] == true, "{status} {body}");
    let (_, block) = root.get(&format!("/_synapse/admin/v1/rooms/{b}/block")).await?;
    ensure!(block == json!({ "block": true, "user_id": root.user_id }), "{block}");
    let (status, body) =
        alice.post(&myelin_e2e::room_path(&bananas, "invite"), &json!({ "user_id": bob.user_id })).await?;
    ensure!(status == 403 && errcode(&body) == "M_FORBIDDEN", "invite into a blocked room: {status} {body}");
    let (status, body) = root.put(&format!("/_synapse/admin/v1/rooms/{b}/block"), &json!({ "block": false })).await?;
    ensure!(status == 200, "{status} {body}");
    let (status, body) =
        alice.post(&myelin_e2e::room_path(&bananas, "invite"), &json!({ "user_id": bob.user_id })).await?;
    ensure!(status == 200, "{status} {body}");

    let out = server.admin(&["room", "list"])?;
    let printed = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && printed.contains(&format!("{apples}\t2\tApples")),
        "the CLI lists rooms: {printed}"
    );

    // v1: deleted before the answer; the members see themselves leave; the room is gone.
    let since = myelin_e2e::next_batch(&bob.sync(None, 0, None).await?)?;
    let (status, outcome) = root.delete(&format!("/_synapse/admin/v1/rooms/{a}"), &json!({ "block": true })).await?;
    ensure!(status == 200, "{status} {outcome}");
    let mut kicked: Vec<String> = outcome["kicked_users"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u.as_str().map(str::to_owned))
        .collect();
    kicked.sort();
    ensure!(kicked == [alice.user_id.clone(), bob.user_id.clone()], "{outcome}");
    ensure!(
        outcome["local_aliases"] == json!(["#apples:localhost"]) && outcome["failed_to_kick_users"] == json!([]),
        "{outcome}"
    );
    let sync = bob.sync(Some(&since), 0, None).await?;
    ensure!(sync["rooms"]["join"].get(&apples).is_none(), "bob is no longer in the room: {sync}");
    let (status, body) = bob.get(&myelin_e2e::room_path(&apples, &format!("event/{}", enc(&message)))).await?;
    ensure!(status == 403 || status == 404, "the room's events are gone: {status} {body}");
    let (_, list) = root.get("/_synapse/admin/v1/rooms").await?;
    ensure!(room_ids(&list) == [bananas.clone()], "{list}");
    let (status, body) =
        server.anonymous().get(&format!("/_matrix/client/v3/directory/room/{}", enc("#apples:localhost"))).await?;
    ensure!(status == 404, "the alias is gone: {status} {body}");
    let (status, body) = bob.join(&apples).await?;
    ensure!(status == 403 || status == 404, "blocked: {status} {body}");
    let (_, statuses) = root.get(&format!("/_synapse/admin/v2/rooms/{a}/delete_status")).await?;
    ensure!(statuses["results"][0]["status"] == "complete", "{statuses}");

    // v2: queued; followed by id until complete.
    let (status, queued) = root.delete(&format!("/_synapse/admin/v2/rooms/{b}"), &json!({})).await?;
    ensure!(status == 200, "{status} {queued}");
    let delete_id = queued["delete_id"].as_str().context("delete_id")?.to_owned();
    let mut done = Value::Null;
    for _ in 0..100 {
        let (status, body) = root.get(&format!("/_synapse/admin/v2/rooms/delete_status/{delete_id}")).await?;
        ensure!(status == 200, "{status} {body}");
        if body["status"] == "complete" || body["status"] == "failed" {
            done = body;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    ensure!(done["status"] == "complete", "{done}");
    let mut kicked: Vec<&str> =
        done["shutdown_room"]["kicked_users"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    kicked.sort();
    ensure!(kicked == [alice.user_id.as_str(), bob.user_id.as_str()], "the invitee too: {done}");
    let (_, list) = root.get("/_synapse/admin/v1/rooms").await?;
    ensure!(list["total_rooms"] == 0, "{list}");
    let (status, body) = root.get("/_synapse/admin/v2/rooms/delete_status/nosuchid").await?;
    ensure!(status == 404, "{status} {body}");
    let (status, body) =
        root.delete(&format!("/_synapse/admin/v1/rooms/{b}"), &json!({ "new_room_user_id": root.user_id })).await?;
    ensure!(status == 400 && errcode(&body) == "M_INVALID_PARAM", "not supported, said so: {status} {body}");
    Ok(())
}

/// Media admins act on: quarantined media is not served (then served again when lifted),
/// protected media escapes quarantine and bulk deletion, the room's media are listed and
/// quarantined together, one media and old media are deleted.
#[tokio::test]
async fn admins_quarantine_protect_and_delete_media() -> Result<()> {
    let server = TestServer::start_with(NO_RATE_LIMITS).await?;
    let root = root_of(&server).await?;
    let alice = server.register("alice").await?;
    let mut ids = Vec::new();
    for name in ["a", "b", "c"] {
        let (status, body) = alice
            .send_bytes(
                reqwest::Method::POST,
                &format!("/_matrix/media/v3/upload?filename={name}"),
                "text/plain",
                format!("bytes of {name}").into_bytes(),
            )
            .await?;
        ensure!(status == 200, "{status} {body}");
        let uri = body["content_uri"].as_str().context("uri")?;
        ids.push(uri.rsplit('/').next().context("id")?.to_owned());
    }
    let download = |id: &str| format!("/_matrix/client/v1/media/download/localhost/{id}");
    let room = alice.create_room(json!({})).await?;
    let content = json!({ "msgtype": "m.image", "body": "a", "url": format!("mxc://localhost/{}", ids[0]),
                          "info": { "thumbnail_url": "mxc://elsewhere.example/remote1" } });
    let (status, body) = alice.put(&myelin_e2e::room_path(&room, "send/m.room.message/t1"), &content).await?;
    ensure!(status == 200, "{status} {body}");

    let (status, media) = root.get(&format!("/_synapse/admin/v1/room/{}/media", enc(&room))).await?;
    ensure!(status == 200, "{status} {media}");
    ensure!(media["local"] == json!([format!("mxc://localhost/{}", ids[0])]), "{media}");
    ensure!(media["remote"] == json!(["mxc://elsewhere.example/remote1"]), "{media}");

    let (status, body) = root.post(&format!("/_synapse/admin/v1/media/protect/{}", ids[1]), &json!({})).await?;
    ensure!(status == 200, "{status} {body}");
    for id in [&ids[0], &ids[1]] {
        let (status, body) =
            root.post(&format!("/_synapse/admin/v1/media/quarantine/localhost/{id}"), &json!({})).await?;
        ensure!(status == 200, "{status} {body}");
    }
    let (status, _, _) = alice.get_bytes(&download(&ids[0])).await?;
    ensure!(status == 404, "quarantined: {status}");
    let (status, _, bytes) = alice.get_bytes(&download(&ids[1])).await?;
    ensure!(status == 200 && bytes == b"bytes of b", "protected: {status}");
    let (_, info) = root.get(&format!("/_synapse/admin/v1/media/localhost/{}", ids[0])).await?;
    ensure!(info["media_info"]["quarantined_by"] == root.user_id.as_str(), "{info}");
    let (_, info) = root.get(&format!("/_synapse/admin/v1/media/localhost/{}", ids[1])).await?;
    ensure!(
        info["media_info"]["safe_from_quarantine"] == true && info["media_info"]["quarantined_by"].is_null(),
        "{info}"
    );
    let (status, body) =
        root.post(&format!("/_synapse/admin/v1/media/unquarantine/localhost/{}", ids[0]), &json!({})).await?;
    ensure!(status == 200, "{status} {body}");
    let (status, _, _) = alice.get_bytes(&download(&ids[0])).await?;
    ensure!(status == 200, "served again: {status}");
    let (status, body) =
        root.post(&format!("/_synapse/admin/v1/room/{}/media/quarantine", enc(&room)), &json!({})).await?;
    ensure!(status == 200 && body["num_quarantined"] == 2, "the local and the remote one: {status} {body}");
    let (status, _, _) = alice.get_bytes(&download(&ids[0])).await?;
    ensure!(status == 404, "quarantined with its room: {status}");

    // One media deleted; old media deleted except the protected one.
    let (status, body) = root.delete(&format!("/_synapse/admin/v1/media/localhost/{}", ids[2]), &json!({})).await?;
    ensure!(status == 200 && body["deleted_media"] == json!([ids[2]]) && body["total"] == 1, "{status} {body}");
    let (status, _, _) = alice.get_bytes(&download(&ids[2])).await?;
    ensure!(status == 404, "deleted: {status}");
    let (status, body) = root.delete("/_synapse/admin/v1/media/elsewhere.example/remote1", &json!({})).await?;
    ensure!(status == 400, "only local media: {status} {body}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() + 1;
    let (status, body) =
        root.post(&format!("/_synapse/admin/v1/media/delete?before_ts={}", now + 60_000), &json!({})).await?;
    ensure!(status == 400, "before_ts in the future: {status} {body}");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let (status, body) = root.post(&format!("/_synapse/admin/v1/media/delete?before_ts={now}"), &json!({})).await?;
    ensure!(status == 200 && body["deleted_media"] == json!([ids[0]]), "the protected one stays: {status} {body}");
    let (status, _, _) = alice.get_bytes(&download(&ids[1])).await?;
    ensure!(status == 200, "protected: {status}");
    let (status, body) = root.post("/_synapse/admin/v1/media/delete", &json!({})).await?;
    ensure!(status == 400 && errcode(&body) == "M_MISSING_PARAM", "{status} {body}");
    let (status, body) =
        root.post(&format!("/_synapse/admin/v1/purge_media_cache?before_ts={now}"), &json!({})).await?;
    ensure!(status == 200 && body["deleted"] == 0, "no remote media kept: {status} {body}");
    Ok(())
}

/// Event reports as admins read them (newest first, filtered, paged, with the event), and
/// deleted.
#[tokio::test]
async fn admins_read_and_delete_event_reports() -> Result<()> {
    let server = TestServer::start_with(NO_RATE_LIMITS).await?;
    let root = root_of(&server).await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "name": "Reports", "preset": "public_chat" })).await?;
    bob.join(&room).await?;
    let bad = alice.send_message(&room, "something bad").await?;
    let worse = alice.send_message(&room, "something worse").await?;
    for (reporter, event) in [(&bob, &bad), (&bob, &worse), (&alice, &worse)] {
        let path = myelin_e2e::room_path(&room, &format!("report/{}", enc(event)));
        let (status, body) = reporter.post(&path, &json!({ "reason": "spam", "score": -100 })).await?;
        ensure!(status == 200, "{status} {body}");
    }
    let (status, reports) = root.get("/_synapse/admin/v1/event_reports?limit=2").await?;
    ensure!(status == 200 && reports["total"] == 3 && reports["next_token"] == 2, "{status} {reports}");
    let newest = &reports["event_reports"][0];
    ensure!(newest["event_id"] == worse.as_str() && newest["user_id"] == alice.user_id.as_str(), "{reports}");
    ensure!(
        newest["sender"] == alice.user_id.as_str() && newest["name"] == "Reports" && newest["reason"] == "spam",
        "{newest}"
    );
    let (_, by_bob) =
        root.get(&format!("/_synapse/admin/v1/event_reports?user_id={}&dir=f", enc(&bob.user_id))).await?;
    ensure!(by_bob["total"] == 2 && by_bob["event_reports"][0]["event_id"] == bad.as_str(), "{by_bob}");
    let id = newest["id"].as_i64().context("id")?;
    let (status, one) = root.get(&format!("/_synapse/admin/v1/event_reports/{id}")).await?;
    ensure!(status == 200 && one["event_json"]["content"]["body"] == "something worse", "{status} {one}");
    let (status, body) = root.delete(&format!("/_synapse/admin/v1/event_reports/{id}"), &json!({})).await?;
    ensure!(status == 200, "{status} {body}");
    let (status, body) = root.get(&format!("/_synapse/admin/v1/event_reports/{id}")).await?;
    ensure!(status == 404 && errcode(&body) == "M_NOT_FOUND", "{status} {body}");
    let (status, body) = root.get("/_synapse/admin/v1/event_reports/abc").await?;
    ensure!(status == 400 && errcode(&body) == "M_INVALID_PARAM", "{status} {body}");
    Ok(())
}

/// Registration tokens made by an admin open a closed server to as many registrations as they
/// allow, until they expire; listed, changed and deleted through the admin API.
#[tokio::test]
async fn admin_registration_tokens_open_registration_as_many_times_as_allowed() -> Result<()> {
    let server = TestServer::start_with(&format!("{NO_RATE_LIMITS}[registration]\nenabled = false\n")).await?;
    let root = root_of(&server).await?;
    let register = |name: &str, token: &str| {
        json!({ "username": name, "password": format!("{name}-password-1"),
                "auth": { "type": "m.login.registration_token", "token": token } })
    };
    let (status, body) = server.anonymous().post("/_matrix/client/v3/register", &register("early", "x")).await?;
    ensure!(status == 403, "closed without tokens: {status} {body}");

    let (status, made) =
        root.post("/_synapse/admin/v1/registration_tokens/new", &json!({ "token": "once", "uses_allowed": 1 })).await?;
    ensure!(
        status == 200
            && made == json!({ "token": "once", "uses_allowed": 1, "pending": 0, "completed": 0, "expiry_time": null }),
        "{status} {made}"
    );
    let (status, body) = root.post("/_synapse/admin/v1/registration_tokens/new", &json!({ "token": "once" })).await?;
    ensure!(status == 400, "exists: {status} {body}");
    let (status, body) =
        root.post("/_synapse/admin/v1/registration_tokens/new", &json!({ "token": "no spaces" })).await?;
    ensure!(status == 400 && errcode(&body) == "M_INVALID_PARAM", "{status} {body}");
    let (status, made_up) = root.post("/_synapse/admin/v1/registration_tokens/new", &json!({ "length": 20 })).await?;
    ensure!(status == 200 && made_up["token"].as_str().is_some_and(|t| t.len() == 20), "{status} {made_up}");

    let validity = "/_matrix/client/v1/register/m.login.registration_token/validity?token=once";
    let (status, body) = server.anonymous().get(validity).await?;
    ensure!(status == 200 && body["valid"] == true, "{status} {body}");
    let (status, body) = server.anonymous().post("/_matrix/client/v3/register", &register("first", "once")).await?;
    ensure!(status == 200, "{status} {body}");
    let (status, body) = server.anonymous().post("/_matrix/client/v3/register", &register("second", "once")).await?;
    ensure!(status == 401 && errcode(&body) == "M_UNAUTHORIZED", "used up: {status} {body}");
    let (_, body) = server.anonymous().get(validity).await?;
    ensure!(body["valid"] == false, "{body}");
    let (_, token) = root.get("/_synapse/admin/v1/registration_tokens/once").await?;
    ensure!(token["completed"] == 1 && token["pending"] == 0, "{token}");
    let (_, invalid) = root.get("/_synapse/admin/v1/registration_tokens?valid=false").await?;
    ensure!(
        invalid["registration_tokens"].as_array().is_some_and(|t| t.len() == 1 && t[0]["token"] == "once"),
        "{invalid}"
    );

    let (status, changed) =
        root.put("/_synapse/admin/v1/registration_tokens/once", &json!({ "uses_allowed": 2 })).await?;
    ensure!(status == 200 && changed["uses_allowed"] == 2, "{status} {changed}");
    let (status, body) = server.anonymous().post("/_matrix/client/v3/register", &register("second", "once")).await?;
    ensure!(status == 200, "one more use allowed: {status} {body}");
    let (status, body) =
        root.put("/_synapse/admin/v1/registration_tokens/once", &json!({ "uses_allowed": "many" })).await?;
    ensure!(status == 400 && errcode(&body) == "M_INVALID_PARAM", "{status} {body}");

    // An expired token registers nobody.
    let (status, _) =
        root.post("/_synapse/admin/v1/registration_tokens/new", &json!({ "token": "brief", "expiry_time": 1 })).await?;
    ensure!(status == 400, "an expiry in the past is refused");
    let soon = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64 + 300;
    let (status, body) = root
        .post("/_synapse/admin/v1/registration_tokens/new", &json!({ "token": "brief", "expiry_time": soon }))
        .await?;
    ensure!(status == 200, "{status} {body}");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let (status, body) = server.anonymous().post("/_matrix/client/v3/register", &register("late", "brief")).await?;
    ensure!(status == 401, "expired: {status} {body}");

    let (status, body) = root.delete("/_synapse/admin/v1/registration_tokens/once", &json!({})).await?;
    ensure!(status == 200, "{status} {body}");
    let (status, body) = root.get("/_synapse/admin/v1/registration_tokens/once").await?;
    ensure!(status == 404 && errcode(&body) == "M_NOT_FOUND", "{status} {body}");
    let (_, all) = root.get("/_synapse/admin/v1/registration_tokens").await?;
    ensure!(all["registration_tokens"].as_array().is_some_and(|t| t.len() == 2), "{all}");

    // The CLI makes and lists tokens through the same service, beside the running server.
    let out = server.admin(&["token", "create", "from-cli", "--uses", "1"])?;
    ensure!(out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "from-cli", "{out:?}");
    let out = server.admin(&["token", "list"])?;
    let listed = String::from_utf8_lossy(&out.stdout);
    ensure!(listed.contains("from-cli\tuses_allowed=1\tcompleted=0"), "{listed}");
    let (status, body) = server.anonymous().post("/_matrix/client/v3/register", &register("third", "from-cli")).await?;
    ensure!(status == 200, "{status} {body}");
    Ok(())
}

/// Federation destinations: a server this one talked with is listed; a destination that does
/// not answer backs off, shows it, and is reset by the admin.
#[tokio::test]
async fn admins_see_federation_destinations_and_reset_their_backoff() -> Result<()> {
    let server = TestServer::start_federating().await?;
    let mut peer = TestServer::start_federating().await?;
    let root = root_of(&server).await?;
    let alice = server.register("alice").await?;
    let bob = peer.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    let join = format!("/_matrix/client/v3/join/{}?server_name={}", enc(&room), enc(server.server_name()));
    let (status, body) = bob.post(&join, &json!({})).await?;
    ensure!(status == 200, "{status} {body}");
    let (status, list) = root.get("/_synapse/admin/v1/federation/destinations").await?;
    ensure!(status == 200, "{status} {list}");
    let peer_name = peer.server_name().to_owned();
    let listed: Vec<&str> =
        list["destinations"].as_array().into_iter().flatten().filter_map(|d| d["destination"].as_str()).collect();
    ensure!(listed.contains(&peer_name.as_str()), "{list}");
    let one = format!("/_synapse/admin/v1/federation/destinations/{}", enc(&peer_name));
    let (status, dest) = root.get(&one).await?;
    ensure!(status == 200 && dest["retry_interval"] == 0 && dest["failure_ts"].is_null(), "{status} {dest}");

    // The peer is down: sending to it fails and backs off.
    peer.stop().await?;
    alice.send_message(&room, "while the peer is down").await?;
    let mut failing = Value::Null;
    for _ in 0..100 {
        let (_, dest) = root.get(&one).await?;
        if dest["retry_interval"].as_u64().is_some_and(|i| i > 0) {
            failing = dest;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    ensure!(failing["failure_ts"].as_u64().is_some_and(|t| t > 0), "backing off: {failing}");
    let (status, body) = root.post(&format!("{one}/reset_connection"), &json!({})).await?;
    ensure!(status == 200, "{status} {body}");
    let (status, body) =
        root.post("/_synapse/admin/v1/federation/destinations/unknown.example/reset_connection", &json!({})).await?;
    ensure!(status == 404, "{status} {body}");
    Ok(())
}
