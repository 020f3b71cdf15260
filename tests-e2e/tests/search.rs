//! `POST /search`: what a user finds is what they may read, in rank or time order, page by page,
//! with context; CJK words are found; bad requests get the right errors.

use anyhow::{Context, Result, ensure};
use myelin_e2e::{Client, TestServer, enc, errcode, room_path};
use serde_json::{Value, json};

const SEARCH: &str = "/_matrix/client/v3/search";

/// Searches room events; fails unless 200. Returns the `room_events` part.
async fn search(client: &Client, criteria: Value, next_batch: Option<&str>) -> Result<Value> {
    let path = match next_batch {
        Some(token) => format!("{SEARCH}?next_batch={}", enc(token)),
        None => SEARCH.to_owned(),
    };
    let (status, body) = client.post(&path, &json!({ "search_categories": { "room_events": criteria } })).await?;
    ensure!(status == 200, "search {criteria}: {status} {body}");
    Ok(body["search_categories"]["room_events"].clone())
}

/// The bodies of a search's results, in order.
fn found(room_events: &Value) -> Vec<String> {
    room_events["results"]
        .as_array()
        .map(|results| {
            results.iter().filter_map(|r| r["result"]["content"]["body"].as_str().map(str::to_owned)).collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_finds_words_phrases_and_cjk_in_rank_and_time_order() -> Result<()> {
    let mut server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let room = alice.create_room(json!({ "preset": "public_chat", "name": "Bakery" })).await?;
    for body in ["The cake is a lie", "cake cake CAKE!", "Cakes for everyone", "我喜欢蛋糕", "Nothing to see"] {
        alice.send_message(&room, body).await?;
    }

    // Rank: the message saying it three times first; words match the words they begin.
    let ranked = search(&alice, json!({ "search_term": "cake" }), None).await?;
    let mut ranked_bodies = found(&ranked);
    ensure!(ranked_bodies.first().map(String::as_str) == Some("cake cake CAKE!"), "{ranked}");
    ranked_bodies.sort();
    ensure!(ranked_bodies == ["Cakes for everyone", "The cake is a lie", "cake cake CAKE!"], "{ranked}");
    ensure!(ranked["count"] == 3 && ranked["highlights"] == json!(["cake"]), "{ranked}");
    let ranks: Vec<f64> =
        ranked["results"].as_array().context("results")?.iter().filter_map(|r| r["rank"].as_f64()).collect();
    ensure!(ranks.len() == 3 && ranks[0] > ranks[2], "ranks: {ranks:?}");
    ensure!(ranked["next_batch"].is_null(), "one page holds everything: {ranked}");

    // Time order, phrases, exclusions, CJK words inside a sentence.
    let recent = search(&alice, json!({ "search_term": "cake", "order_by": "recent" }), None).await?;
    ensure!(found(&recent) == ["Cakes for everyone", "cake cake CAKE!", "The cake is a lie"], "{recent}");
    let phrase = search(&alice, json!({ "search_term": "\"is a lie\"" }), None).await?;
    ensure!(found(&phrase) == ["The cake is a lie"], "{phrase}");
    let without = search(&alice, json!({ "search_term": "cake -lie", "order_by": "recent" }), None).await?;
    ensure!(found(&without) == ["Cakes for everyone", "cake cake CAKE!"], "{without}");
    let cjk = search(&alice, json!({ "search_term": "蛋糕" }), None).await?;
    ensure!(found(&cjk) == ["我喜欢蛋糕"] && cjk["highlights"] == json!(["蛋糕"]), "{cjk}");
    let not_together = search(&alice, json!({ "search_term": "欢糕" }), None).await?;
    ensure!(found(&not_together).is_empty(), "{not_together}");

    // The room's name is found under its key only.
    let names = search(&alice, json!({ "search_term": "bakery", "keys": ["content.name"] }), None).await?;
    let name_events: Vec<&Value> = names["results"].as_array().context("results")?.iter().collect();
    ensure!(name_events.len() == 1 && name_events[0]["result"]["type"] == "m.room.name", "{names}");
    let bodies_only = search(&alice, json!({ "search_term": "bakery", "keys": ["content.body"] }), None).await?;
    ensure!(bodies_only["results"] == json!([]), "{bodies_only}");

    // Context around a result, with the senders' profiles; the room's state; groups.
    let with_context = search(
        &alice,
        json!({
            "search_term": "everyone",
            "event_context": { "before_limit": 1, "after_limit": 2, "include_profile": true },
            "include_state": true,
            "groupings": { "group_by": [{ "key": "room_id" }] },
        }),
        None,
    )
    .await?;
    let context = &with_context["results"][0]["context"];
    let before: Vec<&str> = context["events_before"]
        .as_array()
        .context("before")?
        .iter()
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    let after: Vec<&str> = context["events_after"]
        .as_array()
        .context("after")?
        .iter()
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    ensure!(before == ["cake cake CAKE!"] && after == ["我喜欢蛋糕", "Nothing to see"], "{with_context}");
    ensure!(context["start"].is_string() && context["end"].is_string(), "{context}");
    ensure!(context["profile_info"][&alice.user_id]["displayname"] == "alice", "{context}");
    ensure!(
        with_context["state"][&room].as_array().is_some_and(|s| s.iter().any(|e| e["type"] == "m.room.create")),
        "{with_context}"
    );
    ensure!(with_context["groups"]["room_id"][&room]["order"] == 1, "{with_context}");

    // The index is written with the event: it survives kill -9.
    alice.send_message(&room, "written just before the crash").await?;
    server.kill9();
    server.start_again().await?;
    let alice = server.login("alice").await?;
    let crash = search(&alice, json!({ "search_term": "crash" }), None).await?;
    ensure!(found(&crash) == ["written just before the crash"], "{crash}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_pages_through_every_result_once() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    for n in 0..25 {
        alice.send_message(&room, &format!("message number {n}")).await?;
    }
    for order in ["recent", "rank"] {
        let mut seen: Vec<String> = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let criteria = json!({ "search_term": "number", "order_by": order, "filter": { "limit": 10 } });
            let page = search(&alice, criteria, token.as_deref()).await?;
            ensure!(page["count"] == 25, "{page}");
            seen.extend(found(&page));
            pages += 1;
            match page["next_batch"].as_str() {
                Some(next) => token = Some(next.to_owned()),
                None => break,
            }
            ensure!(pages < 10, "paging does not end");
        }
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        ensure!(seen.len() == 25 && unique.len() == 25, "{order}: {} results, {} distinct", seen.len(), unique.len());
        if order == "recent" {
            ensure!(seen.first().map(String::as_str) == Some("message number 24"), "{seen:?}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_shows_only_what_the_user_may_read() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;

    // A room bob is not in; a room he joins after some history ("joined" visibility); a room he
    // leaves; an encrypted room; a redacted message.
    let private = alice.create_room(json!({ "preset": "private_chat" })).await?;
    alice.send_message(&private, "secret treasure in the private room").await?;

    let joined_only = alice
        .create_room(json!({
            "preset": "public_chat",
            "initial_state": [{ "type": "m.room.history_visibility", "state_key": "", "content": { "history_visibility": "joined" } }],
        }))
        .await?;
    alice.send_message(&joined_only, "treasure before bob joined").await?;
    ensure!(bob.join(&joined_only).await?.0 == 200);
    alice.send_message(&joined_only, "treasure after bob joined").await?;

    let left = alice.create_room(json!({ "preset": "public_chat" })).await?;
    ensure!(bob.join(&left).await?.0 == 200);
    alice.send_message(&left, "treasure while bob was there").await?;
    let (status, body) = bob.post(&room_path(&left, "leave"), &json!({})).await?;
    ensure!(status == 200, "{body}");
    alice.send_message(&left, "treasure after bob left").await?;

    let encrypted = alice
        .create_room(json!({
            "preset": "public_chat",
            "initial_state": [{ "type": "m.room.encryption", "state_key": "", "content": { "algorithm": "m.megolm.v1.aes-sha2" } }],
        }))
        .await?;
    ensure!(bob.join(&encrypted).await?.0 == 200);
    let (status, body) = alice
        .put(
            &room_path(&encrypted, "send/m.room.encrypted/t1"),
            &json!({ "algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "treasure", "sender_key": "k", "session_id": "s", "device_id": "D" }),
        )
        .await?;
    ensure!(status == 200, "{body}");

    let redacted = alice.send_message(&joined_only, "treasure that will be redacted").await?;
    let (status, body) =
        alice.put(&room_path(&joined_only, &format!("redact/{}/r1", enc(&redacted))), &json!({})).await?;
    ensure!(status == 200, "{body}");

    let mut bob_found = found(&search(&bob, json!({ "search_term": "treasure", "order_by": "recent" }), None).await?);
    bob_found.sort();
    ensure!(bob_found == ["treasure after bob joined", "treasure while bob was there"], "bob found {bob_found:?}");

    // Alice, in every room, finds everything but the redacted and the encrypted.
    let alice_found = found(&search(&alice, json!({ "search_term": "treasure", "order_by": "recent" }), None).await?);
    ensure!(
        alice_found.len() == 5 && !alice_found.iter().any(|b| b.contains("redacted")),
        "alice found {alice_found:?}"
    );

    // A room filter narrows; a filter naming a room bob cannot read finds nothing.
    let filtered = search(&bob, json!({ "search_term": "treasure", "filter": { "rooms": [left] } }), None).await?;
    ensure!(found(&filtered) == ["treasure while bob was there"], "{filtered}");
    let elsewhere = search(&bob, json!({ "search_term": "treasure", "filter": { "rooms": [private] } }), None).await?;
    ensure!(found(&elsewhere).is_empty() && elsewhere["count"] == 0, "{elsewhere}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_search_requests_get_matrix_errors() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    alice.create_room(json!({ "preset": "public_chat" })).await?;
    let bad = |criteria: Value| json!({ "search_categories": { "room_events": criteria } });
    for (body, status, code, what) in [
        (json!({}), 400, "M_BAD_JSON", "no search_categories"),
        (bad(json!({})), 400, "M_BAD_JSON", "no search_term"),
        (bad(json!({ "search_term": 5 })), 400, "M_BAD_JSON", "a search_term that is not a string"),
        (bad(json!({ "search_term": "x", "keys": ["content.secret"] })), 400, "M_INVALID_PARAM", "an unknown key"),
        (bad(json!({ "search_term": "x", "order_by": "sideways" })), 400, "M_INVALID_PARAM", "an unknown order"),
        (bad(json!({ "search_term": "x", "filter": [] })), 400, "M_BAD_JSON", "a filter that is not an object"),
        (bad(json!({ "search_term": "x".repeat(5000) })), 400, "M_INVALID_PARAM", "a very long term"),
        (
            bad(json!({ "search_term": "x", "groupings": { "group_by": [{ "key": "colour" }] } })),
            400,
            "M_INVALID_PARAM",
            "an unknown grouping",
        ),
    ] {
        let (got, answer) = alice.post(SEARCH, &body).await?;
        ensure!(got == status && errcode(&answer) == code, "{what}: {got} {answer}");
    }
    let (got, answer) =
        alice.post(&format!("{SEARCH}?next_batch=nonsense"), &bad(json!({ "search_term": "x" }))).await?;
    ensure!(got == 400 && errcode(&answer) == "M_INVALID_PARAM", "a bad next_batch: {got} {answer}");
    let (got, answer) = alice.raw(reqwest::Method::POST, SEARCH, b"not json".to_vec()).await?;
    ensure!(got == 400 && errcode(&answer) == "M_NOT_JSON", "not JSON: {got} {answer}");
    let (got, answer) = server.anonymous().post(SEARCH, &bad(json!({ "search_term": "x" }))).await?;
    ensure!(got == 401, "no token: {got} {answer}");
    // Only punctuation, or only exclusions: nothing, not an error.
    for term in ["!!!", "-cake"] {
        let (got, answer) = alice.post(SEARCH, &bad(json!({ "search_term": term }))).await?;
        ensure!(got == 200 && answer["search_categories"]["room_events"]["results"] == json!([]), "{term}: {answer}");
    }
    // No category asked: an empty answer.
    let (got, answer) = alice.post(SEARCH, &json!({ "search_categories": {} })).await?;
    ensure!(got == 200 && answer == json!({ "search_categories": {} }), "{got} {answer}");
    Ok(())
}
