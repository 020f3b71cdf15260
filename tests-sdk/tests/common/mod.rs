//! Helpers shared by the matrix-sdk test binaries.
#![allow(dead_code)]

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result, ensure};
use matrix_sdk::{
    Client, Room,
    config::SyncSettings,
    ruma::{
        OwnedEventId, OwnedUserId,
        api::client::{account::register::v3::Request as RegisterRequest, uiaa},
        events::room::message::{MessageType, OriginalSyncRoomMessageEvent, RoomMessageEventContent},
    },
};
use myelin_e2e::TestServer;
use tokio::sync::Mutex;

/// Registers `name` through the SDK, answering the server's m.login.dummy UIA stage.
pub async fn register(server: &TestServer, name: &str) -> Result<Client> {
    let client = Client::builder().homeserver_url(server.base_url()).build().await?;
    let mut request = RegisterRequest::new();
    request.username = Some(name.to_owned());
    request.password = Some(format!("{name}-password"));
    let first = client.matrix_auth().register(request.clone()).await;
    let info = match first {
        Ok(_) => anyhow::bail!("registration skipped user-interactive auth"),
        Err(err) => err.as_uiaa_response().cloned().context("expected a UIA challenge")?,
    };
    ensure!(
        info.flows.iter().any(|f| f.stages.contains(&uiaa::AuthType::Dummy)),
        "dummy stage offered: {:?}",
        info.flows
    );
    let mut dummy = uiaa::Dummy::new();
    dummy.session = info.session.clone();
    request.auth = Some(uiaa::AuthData::Dummy(dummy));
    client.matrix_auth().register(request).await.context("register with m.login.dummy")?;
    ensure!(client.user_id().is_some(), "client is logged in after registering");
    Ok(client)
}

pub async fn login(server: &TestServer, name: &str) -> Result<Client> {
    let client = Client::builder().homeserver_url(server.base_url()).build().await?;
    client.matrix_auth().login_username(name, &format!("{name}-password")).send().await?;
    Ok(client)
}

pub async fn sync(client: &Client) -> Result<()> {
    client.sync_once(SyncSettings::default().timeout(Duration::from_millis(0))).await?;
    Ok(())
}

/// Syncs until `check` holds (each sync long-polls up to 1 s), at most `rounds` times.
pub async fn sync_until<F: Fn() -> bool>(client: &Client, rounds: usize, check: F) -> Result<()> {
    for _ in 0..rounds {
        client.sync_once(SyncSettings::default().timeout(Duration::from_millis(1_000))).await?;
        if check() {
            return Ok(());
        }
    }
    anyhow::bail!("condition not reached after {rounds} syncs")
}

pub fn uid(client: &Client) -> Result<OwnedUserId> {
    client.user_id().map(ToOwned::to_owned).context("logged in")
}

/// Collects the text bodies of messages delivered through the SDK's event handlers.
pub fn collect_texts(client: &Client) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    client.add_event_handler(move |ev: OriginalSyncRoomMessageEvent, _room: Room| {
        let sink = sink.clone();
        async move {
            if let MessageType::Text(text) = ev.content.msgtype {
                sink.lock().await.push(text.body);
            }
        }
    });
    seen
}

pub async fn send_text(room: &Room, body: &str) -> Result<OwnedEventId> {
    Ok(room.send(RoomMessageEventContent::text_plain(body)).await?.response.event_id)
}

/// Node 22 with the npm packages of tests-js/ installed, for the matrix-js-sdk peers:
/// `$MYELIN_NODE22`, else what `scripts/js-deps.sh` installs (it prints the binary's path last).
pub fn node22() -> Result<String> {
    if let Ok(node) = std::env::var("MYELIN_NODE22")
        && !node.is_empty()
    {
        return Ok(node);
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/js-deps.sh");
    let out = std::process::Command::new("bash").arg(script).output().context("run scripts/js-deps.sh")?;
    ensure!(out.status.success(), "js-deps.sh failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().last().map(str::to_owned).context("js-deps.sh printed no path")
}
