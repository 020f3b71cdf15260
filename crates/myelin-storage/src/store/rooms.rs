//! Rooms, current state, memberships, aliases and the public directory.

use async_trait::async_trait;

use super::{EVENT_COLUMNS, MEMBER_COLUMNS, USER_ROOM_COLUMNS, event_from_row, member_from_row, user_room_from_row};
use myelin_core::{
    Membership,
    types::{OwnedEventId, OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomAliasId, RoomId, StateEventType, UserId},
};

use crate::{
    Database, MemberRecord, PublicRoomRecord, RoomPositions, RoomRecord, RoomRepo, StorageResult, StoredEvent,
    StreamPos, UserRoom, db::Change,
};

#[async_trait]
impl RoomRepo for Database {
    async fn get_room(&self, room_id: &RoomId) -> StorageResult<Option<RoomRecord>> {
        let room_id = room_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query_opt(
                    "SELECT room_id, room_version, creator, is_public, current_state_group, last_event_pos
                     FROM rooms WHERE room_id = $1",
                    &[&room_id],
                    |r| {
                        Ok(RoomRecord {
                            room_id: r.get(0)?,
                            room_version: r.get(1)?,
                            creator: r.get(2)?,
                            is_public: r.get(3)?,
                            current_state_group: r.get(4)?,
                            last_event_pos: r.get(5)?,
                        })
                    },
                )
                .await
            })
        })
        .await
    }

    async fn rooms_for_user(&self, user_id: &UserId) -> StorageResult<Vec<UserRoom>> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT {USER_ROOM_COLUMNS} FROM room_members m JOIN rooms r ON r.room_id = m.room_id
                     WHERE m.user_id = $1"
                );
                c.query(&sql, &[&user_id], user_room_from_row).await
            })
        })
        .await
    }

    async fn rooms_for_user_since(
        &self,
        user_id: &UserId,
        since: StreamPos,
        limit: usize,
    ) -> StorageResult<Vec<UserRoom>> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                // CROSS JOIN keeps SQLite on the rooms' position index (rooms with recent events,
                // each checked for the user's row) instead of walking all of the user's rooms;
                // PostgreSQL plans it as an ordinary join.
                let sql = format!(
                    "SELECT {USER_ROOM_COLUMNS} FROM room_members m JOIN rooms r ON r.room_id = m.room_id
                     WHERE m.user_id = $1 AND m.stream_pos > $2
                     UNION
                     SELECT {USER_ROOM_COLUMNS} FROM rooms r CROSS JOIN room_members m
                     WHERE r.last_event_pos > $2 AND m.room_id = r.room_id AND m.user_id = $1
                     LIMIT {limit}"
                );
                c.query(&sql, &[&user_id, &since], user_room_from_row).await
            })
        })
        .await
    }

    async fn rooms_with_events_since(&self, since: StreamPos, limit: usize) -> StorageResult<Vec<RoomPositions>> {
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT room_id, last_event_pos, bump_pos FROM rooms WHERE last_event_pos > $1 LIMIT {limit}"
                );
                c.query(&sql, &[&since], |r| {
                    Ok(RoomPositions { room_id: r.get(0)?, last_event_pos: r.get(1)?, bump_pos: r.get(2)? })
                })
                .await
            })
        })
        .await
    }

    async fn room_members(&self, room_id: &RoomId, membership: Option<Membership>) -> StorageResult<Vec<MemberRecord>> {
        let room_id = room_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT {MEMBER_COLUMNS} FROM room_members
                     WHERE room_id = $1 AND (CAST($2 AS TEXT) IS NULL OR membership = $2) ORDER BY user_id"
                );
                c.query(&sql, &[&room_id, &membership], member_from_row).await
            })
        })
        .await
    }

    async fn membership_changes(
        &self,
        room_id: &RoomId,
        since: StreamPos,
        until: StreamPos,
    ) -> StorageResult<Vec<MemberRecord>> {
        if !self.may_have_changed(Change::Membership, since) {
            return Ok(Vec::new());
        }
        let room_id = room_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT {MEMBER_COLUMNS} FROM room_members WHERE room_id = $1 AND stream_pos > $2 AND stream_pos <= $3"
                );
                c.query(&sql, &[&room_id, &since, &until], member_from_row).await
            })
        })
        .await
    }

    async fn membership(&self, room_id: &RoomId, user_id: &UserId) -> StorageResult<Option<MemberRecord>> {
        let (room_id, user_id) = (room_id.to_owned(), user_id.to_owned());
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!("SELECT {MEMBER_COLUMNS} FROM room_members WHERE room_id = $1 AND user_id = $2");
                c.query_opt(&sql, &[&room_id, &user_id], member_from_row).await
            })
        })
        .await
    }

    async fn current_state_ids(&self, room_id: &RoomId) -> StorageResult<Vec<(StateEventType, String, OwnedEventId)>> {
        let room_id = room_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query(
                    "SELECT event_type, state_key, event_id FROM current_state WHERE room_id = $1",
                    &[&room_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .await
            })
        })
        .await
    }

    async fn current_state_event(
        &self,
        room_id: &RoomId,
        event_type: &StateEventType,
        state_key: &str,
    ) -> StorageResult<Option<StoredEvent>> {
        let (room_id, event_type, state_key) = (room_id.to_owned(), event_type.clone(), state_key.to_owned());
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM current_state s JOIN events e ON e.event_id = s.event_id
                     WHERE s.room_id = $1 AND s.event_type = $2 AND s.state_key = $3"
                );
                c.query_opt(&sql, &[&room_id, &event_type, &state_key], event_from_row).await
            })
        })
        .await
    }

    async fn forget_room(&self, user_id: &UserId, room_id: &RoomId) -> StorageResult<()> {
        let (user_id, room_id) = (user_id.to_owned(), room_id.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute(
                    "UPDATE room_members SET forgotten = 1 WHERE room_id = $1 AND user_id = $2",
                    &[&room_id, &user_id],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn room_mates(&self, user_id: &UserId) -> StorageResult<Vec<OwnedUserId>> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query(
                    "SELECT DISTINCT b.user_id FROM room_members a JOIN room_members b ON a.room_id = b.room_id
                     WHERE a.user_id = $1 AND a.membership = $2 AND b.membership IN ($2, $3)",
                    &[&user_id, &Membership::Join, &Membership::Invite],
                    |r| r.get(0),
                )
                .await
            })
        })
        .await
    }

    async fn sharing_rooms_with(&self, user_id: &UserId, others: &[OwnedUserId]) -> StorageResult<Vec<OwnedUserId>> {
        if others.is_empty() {
            return Ok(Vec::new());
        }
        let (user_id, others) = (user_id.to_owned(), others.to_vec());
        self.read(move |c| {
            Box::pin(async move {
                c.query(
                    "SELECT DISTINCT b.user_id FROM room_members a JOIN room_members b ON a.room_id = b.room_id
                     WHERE a.user_id = $1 AND a.membership = $3 AND b.user_id = ANY($2)
                       AND b.membership IN ($3, $4)",
                    &[&user_id, &others, &Membership::Join, &Membership::Invite],
                    |r| r.get(0),
                )
                .await
            })
        })
        .await
    }

    async fn create_alias(&self, alias: &RoomAliasId, room_id: &RoomId, creator: &UserId) -> StorageResult<()> {
        let (alias, room_id, creator) = (alias.to_owned(), room_id.to_owned(), creator.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO room_aliases (alias, room_id, creator) VALUES ($1, $2, $3)",
                    &[&alias, &room_id, &creator],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn delete_alias(&self, alias: &RoomAliasId) -> StorageResult<bool> {
        let alias = alias.to_owned();
        self.transaction(move |c| {
            Box::pin(async move { Ok(c.execute("DELETE FROM room_aliases WHERE alias = $1", &[&alias]).await? > 0) })
        })
        .await
    }

    async fn resolve_alias(&self, alias: &RoomAliasId) -> StorageResult<Option<(OwnedRoomId, OwnedUserId)>> {
        let alias = alias.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query_opt("SELECT room_id, creator FROM room_aliases WHERE alias = $1", &[&alias], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .await
            })
        })
        .await
    }

    async fn room_aliases(&self, room_id: &RoomId) -> StorageResult<Vec<OwnedRoomAliasId>> {
        let room_id = room_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query("SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias", &[&room_id], |r| r.get(0))
                    .await
            })
        })
        .await
    }

    async fn set_room_public(&self, room_id: &RoomId, public: bool) -> StorageResult<()> {
        let room_id = room_id.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute("UPDATE rooms SET is_public = $2 WHERE room_id = $1", &[&room_id, &public]).await?;
                Ok(())
            })
        })
        .await
    }

    async fn public_rooms(&self, offset: usize, limit: usize) -> StorageResult<(Vec<PublicRoomRecord>, usize)> {
        self.read(move |c| {
            Box::pin(async move {
                let total: u64 =
                    c.query_one("SELECT COUNT(*) FROM rooms WHERE is_public = 1", &[], |r| r.get(0)).await?;
                let sql = format!(
                    "SELECT r.room_id, r.joined_members AS n FROM rooms r WHERE r.is_public = 1
                     ORDER BY n DESC, r.room_id LIMIT {limit} OFFSET {offset}"
                );
                let rooms = c
                    .query(&sql, &[], |r| Ok(PublicRoomRecord { room_id: r.get(0)?, joined_members: r.get(1)? }))
                    .await?;
                Ok((rooms, total as usize))
            })
        })
        .await
    }
}
