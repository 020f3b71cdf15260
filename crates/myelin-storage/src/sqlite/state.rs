use std::collections::HashMap;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use crate::{MAX_STATE_DELTA_HOPS, StateEntry, StateRepo, StorageError, StorageResult};

/// Resolves a state group into its full state by walking the delta chain to its snapshot.
pub fn load_state_group(conn: &Connection, group_id: i64) -> StorageResult<Vec<StateEntry>> {
    let mut chain = Vec::new();
    let mut next = Some(group_id);
    while let Some(id) = next {
        if chain.len() as i64 > MAX_STATE_DELTA_HOPS + 1 {
            return Err(StorageError::Corrupt(format!("state group {group_id}: delta chain too long")));
        }
        chain.push(id);
        next = conn
            .prepare_cached("SELECT prev_group FROM state_groups WHERE id = ?1")?
            .query_row([id], |r| r.get::<_, Option<i64>>(0))
            .optional()?
            .ok_or_else(|| StorageError::Corrupt(format!("state group {id} missing")))?;
    }
    let mut state: HashMap<(String, String), String> = HashMap::new();
    let mut stmt =
        conn.prepare_cached("SELECT event_type, state_key, event_id FROM state_group_entries WHERE group_id = ?1")?;
    for id in chain.iter().rev() {
        let rows =
            stmt.query_map([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
        for row in rows {
            let (t, k, e) = row?;
            state.insert((t, k), e);
        }
    }
    Ok(state.into_iter().map(|((t, k), e)| (t, k, e)).collect())
}

/// Creates the group after `prev` with one entry changed; returns its id.
pub fn create_state_group(
    conn: &Connection,
    room_id: &str,
    prev: Option<i64>,
    event_type: &str,
    state_key: &str,
    event_id: &str,
) -> StorageResult<i64> {
    let prev_hops: Option<i64> = match prev {
        Some(id) => conn
            .prepare_cached("SELECT hops FROM state_groups WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?,
        None => None,
    };
    let snapshot = match (prev, prev_hops) {
        (Some(_), Some(hops)) => hops + 1 >= MAX_STATE_DELTA_HOPS,
        _ => true,
    };
    if snapshot {
        let mut entries = match prev {
            Some(id) if prev_hops.is_some() => load_state_group(conn, id)?,
            _ => Vec::new(),
        };
        entries.retain(|(t, k, _)| !(t == event_type && k == state_key));
        entries.push((event_type.to_owned(), state_key.to_owned(), event_id.to_owned()));
        conn.prepare_cached("INSERT INTO state_groups (room_id, prev_group, hops) VALUES (?1, NULL, 0)")?
            .execute([room_id])?;
        let id = conn.last_insert_rowid();
        let mut insert = conn.prepare_cached(
            "INSERT INTO state_group_entries (group_id, event_type, state_key, event_id) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (t, k, e) in entries {
            insert.execute(params![id, t, k, e])?;
        }
        Ok(id)
    } else {
        conn.prepare_cached("INSERT INTO state_groups (room_id, prev_group, hops) VALUES (?1, ?2, ?3)")?
            .execute(params![room_id, prev, prev_hops.unwrap_or(0) + 1])?;
        let id = conn.last_insert_rowid();
        conn.prepare_cached(
            "INSERT INTO state_group_entries (group_id, event_type, state_key, event_id) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![id, event_type, state_key, event_id])?;
        Ok(id)
    }
}

#[async_trait]
impl StateRepo for SqliteStore {
    async fn state_group(&self, group_id: i64) -> StorageResult<Vec<StateEntry>> {
        self.readers.read(move |conn| load_state_group(conn, group_id)).await
    }
}
