//! Pushers, their delivery positions, and the push jobs event writes queue for them.

use myelin_storage::*;

use super::{did, eid, event, open_store, persisted, pos, rid, room_with, uid};

fn pusher(user: &str, app_id: &str, pushkey: &str, created_ms: u64) -> PusherRecord {
    PusherRecord {
        user_id: uid(user),
        app_id: app_id.into(),
        pushkey: pushkey.into(),
        kind: "http".into(),
        app_display_name: "App".into(),
        device_display_name: "Phone".into(),
        profile_tag: None,
        lang: "en".into(),
        data: r#"{"url":"https://push.example/_matrix/push/v1/notify"}"#.into(),
        device_id: Some(did("PHONE")),
        created_ms,
        pushed_pos: pos(0),
    }
}

/// Pushers are listed per user; setting one again replaces it and keeps its position; without
/// `append` another user's pusher with the same app id and pushkey goes; an event write that
/// notifies a user with a pusher queues one push job for them (none for users without), and
/// the pending pushes and badge count are what they have not read.
pub async fn pushers_positions_and_push_jobs(url: String) {
    let store = open_store(&url).await;
    store.put_pusher(&pusher("@a:test", "app", "key-a", 1), false).await.expect("put");
    store.put_pusher(&pusher("@b:test", "app", "key-b", 2), false).await.expect("put");
    store.put_pusher(&pusher("@b:test", "other", "key-b2", 3), true).await.expect("put");
    assert_eq!(store.pushers(&uid("@a:test")).await.expect("list").len(), 1);
    assert_eq!(store.pushers(&uid("@b:test")).await.expect("list").len(), 2);

    let last = room_with(&store, "!r:test", &["@a:test", "@b:test", "@c:test"]).await;
    let mut message = event("!r:test", "$m1", "m.room.message", None, &[&last]);
    message.push_actions = ["@a:test", "@c:test"]
        .iter()
        .map(|u| PushActionRecord {
            user_id: uid(u),
            highlight: *u == "@a:test",
            thread_id: None,
            actions: r#"["notify",{"set_tweak":"sound","value":"ding"}]"#.to_owned(),
        })
        .collect();
    message.origin_server_ts = 4_000_000_000_000; // far in the future, as another server may say
    let p1 = persisted(&store, message).await;
    let jobs = store.jobs().await.expect("jobs");
    let push_jobs: Vec<_> = jobs.iter().filter(|j| j.kind == PUSH_JOB).collect();
    assert_eq!(push_jobs.len(), 1, "only @a has a pusher: {jobs:?}");
    assert_eq!(push_jobs[0].dedupe_key.as_deref(), Some(push_job_key(&uid("@a:test")).as_str()));
    assert_eq!(push_jobs[0].run_at_ms, 0, "due at once, whatever the event's own time");
    assert_eq!(push_jobs[0].payload, "@a:test", "the job names its user");
    let mut second = event("!r:test", "$m2", "m.room.message", None, &["$m1"]);
    second.push_actions = vec![PushActionRecord {
        user_id: uid("@a:test"),
        highlight: false,
        thread_id: None,
        actions: r#"["notify"]"#.to_owned(),
    }];
    let p2 = persisted(&store, second).await;
    assert_eq!(
        store.jobs().await.expect("jobs").iter().filter(|j| j.kind == PUSH_JOB).count(),
        1,
        "one job per user however many events"
    );

    let pending = store.pending_pushes(&uid("@a:test"), pos(0), 10).await.expect("pending");
    assert_eq!(
        pending,
        vec![
            PendingPush {
                room_id: rid("!r:test"),
                event_id: eid("$m1"),
                stream_pos: p1,
                highlight: true,
                actions: Some(r#"["notify",{"set_tweak":"sound","value":"ding"}]"#.to_owned()),
            },
            PendingPush {
                room_id: rid("!r:test"),
                event_id: eid("$m2"),
                stream_pos: p2,
                highlight: false,
                actions: Some(r#"["notify"]"#.to_owned()),
            },
        ]
    );
    assert_eq!(store.pending_pushes(&uid("@a:test"), p1, 10).await.expect("pending").len(), 1);
    assert_eq!(store.pending_pushes(&uid("@a:test"), pos(0), 1).await.expect("pending").len(), 1, "the limit");
    assert_eq!(store.unread_notification_total(&uid("@a:test")).await.expect("total"), 2);
    let receipt = ReceiptRecord {
        room_id: rid("!r:test"),
        receipt_type: ruma::events::receipt::ReceiptType::Read,
        user_id: uid("@a:test"),
        thread: ruma::events::receipt::ReceiptThread::Unthreaded,
        event_id: eid("$m1"),
        ts: 1,
    };
    store.put_receipt(receipt, p1).await.expect("receipt");
    assert_eq!(store.unread_notification_total(&uid("@a:test")).await.expect("total"), 1, "read up to $m1");

    let listed = store.notifications(&uid("@a:test"), None, 10, false).await.expect("notifications");
    assert_eq!(
        listed.iter().map(|n| (n.event_id.as_str(), n.highlight, n.read)).collect::<Vec<_>>(),
        vec![("$m2", false, false), ("$m1", true, true)],
        "newest first, read up to the receipt"
    );
    let older = store.notifications(&uid("@a:test"), Some(p2), 10, false).await.expect("notifications");
    assert_eq!(older.len(), 1, "paged before $m2");
    let highlights = store.notifications(&uid("@a:test"), None, 10, true).await.expect("notifications");
    assert_eq!(highlights.len(), 1);
    assert_eq!(store.notifications(&uid("@a:test"), None, 1, false).await.expect("notifications").len(), 1);

    // Delivery positions move forward only, and survive the pusher being set again.
    store.set_pusher_position(&uid("@a:test"), "app", "key-a", p2).await.expect("position");
    store.set_pusher_position(&uid("@a:test"), "app", "key-a", p1).await.expect("position");
    let mut again = pusher("@a:test", "app", "key-a", 9);
    again.device_display_name = "Renamed".into();
    store.put_pusher(&again, false).await.expect("put again");
    let kept = store.pushers(&uid("@a:test")).await.expect("list");
    assert_eq!((kept[0].pushed_pos, kept[0].device_display_name.as_str()), (p2, "Renamed"));

    // The same app id and pushkey for another user, without append: it moves to them.
    store.put_pusher(&pusher("@c:test", "app", "key-a", 10), false).await.expect("put");
    assert!(store.pushers(&uid("@a:test")).await.expect("list").is_empty(), "taken over by @c");
    assert!(store.delete_pusher(&uid("@c:test"), "app", "key-a").await.expect("delete"));
    assert!(!store.delete_pusher(&uid("@c:test"), "app", "key-a").await.expect("delete"), "gone already");

    // Signing the device out removes its pushers.
    store.delete_devices(&uid("@b:test"), &[did("PHONE")]).await.expect("delete device");
    assert!(store.pushers(&uid("@b:test")).await.expect("list").is_empty(), "the device's pushers went with it");
}
