//! What admins decide: registration tokens, quarantined and protected media, blocked rooms,
//! room deletions and purges.

use myelin_storage::*;

use super::{open_store, rid, room_with, uid};

fn token(name: &str, uses_allowed: Option<u64>, expiry_time: Option<u64>) -> RegistrationTokenRecord {
    RegistrationTokenRecord { token: name.into(), uses_allowed, pending: 0, completed: 0, expiry_time }
}

/// A token's uses are taken one at a time, never past its limit or its expiry, even by two
/// registrations at once; a finished registration's use counts as completed.
pub async fn registration_tokens_are_used_up_atomically(url: String) {
    let store = open_store(&url).await;
    assert!(store.create_registration_token(&token("once", Some(1), None)).await.expect("create"));
    assert!(!store.create_registration_token(&token("once", None, None)).await.expect("create"), "exists");
    let (a, b) = tokio::join!(store.take_registration_token("once", 10), store.take_registration_token("once", 10));
    assert_eq!(u8::from(a.expect("take")) + u8::from(b.expect("take")), 1, "one of two racing takes wins");
    store.complete_registration_token("once").await.expect("complete");
    let once = store.registration_token("once").await.expect("read").expect("exists");
    assert_eq!((once.pending, once.completed), (0, 1));
    assert!(!once.usable(10));
    assert!(!store.take_registration_token("once", 10).await.expect("take"), "used up");

    assert!(store.create_registration_token(&token("until", None, Some(100))).await.expect("create"));
    assert!(store.take_registration_token("until", 99).await.expect("take"));
    assert!(!store.take_registration_token("until", 100).await.expect("take"), "expired");
    assert!(!store.take_registration_token("missing", 0).await.expect("take"));

    assert!(store.update_registration_token("once", Some(Some(3)), None).await.expect("update"));
    assert!(store.take_registration_token("once", 10).await.expect("take"), "more uses allowed");
    assert!(store.update_registration_token("until", Some(None), Some(None)).await.expect("update"));
    let until = store.registration_token("until").await.expect("read").expect("exists");
    assert_eq!((until.uses_allowed, until.expiry_time), (None, None));
    assert!(!store.update_registration_token("missing", None, None).await.expect("update"));
    assert_eq!(store.registration_tokens().await.expect("list").len(), 2);
    assert!(store.delete_registration_token("once").await.expect("delete"));
    assert!(!store.delete_registration_token("once").await.expect("delete"));
    assert_eq!(store.registration_token("once").await.expect("read"), None);
}

fn upload(id: &str, uploader: &str, length: u64, at: u64) -> MediaRecord {
    MediaRecord {
        origin: "test".into(),
        media_id: id.into(),
        uploader: Some(uid(uploader)),
        content_type: Some("text/plain".into()),
        upload_name: None,
        content: Some(MediaContent { sha256: format!("{id:0>64}"), length }),
        created_ms: at,
        unused_expires_ms: None,
    }
}

/// Quarantine spares protected media; the admin lists page a user's uploads, total uploads per
/// user, and find old unprotected local media.
pub async fn media_quarantine_protection_and_lists(url: String) {
    let store = open_store(&url).await;
    for (id, user, length, at) in [("a", "@a:test", 10, 1), ("b", "@a:test", 20, 2), ("c", "@b:test", 5, 3)] {
        store.put_media(&upload(id, user, length, at)).await.expect("put");
    }
    store.set_media_protected("test", "b", true).await.expect("protect");
    let both = [("test".to_owned(), "a".to_owned()), ("test".to_owned(), "b".to_owned())];
    assert_eq!(store.quarantine_media(&both, &uid("@admin:test"), 5).await.expect("quarantine"), 1);
    assert!(store.is_quarantined("test", "a").await.expect("read"));
    assert!(!store.is_quarantined("test", "b").await.expect("read"), "protected");
    let a = store.admin_media("test", "a").await.expect("read").expect("exists");
    assert_eq!((a.quarantined_by, a.protected), (Some(uid("@admin:test")), false));
    assert!(store.admin_media("test", "b").await.expect("read").expect("exists").protected);
    assert!(store.unquarantine_media("test", "a").await.expect("lift"));
    assert!(!store.unquarantine_media("test", "a").await.expect("lift"), "not quarantined any more");

    let (page, total) = store.uploads_of(&uid("@a:test"), 0, 1).await.expect("list");
    assert_eq!((page.iter().map(|m| m.media.media_id.as_str()).collect::<Vec<_>>(), total), (vec!["b"], 2));
    let (usage, users) = store.media_usage(0, 10).await.expect("usage");
    assert_eq!(users, 2);
    assert_eq!(
        usage,
        vec![
            MediaUsage { user_id: uid("@a:test"), displayname: None, media_count: 2, media_length: 30 },
            MediaUsage { user_id: uid("@b:test"), displayname: None, media_count: 1, media_length: 5 },
        ]
    );
    let old = |before_ms, size_gt| OldMediaQuery { origin: "test", before_ms, size_gt, limit: 10 };
    let ids = |v: Vec<(String, String)>| v.into_iter().map(|(_, id)| id).collect::<Vec<_>>();
    assert_eq!(ids(store.old_local_media(old(100, 0)).await.expect("old")), vec!["a", "c"], "b is protected");
    assert_eq!(ids(store.old_local_media(old(100, 6)).await.expect("old")), vec!["a"], "larger than 6 bytes");
    assert_eq!(ids(store.old_local_media(old(2, 0)).await.expect("old")), vec!["a"], "accessed before 2");
}

/// Blocks and deletions are recorded; a purge removes the room and its members but not the
/// deletion's record or the block.
pub async fn rooms_are_blocked_listed_and_purged(url: String) {
    let store = open_store(&url).await;
    let room = rid("!doomed:test");
    let last = room_with(&store, room.as_str(), &["@a:test", "@b:other"]).await;
    // A's leave, still queued for B's server when the purge comes.
    let mut leave = super::member_event(room.as_str(), "$leave-doomed", "@a:test", Membership::Leave, &[&last]);
    leave.destinations = vec![ruma::OwnedServerName::try_from("other").expect("server name")];
    super::persisted(&store, leave).await;
    room_with(&store, "!kept:test", &["@a:test"]).await;
    let rooms = store.admin_rooms("test", None).await.expect("list");
    assert_eq!(store.admin_rooms("test", Some(&room)).await.expect("one").len(), 1, "one room asked for");
    let doomed = rooms.iter().find(|r| r.room_id == room).expect("listed");
    assert_eq!((doomed.joined_members, doomed.joined_local_members, doomed.state_events), (1, 0, 3));
    let state = store.room_state_contents(Some(&room), &["m.room.create"]).await.expect("state");
    assert_eq!(state.len(), 1);
    assert_eq!(store.room_state_contents(None, &["m.room.create"]).await.expect("state").len(), 2);

    store.block_room(&room, &uid("@admin:test"), 1).await.expect("block");
    assert_eq!(store.room_blocked_by(&room).await.expect("read"), Some(uid("@admin:test")));
    let mut deletion = RoomDeletion {
        delete_id: "d1".into(),
        room_id: room.clone(),
        status: "shutting_down".into(),
        error: None,
        result: None,
        created_ms: 1,
    };
    store.put_room_deletion(&deletion).await.expect("record");
    deletion.status = "complete".into();
    deletion.result = Some("{}".into());
    store.put_room_deletion(&deletion).await.expect("update");
    assert_eq!(store.room_deletion("d1").await.expect("read"), Some(deletion.clone()));
    assert_eq!(store.room_deletions(&room).await.expect("read"), vec![deletion]);

    store.purge_room(&room).await.expect("purge");
    assert!(store.get_room(&room).await.expect("read").is_none());
    assert!(store.get_event(&super::eid("$create-doomed")).await.expect("read").is_none(), "events go");
    assert!(
        store.get_event(&super::eid("$leave-doomed")).await.expect("read").is_some(),
        "an event still queued for another server stays until it is sent"
    );
    assert!(store.room_members(&room, None).await.expect("members").is_empty());
    assert!(store.rooms_for_user(&uid("@a:test")).await.expect("rooms").iter().all(|r| r.room_id != room));
    assert!(store.get_room(&rid("!kept:test")).await.expect("read").is_some(), "other rooms stay");
    assert_eq!(store.room_blocked_by(&room).await.expect("read"), Some(uid("@admin:test")), "the block stays");
    assert_eq!(store.room_deletions(&room).await.expect("read").len(), 1);
    store.unblock_room(&room).await.expect("unblock");
    assert_eq!(store.room_blocked_by(&room).await.expect("read"), None);
}

/// An application service's outbox: events queued with the event's write, ephemeral events and
/// to-device messages beside them, each queuing the service's job; a transaction's entries are
/// recorded so a retry is the same, whatever was queued meanwhile; accepted ones go.
pub async fn appservice_outboxes_and_their_transactions(url: String) {
    let store = open_store(&url).await;
    let mut ev = super::event("!r:test", "$create-r", "m.room.create", Some(""), &[]);
    ev.appservices = vec!["bridge".into(), "other".into()];
    super::persisted(&store, ev).await;
    let jobs = store.jobs_keyed("appservice ").await.expect("jobs");
    let keys: Vec<String> = jobs.iter().filter_map(|j| j.dedupe_key.clone()).collect();
    assert_eq!(keys, ["appservice bridge", "appservice other"], "one sender job per service");
    store
        .queue_appservice_items("bridge", &[AppserviceItem::Ephemeral("{\"type\":\"m.typing\"}".into())], 5)
        .await
        .expect("queue");
    assert_eq!(store.jobs_keyed("appservice ").await.expect("jobs").len(), 2, "the waiting job is reused");
    let entries = store.appservice_outbox("bridge", 10).await.expect("outbox");
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].event_id, Some(super::eid("$create-r")));
    assert_eq!(entries[1].ephemeral.as_deref(), Some("{\"type\":\"m.typing\"}"));
    assert_eq!(store.appservice_txn("bridge").await.expect("txn"), None);
    let ids: Vec<i64> = entries.iter().map(|e| e.id).collect();
    store.start_appservice_txn("bridge", "t1", "{\"events\":[]}", &ids).await.expect("start");
    store
        .queue_appservice_items("bridge", &[AppserviceItem::ToDevice("{\"type\":\"m.x\"}".into())], 6)
        .await
        .expect("queue");
    let (txn_id, body) = store.appservice_txn("bridge").await.expect("txn").expect("in flight");
    assert_eq!((txn_id.as_str(), body.as_str()), ("t1", "{\"events\":[]}"), "the same transaction");
    assert_eq!(store.appservice_outbox_len("bridge").await.expect("len"), 3);
    store.finish_appservice_txn("bridge").await.expect("finish");
    assert_eq!(store.appservice_txn("bridge").await.expect("txn"), None);
    let left = store.appservice_outbox("bridge", 10).await.expect("outbox");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].to_device.as_deref(), Some("{\"type\":\"m.x\"}"));
    assert_eq!(store.appservice_outbox_len("other").await.expect("len"), 1, "per service");
}

/// An application service's device-list position (MSC3202) starts unset and moves where told.
pub async fn appservice_device_list_positions(url: String) {
    let store = open_store(&url).await;
    assert_eq!(store.appservice_device_list_pos("bridge").await.expect("read"), None);
    store.set_appservice_device_list_pos("bridge", StreamPos(5)).await.expect("set");
    store.set_appservice_device_list_pos("bridge", StreamPos(9)).await.expect("move");
    assert_eq!(store.appservice_device_list_pos("bridge").await.expect("read"), Some(StreamPos(9)));
    assert_eq!(store.appservice_device_list_pos("other").await.expect("read"), None, "per service");
    store.queue_appservice_items("bridge", &[AppserviceItem::Wake], 1).await.expect("wake");
    let entries = store.appservice_outbox("bridge", 10).await.expect("outbox");
    assert_eq!(entries.len(), 1);
    assert!(entries[0].event_id.is_none() && entries[0].ephemeral.is_none() && entries[0].to_device.is_none());
}
