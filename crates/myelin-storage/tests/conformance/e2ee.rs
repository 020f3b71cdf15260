//! The end-to-end encryption key store: device, one-time, fallback and cross-signing keys, the
//! device-list change stream, to-device inboxes, key backup and dehydrated devices.

use myelin_storage::*;

use super::{another_process, did, open_store, rid, soon, uid, user};

fn key(id: &str, json: &str) -> UploadedKey {
    UploadedKey { key_id: id.into(), json: json.into() }
}

async fn session(s: &std::sync::Arc<dyn Store>, user: &str, device: &str) {
    s.create_session(NewSession {
        user_id: uid(user),
        device_id: did(device),
        display_name: None,
        access_token: format!("tok-{user}-{device}"),
        expires_ms: None,
        refresh_token: None,
        created_ms: 1,
        oauth: None,
    })
    .await
    .expect("session");
}

pub async fn device_keys_one_time_and_fallback_keys(url: String) {
    let s = open_store(&url).await;
    s.create_user(user("@a:test")).await.expect("user");
    session(&s, "@a:test", "D1").await;
    session(&s, "@a:test", "D2").await;
    let (a, d1) = (uid("@a:test"), did("D1"));
    let upload = KeyUpload {
        device_keys: Some(r#"{"keys":{"ed25519:D1":"k"},"signatures":{}}"#.into()),
        one_time_keys: vec![
            key("signed_curve25519:AAA", r#"{"key":"1"}"#),
            key("signed_curve25519:BBB", r#"{"key":"2"}"#),
            key("curve25519:CCC", r#""3""#),
        ],
        fallback_keys: vec![key("signed_curve25519:FFF", r#"{"key":"f","fallback":true}"#)],
    };
    let before = s.stream_head();
    assert_eq!(
        s.upload_keys(&a, &d1, upload.clone()).await.expect("upload"),
        KeyUploadOutcome::Stored { device_list_changed: true }
    );
    assert_eq!(s.device_list_changes(before, s.stream_head()).await.expect("changes"), std::slice::from_ref(&a));
    // The same upload again, signatures aside: nothing changes.
    let mut resigned = upload.clone();
    resigned.device_keys = Some(r#"{"keys":{"ed25519:D1":"k"},"signatures":{"@a:test":{"x":"y"}}}"#.into());
    let again = s.stream_head();
    assert_eq!(
        s.upload_keys(&a, &d1, resigned).await.expect("upload"),
        KeyUploadOutcome::Stored { device_list_changed: false }
    );
    assert!(s.device_list_changes(again, s.stream_head()).await.expect("changes").is_empty());
    // Another key under a known id: refused whole.
    let conflicting = KeyUpload {
        one_time_keys: vec![key("signed_curve25519:AAA", r#"{"key":"other"}"#), key("signed_curve25519:DDD", "{}")],
        ..Default::default()
    };
    assert_eq!(
        s.upload_keys(&a, &d1, conflicting).await.expect("upload"),
        KeyUploadOutcome::Conflict { key_id: "signed_curve25519:AAA".into() }
    );
    let mut counts = s.one_time_key_counts(&a, &d1).await.expect("counts");
    counts.sort();
    assert_eq!(counts, [("curve25519".into(), 1), ("signed_curve25519".into(), 2)], "DDD was not stored");
    let both = s.key_counts(&a, &d1).await.expect("key counts");
    assert_eq!(both.one_time, counts, "the counts a sync reads, sorted by algorithm");
    assert_eq!(both.unused_fallback, ["signed_curve25519"]);
    assert_eq!(s.key_counts(&a, &did("D2")).await.expect("key counts"), KeyCounts::default(), "D2 uploaded none");

    let keys = s.device_keys(&[a.clone(), uid("@nobody:test")]).await.expect("device keys");
    assert_eq!(keys.len(), 1, "D2 uploaded none");
    assert_eq!((keys[0].device_id.as_str(), keys[0].json.contains("ed25519:D1")), ("D1", true));

    // Claims: the oldest one-time key, each once; then the fallback key, kept and marked used.
    let claim =
        |algorithm: &str| KeyClaim { user_id: uid("@a:test"), device_id: did("D1"), algorithm: algorithm.into() };
    let claimed = s.claim_keys(&[claim("signed_curve25519"), claim("signed_curve25519")]).await.expect("claim");
    assert_eq!(
        claimed.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>(),
        ["signed_curve25519:AAA", "signed_curve25519:BBB"]
    );
    let claimed = s.claim_keys(&[claim("signed_curve25519"), claim("unknown_alg")]).await.expect("claim");
    assert_eq!(
        claimed.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>(),
        ["signed_curve25519:FFF"],
        "the fallback"
    );
    let both = s.key_counts(&a, &d1).await.expect("key counts");
    assert!(both.unused_fallback.is_empty(), "marked used");
    assert_eq!(both.one_time, [("curve25519".into(), 1)], "both signed_curve25519 keys claimed");
    assert_eq!(s.claim_keys(&[claim("signed_curve25519")]).await.expect("claim").len(), 1, "the fallback again");
    // A claimed key id is never stored again; a new fallback key is unused.
    let reupload = KeyUpload {
        one_time_keys: vec![key("signed_curve25519:AAA", r#"{"key":"1"}"#)],
        fallback_keys: vec![key("signed_curve25519:GGG", r#"{"key":"g"}"#)],
        ..Default::default()
    };
    assert!(matches!(s.upload_keys(&a, &d1, reupload).await.expect("upload"), KeyUploadOutcome::Stored { .. }));
    let counts = s.one_time_key_counts(&a, &d1).await.expect("counts");
    assert!(!counts.iter().any(|(alg, n)| alg == "signed_curve25519" && *n > 0), "{counts:?}");
    assert_eq!(s.key_counts(&a, &d1).await.expect("key counts").unused_fallback, ["signed_curve25519"]);

    // Deleting the device deletes its keys.
    s.delete_devices(&a, std::slice::from_ref(&d1)).await.expect("delete");
    assert!(s.device_keys(std::slice::from_ref(&a)).await.expect("keys").is_empty());
    assert!(s.one_time_key_counts(&a, &d1).await.expect("counts").is_empty());
}

pub async fn cross_signing_keys_and_device_list_changes(url: String) {
    let s = open_store(&url).await;
    let a = uid("@a:test");
    let start = s.stream_head();
    let keys = vec![("master".to_owned(), "{\"m\":1}".to_owned()), ("self_signing".to_owned(), "{\"s\":1}".to_owned())];
    assert!(s.put_cross_signing_keys(&a, keys.clone()).await.expect("put"));
    assert!(!s.put_cross_signing_keys(&a, keys).await.expect("put"), "the same keys are no change");
    assert!(s.put_cross_signing_keys(&a, vec![("master".into(), "{\"m\":2}".into())]).await.expect("put"));
    let stored = s.cross_signing_keys(&a).await.expect("get");
    assert_eq!(stored, [("master".into(), "{\"m\":2}".into()), ("self_signing".into(), "{\"s\":1}".into())]);

    session(&s, "@a:test", "D1").await;
    s.upload_keys(&a, &did("D1"), KeyUpload { device_keys: Some("{}".into()), ..Default::default() })
        .await
        .expect("upload");
    let middle = s.stream_head();
    s.replace_device_keys(&a, &did("D1"), "{\"signed\":true}".into()).await.expect("replace");
    assert_eq!(s.device_keys(std::slice::from_ref(&a)).await.expect("keys")[0].json, "{\"signed\":true}");
    let p = s.record_device_list_change(&uid("@b:test")).await.expect("change");
    assert!(p > middle);
    let mut since_middle = s.device_list_changes(middle, s.stream_head()).await.expect("changes");
    since_middle.sort();
    assert_eq!(since_middle, [a.clone(), uid("@b:test")]);
    assert_eq!(s.device_list_changes(start, middle).await.expect("changes"), [a], "distinct users in a range");
    assert!(s.device_list_changes(p, s.stream_head()).await.expect("changes").is_empty());
}

pub async fn to_device_inboxes(url: String) {
    let s = open_store(&url).await;
    let (b, phone) = (uid("@b:test"), did("PHONE"));
    let send = |txn: &str, n: usize| ToDeviceSend {
        sender: uid("@a:test"),
        sender_device: did("A1"),
        txn_id: txn.into(),
        event_type: "m.room_key_request".into(),
        messages: (0..n)
            .map(|i| (uid("@b:test"), did(if i % 2 == 0 { "PHONE" } else { "LAPTOP" }), format!("{{\"i\":{i}}}")))
            .collect(),
        now_ms: 1,
    };
    let start = s.stream_head();
    assert!(s.send_to_device(send("t1", 5)).await.expect("send"));
    assert!(!s.send_to_device(send("t1", 5)).await.expect("send"), "a repeated transaction id stores nothing");
    let head = s.stream_head();
    let all = s.to_device_messages(&b, &phone, start, head, 100).await.expect("messages");
    assert_eq!(all.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(), [r#"{"i":0}"#, r#"{"i":2}"#, r#"{"i":4}"#]);
    assert!(all.windows(2).all(|w| w[0].stream_pos < w[1].stream_pos), "in order");
    assert_eq!((all[0].sender.as_str(), all[0].event_type.as_str()), ("@a:test", "m.room_key_request"));
    let page = s.to_device_messages(&b, &phone, start, head, 2).await.expect("messages");
    assert_eq!(page.len(), 2, "limit");
    let rest = s.to_device_messages(&b, &phone, page[1].stream_pos, head, 10).await.expect("messages");
    assert_eq!(rest.len(), 1, "after a position");
    s.delete_to_device_messages(&b, &phone, page[1].stream_pos).await.expect("ack");
    let left = s.to_device_messages(&b, &phone, start, head, 10).await.expect("messages");
    assert_eq!(left.len(), 1, "acknowledged ones are gone");
    assert_eq!(
        s.to_device_messages(&b, &did("LAPTOP"), start, head, 10).await.expect("messages").len(),
        2,
        "per device"
    );
}

pub async fn key_backup_versions_and_keys(url: String) {
    let s = open_store(&url).await;
    let a = uid("@a:test");
    assert!(s.backup_version(&a, None).await.expect("version").is_none());
    let v1 = s
        .create_backup_version(&a, "m.megolm_backup.v1.curve25519-aes-sha2", "{\"k\":1}".into())
        .await
        .expect("create");
    let v2 = s
        .create_backup_version(&a, "m.megolm_backup.v1.curve25519-aes-sha2", "{\"k\":2}".into())
        .await
        .expect("create");
    assert_eq!((v1, v2), (1, 2));
    assert_eq!(s.backup_version(&a, None).await.expect("version").map(|v| v.version), Some(2), "the newest");
    assert!(s.update_backup_version(&a, 1, "{\"k\":3}".into()).await.expect("update"));
    assert_eq!(s.backup_version(&a, Some(1)).await.expect("version").map(|v| v.auth_data), Some("{\"k\":3}".into()));
    assert!(!s.update_backup_version(&a, 9, "{}".into()).await.expect("update"));

    let room = rid("!r:test");
    let backup_key = |session: &str, index: i64, verified: bool| BackupKey {
        room_id: room.clone(),
        session_id: session.into(),
        first_message_index: index,
        forwarded_count: 0,
        is_verified: verified,
        session_data: format!("{{\"{session}\":{index}}}"),
    };
    assert_eq!(
        s.put_backup_keys(&a, 1, vec![backup_key("s1", 0, false)]).await.expect("put"),
        BackupWrite::WrongVersion { current: Some(2) },
        "only the current version takes keys"
    );
    let written =
        s.put_backup_keys(&a, 2, vec![backup_key("s1", 5, false), backup_key("s2", 0, false)]).await.expect("put");
    let BackupWrite::Done { etag, count } = written else { panic!("{written:?}") };
    assert_eq!(count, 2);
    // A worse key (later index) is ignored; a better one (verified) replaces.
    let same = s.put_backup_keys(&a, 2, vec![backup_key("s1", 9, false)]).await.expect("put");
    assert_eq!(same, BackupWrite::Done { etag, count: 2 }, "nothing changed, the etag stays");
    let better = s.put_backup_keys(&a, 2, vec![backup_key("s1", 7, true)]).await.expect("put");
    assert!(matches!(better, BackupWrite::Done { etag: e, count: 2 } if e > etag));
    let keys = s.backup_keys(&a, 2, Some(&room), Some("s1")).await.expect("keys");
    assert_eq!((keys.len(), keys[0].first_message_index, keys[0].is_verified), (1, 7, true));
    assert_eq!(s.backup_keys(&a, 2, None, None).await.expect("keys").len(), 2);
    assert!(s.backup_keys(&a, 2, Some(&rid("!other:test")), None).await.expect("keys").is_empty());

    let deleted = s.delete_backup_keys(&a, 2, Some(&room), Some("s2")).await.expect("delete");
    assert!(matches!(deleted, BackupWrite::Done { count: 1, .. }));
    assert!(s.delete_backup_version(&a, 2).await.expect("delete"));
    assert!(s.backup_keys(&a, 2, None, None).await.expect("keys").is_empty(), "its keys go with it");
    assert_eq!(s.backup_version(&a, None).await.expect("version").map(|v| v.version), Some(1));
    assert_eq!(
        s.create_backup_version(&a, "m.megolm_backup.v1.curve25519-aes-sha2", "{}".into()).await.expect("create"),
        3,
        "a deleted version's number is never reused"
    );
    assert!(s.backup_version(&uid("@b:test"), None).await.expect("version").is_none(), "per user");
}

pub async fn dehydrated_devices_are_replaced_whole(url: String) {
    let s = open_store(&url).await;
    s.create_user(user("@a:test")).await.expect("user");
    let a = uid("@a:test");
    let dehydrate = |device: &str, otk: &str| NewDehydratedDevice {
        user_id: uid("@a:test"),
        device_id: did(device),
        device_data: format!("{{\"d\":\"{device}\"}}"),
        display_name: Some("Dehydrated".into()),
        keys: KeyUpload {
            device_keys: Some(format!("{{\"device\":\"{device}\"}}")),
            one_time_keys: vec![key("signed_curve25519:AAA", otk)],
            ..Default::default()
        },
        now_ms: 5,
    };
    assert!(matches!(
        s.put_dehydrated_device(dehydrate("DH1", "{\"k\":1}")).await.expect("put"),
        KeyUploadOutcome::Stored { .. }
    ));
    assert_eq!(s.dehydrated_device(&a).await.expect("get"), Some((did("DH1"), "{\"d\":\"DH1\"}".into())));
    assert!(s.get_device(&a, &did("DH1")).await.expect("device").is_some());

    // A new one replaces the old device with its keys.
    s.put_dehydrated_device(dehydrate("DH2", "{\"k\":2}")).await.expect("put");
    assert_eq!(s.dehydrated_device(&a).await.expect("get").map(|d| d.0), Some(did("DH2")));
    assert!(s.get_device(&a, &did("DH1")).await.expect("device").is_none(), "the old device is gone");
    assert!(s.one_time_key_counts(&a, &did("DH1")).await.expect("counts").is_empty());

    // A key conflict changes nothing: a regular device already holds other keys under the id.
    session(&s, "@a:test", "DH3").await;
    s.upload_keys(
        &a,
        &did("DH3"),
        KeyUpload { one_time_keys: vec![key("signed_curve25519:AAA", "{\"k\":\"x\"}")], ..Default::default() },
    )
    .await
    .expect("upload");
    let outcome = s.put_dehydrated_device(dehydrate("DH3", "{\"k\":3}")).await;
    assert!(
        matches!(outcome, Ok(KeyUploadOutcome::Conflict { .. })) || matches!(outcome, Err(StorageError::Conflict(_))),
        "{outcome:?}"
    );
    assert_eq!(s.dehydrated_device(&a).await.expect("get").map(|d| d.0), Some(did("DH2")), "the old one stays");

    assert_eq!(s.delete_dehydrated_device(&a).await.expect("delete"), Some(did("DH2")));
    assert!(s.dehydrated_device(&a).await.expect("get").is_none());
    assert!(s.get_device(&a, &did("DH2")).await.expect("device").is_none());
    assert_eq!(s.delete_dehydrated_device(&a).await.expect("delete"), None);
}

pub async fn remote_device_lists_stream_ids_and_openid_tokens(url: String) {
    let s = open_store(&url).await;
    let bob = uid("@bob:remote");
    let dev = |id: &str, keys: Option<&str>| RemoteDevice {
        device_id: did(id),
        keys: keys.map(str::to_owned),
        display_name: Some(format!("{id} name")),
    };
    assert_eq!(s.remote_device_list_state(&bob).await.expect("state"), None);

    // A resync replaces the whole list and records a change on the stream.
    let start = s.stream_head();
    let resync = RemoteDeviceChange::Resync {
        stream_id: 7,
        devices: vec![dev("B1", Some("{\"k\":1}")), dev("B2", None)],
        cross_signing: vec![("master".into(), "{\"m\":1}".into())],
    };
    let p = s.update_remote_device_list(&bob, resync).await.expect("resync");
    assert!(p > start);
    assert_eq!(s.device_list_changes(start, s.stream_head()).await.expect("changes"), std::slice::from_ref(&bob));
    assert_eq!(
        s.remote_device_list_state(&bob).await.expect("state"),
        Some(RemoteDeviceListState { stream_id: 7, stale: false })
    );
    assert_eq!(s.remote_devices(&bob).await.expect("devices"), [dev("B1", Some("{\"k\":1}")), dev("B2", None)]);
    assert_eq!(s.remote_cross_signing_keys(&bob).await.expect("keys"), [("master".into(), "{\"m\":1}".into())]);

    // Single updates: a device changed, one deleted; the stream id follows.
    let change = RemoteDeviceChange::Device { stream_id: 8, device: dev("B2", Some("{\"k\":2}")), deleted: false };
    s.update_remote_device_list(&bob, change).await.expect("update");
    let gone = RemoteDeviceChange::Device { stream_id: 9, device: dev("B1", None), deleted: true };
    let middle = s.stream_head();
    s.update_remote_device_list(&bob, gone).await.expect("delete");
    assert_eq!(s.device_list_changes(middle, s.stream_head()).await.expect("changes"), std::slice::from_ref(&bob));
    assert_eq!(s.remote_devices(&bob).await.expect("devices"), [dev("B2", Some("{\"k\":2}"))]);
    assert_eq!(s.remote_device_list_state(&bob).await.expect("state").map(|st| st.stream_id), Some(9));
    let keys = RemoteDeviceChange::CrossSigning(vec![
        ("master".into(), "{\"m\":2}".into()),
        ("self_signing".into(), "{\"s\":1}".into()),
    ]);
    s.update_remote_device_list(&bob, keys).await.expect("signing keys");
    assert_eq!(
        s.remote_cross_signing_keys(&bob).await.expect("keys"),
        [("master".into(), "{\"m\":2}".into()), ("self_signing".into(), "{\"s\":1}".into())]
    );

    // Stale until the next resync; forgetting drops everything.
    s.mark_remote_device_list_stale(&bob).await.expect("stale");
    assert_eq!(
        s.remote_device_list_state(&bob).await.expect("state"),
        Some(RemoteDeviceListState { stream_id: 9, stale: true })
    );
    let resync = RemoteDeviceChange::Resync { stream_id: 12, devices: vec![], cross_signing: vec![] };
    s.update_remote_device_list(&bob, resync).await.expect("resync");
    assert_eq!(
        s.remote_device_list_state(&bob).await.expect("state"),
        Some(RemoteDeviceListState { stream_id: 12, stale: false })
    );
    assert!(s.remote_devices(&bob).await.expect("devices").is_empty());
    assert!(s.remote_cross_signing_keys(&bob).await.expect("keys").is_empty(), "a resync replaces the keys");
    s.forget_remote_device_list(&bob).await.expect("forget");
    assert_eq!(s.remote_device_list_state(&bob).await.expect("state"), None);

    // Local users' stream ids for other servers: consecutive, never reused, across processes.
    let alice = uid("@alice:test");
    assert_eq!(s.device_list_stream_id(&alice).await.expect("id"), 0);
    assert_eq!(s.next_device_list_stream_ids(&alice, 1).await.expect("ids"), (0, 1));
    let other = another_process(&url, &s).await;
    assert_eq!(other.next_device_list_stream_ids(&alice, 3).await.expect("ids"), (1, 2));
    assert_eq!(s.next_device_list_stream_ids(&alice, 1).await.expect("ids"), (4, 5));
    assert_eq!(s.device_list_stream_id(&alice).await.expect("id"), 5);
    assert_eq!(s.device_list_stream_id(&uid("@carol:test")).await.expect("id"), 0);

    // OpenID tokens: valid until they expire, then cleaned up.
    s.create_openid_token("tok", &alice, 1_000).await.expect("token");
    assert_eq!(s.openid_token_user("tok", 999).await.expect("user"), Some(alice.clone()));
    assert_eq!(s.openid_token_user("tok", 1_000).await.expect("user"), Some(alice.clone()));
    assert_eq!(s.openid_token_user("tok", 1_001).await.expect("user"), None);
    assert_eq!(s.openid_token_user("other", 0).await.expect("user"), None);
    assert_eq!(s.delete_expired_openid_tokens(1_000).await.expect("clean"), 0);
    assert_eq!(s.delete_expired_openid_tokens(1_001).await.expect("clean"), 1);
    assert_eq!(s.openid_token_user("tok", 0).await.expect("user"), None);
}

/// Waits until `store` gives `want` as the device's key counts ([`soon`]).
async fn counts_soon(store: &std::sync::Arc<dyn Store>, user: &str, device: &str, want: &KeyCounts, what: &str) {
    let (user, device) = (uid(user), did(device));
    let read = || async { store.key_counts(&user, &device).await.expect("key counts") };
    soon(what, read, |counts| counts == want).await;
}

/// A device's key counts as one process answers them after another changed them (PostgreSQL
/// keeps the counts a process has read): an upload, a claim of a one-time key and of the fallback
/// key and the device's deletion are each seen by the process that read the counts before; on the
/// process that made the change, at once.
pub async fn key_counts_follow_changes_made_anywhere(url: String) {
    let s = open_store(&url).await;
    let elsewhere = another_process(&url, &s).await;
    s.create_user(user("@a:test")).await.expect("user");
    session(&s, "@a:test", "D1").await;
    session(&s, "@a:test", "D2").await;
    let (a, d1) = (uid("@a:test"), did("D1"));
    let counts = |one_time: &[(&str, u64)], fallback: &[&str]| KeyCounts {
        one_time: one_time.iter().map(|(alg, n)| ((*alg).to_owned(), *n)).collect(),
        unused_fallback: fallback.iter().map(|alg| (*alg).to_owned()).collect(),
    };
    // Both processes read (and may keep) the empty counts of both devices.
    for store in [&s, &elsewhere] {
        for device in ["D1", "D2"] {
            assert_eq!(store.key_counts(&a, &did(device)).await.expect("counts"), KeyCounts::default());
        }
    }
    let upload = KeyUpload {
        one_time_keys: vec![key("signed_curve25519:AAA", r#"{"key":"1"}"#), key("signed_curve25519:BBB", "{}")],
        fallback_keys: vec![key("signed_curve25519:FFF", r#"{"key":"f"}"#)],
        ..Default::default()
    };
    assert!(matches!(s.upload_keys(&a, &d1, upload).await.expect("upload"), KeyUploadOutcome::Stored { .. }));
    let uploaded = counts(&[("signed_curve25519", 2)], &["signed_curve25519"]);
    assert_eq!(s.key_counts(&a, &d1).await.expect("counts"), uploaded, "at once where uploaded");
    counts_soon(&elsewhere, "@a:test", "D1", &uploaded, "uploaded on the other process").await;

    let claim = || KeyClaim { user_id: a.clone(), device_id: d1.clone(), algorithm: "signed_curve25519".into() };
    assert_eq!(elsewhere.claim_keys(&[claim()]).await.expect("claim").len(), 1);
    let one_claimed = counts(&[("signed_curve25519", 1)], &["signed_curve25519"]);
    assert_eq!(elsewhere.key_counts(&a, &d1).await.expect("counts"), one_claimed, "at once where claimed");
    counts_soon(&s, "@a:test", "D1", &one_claimed, "claimed on the other process").await;
    assert_eq!(elsewhere.claim_keys(&[claim(), claim()]).await.expect("claim").len(), 2, "the last and the fallback");
    counts_soon(&s, "@a:test", "D1", &KeyCounts::default(), "fallback claimed on the other process").await;

    // Another upload and a claim, each on the other process from the one that reads.
    let more = KeyUpload { one_time_keys: vec![key("curve25519:CCC", "\"c\"")], ..Default::default() };
    assert!(matches!(s.upload_keys(&a, &did("D2"), more).await.expect("upload"), KeyUploadOutcome::Stored { .. }));
    counts_soon(&elsewhere, "@a:test", "D2", &counts(&[("curve25519", 1)], &[]), "uploaded").await;
    let claim = KeyClaim { user_id: a.clone(), device_id: did("D2"), algorithm: "curve25519".into() };
    assert_eq!(elsewhere.claim_keys(&[claim]).await.expect("claim").len(), 1);
    counts_soon(&s, "@a:test", "D2", &KeyCounts::default(), "claimed on the other process").await;
    let again = KeyUpload { one_time_keys: vec![key("curve25519:DDD", "\"d\"")], ..Default::default() };
    assert!(matches!(s.upload_keys(&a, &did("D2"), again).await.expect("upload"), KeyUploadOutcome::Stored { .. }));
    counts_soon(&elsewhere, "@a:test", "D2", &counts(&[("curve25519", 1)], &[]), "uploaded again").await;
    elsewhere.delete_devices(&a, &[did("D2")]).await.expect("delete");
    counts_soon(&s, "@a:test", "D2", &KeyCounts::default(), "device deleted on the other process").await;
}
