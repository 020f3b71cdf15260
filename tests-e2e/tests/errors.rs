//! Bad input gets the right Matrix error and status, never a 500, and the server keeps serving.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use myelin_e2e::{TestServer, enc, errcode, room_path};
use reqwest::Method;
use serde_json::json;

/// Up to 200 characters of a request body, for failure messages.
fn show(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_mistyped_bodies() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let (status, body) = alice.raw(Method::POST, "/_matrix/client/v3/createRoom", b"{not json".to_vec()).await?;
    ensure!(status == 400 && errcode(&body) == "M_NOT_JSON", "malformed JSON: {status} {body}");
    let (status, body) = alice.post("/_matrix/client/v3/createRoom", &json!({ "name": 5 })).await?;
    ensure!(status == 400 && errcode(&body) == "M_BAD_JSON", "wrong field type: {status} {body}");
    let (status, body) = alice.raw(Method::POST, "/_matrix/client/v3/createRoom", b"[1,2]".to_vec()).await?;
    ensure!(status == 400 && errcode(&body) == "M_BAD_JSON", "a JSON array is not an object: {status} {body}");
    let room = alice.create_room(json!({})).await?;
    let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/t1", enc(&room));
    let (status, body) = alice.raw(Method::PUT, &path, b"\"just a string\"".to_vec()).await?;
    ensure!(status == 400 && errcode(&body) == "M_BAD_JSON", "event content must be an object: {status} {body}");
    let (status, body) = alice.raw(Method::PUT, &path, b"{\"n\": 1.5}".to_vec()).await?;
    ensure!(status == 400 && errcode(&body) == "M_BAD_JSON", "floats are not canonical JSON: {status} {body}");
    let (status, body) = alice.raw(Method::PUT, &path, b"{\"body\": \"half".to_vec()).await?;
    ensure!(status == 400 && errcode(&body) == "M_NOT_JSON", "truncated JSON event: {status} {body}");
    let (status, body) = alice.raw(Method::POST, "/_matrix/client/v3/login", b"type=m.login.password".to_vec()).await?;
    ensure!(status == 400 && errcode(&body) == "M_NOT_JSON", "form-encoded login: {status} {body}");
    let (_, joined) = alice.get("/_matrix/client/v3/joined_rooms").await?;
    ensure!(joined["joined_rooms"] == json!([room]), "refused createRooms created nothing: {joined}");
    let history = alice.all_messages(&room, 50).await?;
    ensure!(myelin_e2e::bodies(&history).is_empty(), "refused sends stored nothing");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused_with_413() -> Result<()> {
    let server = TestServer::start_with("[limits]\nmax_request_body_bytes = 1024\n").await?;
    let alice = server.register("alice").await?;
    let big = json!({ "name": "x".repeat(4096) });
    let (status, body) = alice.post("/_matrix/client/v3/createRoom", &big).await?;
    ensure!(status == 413 && errcode(&body) == "M_TOO_LARGE", "4 KiB body over a 1 KiB limit: {status} {body}");
    let (status, body) = alice.raw(Method::POST, "/_matrix/client/v3/createRoom", vec![b' '; 4096]).await?;
    ensure!(status == 413 && errcode(&body) == "M_TOO_LARGE", "4 KiB of raw bytes: {status} {body}");
    let (_, joined) = alice.get("/_matrix/client/v3/joined_rooms").await?;
    ensure!(joined["joined_rooms"] == json!([]), "the oversized createRoom created nothing: {joined}");
    let small = alice.create_room(json!({ "name": "small" })).await?;
    ensure!(small.starts_with('!'), "a small request right after still works");
    // Events over 64 KiB are refused even when the body limit allows them.
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let room = alice.create_room(json!({})).await?;
    let (status, body) = alice.send_with_txn(&room, &"y".repeat(70_000), "huge").await?;
    ensure!(status == 413 && errcode(&body) == "M_TOO_LARGE", "70 KB event: {status} {body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_endpoints_methods_and_tokens() -> Result<()> {
    let server = TestServer::start().await?;
    let anon = server.anonymous();
    let (status, body) = anon.get("/_matrix/client/v3/no/such/endpoint").await?;
    ensure!(status == 404 && errcode(&body) == "M_UNRECOGNIZED", "unknown endpoint: {status} {body}");
    let (status, body) = anon.get("/_matrix/client/v3/account/whoami/extra/segments").await?;
    ensure!(status == 404 && errcode(&body) == "M_UNRECOGNIZED", "unknown sub-path: {status} {body}");
    let (status, body) = anon.get("/no/matrix/here").await?;
    ensure!(status == 404 && errcode(&body) == "M_UNRECOGNIZED", "path outside /_matrix: {status} {body}");
    for (method, path) in [
        (Method::DELETE, "/_matrix/client/v3/createRoom"),
        (Method::GET, "/_matrix/client/v3/createRoom"),
        (Method::PUT, "/_matrix/client/v3/login"),
        (Method::POST, "/_matrix/client/versions"),
    ] {
        let (status, body) = anon.request(method.clone(), path, None).await?;
        ensure!(
            status == 405 && errcode(&body) == "M_UNRECOGNIZED",
            "{method} on {path} (a known endpoint) should be 405 M_UNRECOGNIZED, client saw {status} {body}"
        );
    }
    let (status, versions) = anon.get("/_matrix/client/versions").await?;
    ensure!(
        status == 200 && versions["versions"].as_array().is_some_and(|v| !v.is_empty()),
        "/versions lists spec versions: {status} {versions}"
    );
    for path in ["/_matrix/client/v3/account/whoami", "/_matrix/client/v3/sync", "/_matrix/client/v3/joined_rooms"] {
        let (status, body) = anon.get(path).await?;
        ensure!(status == 401 && errcode(&body) == "M_MISSING_TOKEN", "GET {path} without a token: {status} {body}");
    }
    let (status, body) = anon.post("/_matrix/client/v3/createRoom", &json!({})).await?;
    ensure!(status == 401 && errcode(&body) == "M_MISSING_TOKEN", "createRoom without a token: {status} {body}");
    let mut bad = server.anonymous();
    bad.token = Some("not-a-token".into());
    let (status, body) = bad.get("/_matrix/client/v3/account/whoami").await?;
    ensure!(status == 401 && errcode(&body) == "M_UNKNOWN_TOKEN", "bad token: {status} {body}");
    let (status, body) = anon.get("/_matrix/client/v3/account/whoami?access_token=nope").await?;
    ensure!(status == 401 && errcode(&body) == "M_UNKNOWN_TOKEN", "bad query token: {status} {body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_ids_in_paths() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let room = alice.create_room(json!({})).await?;
    let cases = [
        (Method::GET, "/_matrix/client/v3/rooms/not-a-room/messages?dir=b".to_owned(), None),
        (Method::GET, room_path("@user:localhost", "state"), None),
        (Method::GET, room_path("#alias:localhost", "members"), None),
        (Method::PUT, room_path("no sigil at all", "send/m.room.message/t1"), Some(json!({ "body": "x" }))),
        (Method::POST, room_path("room-without-sigil", "leave"), Some(json!({}))),
        (Method::GET, format!("/_matrix/client/v3/profile/{}", enc("not a user")), None),
        (Method::GET, format!("/_matrix/client/v3/profile/{}/displayname", enc("@no-server")), None),
        (Method::GET, format!("/_matrix/client/v3/user/{}/account_data/x", enc("alice")), None),
        (Method::PUT, room_path(&room, &format!("typing/{}", enc("bob"))), Some(json!({ "typing": true }))),
        (Method::POST, format!("/_matrix/client/v3/join/{}", enc("#bad alias")), Some(json!({}))),
        (Method::POST, format!("/_matrix/client/v3/join/{}", enc("neither-id-nor-alias")), Some(json!({}))),
    ];
    for (method, path, body) in cases {
        let (status, resp) = alice.request(method.clone(), &path, body.as_ref()).await?;
        ensure!(
            status == 400 && errcode(&resp) == "M_INVALID_PARAM",
            "{method} {path} names an invalid id and should be 400 M_INVALID_PARAM, client saw {status} {resp}"
        );
    }
    let (status, body) = alice.get(&room_path("!unknown:localhost", "messages?dir=b")).await?;
    ensure!(status == 403 && errcode(&body) == "M_FORBIDDEN", "a well-formed but unknown room: {status} {body}");
    let (status, body) = alice.get("/_matrix/client/v3/profile/@nobody:localhost").await?;
    ensure!(status == 404 && errcode(&body) == "M_NOT_FOUND", "profile of an unknown user: {status} {body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after() -> Result<()> {
    let server = TestServer::start_with("[rate_limits]\nmessages = { per_second = 1.0, burst = 3 }\n").await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    let (status, body) = bob.join(&room).await?;
    ensure!(status == 200, "bob joins: {status} {body}");
    let mut statuses = Vec::new();
    let mut limited = None;
    for i in 0..6 {
        let (status, body) = alice.send_with_txn(&room, &format!("spam {i}"), &format!("r{i}")).await?;
        statuses.push(status);
        ensure!(status == 200 || status == 429, "rapid send {i}: {status} {body}");
        if status == 429 && limited.is_none() {
            limited = Some(body);
        }
    }
    // Burst 3: the first sends pass (room creation may have used a token), the 4th and later fail.
    ensure!(
        statuses[..2] == [200, 200] && statuses[3..] == [429, 429, 429],
        "six rapid sends with burst 3 should be 200,200,(200|429),429,429,429; alice saw {statuses:?}"
    );
    ensure!(
        statuses.iter().skip_while(|s| **s == 200).all(|s| *s == 429),
        "once limited, rapid sends stay limited: {statuses:?}"
    );
    let body = limited.context("a 429 answer")?;
    ensure!(errcode(&body) == "M_LIMIT_EXCEEDED", "limit error code: {body}");
    let retry = body["retry_after_ms"].as_u64().with_context(|| format!("integer retry_after_ms in {body}"))?;
    ensure!(retry > 0 && retry <= 1000, "retry_after_ms for a 1/s limit should be in 1..=1000: {body}");

    let (status, body) = bob.send_with_txn(&room, "bob is not alice", "b1").await?;
    ensure!(status == 200, "alice's limit does not throttle bob: {status} {body}");
    let (status, body) = alice.send_with_txn(&room, "spam 6", "r6").await?;
    ensure!(status == 429, "still limited without waiting: {status} {body}");
    let retry = body["retry_after_ms"].as_u64().unwrap_or(1000);
    tokio::time::sleep(Duration::from_millis(retry + 100)).await;
    let (status, body) = alice.send_with_txn(&room, "patient", "r7").await?;
    ensure!(status == 200, "after waiting retry_after_ms the send goes through: {status} {body}");
    let history = alice.all_messages(&room, 100).await?;
    let spam = myelin_e2e::bodies(&history).into_iter().filter(|b| b.starts_with("spam")).count();
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    ensure!(spam == accepted, "only the {accepted} accepted sends are in the room, found {spam}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_never_causes_a_500() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let room = alice.create_room(json!({})).await?;
    let r = enc(&room);
    let endpoints = [
        (Method::POST, "/_matrix/client/v3/createRoom".to_owned()),
        (Method::POST, "/_matrix/client/v3/login".to_owned()),
        (Method::POST, "/_matrix/client/v3/register".to_owned()),
        (Method::PUT, format!("/_matrix/client/v3/rooms/{r}/send/m.room.message/g")),
        (Method::PUT, format!("/_matrix/client/v3/rooms/{r}/state/m.room.topic")),
        (Method::POST, format!("/_matrix/client/v3/rooms/{r}/invite")),
        (Method::POST, "/_matrix/client/v3/user/@alice:localhost/filter".to_owned()),
        (Method::PUT, format!("/_matrix/client/v3/rooms/{r}/typing/@alice:localhost")),
        (Method::POST, "/_matrix/client/v3/publicRooms".to_owned()),
        (Method::PUT, "/_matrix/client/v3/pushrules/global/override/x".to_owned()),
        (Method::PUT, "/_matrix/client/v3/profile/@alice:localhost/displayname".to_owned()),
        (Method::POST, format!("/_matrix/client/v3/rooms/{r}/receipt/m.read/{}", enc("$nope"))),
    ];
    // Bodies that are not JSON at all: every endpoint must refuse them with a 4xx.
    let mut not_json: Vec<Vec<u8>> = vec![
        vec![0xff, 0xfe, 0x00, 0x01],
        b"{\"a\":".to_vec(),
        b"{\"a\": 1e400}".to_vec(),
        format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
        (0..2000u32).map(|i| (i % 251) as u8).collect(),
    ];
    for len in [1usize, 17, 300, 4096] {
        let mut bytes: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
        bytes[0] = b'{'; // a JSON-looking start, then noise
        not_json.push(bytes);
    }
    // Valid JSON with absurd shapes and values: may be accepted or refused, never a 500.
    let odd_json: Vec<Vec<u8>> = vec![
        b"null".to_vec(),
        b"{\"user_id\": {\"nested\": [1,2,3]}, \"typing\": \"yes\", \"timeout\": -1}".to_vec(),
        format!("{{\"name\": \"{}\"}}", "\\u0000".repeat(100)).into_bytes(),
        b"{\"membership\": 12, \"actions\": 5, \"conditions\": \"x\", \"pattern\": []}".to_vec(),
        format!("{{\"displayname\": \"{}\", \"body\": \"{}\"}}", "z".repeat(100_000), "y".repeat(100_000)).into_bytes(),
        b"{\"limit\": 99999999999999999999, \"since\": -1, \"filter\": {\"generic_search_term\": 5}}".to_vec(),
        b"{\"type\": \"m.login.password\", \"identifier\": {\"type\": \"m.id.user\", \"user\": [\"@x:y\"]}}".to_vec(),
    ];
    let mut requests = 0;
    for (method, path) in &endpoints {
        for body in &not_json {
            let (status, resp) = alice.raw(method.clone(), path, body.clone()).await?;
            requests += 1;
            ensure!(
                (400..500).contains(&status),
                "{method} {path} with a non-JSON body {:?} should be a 4xx, client saw {status}: {resp}",
                show(body)
            );
        }
        for body in &odd_json {
            let (status, resp) = alice.raw(method.clone(), path, body.clone()).await?;
            requests += 1;
            ensure!(status < 500, "{method} {path} with body {:?} answered {status}: {resp}", show(body));
        }
    }
    let huge = "h".repeat(20_000);
    let queries = [
        format!("/_matrix/client/v3/rooms/{r}/messages?limit=-1"),
        format!("/_matrix/client/v3/rooms/{r}/messages?limit=99999999999999999999"),
        format!("/_matrix/client/v3/rooms/{r}/messages?limit=abc&dir=b"),
        format!("/_matrix/client/v3/rooms/{r}/messages?limit=0&dir=f"),
        format!("/_matrix/client/v3/rooms/{r}/messages?from=garbage"),
        format!("/_matrix/client/v3/rooms/{r}/messages?dir=sideways"),
        format!("/_matrix/client/v3/rooms/{r}/messages?filter=%7Bbroken"),
        format!("/_matrix/client/v3/rooms/{r}/messages?from={huge}"),
        format!("/_matrix/client/v3/rooms/{r}/members?at=garbage&membership=zombie"),
        format!("/_matrix/client/v3/rooms/{r}/state/{huge}"),
        "/_matrix/client/v3/sync?timeout=abc".to_owned(),
        "/_matrix/client/v3/sync?timeout=-5".to_owned(),
        "/_matrix/client/v3/sync?timeout=99999999999999999999&since=".to_owned(),
        "/_matrix/client/v3/sync?since=s-5_x".to_owned(),
        "/_matrix/client/v3/sync?since=s99999999999999_0&timeout=10".to_owned(),
        format!("/_matrix/client/v3/sync?since={huge}&timeout=10"),
        "/_matrix/client/v3/sync?filter=12345".to_owned(),
        "/_matrix/client/v3/sync?set_presence=maybe&full_state=perhaps".to_owned(),
        format!("/_matrix/client/v3/sync?filter={}", "x".repeat(5000)),
        format!("/_matrix/client/v3/sync?filter={}", enc(r#"{"room":{"timeline":{"limit":-7}}}"#)),
        format!("/_matrix/client/v3/rooms/{r}/context/{}?limit=5", enc("$nope")),
        format!("/_matrix/client/v3/rooms/{r}/context/{}?limit=-5", enc("$nope")),
        format!("/_matrix/client/v3/rooms/{r}/event/{}", enc(&huge)),
        format!("/_matrix/client/v1/rooms/{r}/relations/{}", enc("$nope")),
        "/_matrix/client/v3/publicRooms?limit=-1&since=zzz".to_owned(),
        format!("/_matrix/client/v3/register/available?username={huge}"),
        format!("/_matrix/client/v3/profile/{}", enc(&format!("@{huge}:localhost"))),
        "/_matrix/client/v3/user/@alice:localhost/filter/99999999999999999999999".to_owned(),
    ];
    for q in &queries {
        let (status, resp) = alice.get(q).await?;
        requests += 1;
        ensure!(status < 500, "GET {} answered {status}: {resp}", &q[..q.len().min(200)]);
    }
    let (status, resp) = alice
        .put(&format!("/_matrix/client/v3/rooms/{r}/send/m.room.message/{huge}"), &json!({ "body": "long txn" }))
        .await?;
    ensure!(status < 500, "a 20 000-character transaction id answered {status}: {resp}");
    ensure!(requests > 30, "the garbage loop ran ({requests} requests)");

    let (status, _) = server.anonymous().get("/_matrix/client/versions").await?;
    ensure!(status == 200, "server still answers /versions after the garbage");
    let (status, body) = alice.get("/_matrix/client/v3/account/whoami").await?;
    ensure!(status == 200, "alice's session still works after the garbage: {status} {body}");
    let id = alice.send_message(&room, "still alive").await?;
    ensure!(id.starts_with('$'), "sending still works after the garbage: {id}");
    Ok(())
}

/// Logs in as `user` through `client`, returning the status.
async fn login_status(client: &myelin_e2e::Client, user: &str) -> Result<u16> {
    let body = json!({
        "type": "m.login.password",
        "identifier": { "type": "m.id.user", "user": user },
        "password": format!("{user}-password"),
    });
    let (status, answer) = client.post("/_matrix/client/v3/login", &body).await?;
    ensure!(status == 200 || status == 429, "login: {status} {answer}");
    if status == 429 {
        ensure!(errcode(&answer) == "M_LIMIT_EXCEEDED", "{answer}");
    }
    Ok(status)
}

const STRICT_LOGIN: &str = "[rate_limits]\n\
    login = { per_second = 0.01, burst = 2 }\n\
    registration = { per_second = 0.0, burst = 0 }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_login_limits_apply_per_client() -> Result<()> {
    let server = TestServer::start_with(&format!("trusted_proxies = [\"127.0.0.0/8\"]\n{STRICT_LOGIN}")).await?;
    limits_apply_per_forwarded_client(&server).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxies_can_be_given_in_the_environment() -> Result<()> {
    let env = [("MYELIN_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")];
    let server = TestServer::start_with_env(STRICT_LOGIN, &env).await?;
    limits_apply_per_forwarded_client(&server).await
}

/// Logins through the proxy at 127.0.0.1: each forwarded client has its own login budget.
async fn limits_apply_per_forwarded_client(server: &TestServer) -> Result<()> {
    server.register("alice").await?;
    let first = server.anonymous().with_header("X-Forwarded-For", "198.51.100.1");
    let second = server.anonymous().with_header("X-Forwarded-For", "198.51.100.2");
    ensure!(login_status(&first, "alice").await? == 200 && login_status(&first, "alice").await? == 200, "burst");
    ensure!(login_status(&first, "alice").await? == 429, "the first client has used its burst");
    ensure!(login_status(&second, "alice").await? == 200, "another client behind the same proxy has its own");
    // A client cannot escape by writing its own entry first: the proxy appends the real one.
    let forged = server.anonymous().with_header("X-Forwarded-For", "203.0.113.9, 198.51.100.1");
    ensure!(login_status(&forged, "alice").await? == 429, "a forged first hop is not believed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_trusted_proxies_forwarded_for_is_ignored() -> Result<()> {
    let server = TestServer::start_with(STRICT_LOGIN).await?;
    server.register("alice").await?;
    for (i, claimed) in ["198.51.100.1", "198.51.100.2", "198.51.100.3"].into_iter().enumerate() {
        let client = server.anonymous().with_header("X-Forwarded-For", claimed);
        let expected = if i < 2 { 200 } else { 429 };
        let status = login_status(&client, "alice").await?;
        ensure!(status == expected, "login {i} claiming {claimed}: {status}, expected {expected}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_written_to_a_file_are_plain_text() -> Result<()> {
    let server = TestServer::start_with_env(myelin_e2e::NO_RATE_LIMITS, &[("RUST_LOG", "info")]).await?;
    server.register("alice").await?;
    let log = server.log();
    ensure!(log.contains("Myelin is serving"), "the start-up line is in the log file: {log}");
    ensure!(!log.contains('\u{1b}'), "no terminal colour codes in a log file: {log:?}");
    Ok(())
}
