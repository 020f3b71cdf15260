//! "Changes since" reads that the change marks let answer without the database: a message marks
//! none of the kinds they ask about, and every write of a kind is still read back after it.

use myelin_storage::*;
use ruma::events::receipt::{ReceiptThread, ReceiptType};

use super::{another_process, did, eid, event, member_event, open_store, persisted, rid, room_with, uid};

const KINDS: [Change; 7] = Change::ASKED;

pub async fn quiet_kinds_are_skipped_and_every_write_of_a_kind_is_still_read(url: String) {
    let s = open_store(&url).await;
    let start = s.stream_head();
    let last = room_with(&s, "!c:test", &["@a:test", "@b:test"]).await;
    let (a, b) = (uid("@a:test"), uid("@b:test"));
    let joined = s.stream_head();
    let message = persisted(&s, event("!c:test", "$m1", "m.room.message", None, &[&last])).await;
    for kind in KINDS {
        assert!(!s.may_have_changed(kind, joined), "{kind:?} after a message");
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
        assert!(!s.may_have_changed(kind, head), "{kind:?} at the head");
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

/// Waits until `store`'s head reaches `pos` (PostgreSQL: the writer's NOTIFY).
async fn hear_of(store: &std::sync::Arc<dyn Store>, pos: StreamPos) {
    let mut watch = store.watch_stream_head();
    tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while *watch.borrow_and_update() < pos {
            watch.changed().await.expect("watch");
        }
    })
    .await
    .expect("the head reaches the other process");
}

/// A to-device message sent through one process is read by a sync on another, however that
/// process heard of the head: a process that moved its head without learning what kind the
/// positions were would skip the read, and the sync's next token would step over the message for
/// good. The rounds wait for the writer's NOTIFY, or race it with the other process's own commit
/// or a refresh (whichever moves the head first must bring the marks; `slow_bus_learns_...` in
/// `main.rs` holds the NOTIFYs back so that the commit and the refresh surely come first). And a
/// message alone marks nothing there either (the marks are exact on every process).
pub async fn another_process_learns_each_kind_of_change_with_the_head(url: String) {
    learns_each_kind_with_the_head(url, false).await
}

/// The rounds of [`another_process_learns_each_kind_of_change_with_the_head`]; `slow_bus`: the
/// NOTIFYs are held back (`MYELIN_BUS_DELAY_MS`), and the rounds check that the head moved by
/// the way they name before the NOTIFY came.
pub async fn learns_each_kind_with_the_head(url: String, slow_bus: bool) {
    let first = open_store(&url).await;
    let second = another_process(&url, &first).await;
    let last = room_with(&first, "!k:test", &["@a:test", "@b:test"]).await;
    let (a, b) = (uid("@a:test"), uid("@b:test"));
    hear_of(&second, persisted(&first, event("!k:test", "$k0", "m.room.message", None, &[&last])).await).await;
    let mut parent = "$k0".to_owned();
    for round in 0..12 {
        let token = second.stream_head();
        // Only messages since `token`: nothing a sync asks about, on either process.
        let id = format!("$k{}", round + 1);
        let message = persisted(&first, event("!k:test", &id, "m.room.message", None, &[&parent])).await;
        parent = id;
        hear_of(&second, message).await;
        for kind in KINDS {
            assert!(!second.may_have_changed(kind, token), "round {round}: {kind:?} after a message");
        }
        let token = second.stream_head();
        let txn_id = format!("t{round}");
        let sent = first
            .send_to_device(ToDeviceSend {
                sender: a.clone(),
                sender_device: did("A1"),
                txn_id: txn_id.into(),
                event_type: "m.room_key_request".into(),
                messages: vec![(b.clone(), did("PHONE"), format!("{{\"round\":{round}}}"))],
                now_ms: 1,
            })
            .await
            .expect("send");
        assert!(sent);
        let written = first.written_head();
        if slow_bus && round % 3 != 0 {
            assert!(second.stream_head() < written, "round {round}: the NOTIFY is held back");
        }
        // The second process moves its head past the message in turn by each way it has.
        match round % 3 {
            0 => hear_of(&second, written).await,
            1 => {
                // Its own write commits after the message: its writer reads a head past both.
                persisted(&second, event("!k:test", &format!("$s{round}"), "m.room.message", None, &[&parent])).await;
                parent = format!("$s{round}");
            }
            _ => {
                second.refresh_stream_head().await.expect("refresh");
            }
        }
        let now = second.stream_head();
        assert!(now >= written, "round {round}: the head passed the message");
        assert!(second.may_have_changed(Change::ToDevice, token), "round {round}: to-device after {token:?}");
        assert!(!second.may_have_changed(Change::Receipt, token), "round {round}: no receipt after {token:?}");
        let inbox = second.to_device_messages(&b, &did("PHONE"), token, now, 10).await.expect("inbox");
        assert_eq!(inbox.len(), 1, "round {round}: the message is read on the other process");
    }
}
