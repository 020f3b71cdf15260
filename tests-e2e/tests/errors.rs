//! Bad input gets the right Matrix error and status, never a 500, and the server keeps serving.

use anyhow::{Result, ensure};
use myelin_e2e::{TestServer, enc};
use reqwest::Method;
use serde_json::json;

fn errcode(body: &serde_json::Value) -> &str {
    body["errcode"].as_str().unwrap_or("<none>")
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
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused_with_413() -> Result<()> {
    let server = TestServer::start_with("[limits]\nmax_request_body_bytes = 1024\n").await?;
    let alice = server.register("alice").await?;
    let big = json!({ "name": "x".repeat(4096) });
    let (status, body) = alice.post("/_matrix/client/v3/createRoom", &big).await?;
    ensure!(status == 413 && errcode(&body) == "M_TOO_LARGE", "4 KiB body over a 1 KiB limit: {status} {body}");
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
    let (status, body) = anon.request(Method::DELETE, "/_matrix/client/v3/createRoom", None).await?;
    ensure!(status == 405 && errcode(&body) == "M_UNRECOGNIZED", "wrong method: {status} {body}");
    let (status, body) = anon.get("/_matrix/client/v3/account/whoami").await?;
    ensure!(status == 401 && errcode(&body) == "M_MISSING_TOKEN", "no token: {status} {body}");
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
    for path in [
        "/_matrix/client/v3/rooms/not-a-room/messages".to_owned(),
        format!("/_matrix/client/v3/rooms/{}/state", enc("@user:localhost")),
        format!("/_matrix/client/v3/profile/{}", enc("not a user")),
        format!("/_matrix/client/v3/join/{}", enc("#bad alias")),
    ] {
        let (status, body) = alice.get(&path).await?;
        let (post_status, post_body) = alice.post(&path, &json!({})).await?;
        for (s, b) in [(status, &body), (post_status, &post_body)] {
            ensure!(s != 500, "{path} answered 500: {b}");
        }
        ensure!(status == 400 || status == 404 || status == 405, "{path}: {status} {body}");
    }
    let (status, body) = alice.get(&format!("/_matrix/client/v3/rooms/{}/messages", enc("!unknown:localhost"))).await?;
    ensure!(status == 403 && errcode(&body) == "M_FORBIDDEN", "unknown room: {status} {body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after() -> Result<()> {
    let server = TestServer::start_with("[rate_limits]\nmessages = { per_second = 1.0, burst = 3 }\n").await?;
    let alice = server.register("alice").await?;
    let room = alice.create_room(json!({})).await?; // takes one token
    let mut limited = None;
    for i in 0..6 {
        let (status, body) = alice.send_with_txn(&room, "spam", &format!("r{i}")).await?;
        if status == 429 {
            limited = Some(body);
            break;
        }
        ensure!(status == 200, "send {i}: {status} {body}");
    }
    let body = limited.ok_or_else(|| anyhow::anyhow!("no 429 after a burst of 3"))?;
    ensure!(errcode(&body) == "M_LIMIT_EXCEEDED", "limit error code: {body}");
    ensure!(body["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0 && ms <= 1000), "retry_after_ms: {body}");
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
    ];
    let garbage: Vec<Vec<u8>> = vec![
        vec![0xff, 0xfe, 0x00, 0x01],
        b"{\"a\":".to_vec(),
        b"null".to_vec(),
        b"{\"user_id\": {\"nested\": [1,2,3]}, \"typing\": \"yes\"}".to_vec(),
        format!("{{\"name\": \"{}\"}}", "\\u0000".repeat(100)).into_bytes(),
        b"{\"membership\": 12, \"actions\": 5, \"conditions\": \"x\", \"pattern\": []}".to_vec(),
        (0..2000u32).map(|i| (i % 251) as u8).collect(),
    ];
    for (method, path) in &endpoints {
        for body in &garbage {
            let (status, resp) = alice.raw(method.clone(), path, body.clone()).await?;
            ensure!(status < 500, "{method} {path} with garbage answered {status}: {resp}");
        }
    }
    let queries = [
        format!("/_matrix/client/v3/rooms/{r}/messages?limit=-1"),
        format!("/_matrix/client/v3/rooms/{r}/messages?limit=99999999999999999999"),
        format!("/_matrix/client/v3/rooms/{r}/messages?from=garbage"),
        format!("/_matrix/client/v3/rooms/{r}/messages?dir=sideways"),
        format!("/_matrix/client/v3/rooms/{r}/messages?filter=%7Bbroken"),
        "/_matrix/client/v3/sync?timeout=abc".to_owned(),
        "/_matrix/client/v3/sync?since=s-5_x".to_owned(),
        "/_matrix/client/v3/sync?since=s99999999999999_0&timeout=10".to_owned(),
        "/_matrix/client/v3/sync?filter=12345".to_owned(),
        format!("/_matrix/client/v3/sync?filter={}", "x".repeat(5000)),
        format!("/_matrix/client/v3/rooms/{r}/context/{}?limit=5", enc("$nope")),
        format!("/_matrix/client/v1/rooms/{r}/relations/{}", enc("$nope")),
    ];
    for q in &queries {
        let (status, resp) = alice.get(q).await?;
        ensure!(status < 500, "GET {q} answered {status}: {resp}");
    }
    let (status, _) = server.anonymous().get("/_matrix/client/versions").await?;
    ensure!(status == 200, "server still answers after the garbage");
    Ok(())
}
