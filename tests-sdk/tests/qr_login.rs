//! QR login between two matrix-sdk clients against Myelin (MSC4108 rendezvous + the device
//! authorization grant): the signed-in device shows a QR code, the new device scans it, the
//! person types the check code and approves the new device in a browser, and the new device
//! is signed in with the cross-signing secrets of the old one. Its device id is the unpadded
//! base64 Curve25519 key, so it holds `+` and `/` more often than not.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use futures_util::StreamExt;
use matrix_sdk::{
    Client,
    authentication::oauth::{
        qrcode::{GeneratedQrProgress, GrantLoginProgress, LoginProgress},
        registration::{ApplicationType, ClientMetadata, Localized, OAuthGrantType},
    },
    ruma::serde::Raw,
};
use myelin_e2e::{TestServer, oauth::Browser};
use tokio::sync::oneshot;

fn metadata() -> Result<Raw<ClientMetadata>> {
    let mut metadata = ClientMetadata::new(
        ApplicationType::Native,
        vec![OAuthGrantType::DeviceCode],
        Localized::new("https://sdk.example.org/".parse()?, []),
    );
    metadata.client_name = Some(Localized::new("New phone".to_owned(), []));
    Ok(Raw::new(&metadata)?)
}

#[tokio::test]
async fn a_new_device_signs_in_by_scanning_the_qr_code_of_a_signed_in_one() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = common::register(&server, "alice").await?;
    alice.encryption().wait_for_e2ee_initialization_tasks().await;
    alice.encryption().bootstrap_cross_signing(None).await?;

    // The signed-in device generates the QR code and waits.
    let alice_oauth = alice.oauth();
    let grant = alice_oauth.grant_login_with_qr_code().device_creation_timeout(Duration::from_secs(10)).generate();
    let mut grant_progress = grant.subscribe_to_progress();
    let (qr_tx, qr_rx) = oneshot::channel();
    let (check_tx, check_rx) = oneshot::channel::<u8>();
    let (uri_tx, uri_rx) = oneshot::channel::<String>();
    let granter = tokio::spawn(async move {
        let mut qr_tx = Some(qr_tx);
        let mut check_rx = Some(check_rx);
        let mut uri_tx = Some(uri_tx);
        while let Some(update) = grant_progress.next().await {
            match update {
                GrantLoginProgress::EstablishingSecureChannel(GeneratedQrProgress::QrReady(qr)) => {
                    if let Some(tx) = qr_tx.take() {
                        let _ = tx.send(qr);
                    }
                }
                GrantLoginProgress::EstablishingSecureChannel(GeneratedQrProgress::QrScanned(sender)) => {
                    // The person types the check code the new device shows.
                    let Some(rx) = check_rx.take() else { continue };
                    let code = rx.await.context("check code")?;
                    sender.send(code).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
                }
                GrantLoginProgress::WaitingForAuth { verification_uri } => {
                    if let Some(tx) = uri_tx.take() {
                        let _ = tx.send(verification_uri.to_string());
                    }
                }
                GrantLoginProgress::Done => break,
                _ => {}
            }
        }
        anyhow::Ok(())
    });
    let old_device = async { grant.await.map_err(|e| anyhow::anyhow!("grant: {e:?}")) };

    let bob = Client::builder().homeserver_url(server.base_url()).build().await?;
    let registration = metadata()?.into();
    let new_device_and_person = async {
        // The new device scans the QR code.
        let qr = tokio::time::timeout(Duration::from_secs(20), qr_rx).await??;
        let oauth = bob.oauth();
        let login = oauth.login_with_qr_code(Some(&registration)).scan(&qr);
        let mut login_progress = login.subscribe_to_progress();
        let watcher = tokio::spawn(async move {
            let mut check_tx = Some(check_tx);
            let mut user_code = None;
            while let Some(update) = login_progress.next().await {
                match update {
                    LoginProgress::EstablishingSecureChannel(progress) => {
                        if let Some(tx) = check_tx.take() {
                            let _ = tx.send(progress.check_code.to_digit());
                        }
                    }
                    LoginProgress::WaitingForToken { user_code: code } => user_code = Some(code),
                    LoginProgress::Done => break,
                    _ => {}
                }
            }
            anyhow::Ok(user_code)
        });
        // The person approves on the old device's browser: "another device is being signed in".
        let person = async {
            let uri = tokio::time::timeout(Duration::from_secs(30), uri_rx).await??;
            let mut browser = Browser::new(&server.base_url())?;
            let first = browser.get(&uri).await?;
            let to_login = first.location().context("sign in first")?;
            let back = browser.sign_in(&to_login, "alice", "alice-password").await?;
            let page = browser.get(&back).await?;
            ensure!(page.body.contains("Another device is being signed in"), "{}", page.body);
            let code = page.hidden("code").context("the code")?;
            let csrf = browser.csrf();
            let done =
                browser.post_form("/auth/device", &[("csrf", &csrf), ("code", &code), ("action", "allow")]).await?;
            ensure!(done.status == 200, "{} {}", done.status, done.body);
            anyhow::Ok(())
        };
        let (logged_in, approved) =
            tokio::join!(async { login.await.map_err(|e| anyhow::anyhow!("QR login: {e:?}")) }, person);
        approved?;
        logged_in?;
        watcher.await?
    };
    let (granted, shown) =
        tokio::time::timeout(Duration::from_secs(90), async { tokio::join!(old_device, new_device_and_person) })
            .await?;
    granted?;
    let shown = shown?;
    granter.await??;
    ensure!(shown.as_deref().is_some_and(|c| c.len() == 8), "the new device showed the user code: {shown:?}");

    // The new device is Alice's, with the device id it chose, and trusted by her identity.
    let me = bob.whoami().await?;
    ensure!(me.user_id.as_str() == server.user_id("alice"), "{:?}", me.user_id);
    let device_id = bob.device_id().context("device")?.to_owned();
    ensure!(device_id.as_str().len() == 43, "the curve25519 key as device id: {device_id}");
    let status = bob.encryption().cross_signing_status().await.context("cross-signing status")?;
    if !status.is_complete() {
        bail!("the new device got the cross-signing secrets: {status:?}");
    }
    let own = alice.encryption().get_device(alice.user_id().context("id")?, &device_id).await?;
    common::sync(&alice).await?;
    let seen = alice.encryption().get_device(alice.user_id().context("id")?, &device_id).await?;
    ensure!(own.is_some() || seen.is_some(), "the old device sees the new one");
    Ok(())
}
