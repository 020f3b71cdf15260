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
