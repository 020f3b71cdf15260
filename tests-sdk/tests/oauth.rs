//! matrix-sdk's OAuth 2.0 login (`client.oauth()`, what Element X runs) against Myelin's
//! authorization server, with a person answering the pages (`myelin_e2e::oauth::Browser`).

mod common;

use anyhow::{Context, Result, ensure};
use matrix_sdk::{
    Client,
    authentication::oauth::registration::{ApplicationType, ClientMetadata, Localized, OAuthGrantType},
    ruma::serde::Raw,
    utils::UrlOrQuery,
};
use myelin_e2e::{
    TestServer,
    oauth::{Browser, post_form},
};

fn metadata(redirect: &str) -> Result<Raw<ClientMetadata>> {
    let mut metadata = ClientMetadata::new(
        ApplicationType::Native,
        vec![OAuthGrantType::AuthorizationCode { redirect_uris: vec![redirect.parse()?] }],
        Localized::new("https://sdk.example.org/".parse()?, []),
    );
    metadata.client_name = Some(Localized::new("Test client".to_owned(), []));
    Ok(Raw::new(&metadata)?)
}

/// The person's part: sign in and allow; the URL the browser is sent back to.
async fn person_allows(server: &TestServer, url: &str, user: &str) -> Result<String> {
    let mut browser = Browser::new(&server.base_url())?;
    let start = browser.get(url).await?;
    let consent = start.location().context("authorize redirects to the consent page")?;
    let login = browser.get(&consent).await?.location().context("and to the login page")?;
    let back = browser.sign_in(&login, user, &format!("{user}-password")).await?;
    let page = browser.get(&back).await?;
    ensure!(page.status == 200, "consent page: {} {}", page.status, page.body);
    let csrf = browser.csrf();
    let answer = browser.post_form(&back, &[("csrf", &csrf), ("action", "allow")]).await?;
    answer.location().context("back to the application")
}

#[tokio::test]
async fn matrix_sdk_logs_in_refreshes_and_logs_out_with_oauth() -> Result<()> {
    let server = TestServer::start().await?;
    common::register(&server, "alice").await?;

    let client = Client::builder().homeserver_url(server.base_url()).build().await?;
    let oauth = client.oauth();
    let redirect = "http://127.0.0.1:47123/callback";
    let data =
        oauth.login(redirect.parse()?, None, Some(metadata("http://127.0.0.1/callback")?.into()), None).build().await?;
    let back = person_allows(&server, data.url.as_str(), "alice").await?;
    ensure!(back.starts_with(redirect), "{back}");
    oauth.finish_login(UrlOrQuery::Url(back.parse()?)).await?;

    let me = client.whoami().await?;
    ensure!(me.user_id.as_str() == server.user_id("alice"), "{:?}", me.user_id);
    let device = client.device_id().context("a device")?.to_owned();
    ensure!(me.device_id.as_deref() == Some(device.as_ref()), "the scope's device is the session's");

    // The SDK refreshes (rotation), and the new token works.
    let before = client.access_token().context("token")?;
    oauth.refresh_access_token().await?;
    let after = client.access_token().context("token")?;
    ensure!(before != after, "a new access token");
    client.whoami().await?;

    // The account can be used: a room, a message, a sync.
    let room = client.create_room(matrix_sdk::ruma::api::client::room::create_room::v3::Request::new()).await?;
    room.send(matrix_sdk::ruma::events::room::message::RoomMessageEventContent::text_plain("via OAuth")).await?;
    common::sync(&client).await?;

    // Logging out revokes the access token (what `oauth.logout()` sends; the SDK's OAuth library
    // will only send it over https, so the test sends it itself): the whole session, its device
    // included, is gone.
    let (revoke, _) = post_form(&format!("{}/oauth2/revoke", server.base_url()), &[("token", &after)]).await?;
    ensure!(revoke == 200, "revocation: {revoke}");
    let check = server.anonymous().with_token(Some(&after));
    let (status, _) = check.get("/_matrix/client/v3/account/whoami").await?;
    ensure!(status == 401, "the token is revoked: {status}");
    let password_session = server.login("alice").await?;
    let (_, devices) = password_session.get("/_matrix/client/v3/devices").await?;
    ensure!(!devices.to_string().contains(device.as_str()), "the device went: {devices}");
    Ok(())
}
