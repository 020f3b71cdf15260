//! Accounts: registration, login, tokens, passwords, devices, profiles and the admin commands.

use anyhow::{Context, Result, ensure};
use myelin_e2e::{TestServer, enc};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_login_whoami_logout() -> Result<()> {
    let server = TestServer::start().await?;
    let anon = server.anonymous();
    let (status, body) = anon.get("/_matrix/client/v3/register/available?username=alice").await?;
    ensure!(status == 200 && body["available"] == true, "alice is available: {status} {body}");
    let alice = server.register("alice").await?;
    ensure!(alice.user_id == "@alice:localhost", "user id {}", alice.user_id);
    let (status, body) = anon.get("/_matrix/client/v3/register/available?username=alice").await?;
    ensure!(status == 400 && body["errcode"] == "M_USER_IN_USE", "taken name: {status} {body}");
    let (status, body) = anon
        .post(
            "/_matrix/client/v3/register",
            &json!({ "username": "alice", "password": "x", "auth": { "type": "m.login.dummy" } }),
        )
        .await?;
    ensure!(status == 400 && body["errcode"] == "M_USER_IN_USE", "duplicate registration: {status} {body}");
    let (status, body) = anon.get("/_matrix/client/v3/register/available?username=Bad%20Name!").await?;
    ensure!(status == 400 && body["errcode"] == "M_INVALID_USERNAME", "availability of a bad name: {status} {body}");
    for bad in ["Bad Name!", "émile", "a:b", ""] {
        let (status, body) = anon
            .post(
                "/_matrix/client/v3/register",
                &json!({ "username": bad, "password": "pw", "auth": { "type": "m.login.dummy" } }),
            )
            .await?;
        ensure!(
            status == 400 && body["errcode"] == "M_INVALID_USERNAME",
            "registering {bad:?} should be refused as M_INVALID_USERNAME, user saw {status} {body}"
        );
    }

    let (status, body) = alice.get("/_matrix/client/v3/account/whoami").await?;
    ensure!(
        status == 200 && body["user_id"] == "@alice:localhost" && body["device_id"] == alice.device_id.as_str(),
        "whoami: {body}"
    );

    // Legacy `user` login and the identifier form both work; a wrong password is M_FORBIDDEN.
    let (status, body) = anon
        .post(
            "/_matrix/client/v3/login",
            &json!({ "type": "m.login.password", "user": "alice", "password": "alice-password" }),
        )
        .await?;
    ensure!(
        status == 200 && body["user_id"] == "@alice:localhost" && body["access_token"].is_string(),
        "legacy `user` login: {status} {body}"
    );
    let phone = server.login("alice").await?;
    let (status, body) = anon
        .post(
            "/_matrix/client/v3/login",
            &json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "wrong" }),
        )
        .await?;
    ensure!(status == 403 && body["errcode"] == "M_FORBIDDEN", "wrong password: {status} {body}");

    let (status, _) = phone.post("/_matrix/client/v3/logout", &json!({})).await?;
    ensure!(status == 200, "logout");
    let (status, body) = phone.get("/_matrix/client/v3/account/whoami").await?;
    ensure!(status == 401 && body["errcode"] == "M_UNKNOWN_TOKEN", "token dead after logout: {status} {body}");
    let (status, _) = alice.get("/_matrix/client/v3/account/whoami").await?;
    ensure!(status == 200, "other device still logged in");
    let laptop = server.login("alice").await?;
    let (status, _) = alice.post("/_matrix/client/v3/logout/all", &json!({})).await?;
    ensure!(status == 200, "logout/all");
    for c in [&alice, &laptop] {
        let (status, body) = c.get("/_matrix/client/v3/account/whoami").await?;
        ensure!(
            status == 401 && body["errcode"] == "M_UNKNOWN_TOKEN",
            "every token is dead after logout/all, but whoami answered {status} {body}"
        );
    }
    let (_, flows) = anon.get("/_matrix/client/v3/login").await?;
    ensure!(
        flows["flows"].as_array().is_some_and(|f| f.iter().any(|x| x["type"] == "m.login.password")),
        "GET /login offers m.login.password: {flows}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_rotate() -> Result<()> {
    let server = TestServer::start().await?;
    let anon = server.anonymous();
    let (_, challenge) =
        anon.post("/_matrix/client/v3/register", &json!({ "username": "rita", "password": "pw" })).await?;
    let (status, body) = anon
        .post(
            "/_matrix/client/v3/register",
            &json!({ "username": "rita", "password": "pw", "refresh_token": true,
                     "auth": { "type": "m.login.dummy", "session": challenge["session"] } }),
        )
        .await?;
    ensure!(
        status == 200 && body["refresh_token"].is_string() && body["expires_in_ms"].as_u64().is_some(),
        "refreshable session: {body}"
    );
    let old_access = body["access_token"].as_str().unwrap_or_default().to_owned();
    let refresh = body["refresh_token"].clone();
    let (status, renewed) = anon.post("/_matrix/client/v3/refresh", &json!({ "refresh_token": refresh })).await?;
    ensure!(status == 200 && renewed["access_token"] != old_access.as_str(), "refresh gives a new token: {renewed}");
    // The answer was lost and the client asks again: the same pair (the spec keeps the old
    // refresh token valid until the new one is used).
    let (status, again) = anon.post("/_matrix/client/v3/refresh", &json!({ "refresh_token": refresh })).await?;
    ensure!(status == 200 && again["access_token"] == renewed["access_token"], "a retry: {status} {again}");
    let mut old = server.anonymous();
    old.token = Some(old_access);
    let (status, _) = old.get("/_matrix/client/v3/account/whoami").await?;
    ensure!(status == 401, "the replaced access token is dead");
    let mut fresh = server.anonymous();
    fresh.token = renewed["access_token"].as_str().map(str::to_owned);
    let (status, _) = fresh.get("/_matrix/client/v3/account/whoami").await?;
    ensure!(status == 200, "the new access token works");
    // Once the new refresh token was used, the old one is dead, and using it ends the session.
    let (status, third) =
        anon.post("/_matrix/client/v3/refresh", &json!({ "refresh_token": renewed["refresh_token"] })).await?;
    ensure!(status == 200, "{status} {third}");
    let (status, body) = anon.post("/_matrix/client/v3/refresh", &json!({ "refresh_token": refresh })).await?;
    ensure!(status == 401 && body["errcode"] == "M_UNKNOWN_TOKEN", "a used refresh token is dead: {status} {body}");
    let mut newest = server.anonymous();
    newest.token = third["access_token"].as_str().map(str::to_owned);
    ensure!(newest.get("/_matrix/client/v3/account/whoami").await?.0 == 401, "a replay ends the session");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_devices_and_deactivation_need_the_password() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let phone = server.login("alice").await?;
    let (status, devices) = alice.get("/_matrix/client/v3/devices").await?;
    ensure!(status == 200 && devices["devices"].as_array().map_or(0, Vec::len) == 2, "two devices: {devices}");
    let path = format!("/_matrix/client/v3/devices/{}", enc(&phone.device_id));
    let (status, _) = alice.put(&path, &json!({ "display_name": "Phone" })).await?;
    ensure!(status == 200, "rename device");
    let (_, device) = alice.get(&path).await?;
    ensure!(device["display_name"] == "Phone", "renamed: {device}");

    let (status, challenge) = alice.delete(&path, &json!({})).await?;
    ensure!(
        status == 401 && challenge["flows"][0]["stages"][0] == "m.login.password",
        "delete asks for UIA: {challenge}"
    );
    let auth = |password: &str| {
        json!({ "auth": { "type": "m.login.password", "session": challenge["session"],
        "identifier": { "type": "m.id.user", "user": "alice" }, "password": password } })
    };
    let (status, body) = alice.delete(&path, &auth("wrong")).await?;
    ensure!(status == 401 && body["errcode"] == "M_FORBIDDEN", "wrong password in UIA: {status} {body}");
    let (status, _) = alice.delete(&path, &auth("alice-password")).await?;
    ensure!(status == 200, "delete with password");
    let (status, _) = phone.get("/_matrix/client/v3/account/whoami").await?;
    ensure!(status == 401, "deleted device's token is dead");

    // Password change: UIA asks for the password first, then the new one is the only one that works.
    let tablet = server.login("alice").await?;
    let (status, challenge) =
        alice.post("/_matrix/client/v3/account/password", &json!({ "new_password": "new-secret" })).await?;
    ensure!(
        status == 401
            && challenge["session"].is_string()
            && challenge["flows"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x["stages"] == json!(["m.login.password"]))),
        "password change without auth should ask for m.login.password, user saw {status} {challenge}"
    );
    let (status, body) = alice
        .post(
            "/_matrix/client/v3/account/password",
            &json!({ "new_password": "new-secret",
                     "auth": { "type": "m.login.password", "session": challenge["session"],
                               "identifier": { "type": "m.id.user", "user": "alice" }, "password": "alice-password" } }),
        )
        .await?;
    ensure!(status == 200, "password change with the current password: {status} {body}");
    let (status, _) = alice.get("/_matrix/client/v3/account/whoami").await?;
    ensure!(status == 200, "the device that changed the password stays logged in");
    let (status, body) = tablet.get("/_matrix/client/v3/account/whoami").await?;
    ensure!(
        status == 401 && body["errcode"] == "M_UNKNOWN_TOKEN",
        "other devices are logged out by a password change (logout_devices defaults to true): {status} {body}"
    );
    let anon = server.anonymous();
    let (status, body) = anon
        .post(
            "/_matrix/client/v3/login",
            &json!({ "type": "m.login.password", "user": "alice", "password": "alice-password" }),
        )
        .await?;
    ensure!(status == 403 && body["errcode"] == "M_FORBIDDEN", "the old password no longer logs in: {status} {body}");
    anon.login("alice", "new-secret").await.context("login with the new password")?;

    // Deactivation: UIA again; afterwards no token, no login, and the name stays taken.
    let (status, challenge) = alice.post("/_matrix/client/v3/account/deactivate", &json!({})).await?;
    ensure!(status == 401 && challenge["session"].is_string(), "deactivate asks for UIA: {status} {challenge}");
    let deactivate = |password: &str| {
        json!({ "auth": { "type": "m.login.password", "session": challenge["session"],
                          "identifier": { "type": "m.id.user", "user": "alice" }, "password": password } })
    };
    let (status, body) = alice.post("/_matrix/client/v3/account/deactivate", &deactivate("alice-password")).await?;
    ensure!(
        status == 401 && body["errcode"] == "M_FORBIDDEN",
        "deactivating with the old password must fail: {status} {body}"
    );
    let (status, body) = alice.post("/_matrix/client/v3/account/deactivate", &deactivate("new-secret")).await?;
    ensure!(status == 200, "deactivate with the password: {status} {body}");
    let (status, body) = alice.get("/_matrix/client/v3/account/whoami").await?;
    ensure!(status == 401, "a deactivated account's token is dead, whoami answered {status} {body}");
    let (status, body) = anon
        .post(
            "/_matrix/client/v3/login",
            &json!({ "type": "m.login.password", "user": "alice", "password": "new-secret" }),
        )
        .await?;
    ensure!(
        status == 403 && (body["errcode"] == "M_FORBIDDEN" || body["errcode"] == "M_USER_DEACTIVATED"),
        "a deactivated user cannot log in: {status} {body}"
    );
    let (status, body) = anon.get("/_matrix/client/v3/register/available?username=alice").await?;
    ensure!(
        status == 400 && body["errcode"] == "M_USER_IN_USE",
        "a deactivated user's name cannot be registered again: {status} {body}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_changes_reach_room_membership() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    bob.join(&room).await?;
    let (status, _) = alice
        .put("/_matrix/client/v3/profile/@alice:localhost/displayname", &json!({ "displayname": "Alice A." }))
        .await?;
    ensure!(status == 200, "set displayname");
    let (status, body) = bob.get("/_matrix/client/v3/profile/@alice:localhost/displayname").await?;
    ensure!(status == 200 && body["displayname"] == "Alice A.", "profile: {body}");
    let (status, body) =
        bob.put("/_matrix/client/v3/profile/@alice:localhost/displayname", &json!({ "displayname": "x" })).await?;
    ensure!(status == 403, "bob cannot change alice's profile: {status} {body}");
    let (_, member) = bob
        .get(&format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", enc(&room), enc("@alice:localhost")))
        .await?;
    ensure!(
        member["displayname"] == "Alice A." && member["membership"] == "join",
        "member event follows the profile: {member}"
    );
    let (_, joined) = bob.get(&format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room))).await?;
    ensure!(joined["joined"]["@alice:localhost"]["display_name"] == "Alice A.", "joined_members: {joined}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_create_reset_and_deactivate() -> Result<()> {
    let server = TestServer::start().await?;
    let anon = server.anonymous();
    let out = server.admin(&["user", "create", "root", "--admin", "--password", "root-password"])?;
    ensure!(out.status.success(), "`myelin user create` failed: {}", String::from_utf8_lossy(&out.stderr));
    let root = server.login("root").await.context("the operator-created user logs in with its password")?;
    let (status, body) = root.get("/_matrix/client/v3/account/whoami").await?;
    ensure!(status == 200 && body["user_id"] == "@root:localhost", "whoami of the created user: {status} {body}");
    let out = server.admin(&["user", "create", "root", "--password", "again"])?;
    ensure!(!out.status.success(), "creating an existing user again must fail");

    let out = server.admin(&["user", "reset-password", "root", "--password", "other"])?;
    ensure!(out.status.success(), "reset-password: {}", String::from_utf8_lossy(&out.stderr));
    let (status, _) = root.get("/_matrix/client/v3/account/whoami").await?;
    ensure!(status == 401, "a password reset logs out every device");
    let (status, _) = anon
        .post(
            "/_matrix/client/v3/login",
            &json!({ "type": "m.login.password", "user": "root", "password": "root-password" }),
        )
        .await?;
    ensure!(status == 403, "the password from before the reset no longer logs in");
    let session = anon.login("root", "other").await.context("login with the reset password")?;

    let out = server.admin(&["user", "deactivate", "root"])?;
    ensure!(out.status.success(), "deactivate: {}", String::from_utf8_lossy(&out.stderr));
    let (status, body) = anon
        .post("/_matrix/client/v3/login", &json!({ "type": "m.login.password", "user": "root", "password": "other" }))
        .await?;
    ensure!(status == 403, "a deactivated user cannot log in, but login answered {status} {body}");
    let (status, _) = session.get("/_matrix/client/v3/account/whoami").await?;
    ensure!(status == 401, "deactivation ends the user's sessions");
    let out = server.admin(&["user", "deactivate", "nobody"])?;
    ensure!(!out.status.success(), "deactivating an unknown user fails");
    let out = server.admin(&["config", "check"])?;
    ensure!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("server_name"),
        "config check prints the config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_tokens_and_closed_registration() -> Result<()> {
    let server = TestServer::start_with("[registration]\nenabled = false\ntokens = [\"let-me-in\"]\n").await?;
    let anon = server.anonymous();
    let (status, challenge) =
        anon.post("/_matrix/client/v3/register", &json!({ "username": "tia", "password": "pw" })).await?;
    ensure!(
        status == 401 && challenge["flows"][0]["stages"][0] == "m.login.registration_token",
        "token flow only: {challenge}"
    );
    let (status, _) = anon
        .post("/_matrix/client/v3/register", &json!({ "username": "tia", "password": "pw", "auth": { "type": "m.login.dummy", "session": challenge["session"] } }))
        .await?;
    ensure!(status == 401, "dummy auth is not enough when registration is closed");
    let (status, body) = anon
        .post(
            "/_matrix/client/v3/register",
            &json!({ "username": "tia", "password": "pw",
            "auth": { "type": "m.login.registration_token", "token": "let-me-in", "session": challenge["session"] } }),
        )
        .await?;
    ensure!(status == 200 && body["user_id"] == "@tia:localhost", "registered with a token: {status} {body}");
    let closed = TestServer::start_with("[registration]\nenabled = false\n").await?;
    let (status, body) = closed.anonymous().post("/_matrix/client/v3/register", &json!({ "username": "x" })).await?;
    ensure!(status == 403 && body["errcode"] == "M_FORBIDDEN", "closed registration: {status} {body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_tokens_are_single_use() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let (status, challenge) = alice.post("/_matrix/client/v1/login/get_token", &json!({})).await?;
    ensure!(status == 401, "get_token asks for the password: {challenge}");
    let (status, body) = alice
        .post(
            "/_matrix/client/v1/login/get_token",
            &json!({ "auth": { "type": "m.login.password", "session": challenge["session"], "user": "alice", "password": "alice-password" } }),
        )
        .await?;
    ensure!(status == 200 && body["expires_in_ms"].as_u64().is_some(), "login token: {body}");
    let token = body["login_token"].clone();
    let anon = server.anonymous();
    let (status, session) =
        anon.post("/_matrix/client/v3/login", &json!({ "type": "m.login.token", "token": token })).await?;
    ensure!(status == 200 && session["user_id"] == "@alice:localhost", "login with the token: {session}");
    let (status, body) =
        anon.post("/_matrix/client/v3/login", &json!({ "type": "m.login.token", "token": token })).await?;
    ensure!(status == 403 && body["errcode"] == "M_FORBIDDEN", "a login token works once: {status} {body}");
    let (_, flows) = anon.get("/_matrix/client/v3/login").await?;
    ensure!(flows["flows"].as_array().is_some_and(|f| f.iter().any(|x| x["type"] == "m.login.token")), "{flows}");
    Ok(())
}

/// A registration retried in its user-interactive session (the answer was lost) gets the same
/// account and a new device, with or without a user name; a new session is a new registration.
#[tokio::test]
async fn a_retried_registration_gets_the_same_account() -> Result<()> {
    let server = TestServer::start().await?;
    let anon = server.anonymous();
    for username in [Some("retrier"), None] {
        let mut body = json!({ "password": "a-long-enough-password" });
        if let Some(name) = username {
            body["username"] = json!(name);
        }
        let (status, challenge) = anon.post("/_matrix/client/v3/register", &body).await?;
        ensure!(status == 401, "{challenge}");
        body["auth"] = json!({ "type": "m.login.dummy", "session": challenge["session"] });
        let (status, first) = anon.post("/_matrix/client/v3/register", &body).await?;
        ensure!(status == 200, "{status} {first}");
        let (status, again) = anon.post("/_matrix/client/v3/register", &body).await?;
        ensure!(status == 200 && again["user_id"] == first["user_id"], "the same account: {status} {again}");
        ensure!(again["device_id"] != first["device_id"] && again["access_token"].is_string(), "a new device: {again}");
        let client = anon.with_token(again["access_token"].as_str());
        let (status, whoami) = client.get("/_matrix/client/v3/account/whoami").await?;
        ensure!(status == 200 && whoami["user_id"] == first["user_id"], "{whoami}");
    }
    // Another session with a taken name is the usual answer.
    let (_, challenge) = anon.post("/_matrix/client/v3/register", &json!({ "username": "retrier" })).await?;
    let (status, body) = anon
        .post(
            "/_matrix/client/v3/register",
            &json!({ "username": "retrier", "password": "a-long-enough-password",
                     "auth": { "type": "m.login.dummy", "session": challenge["session"] } }),
        )
        .await?;
    ensure!(status == 400 && body["errcode"] == "M_USER_IN_USE", "{status} {body}");
    Ok(())
}

/// Deactivates `client` (password `<name>-password`), erasing it or not.
async fn deactivate(client: &myelin_e2e::Client, name: &str, erase: bool) -> Result<()> {
    let (status, challenge) = client.post("/_matrix/client/v3/account/deactivate", &json!({})).await?;
    ensure!(status == 401, "{challenge}");
    let body = json!({
        "erase": erase,
        "auth": { "type": "m.login.password", "session": challenge["session"],
                  "identifier": { "type": "m.id.user", "user": name }, "password": format!("{name}-password") },
    });
    let (status, body) = client.post("/_matrix/client/v3/account/deactivate", &body).await?;
    ensure!(status == 200, "deactivate {name}: {status} {body}");
    Ok(())
}

/// Deactivation with `erase: true`: the user's messages are shown redacted to users who join
/// later; members who were there when they were sent still see them; without `erase` nothing
/// changes for anyone.
#[tokio::test]
async fn an_erased_users_messages_are_hidden_from_later_joiners() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let dave = server.register("dave").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    ensure!(bob.join(&room).await?.0 == 200 && dave.join(&room).await?.0 == 200);
    bob.send_message(&room, "bob's words").await?;
    dave.send_message(&room, "dave's words").await?;
    deactivate(&bob, "bob", true).await?;
    deactivate(&dave, "dave", false).await?;

    let bodies = |events: Vec<serde_json::Value>| -> Vec<String> {
        events.iter().filter_map(|e| e["content"]["body"].as_str().map(str::to_owned)).collect()
    };
    let carol = server.register("carol").await?;
    ensure!(carol.join(&room).await?.0 == 200);
    let seen_by_carol = bodies(carol.all_messages(&room, 50).await?);
    ensure!(!seen_by_carol.contains(&"bob's words".to_owned()), "erased for a later joiner: {seen_by_carol:?}");
    ensure!(seen_by_carol.contains(&"dave's words".to_owned()), "not erased: {seen_by_carol:?}");
    let bob_event = carol
        .all_messages(&room, 50)
        .await?
        .into_iter()
        .find(|e| e["sender"] == bob.user_id.as_str() && e["type"] == "m.room.message")
        .context("bob's message is still there, redacted")?;
    ensure!(bob_event["content"] == json!({}), "{bob_event}");
    let sync = carol.sync(None, 0, None).await?;
    ensure!(!bodies(myelin_e2e::timeline(&sync, &room)).contains(&"bob's words".to_owned()), "in sync too");

    let seen_by_alice = bodies(alice.all_messages(&room, 50).await?);
    ensure!(seen_by_alice.contains(&"bob's words".to_owned()), "alice was there: {seen_by_alice:?}");
    Ok(())
}

/// Registration token validity, whois (self and admin only), unsetting a profile field, and the
/// 3PID endpoints of a server that sends no email or SMS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_validity_whois_profile_delete_and_threepids() -> Result<()> {
    let server = TestServer::start_with(&format!(
        "{}[registration]\nenabled = false\ntokens = [\"let-me-in\"]\n",
        myelin_e2e::NO_RATE_LIMITS
    ))
    .await?;
    let anon = server.anonymous();
    let validity = "/_matrix/client/v1/register/m.login.registration_token/validity";
    let (status, body) = anon.get(&format!("{validity}?token=let-me-in")).await?;
    ensure!(status == 200 && body["valid"] == true, "{status} {body}");
    let (status, body) = anon.get(&format!("{validity}?token=guess")).await?;
    ensure!(status == 200 && body["valid"] == false, "{status} {body}");
    let (status, body) = anon.get(validity).await?;
    ensure!(status == 400 && myelin_e2e::errcode(&body) == "M_MISSING_PARAM", "{status} {body}");

    let output = server.admin(&["user", "create", "root", "--password", "root-password", "--admin"])?;
    ensure!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let root = server.login("root").await?;
    let output = server.admin(&["user", "create", "alice", "--password", "alice-password"])?;
    ensure!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let alice = server.login("alice").await?;
    let whois = |user: &str| format!("/_matrix/client/v3/admin/whois/{}", enc(user));
    let (status, body) = alice.get(&whois(&alice.user_id)).await?;
    ensure!(status == 200 && body["user_id"] == alice.user_id.as_str(), "{status} {body}");
    ensure!(body["devices"].as_object().is_some_and(|d| d.contains_key(&alice.device_id)), "{body}");
    let (status, body) = alice.get(&whois(&root.user_id)).await?;
    ensure!(status == 403 && myelin_e2e::errcode(&body) == "M_FORBIDDEN", "another's: {status} {body}");
    let (status, body) = root.get(&whois(&alice.user_id)).await?;
    ensure!(status == 200 && body["devices"][&alice.device_id]["sessions"][0]["connections"].is_array(), "{body}");
    let (status, body) = root.get(&whois("@nobody:localhost")).await?;
    ensure!(status == 404, "{status} {body}");

    let field = format!("/_matrix/client/v3/profile/{}/displayname", enc(&alice.user_id));
    ensure!(alice.put(&field, &json!({ "displayname": "Alice" })).await?.0 == 200);
    let (status, body) = alice.delete(&field, &json!({})).await?;
    ensure!(status == 200, "{status} {body}");
    let (status, body) = alice.get(&field).await?;
    ensure!(status == 404, "unset: {status} {body}");
    let (status, body) = root.delete(&field, &json!({})).await?;
    ensure!(status == 403, "another's profile: {status} {body}");

    let (status, body) = alice.get("/_matrix/client/v3/account/3pid").await?;
    ensure!(status == 200 && body == json!({ "threepids": [] }), "{status} {body}");
    for path in
        ["/account/3pid/email/requestToken", "/register/email/requestToken", "/account/password/email/requestToken"]
    {
        let (status, body) = anon
            .post(
                &format!("/_matrix/client/v3{path}"),
                &json!({ "client_secret": "s", "email": "a@example.org", "send_attempt": 1 }),
            )
            .await?;
        ensure!(status == 403 && myelin_e2e::errcode(&body) == "M_THREEPID_DENIED", "{path}: {status} {body}");
    }
    Ok(())
}

/// The room a user's sync shows them invited to, if any.
fn invited_room(sync: &serde_json::Value) -> Option<String> {
    sync["rooms"]["invite"].as_object().and_then(|rooms| rooms.keys().next().cloned())
}

/// Server notices as a user gets them: an admin (API, or the CLI) sends one; the user is invited
/// to one room tagged `m.server_notice` by `@notices`, cannot reject the invite, reads the notice
/// after joining and cannot write there; later notices land in the same room, a repeated
/// transaction sends nothing new; after the user leaves, the next notice opens a new room.
/// Non-admins, remote and unknown users, and registering the system user's name are refused.
#[tokio::test]
async fn server_notices_reach_the_user_in_their_notices_room() -> Result<()> {
    let server = TestServer::start().await?;
    let out = server.admin(&["user", "create", "root", "--admin", "--password", "root-password"])?;
    ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let root = server.login("root").await?;
    let bob = server.register("bob").await?;
    let path = "/_synapse/admin/v1/send_server_notice";
    let notice = |body: &str| json!({ "user_id": bob.user_id, "content": { "msgtype": "m.text", "body": body } });

    let (status, body) = bob.post(path, &notice("from a non-admin")).await?;
    ensure!(status == 403 && body["errcode"] == "M_FORBIDDEN", "{status} {body}");
    let (status, body) = root.post(path, &notice("Maintenance tonight at 22:00")).await?;
    ensure!(status == 200 && body["event_id"].is_string(), "{status} {body}\n{}", server.log());

    let sync = bob.sync(None, 0, None).await?;
    let room = invited_room(&sync).context("bob is invited to his notices room")?;
    let (status, tags) =
        bob.get(&format!("/_matrix/client/v3/user/{}/rooms/{}/tags", enc(&bob.user_id), enc(&room))).await?;
    ensure!(status == 200 && tags["tags"].get("m.server_notice").is_some(), "{status} {tags}");
    let (status, body) = bob.post(&format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)), &json!({})).await?;
    ensure!(status == 403 && body["errcode"] == "M_CANNOT_LEAVE_SERVER_NOTICE_ROOM", "{status} {body}");
    let (status, body) = bob.join(&room).await?;
    ensure!(status == 200, "{status} {body}");
    let messages = bob.all_messages(&room, 50).await?;
    let notices: Vec<_> = messages.iter().filter(|e| e["type"] == "m.room.message").collect();
    ensure!(
        notices.len() == 1
            && notices[0]["content"]["body"] == "Maintenance tonight at 22:00"
            && notices[0]["sender"] == server.user_id("notices").as_str(),
        "{messages:?}"
    );
    let (status, body) = bob
        .put(
            &format!("/_matrix/client/v3/rooms/{}/send/m.room.message/t1", enc(&room)),
            &json!({ "msgtype": "m.text", "body": "hi" }),
        )
        .await?;
    ensure!(status == 403, "nobody but the server writes there: {status} {body}");

    // The CLI and a repeated transaction: the same room, one event per transaction.
    let out = server.admin(&["user", "notice", "bob", "Second notice"])?;
    ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Sent by another process (the CLI): the server shows it without writing anything itself.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let messages = bob.all_messages(&room, 50).await?;
        if messages.iter().any(|e| e["content"]["body"] == "Second notice") {
            break;
        }
        ensure!(std::time::Instant::now() < deadline, "the CLI's notice never showed: {messages:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let txn_path = format!("{path}/txn-1");
    let (status, first) = root.put(&txn_path, &notice("Third notice")).await?;
    ensure!(status == 200, "{status} {first}");
    let (status, again) = root.put(&txn_path, &notice("Third notice")).await?;
    ensure!(status == 200 && again["event_id"] == first["event_id"], "{first} {again}");
    let bodies: Vec<String> = bob
        .all_messages(&room, 50)
        .await?
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect();
    ensure!(bodies == ["Maintenance tonight at 22:00", "Second notice", "Third notice"], "{bodies:?}");

    // Leaving after joining is allowed; the next notice comes in a new room.
    let (status, body) = bob.post(&format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)), &json!({})).await?;
    ensure!(status == 200, "{status} {body}");
    let since = bob.sync(None, 0, None).await?;
    let (status, _) = root.post(path, &notice("After you left")).await?;
    ensure!(status == 200);
    let sync = bob.sync(Some(&myelin_e2e::next_batch(&since)?), 0, None).await?;
    let new_room = invited_room(&sync).context("a new notices room")?;
    ensure!(new_room != room, "a new room, not the one left");

    // Refusals.
    let (status, body) =
        root.post(path, &json!({ "user_id": "@someone:elsewhere.example", "content": { "body": "x" } })).await?;
    ensure!(status == 400, "{status} {body}");
    let (status, body) =
        root.post(path, &json!({ "user_id": server.user_id("nobody"), "content": { "body": "x" } })).await?;
    ensure!(status == 404 && body["errcode"] == "M_NOT_FOUND", "{status} {body}");
    let (status, body) = root.post(path, &json!({ "user_id": bob.user_id })).await?;
    ensure!(status == 400 && body["errcode"] == "M_MISSING_PARAM", "{status} {body}");
    let (status, body) = root.post(path, &json!({ "user_id": bob.user_id, "content": "text" })).await?;
    ensure!(status == 400 && body["errcode"] == "M_BAD_JSON", "{status} {body}");
    let (status, body) = server.anonymous().get("/_matrix/client/v3/register/available?username=notices").await?;
    ensure!(status == 400 && body["errcode"] == "M_USER_IN_USE", "the system user's name is taken: {status} {body}");
    Ok(())
}
