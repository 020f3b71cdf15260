//! Sliding sync connection state.

use myelin_storage::*;

use super::{another_process, did, open_store, uid};

fn connection(generation: &str, seq: i64, last_used_ms: i64) -> StoredConnection {
    StoredConnection {
        generation: generation.into(),
        seq,
        state: format!("{{\"seq\":{seq}}}"),
        prev_seq: seq - 1,
        prev_state: "{}".into(),
        last_used_ms,
    }
}

fn key(device: &str, conn_id: &str) -> ConnectionKey {
    ConnectionKey { user_id: uid("@a:test"), device_id: did(device), conn_id: conn_id.into() }
}

pub async fn connections_are_saved_conditionally_and_trimmed(url: String) {
    let s = open_store(&url).await;
    let main = key("PHONE", "room-list");
    assert!(s.sliding_sync_connection(&main).await.expect("get").is_none());
    assert!(s.save_sliding_sync_connection(&main, None, connection("g1", 1, 100)).await.expect("save"));
    assert_eq!(s.sliding_sync_connection(&main).await.expect("get"), Some(connection("g1", 1, 100)));
    // Moving on from (g1, 1) works once; a second request from the same position loses.
    assert!(
        s.save_sliding_sync_connection(&main, Some(("g1".into(), 1)), connection("g1", 2, 200)).await.expect("save")
    );
    assert!(
        !s.save_sliding_sync_connection(&main, Some(("g1".into(), 1)), connection("g1", 2, 300)).await.expect("save")
    );
    assert!(
        !s.save_sliding_sync_connection(&main, Some(("g0".into(), 2)), connection("g1", 3, 300)).await.expect("save")
    );
    assert_eq!(s.sliding_sync_connection(&main).await.expect("get").map(|c| c.last_used_ms), Some(200));
    // Each conditional save is committed when it returns (on PostgreSQL its COMMIT rides with
    // the UPDATE), won or lost, and leaves its pooled connection fit for the next: another
    // process sees every saved step at once.
    let elsewhere = another_process(&url, &s).await;
    for seq in 2..12 {
        let won = s
            .save_sliding_sync_connection(&main, Some(("g1".into(), seq)), connection("g1", seq + 1, 200 + seq))
            .await
            .expect("save");
        let lost = s
            .save_sliding_sync_connection(&main, Some(("g1".into(), seq)), connection("g1", seq + 1, 1))
            .await
            .expect("save");
        assert!(won && !lost, "step {seq}");
        let seen = elsewhere.sliding_sync_connection(&main).await.expect("get").map(|c| (c.seq, c.last_used_ms));
        assert_eq!(seen, Some((seq + 1, 200 + seq)), "step {seq}, read by another process");
    }
    // Without an expectation the row is replaced (a new connection).
    assert!(s.save_sliding_sync_connection(&main, None, connection("g2", 1, 400)).await.expect("save"));
    assert_eq!(s.sliding_sync_connection(&main).await.expect("get").map(|c| c.generation), Some("g2".into()));

    // A device keeps at most MAX_CONNECTIONS_PER_DEVICE connections: the least recently used go.
    for i in 0..MAX_CONNECTIONS_PER_DEVICE + 3 {
        let extra = key("PHONE", &format!("c{i}"));
        assert!(
            s.save_sliding_sync_connection(&extra, None, connection("g", 1, 1_000 + i as i64)).await.expect("save")
        );
    }
    let mut kept = 0;
    for i in 0..MAX_CONNECTIONS_PER_DEVICE + 3 {
        kept += usize::from(s.sliding_sync_connection(&key("PHONE", &format!("c{i}"))).await.expect("get").is_some());
    }
    assert_eq!(kept, MAX_CONNECTIONS_PER_DEVICE, "the newest ones");
    assert!(s.sliding_sync_connection(&main).await.expect("get").is_none(), "the least recently used went first");
    assert!(s.sliding_sync_connection(&key("PHONE", "c0")).await.expect("get").is_none());
    assert!(s.sliding_sync_connection(&key("PHONE", "c3")).await.expect("get").is_some());

    let other = key("LAPTOP", "room-list");
    s.save_sliding_sync_connection(&other, None, connection("g", 1, 50)).await.expect("save");
    s.delete_sliding_sync_connection(&key("PHONE", "c3")).await.expect("delete");
    assert!(s.sliding_sync_connection(&key("PHONE", "c3")).await.expect("get").is_none());
    assert_eq!(s.delete_idle_sliding_sync_connections(1_010).await.expect("idle"), 7, "c4..c9 and the laptop's");
    assert!(s.sliding_sync_connection(&other).await.expect("get").is_none());
    assert!(s.sliding_sync_connection(&key("PHONE", "c10")).await.expect("get").is_some());
}

/// The saves of many connections answering at once (a busy room's listeners): PostgreSQL writes
/// those that queue together in one statement; each still gets its own outcome, two saves of one
/// connection from the same position still let exactly one win, and every win is committed and
/// seen by another process when its save returns.
pub async fn connections_saved_at_once_each_get_their_own_outcome(url: String) {
    let s = open_store(&url).await;
    let device = |i: usize| ConnectionKey {
        user_id: uid(&format!("@listener{i}:test")),
        device_id: did("PHONE"),
        conn_id: "room-list".into(),
    };
    const CONNECTIONS: usize = 60;
    for i in 0..CONNECTIONS {
        assert!(s.save_sliding_sync_connection(&device(i), None, connection("g", 1, 10)).await.expect("create"));
    }
    let elsewhere = another_process(&url, &s).await;
    for round in 1..4_i64 {
        // Each connection moves on from `round`; every third also gets a second save from the
        // same position (a retried request), every fifth one from a position it never had.
        let mut saves = Vec::new();
        for i in 0..CONNECTIONS {
            let key = device(i);
            let won_seq = round + 1;
            saves.push((i, true, key.clone(), Some(("g".to_owned(), round)), connection("g", won_seq, 100 * round)));
            if i % 3 == 0 {
                saves.push((i, true, key.clone(), Some(("g".to_owned(), round)), connection("g", won_seq, 1)));
            }
            if i % 5 == 0 {
                saves.push((i, false, key, Some(("g".to_owned(), round + 7)), connection("g", round + 8, 2)));
            }
        }
        let outcomes = futures_util::future::join_all(
            saves
                .iter()
                .map(|(_, _, key, expected, new)| s.save_sliding_sync_connection(key, expected.clone(), new.clone())),
        )
        .await;
        let mut wins = vec![0; CONNECTIONS];
        for ((i, may_win, _, _, _), outcome) in saves.iter().zip(outcomes) {
            let won = outcome.expect("save");
            assert!(*may_win || !won, "round {round}: connection {i} moved on from a position it never had");
            wins[*i] += usize::from(won);
        }
        assert!(wins.iter().all(|w| *w == 1), "round {round}: exactly one save per connection wins: {wins:?}");
        for i in 0..CONNECTIONS {
            let seen = elsewhere.sliding_sync_connection(&device(i)).await.expect("get").map(|c| c.seq);
            assert_eq!(seen, Some(round + 1), "round {round}, connection {i}, read by another process");
        }
    }
    // A save of a connection that is gone writes nothing.
    s.delete_sliding_sync_connection(&device(0)).await.expect("delete");
    let (first, second) = (device(0), device(1));
    let gone = s.save_sliding_sync_connection(&first, Some(("g".into(), 4)), connection("g", 5, 500));
    let live = s.save_sliding_sync_connection(&second, Some(("g".into(), 4)), connection("g", 5, 500));
    let (gone, live) = futures_util::future::join(gone, live).await;
    assert!(!gone.expect("save") && live.expect("save"));
    assert!(s.sliding_sync_connection(&device(0)).await.expect("get").is_none());
}
