//! End-to-end encryption with matrix-sdk (what Element X runs): two users in an encrypted room
//! read each other's messages, a newly logged-in device is announced and can decrypt what is sent
//! after it appeared. Every step goes through Myelin's key, to-device and device-list endpoints.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::*;
use matrix_sdk::{
    Client,
    config::SyncSettings,
    encryption::CrossSigningResetAuthType,
    room::MessagesOptions,
    ruma::{
        api::client::{
            dehydrated_device::{get_dehydrated_device, get_events},
            keys::get_keys,
            message::get_message_events,
            room::create_room::v3::Request as CreateRoomRequest,
            sync::sync_events,
            uiaa,
        },
        events::{InitialStateEvent, room::encryption::RoomEncryptionEventContent, secret::request::SecretName},
    },
};
use matrix_sdk_crypto::{
    CrossSigningKeyExport, DecryptionSettings, OlmMachine, TrustRequirement, store::types::DehydratedDeviceKey,
    types::requests::AnyOutgoingRequest,
};
use myelin_e2e::TestServer;

async fn encrypted_room(alice: &Client, invite: &Client) -> Result<matrix_sdk::Room> {
    let mut request = CreateRoomRequest::new();
    request.invite = vec![uid(invite)?];
    request.initial_state = vec![
        InitialStateEvent::with_empty_state_key(RoomEncryptionEventContent::with_recommended_defaults()).to_raw_any(),
    ];
    Ok(alice.create_room(request).await?)
}

/// Alice and bob, each with one device whose keys are uploaded, in an encrypted room alice
/// created and bob joined; alice's client has seen the join.
async fn alice_and_bob_in_an_encrypted_room(server: &TestServer) -> Result<(Client, Client, matrix_sdk::Room)> {
    let alice = register(server, "alice").await?;
    let bob = register(server, "bob").await?;
    // First syncs upload each device's identity and one-time keys.
    sync(&alice).await?;
    sync(&bob).await?;
    let room = encrypted_room(&alice, &bob).await?;
    sync(&bob).await?;
    bob.join_room_by_id(room.room_id()).await?;
    sync(&alice).await?;
    Ok((alice, bob, room))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_read_each_others_encrypted_messages() -> Result<()> {
    let server = TestServer::start().await?;
    let (alice, bob, room) = alice_and_bob_in_an_encrypted_room(&server).await?;
    let room_id = room.room_id().to_owned();
    ensure!(room.latest_encryption_state().await?.is_encrypted(), "the room is encrypted");

    let bob_texts = collect_texts(&bob);
    let alice_texts = collect_texts(&alice);
    // Sending shares a room key with bob's device: /keys/query, /keys/claim, /sendToDevice.
    send_text(&room, "hello bob, in secret").await?;
    sync_until(&bob, 10, || bob_texts.try_lock().is_ok_and(|t| t.iter().any(|b| b == "hello bob, in secret")))
        .await
        .with_context(|| "bob never decrypted alice's message")?;

    let bob_room = bob.get_room(&room_id).context("bob's room")?;
    send_text(&bob_room, "hello alice").await?;
    sync_until(&alice, 10, || alice_texts.try_lock().is_ok_and(|t| t.iter().any(|b| b == "hello alice")))
        .await
        .with_context(|| "alice never decrypted bob's reply")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_device_is_announced_and_decrypts_new_messages() -> Result<()> {
    let server = TestServer::start().await?;
    let (alice, bob, room) = alice_and_bob_in_an_encrypted_room(&server).await?;
    send_text(&room, "before the new device").await?;

    // Bob logs in on a second device; alice's next sync must tell her bob's devices changed.
    let bob_phone = login(&server, "bob").await?;
    sync(&bob_phone).await?;
    let phone_texts = collect_texts(&bob_phone);
    let alice_machine = alice.encryption();
    sync_until(&alice, 5, || true).await?;
    let devices = alice_machine.get_user_devices(&uid(&bob)?).await?;
    ensure!(devices.devices().count() == 2, "alice sees both of bob's devices, saw {}", devices.devices().count());

    send_text(&room, "after the new device").await?;
    sync_until(&bob_phone, 10, || phone_texts.try_lock().is_ok_and(|t| t.iter().any(|b| b == "after the new device")))
        .await
        .with_context(|| "bob's new device never decrypted the message sent after it appeared")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_js_sdk_and_matrix_sdk_read_each_others_encrypted_messages() -> Result<()> {
    let node = node22()?;
    let server = TestServer::start().await?;
    let alice = register(&server, "alice").await?;
    server.register("jsbob").await?;
    sync(&alice).await?;
    let mut request = CreateRoomRequest::new();
    request.invite = vec![matrix_sdk::ruma::OwnedUserId::try_from(server.user_id("jsbob"))?];
    request.initial_state = vec![
        InitialStateEvent::with_empty_state_key(RoomEncryptionEventContent::with_recommended_defaults()).to_raw_any(),
    ];
    let room = alice.create_room(request).await?;
    let texts = collect_texts(&alice);

    // Element Web's client library, with its Rust crypto, as "jsbob".
    let peer_script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests-js/e2ee-peer.mjs");
    let peer = tokio::process::Command::new(&node)
        .arg(peer_script)
        .args([server.base_url().as_str(), "jsbob", "jsbob-password", room.room_id().as_str(), "from rust", "from js"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("start the matrix-js-sdk peer")?;

    // Once jsbob has joined (its keys are uploaded by then), alice's message is shared with it.
    let joined = || room.joined_members_count() >= 2;
    sync_until(&alice, 60, joined).await.context("the js client never joined")?;
    send_text(&room, "from rust").await?;
    sync_until(&alice, 60, || texts.try_lock().is_ok_and(|t| t.iter().any(|b| b == "from js")))
        .await
        .context("alice never decrypted the js client's reply")?;
    let out = tokio::time::timeout(Duration::from_secs(60), peer.wait_with_output()).await??;
    ensure!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("OK"),
        "js peer failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The password stage of user-interactive auth, as a client answers it after a 401.
fn password_auth(name: &str, password: &str, session: Option<String>) -> uiaa::AuthData {
    let mut password = uiaa::Password::new(
        uiaa::UserIdentifier::Matrix(uiaa::MatrixUserIdentifier::new(name.to_owned())),
        password.to_owned(),
    );
    password.session = session;
    uiaa::AuthData::Password(password)
}

/// Bob's phone is deleted, then a new phone logs in under the same device id with new keys; bob
/// leaves, adds a tablet while he shares no room with alice, and rejoins. Each time alice's
/// client must learn the current device list from the server (`changed`/`left` in sync) and
/// share her next room key with exactly the devices that exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_reused_and_returning_devices_get_the_right_keys() -> Result<()> {
    let server = TestServer::start().await?;
    let (alice, bob, room) = alice_and_bob_in_an_encrypted_room(&server).await?;
    let room_id = room.room_id().to_owned();
    let phone = Client::builder().homeserver_url(server.base_url()).build().await?;
    phone.matrix_auth().login_username("bob", "bob-password").device_id("PHONE").send().await?;
    sync(&phone).await?;
    sync_until(&alice, 3, || true).await?;
    let bob_id = uid(&bob)?;
    let old_phone_key = alice
        .encryption()
        .get_device(&bob_id, "PHONE".into())
        .await?
        .and_then(|d| d.curve25519_key())
        .context("alice knows bob's phone")?;

    // Deleting the phone needs the password (UIA); alice then sees one device only.
    let phone_id = matrix_sdk::ruma::OwnedDeviceId::from("PHONE");
    let challenge = bob.delete_devices(std::slice::from_ref(&phone_id), None).await;
    let info =
        challenge.err().and_then(|e| e.as_uiaa_response().cloned()).context("deleting a device asks for auth")?;
    bob.delete_devices(std::slice::from_ref(&phone_id), Some(password_auth("bob", "bob-password", info.session)))
        .await?;
    sync_until(&alice, 3, || true).await?;
    let devices = alice.encryption().get_user_devices(&bob_id).await?;
    ensure!(devices.devices().count() == 1, "alice still sees {} devices of bob", devices.devices().count());

    // A new phone under the reused id has new keys; alice must not keep the old ones.
    let new_phone = Client::builder().homeserver_url(server.base_url()).build().await?;
    new_phone.matrix_auth().login_username("bob", "bob-password").device_id("PHONE").send().await?;
    sync(&new_phone).await?;
    let new_phone_texts = collect_texts(&new_phone);
    sync_until(&alice, 3, || true).await?;
    let new_key = alice
        .encryption()
        .get_device(&bob_id, "PHONE".into())
        .await?
        .and_then(|d| d.curve25519_key())
        .context("alice knows bob's new phone")?;
    ensure!(new_key != old_phone_key, "alice kept the deleted phone's identity key");
    send_text(&room, "to the new phone").await?;
    sync_until(&new_phone, 10, || new_phone_texts.try_lock().is_ok_and(|t| t.iter().any(|b| b == "to the new phone")))
        .await
        .context("the phone under a reused device id never decrypted")?;

    // Bob leaves; while he shares no room with alice he adds a tablet; he comes back.
    sync(&bob).await?;
    bob.get_room(&room_id).context("bob's room")?.leave().await?;
    sync_until(&alice, 3, || true).await?;
    let tablet = Client::builder().homeserver_url(server.base_url()).build().await?;
    tablet.matrix_auth().login_username("bob", "bob-password").device_id("TABLET").send().await?;
    sync(&tablet).await?;
    let tablet_texts = collect_texts(&tablet);
    sync_until(&alice, 3, || true).await?;
    room.invite_user_by_id(&bob_id).await?;
    sync(&bob).await?;
    bob.join_room_by_id(&room_id).await?;
    sync_until(&alice, 3, || true).await?;
    let devices = alice.encryption().get_user_devices(&bob_id).await?;
    ensure!(
        devices.get("TABLET".into()).is_some(),
        "after bob rejoined alice does not know the tablet he added while away"
    );
    send_text(&room, "welcome back").await?;
    sync(&tablet).await?;
    sync_until(&tablet, 10, || tablet_texts.try_lock().is_ok_and(|t| t.iter().any(|b| b == "welcome back")))
        .await
        .context("the tablet added while bob was away never decrypted after he rejoined")?;
    Ok(())
}

/// A client receives a sync response carrying a room key and dies before processing it. Its next
/// sync, with the same token it held, must deliver the key again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_after_a_sync_response_gets_the_keys_again() -> Result<()> {
    let server = TestServer::start().await?;
    let (_alice, bob, room) = alice_and_bob_in_an_encrypted_room(&server).await?;
    let since = bob.sync_once(SyncSettings::default().timeout(Duration::from_millis(0))).await?.next_batch;
    let texts = collect_texts(&bob);
    send_text(&room, "do not lose me").await?;

    // The response the dead client received (and never processed) carries the room key.
    let mut request = sync_events::v3::Request::new();
    request.since = Some(since.clone());
    let lost = bob.send(request).await?;
    ensure!(
        lost.to_device
            .events
            .iter()
            .any(|e| e.get_field::<String>("type").ok().flatten().as_deref() == Some("m.room.encrypted")),
        "the room key was in the lost response"
    );

    // The restarted client syncs from the same token; the SDK never saw the lost response.
    sync_until(&bob, 10, || texts.try_lock().is_ok_and(|t| t.iter().any(|b| b == "do not lose me")))
        .await
        .context("the room key was lost with the unprocessed sync response")?;
    Ok(())
}

/// A new device reads history through the whole key infrastructure: cross-signing (set up without
/// UIA, reset only with the password), recovery through secret storage and the key backup, and a
/// dehydrated device that received the room key while no device of alice was online.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_device_reads_history_from_the_backup_and_the_dehydrated_device() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = register(&server, "alice").await?;
    let bob = register(&server, "bob").await?;
    sync(&alice).await?;
    sync(&bob).await?;
    let alice_id = uid(&alice)?;

    // Cross-signing: the first upload needs no UIA; a reset does, and a wrong password is refused.
    alice.encryption().bootstrap_cross_signing(None).await.context("first cross-signing upload without UIA")?;
    let reset = alice.encryption().reset_cross_signing().await?.context("a reset asks for UIA")?;
    let CrossSigningResetAuthType::Uiaa(info) = reset.auth_type().clone() else { anyhow::bail!("expected UIA") };
    ensure!(
        reset.auth(Some(password_auth("alice", "wrong", info.session.clone()))).await.is_err(),
        "a wrong password reset cross-signing"
    );
    reset
        .auth(Some(password_auth("alice", "alice-password", info.session)))
        .await
        .context("reset with the password")?;
    let status = alice.encryption().cross_signing_status().await.context("status")?;
    ensure!(status.is_complete(), "alice holds all three cross-signing keys: {status:?}");

    // Recovery: secret storage plus a fresh key backup.
    let recovery_key = alice.encryption().recovery().enable().wait_for_backups_to_upload().await?;

    // A dehydrated device, created and signed the way Element Web does it: with the
    // self-signing key taken from secret storage.
    let secrets = alice.encryption().secret_storage().open_secret_store(&recovery_key).await?;
    let export = CrossSigningKeyExport {
        master_key: secrets.get_secret(SecretName::CrossSigningMasterKey).await?,
        self_signing_key: secrets.get_secret(SecretName::CrossSigningSelfSigningKey).await?,
        user_signing_key: secrets.get_secret(SecretName::CrossSigningUserSigningKey).await?,
    };
    let dehydrator = OlmMachine::new(&alice_id, "DEHYDRATOR".into()).await;
    query_own_keys(&alice, &dehydrator).await?;
    dehydrator.import_cross_signing_keys(export).await?;
    let pickle_key = DehydratedDeviceKey::new();
    let dehydrated = dehydrator.dehydrated_devices().create().await?;
    let upload = dehydrated.keys_for_upload("Offline device".to_owned(), &pickle_key).await?;
    let dehydrated_id = upload.device_id.clone();
    alice.send(upload).await.context("upload the dehydrated device")?;

    // Bob writes; alice's only device receives the key and backs it up, and bob's client also
    // shares it with the dehydrated device.
    let room = encrypted_room(&alice, &bob).await?;
    let room_id = room.room_id().to_owned();
    sync(&bob).await?;
    bob.join_room_by_id(&room_id).await?;
    sync(&bob).await?;
    let bob_devices_of_alice = bob.encryption().get_user_devices(&alice_id).await?;
    ensure!(bob_devices_of_alice.get(&dehydrated_id).is_some(), "bob's client sees alice's dehydrated device");
    let alice_texts = collect_texts(&alice);
    let bob_room = bob.get_room(&room_id).context("bob's room")?;
    let history_id = send_text(&bob_room, "history worth keeping").await?;
    sync_until(&alice, 10, || alice_texts.try_lock().is_ok_and(|t| t.iter().any(|b| b == "history worth keeping")))
        .await?;
    alice.encryption().backups().wait_for_steady_state().await?;

    // A new device: recovery brings cross-signing and the backup key, the backup the room key.
    let laptop = login(&server, "alice").await?;
    sync(&laptop).await?;
    laptop.encryption().recovery().recover(&recovery_key).await.context("recover with the key")?;
    let own = laptop.encryption().get_own_device().await?.context("own device")?;
    ensure!(own.is_cross_signed_by_owner(), "the recovered laptop signed itself with the recovered key");
    laptop.encryption().backups().download_room_keys_for_room(&room_id).await?;
    let laptop_room = laptop.get_room(&room_id).context("the laptop knows the room")?;
    let page = laptop_room.messages(MessagesOptions::backward()).await?;
    let found = page.chunk.iter().find(|ev| ev.event_id().as_ref() == Some(&history_id)).context("history event")?;
    let decrypted: serde_json::Value = serde_json::from_str(found.raw().json().get())?;
    ensure!(
        decrypted["content"]["body"] == "history worth keeping",
        "the laptop could not decrypt history from the backup: {decrypted}"
    );

    // Rehydration: the dehydrated device's inbox holds the same room key.
    let device = laptop.send(get_dehydrated_device::unstable::Request::new()).await?;
    ensure!(device.device_id == dehydrated_id, "the server returns the dehydrated device");
    let rehydrator = OlmMachine::new(&alice_id, laptop.device_id().context("device")?).await;
    let rehydrated =
        rehydrator.dehydrated_devices().rehydrate(&pickle_key, &device.device_id, device.device_data).await?;
    let mut events = Vec::new();
    let mut next_batch = None;
    loop {
        let mut request = get_events::unstable::Request::new(device.device_id.clone());
        request.next_batch = next_batch;
        let response = laptop.send(request).await?;
        if response.events.is_empty() {
            break;
        }
        events.extend(response.events);
        next_batch = response.next_batch;
    }
    let settings = DecryptionSettings { sender_device_trust_requirement: TrustRequirement::Untrusted };
    let keys = rehydrated.receive_events(events, &settings).await?;
    ensure!(keys.iter().any(|k| k.room_id == room_id), "the dehydrated device received the room key: {keys:?}");
    let mut raw_page =
        get_message_events::v3::Request::new(room_id.clone(), matrix_sdk::ruma::api::Direction::Backward);
    raw_page.limit = 50u32.into();
    let raw_page = laptop.send(raw_page).await?;
    let encrypted = raw_page
        .chunk
        .iter()
        .find(|ev| ev.get_field::<String>("event_id").ok().flatten().as_deref() == Some(history_id.as_str()))
        .context("the encrypted history event")?;
    let clear = rehydrator.decrypt_room_event(&encrypted.clone().cast_unchecked(), &room_id, &settings).await?;
    let clear: serde_json::Value = serde_json::from_str(clear.event.json().get())?;
    ensure!(clear["content"]["body"] == "history worth keeping", "rehydrated key decrypts history: {clear}");
    Ok(())
}

/// A `/keys/query` for the user's own keys, answered into a standalone crypto machine.
async fn query_own_keys(client: &Client, machine: &OlmMachine) -> Result<()> {
    machine.update_tracked_users([machine.user_id()]).await?;
    for request in machine.outgoing_requests().await? {
        if let AnyOutgoingRequest::KeysQuery(query) = request.request() {
            let mut keys = get_keys::v3::Request::new();
            keys.device_keys = query.device_keys.clone();
            let response = client.send(keys).await?;
            machine.mark_request_as_sent(request.request_id(), &response).await?;
        }
    }
    Ok(())
}
