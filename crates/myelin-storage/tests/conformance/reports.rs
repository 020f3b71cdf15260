//! Reports for the admins.

use myelin_storage::*;

use super::{eid, open_store, rid, uid};

/// Reports get increasing ids and are read back newest first, in pages.
pub async fn reports_are_kept_and_listed_newest_first(url: String) {
    let store = open_store(&url).await;
    let report = |n: u64| ReportRecord {
        id: 0,
        reporter: uid("@a:test"),
        room_id: Some(rid("!r:test")),
        event_id: (n == 1).then(|| eid("$bad")),
        user_id: (n == 2).then(|| uid("@troll:test")),
        reason: Some(format!("reason {n}")),
        score: (n == 1).then_some(-100),
        created_ms: n,
    };
    let first = store.add_report(&report(1)).await.expect("add");
    let second = store.add_report(&report(2)).await.expect("add");
    assert!(second > first);
    let all = store.reports(None, 10).await.expect("list");
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], ReportRecord { id: second, ..report(2) });
    assert_eq!(all[1], ReportRecord { id: first, ..report(1) });
    assert_eq!(store.reports(Some(second), 10).await.expect("list").len(), 1, "before the newest");
    assert_eq!(store.reports(None, 1).await.expect("list").len(), 1, "the limit");
}
