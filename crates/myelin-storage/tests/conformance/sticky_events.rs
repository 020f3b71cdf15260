//! Sticky events (MSC4354): a row written with an accepted event, read until it expires.

use myelin_storage::*;

use super::{event, open_store, persisted, rid, room_with};

/// An accepted sticky event is found until it expires and only up to the position asked;
/// a rejected one is never sticky; expired rows are cleaned up.
pub async fn sticky_events_last_until_they_expire(url: String) {
    let store = open_store(&url).await;
    let last = room_with(&store, "!call:test", &["@a:test"]).await;
    let mut sticky = event("!call:test", "$sticky", "org.matrix.msc4143.rtc.member", None, &[&last]);
    sticky.sticky_until_ms = Some(5_000);
    let pos = persisted(&store, sticky).await;
    let state = store.current_state_ids(&rid("!call:test")).await.expect("state");
    let mut rejected = event("!call:test", "$rejected", "org.matrix.msc4143.rtc.member", None, &["$sticky"]);
    rejected.state = EventState::Resolved { before: state, current: None };
    rejected.sticky_until_ms = Some(5_000);
    rejected.rejection = Some("rejected: test".into());
    persisted(&store, rejected).await;
    let other_last = room_with(&store, "!other:test", &["@a:test"]).await;
    let mut elsewhere = event("!other:test", "$elsewhere", "org.matrix.msc4143.rtc.member", None, &[&other_last]);
    elsewhere.sticky_until_ms = Some(5_000);
    persisted(&store, elsewhere).await;

    let rooms = [rid("!call:test")];
    let found = store.sticky_events_in(&rooms, pos, 1_000).await.expect("read");
    assert_eq!(found.len(), 1, "the accepted one, of this room only: {found:?}");
    assert_eq!((found[0].event_id.as_str(), found[0].stream_pos, found[0].expires_ms), ("$sticky", pos, 5_000));
    assert!(store.sticky_events_in(&rooms, pos.prev(), 1_000).await.expect("read").is_empty(), "not past `upto`");
    assert!(store.sticky_events_in(&rooms, pos, 5_000).await.expect("read").is_empty(), "expired");
    assert!(store.sticky_events_in(&[], pos, 0).await.expect("read").is_empty());
    assert_eq!(store.delete_expired_sticky_events(4_999).await.expect("delete"), 0);
    assert_eq!(store.delete_expired_sticky_events(5_000).await.expect("delete"), 2, "both rooms' expired rows");
    assert!(store.sticky_events_in(&rooms, pos, 0).await.expect("read").is_empty(), "gone");
}
