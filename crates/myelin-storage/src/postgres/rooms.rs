use async_trait::async_trait;
use tokio_postgres::Row;

use super::{
    PgStore,
    events::{EVENT_COLUMNS, event_from_row},
    to_u64,
};
use crate::{MemberRecord, PublicRoomRecord, RoomRecord, RoomRepo, StorageResult, StoredEvent, StreamPos, UserRoom};

pub(super) fn member_from_row(r: &Row) -> MemberRecord {
    MemberRecord {
        user_id: r.get(0),
        membership: r.get(1),
        event_id: r.get(2),
        displayname: r.get(3),
        avatar_url: r.get(4),
        stream_pos: r.get(5),
    }
}

#[async_trait]
impl RoomRepo for PgStore {
    async fn get_room(&self, room_id: &str) -> StorageResult<Option<RoomRecord>> {
        let mut c = self.pool.get().await?;
        Ok(c.query_opt(
            "SELECT room_id, room_version, creator, is_public, current_state_group, last_event_pos
             FROM rooms WHERE room_id = $1",
            &[&room_id],
        )
        .await?
        .map(|r| RoomRecord {
            room_id: r.get(0),
            room_version: r.get(1),
            creator: r.get(2),
            is_public: r.get::<_, i64>(3) != 0,
            current_state_group: r.get(4),
            last_event_pos: r.get(5),
        }))
    }

    async fn rooms_for_user(&self, user_id: &str) -> StorageResult<Vec<UserRoom>> {
        let mut c = self.pool.get().await?;
        let sql = format!(
            "SELECT {USER_ROOM_COLUMNS} FROM room_members m JOIN rooms r ON r.room_id = m.room_id WHERE m.user_id = $1"
        );
        Ok(c.query(&sql, &[&user_id]).await?.iter().map(user_room_from_row).collect())
    }

    async fn rooms_for_user_since(
        &self,
        user_id: &str,
        since: StreamPos,
        limit: usize,
    ) -> StorageResult<Vec<UserRoom>> {
        let mut c = self.pool.get().await?;
        let sql = format!(
            "SELECT {USER_ROOM_COLUMNS} FROM room_members m JOIN rooms r ON r.room_id = m.room_id
             WHERE m.user_id = $1 AND m.stream_pos > $2
             UNION
             SELECT {USER_ROOM_COLUMNS} FROM rooms r JOIN room_members m ON m.room_id = r.room_id
             WHERE r.last_event_pos > $2 AND m.user_id = $1
             LIMIT {limit}"
        );
        Ok(c.query(&sql, &[&user_id, &since]).await?.iter().map(user_room_from_row).collect())
    }

    async fn room_members(&self, room_id: &str, membership: Option<&str>) -> StorageResult<Vec<MemberRecord>> {
        let mut c = self.pool.get().await?;
        Ok(c.query(
            "SELECT user_id, membership, event_id, displayname, avatar_url, stream_pos FROM room_members
             WHERE room_id = $1 AND ($2::TEXT IS NULL OR membership = $2) ORDER BY user_id",
            &[&room_id, &membership],
        )
        .await?
        .iter()
        .map(member_from_row)
        .collect())
    }

    async fn membership_changes(
        &self,
        room_id: &str,
        since: StreamPos,
        until: StreamPos,
    ) -> StorageResult<Vec<MemberRecord>> {
        let mut c = self.pool.get().await?;
        Ok(c.query(
            "SELECT user_id, membership, event_id, displayname, avatar_url, stream_pos FROM room_members
             WHERE room_id = $1 AND stream_pos > $2 AND stream_pos <= $3",
            &[&room_id, &since, &until],
        )
        .await?
        .iter()
        .map(member_from_row)
        .collect())
    }

    async fn membership(&self, room_id: &str, user_id: &str) -> StorageResult<Option<MemberRecord>> {
        let mut c = self.pool.get().await?;
        Ok(c.query_opt(
            "SELECT user_id, membership, event_id, displayname, avatar_url, stream_pos FROM room_members
             WHERE room_id = $1 AND user_id = $2",
            &[&room_id, &user_id],
        )
        .await?
        .as_ref()
        .map(member_from_row))
    }

    async fn current_state_ids(&self, room_id: &str) -> StorageResult<Vec<(String, String, String)>> {
        let mut c = self.pool.get().await?;
        Ok(c.query("SELECT event_type, state_key, event_id FROM current_state WHERE room_id = $1", &[&room_id])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    async fn current_state_event(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
    ) -> StorageResult<Option<StoredEvent>> {
        let mut c = self.pool.get().await?;
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM current_state c JOIN events e ON e.event_id = c.event_id
             WHERE c.room_id = $1 AND c.event_type = $2 AND c.state_key = $3"
        );
        Ok(c.query_opt(&sql, &[&room_id, &event_type, &state_key]).await?.as_ref().map(event_from_row))
    }

    async fn forget_room(&self, user_id: &str, room_id: &str) -> StorageResult<()> {
        let mut c = self.pool.get().await?;
        c.execute("UPDATE room_members SET forgotten = 1 WHERE room_id = $1 AND user_id = $2", &[&room_id, &user_id])
            .await?;
        Ok(())
    }

    async fn room_mates(&self, user_id: &str) -> StorageResult<Vec<String>> {
        let mut c = self.pool.get().await?;
        Ok(c.query(
            "SELECT DISTINCT b.user_id FROM room_members a JOIN room_members b ON a.room_id = b.room_id
             WHERE a.user_id = $1 AND a.membership = 'join' AND b.membership IN ('join', 'invite')",
            &[&user_id],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
    }

    async fn sharing_rooms_with(&self, user_id: &str, others: &[String]) -> StorageResult<Vec<String>> {
        let mut c = self.pool.get().await?;
        Ok(c.query(
            "SELECT DISTINCT b.user_id FROM room_members a JOIN room_members b ON a.room_id = b.room_id
             WHERE a.user_id = $1 AND a.membership = 'join' AND b.user_id = ANY($2) AND b.membership IN ('join', 'invite')",
            &[&user_id, &others],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
    }

    async fn create_alias(&self, alias: &str, room_id: &str, creator: &str) -> StorageResult<()> {
        let mut c = self.pool.get().await?;
        c.execute(
            "INSERT INTO room_aliases (alias, room_id, creator) VALUES ($1, $2, $3)",
            &[&alias, &room_id, &creator],
        )
        .await?;
        Ok(())
    }

    async fn delete_alias(&self, alias: &str) -> StorageResult<bool> {
        let mut c = self.pool.get().await?;
        Ok(c.execute("DELETE FROM room_aliases WHERE alias = $1", &[&alias]).await? > 0)
    }

    async fn resolve_alias(&self, alias: &str) -> StorageResult<Option<(String, String)>> {
        let mut c = self.pool.get().await?;
        Ok(c.query_opt("SELECT room_id, creator FROM room_aliases WHERE alias = $1", &[&alias])
            .await?
            .map(|r| (r.get(0), r.get(1))))
    }

    async fn room_aliases(&self, room_id: &str) -> StorageResult<Vec<String>> {
        let mut c = self.pool.get().await?;
        Ok(c.query("SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias", &[&room_id])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    async fn set_room_public(&self, room_id: &str, public: bool) -> StorageResult<()> {
        let mut c = self.pool.get().await?;
        c.execute("UPDATE rooms SET is_public = $2 WHERE room_id = $1", &[&room_id, &i64::from(public)]).await?;
        Ok(())
    }

    async fn public_rooms(&self, offset: usize, limit: usize) -> StorageResult<(Vec<PublicRoomRecord>, usize)> {
        let mut c = self.pool.get().await?;
        let total: i64 = c.query_one("SELECT COUNT(*) FROM rooms WHERE is_public = 1", &[]).await?.get(0);
        let rooms = c
            .query(
                "SELECT r.room_id, r.joined_members AS n
                 FROM rooms r WHERE r.is_public = 1 ORDER BY n DESC, r.room_id LIMIT $1 OFFSET $2",
                &[&(limit as i64), &(offset as i64)],
            )
            .await?
            .iter()
            .map(|r| PublicRoomRecord { room_id: r.get(0), joined_members: to_u64(r.get(1)) })
            .collect();
        Ok((rooms, total.max(0) as usize))
    }
}

const USER_ROOM_COLUMNS: &str =
    "m.room_id, m.membership, m.event_id, m.stream_pos, r.last_event_pos, m.forgotten, m.sender, r.bump_pos";

fn user_room_from_row(r: &Row) -> UserRoom {
    UserRoom {
        room_id: r.get(0),
        membership: r.get(1),
        membership_event_id: r.get(2),
        membership_pos: r.get(3),
        last_event_pos: r.get(4),
        forgotten: r.get::<_, i64>(5) != 0,
        membership_sender: r.get(6),
        bump_pos: r.get(7),
    }
}
