use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{SqliteStore, state::create_state_group, writer::Positions};
use crate::{Direction, EventRepo, NewEvent, PendingPersist, PersistOutcome, StorageResult, StoredEvent, StreamPos};

// Limits are written into the SQL, never bound: SQLite re-plans a statement whose `LIMIT` is a
// bound parameter on every execution (re-preparing it), which cost more than the query itself.
pub const EVENT_COLUMNS: &str = "e.stream_pos, e.event_id, e.room_id, e.sender, e.event_type, e.state_key, \
     e.origin_server_ts, e.depth, e.json, e.redacted_by, e.sender_device, e.txn_id, e.state_before, e.state_after";

pub fn event_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        stream_pos: r.get(0)?,
        event_id: r.get(1)?,
        room_id: r.get(2)?,
        sender: r.get(3)?,
        event_type: r.get(4)?,
        state_key: r.get(5)?,
        origin_server_ts: r.get::<_, i64>(6)?.max(0) as u64,
        depth: r.get(7)?,
        json: r.get(8)?,
        redacted_by: r.get(9)?,
        sender_device: r.get(10)?,
        txn_id: r.get(11)?,
        state_before: r.get(12)?,
        state_after: r.get(13)?,
    })
}

fn query_events(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> StorageResult<Vec<StoredEvent>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, event_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A room's events in `(to, from]`, newest first, at most `limit`.
pub(super) fn backward_events(
    conn: &Connection,
    room_id: &str,
    from: StreamPos,
    to: Option<StreamPos>,
    limit: usize,
) -> StorageResult<Vec<StoredEvent>> {
    query_events(
        conn,
        &format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE e.room_id = ?1 AND e.stream_pos <= ?2 AND e.stream_pos > ?3
             AND e.outlier = 0 ORDER BY e.stream_pos DESC LIMIT {limit}"
        ),
        params![room_id, from, to.unwrap_or(i64::MIN)],
    )
}

fn persist(conn: &Connection, positions: &mut Positions, ev: NewEvent) -> StorageResult<PersistOutcome> {
    if let Some((device_id, txn_id)) = &ev.txn {
        let existing: Option<String> = conn
            .prepare_cached("SELECT event_id FROM txn_ids WHERE user_id = ?1 AND device_id = ?2 AND txn_id = ?3")?
            .query_row([&ev.sender, device_id, txn_id], |r| r.get(0))
            .optional()?;
        if let Some(event_id) = existing {
            return Ok(PersistOutcome::DuplicateTxn { event_id });
        }
    }
    if let Some(expected) = &ev.expected_extremities {
        let mut stored: Vec<String> = conn
            .prepare_cached("SELECT event_id FROM forward_extremities WHERE room_id = ?1")?
            .query_map([&ev.room_id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut expected = expected.clone();
        stored.sort();
        expected.sort();
        if stored != expected {
            return Ok(PersistOutcome::StaleHead);
        }
    }
    if let Some(room) = &ev.new_room {
        conn.execute(
            "INSERT INTO rooms (room_id, room_version, creator) VALUES (?1, ?2, ?3)",
            params![ev.room_id, room.room_version, room.creator],
        )?;
    }
    let state_before: Option<i64> = conn
        .prepare_cached("SELECT current_state_group FROM rooms WHERE room_id = ?1")?
        .query_row([&ev.room_id], |r| r.get(0))?;
    let state_after = match &ev.state_key {
        Some(state_key) => {
            let group = create_state_group(conn, &ev.room_id, state_before, &ev.event_type, state_key, &ev.event_id)?;
            conn.prepare_cached(
                "INSERT INTO current_state (room_id, event_type, state_key, event_id) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (room_id, event_type, state_key) DO UPDATE SET event_id = excluded.event_id",
            )?
            .execute([&ev.room_id, &ev.event_type, state_key, &ev.event_id])?;
            Some(group)
        }
        None => state_before,
    };
    let pos = positions.allocate();
    let (device, txn_id) = match &ev.txn {
        Some((d, t)) => (Some(d.as_str()), Some(t.as_str())),
        None => (None, None),
    };
    let (rel_type, relates_to) = match &ev.relation {
        Some((r, e)) => (Some(r.as_str()), Some(e.as_str())),
        None => (None, None),
    };
    conn.prepare_cached(
        "INSERT INTO events (stream_pos, event_id, room_id, depth, sender, event_type, state_key, origin_server_ts,
                             json, state_before, state_after, sender_device, txn_id, rel_type, relates_to)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?
    .execute(params![
        pos,
        ev.event_id,
        ev.room_id,
        ev.depth,
        ev.sender,
        ev.event_type,
        ev.state_key,
        ev.origin_server_ts as i64,
        ev.json,
        state_before,
        state_after,
        device,
        txn_id,
        rel_type,
        relates_to
    ])?;
    conn.prepare_cached(
        "UPDATE rooms SET current_state_group = ?2, last_event_pos = ?3,
             bump_pos = CASE WHEN ?4 THEN ?3 ELSE bump_pos END WHERE room_id = ?1",
    )?
    .execute(params![ev.room_id, state_after, pos, crate::is_bump_event(&ev.event_type)])?;
    {
        let mut delete = conn.prepare_cached("DELETE FROM forward_extremities WHERE room_id = ?1 AND event_id = ?2")?;
        for prev in &ev.prev_events {
            delete.execute([&ev.room_id, prev])?;
        }
        conn.prepare_cached("INSERT INTO forward_extremities (room_id, event_id) VALUES (?1, ?2)")?
            .execute([&ev.room_id, &ev.event_id])?;
    }
    if let Some(m) = &ev.membership {
        // The room's member counts, from the membership this replaces (read before the upsert).
        conn.prepare_cached(
            "UPDATE rooms SET
                 joined_members = joined_members + (?3 = 'join')
                     - (SELECT COUNT(*) FROM room_members WHERE room_id = ?1 AND user_id = ?2 AND membership = 'join'),
                 invited_members = invited_members + (?3 = 'invite')
                     - (SELECT COUNT(*) FROM room_members WHERE room_id = ?1 AND user_id = ?2 AND membership = 'invite')
             WHERE room_id = ?1",
        )?
        .execute(params![ev.room_id, m.user_id, m.membership])?;
        conn.prepare_cached(
            "INSERT INTO room_members (room_id, user_id, membership, event_id, stream_pos, displayname, avatar_url, forgotten, sender)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8)
             ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, event_id = excluded.event_id,
                 sender = excluded.sender,
                 stream_pos = excluded.stream_pos, displayname = excluded.displayname,
                 avatar_url = excluded.avatar_url,
                 forgotten = CASE WHEN excluded.membership IN ('join', 'invite', 'knock') THEN 0 ELSE forgotten END",
        )?
        .execute(params![ev.room_id, m.user_id, m.membership, ev.event_id, pos, m.displayname, m.avatar_url, ev.sender])?;
    }
    if let Some(rule) = &ev.join_rule {
        conn.prepare_cached("UPDATE rooms SET join_rule = ?2 WHERE room_id = ?1")?.execute([&ev.room_id, rule])?;
    }
    if let Some(target) = &ev.redacts {
        conn.prepare_cached(
            "UPDATE events SET redacted_by = ?3 WHERE event_id = ?1 AND room_id = ?2 AND redacted_by IS NULL",
        )?
        .execute([target, &ev.room_id, &ev.event_id])?;
    }
    if !ev.push_actions.is_empty() {
        let mut insert = conn.prepare_cached(
            "INSERT INTO event_push_actions (room_id, user_id, stream_pos, highlight, thread_id) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for action in &ev.push_actions {
            insert.execute(params![ev.room_id, action.user_id, pos, action.highlight, action.thread_id])?;
        }
    }
    if let Some((device_id, txn_id)) = &ev.txn {
        conn.prepare_cached(
            "INSERT INTO txn_ids (user_id, device_id, txn_id, event_id, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![ev.sender, device_id, txn_id, ev.event_id, ev.origin_server_ts as i64])?;
    }
    Ok(PersistOutcome::Persisted { stream_pos: pos })
}

#[async_trait]
impl EventRepo for SqliteStore {
    fn enqueue_event(&self, event: NewEvent) -> PendingPersist {
        Box::pin(self.writer.submit(move |conn, positions| persist(conn, positions, event)))
    }

    fn stream_head(&self) -> StreamPos {
        self.head.load(std::sync::atomic::Ordering::Acquire)
    }

    async fn get_event(&self, event_id: &str) -> StorageResult<Option<StoredEvent>> {
        let event_id = event_id.to_owned();
        self.readers
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events e WHERE e.event_id = ?1"))?
                    .query_row([event_id], event_from_row)
                    .optional()?)
            })
            .await
    }

    async fn get_events(&self, event_ids: &[String]) -> StorageResult<Vec<StoredEvent>> {
        if event_ids.is_empty() {
            return Ok(Vec::new());
        }
        let event_ids = event_ids.to_vec();
        self.readers
            .read(move |conn| {
                let mut stmt =
                    conn.prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events e WHERE e.event_id = ?1"))?;
                let mut out = Vec::with_capacity(event_ids.len());
                for id in event_ids {
                    if let Some(ev) = stmt.query_row([id], event_from_row).optional()? {
                        out.push(ev);
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn event_for_txn(&self, user_id: &str, device_id: &str, txn_id: &str) -> StorageResult<Option<String>> {
        let (u, d, t) = (user_id.to_owned(), device_id.to_owned(), txn_id.to_owned());
        self.readers
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT event_id FROM txn_ids WHERE user_id = ?1 AND device_id = ?2 AND txn_id = ?3",
                    )?
                    .query_row([u, d, t], |r| r.get(0))
                    .optional()?)
            })
            .await
    }

    async fn room_events(
        &self,
        room_id: &str,
        from: StreamPos,
        to: Option<StreamPos>,
        dir: Direction,
        limit: usize,
    ) -> StorageResult<Vec<StoredEvent>> {
        let room_id = room_id.to_owned();
        self.readers
            .read(move |conn| match dir {
                Direction::Backward => backward_events(conn, &room_id, from, to, limit),
                Direction::Forward => query_events(
                    conn,
                    &format!(
                        "SELECT {EVENT_COLUMNS} FROM events e WHERE e.room_id = ?1 AND e.stream_pos > ?2 AND e.stream_pos <= ?3
                         AND e.outlier = 0 ORDER BY e.stream_pos ASC LIMIT {limit}"
                    ),
                    params![room_id, from, to.unwrap_or(i64::MAX)],
                ),
            })
            .await
    }

    async fn membership_events_for_user(
        &self,
        user_id: &str,
        since: StreamPos,
        until: StreamPos,
    ) -> StorageResult<Vec<StoredEvent>> {
        let user_id = user_id.to_owned();
        self.readers
            .read(move |conn| {
                query_events(
                    conn,
                    &format!(
                        "SELECT {EVENT_COLUMNS} FROM events e WHERE e.event_type = 'm.room.member' AND e.state_key = ?1
                         AND e.stream_pos > ?2 AND e.stream_pos <= ?3 ORDER BY e.stream_pos"
                    ),
                    params![user_id, since, until],
                )
            })
            .await
    }

    async fn state_group_at(&self, room_id: &str, pos: StreamPos) -> StorageResult<Option<i64>> {
        let room_id = room_id.to_owned();
        self.readers
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT state_after FROM events WHERE room_id = ?1 AND stream_pos <= ?2 AND outlier = 0
                         ORDER BY stream_pos DESC LIMIT 1",
                    )?
                    .query_row(params![room_id, pos], |r| r.get(0))
                    .optional()?
                    .flatten())
            })
            .await
    }

    async fn relations(
        &self,
        event_id: &str,
        rel_type: Option<&str>,
        from: StreamPos,
        limit: usize,
    ) -> StorageResult<Vec<StoredEvent>> {
        let (event_id, rel_type) = (event_id.to_owned(), rel_type.map(str::to_owned));
        self.readers
            .read(move |conn| {
                query_events(
                    conn,
                    &format!(
                        "SELECT {EVENT_COLUMNS} FROM events e WHERE e.relates_to = ?1 AND (?2 IS NULL OR e.rel_type = ?2)
                         AND e.stream_pos <= ?3 ORDER BY e.stream_pos DESC LIMIT {limit}"
                    ),
                    params![event_id, rel_type, from],
                )
            })
            .await
    }

    async fn thread_roots(
        &self,
        room_id: &str,
        from: StreamPos,
        limit: usize,
    ) -> StorageResult<Vec<(StoredEvent, StreamPos)>> {
        let room_id = room_id.to_owned();
        self.readers
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS}, t.latest FROM events e
                     JOIN (SELECT relates_to, MAX(stream_pos) AS latest FROM events
                           WHERE room_id = ?1 AND rel_type = 'm.thread' GROUP BY relates_to) t ON t.relates_to = e.event_id
                     WHERE t.latest <= ?2 ORDER BY t.latest DESC LIMIT {limit}"
                ))?;
                let rows = stmt.query_map(params![room_id, from], |r| Ok((event_from_row(r)?, r.get::<_, i64>(14)?)))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn forward_extremities(&self, room_id: &str) -> StorageResult<Vec<StoredEvent>> {
        let room_id = room_id.to_owned();
        self.readers
            .read(move |conn| {
                query_events(
                    conn,
                    &format!(
                        "SELECT {EVENT_COLUMNS} FROM forward_extremities f JOIN events e ON e.event_id = f.event_id
                         WHERE f.room_id = ?1"
                    ),
                    [room_id],
                )
            })
            .await
    }
}
