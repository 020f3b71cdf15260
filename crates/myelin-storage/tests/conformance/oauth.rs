//! The OAuth 2.0 authorization server's records.

use myelin_storage::*;

use super::{did, open_store, uid, user};

fn code_grant(id: &str) -> CodeGrantRecord {
    CodeGrantRecord {
        grant_id: id.into(),
        client_id: "client1".into(),
        redirect_uri: "http://127.0.0.1/cb".into(),
        scope: "urn:matrix:client:api:* urn:matrix:client:device:ABCDEFGHIJ".into(),
        state: Some("st".into()),
        nonce: None,
        response_mode: "query".into(),
        code_challenge: "challenge".into(),
        created_ms: 10,
        code: None,
        user_id: None,
        device_id: None,
        consented_ms: None,
        exchanged_ms: None,
    }
}

pub async fn code_grants_are_consented_once_and_exchanged_once(url: String) {
    let s = open_store(&url).await;
    s.create_oauth_client("client1", r#"{"client_uri":"https://example.org"}"#, 1).await.expect("client");
    assert_eq!(
        s.oauth_client("client1").await.expect("read").as_deref(),
        Some(r#"{"client_uri":"https://example.org"}"#)
    );
    assert_eq!(s.oauth_client("nobody").await.expect("read"), None);

    s.create_code_grant(&code_grant("g1")).await.expect("grant");
    assert_eq!(s.code_grant("g1").await.expect("read"), Some(code_grant("g1")));
    let alice = uid("@alice:test");
    assert!(s.consent_code_grant("g1", "code1", &alice, "ABCDEFGHIJ", 20).await.expect("consent"));
    assert!(!s.consent_code_grant("g1", "code2", &alice, "ABCDEFGHIJ", 21).await.expect("consent"), "answered once");
    assert!(!s.consent_code_grant("nope", "code3", &alice, "X", 21).await.expect("consent"));

    let (grant, first) = s.exchange_code("code1", 30).await.expect("exchange").expect("known code");
    assert!(first);
    assert_eq!((grant.user_id, grant.device_id), (Some(alice.clone()), Some(did("ABCDEFGHIJ"))));
    let (grant, first) = s.exchange_code("code1", 31).await.expect("exchange").expect("known code");
    assert!(!first, "a second exchange is a replay");
    assert_eq!(grant.exchanged_ms, Some(30));
    assert_eq!(s.exchange_code("code2", 31).await.expect("exchange"), None);

    assert_eq!(s.delete_expired_oauth_rows(100, 5).await.expect("clean"), 0, "younger than the cut");
    assert_eq!(s.delete_expired_oauth_rows(100, 11).await.expect("clean"), 1);
    assert_eq!(s.code_grant("g1").await.expect("read"), None);
}

pub async fn device_grants_are_approved_polled_and_exchanged_once(url: String) {
    let s = open_store(&url).await;
    let grant = DeviceGrantRecord {
        device_code: "dev1".into(),
        user_code: "ABCDEF".into(),
        client_id: "client1".into(),
        scope: "openid".into(),
        created_ms: 10,
        expires_ms: 1_000,
        last_poll_ms: None,
        user_id: None,
        denied: false,
        exchanged_ms: None,
    };
    assert!(s.create_device_grant(&grant).await.expect("grant"));
    let clash = DeviceGrantRecord { device_code: "dev2".into(), ..grant.clone() };
    assert!(!s.create_device_grant(&clash).await.expect("grant"), "user codes are unique");
    assert!(!s.exchange_device_grant("dev1", 20).await.expect("exchange"), "not approved yet");
    let polled = s.poll_device_grant("dev1", 20).await.expect("poll").expect("known");
    assert_eq!(polled.last_poll_ms, None);
    assert_eq!(s.poll_device_grant("dev1", 25).await.expect("poll").expect("known").last_poll_ms, Some(20));

    let alice = uid("@alice:test");
    assert!(s.decide_device_grant("ABCDEF", Some(&alice)).await.expect("approve"));
    assert!(!s.decide_device_grant("ABCDEF", None).await.expect("deny"), "answered once");
    assert_eq!(s.device_grant_by_user_code("ABCDEF").await.expect("read").and_then(|g| g.user_id), Some(alice));
    assert!(s.exchange_device_grant("dev1", 30).await.expect("exchange"));
    assert!(!s.exchange_device_grant("dev1", 31).await.expect("exchange"), "once");

    let denied = DeviceGrantRecord { device_code: "dev3".into(), user_code: "GHIJKL".into(), ..grant };
    assert!(s.create_device_grant(&denied).await.expect("grant"));
    assert!(s.decide_device_grant("GHIJKL", None).await.expect("deny"));
    let read = s.device_grant_by_user_code("GHIJKL").await.expect("read").expect("known");
    assert!(read.denied && read.user_id.is_none());
    assert!(!s.exchange_device_grant("dev3", 30).await.expect("exchange"));
    assert_eq!(s.delete_expired_oauth_rows(1_000, 0).await.expect("clean"), 2);
}

pub async fn web_sessions_expire_and_follow_the_account(url: String) {
    let s = open_store(&url).await;
    s.create_user(user("@alice:test")).await.expect("user");
    let alice = uid("@alice:test");
    s.create_web_session("web1", &alice, 10, 100, false).await.expect("session");
    assert_eq!(s.web_session_user("web1", 50).await.expect("read"), Some((alice.clone(), false)));
    assert_eq!(s.web_session_user("web1", 100).await.expect("read"), None, "expired");
    assert_eq!(s.web_session_user("other", 50).await.expect("read"), None);

    assert!(!s.user_locked(&alice).await.expect("read"));
    assert!(s.set_user_locked(&alice, true).await.expect("lock"));
    assert!(s.user_locked(&alice).await.expect("read"));
    assert_eq!(s.web_session_user("web1", 50).await.expect("read"), None, "a locked account's session is refused");
    assert!(s.set_user_locked(&alice, false).await.expect("unlock"));
    assert_eq!(s.web_session_user("web1", 50).await.expect("read"), Some((alice.clone(), false)));
    assert!(!s.set_user_locked(&uid("@nobody:test"), true).await.expect("lock"));

    assert_eq!(s.cross_signing_reset_until(&alice).await.expect("read"), None);
    s.approve_cross_signing_reset(&alice, 600).await.expect("approve");
    assert_eq!(s.cross_signing_reset_until(&alice).await.expect("read"), Some(600));

    s.delete_web_session("web1").await.expect("delete");

    // The second factor: a pending session completes; TOTP steps are accepted once, in order.
    s.create_web_session("web2", &alice, 10, 100, true).await.expect("session");
    assert_eq!(s.web_session_user("web2", 50).await.expect("read"), Some((alice.clone(), true)));
    s.complete_web_session("web2").await.expect("complete");
    assert_eq!(s.web_session_user("web2", 50).await.expect("read"), Some((alice.clone(), false)));
    assert!(!s.has_second_factor(&alice).await.expect("read"));
    assert!(s.start_totp(&alice, "SECRET1", 10).await.expect("start"));
    assert!(s.start_totp(&alice, "SECRET2", 11).await.expect("restart while unconfirmed"));
    assert_eq!(s.totp(&alice).await.expect("read"), Some(("SECRET2".into(), false, 0)));
    assert!(s.accept_totp_step(&alice, 1000).await.expect("accept"));
    assert!(s.has_second_factor(&alice).await.expect("read"), "a first code confirms it");
    assert!(!s.accept_totp_step(&alice, 1000).await.expect("accept"), "a code is used once");
    assert!(!s.accept_totp_step(&alice, 999).await.expect("accept"), "nor an older one");
    assert!(!s.start_totp(&alice, "SECRET3", 12).await.expect("start"), "a confirmed secret stays");
    s.set_recovery_codes(&alice, &["h1".into(), "h2".into()]).await.expect("codes");
    assert!(s.use_recovery_code(&alice, "h1", 20).await.expect("use"));
    assert!(!s.use_recovery_code(&alice, "h1", 21).await.expect("use"), "once");
    assert!(!s.use_recovery_code(&alice, "h9", 21).await.expect("use"));
    s.remove_totp(&alice).await.expect("remove");
    assert!(!s.has_second_factor(&alice).await.expect("read"));
    assert!(!s.use_recovery_code(&alice, "h2", 21).await.expect("use"), "the codes went with it");
    assert_eq!(s.web_session_user("web1", 50).await.expect("read"), None);

    // A session of a client is a device carrying the client and its scope.
    s.create_session(NewSession {
        user_id: alice.clone(),
        device_id: did("OAUTHDEVICE"),
        display_name: None,
        access_token: "tokA".into(),
        expires_ms: Some(300),
        refresh_token: Some("refA".into()),
        created_ms: 1,
        oauth: Some(OAuthSessionInfo { client_id: "client1".into(), scope: "openid".into() }),
    })
    .await
    .expect("session");
    let info = s.oauth_session(&alice, &did("OAUTHDEVICE")).await.expect("read");
    assert_eq!(info, Some(OAuthSessionInfo { client_id: "client1".into(), scope: "openid".into() }));
    let owner = s.token_owner("tokA").await.expect("read").expect("known");
    assert!(!owner.locked);
    s.set_user_locked(&alice, true).await.expect("lock");
    assert!(s.token_owner("tokA").await.expect("read").expect("kept").locked, "kept, marked locked");
}

pub async fn rendezvous_sessions_are_written_in_turn_and_expire(url: String) {
    let s = open_store(&url).await;
    let session = RendezvousRecord {
        session_id: "r1".into(),
        data: "aGVsbG8=".into(),
        content_type: "text/plain".into(),
        etag: "e1".into(),
        modified_ms: 10,
        expires_ms: 100,
    };
    assert!(s.create_rendezvous(&session, 10, 2).await.expect("create"));
    let second = RendezvousRecord { session_id: "r2".into(), ..session.clone() };
    assert!(s.create_rendezvous(&second, 10, 2).await.expect("create"));
    let third = RendezvousRecord { session_id: "r3".into(), ..session.clone() };
    assert!(!s.create_rendezvous(&third, 10, 2).await.expect("create"), "at most max_live live sessions");
    assert_eq!(s.rendezvous("r1", 50).await.expect("read"), Some(session.clone()));
    let next = RendezvousRecord { data: "d29ybGQ=".into(), etag: "e2".into(), modified_ms: 20, ..session.clone() };
    assert_eq!(s.write_rendezvous("r1", "e1", &next, 20).await.expect("write"), RendezvousWrite::Written);
    assert_eq!(s.write_rendezvous("r1", "e1", &next, 21).await.expect("write"), RendezvousWrite::Conflict);
    assert_eq!(s.write_rendezvous("nope", "e1", &next, 21).await.expect("write"), RendezvousWrite::Missing);
    assert_eq!(s.rendezvous("r1", 50).await.expect("read").map(|r| r.etag), Some("e2".into()));
    assert_eq!(s.rendezvous("r1", 100).await.expect("read"), None, "expired");
    assert_eq!(s.write_rendezvous("r1", "e2", &next, 100).await.expect("write"), RendezvousWrite::Missing);
    assert!(s.delete_rendezvous("r2").await.expect("delete"));
    assert!(!s.delete_rendezvous("r2").await.expect("delete"));
    assert_eq!(s.delete_expired_rendezvous(100).await.expect("clean"), 1);
}

pub async fn passkeys_and_their_challenges(url: String) {
    let s = open_store(&url).await;
    let alice = uid("@alice:test");
    let key = PasskeyRecord {
        credential_id: "cred1".into(),
        user_id: alice.clone(),
        public_key: "BAAA".into(),
        sign_count: 0,
        name: "Laptop".into(),
        created_ms: 10,
        last_used_ms: None,
    };
    assert!(s.add_passkey(&key).await.expect("add"));
    assert!(!s.add_passkey(&key).await.expect("add"), "a credential id once");
    assert_eq!(s.passkey("cred1").await.expect("read"), Some(key.clone()));
    assert_eq!(s.passkeys(&alice).await.expect("list").len(), 1);
    assert!(s.use_passkey("cred1", 0, 20).await.expect("use"), "counterless authenticators");
    assert!(s.use_passkey("cred1", 5, 21).await.expect("use"));
    assert!(!s.use_passkey("cred1", 5, 22).await.expect("use"), "a counter that did not move: a clone");
    assert!(!s.use_passkey("cred1", 3, 22).await.expect("use"));
    assert_eq!(s.passkey("cred1").await.expect("read").map(|k| (k.sign_count, k.last_used_ms)), Some((5, Some(21))));
    assert!(!s.delete_passkey(&uid("@bob:test"), "cred1").await.expect("delete"), "only its owner's");
    assert!(s.delete_passkey(&alice, "cred1").await.expect("delete"));

    s.create_webauthn_challenge("ch1", Some(&alice), "register", 100).await.expect("challenge");
    s.create_webauthn_challenge("ch2", None, "login", 100).await.expect("challenge");
    assert_eq!(s.take_webauthn_challenge("ch1", "login", 50).await.expect("take"), None, "another purpose");
    assert_eq!(s.take_webauthn_challenge("ch1", "register", 50).await.expect("take"), Some(Some(alice.clone())));
    assert_eq!(s.take_webauthn_challenge("ch1", "register", 50).await.expect("take"), None, "once");
    assert_eq!(s.take_webauthn_challenge("ch2", "login", 100).await.expect("take"), None, "expired");
}
