//! What federation needs of storage: events placed with a given state (the DAG forks and its
//! states are resolved by the caller), rejected events and outliers kept outside the timeline,
//! the outgoing queue and the log of received transactions.

use myelin_storage::*;
use ruma::{OwnedServerName, events::StateEventType};

use super::{eid, event, member_event, open_store, persisted, rid, room_with, state_type, uid};

fn sorted(mut state: Vec<StateEntry>) -> Vec<StateEntry> {
    state.sort();
    state
}

/// An event placed on a fork gets the state it was given as its state before; the room's current
/// state becomes the resolved state given with it, membership rows follow the changes, and the
/// forward extremities keep both branches until an event joins them.
pub async fn events_with_given_state_fork_and_merge(url: String) {
    let store = open_store(&url).await;
    let room = "!fork:test";
    let last = room_with(&store, room, &["@a:test"]).await;
    let before = sorted(store.current_state_ids(&rid(room)).await.expect("state"));
    // Two events on the same parent: the second is a fork.
    persisted(&store, event(room, "$left", "m.room.topic", Some(""), &[&last])).await;
    let mut right = member_event(room, "$right", "@b:remote", Membership::Join, &[&last]);
    let mut resolved = before.clone();
    resolved.push((state_type("m.room.topic"), String::new(), eid("$left")));
    resolved.push((StateEventType::RoomMember, "@b:remote".to_owned(), eid("$right")));
    right.state = EventState::Resolved { before: before.clone(), current: Some(resolved.clone()) };
    persisted(&store, right).await;

    let stored = store.get_event(&eid("$right")).await.expect("get").expect("stored");
    let state_before = store.state_group(stored.state_before.expect("state before")).await.expect("group");
    assert_eq!(sorted(state_before), before, "the state before is the one given");
    assert_eq!(sorted(store.current_state_ids(&rid(room)).await.expect("state")), sorted(resolved));
    let b = store.membership(&rid(room), &uid("@b:remote")).await.expect("membership").expect("row");
    assert_eq!(b.membership, Membership::Join);
    let mut extremities: Vec<String> = store
        .forward_extremities(&rid(room))
        .await
        .expect("extremities")
        .into_iter()
        .map(|e| e.event_id.to_string())
        .collect();
    extremities.sort();
    assert_eq!(extremities, vec!["$left", "$right"], "both branches stay forward extremities");
    // The state at the newest position is the resolved one, not the fork's own.
    let group = store.state_group_at(&rid(room), stored.stream_pos).await.expect("at").expect("group");
    assert!(store.state_group(group).await.expect("group").iter().any(|(_, _, e)| e == "$left"));

    // A member change resolved in from the other branch (not the event's own) moves its row.
    let mut merge = event(room, "$merge", "m.room.message", None, &["$left", "$right"]);
    let mut current = sorted(store.current_state_ids(&rid(room)).await.expect("state"));
    current.retain(|(t, k, _)| !(*t == StateEventType::RoomMember && k == "@b:remote"));
    current.push((StateEventType::RoomMember, "@b:remote".to_owned(), eid("$right")));
    merge.state = EventState::Resolved { before: current.clone(), current: None };
    persisted(&store, merge).await;
    let extremities = store.forward_extremities(&rid(room)).await.expect("extremities");
    assert_eq!(extremities.len(), 1, "a merge event leaves one extremity");
}

/// A rejected event is stored with its state but changes nothing: no current state, no
/// membership, no extremity, no timeline entry. Outliers are stored once, outside timelines.
pub async fn rejected_events_and_outliers_stay_out_of_the_timeline(url: String) {
    let store = open_store(&url).await;
    let room = "!reject:test";
    let last = room_with(&store, room, &["@a:test"]).await;
    let head = store.stream_head();
    let state = store.current_state_ids(&rid(room)).await.expect("state");
    let mut bad = member_event(room, "$bad", "@mallory:evil", Membership::Join, &[&last]);
    bad.state = EventState::Resolved { before: state.clone(), current: None };
    bad.rejection = Some("rejected: not invited".to_owned());
    persisted(&store, bad).await;
    let stored = store.get_event(&eid("$bad")).await.expect("get").expect("kept");
    assert_eq!(stored.rejection.as_deref(), Some("rejected: not invited"));
    assert!(stored.outlier && stored.state_before.is_some());
    assert_eq!(stored.state_after, stored.state_before, "a rejected event changes no state");
    assert_eq!(sorted(store.current_state_ids(&rid(room)).await.expect("state")), sorted(state.clone()));
    assert!(store.membership(&rid(room), &uid("@mallory:evil")).await.expect("membership").is_none());
    let extremities = store.forward_extremities(&rid(room)).await.expect("extremities");
    assert_eq!(extremities.iter().map(|e| e.event_id.to_string()).collect::<Vec<_>>(), vec![last.clone()]);
    let timeline = store
        .room_events(&rid(room), store.stream_head(), Some(head), Direction::Backward, 10)
        .await
        .expect("timeline");
    assert!(timeline.is_empty(), "a rejected event is not in the timeline: {timeline:?}");

    let mut soft = member_event(room, "$soft", "@eve:evil", Membership::Join, &[&last]);
    soft.state = EventState::Resolved { before: state.clone(), current: None };
    soft.rejection = Some("soft_failed: banned in the current state".to_owned());
    persisted(&store, soft).await;
    let stored = store.get_event(&eid("$soft")).await.expect("get").expect("kept");
    assert_ne!(stored.state_after, stored.state_before, "a soft-failed event keeps its place in the state after it");
    assert!(store.membership(&rid(room), &uid("@eve:evil")).await.expect("membership").is_none());

    let outlier = |id: &str| OutlierEvent {
        event_id: eid(id),
        room_id: rid(room),
        sender: uid("@c:remote"),
        event_type: "m.room.member".into(),
        state_key: Some("@c:remote".into()),
        origin_server_ts: 5,
        depth: 3,
        json: "{}".into(),
        rejection: None,
    };
    store.persist_outliers(vec![outlier("$o1"), outlier("$o2"), outlier("$o1")]).await.expect("outliers");
    store.persist_outliers(vec![outlier("$o2")]).await.expect("outliers again");
    let found = store.get_events(&[eid("$o1"), eid("$o2")]).await.expect("get");
    assert_eq!(found.len(), 2);
    assert!(found.iter().all(|e| e.outlier && e.state_before.is_none()));
    let timeline = store
        .room_events(&rid(room), store.stream_head(), Some(head), Direction::Backward, 10)
        .await
        .expect("timeline");
    assert!(timeline.is_empty(), "outliers are not in the timeline");
    assert!(
        store
            .membership_events_for_user(&uid("@c:remote"), head, store.stream_head())
            .await
            .expect("members")
            .is_empty(),
        "an outlier member event is no membership change"
    );
}

/// The outbox: PDU rows written with their event, EDUs queued, read in batches per destination
/// within the PDU and EDU limits, deleted once sent; received transactions keep their answer.
pub async fn the_outbox_and_the_inbound_transaction_log(url: String) {
    let store = open_store(&url).await;
    let room = "!out:test";
    let last = room_with(&store, room, &["@a:test"]).await;
    let remote: OwnedServerName = "remote.test".try_into().expect("name");
    let other: OwnedServerName = "other.test".try_into().expect("name");
    let mut prev = last;
    for i in 0..3 {
        let id = format!("$m{i}");
        let mut ev = event(room, &id, "m.room.message", None, &[&prev]);
        ev.destinations = vec![remote.clone(), other.clone()];
        persisted(&store, ev).await;
        prev = id;
    }
    store.queue_edu(std::slice::from_ref(&remote), r#"{"edu_type":"m.typing"}"#, 9).await.expect("edu");
    let mut destinations = store.outbox_destinations().await.expect("destinations");
    destinations.sort();
    assert_eq!(destinations, vec![other.clone(), remote.clone()]);

    let batch = store.outbox(&remote, 2, 10).await.expect("outbox");
    assert_eq!(batch.len(), 2, "at most two PDUs: {batch:?}");
    assert_eq!(batch[0].event.as_ref().map(|(id, _)| id.to_string()), Some("$m0".to_owned()));
    assert!(batch[0].event.as_ref().and_then(|(_, json)| json.as_ref()).is_some(), "with the event's JSON");
    store.delete_outbox(&batch.iter().map(|e| e.id).collect::<Vec<_>>()).await.expect("delete");
    let rest = store.outbox(&remote, 50, 100).await.expect("outbox");
    assert_eq!(rest.len(), 2);
    assert_eq!(rest[1].edu.as_deref(), Some(r#"{"edu_type":"m.typing"}"#));
    assert_eq!(rest[1].created_ms, 9, "with when it was queued");
    store.delete_outbox(&rest.iter().map(|e| e.id).collect::<Vec<_>>()).await.expect("delete");
    assert_eq!(store.outbox_destinations().await.expect("destinations"), vec![other.clone()]);

    // Stored events queued again for one server (sticky events for a server that just joined).
    let late: OwnedServerName = "late.test".try_into().expect("name");
    let ids = [eid("$m2"), eid("$m0")];
    store.queue_pdus(&late, &ids, 11).await.expect("queue");
    store.queue_pdus(&late, &[], 11).await.expect("nothing to queue");
    let queued = store.outbox(&late, 50, 100).await.expect("outbox");
    let queued_ids: Vec<String> =
        queued.iter().filter_map(|e| e.event.as_ref().map(|(id, _)| id.to_string())).collect();
    assert_eq!(queued_ids, ["$m2", "$m0"], "in the order given");
    assert!(queued.iter().all(|e| e.created_ms == 11 && e.event.as_ref().is_some_and(|(_, json)| json.is_some())));
    store.delete_outbox(&queued.iter().map(|e| e.id).collect::<Vec<_>>()).await.expect("delete");

    assert_eq!(store.inbound_txn(&remote, "t1").await.expect("txn"), None);
    store.record_inbound_txn(&remote, "t1", r#"{"pdus":{}}"#, 1).await.expect("record");
    store.record_inbound_txn(&remote, "t1", r#"{"other":1}"#, 2).await.expect("record again");
    assert_eq!(store.inbound_txn(&remote, "t1").await.expect("txn").as_deref(), Some(r#"{"pdus":{}}"#));
    assert_eq!(store.inbound_txn(&other, "t1").await.expect("txn"), None, "per origin");

    // A destination that talks to us cuts its sender's backoff short.
    let job = NewJob {
        kind: "federation_send".into(),
        dedupe_key: Some("send:remote".into()),
        payload: "{}".into(),
        run_at_ms: 10_000,
    };
    assert!(store.schedule_job(job, 0).await.expect("schedule"));
    assert!(store.advance_job("send:remote", 5).await.expect("advance"));
    assert_eq!(store.next_job_due(&JobKinds::All).await.expect("due"), Some(5));
    assert!(!store.advance_job("send:remote", 7).await.expect("advance"), "already due sooner");
    assert!(!store.advance_job("send:nobody", 1).await.expect("advance"), "no such job");
}

/// A local user's invite to a room this server is not in: the room gets a row (no state), the
/// user a membership row at a new position (their room list sees it), the invite is an outlier
/// and the stripped state is kept with it; the rejection replaces all three.
pub async fn memberships_of_rooms_this_server_is_not_in(url: String) {
    let store = open_store(&url).await;
    let room = "!elsewhere:remote";
    let user = uid("@local:test");
    let head = store.stream_head();
    let outlier = |id: &str, membership: &str| OutlierEvent {
        event_id: eid(id),
        room_id: rid(room),
        sender: uid("@inviter:remote"),
        event_type: "m.room.member".into(),
        state_key: Some(user.to_string()),
        origin_server_ts: 5,
        depth: 7,
        json: format!(r#"{{"content":{{"membership":"{membership}"}}}}"#),
        rejection: None,
    };
    let update =
        |membership| MembershipUpdate { user_id: user.clone(), membership, displayname: None, avatar_url: None };
    let invite = OutOfRoomMembership {
        event: outlier("$invite", "invite"),
        room_version: ruma::RoomVersionId::V12,
        creator: uid("@creator:remote"),
        update: update(Membership::Invite),
        stripped_state: Some(r#"[{"type":"m.room.name"}]"#.to_owned()),
    };
    let pos = store.persist_out_of_room_membership(invite.clone()).await.expect("invite");
    assert!(pos > head);
    let row = store.get_room(&rid(room)).await.expect("room").expect("a room row");
    assert_eq!((row.room_version.as_str(), row.current_state_group), ("12", None));
    assert_eq!(row.creator, uid("@creator:remote"));
    let member = store.membership(&rid(room), &user).await.expect("membership").expect("row");
    assert_eq!((member.membership, member.event_id.as_str()), (Membership::Invite, "$invite"));
    let rooms = store.rooms_for_user_since(&user, head, 10).await.expect("rooms");
    assert_eq!(rooms.len(), 1, "the user's room list moves");
    let stored = store.get_event(&eid("$invite")).await.expect("get").expect("stored");
    assert!(stored.outlier);
    let kept = store.remote_room_state(&rid(room), &user).await.expect("stripped").expect("kept");
    assert_eq!((kept.0.as_str(), kept.1.as_str()), ("$invite", r#"[{"type":"m.room.name"}]"#));

    // Rejected: the invite's state goes, the row moves on, the room's row stays as it was.
    let reject = OutOfRoomMembership {
        event: outlier("$reject", "leave"),
        room_version: ruma::RoomVersionId::V11,
        creator: uid("@someone:else"),
        update: update(Membership::Leave),
        stripped_state: None,
    };
    let later = store.persist_out_of_room_membership(reject).await.expect("reject");
    assert!(later > pos);
    let member = store.membership(&rid(room), &user).await.expect("membership").expect("row");
    assert_eq!((member.membership, member.event_id.as_str()), (Membership::Leave, "$reject"));
    assert!(store.remote_room_state(&rid(room), &user).await.expect("stripped").is_none());
    let row = store.get_room(&rid(room)).await.expect("room").expect("a room row");
    assert_eq!(row.room_version.as_str(), "12", "an existing room row is kept");
    // The same invite again changes nothing but the membership row.
    store.persist_out_of_room_membership(invite).await.expect("invite again");
    assert_eq!(store.get_events(&[eid("$invite")]).await.expect("get").len(), 1);
}

/// History fetched from another server goes before everything the room holds, newest first as
/// given, at positions below every sync token; a second batch goes before the first; rejected
/// and unknown events and events already in a timeline are skipped; a backfilled redaction marks
/// its target.
pub async fn backfilled_history_goes_before_the_timeline(url: String) {
    let store = open_store(&url).await;
    let room = "!history:test";
    let last = room_with(&store, room, &["@a:test"]).await;
    let head = store.stream_head();
    let group = store.get_event(&eid(&last)).await.expect("get").expect("stored").state_after.expect("group");
    let outlier = |id: &str, rejection: Option<&str>| OutlierEvent {
        event_id: eid(id),
        room_id: rid(room),
        sender: uid("@c:remote"),
        event_type: "m.room.message".into(),
        state_key: None,
        origin_server_ts: 5,
        depth: 2,
        json: r#"{"type":"m.room.message","content":{}}"#.into(),
        rejection: rejection.map(Into::into),
    };
    store
        .persist_outliers(vec![outlier("$h3", None), outlier("$h2", None), outlier("$bad", Some("rejected: no"))])
        .await
        .expect("outliers");
    let backfilled = |id: &str| BackfilledEvent {
        event_id: eid(id),
        state_group: group,
        relation: None,
        redacts: None,
        search: None,
    };
    let mut reaction = backfilled("$h2");
    reaction.relation = Some((ruma::events::relation::RelationType::Thread, eid("$h3")));
    let placed = store
        .place_backfilled(vec![
            backfilled("$h3"),
            reaction,
            backfilled("$bad"),
            backfilled("$unknown"),
            backfilled(&last),
        ])
        .await
        .expect("place");
    assert_eq!(placed, vec![eid("$h3"), eid("$h2")], "only accepted outliers are placed");
    store.persist_outliers(vec![outlier("$h1", None)]).await.expect("outlier");
    let mut redaction = backfilled("$h1");
    redaction.redacts = Some(eid("$h2"));
    assert_eq!(store.place_backfilled(vec![redaction]).await.expect("place"), vec![eid("$h1")]);

    let everything =
        store.room_events(&rid(room), store.stream_head(), None, Direction::Backward, 100).await.expect("timeline");
    let ids: Vec<String> = everything.iter().map(|e| e.event_id.to_string()).collect();
    assert_eq!(&ids[ids.len() - 3..], ["$h3", "$h2", "$h1"], "backfilled history is older than the room's events");
    assert!(everything[everything.len() - 3..].iter().all(|e| e.stream_pos < StreamPos::ZERO && !e.outlier));
    let h2 = store.get_event(&eid("$h2")).await.expect("get").expect("stored");
    assert_eq!((h2.state_before, h2.state_after), (Some(group), Some(group)));
    assert_eq!(h2.redacted_by, Some(eid("$h1")), "a backfilled redaction applies");
    let threads = store.thread_roots(&rid(room), store.stream_head(), 10).await.expect("threads");
    assert_eq!(threads.iter().map(|(e, _)| e.event_id.to_string()).collect::<Vec<_>>(), vec!["$h3"]);
    // A sync from any token it handed out never sees them.
    let since_start =
        store.room_events(&rid(room), store.stream_head(), Some(StreamPos::ZERO), Direction::Backward, 100).await;
    assert!(since_start.expect("sync").iter().all(|e| e.stream_pos > StreamPos::ZERO));
    let forward = store.room_events(&rid(room), head, None, Direction::Forward, 100).await.expect("forward");
    assert!(forward.is_empty(), "nothing new after the head: {forward:?}");
}

/// A room joined with partial state is marked until its state is completed: then every state
/// of the room holds the members that were left out, but for a member whose event came later
/// (the later one stays); the member rows and counts follow, and the mark goes.
pub async fn partial_state_is_completed_without_undoing_later_changes(url: String) {
    let store = open_store(&url).await;
    let room = "!partial:test";
    let last = room_with(&store, room, &["@a:test"]).await;
    let servers: Vec<OwnedServerName> = vec!["remote.test".try_into().expect("name")];
    store.mark_partial_state(&rid(room), &eid(&last), &servers).await.expect("mark");
    let marked = store.partial_state(&rid(room)).await.expect("read").expect("marked");
    assert_eq!((marked.join_event_id, marked.servers), (eid(&last), servers));
    // @b changes after the join; @b's and @c's earlier events were left out of the state.
    persisted(&store, member_event(room, "$b-new", "@b:remote", Membership::Leave, &[&last])).await;
    persisted(&store, event(room, "$after", "m.room.message", None, &["$b-new"])).await;
    let joined_before = store.room_members(&rid(room), Some(Membership::Join)).await.expect("members").len();
    let member = |id: &str, user: &str| MemberChange {
        event_id: eid(id),
        sender: uid(user),
        update: MembershipUpdate {
            user_id: uid(user),
            membership: Membership::Join,
            displayname: None,
            avatar_url: None,
        },
    };
    let missing = vec![
        (StateEventType::RoomMember, "@b:remote".to_owned(), eid("$b-old")),
        (StateEventType::RoomMember, "@c:remote".to_owned(), eid("$c")),
    ];
    let before_completion = store.stream_head();
    let groups = store
        .complete_partial_state(&rid(room), missing, vec![member("$b-old", "@b:remote"), member("$c", "@c:remote")])
        .await
        .expect("complete");
    let changes = store.membership_changes(&rid(room), before_completion, store.stream_head()).await.expect("changes");
    let changed: Vec<String> = changes.iter().map(|m| m.user_id.to_string()).collect();
    assert_eq!(changed, vec!["@c:remote"], "the members learnt are news after the completion");
    let newest = store.get_room(&rid(room)).await.expect("room").expect("row").last_event_pos;
    assert!(newest > before_completion, "the room has news for syncs");
    assert!(!groups.is_empty());
    assert!(store.partial_state(&rid(room)).await.expect("read").is_none(), "the mark goes");
    let current = sorted(store.current_state_ids(&rid(room)).await.expect("state"));
    assert!(current.contains(&(StateEventType::RoomMember, "@c:remote".to_owned(), eid("$c"))));
    assert!(current.contains(&(StateEventType::RoomMember, "@b:remote".to_owned(), eid("$b-new"))), "{current:?}");
    let after = store.get_event(&eid("$after")).await.expect("get").expect("stored");
    let state = sorted(store.state_group(after.state_before.expect("group")).await.expect("group"));
    assert!(state.contains(&(StateEventType::RoomMember, "@c:remote".to_owned(), eid("$c"))), "{state:?}");
    assert!(state.contains(&(StateEventType::RoomMember, "@b:remote".to_owned(), eid("$b-new"))), "{state:?}");
    let c = store.membership(&rid(room), &uid("@c:remote")).await.expect("membership").expect("row");
    assert_eq!(c.membership, Membership::Join);
    let b = store.membership(&rid(room), &uid("@b:remote")).await.expect("membership").expect("row");
    assert_eq!(b.membership, Membership::Leave, "the later membership stays");
    let joined = store.room_members(&rid(room), Some(Membership::Join)).await.expect("members").len();
    assert_eq!(joined, joined_before + 1, "one more joined member");
}
