//! Federation transport between two real servers on one machine: each has a built-in TLS
//! federation listener with a generated self-signed certificate and the server name
//! `127.0.0.1:<federation port>`, accepts the other's certificate and may reach loopback.
//!
//! The requests the test signs itself use server B's signing key (read from B's data directory),
//! so A checks them against keys it really fetches from B over federation.

use anyhow::{Context, Result, ensure};
use myelin_e2e::{
    TestServer, enc,
    federation::{canonical, https, signing_key, x_matrix},
};
use ruma::{
    CanonicalJsonValue,
    serde::Base64,
    signatures::{PublicKeyMap, verify_json},
};
use serde_json::{Value, json};

async fn get_json(client: &reqwest_tls::Client, url: &str, auth: Option<&str>) -> Result<(u16, Value)> {
    let mut request = client.get(url);
    if let Some(auth) = auth {
        request = request.header("Authorization", auth);
    }
    let response = request.send().await.with_context(|| format!("GET {url}"))?;
    let status = response.status().as_u16();
    let body = response.json().await.with_context(|| format!("GET {url}: JSON"))?;
    Ok((status, body))
}

/// Checks `document`'s signature by `signer` with the keys of `signer_keys` (a key document),
/// ignoring any other signature.
fn verify_signed_by(document: &Value, signer: &str, signer_keys: &Value) -> Result<()> {
    let mut object = canonical(document)?;
    let signatures = document["signatures"][signer].clone();
    ensure!(signatures.is_object(), "no signature by {signer} in {document}");
    object.insert("signatures".into(), CanonicalJsonValue::try_from(json!({ signer: signatures }))?);
    let mut keys = std::collections::BTreeMap::new();
    for (key_id, key) in signer_keys["verify_keys"].as_object().context("verify_keys")? {
        keys.insert(key_id.clone(), Base64::parse(key["key"].as_str().context("key")?)?);
    }
    let map = PublicKeyMap::from([(signer.to_owned(), keys)]);
    verify_json(&map, &object).map_err(|e| anyhow::anyhow!("signature by {signer} does not verify: {e}"))
}

#[tokio::test]
async fn two_servers_fetch_each_others_keys_and_sign_their_requests() -> Result<()> {
    let a = TestServer::start_federating().await?;
    let b = TestServer::start_federating().await?;
    let (a_url, b_url) = (a.federation_url().context("A federates")?, b.federation_url().context("B federates")?);
    let https = https()?;

    // A's key document over HTTPS: about A, valid for a while, signed by itself.
    let (status, a_keys) = get_json(&https, &format!("{a_url}/_matrix/key/v2/server"), None).await?;
    ensure!(status == 200, "key document: {status} {a_keys}");
    ensure!(a_keys["server_name"] == a.server_name(), "{a_keys}");
    ensure!(a_keys["old_verify_keys"] == json!({}), "{a_keys}");
    verify_signed_by(&a_keys, a.server_name(), &a_keys)?;
    let (_, version) = get_json(&https, &format!("{a_url}/_matrix/federation/v1/version"), None).await?;
    ensure!(version["server"]["name"] == "Myelin", "{version}");
    // The same routes answer on the client listener (for a TLS-terminating proxy).
    let (status, plain) = a.anonymous().get("/_matrix/key/v2/server").await?;
    ensure!(status == 200 && plain["server_name"] == a.server_name(), "{status} {plain}");

    // B, as a notary, fetches A's keys over federation and adds its own signature.
    let (_, b_keys) = get_json(&https, &format!("{b_url}/_matrix/key/v2/server"), None).await?;
    let url = format!("{b_url}/_matrix/key/v2/query/{}", enc(a.server_name()));
    let (status, notary) = get_json(&https, &url, None).await?;
    ensure!(status == 200, "notary: {status} {notary}");
    let document = &notary["server_keys"][0];
    ensure!(document["server_name"] == a.server_name(), "{notary}");
    ensure!(document["verify_keys"] == a_keys["verify_keys"], "{notary}");
    verify_signed_by(document, a.server_name(), &a_keys)?;
    verify_signed_by(document, b.server_name(), &b_keys)?;
    let batch = https
        .post(format!("{b_url}/_matrix/key/v2/query"))
        .json(&json!({ "server_keys": { a.server_name(): {} } }))
        .send()
        .await?
        .json::<Value>()
        .await?;
    ensure!(batch["server_keys"][0]["server_name"] == a.server_name(), "{batch}");

    // An authenticated endpoint: A's directory, asked by B's users through B's client API (B
    // signs the request, A fetches B's keys and checks it).
    let alice = a.register("alice").await?;
    let (status, room) = alice.post("/_matrix/client/v3/createRoom", &json!({ "room_alias_name": "fed" })).await?;
    ensure!(status == 200, "createRoom: {status} {room}");
    let alias = format!("#fed:{}", a.server_name());
    let bob = b.register("bob").await?;
    let (status, found) = bob.get(&format!("/_matrix/client/v3/directory/room/{}", enc(&alias))).await?;
    ensure!(status == 200, "remote alias: {status} {found}");
    ensure!(found["room_id"] == room["room_id"], "{found} {room}");
    ensure!(found["servers"] == json!([a.server_name()]), "{found}");
    let missing = format!("#nothing:{}", a.server_name());
    let (status, err) = bob.get(&format!("/_matrix/client/v3/directory/room/{}", enc(&missing))).await?;
    ensure!(status == 404 && err["errcode"] == "M_NOT_FOUND", "unknown remote alias: {status} {err}");

    // Requests to the same endpoint that A must refuse, all 401 M_UNAUTHORIZED (never a 500).
    let uri = format!("/_matrix/federation/v1/query/directory?room_alias={}", enc(&alias));
    let url = format!("{a_url}{uri}");
    let b_key = signing_key(&b)?;
    let good = x_matrix(&b_key, b.server_name(), a.server_name(), "GET", &uri, None)?;
    let (status, answer) = get_json(&https, &url, Some(&good)).await?;
    ensure!(status == 200 && answer["room_id"] == room["room_id"], "signed by B: {status} {answer}");
    let wrong_destination = x_matrix(&b_key, b.server_name(), "elsewhere.example", "GET", &uri, None)?;
    let other_uri = x_matrix(&b_key, b.server_name(), a.server_name(), "GET", "/_matrix/federation/v1/version", None)?;
    let bad_sig = good.replace("sig=\"", "sig=\"AAAA");
    for (what, auth) in [
        ("unsigned", None),
        ("wrong destination", Some(wrong_destination.as_str())),
        ("signature of another request", Some(other_uri.as_str())),
        ("bad signature", Some(bad_sig.as_str())),
        ("garbage", Some("X-Matrix ,,,=\"")),
        ("another scheme", Some("Bearer abc")),
    ] {
        let (status, err) = get_json(&https, &url, auth).await?;
        ensure!(status == 401 && err["errcode"] == "M_UNAUTHORIZED", "{what}: {status} {err}");
    }
    Ok(())
}
