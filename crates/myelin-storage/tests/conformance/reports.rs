//! Reports for the admins, and the rooms the admins send server notices in.

use myelin_storage::*;

use super::{eid, open_store, rid, uid};

/// Reports get increasing ids; event reports are listed in either order, filtered and paged,
/// read one by one and deleted.
pub async fn event_reports_are_listed_filtered_and_deleted(url: String) {
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
    let third = store.add_report(&ReportRecord { reporter: uid("@b:test"), ..report(1) }).await.expect("add");
    let newest = ReportFilter { newest_first: true, ..ReportFilter::default() };
    let (events, total) = store.event_reports(&newest, 0, 10).await.expect("list");
    assert_eq!(total, 2, "only reports of events");
    assert_eq!(
        events,
        vec![
            ReportRecord { id: third, reporter: uid("@b:test"), ..report(1) },
            ReportRecord { id: first, ..report(1) }
        ]
    );
    let (oldest, _) = store.event_reports(&ReportFilter::default(), 0, 1).await.expect("list");
    assert_eq!(oldest.iter().map(|r| r.id).collect::<Vec<_>>(), vec![first], "oldest first, the limit");
    let (page, total) = store.event_reports(&ReportFilter::default(), 1, 10).await.expect("list");
    assert_eq!((page.iter().map(|r| r.id).collect::<Vec<_>>(), total), (vec![third], 2), "the offset");
    let by_b = ReportFilter { reporter: Some(uid("@b:test")), ..ReportFilter::default() };
    assert_eq!(store.event_reports(&by_b, 0, 10).await.expect("list").1, 1, "by reporter");
    let elsewhere = ReportFilter { room_id: Some(rid("!other:test")), ..ReportFilter::default() };
    assert_eq!(store.event_reports(&elsewhere, 0, 10).await.expect("list").1, 0, "by room");
    assert_eq!(store.report(second).await.expect("read"), Some(ReportRecord { id: second, ..report(2) }));
    assert!(store.delete_report(first).await.expect("delete"));
    assert!(!store.delete_report(first).await.expect("delete"), "gone");
    assert_eq!(store.report(first).await.expect("read"), None);
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
