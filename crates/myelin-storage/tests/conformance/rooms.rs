//! Memberships, room lists, member counts, aliases and the public directory.

use std::sync::Arc;

use myelin_storage::*;
use ruma::OwnedRoomAliasId;

use super::{event, member_event, open_store, persisted, rid, room_with, uid};

/// A room list caught up by position (`rooms_for_user_since`) and the window-wide reads of
/// sliding sync (`room_timelines`, `room_member_summaries`, `unread_counts_in_rooms`), and the rooms
/// with events after a position (`rooms_with_events_since`).
pub async fn room_list_deltas_and_window_reads(url: String) {
    let s = open_store(&url).await;
    for room in ["!one:test", "!two:test"] {
        let create = format!("$create{room}");
        persisted(&s, event(room, &create, "m.room.create", Some(""), &[])).await;
        persisted(&s, member_event(room, &format!("$join{room}"), "@a:test", Membership::Join, &[&create])).await;
    }
    let a = uid("@a:test");
    let settled = s.stream_head();
    assert!(s.rooms_for_user_since(&a, settled, 100).await.expect("delta").is_empty(), "nothing moved");

    let m1 = persisted(&s, event("!one:test", "$m1", "m.room.message", None, &["$join!one:test"])).await;
    let delta = s.rooms_for_user_since(&a, settled, 100).await.expect("delta");
    assert_eq!(delta.len(), 1, "{delta:?}");
    assert_eq!((delta[0].room_id.as_str(), delta[0].last_event_pos, delta[0].bump_pos), ("!one:test", m1, m1));

    let left =
        persisted(&s, member_event("!two:test", "$leave", "@a:test", Membership::Leave, &["$join!two:test"])).await;
    let mut delta = s.rooms_for_user_since(&a, settled, 100).await.expect("delta");
    delta.sort_by(|x, y| x.room_id.cmp(&y.room_id));
    let summary: Vec<(&str, Membership, StreamPos)> =
        delta.iter().map(|r| (r.room_id.as_str(), r.membership, r.membership_pos)).collect();
    assert_eq!(summary.len(), 2, "{delta:?}");
    assert_eq!(summary[1], ("!two:test", Membership::Leave, left));
    assert_eq!(s.rooms_for_user_since(&a, settled, 1).await.expect("delta").len(), 1, "limit");
    assert!(s.rooms_for_user_since(&a, left, 100).await.expect("delta").is_empty());
    assert!(s.rooms_for_user_since(&uid("@b:test"), settled, 100).await.expect("delta").is_empty(), "another user");

    let head = s.stream_head();
    let timelines = s
        .room_timelines(&[
            TimelineRequest { room_id: rid("!one:test"), upper: head, since: None, limit: 2 },
            TimelineRequest { room_id: rid("!two:test"), upper: head, since: Some(settled), limit: 10 },
            TimelineRequest { room_id: rid("!one:test"), upper: m1.prev(), since: None, limit: 10 },
        ])
        .await
        .expect("timelines");
    let ids = |events: &[StoredEvent]| events.iter().map(|e| e.event_id.to_string()).collect::<Vec<_>>();
    assert_eq!(ids(&timelines[0]), ["$m1", "$join!one:test"], "newest first, limited");
    assert_eq!(ids(&timelines[1]), ["$leave"], "after `since` only");
    assert_eq!(ids(&timelines[2]), ["$join!one:test", "$create!one:test"], "up to `upper`");

    let summaries = s.room_member_summaries(&[rid("!one:test"), rid("!two:test")]).await.expect("summaries");
    let ids: Vec<&str> = summaries.iter().map(|r| r.room_id.as_str()).collect();
    assert_eq!(ids, ["!one:test", "!two:test"], "in the order asked");
    let one = &summaries[0];
    assert_eq!((one.joined, one.invited), (1, 0));
    assert_eq!(one.first_members.iter().map(|h| h.user_id.as_str()).collect::<Vec<_>>(), ["@a:test"]);
    assert_eq!(one.first_members[0].displayname.as_deref(), Some("a"));
    assert!(one.current_state_group.is_some());
    let two = &summaries[1];
    assert_eq!((two.joined, two.first_members.len()), (0, 0), "a left member is not listed");
    let unread = s.unread_counts_in_rooms(&a, &[rid("!one:test"), rid("!two:test")], head).await.expect("unread");
    assert_eq!(unread.len(), 2, "one answer per room");
    assert!(s.room_member_summaries(&[]).await.expect("none").is_empty());

    // Rooms with events after a position, whoever is in them.
    let mut moved = s.rooms_with_events_since(settled, 100).await.expect("moved");
    moved.sort_by(|x, y| x.room_id.cmp(&y.room_id));
    let moved: Vec<(&str, StreamPos)> = moved.iter().map(|r| (r.room_id.as_str(), r.last_event_pos)).collect();
    assert_eq!(moved, [("!one:test", m1), ("!two:test", left)]);
    assert_eq!(s.rooms_with_events_since(settled, 1).await.expect("moved").len(), 1, "limit");
    assert!(s.rooms_with_events_since(head, 100).await.expect("moved").is_empty(), "nothing after the head");
}

/// The first members a summary lists are the earliest joined or invited ones, at most
/// `MEMBERS_IN_SUMMARY`.
pub async fn summaries_list_the_earliest_members(url: String) {
    let s = open_store(&url).await;
    let room = "!many:test";
    persisted(&s, event(room, "$create", "m.room.create", Some(""), &[])).await;
    let mut prev = "$create".to_owned();
    for n in 0..8 {
        let id = format!("$j{n}");
        let membership = if n == 1 {
            Membership::Leave
        } else if n == 2 {
            Membership::Invite
        } else {
            Membership::Join
        };
        persisted(&s, member_event(room, &id, &format!("@u{n}:test"), membership, &[prev.as_str()])).await;
        prev = id;
    }
    let summary = s.room_member_summaries(&[rid(room)]).await.expect("summary");
    let listed: Vec<&str> = summary[0].first_members.iter().map(|m| m.user_id.as_str()).collect();
    assert_eq!(listed, ["@u0:test", "@u2:test", "@u3:test", "@u4:test", "@u5:test", "@u6:test"]);
    assert_eq!(listed.len(), MEMBERS_IN_SUMMARY);
    assert_eq!((summary[0].joined, summary[0].invited), (6, 1));
}

/// The member counts a room keeps follow every kind of membership change.
pub async fn member_counts_follow_membership_changes(url: String) {
    let s = open_store(&url).await;
    let room = "!counts:test";
    persisted(&s, event(room, "$create", "m.room.create", Some(""), &[])).await;
    let mut prev = "$create".to_owned();
    let counts = |s: Arc<dyn Store>| async move {
        let summary = s.room_member_summaries(&[rid(room)]).await.expect("summary");
        (summary[0].joined, summary[0].invited)
    };
    for (n, (user, membership, expected)) in [
        ("@a:test", Membership::Join, (1, 0)),
        ("@b:test", Membership::Invite, (1, 1)),
        ("@b:test", Membership::Join, (2, 0)),
        ("@c:test", Membership::Invite, (2, 1)),
        ("@c:test", Membership::Leave, (2, 0)),
        ("@a:test", Membership::Join, (2, 0)),
        ("@a:test", Membership::Leave, (1, 0)),
        ("@b:test", Membership::Ban, (0, 0)),
        ("@a:test", Membership::Invite, (0, 1)),
        ("@a:test", Membership::Knock, (0, 0)),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("$m{n}");
        persisted(&s, member_event(room, &id, user, membership, &[prev.as_str()])).await;
        prev = id;
        assert_eq!(counts(s.clone()).await, expected, "after {user} {membership}");
    }
}

pub async fn memberships_state_and_room_mates(url: String) {
    let s = open_store(&url).await;
    let r = "!m:test";
    let room = rid(r);
    room_with(&s, r, &["@alice:test", "@bob:test"]).await;
    let invited = persisted(&s, member_event(r, "$inv", "@carol:test", Membership::Invite, &["$join1-m:test"])).await;
    persisted(&s, member_event(r, "$ban", "@dave:test", Membership::Ban, &["$inv"])).await;
    room_with(&s, "!other:test", &["@bob:test", "@erin:test"]).await;

    let users = |members: Vec<MemberRecord>| members.into_iter().map(|m| m.user_id.to_string()).collect::<Vec<_>>();
    assert_eq!(
        users(s.room_members(&room, None).await.expect("members")),
        ["@alice:test", "@bob:test", "@carol:test", "@dave:test"],
        "every membership, by user id"
    );
    assert_eq!(
        users(s.room_members(&room, Some(Membership::Join)).await.expect("members")),
        ["@alice:test", "@bob:test"]
    );
    assert_eq!(users(s.room_members(&room, Some(Membership::Ban)).await.expect("members")), ["@dave:test"]);
    let carol = s.membership(&room, &uid("@carol:test")).await.expect("membership").expect("exists");
    assert_eq!((carol.membership, carol.stream_pos, carol.event_id.as_str()), (Membership::Invite, invited, "$inv"));
    assert!(s.membership(&room, &uid("@zed:test")).await.expect("membership").is_none());
    let changed = s.membership_changes(&room, invited.prev(), s.stream_head()).await.expect("changes");
    assert_eq!(users(changed).len(), 2, "carol's invite and dave's ban");

    let alice_rooms = s.rooms_for_user(&uid("@alice:test")).await.expect("rooms");
    assert_eq!(alice_rooms.len(), 1);
    assert_eq!(
        (alice_rooms[0].membership, alice_rooms[0].membership_sender.as_str()),
        (Membership::Join, "@alice:test")
    );
    let carol_rooms = s.rooms_for_user(&uid("@carol:test")).await.expect("rooms");
    assert_eq!((carol_rooms[0].membership, carol_rooms[0].membership_event_id.as_str()), (Membership::Invite, "$inv"));

    let mut mates: Vec<String> =
        s.room_mates(&uid("@bob:test")).await.expect("mates").into_iter().map(|u| u.to_string()).collect();
    mates.sort();
    assert_eq!(mates, ["@alice:test", "@bob:test", "@carol:test", "@erin:test"], "joined or invited, not banned");
    assert!(s.room_mates(&uid("@carol:test")).await.expect("mates").is_empty(), "an invite shares nothing yet");
    let sharing = s
        .sharing_rooms_with(
            &uid("@alice:test"),
            &[uid("@bob:test"), uid("@erin:test"), uid("@carol:test"), uid("@dave:test")],
        )
        .await
        .expect("sharing");
    let mut sharing: Vec<String> = sharing.into_iter().map(|u| u.to_string()).collect();
    sharing.sort();
    assert_eq!(sharing, ["@bob:test", "@carol:test"]);
}

pub async fn forgetting_a_room_is_remembered_until_rejoining(url: String) {
    let s = open_store(&url).await;
    let r = "!f:test";
    room_with(&s, r, &["@a:test"]).await;
    persisted(&s, member_event(r, "$leave", "@a:test", Membership::Leave, &["$join0-f:test"])).await;
    s.forget_room(&uid("@a:test"), &rid(r)).await.expect("forget");
    let rooms = s.rooms_for_user(&uid("@a:test")).await.expect("rooms");
    assert!(rooms[0].forgotten);
    persisted(&s, member_event(r, "$rejoin", "@a:test", Membership::Join, &["$leave"])).await;
    let rooms = s.rooms_for_user(&uid("@a:test")).await.expect("rooms");
    assert!(!rooms[0].forgotten, "joining again un-forgets");
}

pub async fn aliases_and_the_public_directory(url: String) {
    let s = open_store(&url).await;
    room_with(&s, "!big:test", &["@a:test", "@b:test", "@c:test"]).await;
    room_with(&s, "!small:test", &["@a:test"]).await;
    room_with(&s, "!hidden:test", &["@a:test", "@b:test"]).await;
    let alias = |a: &str| OwnedRoomAliasId::try_from(a).expect("alias");
    let (big, small) = (rid("!big:test"), rid("!small:test"));

    s.create_alias(&alias("#big:test"), &big, &uid("@a:test")).await.expect("alias");
    s.create_alias(&alias("#also-big:test"), &big, &uid("@b:test")).await.expect("alias");
    assert!(s.create_alias(&alias("#big:test"), &small, &uid("@a:test")).await.expect_err("taken").is_conflict());
    assert_eq!(s.resolve_alias(&alias("#big:test")).await.expect("resolve"), Some((big.clone(), uid("@a:test"))));
    assert!(s.resolve_alias(&alias("#nope:test")).await.expect("resolve").is_none());
    let aliases: Vec<String> =
        s.room_aliases(&big).await.expect("aliases").into_iter().map(|a| a.to_string()).collect();
    assert_eq!(aliases, ["#also-big:test", "#big:test"]);
    assert!(s.delete_alias(&alias("#also-big:test")).await.expect("delete"));
    assert!(!s.delete_alias(&alias("#also-big:test")).await.expect("delete"), "already gone");
    assert_eq!(s.room_aliases(&big).await.expect("aliases").len(), 1);

    s.set_room_public(&small, true).await.expect("public");
    s.set_room_public(&big, true).await.expect("public");
    assert!(s.get_room(&big).await.expect("room").expect("exists").is_public);
    let (page, total) = s.public_rooms(0, 10).await.expect("directory");
    let listed: Vec<(String, u64)> = page.iter().map(|r| (r.room_id.to_string(), r.joined_members)).collect();
    assert_eq!(listed, [("!big:test".into(), 3), ("!small:test".into(), 1)], "by members");
    assert_eq!(total, 2);
    let (second, _) = s.public_rooms(1, 1).await.expect("directory");
    assert_eq!(second.iter().map(|r| r.room_id.as_str()).collect::<Vec<_>>(), ["!small:test"], "paged");
    s.set_room_public(&big, false).await.expect("private");
    assert_eq!(s.public_rooms(0, 10).await.expect("directory").1, 1);
}
