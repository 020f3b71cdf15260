//! State groups: immutable snapshots of room state, stored as deltas against a previous group.

use std::collections::HashMap;

use async_trait::async_trait;

use myelin_core::{
    StateGroupId,
    types::{EventId, OwnedEventId, RoomId, StateEventType},
};

use crate::{
    Database, MAX_STATE_DELTA_HOPS, StateEntry, StateRepo, StorageError, StorageResult,
    db::{Conn, ToValue},
};

/// Resolves a state group into its full state by walking the delta chain to its snapshot.
pub(crate) async fn load_state_group(c: &mut Conn<'_>, group_id: StateGroupId) -> StorageResult<Vec<StateEntry>> {
    // The chain in one query: the group, its prev_group, and so on up to the snapshot.
    let chain: Vec<(i64, Option<i64>)> = c
        .query(
            "WITH RECURSIVE chain(id, prev_group, n) AS (
                 SELECT id, prev_group, CAST(0 AS BIGINT) FROM state_groups WHERE id = $1
                 UNION ALL
                 SELECT g.id, g.prev_group, chain.n + 1 FROM state_groups g JOIN chain ON g.id = chain.prev_group
                 WHERE chain.n <= $2)
             SELECT id, prev_group FROM chain ORDER BY n",
            &[&group_id, &(MAX_STATE_DELTA_HOPS + 1)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .await?;
    match chain.last() {
        None => return Err(StorageError::Corrupt(format!("state group {group_id} missing"))),
        Some((_, Some(_))) => {
            return Err(StorageError::Corrupt(format!("state group {group_id}: delta chain broken or too long")));
        }
        Some(_) => {}
    }
    let ids: Vec<i64> = chain.iter().map(|(id, _)| *id).collect();
    let mut rows: Vec<(i64, StateEventType, String, OwnedEventId)> = c
        .query(
            "SELECT group_id, event_type, state_key, event_id FROM state_group_entries WHERE group_id = ANY($1)",
            &[&ids],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .await?;
    // Apply from the snapshot (last in the chain) to the group itself.
    let rank: HashMap<i64, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    rows.sort_by_key(|(group, ..)| std::cmp::Reverse(rank.get(group).copied().unwrap_or(0)));
    let mut state: HashMap<(StateEventType, String), OwnedEventId> = HashMap::new();
    for (_, t, k, e) in rows {
        state.insert((t, k), e);
    }
    Ok(state.into_iter().map(|((t, k), e)| (t, k, e)).collect())
}

/// Creates the group after `prev` with one entry changed; returns its id.
pub(crate) async fn create_state_group(
    c: &mut Conn<'_>,
    room_id: &RoomId,
    prev: Option<StateGroupId>,
    event_type: &StateEventType,
    state_key: &str,
    event_id: &EventId,
) -> StorageResult<StateGroupId> {
    let prev_hops: Option<i64> = match prev {
        Some(id) => Some(
            c.query_opt("SELECT hops FROM state_groups WHERE id = $1", &[&id], |r| r.get(0))
                .await?
                .ok_or_else(|| StorageError::Corrupt(format!("state group {id} is missing")))?,
        ),
        None => None,
    };
    let snapshot = prev_hops.is_none_or(|hops| hops + 1 >= MAX_STATE_DELTA_HOPS);
    if snapshot {
        let mut entries = match prev {
            Some(id) => load_state_group(c, id).await?,
            None => Vec::new(),
        };
        entries.retain(|(t, k, _)| !(t == event_type && k == state_key));
        entries.push((event_type.clone(), state_key.to_owned(), event_id.to_owned()));
        create_state_snapshot(c, room_id, &entries).await
    } else {
        let hops = prev_hops.unwrap_or(0) + 1;
        let id: i64 = c
            .query_one(
                "INSERT INTO state_groups (room_id, prev_group, hops) VALUES ($1, $2, $3) RETURNING id",
                &[&room_id, &prev, &hops],
                |r| r.get(0),
            )
            .await?;
        c.execute(
            "INSERT INTO state_group_entries (group_id, event_type, state_key, event_id) VALUES ($1, $2, $3, $4)",
            &[&id, &event_type, &state_key, &event_id],
        )
        .await?;
        Ok(id)
    }
}

/// Creates a snapshot group holding exactly `entries`; returns its id.
pub(crate) async fn create_state_snapshot(
    c: &mut Conn<'_>,
    room_id: &RoomId,
    entries: &[StateEntry],
) -> StorageResult<StateGroupId> {
    let id: i64 = c
        .query_one(
            "INSERT INTO state_groups (room_id, prev_group, hops) VALUES ($1, NULL, 0) RETURNING id",
            &[&room_id],
            |r| r.get(0),
        )
        .await?;
    let rows: Vec<Vec<&dyn ToValue>> =
        entries.iter().map(|(t, k, e)| -> Vec<&dyn ToValue> { vec![&id, t, k, e] }).collect();
    if !rows.is_empty() {
        c.insert_rows("INSERT INTO state_group_entries (group_id, event_type, state_key, event_id)", &rows).await?;
    }
    Ok(id)
}

#[async_trait]
impl StateRepo for Database {
    async fn state_group(&self, group_id: StateGroupId) -> StorageResult<Vec<StateEntry>> {
        self.read(move |c| Box::pin(async move { load_state_group(c, group_id).await })).await
    }
}
