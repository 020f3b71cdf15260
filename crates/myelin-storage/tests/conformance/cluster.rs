//! Several processes on one database (PostgreSQL): the stream head and signals reach all of them.
//! On SQLite there is one server process (and perhaps the admin CLI beside it), and signals go
//! nowhere.

use std::time::Duration;

use myelin_storage::*;

use super::{another_process, event, open_store, persisted, uid};

pub async fn the_stream_head_reaches_every_process(url: String) {
    let first = open_store(&url).await;
    let second = another_process(&url, &first).await;
    let mut watch = second.watch_stream_head();
    let written = persisted(&first, event("!h:test", "$c", "m.room.create", Some(""), &[])).await;
    assert!(first.written_head() >= written);
    // The other process hears of the new head (NOTIFY), and finds it when it asks the database.
    tokio::time::timeout(Duration::from_secs(5), async {
        while *watch.borrow_and_update() < written {
            watch.changed().await.expect("watch");
        }
    })
    .await
    .expect("the new head reaches the other process");
    assert!(second.stream_head() >= written);
    assert!(second.refresh_stream_head().await.expect("refresh") >= written);
    assert!(second.get_event(&super::eid("$c")).await.expect("get").is_some(), "and the event is readable there");
}

pub async fn signals_reach_the_other_processes_only(url: String) {
    let first = open_store(&url).await;
    let postgres = url.starts_with("postgres");
    let second = another_process(&url, &first).await;
    let mut at_first = first.signals();
    let mut at_second = second.signals();
    let signal = Signal::Wake { users: vec![uid("@a:test")], pos: StreamPos(7) };
    first.broadcast(signal.clone());
    first.broadcast(Signal::Invalidate { cache: "events".into(), key: "$x".into() });
    if postgres {
        let got =
            tokio::time::timeout(Duration::from_secs(5), at_second.recv()).await.expect("delivered").expect("signal");
        assert_eq!(got, signal);
        let got =
            tokio::time::timeout(Duration::from_secs(5), at_second.recv()).await.expect("delivered").expect("signal");
        assert_eq!(got, Signal::Invalidate { cache: "events".into(), key: "$x".into() }, "in order");
    }
    let echo = tokio::time::timeout(Duration::from_millis(300), at_first.recv()).await;
    assert!(echo.is_err(), "a process does not hear its own signals: {echo:?}");
}

/// Signals broadcast in a burst (more than one NOTIFY statement carries, and a wake-up too big
/// for one payload among them) all reach the other process, in the order they were broadcast;
/// a flush after them returns once they are out. (On SQLite they go nowhere, and the flush
/// returns all the same.)
pub async fn a_burst_of_signals_arrives_whole_and_in_order(url: String) {
    let first = open_store(&url).await;
    let second = another_process(&url, &first).await;
    let mut at_second = second.signals();
    let many_users: Vec<_> = (0..600).map(|i| uid(&format!("@a-rather-long-user-name-{i}:test"))).collect();
    let mut sent = Vec::new();
    for i in 0..150 {
        sent.push(Signal::Invalidate { cache: "events".into(), key: format!("$burst{i}") });
        if i == 70 {
            sent.push(Signal::Wake { users: many_users.clone(), pos: StreamPos(9) });
        }
    }
    for signal in &sent {
        first.broadcast(signal.clone());
    }
    tokio::time::timeout(Duration::from_secs(5), first.flush_signals()).await.expect("flushed");
    if !url.starts_with("postgres") {
        let heard = tokio::time::timeout(Duration::from_millis(300), at_second.recv()).await;
        assert!(heard.is_err(), "a single-process backend sends signals nowhere: {heard:?}");
        return;
    }
    let mut got = Vec::new();
    let mut woken = Vec::new();
    while got.len() < sent.len() {
        let signal =
            tokio::time::timeout(Duration::from_secs(5), at_second.recv()).await.expect("delivered").expect("signal");
        // The big wake-up arrives in parts, one after the other, where it was broadcast.
        match signal {
            Signal::Wake { users, pos } if woken.len() + users.len() <= many_users.len() => {
                assert_eq!(pos, StreamPos(9));
                woken.extend(users);
                if woken.len() == many_users.len() {
                    got.push(Signal::Wake { users: std::mem::take(&mut woken), pos });
                }
            }
            other => {
                assert!(woken.is_empty(), "a wake-up's parts are not interleaved with {other:?}");
                got.push(other);
            }
        }
    }
    assert_eq!(got, sent, "every signal, in order");
}

/// A second writer opened on the same database — on SQLite, the admin CLI beside a running
/// server — takes positions after the first's, and the first continues after the second's
/// (no position is handed out twice); the first reads the second's event once it writes again.
pub async fn a_second_writer_on_the_same_database_takes_later_positions(url: String) {
    let first = open_store(&url).await;
    let p1 = persisted(&first, event("!w:test", "$w1", "m.room.create", Some(""), &[])).await;
    let second = open_store(&url).await;
    let p2 = persisted(&second, event("!w:test", "$w2", "m.room.message", None, &["$w1"])).await;
    assert!(p2 > p1, "{p2:?} after {p1:?}");
    let p3 = persisted(&first, event("!w:test", "$w3", "m.room.message", None, &["$w2"])).await;
    assert!(p3 > p2, "{p3:?} after {p2:?}: the first writer goes on after the second's position");
    assert!(first.stream_head() >= p3);
    assert!(first.get_event(&super::eid("$w2")).await.expect("get").is_some());
}

/// Two processes writing at the same moment, round after round: each hears of both writes at
/// once, not only at the keeper's next poll of the head (a second later). Whichever batch commits
/// last must announce a head past both (it reads the head after its commit, when the other's
/// reservation is gone).
pub async fn side_by_side_writes_reach_every_process_at_once(url: String) {
    let first = open_store(&url).await;
    let second = another_process(&url, &first).await;
    persisted(&first, event("!a:test", "$ca", "m.room.create", Some(""), &[])).await;
    persisted(&second, event("!b:test", "$cb", "m.room.create", Some(""), &[])).await;
    let (mut prev_a, mut prev_b) = ("$ca".to_owned(), "$cb".to_owned());
    for round in 0..30 {
        let (id_a, id_b) = (format!("$a{round}"), format!("$b{round}"));
        let (a, b) = tokio::join!(
            first.persist_event(event("!a:test", &id_a, "m.room.message", None, &[prev_a.as_str()])),
            second.persist_event(event("!b:test", &id_b, "m.room.message", None, &[prev_b.as_str()])),
        );
        let highest = [a, b]
            .into_iter()
            .map(|outcome| match outcome.expect("persist") {
                PersistOutcome::Persisted { stream_pos } => stream_pos,
                other => panic!("unexpected {other:?}"),
            })
            .max()
            .expect("two positions");
        let both_heard = async {
            for store in [&first, &second] {
                let mut watch = store.watch_stream_head();
                while *watch.borrow_and_update() < highest {
                    watch.changed().await.expect("watch");
                }
            }
        };
        tokio::time::timeout(Duration::from_millis(500), both_heard)
            .await
            .unwrap_or_else(|_| panic!("round {round}: the head past both writes reaches both processes at once"));
        (prev_a, prev_b) = (id_a, id_b);
    }
}
