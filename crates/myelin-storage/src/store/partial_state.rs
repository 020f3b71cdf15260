//! Rooms joined with partial state, and their completion.

use async_trait::async_trait;

use myelin_core::{
    Membership, StateGroupId,
    types::{OwnedEventId, OwnedServerName, RoomId},
};

use crate::{
    Database, MemberChange, PartialStateRepo, PartialStateRoom, StateEntry, StorageError, StorageResult,
    db::{Change, Conn, ToValue, Write},
};

/// Runs one statement per parameter set (pipelined on PostgreSQL).
async fn insert_each(c: &mut Conn<'_>, sql: &str, param_sets: &[Vec<&dyn ToValue>]) -> StorageResult<()> {
    let writes: Vec<Write<'_>> = param_sets.iter().map(|params| Write::Sql(sql, params.as_slice())).collect();
    c.execute_all(&writes).await?;
    Ok(())
}

#[async_trait]
impl PartialStateRepo for Database {
    async fn mark_partial_state(
        &self,
        room_id: &RoomId,
        join_event_id: &OwnedEventId,
        servers: &[OwnedServerName],
    ) -> StorageResult<()> {
        let servers = serde_json::to_string(servers).map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let (room_id, join_event_id) = (room_id.to_owned(), join_event_id.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO partial_state_rooms (room_id, join_event_id, servers) VALUES ($1, $2, $3)
                     ON CONFLICT (room_id) DO UPDATE SET join_event_id = excluded.join_event_id, servers = excluded.servers",
                    &[&room_id, &join_event_id, &servers],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn partial_state(&self, room_id: &RoomId) -> StorageResult<Option<PartialStateRoom>> {
        let room_id = room_id.to_owned();
        let row: Option<(OwnedEventId, String)> = self
            .read(move |c| {
                Box::pin(async move {
                    c.query_opt(
                        "SELECT join_event_id, servers FROM partial_state_rooms WHERE room_id = $1",
                        &[&room_id],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .await
                })
            })
            .await?;
        row.map(|(join_event_id, servers)| {
            let servers = serde_json::from_str(&servers).map_err(|e| StorageError::Corrupt(e.to_string()))?;
            Ok(PartialStateRoom { join_event_id, servers })
        })
        .transpose()
    }

    async fn clear_partial_state(&self, room_id: &RoomId) -> StorageResult<()> {
        let room_id = room_id.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute("DELETE FROM partial_state_rooms WHERE room_id = $1", &[&room_id]).await?;
                Ok(())
            })
        })
        .await
    }

    async fn complete_partial_state(
        &self,
        room_id: &RoomId,
        missing: Vec<StateEntry>,
        members: Vec<MemberChange>,
    ) -> StorageResult<Vec<StateGroupId>> {
        let room_id = room_id.to_owned();
        self.write(move |c, positions| {
            Box::pin(async move {
                // The room's row, locked: an event persisted meanwhile waits, then finds the
                // completed state.
                c.execute("UPDATE rooms SET room_id = room_id WHERE room_id = $1", &[&room_id]).await?;
                let groups: Vec<StateGroupId> =
                    c.query("SELECT id FROM state_groups WHERE room_id = $1", &[&room_id], |r| r.get(0)).await?;
                // Deltas read through to their snapshot: completing the snapshots completes all.
                let snapshots: Vec<StateGroupId> = c
                    .query("SELECT id FROM state_groups WHERE room_id = $1 AND prev_group IS NULL", &[&room_id], |r| {
                        r.get(0)
                    })
                    .await?;
                let entry_sets: Vec<Vec<&dyn ToValue>> = snapshots
                    .iter()
                    .flat_map(|g| missing.iter().map(move |(t, k, e)| -> Vec<&dyn ToValue> { vec![g, t, k, e] }))
                    .collect();
                insert_each(
                    c,
                    "INSERT INTO state_group_entries (group_id, event_type, state_key, event_id) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (group_id, event_type, state_key) DO NOTHING",
                    &entry_sets,
                )
                .await?;
                let current_sets: Vec<Vec<&dyn ToValue>> =
                    missing.iter().map(|(t, k, e)| -> Vec<&dyn ToValue> { vec![&room_id, t, k, e] }).collect();
                insert_each(
                    c,
                    "INSERT INTO current_state (room_id, event_type, state_key, event_id) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (room_id, event_type, state_key) DO NOTHING",
                    &current_sets,
                )
                .await?;
                let pos = positions.next(Change::Any).await?;
                let member_sets: Vec<Vec<&dyn ToValue>> = members
                    .iter()
                    .map(|m| -> Vec<&dyn ToValue> {
                        vec![
                            &room_id,
                            &m.update.user_id,
                            &m.update.membership,
                            &m.event_id,
                            &pos,
                            &m.update.displayname,
                            &m.update.avatar_url,
                            &m.sender,
                        ]
                    })
                    .collect();
                insert_each(
                    c,
                    "INSERT INTO room_members (room_id, user_id, membership, event_id, stream_pos, displayname, avatar_url, forgotten, sender)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8)
                     ON CONFLICT (room_id, user_id) DO NOTHING",
                    &member_sets,
                )
                .await?;
                // The room has news at `pos` (its new member rows): a sync after it looks at the
                // room and tells its members' clients of the users they now share it with.
                c.execute(
                    "UPDATE rooms SET
                         joined_members = (SELECT COUNT(*) FROM room_members WHERE room_id = $1 AND membership = $2),
                         invited_members = (SELECT COUNT(*) FROM room_members WHERE room_id = $1 AND membership = $3),
                         last_event_pos = $4
                     WHERE room_id = $1",
                    &[&room_id, &Membership::Join, &Membership::Invite, &pos],
                )
                .await?;
                c.execute("DELETE FROM partial_state_rooms WHERE room_id = $1", &[&room_id]).await?;
                Ok(groups)
            })
        })
        .await
    }
}
