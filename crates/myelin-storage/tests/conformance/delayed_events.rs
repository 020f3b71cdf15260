//! Delayed events (MSC4140) and the jobs that send them.

use myelin_storage::*;

use super::{another_process, open_store, rid, uid};

fn delayed(id: &str, user: &str, state_key: Option<&str>, send_at_ms: u64) -> DelayedEvent {
    DelayedEvent {
        delay_id: id.into(),
        user_id: uid(user),
        device_id: "DEV".into(),
        room_id: rid("!call:test"),
        event_type: "org.matrix.msc3401.call.member".into(),
        state_key: state_key.map(Into::into),
        content: r#"{"k":1}"#.into(),
        delay_ms: 10_000,
        sticky_duration_ms: state_key.is_none().then_some(60_000),
        txn_id: Some(format!("txn-{id}")),
        send_at_ms,
        created_ms: send_at_ms.saturating_sub(10_000),
    }
}

/// The run time of a delayed event's job, if it has one.
async fn job_due(store: &std::sync::Arc<dyn Store>, delay_id: &str) -> Option<u64> {
    let key = delayed_event_job_key(delay_id);
    store.jobs().await.expect("jobs").into_iter().find(|j| j.dedupe_key.as_deref() == Some(&key)).map(|j| j.run_at_ms)
}

/// Each delayed event has one job due when it is; restarts move both, deletions take both; a
/// user's limit holds across processes; another user's state write cancels only the others'.
pub async fn delayed_events_have_one_job_each_and_a_limit_per_user(url: String) {
    let first = open_store(&url).await;
    let second = another_process(&url, &first).await;

    let d2 = delayed("d2", "@a:test", Some("_@a:test_DEV"), 30_000);
    assert_eq!(first.schedule_delayed_event(&d2, 10).await.expect("store"), Scheduled::New);
    let d1 = delayed("d1", "@a:test", None, 20_000);
    assert_eq!(first.schedule_delayed_event(&d1, 10).await.expect("store"), Scheduled::New);
    // The same request again (its answer was lost): the first one's id, nothing new.
    let mut again = delayed("d1-again", "@a:test", None, 25_000);
    again.txn_id = d1.txn_id.clone();
    assert_eq!(second.schedule_delayed_event(&again, 10).await.expect("store"), Scheduled::Repeat("d1".into()));
    assert_eq!(job_due(&first, "d1").await, Some(20_000), "the job is due when the event is");
    let listed: Vec<String> =
        first.delayed_events_of(&uid("@a:test")).await.expect("store").into_iter().map(|e| e.delay_id).collect();
    assert_eq!(listed, ["d1", "d2"], "soonest first");
    assert_eq!(
        first.delayed_event("d2").await.expect("store"),
        Some(delayed("d2", "@a:test", Some("_@a:test_DEV"), 30_000))
    );
    assert_eq!(first.delayed_event("nope").await.expect("store"), None);

    assert!(second.restart_delayed_event("d1", &uid("@a:test"), 45_000).await.expect("store"));
    assert!(!second.restart_delayed_event("d1", &uid("@b:test"), 45_000).await.expect("store"), "only its user's");
    assert!(!second.restart_delayed_event("nope", &uid("@a:test"), 45_000).await.expect("store"));
    assert_eq!(first.delayed_event("d1").await.expect("store").map(|e| e.send_at_ms), Some(45_000));
    assert_eq!(job_due(&first, "d1").await, Some(45_000), "the job moves with it");

    assert!(first.delete_delayed_event("d1").await.expect("store"));
    assert!(!first.delete_delayed_event("d1").await.expect("store"), "once");
    assert_eq!(job_due(&first, "d1").await, None, "its job goes with it");

    // The limit: twelve schedules race from two processes for the eight places left of ten.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let s = if i % 2 == 0 { first.clone() } else { second.clone() };
        tasks.push(tokio::spawn(async move {
            s.schedule_delayed_event(&delayed(&format!("r{i}"), "@b:test", None, 50_000 + i), 10).await.expect("store")
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        accepted += usize::from(t.await.expect("task") == Scheduled::New);
    }
    assert_eq!(accepted, 10, "ten places per user, however the schedules race");
    let mut over = delayed("over", "@b:test", None, 1);
    over.txn_id = None;
    assert_eq!(first.schedule_delayed_event(&over, 10).await.expect("store"), Scheduled::LimitReached);
    assert_eq!(first.delayed_events_of(&uid("@b:test")).await.expect("store").len(), 10);

    // Another user's write to the state entry cancels a's pending write to it; c's own
    // delayed state write at that entry stays, as do message events and other entries.
    let c_state = delayed("c-state", "@c:test", Some("_@a:test_DEV"), 60_000);
    assert_eq!(first.schedule_delayed_event(&c_state, 10).await.expect("store"), Scheduled::New);
    let cancelled = second
        .cancel_delayed_state_of_others(
            &rid("!call:test"),
            "org.matrix.msc3401.call.member",
            "_@a:test_DEV",
            &uid("@c:test"),
        )
        .await
        .expect("store");
    assert_eq!(cancelled, ["d2"]);
    assert_eq!(job_due(&first, "d2").await, None);
    assert!(first.delayed_event("c-state").await.expect("store").is_some(), "the writer's own stays");
    let none = first
        .cancel_delayed_state_of_others(&rid("!call:test"), "org.matrix.msc3401.call.member", "other", &uid("@z:test"))
        .await
        .expect("store");
    assert!(none.is_empty());
}

/// Firing marks the due ones, soonest first, in one write; a fired event is no longer restarted
/// or cancelled, and firing it again (after a crash) answers it again.
pub async fn firing_a_delayed_event_ends_restarts_and_cancels(url: String) {
    let store = open_store(&url).await;
    for (id, at) in [("late", 9_000), ("b", 2_000), ("a", 1_000)] {
        assert_eq!(
            store.schedule_delayed_event(&delayed(id, "@a:test", None, at), 10).await.expect("store"),
            Scheduled::New
        );
    }
    let ids: Vec<String> = ["late", "a", "b", "unknown"].iter().map(|s| s.to_string()).collect();
    let fired = store.fire_delayed_events(&ids, 5_000).await.expect("fire");
    assert_eq!(
        fired.iter().map(|e| e.delay_id.as_str()).collect::<Vec<_>>(),
        ["a", "b"],
        "the due ones, soonest first"
    );
    assert!(!store.restart_delayed_event("a", &uid("@a:test"), 50_000).await.expect("restart"), "being sent");
    assert!(!store.cancel_delayed_event("a").await.expect("cancel"), "being sent");
    let pending: Vec<String> =
        store.delayed_events_of(&uid("@a:test")).await.expect("list").into_iter().map(|e| e.delay_id).collect();
    assert_eq!(pending, ["late"], "those being sent are no longer listed as pending");
    assert!(
        store.restart_delayed_event("late", &uid("@a:test"), 50_000).await.expect("restart"),
        "not due: still pending"
    );
    assert_eq!(store.fire_delayed_events(&ids, 5_000).await.expect("fire").len(), 2, "a crashed send is redone");
    assert!(store.delete_delayed_event("a").await.expect("delete"), "sent: forgotten");
    assert!(store.cancel_delayed_event("late").await.expect("cancel"));
    assert!(store.delayed_event("late").await.expect("read").is_none());
    assert!(store.fire_delayed_events(&[], 5_000).await.expect("fire").is_empty());
}

/// A delegated leave (MatrixRTC) is one row and one job per participant: a new delegation
/// replaces the old one and brings the job forward; connecting moves an idle job only; taking it
/// removes both, once, across processes.
pub async fn delegated_leaves_are_one_per_participant_and_taken_once(url: String) {
    let first = open_store(&url).await;
    let second = another_process(&url, &first).await;
    let leave = |delay_id: &str, created_ms: u64| DelegatedLeave {
        livekit_room: "lkroom".into(),
        livekit_identity: "ident+/=".into(),
        delay_id: delay_id.into(),
        user_id: uid("@a:test"),
        connected: false,
        wait_until_ms: created_ms + 8_000,
        created_ms,
    };
    let key = delegated_leave_job_key("lkroom", "ident+/=");
    let job = |store: std::sync::Arc<dyn Store>| {
        let key = key.clone();
        async move {
            store
                .jobs()
                .await
                .expect("jobs")
                .into_iter()
                .filter(|j| j.dedupe_key.as_deref() == Some(&key))
                .collect::<Vec<_>>()
        }
    };

    first.put_delegated_leave(&leave("d1", 1_000), 1_000).await.expect("put");
    assert_eq!(second.delegated_leave("lkroom", "ident+/=").await.expect("read"), Some(leave("d1", 1_000)));
    assert!(second.delegated_leave("lkroom", "other").await.expect("read").is_none());
    let jobs = job(first.clone()).await;
    assert_eq!((jobs.len(), jobs[0].kind.as_str(), jobs[0].run_at_ms), (1, DELEGATED_LEAVE_JOB, 1_000));

    // The client delegates again (a new delay id): replaced, one job.
    second.put_delegated_leave(&leave("d2", 2_000), 2_500).await.expect("replace");
    let stored = first.delegated_leave("lkroom", "ident+/=").await.expect("read").expect("there");
    assert_eq!((stored.delay_id.as_str(), stored.created_ms), ("d2", 2_000));
    let jobs = job(first.clone()).await;
    assert_eq!((jobs.len(), jobs[0].run_at_ms), (1, 2_500));

    assert!(first.mark_delegated_leave_connected("lkroom", "ident+/=", 3_000).await.expect("mark"));
    assert!(!first.mark_delegated_leave_connected("lkroom", "other", 3_000).await.expect("mark"), "no such one");
    assert!(second.delegated_leave("lkroom", "ident+/=").await.expect("read").expect("there").connected);
    assert_eq!(job(first.clone()).await[0].run_at_ms, 3_000, "brought forward");

    // Both processes try to take it (a webhook and the job): one gets it.
    let (a, b) = tokio::join!(
        first.take_delegated_leave("lkroom", "ident+/="),
        second.take_delegated_leave("lkroom", "ident+/=")
    );
    let taken: Vec<DelegatedLeave> = [a.expect("take"), b.expect("take")].into_iter().flatten().collect();
    assert_eq!(taken.len(), 1, "taken once: {taken:?}");
    assert!(taken[0].connected);
    assert!(first.delegated_leave("lkroom", "ident+/=").await.expect("read").is_none());
    assert!(job(first.clone()).await.is_empty(), "its idle job went with it");
}
