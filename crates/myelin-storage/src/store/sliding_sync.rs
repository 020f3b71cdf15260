//! Sliding sync connection state, and the window-wide reads of a sliding sync response.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;

use super::{MEMBER_COLUMNS, event_from_row, events::backward_events_sql, member_from_row};
use myelin_core::{Membership, StateGroupId, types::OwnedRoomId};

use crate::{
    ConnectionKey, Database, MAX_CONNECTIONS_PER_DEVICE, MEMBERS_IN_SUMMARY, MemberRecord, RoomMembersSummary,
    SlidingSyncRepo, StorageResult, StoredConnection, StoredEvent, StreamPos, TimelineRequest,
    db::{BoxFut, Conn, ToValue, Value, postgres::GroupedWrite},
};

/// A compare-and-swap save of a connection (PostgreSQL writes those that queue together in one
/// statement: `db/postgres/grouped.rs`).
pub(crate) struct ConnectionSave {
    key: ConnectionKey,
    expected_generation: String,
    expected_seq: i64,
    new: StoredConnection,
}

impl GroupedWrite for ConnectionSave {
    type Key = ConnectionKey;
    fn key(&self) -> &ConnectionKey {
        &self.key
    }
}

/// Writes each save whose connection is still at its expected position, in one statement (with
/// the COMMIT); whether each was written.
pub(crate) fn save_connections<'c, 'x>(
    c: &'c mut Conn<'x>,
    saves: Vec<ConnectionSave>,
) -> BoxFut<'c, StorageResult<Vec<bool>>> {
    Box::pin(async move {
        if let [save] = saves.as_slice() {
            return Ok(vec![compare_and_swap(c, save).await?]);
        }
        let texts = |f: fn(&ConnectionSave) -> &str| Value::Texts(saves.iter().map(f).collect());
        let ints = |f: fn(&ConnectionSave) -> i64| Value::Ints(saves.iter().map(f).collect());
        let columns = [
            texts(|s| s.key.user_id.as_str()),
            texts(|s| s.key.device_id.as_str()),
            texts(|s| &s.key.conn_id),
            texts(|s| &s.new.generation),
            ints(|s| s.new.seq),
            texts(|s| &s.new.state),
            ints(|s| s.new.prev_seq),
            texts(|s| &s.new.prev_state),
            ints(|s| s.new.last_used_ms),
            texts(|s| &s.expected_generation),
            ints(|s| s.expected_seq),
        ];
        let params: Vec<&dyn ToValue> = columns.iter().map(|v| v as &dyn ToValue).collect();
        let written: HashSet<(String, String, String)> = c
            .query_then_commit(
                "UPDATE sliding_sync_connections AS c SET generation = v.generation, seq = v.seq, state = v.state,
                     prev_seq = v.prev_seq, prev_state = v.prev_state, last_used_ms = v.last_used_ms
                 FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[], $6::TEXT[], $7::BIGINT[],
                             $8::TEXT[], $9::BIGINT[], $10::TEXT[], $11::BIGINT[])
                     AS v(user_id, device_id, conn_id, generation, seq, state, prev_seq, prev_state, last_used_ms,
                          expected_generation, expected_seq)
                 WHERE c.user_id = v.user_id AND c.device_id = v.device_id AND c.conn_id = v.conn_id
                     AND c.generation = v.expected_generation AND c.seq = v.expected_seq
                 RETURNING c.user_id, c.device_id, c.conn_id",
                &params,
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .await?
            .into_iter()
            .collect();
        Ok(saves
            .iter()
            .map(|s| {
                let key = (s.key.user_id.to_string(), s.key.device_id.to_string(), s.key.conn_id.clone());
                written.contains(&key)
            })
            .collect())
    })
}

/// A connection's row as parameters $1–$9: its key, then the columns a save writes.
fn row_params<'a>(key: &'a ConnectionKey, new: &'a StoredConnection) -> [&'a dyn ToValue; 9] {
    [
        &key.user_id,
        &key.device_id,
        &key.conn_id,
        &new.generation,
        &new.seq,
        &new.state,
        &new.prev_seq,
        &new.prev_state,
        &new.last_used_ms,
    ]
}

/// One save alone (its COMMIT rides with it inside a short transaction): whether it was written.
async fn compare_and_swap(c: &mut Conn<'_>, save: &ConnectionSave) -> StorageResult<bool> {
    let ConnectionSave { key, expected_generation, expected_seq, new } = save;
    let mut params = row_params(key, new).to_vec();
    params.extend([expected_generation as &dyn ToValue, expected_seq]);
    let written = c
        .execute_then_commit(
            "UPDATE sliding_sync_connections SET generation = $4, seq = $5, state = $6, prev_seq = $7,
                 prev_state = $8, last_used_ms = $9
             WHERE user_id = $1 AND device_id = $2 AND conn_id = $3 AND generation = $10 AND seq = $11",
            &params,
        )
        .await?;
    Ok(written == 1)
}

#[async_trait]
impl SlidingSyncRepo for Database {
    async fn sliding_sync_connection(&self, key: &ConnectionKey) -> StorageResult<Option<StoredConnection>> {
        let key = key.clone();
        self.read(move |c| {
            Box::pin(async move {
                c.query_opt(
                    "SELECT generation, seq, state, prev_seq, prev_state, last_used_ms FROM sliding_sync_connections
                     WHERE user_id = $1 AND device_id = $2 AND conn_id = $3",
                    &[&key.user_id, &key.device_id, &key.conn_id],
                    |r| {
                        Ok(StoredConnection {
                            generation: r.get(0)?,
                            seq: r.get(1)?,
                            state: r.get(2)?,
                            prev_seq: r.get(3)?,
                            prev_state: r.get(4)?,
                            last_used_ms: r.get(5)?,
                        })
                    },
                )
                .await
            })
        })
        .await
    }

    async fn save_sliding_sync_connection(
        &self,
        key: &ConnectionKey,
        expected: Option<(String, i64)>,
        new: StoredConnection,
    ) -> StorageResult<bool> {
        // PostgreSQL writes the saves of the connections that answer together in one statement.
        if let (Some(postgres), Some((expected_generation, expected_seq))) = (self.postgres(), &expected) {
            let save = ConnectionSave {
                key: key.clone(),
                expected_generation: expected_generation.clone(),
                expected_seq: *expected_seq,
                new,
            };
            return postgres.write_grouped(&self.grouped.connection_saves, save).await;
        }
        let key = key.clone();
        // Connection state can be rebuilt by the client (`M_UNKNOWN_POS`): a relaxed write.
        self.transaction_relaxed(move |c| {
            Box::pin(async move {
                if let Some((expected_generation, expected_seq)) = expected {
                    return compare_and_swap(c, &ConnectionSave { key, expected_generation, expected_seq, new }).await;
                }
                let written = c
                    .execute(
                        "INSERT INTO sliding_sync_connections
                             (user_id, device_id, conn_id, generation, seq, state, prev_seq, prev_state, last_used_ms)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                         ON CONFLICT (user_id, device_id, conn_id) DO UPDATE SET generation = excluded.generation,
                             seq = excluded.seq, state = excluded.state, prev_seq = excluded.prev_seq,
                             prev_state = excluded.prev_state, last_used_ms = excluded.last_used_ms",
                        &row_params(&key, &new),
                    )
                    .await?;
                let ConnectionKey { user_id: user, device_id: device, conn_id } = key;
                let trim = format!(
                    "DELETE FROM sliding_sync_connections
                     WHERE user_id = $1 AND device_id = $2 AND conn_id <> $3 AND conn_id NOT IN (
                         SELECT conn_id FROM sliding_sync_connections
                         WHERE user_id = $1 AND device_id = $2 AND conn_id <> $3
                         ORDER BY last_used_ms DESC, conn_id LIMIT {})",
                    MAX_CONNECTIONS_PER_DEVICE - 1
                );
                c.execute(&trim, &[&user, &device, &conn_id]).await?;
                Ok(written == 1)
            })
        })
        .await
    }

    async fn delete_sliding_sync_connection(&self, key: &ConnectionKey) -> StorageResult<()> {
        let key = key.clone();
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute(
                    "DELETE FROM sliding_sync_connections WHERE user_id = $1 AND device_id = $2 AND conn_id = $3",
                    &[&key.user_id, &key.device_id, &key.conn_id],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn room_member_summaries(&self, room_ids: &[OwnedRoomId]) -> StorageResult<Vec<RoomMembersSummary>> {
        let rooms = room_ids.to_vec();
        self.read(move |c| {
            Box::pin(async move {
                // Two statements, each run for every room (one round trip each on PostgreSQL).
                let per_room: Vec<Vec<&dyn ToValue>> =
                    rooms.iter().map(|room| -> Vec<&dyn ToValue> { vec![room] }).collect();
                let counts: Vec<Vec<(u64, u64, Option<StateGroupId>)>> = c
                    .query_each(
                        "SELECT joined_members, invited_members, current_state_group FROM rooms WHERE room_id = $1",
                        &per_room,
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .await?;
                let with_memberships: Vec<Vec<&dyn ToValue>> = rooms
                    .iter()
                    .map(|room| -> Vec<&dyn ToValue> { vec![room, &Membership::Join, &Membership::Invite] })
                    .collect();
                let first_members: Vec<Vec<MemberRecord>> = c
                    .query_each(
                        &format!(
                            "SELECT {MEMBER_COLUMNS} FROM room_members
                             WHERE room_id = $1 AND membership IN ($2, $3)
                             ORDER BY stream_pos LIMIT {MEMBERS_IN_SUMMARY}"
                        ),
                        &with_memberships,
                        member_from_row,
                    )
                    .await?;
                Ok(rooms
                    .iter()
                    .zip(counts)
                    .zip(first_members)
                    .map(|((room_id, counts), first_members)| {
                        let (joined, invited, current_state_group) = counts.into_iter().next().unwrap_or((0, 0, None));
                        RoomMembersSummary {
                            room_id: room_id.clone(),
                            joined,
                            invited,
                            first_members,
                            current_state_group,
                        }
                    })
                    .collect())
            })
        })
        .await
    }

    async fn room_timelines(&self, requests: &[TimelineRequest]) -> StorageResult<Vec<Vec<StoredEvent>>> {
        let requests = requests.to_vec();
        self.read(move |c| {
            Box::pin(async move {
                // Requests with the same limit share a statement (run once per room).
                let mut by_limit: HashMap<usize, Vec<usize>> = HashMap::new();
                for (index, request) in requests.iter().enumerate() {
                    by_limit.entry(request.limit).or_default().push(index);
                }
                let mut out: Vec<Vec<StoredEvent>> = vec![Vec::new(); requests.len()];
                let sinces: Vec<StreamPos> = requests.iter().map(|r| r.since.unwrap_or(StreamPos::MIN)).collect();
                for (limit, indexes) in by_limit {
                    let params: Vec<Vec<&dyn ToValue>> = indexes
                        .iter()
                        .map(|&i| -> Vec<&dyn ToValue> { vec![&requests[i].room_id, &requests[i].upper, &sinces[i]] })
                        .collect();
                    let timelines = c.query_each(&backward_events_sql(limit), &params, event_from_row).await?;
                    for (index, events) in indexes.into_iter().zip(timelines) {
                        out[index] = events;
                    }
                }
                Ok(out)
            })
        })
        .await
    }

    async fn delete_idle_sliding_sync_connections(&self, before_ms: i64) -> StorageResult<u64> {
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute("DELETE FROM sliding_sync_connections WHERE last_used_ms < $1", &[&before_ms]).await
            })
        })
        .await
    }
}
