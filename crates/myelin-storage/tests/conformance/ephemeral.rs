//! Account data, filters, receipts and unread counts.

use myelin_storage::*;
use ruma::events::receipt::{ReceiptThread, ReceiptType};
use ruma::{OwnedRoomId, OwnedUserId};

use super::{eid, event, member_event, open_store, persisted, pos, rid, uid};

pub async fn account_data_receipts_and_unread_counts(url: String) {
    let s = open_store(&url).await;
    let a = uid("@a:test");
    let p1 = s.put_account_data(&a, None, "m.direct", "{}".into()).await.expect("put");
    let p2 = s.put_account_data(&a, None, "m.direct", r#"{"x":1}"#.into()).await.expect("put");
    assert!(p2 > p1);
    let changed = s.account_data_since(&a, p1, s.stream_head()).await.expect("since");
    assert_eq!(changed.len(), 1);
    assert_eq!((changed[0].room_id.as_ref(), changed[0].content.as_str()), (None, r#"{"x":1}"#));
    assert_eq!(s.get_account_data(&a, None, "m.direct").await.expect("get").as_deref(), Some(r#"{"x":1}"#));

    let room = rid("!u:test");
    persisted(&s, event("!u:test", "$c", "m.room.create", Some(""), &[])).await;
    let p3 = s.put_account_data(&a, Some(&room), "m.tag", r#"{"tags":{}}"#.into()).await.expect("put");
    assert!(s.get_account_data(&a, None, "m.tag").await.expect("get").is_none(), "room data is not global");
    assert_eq!(s.get_account_data(&a, Some(&room), "m.tag").await.expect("get").as_deref(), Some(r#"{"tags":{}}"#));
    let all = s.account_data_since(&a, pos(0), s.stream_head()).await.expect("since");
    assert_eq!(
        all.iter().map(|r| (r.room_id.clone(), r.stream_pos)).collect::<Vec<_>>(),
        [(None, p2), (Some(room.clone()), p3)]
    );
    assert!(s.account_data_since(&uid("@b:test"), pos(0), s.stream_head()).await.expect("since").is_empty());

    let mut positions = Vec::new();
    for i in 0..3 {
        let mut ev = event("!u:test", &format!("$n{i}"), "m.room.message", None, &[]);
        ev.push_actions = vec![PushActionRecord {
            user_id: uid("@b:test"),
            highlight: i == 2,
            thread_id: None,
            actions: r#"["notify"]"#.to_owned(),
        }];
        positions.push(persisted(&s, ev).await);
    }
    let b = uid("@b:test");
    assert_eq!(s.unread_counts(&b, &room, s.stream_head()).await.expect("counts"), (3, 1));
    assert_eq!(s.unread_counts(&b, &room, positions[1]).await.expect("counts"), (2, 0), "up to a position");
    let receipt = |event: &str| ReceiptRecord {
        room_id: room.clone(),
        receipt_type: ReceiptType::Read,
        user_id: uid("@b:test"),
        thread: ReceiptThread::Unthreaded,
        event_id: eid(event),
        ts: 1,
    };
    assert!(s.put_receipt(receipt("$n1"), positions[1]).await.expect("receipt").is_some());
    assert_eq!(s.unread_counts(&b, &room, s.stream_head()).await.expect("counts"), (1, 1));
    assert!(
        s.put_receipt(receipt("$n0"), positions[0]).await.expect("receipt").is_none(),
        "older receipts are ignored"
    );
}

/// The room-wide read gives each joined member what their own read gives: after their read
/// receipt or, without one, their join; up to a position; invited members are not in it.
pub async fn room_wide_unread_counts_are_each_members_own(url: String) {
    let s = open_store(&url).await;
    let room = rid("!w:test");
    persisted(&s, event("!w:test", "$c", "m.room.create", Some(""), &[])).await;
    // Someone notified before anyone joined: not unread for those who join later.
    let mut early = event("!w:test", "$early", "m.room.message", None, &[]);
    early.push_actions = ["@b:test", "@c:test"]
        .iter()
        .map(|u| PushActionRecord { user_id: uid(u), highlight: false, thread_id: None, actions: "[]".into() })
        .collect();
    persisted(&s, early).await;
    for user in ["@b:test", "@c:test", "@e:test"] {
        persisted(&s, member_event("!w:test", &format!("$j{user}"), user, Membership::Join, &[])).await;
    }
    persisted(&s, member_event("!w:test", "$id", "@d:test", Membership::Invite, &[])).await;
    let mut positions = Vec::new();
    for i in 0..4 {
        let mut ev = event("!w:test", &format!("$m{i}"), "m.room.message", None, &[]);
        ev.push_actions = ["@b:test", "@c:test", "@d:test"]
            .iter()
            .map(|u| PushActionRecord {
                user_id: uid(u),
                highlight: i == 3 && *u == "@c:test",
                thread_id: None,
                actions: "[]".into(),
            })
            .collect();
        positions.push(persisted(&s, ev).await);
    }
    let read = ReceiptRecord {
        room_id: room.clone(),
        receipt_type: ReceiptType::Read,
        user_id: uid("@b:test"),
        thread: ReceiptThread::Unthreaded,
        event_id: eid("$m1"),
        ts: 1,
    };
    s.put_receipt(read, positions[1]).await.expect("receipt");
    let counts = |wide: &[MemberUnread]| {
        wide.iter().map(|m| (m.user_id.clone(), m.notifications, m.highlights)).collect::<Vec<_>>()
    };
    for until in [s.stream_head(), positions[2]] {
        let wide = s.room_unread_counts(&room, until, 100, None).await.expect("room-wide");
        let mut own = Vec::new();
        for user in ["@b:test", "@c:test", "@e:test"] {
            let (n, h) = s.unread_counts(&uid(user), &room, until).await.expect("own");
            own.push((uid(user), n, h));
        }
        assert_eq!(counts(&wide), own, "at {until:?}: joined members in join order, as each one's own read");
    }
    let wide = s.room_unread_counts(&room, s.stream_head(), 100, None).await.expect("room-wide");
    assert_eq!(
        wide.iter().map(|m| (m.user_id.as_str(), m.notifications, m.highlights)).collect::<Vec<_>>(),
        [("@b:test", 2, 0), ("@c:test", 4, 1), ("@e:test", 0, 0)],
        "b read up to $m1; c nothing (the highlight is $m3); e was never notified"
    );
    // Where each count starts: b's receipt, c's and e's joins.
    assert_eq!(wide[0].from, positions[1]);
    assert!(wide[1].from < positions[0] && wide[2].from < positions[0] && wide[1].from < wide[2].from);
    // Only what came after a position: added to what was read up to it, the same counts.
    let before = s.room_unread_counts(&room, positions[2], 100, None).await.expect("room-wide");
    let after = s.room_unread_counts(&room, s.stream_head(), 100, Some(positions[2])).await.expect("since");
    let added: Vec<(OwnedUserId, u64, u64)> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| {
            assert_eq!((&b.user_id, b.from), (&a.user_id, a.from), "the same members, counting from the same place");
            (a.user_id.clone(), b.notifications + a.notifications, b.highlights + a.highlights)
        })
        .collect();
    assert_eq!(added, counts(&wide));
    assert_eq!(after.iter().map(|m| m.notifications).collect::<Vec<_>>(), [1, 1, 0], "only $m3");
    let first = s.room_unread_counts(&room, s.stream_head(), 1, None).await.expect("room-wide");
    assert_eq!(first.iter().map(|m| m.user_id.as_str()).collect::<Vec<_>>(), ["@b:test"], "the first to join");
}

pub async fn receipts_are_read_per_room_and_thread(url: String) {
    let s = open_store(&url).await;
    let (one, two) = (rid("!r1:test"), rid("!r2:test"));
    for room in ["!r1:test", "!r2:test"] {
        persisted(&s, event(room, &format!("$c{room}"), "m.room.create", Some(""), &[])).await;
        persisted(&s, event(room, &format!("$m{room}"), "m.room.message", None, &[])).await;
    }
    let start = s.stream_head();
    let receipt = |room: &OwnedRoomId, kind: ReceiptType, thread: ReceiptThread| ReceiptRecord {
        room_id: room.clone(),
        receipt_type: kind,
        user_id: uid("@b:test"),
        thread,
        event_id: eid(&format!("$m{room}")),
        ts: 42,
    };
    let at = pos(100);
    s.put_receipt(receipt(&one, ReceiptType::Read, ReceiptThread::Unthreaded), at).await.expect("receipt");
    s.put_receipt(receipt(&one, ReceiptType::Read, ReceiptThread::Main), at).await.expect("receipt");
    s.put_receipt(receipt(&one, ReceiptType::Read, ReceiptThread::Thread(eid("$root"))), at).await.expect("receipt");
    s.put_receipt(receipt(&one, ReceiptType::ReadPrivate, ReceiptThread::Unthreaded), at).await.expect("receipt");
    s.put_receipt(receipt(&two, ReceiptType::Read, ReceiptThread::Unthreaded), at).await.expect("receipt");
    assert!(
        s.put_receipt(receipt(&two, ReceiptType::Read, ReceiptThread::Unthreaded), at)
            .await
            .expect("receipt")
            .is_none(),
        "the same event again is no news"
    );

    let mut got = s.receipts_since(std::slice::from_ref(&one), start, s.stream_head()).await.expect("receipts");
    got.sort_by_key(|r| (r.receipt_type.to_string(), format!("{:?}", r.thread)));
    let shapes: Vec<(String, ReceiptThread)> =
        got.iter().map(|r| (r.receipt_type.to_string(), r.thread.clone())).collect();
    assert_eq!(shapes.len(), 4, "{got:?}");
    assert!(shapes.contains(&("m.read".into(), ReceiptThread::Thread(eid("$root")))));
    assert!(shapes.contains(&("m.read".into(), ReceiptThread::Main)));
    assert!(shapes.contains(&("m.read.private".into(), ReceiptThread::Unthreaded)));
    assert!(got.iter().all(|r| r.room_id == one && r.ts == 42 && r.event_id == eid("$m!r1:test")));
    let both = s.receipts_since(&[one.clone(), two.clone()], start, s.stream_head()).await.expect("receipts");
    assert_eq!(both.len(), 5);
    assert!(s.receipts_since(&[two], s.stream_head(), s.stream_head()).await.expect("receipts").is_empty());
}

pub async fn filters_are_numbered_per_user(url: String) {
    let s = open_store(&url).await;
    let (a, b) = (uid("@a:test"), uid("@b:test"));
    let f = s.create_filter(&a, "{}".into()).await.expect("filter");
    let g = s.create_filter(&a, "{\"a\":1}".into()).await.expect("filter");
    assert_eq!((f, g), (0, 1));
    assert_eq!(s.create_filter(&b, "{}".into()).await.expect("filter"), 0, "numbered per user");
    assert_eq!(s.get_filter(&a, g).await.expect("get").as_deref(), Some("{\"a\":1}"));
    assert!(s.get_filter(&a, 7).await.expect("get").is_none());
    // Concurrent creations get distinct numbers.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (s, a) = (s.clone(), a.clone());
        tasks.push(tokio::spawn(async move { s.create_filter(&a, "{}".into()).await.expect("filter") }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.expect("task"));
    }
    ids.sort_unstable();
    assert_eq!(ids, (2..12).collect::<Vec<_>>());
}

/// Read-modify-write of account data (push rules): a write based on a stale read is refused.
pub async fn account_data_compare_and_set(url: String) {
    let s = open_store(&url).await;
    let other = super::another_process(&url, &s).await;
    let a = uid("@a:test");
    assert!(s.account_data_entry(&a, None, "m.push_rules").await.expect("get").is_none());
    let first = s.put_account_data_if(&a, None, "m.push_rules", "1".into(), None).await.expect("put").expect("written");
    assert!(
        other.put_account_data_if(&a, None, "m.push_rules", "x".into(), None).await.expect("put").is_none(),
        "it exists now"
    );
    let (content, at) = other.account_data_entry(&a, None, "m.push_rules").await.expect("get").expect("exists");
    assert_eq!((content.as_str(), at), ("1", first));
    let second =
        other.put_account_data_if(&a, None, "m.push_rules", "2".into(), Some(at)).await.expect("put").expect("written");
    assert!(
        s.put_account_data_if(&a, None, "m.push_rules", "3".into(), Some(first)).await.expect("put").is_none(),
        "stale read"
    );
    assert_eq!(s.account_data_entry(&a, None, "m.push_rules").await.expect("get"), Some(("2".into(), second)));
}
