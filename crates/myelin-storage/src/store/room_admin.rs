//! Rooms as admins handle them.

use async_trait::async_trait;

use myelin_core::types::{OwnedUserId, RoomId, UserId};

use crate::{AdminRoomRow, Database, RoomAdminRepo, RoomDeletion, RoomStateContent, StorageResult, db::Row};

/// The tables with a `room_id` column whose rows a purge deletes (the room's own row last).
/// State groups stay: SQLite would hand a deleted top id to the next group, which every
/// process's state group cache (immutable entries) would then answer with the purged state.
const ROOM_TABLES: [&str; 14] = [
    "forward_extremities",
    "current_state",
    "room_members",
    "room_aliases",
    "event_push_actions",
    "receipts",
    "account_data",
    "event_search",
    "remote_room_state",
    "partial_state_rooms",
    "delayed_events",
    "sticky_events",
    "server_notice_rooms",
    "rooms",
];

fn deletion_from_row(r: &Row<'_>) -> StorageResult<RoomDeletion> {
    Ok(RoomDeletion {
        delete_id: r.get(0)?,
        room_id: r.get(1)?,
        status: r.get(2)?,
        error: r.get(3)?,
        result: r.get(4)?,
        created_ms: r.get(5)?,
    })
}

const DELETION_COLUMNS: &str = "delete_id, room_id, status, error, result, created_ms";

#[async_trait]
impl RoomAdminRepo for Database {
    async fn admin_rooms(&self, server: &str, room: Option<&RoomId>) -> StorageResult<Vec<AdminRoomRow>> {
        let local = format!("%:{}", super::escape_like(server));
        let room = room.map(|r| r.as_str().to_owned()).unwrap_or_default();
        self.read(move |c| {
            Box::pin(async move {
                c.query(
                    "SELECT r.room_id, r.room_version, r.creator, r.is_public, r.join_rule, r.joined_members,
                            r.invited_members,
                            (SELECT COUNT(*) FROM room_members m
                             WHERE m.room_id = r.room_id AND m.membership = 'join' AND m.user_id LIKE $1 ESCAPE '\\'),
                            (SELECT COUNT(*) FROM current_state s WHERE s.room_id = r.room_id)
                     FROM rooms r WHERE $2 = '' OR r.room_id = $2",
                    &[&local, &room],
                    |r| {
                        Ok(AdminRoomRow {
                            room_id: r.get(0)?,
                            room_version: r.get(1)?,
                            creator: r.get(2)?,
                            is_public: r.get(3)?,
                            join_rule: r.get(4)?,
                            joined_members: r.get(5)?,
                            invited_members: r.get(6)?,
                            joined_local_members: r.get(7)?,
                            state_events: r.get(8)?,
                        })
                    },
                )
                .await
            })
        })
        .await
    }

    async fn room_state_contents(
        &self,
        room: Option<&RoomId>,
        event_types: &[&str],
    ) -> StorageResult<Vec<RoomStateContent>> {
        let room = room.map(|r| r.as_str().to_owned()).unwrap_or_default();
        let types: Vec<String> = event_types.iter().map(|t| (*t).to_owned()).collect();
        self.read(move |c| {
            Box::pin(async move {
                c.query(
                    "SELECT s.room_id, s.event_type, e.json FROM current_state s
                     JOIN events e ON e.event_id = s.event_id
                     WHERE s.state_key = '' AND s.event_type = ANY($1) AND ($2 = '' OR s.room_id = $2)",
                    &[&types, &room],
                    |r| Ok(RoomStateContent { room_id: r.get(0)?, event_type: r.get(1)?, json: r.get(2)? }),
                )
                .await
            })
        })
        .await
    }

    async fn block_room(&self, room_id: &RoomId, by: &UserId, now_ms: u64) -> StorageResult<()> {
        let (room_id, by) = (room_id.to_owned(), by.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO blocked_rooms (room_id, blocked_by, blocked_ms) VALUES ($1, $2, $3)
                     ON CONFLICT (room_id) DO NOTHING",
                    &[&room_id, &by, &now_ms],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn unblock_room(&self, room_id: &RoomId) -> StorageResult<()> {
        let room_id = room_id.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute("DELETE FROM blocked_rooms WHERE room_id = $1", &[&room_id]).await?;
                Ok(())
            })
        })
        .await
    }

    async fn room_blocked_by(&self, room_id: &RoomId) -> StorageResult<Option<OwnedUserId>> {
        let room_id = room_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query_opt("SELECT blocked_by FROM blocked_rooms WHERE room_id = $1", &[&room_id], |r| r.get(0)).await
            })
        })
        .await
    }

    async fn put_room_deletion(&self, deletion: &RoomDeletion) -> StorageResult<()> {
        let d = deletion.clone();
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO room_deletions (delete_id, room_id, status, error, result, created_ms)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (delete_id) DO UPDATE SET status = $3, error = $4, result = $5",
                    &[&d.delete_id, &d.room_id, &d.status, &d.error, &d.result, &d.created_ms],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn room_deletion(&self, delete_id: &str) -> StorageResult<Option<RoomDeletion>> {
        let delete_id = delete_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!("SELECT {DELETION_COLUMNS} FROM room_deletions WHERE delete_id = $1");
                c.query_opt(&sql, &[&delete_id], deletion_from_row).await
            })
        })
        .await
    }

    async fn room_deletions(&self, room_id: &RoomId) -> StorageResult<Vec<RoomDeletion>> {
        let room_id = room_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT {DELETION_COLUMNS} FROM room_deletions WHERE room_id = $1 ORDER BY created_ms, delete_id"
                );
                c.query(&sql, &[&room_id], deletion_from_row).await
            })
        })
        .await
    }

    async fn purge_room(&self, room_id: &RoomId) -> StorageResult<()> {
        let room_id = room_id.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                // Events still queued for other servers or application services (the members'
                // leaves) stay until they are sent: their outbox entries read them.
                c.execute(
                    "DELETE FROM events WHERE room_id = $1
                       AND NOT EXISTS (SELECT 1 FROM federation_outbox f WHERE f.event_id = events.event_id)
                       AND NOT EXISTS (SELECT 1 FROM appservice_outbox a WHERE a.event_id = events.event_id)",
                    &[&room_id],
                )
                .await?;
                for table in ROOM_TABLES {
                    c.execute(&format!("DELETE FROM {table} WHERE room_id = $1"), &[&room_id]).await?;
                }
                Ok(())
            })
        })
        .await
    }
}
