//! "Changes since" reads that the change marks let answer without the database: a message marks
//! none of the kinds they ask about, and every write of a kind is still read back after it.

use myelin_storage::*;
use ruma::events::receipt::{ReceiptThread, ReceiptType};

use super::{did, eid, event, member_event, open_store, persisted, rid, room_with, uid};

const KINDS: [Change; 7] = Change::ASKED;

pub async fn quiet_kinds_are_skipped_and_every_write_of_a_kind_is_still_read(url: String) {
    let s = open_store(&url).await;
    let start = s.stream_head();
    let last = room_with(&s, "!c:test", &["@a:test", "@b:test"]).await;
    let (a, b) = (uid("@a:test"), uid("@b:test"));
    let joined = s.stream_head();
    // SQLite sees every write; PostgreSQL processes do not tell each other what they wrote.
    let exact = url.starts_with("sqlite");
    let message = persisted(&s, event("!c:test", "$m1", "m.room.message", None, &[&last])).await;
    for kind in KINDS {
        assert_eq!(s.may_have_changed(kind, joined), !exact, "{kind:?} after a message");
    }
    assert!(s.may_have_changed(Change::Membership, start), "the joins were membership changes");

    let data = s.put_account_data(&a, None, "m.direct", "{}".into()).await.expect("put");
    assert!(s.may_have_changed(Change::AccountData, message));
    assert_eq!(s.account_data_since(&a, message, s.stream_head()).await.expect("since").len(), 1);
    assert!(s.account_data_since(&a, data, s.stream_head()).await.expect("since").is_empty());

    let receipt = ReceiptRecord {
        room_id: rid("!c:test"),
        receipt_type: ReceiptType::Read,
        user_id: b.clone(),
        thread: ReceiptThread::Unthreaded,
        event_id: eid("$m1"),
        ts: 1,
    };
    s.put_receipt(receipt, message).await.expect("receipt").expect("a new receipt");
    assert_eq!(s.receipts_since(&[rid("!c:test")], data, s.stream_head()).await.expect("receipts").len(), 1);

    let before_to_device = s.stream_head();
    let sent = s
        .send_to_device(ToDeviceSend {
            sender: a.clone(),
            sender_device: did("A1"),
            txn_id: "t1".into(),
            event_type: "m.room_key_request".into(),
            messages: vec![(b.clone(), did("PHONE"), "{}".into())],
            now_ms: 1,
        })
        .await
        .expect("send");
    assert!(sent);
    let inbox = s.to_device_messages(&b, &did("PHONE"), before_to_device, s.stream_head(), 10).await.expect("inbox");
    assert_eq!(inbox.len(), 1);

    let before_keys = s.stream_head();
    s.record_device_list_change(&b).await.expect("change");
    assert_eq!(s.device_list_changes(before_keys, s.stream_head()).await.expect("changes"), std::slice::from_ref(&b));

    let before_presence = s.stream_head();
    s.put_presence(PresenceRecord {
        user_id: b.clone(),
        state: "online".into(),
        status_msg: None,
        last_active_ms: 1,
        alive_until_ms: 2,
        local: true,
        stream_pos: StreamPos::ZERO,
    })
    .await
    .expect("presence");
    assert_eq!(s.presence_changes_seen_by(&a, before_presence, s.stream_head(), 10).await.expect("seen").len(), 1);

    // A membership is every kind of news at once (it may bring sticky events and device lists).
    let before_join = s.stream_head();
    persisted(&s, member_event("!c:test", "$join-c", "@c:test", Membership::Join, &["$m1"])).await;
    for kind in KINDS {
        assert!(s.may_have_changed(kind, before_join), "{kind:?} after a join");
    }
    let changes = s.membership_changes(&rid("!c:test"), before_join, s.stream_head()).await.expect("changes");
    assert_eq!(changes.iter().map(|m| m.user_id.to_string()).collect::<Vec<_>>(), ["@c:test"]);
    // Nothing after the head, whatever the kind.
    let head = s.stream_head();
    for kind in KINDS {
        assert_eq!(s.may_have_changed(kind, head), !exact, "{kind:?} at the head");
    }
}

pub async fn a_reopened_store_treats_everything_before_its_head_as_news(url: String) {
    let s = open_store(&url).await;
    room_with(&s, "!r:test", &["@a:test"]).await;
    let head = s.stream_head();
    drop(s);
    let again = open_store(&url).await;
    for kind in KINDS {
        assert!(again.may_have_changed(kind, StreamPos(head.get() - 1)), "{kind:?} before the head");
    }
}
