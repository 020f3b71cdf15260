//! The durable job queue.

use myelin_storage::*;

use super::{another_process, open_store};

fn job(kind: &str, key: Option<&str>, run_at_ms: u64) -> NewJob {
    NewJob { kind: kind.into(), dedupe_key: key.map(Into::into), payload: "{}".into(), run_at_ms }
}

/// Jobs are claimed by one worker at a time, however many processes ask at once; a lease that
/// runs out (its worker died) lets another worker take the job; failures are retried, then kept.
pub async fn the_job_queue_hands_each_due_job_to_one_worker(url: String) {
    // Two handles on one database stand for two processes of a deployment.
    let first = open_store(&url).await;
    let second = another_process(&url, &first).await;
    for i in 0..10 {
        assert!(first.schedule_job(job("work", None, 1_000 + i), 0).await.expect("schedule"));
    }
    assert!(first.schedule_job(job("later", None, 5_000), 0).await.expect("schedule"));
    assert!(first.schedule_job(job("tick", Some("tick"), 100), 0).await.expect("schedule"));
    assert!(!second.schedule_job(job("tick", Some("tick"), 50), 0).await.expect("schedule"), "one job per key");
    assert_eq!(first.next_job_due(&JobKinds::All).await.expect("due"), Some(100));

    let mut claims = Vec::new();
    for i in 0..8 {
        let s = if i % 2 == 0 { first.clone() } else { second.clone() };
        claims.push(tokio::spawn(async move {
            s.claim_jobs(&format!("w{i}"), 2_000, 60_000, 2, &JobKinds::All).await.expect("claim")
        }));
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
    assert!(
        first.claim_jobs("w9", 2_000, 60_000, 10, &JobKinds::All).await.expect("claim").is_empty(),
        "leased jobs are taken"
    );
    assert_eq!(
        first.next_job_due(&JobKinds::All).await.expect("due"),
        Some(5_000),
        "a runner waits for the unleased later job, not for jobs due but leased"
    );

    // The workers died: after their leases, another worker takes their jobs over.
    let later = second.claim_jobs("w9", 59_999, 120_000, 10, &JobKinds::All).await.expect("claim");
    assert_eq!(later.iter().map(|j| j.kind.as_str()).collect::<Vec<_>>(), ["later"], "the leases still run");
    let mut retaken = second.claim_jobs("w9", 60_001, 120_000, 20, &JobKinds::All).await.expect("claim");
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
    assert_eq!(first.next_job_due(&JobKinds::All).await.expect("due"), Some(150_000), "failed jobs are not due");
    let again = first.claim_jobs("w1", 150_000, 200_000, 10, &JobKinds::All).await.expect("claim");
    assert_eq!(again.iter().map(|j| (j.id, j.attempts)).collect::<Vec<_>>(), [(work[0].id, 3)]);
}

/// A claim takes only the kinds asked for (timers run in a lane of their own); the next due time
/// is that of the kinds asked for.
pub async fn claims_take_the_kinds_asked_for(url: String) {
    let store = open_store(&url).await;
    assert!(store.schedule_job(job("timer", None, 1_000), 0).await.expect("schedule"));
    assert!(store.schedule_job(job("network", None, 500), 0).await.expect("schedule"));
    assert!(store.schedule_job(job("other", None, 700), 0).await.expect("schedule"));
    let timers = JobKinds::Only(vec!["timer".into()]);
    let background = JobKinds::AllBut(vec!["timer".into()]);
    assert_eq!(store.next_job_due(&timers).await.expect("due"), Some(1_000));
    assert_eq!(store.next_job_due(&background).await.expect("due"), Some(500));
    assert_eq!(store.next_job_due(&JobKinds::Only(Vec::new())).await.expect("due"), None, "no kind");
    let claimed = store.claim_jobs("w", 2_000, 9_000, 10, &timers).await.expect("claim");
    assert_eq!(claimed.iter().map(|j| j.kind.as_str()).collect::<Vec<_>>(), ["timer"]);
    let claimed = store.claim_jobs("w", 2_000, 9_000, 10, &background).await.expect("claim");
    assert_eq!(claimed.iter().map(|j| j.kind.as_str()).collect::<Vec<_>>(), ["network", "other"]);
    assert!(store.claim_jobs("w", 2_000, 9_000, 10, &JobKinds::All).await.expect("claim").is_empty(), "all leased");
}

/// The queue as the metrics and the admin API read it: per kind, how many wait, are due and
/// failed, and the oldest due; jobs found by the start of their key.
pub async fn the_queue_is_counted_per_kind_and_found_by_key(url: String) {
    let store = open_store(&url).await;
    assert!(store.schedule_job(job("send", Some("send a.example"), 100), 0).await.expect("schedule"));
    assert!(store.schedule_job(job("send", Some("send b.example"), 300), 0).await.expect("schedule"));
    assert!(store.schedule_job(job("send", Some("send c.example"), 5_000), 0).await.expect("schedule"));
    assert!(store.schedule_job(job("other", Some("sender%"), 100), 0).await.expect("schedule"));
    let claimed = store.claim_jobs("w", 1_000, 60_000, 10, &JobKinds::Only(vec!["other".into()])).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    assert!(store.fail_job(claimed[0].id, "w", "broken", None).await.expect("fail"));
    let stats = store.job_queue_stats(1_000).await.expect("stats");
    assert_eq!(
        stats,
        vec![
            JobQueueStats { kind: "other".into(), queued: 0, due: 0, failed: 1, oldest_due_ms: None },
            JobQueueStats { kind: "send".into(), queued: 3, due: 2, failed: 0, oldest_due_ms: Some(100) },
        ]
    );
    let keys = |jobs: Vec<JobRecord>| jobs.into_iter().filter_map(|j| j.dedupe_key).collect::<Vec<_>>();
    assert_eq!(
        keys(store.jobs_keyed("send ").await.expect("jobs")),
        ["send a.example", "send b.example", "send c.example"]
    );
    assert_eq!(keys(store.jobs_keyed("sender%").await.expect("jobs")), ["sender%"], "% taken literally");
    assert_eq!(store.jobs().await.expect("jobs").len(), 4);
}
