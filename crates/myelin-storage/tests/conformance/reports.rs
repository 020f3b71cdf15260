//! Reports for the admins, and the rooms the admins send server notices in.

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

/// A user's server notices room is set once, replaced only where it is still the one replaced
/// (two processes making a room at once keep one of them).
pub async fn server_notice_rooms_are_one_per_user(url: String) {
    let store = open_store(&url).await;
    let user = uid("@a:test");
    assert_eq!(store.server_notice_room(&user).await.expect("read"), None);
    assert_eq!(store.swap_server_notice_room(&user, None, &rid("!one:test")).await.expect("set"), rid("!one:test"));
    assert_eq!(
        store.swap_server_notice_room(&user, None, &rid("!two:test")).await.expect("set"),
        rid("!one:test"),
        "the first room made stays"
    );
    assert_eq!(
        store.swap_server_notice_room(&user, Some(&rid("!stale:test")), &rid("!two:test")).await.expect("swap"),
        rid("!one:test"),
        "a swap from a room that is no longer the user's changes nothing"
    );
    assert_eq!(
        store.swap_server_notice_room(&user, Some(&rid("!one:test")), &rid("!two:test")).await.expect("swap"),
        rid("!two:test")
    );
    assert_eq!(store.server_notice_room(&user).await.expect("read"), Some(rid("!two:test")));
    assert_eq!(store.server_notice_room(&uid("@b:test")).await.expect("read"), None, "per user");
}
