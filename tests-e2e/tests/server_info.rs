//! What a server publishes about itself and its surroundings: TURN servers for calls, support
//! contacts, third-party networks (none without bridges).

use anyhow::{Result, ensure};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use myelin_e2e::{NO_RATE_LIMITS, TestServer, errcode};
use serde_json::json;

#[tokio::test]
async fn turn_credentials_support_contacts_and_third_party_networks() -> Result<()> {
    // Nothing configured: no TURN servers, no support page, no protocols.
    let plain = TestServer::start().await?;
    let alice = plain.register("alice").await?;
    let (status, body) = alice.get("/_matrix/client/v3/voip/turnServer").await?;
    ensure!(status == 200 && body == json!({}), "{status} {body}");
    let (status, body) = plain.anonymous().get("/.well-known/matrix/support").await?;
    ensure!(status == 404, "{status} {body}");
    let (status, body) = alice.get("/_matrix/client/v3/thirdparty/protocols").await?;
    ensure!(status == 200 && body == json!({}), "{status} {body}");
    let (status, body) = alice.get("/_matrix/client/v3/thirdparty/protocol/irc").await?;
    ensure!(status == 404 && errcode(&body) == "M_NOT_FOUND", "{status} {body}");
    let (status, body) = alice.get("/_matrix/client/v3/thirdparty/location?alias=%23a%3Ab").await?;
    ensure!(status == 200 && body == json!([]), "{status} {body}");
    let (status, _) = plain.anonymous().get("/_matrix/client/v3/voip/turnServer").await?;
    ensure!(status == 401);

    // A shared secret: credentials coturn accepts (TURN REST API), lasting as configured.
    let configured = TestServer::start_with(&format!(
        "{NO_RATE_LIMITS}[turn]\nuris = [\"turn:turn.example.org:3478?transport=udp\"]\nshared_secret = \"s3cret\"\n\
         user_lifetime_ms = 3600000\n\
         [support]\npage = \"https://example.org/help\"\n\
         [[support.contacts]]\nrole = \"m.role.admin\"\nmatrix_id = \"@admin:example.org\"\n"
    ))
    .await?;
    let bob = configured.register("bob").await?;
    let (status, body) = bob.get("/_matrix/client/v3/voip/turnServer").await?;
    ensure!(status == 200 && body["uris"] == json!(["turn:turn.example.org:3478?transport=udp"]), "{body}");
    ensure!(body["ttl"] == 3600, "{body}");
    let username = body["username"].as_str().unwrap_or_default();
    let (expiry, user) = username.split_once(':').unwrap_or_default();
    ensure!(user == bob.user_id, "{username}");
    let expiry: u64 = expiry.parse()?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    ensure!(expiry > now + 3500 && expiry <= now + 3700, "expires in an hour: {expiry} vs {now}");
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"s3cret")?;
    mac.update(username.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    ensure!(body["password"] == expected.as_str(), "{body}");
    let (status, body) = configured.anonymous().get("/.well-known/matrix/support").await?;
    ensure!(
        status == 200
            && body
                == json!({
                    "contacts": [{ "role": "m.role.admin", "matrix_id": "@admin:example.org" }],
                    "support_page": "https://example.org/help",
                }),
        "{status} {body}"
    );
    Ok(())
}
