use async_trait::async_trait;
use tokio_postgres::{Row, types::ToSql};

use super::{
    PgStore,
    conn::{Params, PgConn},
    state::create_state_group,
    to_u64,
    writer::Positions,
};
use crate::{Direction, EventRepo, NewEvent, PendingPersist, PersistOutcome, StorageResult, StoredEvent, StreamPos};

pub const EVENT_COLUMNS: &str = "e.stream_pos, e.event_id, e.room_id, e.sender, e.event_type, e.state_key, \
     e.origin_server_ts, e.depth, e.json, e.redacted_by, e.sender_device, e.txn_id, e.state_before, e.state_after";

/// A room's events in `($3, $2]`, newest first, at most `$4` (`$1` = room id).
pub(super) fn backward_events_sql() -> String {
    backward_events_sql_of("$1", "$2", "$3", "$4")
}

/// [`backward_events_sql`] with other expressions for the room, the bounds and the limit (columns
/// of an outer query for a lateral join).
pub(super) fn backward_events_sql_of(room_id: &str, upper: &str, since: &str, limit: &str) -> String {
    format!(
        "SELECT {EVENT_COLUMNS} FROM events e WHERE e.room_id = {room_id} AND e.stream_pos <= {upper}
         AND e.stream_pos > {since} AND e.outlier = 0 ORDER BY e.stream_pos DESC LIMIT {limit}"
    )
}

pub fn event_from_row(r: &Row) -> StoredEvent {
    StoredEvent {
        stream_pos: r.get(0),
        event_id: r.get(1),
        room_id: r.get(2),
        sender: r.get(3),
        event_type: r.get(4),
        state_key: r.get(5),
        origin_server_ts: to_u64(r.get(6)),
        depth: r.get(7),
        json: r.get(8),
        redacted_by: r.get(9),
        sender_device: r.get(10),
        txn_id: r.get(11),
        state_before: r.get(12),
        state_after: r.get(13),
    }
}

async fn persist(c: &mut PgConn, positions: &mut Positions, ev: NewEvent) -> StorageResult<PersistOutcome> {
    // Everything the checks need, in one round trip.
    let (device, txn_id) = match &ev.txn {
        Some((d, t)) => (Some(d.as_str()), Some(t.as_str())),
        None => (None, None),
    };
    let known = c
        .query_one(
            "SELECT (SELECT event_id FROM txn_ids WHERE user_id = $1 AND device_id = $2 AND txn_id = $3),
                    (SELECT COALESCE(array_agg(event_id), '{}') FROM forward_extremities WHERE room_id = $4),
                    (SELECT current_state_group FROM rooms WHERE room_id = $4)",
            &[&ev.sender, &device, &txn_id, &ev.room_id],
        )
        .await?;
    if let Some(event_id) = known.get::<_, Option<String>>(0) {
        return Ok(PersistOutcome::DuplicateTxn { event_id });
    }
    if let Some(expected) = &ev.expected_extremities {
        let mut stored: Vec<String> = known.get(1);
        let mut expected = expected.clone();
        stored.sort();
        expected.sort();
        if stored != expected {
            return Ok(PersistOutcome::StaleHead);
        }
    }
    let state_before: Option<i64> = known.get(2);
    if let Some(room) = &ev.new_room {
        c.execute(
            "INSERT INTO rooms (room_id, room_version, creator) VALUES ($1, $2, $3)",
            &[&ev.room_id, &room.room_version, &room.creator],
        )
        .await?;
    }
    let state_after = match &ev.state_key {
        Some(state_key) => {
            Some(create_state_group(c, &ev.room_id, state_before, &ev.event_type, state_key, &ev.event_id).await?)
        }
        None => state_before,
    };
    let pos = positions.allocate();
    let (rel_type, relates_to) = match &ev.relation {
        Some((r, e)) => (Some(r.as_str()), Some(e.as_str())),
        None => (None, None),
    };
    let ts = ev.origin_server_ts as i64;

    // The rest is writes sent as one pipeline (they run in this order).
    let event_params: [&(dyn ToSql + Sync); 15] = [
        &pos,
        &ev.event_id,
        &ev.room_id,
        &ev.depth,
        &ev.sender,
        &ev.event_type,
        &ev.state_key,
        &ts,
        &ev.json,
        &state_before,
        &state_after,
        &device,
        &txn_id,
        &rel_type,
        &relates_to,
    ];
    let bump = crate::is_bump_event(&ev.event_type);
    let room_params: [&(dyn ToSql + Sync); 4] = [&ev.room_id, &state_after, &pos, &bump];
    let prev_params: [&(dyn ToSql + Sync); 2] = [&ev.room_id, &ev.prev_events];
    let extremity_params: [&(dyn ToSql + Sync); 2] = [&ev.room_id, &ev.event_id];
    let mut writes: Vec<(&str, Params<'_>)> = vec![
        (
            "INSERT INTO events (stream_pos, event_id, room_id, depth, sender, event_type, state_key, origin_server_ts,
                                 json, state_before, state_after, sender_device, txn_id, rel_type, relates_to)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            &event_params,
        ),
        (
            "UPDATE rooms SET current_state_group = $2, last_event_pos = $3,
                 bump_pos = CASE WHEN $4 THEN $3 ELSE bump_pos END WHERE room_id = $1",
            &room_params,
        ),
        ("DELETE FROM forward_extremities WHERE room_id = $1 AND event_id = ANY($2)", &prev_params),
        ("INSERT INTO forward_extremities (room_id, event_id) VALUES ($1, $2)", &extremity_params),
    ];
    let current_state_params: [&(dyn ToSql + Sync); 4];
    if let Some(state_key) = &ev.state_key {
        current_state_params = [&ev.room_id, &ev.event_type, state_key, &ev.event_id];
        writes.push((
            "INSERT INTO current_state (room_id, event_type, state_key, event_id) VALUES ($1, $2, $3, $4)
             ON CONFLICT (room_id, event_type, state_key) DO UPDATE SET event_id = excluded.event_id",
            &current_state_params,
        ));
    }
    let member_params: [&(dyn ToSql + Sync); 8];
    let member_count_params: [&(dyn ToSql + Sync); 3];
    if let Some(m) = &ev.membership {
        member_params =
            [&ev.room_id, &m.user_id, &m.membership, &ev.event_id, &pos, &m.displayname, &m.avatar_url, &ev.sender];
        member_count_params = [&ev.room_id, &m.user_id, &m.membership];
        // The room's member counts, from the membership this replaces (before the upsert).
        writes.push((
            "UPDATE rooms SET
                 joined_members = joined_members + (CASE WHEN $3::TEXT = 'join' THEN 1 ELSE 0 END)
                     - (SELECT COUNT(*) FROM room_members WHERE room_id = $1 AND user_id = $2 AND membership = 'join'),
                 invited_members = invited_members + (CASE WHEN $3::TEXT = 'invite' THEN 1 ELSE 0 END)
                     - (SELECT COUNT(*) FROM room_members WHERE room_id = $1 AND user_id = $2 AND membership = 'invite')
             WHERE room_id = $1",
            &member_count_params,
        ));
        writes.push((
            "INSERT INTO room_members (room_id, user_id, membership, event_id, stream_pos, displayname, avatar_url, forgotten, sender)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8)
             ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, event_id = excluded.event_id,
                 sender = excluded.sender,
                 stream_pos = excluded.stream_pos, displayname = excluded.displayname,
                 avatar_url = excluded.avatar_url,
                 forgotten = CASE WHEN excluded.membership IN ('join', 'invite', 'knock') THEN 0 ELSE room_members.forgotten END",
            &member_params,
        ));
    }
    let join_rule_params: [&(dyn ToSql + Sync); 2];
    if let Some(rule) = &ev.join_rule {
        join_rule_params = [&ev.room_id, rule];
        writes.push(("UPDATE rooms SET join_rule = $2 WHERE room_id = $1", &join_rule_params));
    }
    let redaction_params: [&(dyn ToSql + Sync); 3];
    if let Some(target) = &ev.redacts {
        redaction_params = [target, &ev.room_id, &ev.event_id];
        writes.push((
            "UPDATE events SET redacted_by = $3 WHERE event_id = $1 AND room_id = $2 AND redacted_by IS NULL",
            &redaction_params,
        ));
    }
    let users: Vec<&str> = ev.push_actions.iter().map(|a| a.user_id.as_str()).collect();
    let highlights: Vec<i64> = ev.push_actions.iter().map(|a| i64::from(a.highlight)).collect();
    let threads: Vec<Option<&str>> = ev.push_actions.iter().map(|a| a.thread_id.as_deref()).collect();
    let push_params: [&(dyn ToSql + Sync); 5] = [&ev.room_id, &pos, &users, &highlights, &threads];
    if !ev.push_actions.is_empty() {
        writes.push((
            "INSERT INTO event_push_actions (room_id, user_id, stream_pos, highlight, thread_id)
             SELECT $1, u, $2, h, t FROM UNNEST($3::TEXT[], $4::BIGINT[], $5::TEXT[]) AS x(u, h, t)",
            &push_params,
        ));
    }
    let txn_params: [&(dyn ToSql + Sync); 5];
    if let Some((device_id, txn_id)) = &ev.txn {
        txn_params = [&ev.sender, device_id, txn_id, &ev.event_id, &ts];
        writes.push((
            "INSERT INTO txn_ids (user_id, device_id, txn_id, event_id, created_ms) VALUES ($1, $2, $3, $4, $5)",
            &txn_params,
        ));
    }
    c.execute_pipelined(&writes).await?;
    Ok(PersistOutcome::Persisted { stream_pos: pos })
}

impl PgStore {
    async fn events_query(&self, sql: &str, params: super::conn::Params<'_>) -> StorageResult<Vec<StoredEvent>> {
        let mut c = self.pool.get().await?;
        Ok(c.query(sql, params).await?.iter().map(event_from_row).collect())
    }
}

#[async_trait]
impl EventRepo for PgStore {
    fn enqueue_event(&self, event: NewEvent) -> PendingPersist {
        Box::pin(self.writer.submit(move |c, positions| Box::pin(persist(c, positions, event))))
    }

    fn stream_head(&self) -> StreamPos {
        self.head.load(std::sync::atomic::Ordering::Acquire)
    }

    async fn refresh_stream_head(&self) -> StorageResult<StreamPos> {
        let mut c = self.pool.get().await?;
        let pos: i64 = c.query_one("SELECT pos FROM stream_head WHERE id = 1", &[]).await?.get(0);
        Ok(self.head.fetch_max(pos, std::sync::atomic::Ordering::AcqRel).max(pos))
    }

    async fn get_event(&self, event_id: &str) -> StorageResult<Option<StoredEvent>> {
        let mut c = self.pool.get().await?;
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events e WHERE e.event_id = $1");
        Ok(c.query_opt(&sql, &[&event_id]).await?.as_ref().map(event_from_row))
    }

    async fn get_events(&self, event_ids: &[String]) -> StorageResult<Vec<StoredEvent>> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events e WHERE e.event_id = ANY($1)");
        let found = self.events_query(&sql, &[&event_ids]).await?;
        // In the order asked for, like the SQLite backend.
        let mut by_id: std::collections::HashMap<String, StoredEvent> =
            found.into_iter().map(|e| (e.event_id.clone(), e)).collect();
        Ok(event_ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }

    async fn event_for_txn(&self, user_id: &str, device_id: &str, txn_id: &str) -> StorageResult<Option<String>> {
        let mut c = self.pool.get().await?;
        Ok(c.query_opt(
            "SELECT event_id FROM txn_ids WHERE user_id = $1 AND device_id = $2 AND txn_id = $3",
            &[&user_id, &device_id, &txn_id],
        )
        .await?
        .map(|r| r.get(0)))
    }

    async fn room_events(
        &self,
        room_id: &str,
        from: StreamPos,
        to: Option<StreamPos>,
        dir: Direction,
        limit: usize,
    ) -> StorageResult<Vec<StoredEvent>> {
        let limit = limit as i64;
        match dir {
            Direction::Backward => {
                self.events_query(&backward_events_sql(), &[&room_id, &from, &to.unwrap_or(i64::MIN), &limit]).await
            }
            Direction::Forward => {
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM events e WHERE e.room_id = $1 AND e.stream_pos > $2 AND e.stream_pos <= $3
                     AND e.outlier = 0 ORDER BY e.stream_pos ASC LIMIT $4"
                );
                self.events_query(&sql, &[&room_id, &from, &to.unwrap_or(i64::MAX), &limit]).await
            }
        }
    }

    async fn membership_events_for_user(
        &self,
        user_id: &str,
        since: StreamPos,
        until: StreamPos,
    ) -> StorageResult<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE e.event_type = 'm.room.member' AND e.state_key = $1
             AND e.stream_pos > $2 AND e.stream_pos <= $3 ORDER BY e.stream_pos"
        );
        self.events_query(&sql, &[&user_id, &since, &until]).await
    }

    async fn state_group_at(&self, room_id: &str, pos: StreamPos) -> StorageResult<Option<i64>> {
        let mut c = self.pool.get().await?;
        Ok(c.query_opt(
            "SELECT state_after FROM events WHERE room_id = $1 AND stream_pos <= $2 AND outlier = 0
             ORDER BY stream_pos DESC LIMIT 1",
            &[&room_id, &pos],
        )
        .await?
        .and_then(|r| r.get(0)))
    }

    async fn relations(
        &self,
        event_id: &str,
        rel_type: Option<&str>,
        from: StreamPos,
        limit: usize,
    ) -> StorageResult<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE e.relates_to = $1 AND ($2::TEXT IS NULL OR e.rel_type = $2)
             AND e.stream_pos <= $3 ORDER BY e.stream_pos DESC LIMIT $4"
        );
        self.events_query(&sql, &[&event_id, &rel_type, &from, &(limit as i64)]).await
    }

    async fn thread_roots(
        &self,
        room_id: &str,
        from: StreamPos,
        limit: usize,
    ) -> StorageResult<Vec<(StoredEvent, StreamPos)>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS}, t.latest FROM events e
             JOIN (SELECT relates_to, MAX(stream_pos) AS latest FROM events
                   WHERE room_id = $1 AND rel_type = 'm.thread' GROUP BY relates_to) t ON t.relates_to = e.event_id
             WHERE t.latest <= $2 ORDER BY t.latest DESC LIMIT $3"
        );
        let mut c = self.pool.get().await?;
        Ok(c.query(&sql, &[&room_id, &from, &(limit as i64)])
            .await?
            .iter()
            .map(|r| (event_from_row(r), r.get::<_, i64>(14)))
            .collect())
    }

    async fn forward_extremities(&self, room_id: &str) -> StorageResult<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM forward_extremities f JOIN events e ON e.event_id = f.event_id
             WHERE f.room_id = $1"
        );
        self.events_query(&sql, &[&room_id]).await
    }
}
