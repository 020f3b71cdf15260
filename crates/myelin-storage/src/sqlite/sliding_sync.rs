use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, events::backward_events, receipts::unread_counts, rooms::member_from_row};
use crate::{
    MAX_CONNECTIONS_PER_DEVICE, RoomSummaryRecord, SlidingSyncRepo, StorageResult, StoredConnection, StoredEvent,
    StreamPos,
};

#[async_trait]
impl SlidingSyncRepo for SqliteStore {
    async fn sliding_sync_connection(
        &self,
        user_id: &str,
        device_id: &str,
        conn_id: &str,
    ) -> StorageResult<Option<StoredConnection>> {
        let key = [user_id.to_owned(), device_id.to_owned(), conn_id.to_owned()];
        self.readers
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT generation, seq, state, prev_seq, prev_state, last_used_ms FROM sliding_sync_connections
                         WHERE user_id = ?1 AND device_id = ?2 AND conn_id = ?3",
                    )?
                    .query_row(key, |r| {
                        Ok(StoredConnection {
                            generation: r.get(0)?,
                            seq: r.get(1)?,
                            state: r.get(2)?,
                            prev_seq: r.get(3)?,
                            prev_state: r.get(4)?,
                            last_used_ms: r.get(5)?,
                        })
                    })
                    .optional()?)
            })
            .await
    }

    async fn save_sliding_sync_connection(
        &self,
        user_id: &str,
        device_id: &str,
        conn_id: &str,
        expected: Option<(String, i64)>,
        new: StoredConnection,
    ) -> StorageResult<bool> {
        let (user, device, conn_id) = (user_id.to_owned(), device_id.to_owned(), conn_id.to_owned());
        self.writer
            .write_relaxed(move |conn, _| {
                let written = match expected {
                    Some((generation, seq)) => conn
                        .prepare_cached(
                            "UPDATE sliding_sync_connections SET generation = ?4, seq = ?5, state = ?6, prev_seq = ?7,
                                 prev_state = ?8, last_used_ms = ?9
                             WHERE user_id = ?1 AND device_id = ?2 AND conn_id = ?3 AND generation = ?10 AND seq = ?11",
                        )?
                        .execute(params![
                            user,
                            device,
                            conn_id,
                            new.generation,
                            new.seq,
                            new.state,
                            new.prev_seq,
                            new.prev_state,
                            new.last_used_ms,
                            generation,
                            seq
                        ])?,
                    None => {
                        let written = conn
                        .prepare_cached(
                            "INSERT INTO sliding_sync_connections
                                 (user_id, device_id, conn_id, generation, seq, state, prev_seq, prev_state, last_used_ms)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                             ON CONFLICT (user_id, device_id, conn_id) DO UPDATE SET generation = excluded.generation,
                                 seq = excluded.seq, state = excluded.state, prev_seq = excluded.prev_seq,
                                 prev_state = excluded.prev_state, last_used_ms = excluded.last_used_ms",
                        )?
                        .execute(params![
                            user,
                            device,
                            conn_id,
                            new.generation,
                            new.seq,
                            new.state,
                            new.prev_seq,
                            new.prev_state,
                            new.last_used_ms
                        ])?;
                        conn.prepare_cached(&format!(
                            "DELETE FROM sliding_sync_connections
                                 WHERE user_id = ?1 AND device_id = ?2 AND conn_id <> ?3 AND conn_id NOT IN (
                                     SELECT conn_id FROM sliding_sync_connections WHERE user_id = ?1 AND device_id = ?2 AND conn_id <> ?3
                                     ORDER BY last_used_ms DESC, conn_id LIMIT {})",
                             MAX_CONNECTIONS_PER_DEVICE - 1
                        ))?
                        .execute(params![user, device, conn_id])?;
                        written
                    }
                };
                Ok(written == 1)
            })
            .await
    }

    async fn delete_sliding_sync_connection(&self, user_id: &str, device_id: &str, conn_id: &str) -> StorageResult<()> {
        let key = [user_id.to_owned(), device_id.to_owned(), conn_id.to_owned()];
        self.writer
            .write(move |conn, _| {
                conn.prepare_cached(
                    "DELETE FROM sliding_sync_connections WHERE user_id = ?1 AND device_id = ?2 AND conn_id = ?3",
                )?
                .execute(key)?;
                Ok(())
            })
            .await
    }

    async fn room_summaries(
        &self,
        user_id: &str,
        room_ids: &[String],
        until: StreamPos,
    ) -> StorageResult<Vec<RoomSummaryRecord>> {
        let (user, rooms) = (user_id.to_owned(), room_ids.to_vec());
        self.readers
            .read(move |conn| {
                let mut room = conn.prepare_cached(
                    "SELECT joined_members, invited_members, current_state_group FROM rooms WHERE room_id = ?1",
                )?;
                let mut heroes = conn.prepare_cached(
                    "SELECT user_id, membership, event_id, displayname, avatar_url, stream_pos FROM room_members
                     WHERE room_id = ?1 AND user_id != ?2 AND membership IN ('join', 'invite')
                     ORDER BY stream_pos LIMIT 5",
                )?;
                let mut out = Vec::with_capacity(rooms.len());
                for room_id in rooms {
                    let (joined, invited, current_state_group): (i64, i64, Option<i64>) = room
                        .query_row([&room_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                        .optional()?
                        .unwrap_or((0, 0, None));
                    let heroes =
                        heroes.query_map(params![room_id, user], member_from_row)?.collect::<Result<Vec<_>, _>>()?;
                    let (notifications, highlights) = unread_counts(conn, &user, &room_id, until)?;
                    out.push(RoomSummaryRecord {
                        room_id,
                        joined: joined.max(0) as u64,
                        invited: invited.max(0) as u64,
                        heroes,
                        notifications,
                        highlights,
                        current_state_group,
                    });
                }
                Ok(out)
            })
            .await
    }

    async fn room_timelines(
        &self,
        requests: &[(String, StreamPos, Option<StreamPos>, usize)],
    ) -> StorageResult<Vec<Vec<StoredEvent>>> {
        let requests = requests.to_vec();
        self.readers
            .read(move |conn| {
                let mut out = Vec::with_capacity(requests.len());
                for (room_id, upper, since, limit) in requests {
                    out.push(backward_events(conn, &room_id, upper, since, limit)?);
                }
                Ok(out)
            })
            .await
    }

    async fn delete_idle_sliding_sync_connections(&self, before_ms: i64) -> StorageResult<u64> {
        self.writer
            .write(move |conn, _| {
                Ok(conn.execute("DELETE FROM sliding_sync_connections WHERE last_used_ms < ?1", [before_ms])? as u64)
            })
            .await
    }
}
