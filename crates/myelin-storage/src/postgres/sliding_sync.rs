use async_trait::async_trait;

use std::collections::HashMap;

use super::{
    PgStore,
    events::{EVENT_COLUMNS, backward_events_sql_of, event_from_row},
    receipts::unread_counts_sql,
    rooms::member_from_row,
    to_u64,
};
use crate::{
    MAX_CONNECTIONS_PER_DEVICE, MemberRecord, RoomSummaryRecord, SlidingSyncRepo, StorageResult, StoredConnection,
    StoredEvent, StreamPos,
};

// Connection state takes no stream position: plain statements on a pooled connection, outside
// the stream writer (whose batches hold the cluster-wide stream head lock).
#[async_trait]
impl SlidingSyncRepo for PgStore {
    async fn sliding_sync_connection(
        &self,
        user_id: &str,
        device_id: &str,
        conn_id: &str,
    ) -> StorageResult<Option<StoredConnection>> {
        let mut c = self.pool.get().await?;
        Ok(c.query_opt(
            "SELECT generation, seq, state, prev_seq, prev_state, last_used_ms FROM sliding_sync_connections
             WHERE user_id = $1 AND device_id = $2 AND conn_id = $3",
            &[&user_id, &device_id, &conn_id],
        )
        .await?
        .map(|r| StoredConnection {
            generation: r.get(0),
            seq: r.get(1),
            state: r.get(2),
            prev_seq: r.get(3),
            prev_state: r.get(4),
            last_used_ms: r.get(5),
        }))
    }

    async fn save_sliding_sync_connection(
        &self,
        user_id: &str,
        device_id: &str,
        conn_id: &str,
        expected: Option<(String, i64)>,
        new: StoredConnection,
    ) -> StorageResult<bool> {
        let mut c = self.pool.get().await?;
        let written = match expected {
            Some((generation, seq)) => {
                c.execute(
                    "UPDATE sliding_sync_connections SET generation = $4, seq = $5, state = $6, prev_seq = $7,
                         prev_state = $8, last_used_ms = $9
                     WHERE user_id = $1 AND device_id = $2 AND conn_id = $3 AND generation = $10 AND seq = $11",
                    &[
                        &user_id,
                        &device_id,
                        &conn_id,
                        &new.generation,
                        &new.seq,
                        &new.state,
                        &new.prev_seq,
                        &new.prev_state,
                        &new.last_used_ms,
                        &generation,
                        &seq,
                    ],
                )
                .await?
            }
            None => {
                let written = c
                    .execute(
                        "INSERT INTO sliding_sync_connections
                         (user_id, device_id, conn_id, generation, seq, state, prev_seq, prev_state, last_used_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT (user_id, device_id, conn_id) DO UPDATE SET generation = excluded.generation,
                         seq = excluded.seq, state = excluded.state, prev_seq = excluded.prev_seq,
                         prev_state = excluded.prev_state, last_used_ms = excluded.last_used_ms",
                        &[
                            &user_id,
                            &device_id,
                            &conn_id,
                            &new.generation,
                            &new.seq,
                            &new.state,
                            &new.prev_seq,
                            &new.prev_state,
                            &new.last_used_ms,
                        ],
                    )
                    .await?;
                let trim = format!(
                    "DELETE FROM sliding_sync_connections
                         WHERE user_id = $1 AND device_id = $2 AND conn_id <> $3 AND conn_id NOT IN (
                             SELECT conn_id FROM sliding_sync_connections WHERE user_id = $1 AND device_id = $2 AND conn_id <> $3
                             ORDER BY last_used_ms DESC, conn_id LIMIT {})",
                     MAX_CONNECTIONS_PER_DEVICE - 1
                );
                c.execute(&trim, &[&user_id, &device_id, &conn_id]).await?;
                written
            }
        };
        Ok(written == 1)
    }

    async fn delete_sliding_sync_connection(&self, user_id: &str, device_id: &str, conn_id: &str) -> StorageResult<()> {
        let mut c = self.pool.get().await?;
        c.execute(
            "DELETE FROM sliding_sync_connections WHERE user_id = $1 AND device_id = $2 AND conn_id = $3",
            &[&user_id, &device_id, &conn_id],
        )
        .await?;
        Ok(())
    }

    async fn room_summaries(
        &self,
        user_id: &str,
        room_ids: &[String],
        until: StreamPos,
    ) -> StorageResult<Vec<RoomSummaryRecord>> {
        let mut c = self.pool.get().await?;
        let rooms: Vec<&str> = room_ids.iter().map(String::as_str).collect();
        // Two round trips for the whole window: counts, state group and unread counts per room;
        // then up to five heroes per room.
        let unread = unread_counts_sql("$2", "r.room_id", "$3");
        let summaries = c
            .query(
                &format!(
                    "SELECT r.room_id, COALESCE(rooms.joined_members, 0), COALESCE(rooms.invited_members, 0),
                            rooms.current_state_group, u.notifications, u.highlights
                     FROM unnest($1::text[]) AS r(room_id) LEFT JOIN rooms ON rooms.room_id = r.room_id
                     CROSS JOIN LATERAL ({unread}) u"
                ),
                &[&rooms, &user_id, &until],
            )
            .await?;
        let mut heroes: HashMap<String, Vec<MemberRecord>> = HashMap::new();
        for row in c
            .query(
                "SELECT h.user_id, h.membership, h.event_id, h.displayname, h.avatar_url, h.stream_pos, r.room_id
                 FROM unnest($1::text[]) AS r(room_id) CROSS JOIN LATERAL (
                     SELECT user_id, membership, event_id, displayname, avatar_url, stream_pos FROM room_members
                     WHERE room_id = r.room_id AND user_id != $2 AND membership IN ('join', 'invite')
                     ORDER BY stream_pos LIMIT 5) h
                 ORDER BY r.room_id, h.stream_pos",
                &[&rooms, &user_id],
            )
            .await?
        {
            heroes.entry(row.get(6)).or_default().push(member_from_row(&row));
        }
        Ok(summaries
            .iter()
            .map(|row| {
                let room_id: String = row.get(0);
                RoomSummaryRecord {
                    heroes: heroes.remove(&room_id).unwrap_or_default(),
                    room_id,
                    joined: to_u64(row.get(1)),
                    invited: to_u64(row.get(2)),
                    current_state_group: row.get(3),
                    notifications: to_u64(row.get(4)),
                    highlights: to_u64(row.get(5)),
                }
            })
            .collect())
    }

    async fn room_timelines(
        &self,
        requests: &[(String, StreamPos, Option<StreamPos>, usize)],
    ) -> StorageResult<Vec<Vec<StoredEvent>>> {
        let mut c = self.pool.get().await?;
        // One round trip: each request is a row of the unnested arrays, its events a lateral read.
        let rooms: Vec<&str> = requests.iter().map(|r| r.0.as_str()).collect();
        let uppers: Vec<i64> = requests.iter().map(|r| r.1).collect();
        let sinces: Vec<i64> = requests.iter().map(|r| r.2.unwrap_or(i64::MIN)).collect();
        let limits: Vec<i64> = requests.iter().map(|r| r.3 as i64).collect();
        let inner = backward_events_sql_of("r.room_id", "r.upper", "r.since", "r.lim");
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[])
                 AS r(room_id, upper, since, lim)
             CROSS JOIN LATERAL ({inner}) e"
        );
        let mut by_room: HashMap<String, Vec<StoredEvent>> = HashMap::new();
        for row in c.query(&sql, &[&rooms, &uppers, &sinces, &limits]).await? {
            let ev = event_from_row(&row);
            by_room.entry(ev.room_id.clone()).or_default().push(ev);
        }
        // Newest first within each room, as the single-room read returns them.
        Ok(requests
            .iter()
            .map(|(room_id, ..)| {
                let mut events = by_room.remove(room_id).unwrap_or_default();
                events.sort_by_key(|e| std::cmp::Reverse(e.stream_pos));
                events
            })
            .collect())
    }

    async fn delete_idle_sliding_sync_connections(&self, before_ms: i64) -> StorageResult<u64> {
        let mut c = self.pool.get().await?;
        Ok(c.execute("DELETE FROM sliding_sync_connections WHERE last_used_ms < $1", &[&before_ms]).await?)
    }
}
