//! Events: the atomic persist path and the timeline reads.

use async_trait::async_trait;

use myelin_core::{
    Membership, StateGroupId,
    types::{
        DeviceId, EventId, OwnedEventId, OwnedUserId, RoomId, TimelineEventType, TransactionId, UserId,
        state_event_type,
    },
};
use ruma::events::relation::RelationType;

use super::{
    EVENT_COLUMN_COUNT, EVENT_COLUMNS, event_from_row,
    state::{create_state_group, create_state_snapshot, load_state_group},
};
use crate::{
    BackfilledEvent, Database, Direction, EventRepo, EventState, MembershipUpdate, NewEvent, OutOfRoomMembership,
    OutlierEvent, PendingPersist, PersistOutcome, StorageError, StorageResult, StoredEvent, StreamPos,
    db::{Change, Conn, Params, Positions, ToValue, Write},
};

/// Queues a push job (`PUSH_JOB`, keyed as `push_job_key`, the user id as its payload) for each
/// of users `$1` who has a pusher, due at once (not at the event's own time, which another
/// server may have set anywhere), unless the user has one queued already; `$2` is its creation
/// time.
const PUSH_JOB_INSERT: &str = "INSERT INTO jobs (kind, dedupe_key, payload, run_at_ms, created_ms)
     SELECT DISTINCT 'push', 'push:' || user_id, user_id, 0, CAST($2 AS BIGINT)
     FROM pushers WHERE user_id = ANY($1)
     ON CONFLICT (dedupe_key) DO NOTHING";

/// A row of the search index (`SearchRepo`): event id, room, sender, key, position, text.
const SEARCH_INSERT: &str = "INSERT INTO event_search (event_id, room_id, sender, search_key, stream_pos, body)
     VALUES ($1, $2, $3, $4, $5, $6)";

/// A room's events in `(to, from]`, newest first, at most `limit` (also read for many rooms at
/// once by sliding sync).
pub(crate) fn backward_events_sql(limit: usize) -> String {
    format!(
        "SELECT {EVENT_COLUMNS} FROM events e WHERE e.room_id = $1 AND e.stream_pos <= $2 AND e.stream_pos > $3
         AND e.outlier = 0 ORDER BY e.stream_pos DESC LIMIT {limit}"
    )
}

async fn events(c: &mut Conn<'_>, sql: &str, params: Params<'_>) -> StorageResult<Vec<StoredEvent>> {
    c.query(sql, params, event_from_row).await
}

/// Writes one event with everything that goes with it, in the caller's transaction.
async fn persist(c: &mut Conn<'_>, positions: &mut Positions, ev: NewEvent) -> StorageResult<PersistOutcome> {
    let (device, txn_id) = match &ev.txn {
        Some((d, t)) => (Some(d.as_str()), Some(t.as_str())),
        None => (None, None),
    };
    if let Some(room) = &ev.new_room {
        c.execute(
            "INSERT INTO rooms (room_id, room_version, creator) VALUES ($1, $2, $3)",
            &[&ev.room_id, &room.room_version, &room.creator],
        )
        .await?;
    }
    // The room's row, locked until the commit: another process adding an event to the room waits
    // here, then finds the extremities this one leaves (and answers `StaleHead`). One row per
    // forward extremity, each with the room's state group and the event of the transaction id.
    let rows = c
        .query(
            "SELECT r.current_state_group,
                    (SELECT t.event_id FROM txn_ids t WHERE t.user_id = $2 AND t.device_id = $3 AND t.txn_id = $4),
                    f.event_id
             FROM rooms r LEFT JOIN forward_extremities f ON f.room_id = r.room_id
             WHERE r.room_id = $1 FOR UPDATE OF r",
            &[&ev.room_id, &ev.sender, &device, &txn_id],
            |r| {
                Ok((
                    r.get::<Option<StateGroupId>>(0)?,
                    r.get::<Option<OwnedEventId>>(1)?,
                    r.get::<Option<OwnedEventId>>(2)?,
                ))
            },
        )
        .await?;
    let Some((current_group, earlier, _)) = rows.first().cloned() else {
        return Err(StorageError::Corrupt(format!("event {} for unknown room {}", ev.event_id, ev.room_id)));
    };
    if let Some(event_id) = earlier {
        return Ok(PersistOutcome::DuplicateTxn { event_id });
    }
    if let Some(expected) = &ev.expected_extremities {
        let mut stored: Vec<OwnedEventId> = rows.into_iter().filter_map(|(_, _, extremity)| extremity).collect();
        let mut expected = expected.clone();
        stored.sort();
        expected.sort();
        if stored != expected {
            return Ok(PersistOutcome::StaleHead);
        }
    }
    let accepted = ev.rejection.is_none();
    // The state before the event, and the room's current state once it is added.
    let (state_before, room_state_after) = match &ev.state {
        EventState::Current => (current_group, None),
        EventState::Resolved { before, current } => {
            let before_group = create_state_snapshot(c, &ev.room_id, before).await?;
            let room_after = match current {
                Some(current) if accepted => Some(create_state_snapshot(c, &ev.room_id, current).await?),
                _ => None,
            };
            (Some(before_group), room_after)
        }
    };
    let state_after = match &ev.state_key {
        Some(state_key) if !crate::is_rejection(ev.rejection.as_deref()) => {
            let state_type = state_event_type(&ev.event_type);
            Some(create_state_group(c, &ev.room_id, state_before, &state_type, state_key, &ev.event_id).await?)
        }
        // A rejected event changes no state.
        _ => state_before,
    };
    if !accepted {
        return persist_rejected(c, positions, &ev, state_before, state_after).await;
    }
    // The room's current state group after this event.
    let current_after = room_state_after.or(state_after);
    let current_changes = match (&ev.state, current_after) {
        (EventState::Resolved { .. }, Some(group)) if current_after != current_group => {
            Some(load_state_group(c, group).await?)
        }
        _ => None,
    };
    // A message (no state, nothing sticky, no resolved state from another server) changes only
    // timelines and counts; anything else may change memberships and sticky events too.
    let message = ev.state_key.is_none()
        && ev.membership.is_none()
        && ev.member_changes.is_empty()
        && ev.sticky_until_ms.is_none()
        && matches!(ev.state, EventState::Current);
    let change = if message { Change::Message } else { Change::Any };
    let pos = positions.next(change).await?;
    let (rel_type, relates_to) = match &ev.relation {
        Some((r, e)) => (Some(r.as_str()), Some(e.as_str())),
        None => (None, None),
    };
    let bump = crate::is_bump_event(&ev.event_type);

    // The rest is writes, sent as one pipeline on PostgreSQL (they run in this order).
    let event_params: [&dyn ToValue; 16] = [
        &pos,
        &ev.event_id,
        &ev.room_id,
        &ev.depth,
        &ev.sender,
        &ev.event_type,
        &ev.state_key,
        &ev.origin_server_ts,
        &ev.json,
        &state_before,
        &state_after,
        &device,
        &txn_id,
        &rel_type,
        &relates_to,
        &room_state_after,
    ];
    let room_params: [&dyn ToValue; 4] = [&ev.room_id, &current_after, &pos, &bump];
    let prev_params: [&dyn ToValue; 2] = [&ev.room_id, &ev.prev_events];
    let extremity_params: [&dyn ToValue; 2] = [&ev.room_id, &ev.event_id];
    let mut writes: Vec<Write<'_>> = vec![
        Write::Sql(
            "INSERT INTO events (stream_pos, event_id, room_id, depth, sender, event_type, state_key, origin_server_ts,
                                 json, state_before, state_after, sender_device, txn_id, rel_type, relates_to,
                                 room_state_after)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
            &event_params,
        ),
        Write::Sql(
            "UPDATE rooms SET current_state_group = $2, last_event_pos = $3,
                 bump_pos = CASE WHEN $4 THEN $3 ELSE bump_pos END WHERE room_id = $1",
            &room_params,
        ),
        Write::Sql("DELETE FROM forward_extremities WHERE room_id = $1 AND event_id = ANY($2)", &prev_params),
        Write::Sql("INSERT INTO forward_extremities (room_id, event_id) VALUES ($1, $2)", &extremity_params),
    ];
    let sticky_params: [&dyn ToValue; 4];
    if let Some(until) = &ev.sticky_until_ms {
        sticky_params = [&ev.event_id, &ev.room_id, &pos, until];
        writes.push(Write::Sql(
            "INSERT INTO sticky_events (event_id, room_id, stream_pos, expires_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (event_id) DO NOTHING",
            &sticky_params,
        ));
    }
    let current_state_params: [&dyn ToValue; 4];
    let replace_params: [&dyn ToValue; 1] = [&ev.room_id];
    let current_rows: Vec<Vec<&dyn ToValue>>;
    if let Some(entries) = &current_changes {
        // The resolved state replaces the room's current state as a whole.
        writes.push(Write::Sql("DELETE FROM current_state WHERE room_id = $1", &replace_params));
        current_rows = entries.iter().map(|(t, k, e)| -> Vec<&dyn ToValue> { vec![&ev.room_id, t, k, e] }).collect();
        writes.push(Write::Rows("INSERT INTO current_state (room_id, event_type, state_key, event_id)", &current_rows));
    } else if let Some(state_key) = &ev.state_key {
        current_state_params = [&ev.room_id, &ev.event_type, state_key, &ev.event_id];
        writes.push(Write::Sql(
            "INSERT INTO current_state (room_id, event_type, state_key, event_id) VALUES ($1, $2, $3, $4)
             ON CONFLICT (room_id, event_type, state_key) DO UPDATE SET event_id = excluded.event_id",
            &current_state_params,
        ));
    }
    // The event's own membership row, then the rows that moved with the resolved state.
    let own = ev.membership.as_ref().map(|m| (&ev.event_id, &ev.sender, m));
    let members: Vec<(&OwnedEventId, &OwnedUserId, &MembershipUpdate)> =
        own.into_iter().chain(ev.member_changes.iter().map(|m| (&m.event_id, &m.sender, &m.update))).collect();
    let member_values: Vec<(i64, i64, bool)> = members
        .iter()
        .map(|(_, _, m)| {
            (
                i64::from(m.membership == Membership::Join),
                i64::from(m.membership == Membership::Invite),
                // A user who is (again) part of the room has not forgotten it.
                m.membership.is_current(),
            )
        })
        .collect();
    let mut member_params: Vec<[&dyn ToValue; 9]> = Vec::with_capacity(members.len());
    let mut member_count_params: Vec<[&dyn ToValue; 6]> = Vec::with_capacity(members.len());
    for ((event_id, sender, m), (joins, invites, current)) in members.iter().zip(&member_values) {
        member_params.push([
            &ev.room_id,
            &m.user_id,
            &m.membership,
            *event_id,
            &pos,
            &m.displayname,
            &m.avatar_url,
            *sender,
            current,
        ]);
        member_count_params.push([&ev.room_id, &m.user_id, joins, invites, &Membership::Join, &Membership::Invite]);
    }
    for (member, counts) in member_params.iter().zip(&member_count_params) {
        // The room's member counts, from the membership this replaces (before the upsert).
        writes.push(Write::Sql(
            "UPDATE rooms SET
                 joined_members = joined_members + $3
                     - (SELECT COUNT(*) FROM room_members WHERE room_id = $1 AND user_id = $2 AND membership = $5),
                 invited_members = invited_members + $4
                     - (SELECT COUNT(*) FROM room_members WHERE room_id = $1 AND user_id = $2 AND membership = $6)
             WHERE room_id = $1",
            counts,
        ));
        writes.push(Write::Sql(
            "INSERT INTO room_members (room_id, user_id, membership, event_id, stream_pos, displayname, avatar_url, forgotten, sender)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8)
             ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, event_id = excluded.event_id,
                 sender = excluded.sender, stream_pos = excluded.stream_pos, displayname = excluded.displayname,
                 avatar_url = excluded.avatar_url,
                 forgotten = CASE WHEN $9 THEN 0 ELSE room_members.forgotten END",
            member,
        ));
    }
    let join_rule_params: [&dyn ToValue; 2];
    if let Some(rule) = &ev.join_rule {
        join_rule_params = [&ev.room_id, rule];
        writes.push(Write::Sql("UPDATE rooms SET join_rule = $2 WHERE room_id = $1", &join_rule_params));
    }
    let redaction_params: [&dyn ToValue; 3];
    let unsearch_params: [&dyn ToValue; 2];
    if let Some(target) = &ev.redacts {
        redaction_params = [target, &ev.room_id, &ev.event_id];
        writes.push(Write::Sql(
            "UPDATE events SET redacted_by = $3 WHERE event_id = $1 AND room_id = $2 AND redacted_by IS NULL",
            &redaction_params,
        ));
        // A redacted event is no longer found by search.
        unsearch_params = [target, &ev.room_id];
        writes.push(Write::Sql("DELETE FROM event_search WHERE event_id = $1 AND room_id = $2", &unsearch_params));
    }
    let search_params: [&dyn ToValue; 6];
    if let Some(entry) = &ev.search {
        search_params = [&ev.event_id, &ev.room_id, &ev.sender, &entry.key, &pos, &entry.text];
        writes.push(Write::Sql(SEARCH_INSERT, &search_params));
    }
    let push_rows: Vec<Vec<&dyn ToValue>> = ev
        .push_actions
        .iter()
        .map(|a| -> Vec<&dyn ToValue> { vec![&ev.room_id, &a.user_id, &pos, &a.highlight, &a.thread_id, &a.actions] })
        .collect();
    if !push_rows.is_empty() {
        writes.push(Write::Rows(
            "INSERT INTO event_push_actions (room_id, user_id, stream_pos, highlight, thread_id, actions)",
            &push_rows,
        ));
    }
    // A user with a pusher gets a push job (one per user: queued unless one is waiting).
    let push_users: Vec<OwnedUserId> = ev.push_actions.iter().map(|a| a.user_id.clone()).collect();
    let push_job_params: [&dyn ToValue; 2] = [&push_users, &ev.origin_server_ts];
    if !push_users.is_empty() {
        writes.push(Write::Sql(PUSH_JOB_INSERT, &push_job_params));
    }
    let txn_params: [&dyn ToValue; 5];
    if let Some((device_id, txn_id)) = &ev.txn {
        txn_params = [&ev.sender, device_id, txn_id, &ev.event_id, &ev.origin_server_ts];
        writes.push(Write::Sql(
            "INSERT INTO txn_ids (user_id, device_id, txn_id, event_id, created_ms) VALUES ($1, $2, $3, $4, $5)",
            &txn_params,
        ));
    }
    let outbox_rows: Vec<Vec<&dyn ToValue>> =
        ev.destinations.iter().map(|d| -> Vec<&dyn ToValue> { vec![d, &ev.event_id, &ev.origin_server_ts] }).collect();
    if !outbox_rows.is_empty() {
        writes.push(Write::Rows("INSERT INTO federation_outbox (destination, event_id, created_ms)", &outbox_rows));
    }
    let appservice_rows: Vec<Vec<&dyn ToValue>> =
        ev.appservices.iter().map(|a| -> Vec<&dyn ToValue> { vec![a, &ev.event_id, &ev.origin_server_ts] }).collect();
    if !appservice_rows.is_empty() {
        writes
            .push(Write::Rows("INSERT INTO appservice_outbox (appservice_id, event_id, created_ms)", &appservice_rows));
    }
    let appservice_jobs: Vec<[&dyn ToValue; 2]> =
        ev.appservices.iter().map(|a| [a as &dyn ToValue, &ev.origin_server_ts]).collect();
    writes.extend(appservice_jobs.iter().map(|params| Write::Sql(super::appservices::APPSERVICE_JOB_INSERT, params)));
    c.execute_last(&writes, positions).await?;
    Ok(PersistOutcome::Persisted { stream_pos: pos })
}

/// An event that was not accepted: its row (an outlier with the reason and its state groups),
/// nothing else.
async fn persist_rejected(
    c: &mut Conn<'_>,
    positions: &mut Positions,
    ev: &NewEvent,
    state_before: Option<StateGroupId>,
    state_after: Option<StateGroupId>,
) -> StorageResult<PersistOutcome> {
    let pos = positions.next(Change::Any).await?;
    c.execute(
        "INSERT INTO events (stream_pos, event_id, room_id, depth, sender, event_type, state_key, origin_server_ts,
                             json, state_before, state_after, outlier, rejection)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, $12)",
        &[
            &pos,
            &ev.event_id,
            &ev.room_id,
            &ev.depth,
            &ev.sender,
            &ev.event_type,
            &ev.state_key,
            &ev.origin_server_ts,
            &ev.json,
            &state_before,
            &state_after,
            &ev.rejection,
        ],
    )
    .await?;
    Ok(PersistOutcome::Persisted { stream_pos: pos })
}

/// Writes events as outliers, skipping those already stored.
async fn persist_outliers(c: &mut Conn<'_>, positions: &mut Positions, events: &[OutlierEvent]) -> StorageResult<()> {
    let ids: Vec<&OwnedEventId> = events.iter().map(|e| &e.event_id).collect();
    let known: std::collections::HashSet<OwnedEventId> = c
        .query("SELECT event_id FROM events WHERE event_id = ANY($1)", &[&ids], |r| r.get(0))
        .await?
        .into_iter()
        .collect();
    let mut fresh: Vec<&OutlierEvent> = Vec::new();
    for ev in events {
        if !known.contains(&ev.event_id) && !fresh.iter().any(|f| f.event_id == ev.event_id) {
            fresh.push(ev);
        }
    }
    let mut stream_positions = Vec::with_capacity(fresh.len());
    for _ in &fresh {
        stream_positions.push(positions.next(Change::Any).await?);
    }
    let outlier = true;
    let rows: Vec<Vec<&dyn ToValue>> = fresh
        .iter()
        .zip(&stream_positions)
        .map(|(ev, pos)| -> Vec<&dyn ToValue> {
            vec![
                pos,
                &ev.event_id,
                &ev.room_id,
                &ev.depth,
                &ev.sender,
                &ev.event_type,
                &ev.state_key,
                &ev.origin_server_ts,
                &ev.json,
                &ev.rejection,
                &outlier,
            ]
        })
        .collect();
    if !rows.is_empty() {
        c.insert_rows(
            "INSERT INTO events (stream_pos, event_id, room_id, depth, sender, event_type, state_key,
                                 origin_server_ts, json, rejection, outlier)",
            &rows,
        )
        .await?;
    }
    Ok(())
}

/// See [`EventRepo::place_backfilled`]. Positions go down from the lowest one taken, under a
/// lock that orders two processes backfilling at once.
async fn place_backfilled(c: &mut Conn<'_>, events: &[BackfilledEvent]) -> StorageResult<Vec<OwnedEventId>> {
    c.lock_until_commit("backfill positions").await?;
    let lowest: Option<StreamPos> =
        c.query_opt("SELECT MIN(stream_pos) FROM events", &[], |r| r.get(0)).await?.flatten();
    let mut next = lowest.map_or(0, |p| p.get().min(0)) - 1;
    let mut placed = Vec::new();
    for ev in events {
        let (rel_type, relates_to) = match &ev.relation {
            Some((r, e)) => (Some(r.as_str()), Some(e.as_str())),
            None => (None, None),
        };
        let pos = StreamPos(next);
        let changed = c
            .execute(
                "UPDATE events SET stream_pos = $1, outlier = 0, state_before = $2, state_after = $2,
                                   rel_type = $3, relates_to = $4
                 WHERE event_id = $5 AND outlier = 1 AND rejection IS NULL",
                &[&pos, &ev.state_group, &rel_type, &relates_to, &ev.event_id],
            )
            .await?;
        if changed == 0 {
            continue;
        }
        next -= 1;
        if let Some(target) = &ev.redacts {
            c.execute(
                "UPDATE events SET redacted_by = $2 WHERE event_id = $1 AND redacted_by IS NULL",
                &[target, &ev.event_id],
            )
            .await?;
            c.execute("DELETE FROM event_search WHERE event_id = $1", &[target]).await?;
        }
        if let Some(entry) = &ev.search {
            // Unless it was redacted before it took its place.
            c.execute(
                "INSERT INTO event_search (event_id, room_id, sender, search_key, stream_pos, body)
                 SELECT event_id, room_id, sender, CAST($2 AS TEXT), CAST($3 AS BIGINT), CAST($4 AS TEXT)
                 FROM events WHERE event_id = $1 AND redacted_by IS NULL",
                &[&ev.event_id, &entry.key, &pos, &entry.text],
            )
            .await?;
        }
        placed.push(ev.event_id.clone());
    }
    Ok(placed)
}

/// See [`OutOfRoomMembership`].
async fn persist_out_of_room_membership(
    c: &mut Conn<'_>,
    positions: &mut Positions,
    m: &OutOfRoomMembership,
) -> StorageResult<StreamPos> {
    let ev = &m.event;
    c.execute(
        "INSERT INTO rooms (room_id, room_version, creator) VALUES ($1, $2, $3) ON CONFLICT (room_id) DO NOTHING",
        &[&ev.room_id, &m.room_version, &m.creator],
    )
    .await?;
    persist_outliers(c, positions, std::slice::from_ref(ev)).await?;
    let pos = positions.next(Change::Any).await?;
    let u = &m.update;
    let joins = i64::from(u.membership == Membership::Join);
    let invites = i64::from(u.membership == Membership::Invite);
    c.execute(
        "UPDATE rooms SET
             joined_members = joined_members + $3
                 - (SELECT COUNT(*) FROM room_members WHERE room_id = $1 AND user_id = $2 AND membership = $5),
             invited_members = invited_members + $4
                 - (SELECT COUNT(*) FROM room_members WHERE room_id = $1 AND user_id = $2 AND membership = $6),
             last_event_pos = $7
         WHERE room_id = $1",
        &[&ev.room_id, &u.user_id, &joins, &invites, &Membership::Join, &Membership::Invite, &pos],
    )
    .await?;
    let current = u.membership.is_current();
    c.execute(
        "INSERT INTO room_members (room_id, user_id, membership, event_id, stream_pos, displayname, avatar_url, forgotten, sender)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8)
         ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, event_id = excluded.event_id,
             sender = excluded.sender, stream_pos = excluded.stream_pos, displayname = excluded.displayname,
             avatar_url = excluded.avatar_url,
             forgotten = CASE WHEN $9 THEN 0 ELSE room_members.forgotten END",
        &[&ev.room_id, &u.user_id, &u.membership, &ev.event_id, &pos, &u.displayname, &u.avatar_url, &ev.sender, &current],
    )
    .await?;
    match &m.stripped_state {
        Some(stripped) => {
            c.execute(
                "INSERT INTO remote_room_state (room_id, user_id, event_id, stripped_state) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (room_id, user_id) DO UPDATE SET event_id = excluded.event_id,
                     stripped_state = excluded.stripped_state",
                &[&ev.room_id, &u.user_id, &ev.event_id, stripped],
            )
            .await?;
        }
        None => {
            c.execute("DELETE FROM remote_room_state WHERE room_id = $1 AND user_id = $2", &[&ev.room_id, &u.user_id])
                .await?;
        }
    }
    Ok(pos)
}

#[async_trait]
impl EventRepo for Database {
    fn enqueue_event(&self, event: NewEvent) -> PendingPersist {
        Box::pin(self.submit(move |c, positions| Box::pin(persist(c, positions, event))))
    }

    async fn flush_writes(&self) -> StorageResult<()> {
        // Writes apply in queue order: once this empty one is through, so are the earlier ones.
        self.write(|_, _| Box::pin(async { Ok(()) })).await
    }

    fn stream_head(&self) -> StreamPos {
        Database::stream_head(self)
    }

    async fn refresh_stream_head(&self) -> StorageResult<StreamPos> {
        Database::refresh_stream_head(self).await
    }

    fn may_have_changed(&self, change: crate::Change, since: StreamPos) -> bool {
        Database::may_have_changed(self, change, since)
    }

    fn watch_stream_head(&self) -> tokio::sync::watch::Receiver<StreamPos> {
        Database::watch_stream_head(self)
    }

    fn written_head(&self) -> StreamPos {
        Database::written_head(self)
    }

    async fn persist_outliers(&self, events: Vec<OutlierEvent>) -> StorageResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        self.write(move |c, positions| Box::pin(async move { persist_outliers(c, positions, &events).await })).await
    }

    async fn place_backfilled(&self, events: Vec<BackfilledEvent>) -> StorageResult<Vec<OwnedEventId>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.transaction(move |c| Box::pin(async move { place_backfilled(c, &events).await })).await
    }

    async fn persist_out_of_room_membership(&self, membership: OutOfRoomMembership) -> StorageResult<StreamPos> {
        self.write(move |c, positions| {
            Box::pin(async move { persist_out_of_room_membership(c, positions, &membership).await })
        })
        .await
    }

    async fn remote_room_state(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> StorageResult<Option<(OwnedEventId, String)>> {
        let (room_id, user_id) = (room_id.to_owned(), user_id.to_owned());
        self.read(move |c| {
            Box::pin(async move {
                c.query_opt(
                    "SELECT event_id, stripped_state FROM remote_room_state WHERE room_id = $1 AND user_id = $2",
                    &[&room_id, &user_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .await
            })
        })
        .await
    }

    async fn get_event(&self, event_id: &EventId) -> StorageResult<Option<StoredEvent>> {
        let event_id = event_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!("SELECT {EVENT_COLUMNS} FROM events e WHERE e.event_id = $1");
                c.query_opt(&sql, &[&event_id], event_from_row).await
            })
        })
        .await
    }

    async fn get_events(&self, event_ids: &[OwnedEventId]) -> StorageResult<Vec<StoredEvent>> {
        if event_ids.is_empty() {
            return Ok(Vec::new());
        }
        let event_ids = event_ids.to_vec();
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!("SELECT {EVENT_COLUMNS} FROM events e WHERE e.event_id = ANY($1)");
                let found = events(c, &sql, &[&event_ids]).await?;
                // In the order asked for.
                let mut by_id: std::collections::HashMap<OwnedEventId, StoredEvent> =
                    found.into_iter().map(|e| (e.event_id.clone(), e)).collect();
                Ok(event_ids.iter().filter_map(|id| by_id.remove(id)).collect())
            })
        })
        .await
    }

    async fn event_for_txn(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        txn_id: &TransactionId,
    ) -> StorageResult<Option<OwnedEventId>> {
        let (u, d, t) = (user_id.to_owned(), device_id.to_owned(), txn_id.to_owned());
        self.read(move |c| {
            Box::pin(async move {
                c.query_opt(
                    "SELECT event_id FROM txn_ids WHERE user_id = $1 AND device_id = $2 AND txn_id = $3",
                    &[&u, &d, &t],
                    |r| r.get(0),
                )
                .await
            })
        })
        .await
    }

    async fn room_events(
        &self,
        room_id: &RoomId,
        from: StreamPos,
        to: Option<StreamPos>,
        dir: Direction,
        limit: usize,
    ) -> StorageResult<Vec<StoredEvent>> {
        let room_id = room_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                match dir {
                    Direction::Backward => {
                        events(c, &backward_events_sql(limit), &[&room_id, &from, &to.unwrap_or(StreamPos::MIN)]).await
                    }
                    Direction::Forward => {
                        let sql = format!(
                            "SELECT {EVENT_COLUMNS} FROM events e WHERE e.room_id = $1 AND e.stream_pos > $2
                             AND e.stream_pos <= $3 AND e.outlier = 0 ORDER BY e.stream_pos ASC LIMIT {limit}"
                        );
                        events(c, &sql, &[&room_id, &from, &to.unwrap_or(StreamPos::MAX)]).await
                    }
                }
            })
        })
        .await
    }

    async fn membership_events_for_user(
        &self,
        user_id: &UserId,
        since: StreamPos,
        until: StreamPos,
    ) -> StorageResult<Vec<StoredEvent>> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM events e WHERE e.event_type = $4 AND e.state_key = $1
                     AND e.outlier = 0 AND e.stream_pos > $2 AND e.stream_pos <= $3 ORDER BY e.stream_pos"
                );
                events(c, &sql, &[&user_id, &since, &until, &TimelineEventType::RoomMember]).await
            })
        })
        .await
    }

    async fn state_group_at(&self, room_id: &RoomId, pos: StreamPos) -> StorageResult<Option<StateGroupId>> {
        let room_id = room_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                Ok(c.query_opt(
                    "SELECT COALESCE(room_state_after, state_after) FROM events
                     WHERE room_id = $1 AND stream_pos <= $2 AND outlier = 0 ORDER BY stream_pos DESC LIMIT 1",
                    &[&room_id, &pos],
                    |r| r.get::<Option<StateGroupId>>(0),
                )
                .await?
                .flatten())
            })
        })
        .await
    }

    async fn relations(
        &self,
        event_id: &EventId,
        rel_type: Option<&RelationType>,
        from: StreamPos,
        limit: usize,
    ) -> StorageResult<Vec<StoredEvent>> {
        let (event_id, rel_type) = (event_id.to_owned(), rel_type.map(|r| r.as_str().to_owned()));
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM events e WHERE e.relates_to = $1 AND e.outlier = 0
                     AND (CAST($2 AS TEXT) IS NULL OR e.rel_type = $2)
                     AND e.stream_pos <= $3 ORDER BY e.stream_pos DESC LIMIT {limit}"
                );
                events(c, &sql, &[&event_id, &rel_type, &from]).await
            })
        })
        .await
    }

    async fn thread_roots(
        &self,
        room_id: &RoomId,
        from: StreamPos,
        limit: usize,
    ) -> StorageResult<Vec<(StoredEvent, StreamPos)>> {
        let room_id = room_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT {EVENT_COLUMNS}, t.latest FROM events e
                     JOIN (SELECT relates_to, MAX(stream_pos) AS latest FROM events
                           WHERE room_id = $1 AND rel_type = $3 AND outlier = 0 GROUP BY relates_to) t ON t.relates_to = e.event_id
                     WHERE t.latest <= $2 ORDER BY t.latest DESC LIMIT {limit}"
                );
                let thread = RelationType::Thread.as_str();
                c.query(&sql, &[&room_id, &from, &thread], |r| Ok((event_from_row(r)?, r.get(EVENT_COLUMN_COUNT)?))).await
            })
        })
        .await
    }

    async fn forward_extremities(&self, room_id: &RoomId) -> StorageResult<Vec<StoredEvent>> {
        let room_id = room_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM forward_extremities f JOIN events e ON e.event_id = f.event_id
                     WHERE f.room_id = $1"
                );
                events(c, &sql, &[&room_id]).await
            })
        })
        .await
    }

    async fn event_near_timestamp(
        &self,
        room_id: &RoomId,
        ts_ms: u64,
        forward: bool,
        until: StreamPos,
    ) -> StorageResult<Option<StoredEvent>> {
        let room_id = room_id.to_owned();
        let (cmp, order) = if forward { (">=", "ASC") } else { ("<=", "DESC") };
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM events e
                     WHERE e.room_id = $1 AND e.outlier = 0 AND e.origin_server_ts {cmp} $2 AND e.stream_pos <= $3
                     ORDER BY e.origin_server_ts {order}, e.stream_pos {order} LIMIT 1"
                );
                Ok(events(c, &sql, &[&room_id, &ts_ms, &until]).await?.pop())
            })
        })
        .await
    }

    async fn delete_txn_ids_before(&self, before_ms: u64) -> StorageResult<u64> {
        self.transaction(move |c| {
            Box::pin(async move { c.execute("DELETE FROM txn_ids WHERE created_ms < $1", &[&before_ms]).await })
        })
        .await
    }
}
