//! The event persist path, positions, state groups and history reads.

use std::collections::HashSet;

use myelin_storage::*;
use ruma::events::relation::RelationType;
use ruma::{OwnedEventId, events::StateEventType};

use super::{
    another_process, did, eid, event, member_event, open, open_store, persisted, pos, rid, soon, state_type, uid, user,
};

fn ids(events: &[StoredEvent]) -> Vec<String> {
    events.iter().map(|e| e.event_id.to_string()).collect()
}

pub async fn events_positions_state_and_extremities(url: String) {
    let s = open_store(&url).await;
    let room = rid("!r:test");
    let head0 = s.stream_head();
    let p1 = persisted(&s, event("!r:test", "$create", "m.room.create", Some(""), &[])).await;
    let p2 = persisted(&s, member_event("!r:test", "$join", "@a:test", Membership::Join, &["$create"])).await;
    let p3 = persisted(&s, event("!r:test", "$msg", "m.room.message", None, &["$join"])).await;
    assert!(head0 < p1 && p1 < p2 && p2 < p3, "positions increase: {p1} {p2} {p3}");
    // The head may pass positions that were reserved but never used (PostgreSQL's blocks).
    assert!(s.stream_head() >= p3, "the head covers what committed");
    assert!(s.written_head() >= p3, "this process wrote up to there");
    assert!(s.refresh_stream_head().await.expect("refresh") >= p3);

    assert_eq!(ids(&s.forward_extremities(&room).await.expect("fx")), ["$msg"]);
    let stored = s.get_room(&room).await.expect("room").expect("exists");
    assert_eq!((stored.room_version.as_str(), stored.creator.as_str()), ("12", "@a:test"));
    assert_eq!(stored.last_event_pos, p3);
    assert!(s.get_room(&rid("!nope:test")).await.expect("room").is_none());

    let state: HashSet<(StateEventType, String, OwnedEventId)> =
        s.current_state_ids(&room).await.expect("state").into_iter().collect();
    assert_eq!(state.len(), 2);
    assert!(state.contains(&(state_type("m.room.member"), "@a:test".into(), eid("$join"))));
    let member = s.current_state_event(&room, &state_type("m.room.member"), "@a:test").await.expect("event");
    assert_eq!(member.map(|e| e.event_id), Some(eid("$join")));
    assert!(s.current_state_event(&room, &state_type("m.room.topic"), "").await.expect("event").is_none());

    let back = s.room_events(&room, p3, None, Direction::Backward, 10).await.expect("back");
    assert_eq!(back.iter().map(|e| e.stream_pos).collect::<Vec<_>>(), vec![p3, p2, p1]);
    let fwd = s.room_events(&room, p1, None, Direction::Forward, 10).await.expect("fwd");
    assert_eq!(fwd.iter().map(|e| e.stream_pos).collect::<Vec<_>>(), vec![p2, p3]);
    let window = s.room_events(&room, p3, Some(p1), Direction::Backward, 1).await.expect("window");
    assert_eq!(ids(&window), ["$msg"], "newest first, limited, after `to`");
    let window = s.room_events(&room, p1, Some(p2), Direction::Forward, 10).await.expect("window");
    assert_eq!(ids(&window), ["$join"], "forward up to `to`");

    // The message's state is the state after the member event.
    let msg = s.get_event(&eid("$msg")).await.expect("get").expect("exists");
    assert_eq!(
        (msg.event_type.to_string(), msg.sender.as_str(), msg.state_key.as_deref()),
        ("m.room.message".into(), "@a:test", None)
    );
    assert_eq!(msg.state_before, msg.state_after);
    let group = s.state_group(msg.state_after.expect("group")).await.expect("group");
    assert_eq!(group.len(), 2);
    assert_eq!(
        s.state_group_at(&room, p1).await.expect("at"),
        s.get_event(&eid("$create")).await.expect("get").expect("exists").state_after
    );
    assert_eq!(s.state_group_at(&room, p3).await.expect("at"), msg.state_after);

    // Many at once, in the order asked, missing ones left out.
    let many = s.get_events(&[eid("$msg"), eid("$missing"), eid("$create")]).await.expect("many");
    assert_eq!(ids(&many), ["$msg", "$create"]);
    assert!(s.get_events(&[]).await.expect("none").is_empty());
}

pub async fn long_state_chains_resolve_through_snapshots(url: String) {
    let s = open_store(&url).await;
    let room = "!chain:test";
    persisted(&s, event(room, "$c", "m.room.create", Some(""), &[])).await;
    let mut prev = "$c".to_owned();
    // 250 state changes on 30 keys: crosses two delta-chain snapshots.
    for i in 0..250 {
        let id = format!("$s{i}");
        let key = format!("k{}", i % 30);
        persisted(&s, event(room, &id, "x.state", Some(&key), &[&prev])).await;
        prev = id;
    }
    let last = s.get_event(&eid(&prev)).await.expect("get").expect("exists");
    let state: HashSet<(StateEventType, String, OwnedEventId)> =
        s.state_group(last.state_after.expect("group")).await.expect("state").into_iter().collect();
    let current: HashSet<(StateEventType, String, OwnedEventId)> =
        s.current_state_ids(&rid(room)).await.expect("current").into_iter().collect();
    assert_eq!(state, current, "resolved state group equals materialised current state");
    assert_eq!(state.len(), 31);
    assert!(state.contains(&(state_type("x.state"), "k9".into(), eid("$s249"))));
    assert!(state.contains(&(state_type("x.state"), "k10".into(), eid("$s220"))));
}

pub async fn transaction_ids_make_sends_idempotent(url: String) {
    let s = open_store(&url).await;
    let room = "!t:test";
    persisted(&s, event(room, "$c", "m.room.create", Some(""), &[])).await;
    let mut first = event(room, "$m1", "m.room.message", None, &["$c"]);
    first.txn = Some((did("DEV"), "txn1".into()));
    persisted(&s, first).await;
    let mut again = event(room, "$m2", "m.room.message", None, &["$m1"]);
    again.txn = Some((did("DEV"), "txn1".into()));
    let outcome = s.persist_event(again).await.expect("persist");
    assert_eq!(outcome, PersistOutcome::DuplicateTxn { event_id: eid("$m1") });
    assert!(s.get_event(&eid("$m2")).await.expect("get").is_none(), "the duplicate was not written");
    let found = s.event_for_txn(&uid("@a:test"), &did("DEV"), "txn1".into()).await.expect("txn");
    assert_eq!(found, Some(eid("$m1")));
    let stored = s.get_event(&eid("$m1")).await.expect("get").expect("exists");
    assert_eq!(
        (stored.sender_device.as_deref(), stored.txn_id.as_ref().map(|t| t.as_str())),
        (Some(did("DEV").as_ref()), Some("txn1"))
    );
    assert!(s.event_for_txn(&uid("@a:test"), &did("OTHER"), "txn1".into()).await.expect("txn").is_none(), "per device");
}

pub async fn old_transaction_ids_are_forgotten(url: String) {
    let s = open_store(&url).await;
    let room = "!txn:test";
    persisted(&s, event(room, "$c", "m.room.create", Some(""), &[])).await;
    let mut sent = event(room, "$old", "m.room.message", None, &["$c"]);
    sent.origin_server_ts = 1_000;
    sent.txn = Some((did("DEV"), "t-old".into()));
    persisted(&s, sent).await;
    let mut sent = event(room, "$new", "m.room.message", None, &["$old"]);
    sent.origin_server_ts = 9_000;
    sent.txn = Some((did("DEV"), "t-new".into()));
    persisted(&s, sent).await;
    assert_eq!(s.delete_txn_ids_before(5_000).await.expect("cleanup"), 1);
    let alice = uid("@a:test");
    assert!(s.event_for_txn(&alice, &did("DEV"), "t-old".into()).await.expect("txn").is_none());
    assert_eq!(s.event_for_txn(&alice, &did("DEV"), "t-new".into()).await.expect("txn"), Some(eid("$new")));
}

pub async fn concurrent_writes_get_distinct_ordered_positions(url: String) {
    let s = open_store(&url).await;
    for r in 0..4 {
        persisted(&s, event(&format!("!c{r}:test"), &format!("$create{r}"), "m.room.create", Some(""), &[])).await;
    }
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let room = format!("!c{}:test", i % 4);
            persisted(&s, event(&room, &format!("$e{i}"), "m.room.message", None, &[])).await
        }));
    }
    let mut positions = Vec::new();
    for t in tasks {
        positions.push(t.await.expect("task"));
    }
    let unique: HashSet<_> = positions.iter().collect();
    assert_eq!(unique.len(), 200, "every write got its own position");
    assert!(s.stream_head() >= *positions.iter().max().expect("max"));
}

pub async fn a_failing_write_does_not_poison_its_batch(url: String) {
    let s = open_store(&url).await;
    s.create_user(user("@dup:test")).await.expect("create");
    let mut tasks = Vec::new();
    for i in 0..50 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let id = if i % 5 == 0 { "@dup:test".to_owned() } else { format!("@u{i}:test") };
            s.create_user(user(&id)).await
        }));
    }
    let mut conflicts = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(()) => {}
            Err(StorageError::Conflict(_)) => conflicts += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(conflicts, 10);
    for i in (0..50).filter(|i| i % 5 != 0) {
        assert!(s.get_user(&uid(&format!("@u{i}:test"))).await.expect("get").is_some(), "user {i} written");
    }
    // Stream writes too: a persist that fails (an event id taken) leaves its batch-mates alone.
    persisted(&s, event("!f:test", "$c", "m.room.create", Some(""), &[])).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = s.clone();
        let id = if i == 7 { "$c".to_owned() } else { format!("$ok{i}") };
        tasks.push(tokio::spawn(
            async move { s.persist_event(event("!f:test", &id, "m.room.message", None, &[])).await },
        ));
    }
    let mut failed = 0;
    for t in tasks {
        failed += usize::from(t.await.expect("task").is_err());
    }
    assert_eq!(failed, 1);
    assert_eq!(
        s.room_events(&rid("!f:test"), s.stream_head(), None, Direction::Backward, 100).await.expect("events").len(),
        20
    );
}

/// A write alone in its batch is its batch's last job: on PostgreSQL its writes carry the batch's
/// commit in the same round trip. When they fail, nothing of the batch commits, its reservation
/// of positions is given up, and every process's head moves on past it.
pub async fn a_lone_failing_write_commits_nothing_and_holds_no_one_back(url: String) {
    let s = open_store(&url).await;
    let other = another_process(&url, &s).await;
    let room = "!lone:test";
    persisted(&s, event(room, "$c", "m.room.create", Some(""), &[])).await;
    // The event id is taken: the event's insert fails, and with it the rest of its writes.
    let mut taken = event(room, "$c", "m.room.message", None, &["$c"]);
    taken.txn = Some((did("DEV"), "lone".into()));
    assert!(s.persist_event(taken).await.is_err(), "a duplicate event id is refused");
    let txn = s.event_for_txn(&uid("@a:test"), &did("DEV"), "lone".into()).await.expect("txn");
    assert!(txn.is_none(), "the transaction id written after the failed insert is not kept");
    let extremities: Vec<OwnedEventId> =
        s.forward_extremities(&rid(room)).await.expect("extremities").into_iter().map(|e| e.event_id).collect();
    assert_eq!(extremities, [eid("$c")], "the room did not move");
    let next = persisted(&s, event(room, "$after", "m.room.message", None, &["$c"])).await;
    assert!(s.stream_head() >= next, "the writer's own head passes the failed batch");
    soon("the other process's head", || other.refresh_stream_head(), |head| head.as_ref().is_ok_and(|h| *h >= next))
        .await;
    let events = s.room_events(&rid(room), s.stream_head(), None, Direction::Backward, 10).await.expect("events");
    assert_eq!(ids(&events), ["$after", "$c"]);
    // Queued one after another, they most likely share a batch whose last job fails: the end it
    // would have carried is skipped, and the writes before it still commit.
    let mut pending: Vec<_> = (0..5)
        .map(|i| s.enqueue_event(event(room, &format!("$batch{i}"), "m.room.message", None, &["$after"])))
        .collect();
    pending.push(s.enqueue_event(event(room, "$c", "m.room.message", None, &["$after"])));
    let mut outcomes = Vec::new();
    for p in pending {
        outcomes.push(p.await.is_ok());
    }
    assert_eq!(outcomes, [true, true, true, true, true, false]);
    let events = s.room_events(&rid(room), s.stream_head(), None, Direction::Backward, 10).await.expect("events");
    assert_eq!(events.len(), 7, "the five batch-mates are kept: {:?}", ids(&events));
}

pub async fn data_survives_reopening(url: String) {
    let written;
    {
        let s = open(&url).await.expect("open");
        s.create_user(user("@keep:test")).await.expect("create");
        written = persisted(&s, event("!k:test", "$c", "m.room.create", Some(""), &[])).await;
    }
    let s = open(&url).await.expect("reopen");
    assert!(s.get_user(&uid("@keep:test")).await.expect("get").is_some());
    assert!(s.stream_head() >= written, "stream head is durable");
    assert!(s.get_event(&eid("$c")).await.expect("get").is_some());
    let next = persisted(&s, event("!k:test", "$m", "m.room.message", None, &["$c"])).await;
    assert!(next > written, "positions go on after a restart");
}

pub async fn a_stale_head_writes_nothing(url: String) {
    let s = open_store(&url).await;
    let room = "!h:test";
    persisted(&s, event(room, "$c", "m.room.create", Some(""), &[])).await;
    let mut first = event(room, "$a", "m.room.message", None, &["$c"]);
    first.expected_extremities = Some(vec![eid("$c")]);
    persisted(&s, first).await;
    // Built on the old head (another process wrote "$a" meanwhile): refused, nothing written.
    let mut stale = event(room, "$b", "m.room.message", None, &["$c"]);
    stale.expected_extremities = Some(vec![eid("$c")]);
    stale.txn = Some((did("DEV"), "t1".into()));
    assert_eq!(s.persist_event(stale).await.expect("persist"), PersistOutcome::StaleHead);
    assert!(s.get_event(&eid("$b")).await.expect("get").is_none());
    let txn = s.event_for_txn(&uid("@a:test"), &did("DEV"), "t1".into()).await.expect("txn");
    assert!(txn.is_none(), "txn id not taken");
    let mut fresh = event(room, "$b", "m.room.message", None, &["$a"]);
    fresh.expected_extremities = Some(vec![eid("$a")]);
    persisted(&s, fresh).await;
}

pub async fn timelines_relations_threads_and_history_reads(url: String) {
    let s = open_store(&url).await;
    let room = rid("!read:test");
    let r = "!read:test";
    persisted(&s, event(r, "$c", "m.room.create", Some(""), &[])).await;
    let bob_join = persisted(&s, member_event(r, "$bob-join", "@bob:test", Membership::Join, &["$c"])).await;
    let reply = |id: &str, rel: RelationType, to: &str, prev: &str| {
        let mut ev = event(r, id, "m.room.message", None, &[prev]);
        ev.relation = Some((rel, eid(to)));
        ev
    };
    persisted(&s, event(r, "$root1", "m.room.message", None, &["$bob-join"])).await;
    persisted(&s, event(r, "$root2", "m.room.message", None, &["$root1"])).await;
    let t1 = persisted(&s, reply("$t1", RelationType::Thread, "$root1", "$root2")).await;
    let t2 = persisted(&s, reply("$t2", RelationType::Thread, "$root2", "$t1")).await;
    persisted(&s, reply("$edit", RelationType::Replacement, "$root1", "$t2")).await;
    let t3 = persisted(&s, reply("$t3", RelationType::Thread, "$root1", "$edit")).await;
    let bob_leave = persisted(&s, member_event(r, "$bob-leave", "@bob:test", Membership::Leave, &["$t3"])).await;

    let all = s.relations(&eid("$root1"), None, s.stream_head(), 10).await.expect("relations");
    assert_eq!(ids(&all), ["$t3", "$edit", "$t1"], "newest first");
    let threads =
        s.relations(&eid("$root1"), Some(&RelationType::Thread), s.stream_head(), 10).await.expect("relations");
    assert_eq!(ids(&threads), ["$t3", "$t1"], "of one rel_type");
    let page = s.relations(&eid("$root1"), None, t3.prev(), 1).await.expect("relations");
    assert_eq!(ids(&page), ["$edit"], "from a position, limited");
    let stored = s.get_event(&eid("$t1")).await.expect("get").expect("exists");
    assert!(stored.redacted_by.is_none());

    let roots = s.thread_roots(&room, s.stream_head(), 10).await.expect("roots");
    let summary: Vec<(String, StreamPos)> = roots.iter().map(|(e, latest)| (e.event_id.to_string(), *latest)).collect();
    assert_eq!(summary, [("$root1".into(), t3), ("$root2".into(), t2)], "by latest reply");
    let older = s.thread_roots(&room, t2, 10).await.expect("roots");
    assert_eq!(
        older.iter().map(|(e, _)| e.event_id.to_string()).collect::<Vec<_>>(),
        ["$root2"],
        "latest reply <= from"
    );
    assert_eq!(s.thread_roots(&room, s.stream_head(), 1).await.expect("roots").len(), 1, "limit");
    assert!(t1 < t2);

    let bob = s.membership_events_for_user(&uid("@bob:test"), pos(0), s.stream_head()).await.expect("memberships");
    assert_eq!(bob.iter().map(|e| e.stream_pos).collect::<Vec<_>>(), [bob_join, bob_leave]);
    let since = s.membership_events_for_user(&uid("@bob:test"), bob_join, s.stream_head()).await.expect("memberships");
    assert_eq!(ids(&since), ["$bob-leave"]);
}

pub async fn redactions_mark_their_target(url: String) {
    let s = open_store(&url).await;
    let r = "!redact:test";
    persisted(&s, event(r, "$c", "m.room.create", Some(""), &[])).await;
    persisted(&s, event(r, "$m", "m.room.message", None, &["$c"])).await;
    let mut redaction = event(r, "$r", "m.room.redaction", None, &["$m"]);
    redaction.redacts = Some(eid("$m"));
    persisted(&s, redaction).await;
    let m = s.get_event(&eid("$m")).await.expect("get").expect("exists");
    assert_eq!(m.redacted_by, Some(eid("$r")));
    // A second redaction keeps the first mark.
    let mut again = event(r, "$r2", "m.room.redaction", None, &["$r"]);
    again.redacts = Some(eid("$m"));
    persisted(&s, again).await;
    assert_eq!(s.get_event(&eid("$m")).await.expect("get").expect("exists").redacted_by, Some(eid("$r")));
}
