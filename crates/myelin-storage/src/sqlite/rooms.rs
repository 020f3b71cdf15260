use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{
    SqliteStore,
    events::{EVENT_COLUMNS, event_from_row},
};
use crate::{MemberRecord, PublicRoomRecord, RoomRecord, RoomRepo, StorageResult, StoredEvent, StreamPos, UserRoom};

pub(super) fn member_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MemberRecord> {
    Ok(MemberRecord {
        user_id: r.get(0)?,
        membership: r.get(1)?,
        event_id: r.get(2)?,
        displayname: r.get(3)?,
        avatar_url: r.get(4)?,
        stream_pos: r.get(5)?,
    })
}

#[async_trait]
impl RoomRepo for SqliteStore {
    async fn get_room(&self, room_id: &str) -> StorageResult<Option<RoomRecord>> {
        let room_id = room_id.to_owned();
        self.readers
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT room_id, room_version, creator, is_public, current_state_group, last_event_pos
                         FROM rooms WHERE room_id = ?1",
                    )?
                    .query_row([room_id], |r| {
                        Ok(RoomRecord {
                            room_id: r.get(0)?,
                            room_version: r.get(1)?,
                            creator: r.get(2)?,
                            is_public: r.get(3)?,
                            current_state_group: r.get(4)?,
                            last_event_pos: r.get(5)?,
                        })
                    })
                    .optional()?)
            })
            .await
    }

    async fn rooms_for_user(&self, user_id: &str) -> StorageResult<Vec<UserRoom>> {
        let user_id = user_id.to_owned();
        self.readers
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {USER_ROOM_COLUMNS} FROM room_members m JOIN rooms r ON r.room_id = m.room_id
                     WHERE m.user_id = ?1"
                ))?;
                let rows = stmt.query_map([user_id], user_room_from_row)?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn rooms_for_user_since(
        &self,
        user_id: &str,
        since: StreamPos,
        limit: usize,
    ) -> StorageResult<Vec<UserRoom>> {
        let user_id = user_id.to_owned();
        self.readers
            .read(move |conn| {
                // CROSS JOIN keeps SQLite on the rooms' position index (rooms with recent events,
                // each checked for the user's row) instead of walking all of the user's rooms.
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {USER_ROOM_COLUMNS} FROM room_members m JOIN rooms r ON r.room_id = m.room_id
                     WHERE m.user_id = ?1 AND m.stream_pos > ?2
                     UNION
                     SELECT {USER_ROOM_COLUMNS} FROM rooms r CROSS JOIN room_members m
                     WHERE r.last_event_pos > ?2 AND m.room_id = r.room_id AND m.user_id = ?1
                     LIMIT {limit}"
                ))?;
                let rows = stmt.query_map(params![user_id, since], user_room_from_row)?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn room_members(&self, room_id: &str, membership: Option<&str>) -> StorageResult<Vec<MemberRecord>> {
        let (room_id, membership) = (room_id.to_owned(), membership.map(str::to_owned));
        self.readers
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT user_id, membership, event_id, displayname, avatar_url, stream_pos FROM room_members
                     WHERE room_id = ?1 AND (?2 IS NULL OR membership = ?2) ORDER BY user_id",
                )?;
                let rows = stmt.query_map(params![room_id, membership], member_from_row)?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn membership_changes(
        &self,
        room_id: &str,
        since: StreamPos,
        until: StreamPos,
    ) -> StorageResult<Vec<MemberRecord>> {
        let room_id = room_id.to_owned();
        self.readers
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT user_id, membership, event_id, displayname, avatar_url, stream_pos FROM room_members
                     WHERE room_id = ?1 AND stream_pos > ?2 AND stream_pos <= ?3",
                )?;
                let rows = stmt.query_map(params![room_id, since, until], member_from_row)?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn membership(&self, room_id: &str, user_id: &str) -> StorageResult<Option<MemberRecord>> {
        let (room_id, user_id) = (room_id.to_owned(), user_id.to_owned());
        self.readers
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT user_id, membership, event_id, displayname, avatar_url, stream_pos FROM room_members
                         WHERE room_id = ?1 AND user_id = ?2",
                    )?
                    .query_row([room_id, user_id], member_from_row)
                    .optional()?)
            })
            .await
    }

    async fn current_state_ids(&self, room_id: &str) -> StorageResult<Vec<(String, String, String)>> {
        let room_id = room_id.to_owned();
        self.readers
            .read(move |conn| {
                let mut stmt = conn
                    .prepare_cached("SELECT event_type, state_key, event_id FROM current_state WHERE room_id = ?1")?;
                let rows = stmt.query_map([room_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn current_state_event(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
    ) -> StorageResult<Option<StoredEvent>> {
        let (room_id, event_type, state_key) = (room_id.to_owned(), event_type.to_owned(), state_key.to_owned());
        self.readers
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(&format!(
                        "SELECT {EVENT_COLUMNS} FROM current_state c JOIN events e ON e.event_id = c.event_id
                         WHERE c.room_id = ?1 AND c.event_type = ?2 AND c.state_key = ?3"
                    ))?
                    .query_row([room_id, event_type, state_key], event_from_row)
                    .optional()?)
            })
            .await
    }

    async fn forget_room(&self, user_id: &str, room_id: &str) -> StorageResult<()> {
        let (user_id, room_id) = (user_id.to_owned(), room_id.to_owned());
        self.writer
            .write(move |conn, _| {
                conn.execute(
                    "UPDATE room_members SET forgotten = 1 WHERE room_id = ?1 AND user_id = ?2",
                    [room_id, user_id],
                )?;
                Ok(())
            })
            .await
    }

    async fn room_mates(&self, user_id: &str) -> StorageResult<Vec<String>> {
        let user_id = user_id.to_owned();
        self.readers
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT DISTINCT b.user_id FROM room_members a JOIN room_members b ON a.room_id = b.room_id
                     WHERE a.user_id = ?1 AND a.membership = 'join' AND b.membership IN ('join', 'invite')",
                )?;
                let rows = stmt.query_map([user_id], |r| r.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn sharing_rooms_with(&self, user_id: &str, others: &[String]) -> StorageResult<Vec<String>> {
        let (user_id, others) = (user_id.to_owned(), others.to_vec());
        self.readers
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT 1 FROM room_members a JOIN room_members b ON a.room_id = b.room_id
                     WHERE a.user_id = ?1 AND a.membership = 'join' AND b.user_id = ?2 AND b.membership IN ('join', 'invite')
                     LIMIT 1",
                )?;
                let mut out = Vec::new();
                for other in others {
                    if stmt.exists([&user_id, &other])? {
                        out.push(other);
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn create_alias(&self, alias: &str, room_id: &str, creator: &str) -> StorageResult<()> {
        let (alias, room_id, creator) = (alias.to_owned(), room_id.to_owned(), creator.to_owned());
        self.writer
            .write(move |conn, _| {
                conn.execute(
                    "INSERT INTO room_aliases (alias, room_id, creator) VALUES (?1, ?2, ?3)",
                    [alias, room_id, creator],
                )?;
                Ok(())
            })
            .await
    }

    async fn delete_alias(&self, alias: &str) -> StorageResult<bool> {
        let alias = alias.to_owned();
        self.writer
            .write(move |conn, _| Ok(conn.execute("DELETE FROM room_aliases WHERE alias = ?1", [alias])? > 0))
            .await
    }

    async fn resolve_alias(&self, alias: &str) -> StorageResult<Option<(String, String)>> {
        let alias = alias.to_owned();
        self.readers
            .read(move |conn| {
                Ok(conn
                    .prepare_cached("SELECT room_id, creator FROM room_aliases WHERE alias = ?1")?
                    .query_row([alias], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?)
            })
            .await
    }

    async fn room_aliases(&self, room_id: &str) -> StorageResult<Vec<String>> {
        let room_id = room_id.to_owned();
        self.readers
            .read(move |conn| {
                let mut stmt =
                    conn.prepare_cached("SELECT alias FROM room_aliases WHERE room_id = ?1 ORDER BY alias")?;
                let rows = stmt.query_map([room_id], |r| r.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn set_room_public(&self, room_id: &str, public: bool) -> StorageResult<()> {
        let room_id = room_id.to_owned();
        self.writer
            .write(move |conn, _| {
                conn.execute("UPDATE rooms SET is_public = ?2 WHERE room_id = ?1", params![room_id, public])?;
                Ok(())
            })
            .await
    }

    async fn public_rooms(&self, offset: usize, limit: usize) -> StorageResult<(Vec<PublicRoomRecord>, usize)> {
        self.readers
            .read(move |conn| {
                let total: i64 = conn.query_row("SELECT COUNT(*) FROM rooms WHERE is_public = 1", [], |r| r.get(0))?;
                let mut stmt = conn.prepare_cached(
                    "SELECT r.room_id, r.joined_members AS n
                     FROM rooms r WHERE r.is_public = 1 ORDER BY n DESC, r.room_id LIMIT ?1 OFFSET ?2",
                )?;
                let rows = stmt.query_map(params![limit as i64, offset as i64], |r| {
                    Ok(PublicRoomRecord { room_id: r.get(0)?, joined_members: r.get::<_, i64>(1)?.max(0) as u64 })
                })?;
                Ok((rows.collect::<Result<_, _>>()?, total.max(0) as usize))
            })
            .await
    }
}

const USER_ROOM_COLUMNS: &str =
    "m.room_id, m.membership, m.event_id, m.stream_pos, r.last_event_pos, m.forgotten, m.sender, r.bump_pos";

fn user_room_from_row(r: &rusqlite::Row) -> rusqlite::Result<UserRoom> {
    Ok(UserRoom {
        room_id: r.get(0)?,
        membership: r.get(1)?,
        membership_event_id: r.get(2)?,
        membership_pos: r.get(3)?,
        last_event_pos: r.get(4)?,
        forgotten: r.get(5)?,
        membership_sender: r.get(6)?,
        bump_pos: r.get(7)?,
    })
}
