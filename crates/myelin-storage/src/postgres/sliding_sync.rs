use async_trait::async_trait;

use super::{
    PgStore,
    events::{backward_events_sql, event_from_row},
    receipts::unread_counts,
    rooms::member_from_row,
};
use crate::{
    MAX_CONNECTIONS_PER_DEVICE, RoomSummaryRecord, SlidingSyncRepo, StorageResult, StoredConnection, StoredEvent,
    StreamPos,
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
        let mut out = Vec::with_capacity(room_ids.len());
        for room_id in room_ids {
            let counts = c
                .query_one(
                    "SELECT COUNT(*) FILTER (WHERE membership = 'join'), COUNT(*) FILTER (WHERE membership = 'invite'),
                            (SELECT current_state_group FROM rooms WHERE room_id = $1)
                     FROM room_members WHERE room_id = $1",
                    &[&room_id],
                )
                .await?;
            let heroes = c
                .query(
                    "SELECT user_id, membership, event_id, displayname, avatar_url, stream_pos FROM room_members
                     WHERE room_id = $1 AND user_id != $2 AND membership IN ('join', 'invite')
                     ORDER BY stream_pos LIMIT 5",
                    &[&room_id, &user_id],
                )
                .await?
                .iter()
                .map(member_from_row)
                .collect();
            let (notifications, highlights) = unread_counts(&mut c, user_id, room_id, until).await?;
            let count = |v: i64| v.max(0) as u64;
            out.push(RoomSummaryRecord {
                room_id: room_id.clone(),
                joined: count(counts.get(0)),
                invited: count(counts.get(1)),
                heroes,
                notifications,
                highlights,
                current_state_group: counts.get(2),
            });
        }
        Ok(out)
    }

    async fn room_timelines(
        &self,
        requests: &[(String, StreamPos, Option<StreamPos>, usize)],
    ) -> StorageResult<Vec<Vec<StoredEvent>>> {
        let mut c = self.pool.get().await?;
        let sql = backward_events_sql();
        let mut out = Vec::with_capacity(requests.len());
        for (room_id, upper, since, limit) in requests {
            let (since, limit) = (since.unwrap_or(i64::MIN), *limit as i64);
            out.push(c.query(&sql, &[room_id, upper, &since, &limit]).await?.iter().map(event_from_row).collect());
        }
        Ok(out)
    }

    async fn delete_idle_sliding_sync_connections(&self, before_ms: i64) -> StorageResult<u64> {
        let mut c = self.pool.get().await?;
        Ok(c.execute("DELETE FROM sliding_sync_connections WHERE last_used_ms < $1", &[&before_ms]).await?)
    }
}
