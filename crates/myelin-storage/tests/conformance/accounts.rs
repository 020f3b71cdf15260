//! Users, profiles, sessions, devices and login tokens.

use myelin_storage::*;

use std::sync::Arc;

use super::{another_process, did, open_store, room_with, soon, uid, user};

pub async fn users_are_unique_and_round_trip(url: String) {
    let s = open_store(&url).await;
    s.create_user(user("@alice:test")).await.expect("create");
    assert!(matches!(s.create_user(user("@alice:test")).await, Err(StorageError::Conflict(_))));
    let got = s.get_user(&uid("@alice:test")).await.expect("get").expect("exists");
    assert_eq!(got.password_hash.as_deref(), Some("hash"));
    assert_eq!(got.created_ms, 1);
    assert!(s.get_user(&uid("@nobody:test")).await.expect("get").is_none());
    s.deactivate_user(&uid("@alice:test")).await.expect("deactivate");
    let got = s.get_user(&uid("@alice:test")).await.expect("get").expect("exists");
    assert!(got.deactivated && got.password_hash.is_none());
}

pub async fn profiles_passwords_and_the_user_directory(url: String) {
    let s = open_store(&url).await;
    for id in ["@alice:test", "@bob:test", "@carol:test", "@dave:test", "@eve:test"] {
        s.create_user(user(id)).await.expect("create");
    }
    let alice = uid("@alice:test");
    s.set_password_hash(&alice, Some("new-hash".into())).await.expect("password");
    s.set_displayname(&alice, Some("Alice Liddell".into())).await.expect("name");
    s.set_avatar_url(&alice, Some("mxc://test/a".into())).await.expect("avatar");
    let got = s.get_user(&alice).await.expect("get").expect("exists");
    assert_eq!(
        (got.password_hash.as_deref(), got.displayname.as_deref(), got.avatar_url.as_deref()),
        (Some("new-hash"), Some("Alice Liddell"), Some("mxc://test/a"))
    );
    s.set_displayname(&alice, None).await.expect("name");
    assert!(s.get_user(&alice).await.expect("get").expect("exists").displayname.is_none());
    s.set_displayname(&uid("@bob:test"), Some("Bobby_Tables%".into())).await.expect("name");

    // Bob shares a room with Alice; Carol is alone in a public room; Dave shares nothing.
    room_with(&s, "!shared:test", &["@alice:test", "@bob:test"]).await;
    room_with(&s, "!public:test", &["@carol:test"]).await;
    let mut rule = super::event("!public:test", "$rule", "m.room.join_rules", Some(""), &["$join0-public:test"]);
    rule.join_rule = Some("public".into());
    super::persisted(&s, rule).await;
    room_with(&s, "!private:test", &["@dave:test"]).await;

    let search = |term: &'static str| {
        let s = s.clone();
        async move {
            let hits = s.search_users(&uid("@alice:test"), term, 10).await.expect("search");
            hits.into_iter().map(|h| h.user_id.to_string()).collect::<Vec<_>>()
        }
    };
    assert_eq!(search("bob").await, ["@bob:test"], "shares a room");
    assert_eq!(search("BOBBY").await, ["@bob:test"], "by display name, ignoring case");
    assert_eq!(search("les%").await, ["@bob:test"], "a percent sign matches only itself");
    assert!(search("b_b").await.is_empty(), "an underscore matches only an underscore");
    assert_eq!(search("carol").await, ["@carol:test"], "joined to a public room");
    assert!(search("dave").await.is_empty(), "shares nothing, not public");
    assert_eq!(search("alice").await, ["@alice:test"], "oneself");
    assert_eq!(search(":test").await.len(), 3, "alice, bob, carol");
    let limited = s.search_users(&uid("@alice:test"), ":test", 2).await.expect("search");
    assert_eq!(limited.len(), 2, "limit");
    s.deactivate_user(&uid("@bob:test")).await.expect("deactivate");
    assert!(search("bob").await.is_empty(), "deactivated users are not found");
}

pub async fn sessions_tokens_and_refresh(url: String) {
    let s = open_store(&url).await;
    s.create_user(user("@alice:test")).await.expect("create");
    let alice = uid("@alice:test");
    let session = |device: &str, token: &str, refresh: Option<&str>| NewSession {
        user_id: uid("@alice:test"),
        device_id: did(device),
        display_name: Some("Phone".into()),
        access_token: token.into(),
        expires_ms: Some(5_000),
        refresh_token: refresh.map(Into::into),
        created_ms: 1,
        oauth: None,
    };
    s.create_session(session("D1", "tok1", Some("ref1"))).await.expect("session");
    let owner = s.token_owner("tok1").await.expect("lookup").expect("known");
    assert_eq!(
        (owner.user_id.as_str(), owner.device_id.as_str(), owner.expires_ms),
        ("@alice:test", "D1", Some(5_000))
    );
    assert!(!owner.is_admin && !owner.deactivated);

    let refresh = |old: &str, access: &str, new: &str| SessionRefresh {
        refresh_token: old.into(),
        new_access_token: access.into(),
        new_refresh_token: new.into(),
        expires_ms: None,
    };
    let refreshed = s.refresh_session(refresh("ref1", "tok2", "ref2")).await.expect("refresh");
    let pair = |access: &str, refresh: &str| RefreshOutcome::Refreshed {
        user_id: alice.clone(),
        device_id: did("D1"),
        access_token: access.into(),
        refresh_token: refresh.into(),
        expires_ms: None,
    };
    assert_eq!(refreshed, pair("tok2", "ref2"));
    assert!(s.token_owner("tok1").await.expect("lookup").is_none(), "old access token must die on refresh");
    assert_eq!(s.token_owner("tok2").await.expect("lookup").expect("known").expires_ms, None);
    // The answer was lost: the retry gets the same pair, and nothing new is made.
    let retried = s.refresh_session(refresh("ref1", "x", "y")).await.expect("refresh");
    assert_eq!(retried, pair("tok2", "ref2"), "an honest retry gets the first answer again");
    assert!(s.token_owner("x").await.expect("lookup").is_none());
    // Once the successor was used, the old token again is a stolen copy.
    assert_eq!(s.refresh_session(refresh("ref2", "tok3", "ref3")).await.expect("refresh"), pair("tok3", "ref3"));
    assert_eq!(
        s.refresh_session(refresh("ref1", "x", "y")).await.expect("refresh"),
        RefreshOutcome::Replayed { user_id: alice.clone(), device_id: did("D1") }
    );
    // Three generations at most: ref1 is forgotten once ref3 is used, ref2 still recognised.
    assert_eq!(s.refresh_session(refresh("ref3", "tok4", "ref4")).await.expect("refresh"), pair("tok4", "ref4"));
    assert_eq!(s.refresh_session(refresh("ref1", "x", "y")).await.expect("refresh"), RefreshOutcome::Unknown);
    assert!(matches!(
        s.refresh_session(refresh("ref2", "x", "y")).await.expect("refresh"),
        RefreshOutcome::Replayed { .. }
    ));
    assert_eq!(s.token_device("ref4").await.expect("lookup"), Some((alice.clone(), did("D1"))));
    assert_eq!(s.token_device("tok4").await.expect("lookup"), Some((alice.clone(), did("D1"))));
    assert_eq!(s.token_device("tok3").await.expect("lookup"), None, "replaced access token");

    // Logging in again with the same device id replaces the device's tokens.
    s.create_session(session("D1", "tok7", None)).await.expect("session");
    assert!(s.token_owner("tok4").await.expect("lookup").is_none());
    assert_eq!(
        s.refresh_session(refresh("ref4", "x", "y")).await.expect("refresh"),
        RefreshOutcome::Unknown,
        "its refresh token too"
    );
    assert!(s.token_owner("tok7").await.expect("lookup").is_some());

    s.create_session(session("D2", "tok5", Some("ref5"))).await.expect("session");
    s.revoke_access_token("tok5").await.expect("logout");
    assert!(s.token_owner("tok5").await.expect("lookup").is_none());
    assert_eq!(
        s.refresh_session(refresh("ref5", "x", "y")).await.expect("refresh"),
        RefreshOutcome::Unknown,
        "logout revokes refresh"
    );
    s.delete_devices(&alice, &[did("D1")]).await.expect("delete");
    assert!(s.token_owner("tok7").await.expect("lookup").is_none());

    s.create_session(session("D3", "tok6", Some("ref6"))).await.expect("session");
    s.deactivate_user(&alice).await.expect("deactivate");
    assert!(s.list_devices(&alice).await.expect("devices").is_empty(), "deactivation deletes devices");
    assert!(s.token_owner("tok6").await.expect("lookup").is_none(), "and their tokens");
    assert_eq!(s.refresh_session(refresh("ref6", "x", "y")).await.expect("refresh"), RefreshOutcome::Unknown);
}

pub async fn devices_are_listed_renamed_touched_and_deleted(url: String) {
    let s = open_store(&url).await;
    s.create_user(user("@alice:test")).await.expect("create");
    let alice = uid("@alice:test");
    for device in ["PHONE", "LAPTOP", "TABLET"] {
        s.create_session(NewSession {
            user_id: alice.clone(),
            device_id: did(device),
            display_name: None,
            access_token: format!("tok-{device}"),
            expires_ms: None,
            refresh_token: None,
            created_ms: 1,
            oauth: None,
        })
        .await
        .expect("session");
    }
    let ids = |devices: Vec<DeviceRecord>| devices.into_iter().map(|d| d.device_id.to_string()).collect::<Vec<_>>();
    assert_eq!(ids(s.list_devices(&alice).await.expect("list")), ["LAPTOP", "PHONE", "TABLET"], "by id");
    assert!(s.set_device_display_name(&alice, &did("PHONE"), Some("My phone".into())).await.expect("rename"));
    assert!(!s.set_device_display_name(&alice, &did("NOPE"), Some("x".into())).await.expect("rename"));
    s.touch_device(&alice, &did("PHONE"), Some("127.0.0.2".into()), 7_000).await.expect("touch");
    let phone = s.get_device(&alice, &did("PHONE")).await.expect("get").expect("exists");
    assert_eq!(
        (phone.display_name.as_deref(), phone.last_seen_ms, phone.last_seen_ip.as_deref()),
        (Some("My phone"), Some(7_000), Some("127.0.0.2"))
    );
    assert!(s.get_device(&uid("@bob:test"), &did("PHONE")).await.expect("get").is_none(), "devices are per user");

    // "Log out everywhere else" spares the caller's device and the dehydrated device.
    s.put_dehydrated_device(NewDehydratedDevice {
        user_id: alice.clone(),
        device_id: did("DEHYDRATED"),
        device_data: "{}".into(),
        display_name: None,
        keys: KeyUpload::default(),
        now_ms: 1,
    })
    .await
    .expect("dehydrated");
    let before = s.stream_head();
    s.delete_all_devices(&alice, Some(&did("LAPTOP"))).await.expect("delete all");
    assert_eq!(ids(s.list_devices(&alice).await.expect("list")), ["DEHYDRATED", "LAPTOP"]);
    assert!(s.token_owner("tok-PHONE").await.expect("lookup").is_none());
    assert!(s.token_owner("tok-LAPTOP").await.expect("lookup").is_some());
    let changes = s.device_list_changes(before, s.stream_head()).await.expect("changes");
    assert_eq!(changes, std::slice::from_ref(&alice), "the device list change is recorded");
    s.delete_all_devices(&alice, None).await.expect("delete all");
    assert_eq!(ids(s.list_devices(&alice).await.expect("list")), ["DEHYDRATED"]);
}

pub async fn expired_login_tokens_are_cleaned_up(url: String) {
    let s = open_store(&url).await;
    let alice = uid("@a:test");
    s.create_login_token("old", &alice, 10).await.expect("token");
    s.create_login_token("new", &alice, 5_000_000).await.expect("token");
    s.create_login_token("late", &alice, 20).await.expect("token");
    assert!(s.take_login_token("late", 21).await.expect("take").is_none(), "expired when taken");
    assert_eq!(s.delete_expired_login_tokens(1_000_000).await.expect("cleanup"), 1);
    assert!(s.take_login_token("old", 5).await.expect("take").is_none(), "deleted even though not expired at 5");
    assert_eq!(s.take_login_token("new", 1_000_000).await.expect("take"), Some(alice));
    assert!(s.take_login_token("new", 1_000_000).await.expect("take").is_none(), "used once");
}

pub async fn uia_sessions_remember_their_stages(url: String) {
    let s = open_store(&url).await;
    let other = super::another_process(&url, &s).await;
    s.create_uia_session("sess", 1_000).await.expect("create");
    assert_eq!(other.uia_session("sess", 0).await.expect("get"), Some(vec![]), "any process sees it");
    assert!(other.complete_uia_stage("sess", "m.login.password").await.expect("stage"));
    assert!(s.complete_uia_stage("sess", "m.login.password").await.expect("stage"), "once");
    assert!(s.complete_uia_stage("sess", "m.login.dummy").await.expect("stage"));
    assert_eq!(
        s.uia_session("sess", 0).await.expect("get"),
        Some(vec!["m.login.password".to_owned(), "m.login.dummy".to_owned()])
    );
    assert!(s.uia_session("sess", 1_001).await.expect("get").is_none(), "too old");
    assert!(!s.complete_uia_stage("nope", "m.login.dummy").await.expect("stage"));
    s.create_uia_session("old", 10).await.expect("create");
    assert_eq!(s.delete_uia_sessions_before(500).await.expect("cleanup"), 1);
    assert!(s.uia_session("old", 0).await.expect("get").is_none());
    s.delete_uia_session("sess").await.expect("delete");
    assert!(s.uia_session("sess", 0).await.expect("get").is_none());
}

/// Erased users are remembered once, and found among any list of users.
pub async fn erased_users_are_remembered(url: String) {
    let s = open_store(&url).await;
    s.create_user(user("@gone:test")).await.expect("create");
    s.create_user(user("@here:test")).await.expect("create");
    assert!(s.erased_users_among(&[uid("@gone:test")]).await.expect("read").is_empty());
    s.mark_user_erased(&uid("@gone:test"), 5).await.expect("erase");
    s.mark_user_erased(&uid("@gone:test"), 6).await.expect("erasing twice is fine");
    let found = s.erased_users_among(&[uid("@here:test"), uid("@gone:test"), uid("@nobody:test")]).await.expect("read");
    assert_eq!(found, vec![uid("@gone:test")]);
    assert!(s.erased_users_among(&[]).await.expect("read").is_empty());
}

/// The admins' list of users: in user id order, paged by offset with the total, filtered by a
/// part of the id or display name (`%` and `_` taken literally), guests and deactivated users
/// only when asked for; a guest upgrades to a full user once.
pub async fn users_are_listed_for_the_admins(url: String) {
    let store = open_store(&url).await;
    for (id, name, guest) in [
        ("@carol:test", Some("Carol 100%"), false),
        ("@alice:test", Some("Alice"), false),
        ("@bob:test", None, false),
        ("@guest-1:test", None, true),
    ] {
        store
            .create_user(UserRecord { displayname: name.map(Into::into), is_guest: guest, ..user(id) })
            .await
            .expect("create");
    }
    store.deactivate_user(&uid("@bob:test")).await.expect("deactivate");
    let ids = |users: &[UserRecord]| users.iter().map(|u| u.user_id.to_string()).collect::<Vec<_>>();
    let everyone = UserListFilter { guests: true, deactivated: true, ..UserListFilter::default() };
    let (users, total) = store.list_users(&everyone, 0, 10).await.expect("list");
    assert_eq!(ids(&users), ["@alice:test", "@bob:test", "@carol:test", "@guest-1:test"]);
    assert_eq!(total, 4);
    let (page, total) = store.list_users(&everyone, 1, 2).await.expect("list");
    assert_eq!((ids(&page), total), (vec!["@bob:test".to_owned(), "@carol:test".to_owned()], 4));
    let (users, total) = store.list_users(&UserListFilter::default(), 0, 10).await.expect("list");
    assert_eq!((ids(&users), total), (vec!["@alice:test".to_owned(), "@carol:test".to_owned()], 2));
    let by_name = |name: &str| UserListFilter { name: Some(name.into()), ..everyone.clone() };
    assert_eq!(ids(&store.list_users(&by_name("ALI"), 0, 10).await.expect("list").0), ["@alice:test"]);
    assert_eq!(ids(&store.list_users(&by_name("100%"), 0, 10).await.expect("list").0), ["@carol:test"]);
    assert!(store.list_users(&by_name("_"), 0, 10).await.expect("list").0.is_empty(), "`_` is no wildcard");

    assert!(store.upgrade_guest(&uid("@guest-1:test"), Some("hash".into())).await.expect("upgrade"));
    assert!(!store.upgrade_guest(&uid("@guest-1:test"), None).await.expect("upgrade"), "once");
    assert!(!store.upgrade_guest(&uid("@alice:test"), None).await.expect("upgrade"), "not a guest");
    assert!(!store.get_user(&uid("@guest-1:test")).await.expect("get").expect("user").is_guest);
}

/// Waits until `check` holds for the owner `store` gives `token` ([`soon`]).
async fn owner_soon(store: &Arc<dyn Store>, token: &str, what: &str, check: impl Fn(Option<&TokenOwner>) -> bool) {
    soon(what, || async move { store.token_owner(token).await.expect("lookup") }, |owner| check(owner.as_ref())).await;
}

/// Who owns a token, as one process answers it after another changed it (PostgreSQL keeps the
/// owners a process has read): a revoked token, a locked, deactivated or upgraded user, and a
/// token deleted by hand (SQL from outside Myelin) are each seen by the process that read them
/// before; on the process that made the change, at once.
pub async fn token_owners_follow_changes_made_anywhere(url: String) {
    let s = open_store(&url).await;
    let elsewhere = another_process(&url, &s).await;
    s.create_user(user("@alice:test")).await.expect("create");
    s.create_user(user("@bob:test")).await.expect("create");
    s.create_user(UserRecord { is_guest: true, ..user("@guest:test") }).await.expect("create");
    let session = |user: &str, device: &str, token: &str| NewSession {
        user_id: uid(user),
        device_id: did(device),
        display_name: None,
        access_token: token.into(),
        expires_ms: None,
        refresh_token: None,
        created_ms: 1,
        oauth: None,
    };
    for (user, device, token) in [
        ("@alice:test", "A1", "alice-1"),
        ("@alice:test", "A2", "alice-2"),
        ("@alice:test", "A3", "alice-3"),
        ("@bob:test", "B1", "bob-1"),
        ("@bob:test", "B2", "bob-2"),
        ("@guest:test", "G1", "guest-1"),
    ] {
        s.create_session(session(user, device, token)).await.expect("session");
        // Both processes read (and may keep) every owner.
        assert!(s.token_owner(token).await.expect("lookup").is_some());
        assert!(elsewhere.token_owner(token).await.expect("lookup").is_some());
    }

    // Changed on this process: seen here at once, and by the other soon.
    s.revoke_access_token("alice-1").await.expect("revoke");
    assert!(s.token_owner("alice-1").await.expect("lookup").is_none(), "revoked here, seen here at once");
    owner_soon(&elsewhere, "alice-1", "revoked on the other process", |o| o.is_none()).await;

    // Changed on the other process.
    assert!(elsewhere.set_user_locked(&uid("@bob:test"), true).await.expect("lock"));
    owner_soon(&s, "bob-1", "locked elsewhere", |o| o.is_some_and(|o| o.locked)).await;
    assert!(elsewhere.token_owner("bob-1").await.expect("lookup").is_some_and(|o| o.locked), "at once there");
    elsewhere.delete_devices(&uid("@bob:test"), &[did("B2")]).await.expect("delete");
    owner_soon(&s, "bob-2", "device deleted elsewhere", |o| o.is_none()).await;
    assert!(elsewhere.upgrade_guest(&uid("@guest:test"), None).await.expect("upgrade"));
    owner_soon(&s, "guest-1", "guest upgraded elsewhere", |o| o.is_some_and(|o| !o.is_guest)).await;

    // Deleted by hand, outside any Myelin process (PostgreSQL's triggers tell every process).
    if url.starts_with("postgres") {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(connection);
        client.execute("DELETE FROM access_tokens WHERE token = 'alice-2'", &[]).await.expect("delete by hand");
        owner_soon(&s, "alice-2", "deleted by hand", |o| o.is_none()).await;
        owner_soon(&elsewhere, "alice-2", "deleted by hand", |o| o.is_none()).await;
    } else {
        s.revoke_access_token("alice-2").await.expect("revoke");
    }

    elsewhere.deactivate_user(&uid("@alice:test")).await.expect("deactivate");
    owner_soon(&s, "alice-3", "deactivated elsewhere", |o| o.is_none()).await;
    // What was never changed is still answered the same on both.
    for store in [&s, &elsewhere] {
        let owner = store.token_owner("bob-1").await.expect("lookup").expect("bob's first token");
        assert_eq!((owner.user_id.as_str(), owner.device_id.as_str()), ("@bob:test", "B1"));
    }
}
