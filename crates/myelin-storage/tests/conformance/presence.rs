//! Presence rows: positions for changes others see, times for activity, timers once.

use myelin_storage::*;

use super::{open_store, room_with, uid};

fn record(user: &str, state: &str, last_active_ms: u64, alive_until_ms: u64, local: bool) -> PresenceRecord {
    PresenceRecord {
        user_id: uid(user),
        state: state.into(),
        status_msg: None,
        last_active_ms,
        alive_until_ms,
        local,
        stream_pos: StreamPos::ZERO,
    }
}

pub async fn presence_changes_take_positions_and_timers_expire_them(url: String) {
    let store = open_store(&url).await;
    room_with(&store, "!p:test", &["@a:test", "@b:test"]).await;
    let start = store.stream_head();
    let a = store.put_presence(record("@a:test", "online", 1_000, 31_000, true)).await.expect("put");
    let mut busy = record("@b:test", "online", 1_000, 100_000, true);
    busy.status_msg = Some("busy".into());
    let b = store.put_presence(busy.clone()).await.expect("put");
    let remote = store.put_presence(record("@r:remote", "online", 1_000, 50_000, false)).await.expect("put");
    assert!(start < a && a < b && b < remote);
    let got = store.get_presence(&uid("@b:test")).await.expect("get").expect("a row");
    assert_eq!(got, PresenceRecord { stream_pos: b, ..busy });
    let seen = |viewer: &'static str, since: StreamPos| {
        let store = store.clone();
        async move {
            let changes = store.presence_changes_seen_by(&uid(viewer), since, remote, 10).await.expect("changes");
            changes.iter().map(|r| r.user_id.to_string()).collect::<Vec<String>>()
        }
    };
    assert_eq!(seen("@a:test", start).await, ["@b:test", "@a:test"], "its own and its room mates', newest first");
    assert_eq!(seen("@a:test", a).await, ["@b:test"], "after the token only");
    assert_eq!(seen("@r:remote", start).await, ["@r:remote"], "no room shared: its own only");
    assert!(seen("@nobody:test", start).await.is_empty());
    assert_eq!(store.presence_of(&[uid("@a:test"), uid("@nobody:test")]).await.expect("of").len(), 1);

    // Activity moves times up, never down, and takes no position.
    store.touch_presence(&uid("@a:test"), 5_000, 40_000).await.expect("touch");
    store.touch_presence(&uid("@a:test"), 2_000, 35_000).await.expect("touch");
    store.touch_presence(&uid("@nobody:test"), 5_000, 40_000).await.expect("no row: nothing");
    let a_now = store.get_presence(&uid("@a:test")).await.expect("get").expect("a row");
    assert_eq!((a_now.last_active_ms, a_now.alive_until_ms, a_now.stream_pos), (5_000, 40_000, a));
    assert!(store.get_presence(&uid("@nobody:test")).await.expect("get").is_none());

    // At 45 s, idle since before 4 s: a's sync ended (offline), b is idle (unavailable); the
    // remote user is not idled here (their server says), and still present.
    let changed = store.expire_presence(4_000, 45_000, 100).await.expect("expire");
    let mut states: Vec<(String, String)> = changed.iter().map(|r| (r.user_id.to_string(), r.state.clone())).collect();
    states.sort();
    assert_eq!(
        states,
        [("@a:test".to_owned(), "offline".to_owned()), ("@b:test".to_owned(), "unavailable".to_owned())]
    );
    assert!(changed.iter().all(|r| r.stream_pos > remote));
    assert!(store.expire_presence(4_000, 45_000, 100).await.expect("expire").is_empty(), "each change once");
    // Later the remote user's word runs out; b's sync too.
    let later = store.expire_presence(4_000, 200_000, 100).await.expect("expire");
    let mut users: Vec<String> = later.iter().map(|r| format!("{} {}", r.user_id, r.state)).collect();
    users.sort();
    assert_eq!(users, ["@b:test offline", "@r:remote offline"]);
}
