//! Storage conformance suite: what every backend must do, driven through the repository traits.
//! Each test is a function of a fresh database URL, run once per backend (see the bottom): SQLite
//! in a temporary file, PostgreSQL in a new database of the test cluster.

use std::{collections::HashSet, sync::Arc};

use myelin_storage::*;

fn sqlite_db() -> String {
    let dir = std::env::temp_dir().join(format!("myelin-conformance-{}", rand::random::<u64>()));
    format!("sqlite:{}", dir.join("test.db").display())
}

/// A new database in the test cluster: `MYELIN_TEST_POSTGRES` (an admin URL), or the cluster that
/// `scripts/pg-test-cluster.sh` starts (or finds running).
async fn postgres_db() -> String {
    let admin = match std::env::var("MYELIN_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/pg-test-cluster.sh");
            let out = std::process::Command::new("bash").arg(script).output().expect("run pg-test-cluster.sh");
            assert!(out.status.success(), "pg-test-cluster.sh failed: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        }
    };
    let name = format!("conformance_{}", rand::random::<u64>());
    myelin_storage::create_database(&admin, &name).await.expect("create test database")
}

async fn open_store(url: &str) -> Arc<dyn Store> {
    open(url).await.expect("open store")
}

fn user(id: &str) -> UserRecord {
    UserRecord {
        user_id: id.into(),
        password_hash: Some("hash".into()),
        is_admin: false,
        deactivated: false,
        displayname: None,
        avatar_url: None,
        created_ms: 1,
    }
}

/// A minimal event for `room`, state if `state_key` is given.
fn event(room: &str, id: &str, event_type: &str, state_key: Option<&str>, prev: &[&str]) -> NewEvent {
    NewEvent {
        event_id: id.into(),
        room_id: room.into(),
        sender: "@a:test".into(),
        event_type: event_type.into(),
        state_key: state_key.map(Into::into),
        origin_server_ts: 1,
        depth: 1,
        json: format!(r#"{{"type":"{event_type}","content":{{}}}}"#),
        prev_events: prev.iter().map(|p| p.to_string()).collect(),
        txn: None,
        redacts: None,
        relation: None,
        membership: None,
        join_rule: None,
        new_room: (event_type == "m.room.create")
            .then(|| NewRoom { room_version: "12".into(), creator: "@a:test".into() }),
        push_actions: vec![],
        expected_extremities: None,
    }
}

async fn persisted(store: &Arc<dyn Store>, ev: NewEvent) -> StreamPos {
    match store.persist_event(ev).await.expect("persist") {
        PersistOutcome::Persisted { stream_pos } => stream_pos,
        other => panic!("expected a new event, got {other:?}"),
    }
}

async fn users_are_unique_and_round_trip(url: String) {
    let s = open_store(&url).await;
    s.create_user(user("@alice:test")).await.expect("create");
    assert!(matches!(s.create_user(user("@alice:test")).await, Err(StorageError::Conflict(_))));
    let got = s.get_user("@alice:test").await.expect("get").expect("exists");
    assert_eq!(got.password_hash.as_deref(), Some("hash"));
    assert!(s.get_user("@nobody:test").await.expect("get").is_none());
    s.deactivate_user("@alice:test").await.expect("deactivate");
    let got = s.get_user("@alice:test").await.expect("get").expect("exists");
    assert!(got.deactivated && got.password_hash.is_none());
}

async fn sessions_tokens_and_refresh(url: String) {
    let s = open_store(&url).await;
    s.create_user(user("@alice:test")).await.expect("create");
    let session = |device: &str, token: &str, refresh: Option<&str>| NewSession {
        user_id: "@alice:test".into(),
        device_id: device.into(),
        display_name: None,
        access_token: token.into(),
        expires_ms: None,
        refresh_token: refresh.map(Into::into),
        created_ms: 1,
    };
    s.create_session(session("D1", "tok1", Some("ref1"))).await.expect("session");
    let owner = s.token_owner("tok1").await.expect("lookup").expect("known");
    assert_eq!((owner.user_id.as_str(), owner.device_id.as_str()), ("@alice:test", "D1"));

    let refreshed = s.refresh_session("ref1", "tok2", "ref2", None).await.expect("refresh");
    assert_eq!(refreshed, Some(("@alice:test".into(), "D1".into())));
    assert!(s.token_owner("tok1").await.expect("lookup").is_none(), "old access token must die on refresh");
    assert!(
        s.refresh_session("ref1", "x", "y", None).await.expect("refresh").is_none(),
        "refresh tokens are single use"
    );

    // Logging in again with the same device id replaces the device's tokens.
    s.create_session(session("D1", "tok3", None)).await.expect("session");
    assert!(s.token_owner("tok2").await.expect("lookup").is_none());
    assert!(s.token_owner("tok3").await.expect("lookup").is_some());

    s.create_session(session("D2", "tok4", None)).await.expect("session");
    s.delete_devices("@alice:test", &["D1".into()]).await.expect("delete");
    assert!(s.token_owner("tok3").await.expect("lookup").is_none());
    assert_eq!(s.list_devices("@alice:test").await.expect("list").len(), 1);
    s.delete_all_devices("@alice:test", None).await.expect("delete all");
    assert!(s.token_owner("tok4").await.expect("lookup").is_none());
}

async fn events_positions_state_and_extremities(url: String) {
    let s = open_store(&url).await;
    let room = "!r:test";
    let head0 = s.stream_head();
    let p1 = persisted(&s, event(room, "$create", "m.room.create", Some(""), &[])).await;
    let mut member = event(room, "$join", "m.room.member", Some("@a:test"), &["$create"]);
    member.membership = Some(MembershipUpdate {
        user_id: "@a:test".into(),
        membership: "join".into(),
        displayname: None,
        avatar_url: None,
    });
    let p2 = persisted(&s, member).await;
    let p3 = persisted(&s, event(room, "$msg", "m.room.message", None, &["$join"])).await;
    assert!(head0 < p1 && p1 < p2 && p2 < p3, "positions increase: {p1} {p2} {p3}");
    // The head may pass positions that were reserved but never used (PostgreSQL's blocks).
    assert!(s.stream_head() >= p3, "the head covers what committed");

    let extremities: Vec<String> =
        s.forward_extremities(room).await.expect("fx").into_iter().map(|e| e.event_id).collect();
    assert_eq!(extremities, vec!["$msg".to_owned()]);

    let state: HashSet<(String, String, String)> =
        s.current_state_ids(room).await.expect("state").into_iter().collect();
    assert_eq!(state.len(), 2);
    assert!(state.contains(&("m.room.member".into(), "@a:test".into(), "$join".into())));

    let members = s.room_members(room, Some("join")).await.expect("members");
    assert_eq!(members.len(), 1);
    let rooms = s.rooms_for_user("@a:test").await.expect("rooms");
    assert_eq!(rooms[0].last_event_pos, p3, "room list sort key follows the newest event");

    let back = s.room_events(room, p3, None, Direction::Backward, 10).await.expect("back");
    assert_eq!(back.iter().map(|e| e.stream_pos).collect::<Vec<_>>(), vec![p3, p2, p1]);
    let fwd = s.room_events(room, p1, None, Direction::Forward, 10).await.expect("fwd");
    assert_eq!(fwd.iter().map(|e| e.stream_pos).collect::<Vec<_>>(), vec![p2, p3]);

    // The message's state is the state after the member event.
    let msg = s.get_event("$msg").await.expect("get").expect("exists");
    assert_eq!(msg.state_before, msg.state_after);
    let group = s.state_group(msg.state_after.expect("group")).await.expect("group");
    assert_eq!(group.len(), 2);
}

async fn long_state_chains_resolve_through_snapshots(url: String) {
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
    let last = s.get_event(&prev).await.expect("get").expect("exists");
    let state: HashSet<(String, String, String)> =
        s.state_group(last.state_after.expect("group")).await.expect("state").into_iter().collect();
    let current: HashSet<(String, String, String)> =
        s.current_state_ids(room).await.expect("current").into_iter().collect();
    assert_eq!(state, current, "resolved state group equals materialised current state");
    assert_eq!(state.len(), 31);
    assert!(state.contains(&("x.state".into(), "k9".into(), "$s249".into())));
    assert!(state.contains(&("x.state".into(), "k10".into(), "$s220".into())));
}

async fn transaction_ids_make_sends_idempotent(url: String) {
    let s = open_store(&url).await;
    let room = "!t:test";
    persisted(&s, event(room, "$c", "m.room.create", Some(""), &[])).await;
    let mut first = event(room, "$m1", "m.room.message", None, &["$c"]);
    first.txn = Some(("DEV".into(), "txn1".into()));
    persisted(&s, first).await;
    let mut again = event(room, "$m2", "m.room.message", None, &["$m1"]);
    again.txn = Some(("DEV".into(), "txn1".into()));
    let outcome = s.persist_event(again).await.expect("persist");
    assert_eq!(outcome, PersistOutcome::DuplicateTxn { event_id: "$m1".into() });
    assert!(s.get_event("$m2").await.expect("get").is_none(), "the duplicate was not written");
    assert_eq!(s.event_for_txn("@a:test", "DEV", "txn1").await.expect("txn").as_deref(), Some("$m1"));
}

async fn concurrent_writes_get_distinct_ordered_positions(url: String) {
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

async fn a_failing_write_does_not_poison_its_batch(url: String) {
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
        assert!(s.get_user(&format!("@u{i}:test")).await.expect("get").is_some(), "user {i} written");
    }
}

async fn account_data_receipts_and_unread_counts(url: String) {
    let s = open_store(&url).await;
    let p1 = s.put_account_data("@a:test", "", "m.direct", "{}".into()).await.expect("put");
    let p2 = s.put_account_data("@a:test", "", "m.direct", r#"{"x":1}"#.into()).await.expect("put");
    assert!(p2 > p1);
    let changed = s.account_data_since("@a:test", p1, s.stream_head()).await.expect("since");
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].content, r#"{"x":1}"#);

    let room = "!u:test";
    persisted(&s, event(room, "$c", "m.room.create", Some(""), &[])).await;
    let mut positions = Vec::new();
    for i in 0..3 {
        let mut ev = event(room, &format!("$n{i}"), "m.room.message", None, &[]);
        ev.push_actions = vec![PushActionRecord { user_id: "@b:test".into(), highlight: i == 2, thread_id: None }];
        positions.push(persisted(&s, ev).await);
    }
    assert_eq!(s.unread_counts("@b:test", room, s.stream_head()).await.expect("counts"), (3, 1));
    let receipt = |event: &str| ReceiptRecord {
        room_id: room.into(),
        receipt_type: "m.read".into(),
        user_id: "@b:test".into(),
        thread_id: String::new(),
        event_id: event.into(),
        ts: 1,
    };
    assert!(s.put_receipt(receipt("$n1"), positions[1]).await.expect("receipt").is_some());
    assert_eq!(s.unread_counts("@b:test", room, s.stream_head()).await.expect("counts"), (1, 1));
    assert!(
        s.put_receipt(receipt("$n0"), positions[0]).await.expect("receipt").is_none(),
        "older receipts are ignored"
    );

    let f = s.create_filter("@a:test", "{}".into()).await.expect("filter");
    let g = s.create_filter("@a:test", "{\"a\":1}".into()).await.expect("filter");
    assert_ne!(f, g);
    assert_eq!(s.get_filter("@a:test", g).await.expect("get").as_deref(), Some("{\"a\":1}"));
    assert!(s.get_filter("@b:test", g).await.expect("get").is_none(), "filters are per user");
}

async fn data_survives_reopening(url: String) {
    {
        let s = open(&url).await.expect("open");
        s.create_user(user("@keep:test")).await.expect("create");
        persisted(&s, event("!k:test", "$c", "m.room.create", Some(""), &[])).await;
    }
    let s = open(&url).await.expect("reopen");
    assert!(s.get_user("@keep:test").await.expect("get").is_some());
    assert!(s.stream_head() >= 1, "stream head is durable");
    assert!(s.get_event("$c").await.expect("get").is_some());
}

async fn a_stale_head_writes_nothing(url: String) {
    let s = open_store(&url).await;
    let room = "!h:test";
    persisted(&s, event(room, "$c", "m.room.create", Some(""), &[])).await;
    let mut first = event(room, "$a", "m.room.message", None, &["$c"]);
    first.expected_extremities = Some(vec!["$c".into()]);
    persisted(&s, first).await;
    // Built on the old head (another process wrote "$a" meanwhile): refused, nothing written.
    let mut stale = event(room, "$b", "m.room.message", None, &["$c"]);
    stale.expected_extremities = Some(vec!["$c".into()]);
    stale.txn = Some(("DEV".into(), "t1".into()));
    assert_eq!(s.persist_event(stale).await.expect("persist"), PersistOutcome::StaleHead);
    assert!(s.get_event("$b").await.expect("get").is_none());
    assert!(s.event_for_txn("@a:test", "DEV", "t1").await.expect("txn").is_none(), "txn id not taken");
    let mut fresh = event(room, "$b", "m.room.message", None, &["$a"]);
    fresh.expected_extremities = Some(vec!["$a".into()]);
    persisted(&s, fresh).await;
}

fn job(kind: &str, key: Option<&str>, run_at_ms: u64) -> NewJob {
    NewJob { kind: kind.into(), dedupe_key: key.map(Into::into), payload: "{}".into(), run_at_ms }
}

/// Jobs are claimed by one worker at a time, however many processes ask at once; a lease that
/// runs out (its worker died) lets another worker take the job; failures are retried, then kept.
async fn the_job_queue_hands_each_due_job_to_one_worker(url: String) {
    // Two handles on one database stand for two processes of a deployment.
    let first = open_store(&url).await;
    let second = if url.starts_with("postgres") { open_store(&url).await } else { first.clone() };
    for i in 0..10 {
        assert!(first.schedule_job(job("work", None, 1_000 + i), 0).await.expect("schedule"));
    }
    assert!(first.schedule_job(job("later", None, 5_000), 0).await.expect("schedule"));
    assert!(first.schedule_job(job("tick", Some("tick"), 100), 0).await.expect("schedule"));
    assert!(!second.schedule_job(job("tick", Some("tick"), 50), 0).await.expect("schedule"), "one job per key");
    assert_eq!(first.next_job_due().await.expect("due"), Some(100));

    let mut claims = Vec::new();
    for i in 0..8 {
        let s = if i % 2 == 0 { first.clone() } else { second.clone() };
        claims
            .push(tokio::spawn(async move { s.claim_jobs(&format!("w{i}"), 2_000, 60_000, 2).await.expect("claim") }));
    }
    let mut claimed = Vec::new();
    for c in claims {
        claimed.extend(c.await.expect("task"));
    }
    let mut ids: Vec<i64> = claimed.iter().map(|j| j.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), claimed.len(), "no job is handed out twice");
    assert_eq!(claimed.len(), 11, "every due job is claimed: the ten, and the tick (not the later one)");
    assert!(claimed.iter().all(|j| j.attempts == 1));
    assert!(first.claim_jobs("w9", 2_000, 60_000, 10).await.expect("claim").is_empty(), "leased jobs are taken");

    // The workers died: after their leases, another worker takes their jobs over.
    let later = second.claim_jobs("w9", 59_999, 120_000, 10).await.expect("claim");
    assert_eq!(later.iter().map(|j| j.kind.as_str()).collect::<Vec<_>>(), ["later"], "the leases still run");
    let mut retaken = second.claim_jobs("w9", 60_001, 120_000, 20).await.expect("claim");
    assert_eq!(retaken.len(), 11, "every lease ran out");
    retaken.extend(later);
    let tick = retaken.iter().find(|j| j.kind == "tick").expect("tick").clone();
    assert_eq!(tick.attempts, 2, "the dead worker's run counts");
    assert!(!first.complete_job(tick.id, "w0").await.expect("complete"), "only the lease holder completes it");
    assert!(second.reschedule_job(tick.id, "w9", 200_000).await.expect("reschedule"));

    // A failure is retried at the time given; without a time the job is kept, failed.
    let work: Vec<&ClaimedJob> = retaken.iter().filter(|j| j.kind == "work").collect();
    assert!(second.fail_job(work[0].id, "w9", "boom", Some(150_000)).await.expect("fail"));
    assert!(second.fail_job(work[1].id, "w9", "gave up", None).await.expect("fail"));
    for j in &work[2..] {
        assert!(second.complete_job(j.id, "w9").await.expect("complete"));
    }
    let later = retaken.iter().find(|j| j.kind == "later").expect("later");
    assert!(second.complete_job(later.id, "w9").await.expect("complete"));
    let jobs = first.jobs().await.expect("jobs");
    assert_eq!(jobs.len(), 3, "{jobs:?}");
    let retried = jobs.iter().find(|j| j.id == work[0].id).expect("retried");
    assert_eq!((retried.run_at_ms, retried.last_error.as_deref(), retried.failed), (150_000, Some("boom"), false));
    assert!(jobs.iter().find(|j| j.id == work[1].id).expect("failed").failed);
    let tick = jobs.iter().find(|j| j.kind == "tick").expect("tick");
    assert_eq!((tick.run_at_ms, tick.attempts, tick.claimed_by.as_deref()), (200_000, 0, None));
    assert_eq!(first.next_job_due().await.expect("due"), Some(150_000), "failed jobs are not due");
    let again = first.claim_jobs("w1", 150_000, 200_000, 10).await.expect("claim");
    assert_eq!(again.iter().map(|j| (j.id, j.attempts)).collect::<Vec<_>>(), [(work[0].id, 3)]);
}

async fn expired_login_tokens_and_old_transaction_ids_are_cleaned_up(url: String) {
    let s = open_store(&url).await;
    s.create_login_token("old", "@a:test", 10).await.expect("token");
    s.create_login_token("new", "@a:test", 5_000_000).await.expect("token");
    assert_eq!(s.delete_expired_login_tokens(1_000_000).await.expect("cleanup"), 1);
    assert!(s.take_login_token("old", 5).await.expect("take").is_none(), "deleted even though not expired at 5");
    assert_eq!(s.take_login_token("new", 1_000_000).await.expect("take").as_deref(), Some("@a:test"));
    assert!(s.take_login_token("new", 1_000_000).await.expect("take").is_none(), "used once");

    let room = "!txn:test";
    persisted(&s, event(room, "$c", "m.room.create", Some(""), &[])).await;
    let mut sent = event(room, "$old", "m.room.message", None, &["$c"]);
    sent.origin_server_ts = 1_000;
    sent.txn = Some(("DEV".into(), "t-old".into()));
    persisted(&s, sent).await;
    let mut sent = event(room, "$new", "m.room.message", None, &["$old"]);
    sent.origin_server_ts = 9_000;
    sent.txn = Some(("DEV".into(), "t-new".into()));
    persisted(&s, sent).await;
    assert_eq!(s.delete_txn_ids_before(5_000).await.expect("cleanup"), 1);
    assert!(s.event_for_txn("@a:test", "DEV", "t-old").await.expect("txn").is_none());
    assert_eq!(s.event_for_txn("@a:test", "DEV", "t-new").await.expect("txn").as_deref(), Some("$new"));
}

/// A room list caught up by position (`rooms_for_user_since`) and the window-wide reads of
/// sliding sync (`room_timelines`, `room_summaries`).
async fn room_list_deltas_and_window_reads(url: String) {
    let s = open_store(&url).await;
    let member = |room: &str, id: &str, membership: &str, prev: &str| {
        let mut ev = event(room, id, "m.room.member", Some("@a:test"), &[prev]);
        ev.membership = Some(MembershipUpdate {
            user_id: "@a:test".into(),
            membership: membership.into(),
            displayname: Some("A".into()),
            avatar_url: None,
        });
        ev
    };
    for room in ["!one:test", "!two:test"] {
        let create = format!("$create{room}");
        persisted(&s, event(room, &create, "m.room.create", Some(""), &[])).await;
        persisted(&s, member(room, &format!("$join{room}"), "join", &create)).await;
    }
    let settled = s.stream_head();
    assert!(s.rooms_for_user_since("@a:test", settled, 100).await.expect("delta").is_empty(), "nothing moved");

    let m1 = persisted(&s, event("!one:test", "$m1", "m.room.message", None, &["$join!one:test"])).await;
    let delta = s.rooms_for_user_since("@a:test", settled, 100).await.expect("delta");
    assert_eq!(delta.len(), 1, "{delta:?}");
    assert_eq!((delta[0].room_id.as_str(), delta[0].last_event_pos, delta[0].bump_pos), ("!one:test", m1, m1));

    let left = persisted(&s, member("!two:test", "$leave", "leave", "$join!two:test")).await;
    let mut delta = s.rooms_for_user_since("@a:test", settled, 100).await.expect("delta");
    delta.sort_by(|a, b| a.room_id.cmp(&b.room_id));
    let summary: Vec<(&str, &str, i64)> =
        delta.iter().map(|r| (r.room_id.as_str(), r.membership.as_str(), r.membership_pos)).collect();
    assert_eq!(summary.len(), 2, "{delta:?}");
    assert_eq!(summary[1], ("!two:test", "leave", left));
    assert_eq!(s.rooms_for_user_since("@a:test", settled, 1).await.expect("delta").len(), 1, "limit");
    assert!(s.rooms_for_user_since("@a:test", left, 100).await.expect("delta").is_empty());
    assert!(s.rooms_for_user_since("@b:test", settled, 100).await.expect("delta").is_empty(), "another user");

    let head = s.stream_head();
    let timelines = s
        .room_timelines(&[("!one:test".into(), head, None, 2), ("!two:test".into(), head, Some(settled), 10)])
        .await
        .expect("timelines");
    let ids = |events: &[myelin_storage::StoredEvent]| events.iter().map(|e| e.event_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&timelines[0]), ["$m1", "$join!one:test"], "newest first, limited");
    assert_eq!(ids(&timelines[1]), ["$leave"], "after `since` only");

    let summaries =
        s.room_summaries("@b:test", &["!one:test".into(), "!two:test".into()], head).await.expect("summaries");
    assert_eq!(summaries.len(), 2);
    let one = summaries.iter().find(|r| r.room_id == "!one:test").expect("one");
    assert_eq!((one.joined, one.invited), (1, 0));
    assert_eq!(one.heroes.iter().map(|h| h.user_id.as_str()).collect::<Vec<_>>(), ["@a:test"]);
    assert_eq!(one.heroes[0].displayname.as_deref(), Some("A"));
    assert!(one.current_state_group.is_some());
    let two = summaries.iter().find(|r| r.room_id == "!two:test").expect("two");
    assert_eq!((two.joined, two.heroes.len()), (0, 0), "a left member is no hero");
}

/// The member counts a room keeps follow every kind of membership change.
async fn member_counts_follow_membership_changes(url: String) {
    let s = open_store(&url).await;
    let room = "!counts:test";
    persisted(&s, event(room, "$create", "m.room.create", Some(""), &[])).await;
    let mut prev = "$create".to_owned();
    let mut n = 0;
    let mut step = |user: &str, membership: &str| {
        n += 1;
        let id = format!("$m{n}");
        let mut ev = event(room, &id, "m.room.member", Some(user), &[prev.as_str()]);
        ev.membership = Some(MembershipUpdate {
            user_id: user.into(),
            membership: membership.into(),
            displayname: None,
            avatar_url: None,
        });
        prev = id;
        ev
    };
    let counts = |s: Arc<dyn Store>| async move {
        let summary = s.room_summaries("@x:test", &[room.to_owned()], s.stream_head()).await.expect("summary");
        (summary[0].joined, summary[0].invited)
    };
    for (user, membership, expected) in [
        ("@a:test", "join", (1, 0)),
        ("@b:test", "invite", (1, 1)),
        ("@b:test", "join", (2, 0)),
        ("@c:test", "invite", (2, 1)),
        ("@c:test", "leave", (2, 0)),
        ("@a:test", "join", (2, 0)),
        ("@a:test", "leave", (1, 0)),
        ("@b:test", "ban", (0, 0)),
        ("@a:test", "invite", (0, 1)),
    ] {
        persisted(&s, step(user, membership)).await;
        assert_eq!(counts(s.clone()).await, expected, "after {user} {membership}");
    }
}

/// Runs every conformance test against one backend.
macro_rules! backend {
    ($backend:ident, $url:expr, [$($test:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($url).await
                }
            )*
        }
    };
}

/// Every conformance test, once per backend.
macro_rules! all_backends {
    ($($test:ident),* $(,)?) => {
        backend!(sqlite, super::sqlite_db(), [$($test),*]);
        backend!(postgres, super::postgres_db().await, [$($test),*]);
    };
}

all_backends!(
    users_are_unique_and_round_trip,
    sessions_tokens_and_refresh,
    events_positions_state_and_extremities,
    long_state_chains_resolve_through_snapshots,
    transaction_ids_make_sends_idempotent,
    concurrent_writes_get_distinct_ordered_positions,
    a_failing_write_does_not_poison_its_batch,
    account_data_receipts_and_unread_counts,
    data_survives_reopening,
    a_stale_head_writes_nothing,
    room_list_deltas_and_window_reads,
    member_counts_follow_membership_changes,
    the_job_queue_hands_each_due_job_to_one_worker,
    expired_login_tokens_and_old_transaction_ids_are_cleaned_up,
);
