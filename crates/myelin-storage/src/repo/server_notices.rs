use async_trait::async_trait;
use myelin_core::types::{OwnedRoomId, RoomId, UserId};

use crate::StorageResult;

/// Each user's server notices room.
#[async_trait]
pub trait ServerNoticeRepo {
    /// The user's server notices room, if one was made.
    async fn server_notice_room(&self, user_id: &UserId) -> StorageResult<Option<OwnedRoomId>>;
    /// Makes `room_id` the user's server notices room if their room is still `replacing` (`None`:
    /// they have none), a compare-and-swap that holds across processes; answers the user's room
    /// afterwards, which is another one when someone else's swap came first.
    async fn swap_server_notice_room(
        &self,
        user_id: &UserId,
        replacing: Option<&RoomId>,
        room_id: &RoomId,
    ) -> StorageResult<OwnedRoomId>;
}
