//! Each user's server notices room.

use async_trait::async_trait;
use myelin_core::types::{OwnedRoomId, RoomId, UserId};

use crate::{Database, ServerNoticeRepo, StorageResult};

#[async_trait]
impl ServerNoticeRepo for Database {
    async fn server_notice_room(&self, user_id: &UserId) -> StorageResult<Option<OwnedRoomId>> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query_opt("SELECT room_id FROM server_notice_rooms WHERE user_id = $1", &[&user_id], |r| r.get(0))
                    .await
            })
        })
        .await
    }

    async fn swap_server_notice_room(
        &self,
        user_id: &UserId,
        replacing: Option<&RoomId>,
        room_id: &RoomId,
    ) -> StorageResult<OwnedRoomId> {
        let (user_id, replacing, room_id) = (user_id.to_owned(), replacing.map(RoomId::to_owned), room_id.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                match &replacing {
                    None => {
                        c.execute(
                            "INSERT INTO server_notice_rooms (user_id, room_id) VALUES ($1, $2)
                             ON CONFLICT (user_id) DO NOTHING",
                            &[&user_id, &room_id],
                        )
                        .await?;
                    }
                    Some(old) => {
                        c.execute(
                            "UPDATE server_notice_rooms SET room_id = $3 WHERE user_id = $1 AND room_id = $2",
                            &[&user_id, old, &room_id],
                        )
                        .await?;
                    }
                }
                c.query_one("SELECT room_id FROM server_notice_rooms WHERE user_id = $1", &[&user_id], |r| r.get(0))
                    .await
            })
        })
        .await
    }
}
