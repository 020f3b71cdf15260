//! `GET /mutual_rooms`: the rooms two users are both joined to.

use myelin_core::{
    MatrixError, MatrixResult, Membership,
    types::{OwnedRoomId, UserId},
};

use crate::{Services, accounts::Requester};

impl Services {
    /// The rooms the requester and `other` are both joined to, sorted.
    pub async fn mutual_rooms(&self, requester: &Requester, other: &UserId) -> MatrixResult<Vec<OwnedRoomId>> {
        if requester.user_id == other {
            return Err(MatrixError::invalid_param("Ask for the rooms shared with another user"));
        }
        let joined = |rooms: Vec<myelin_storage::UserRoom>| -> Vec<OwnedRoomId> {
            rooms.into_iter().filter(|r| r.membership == Membership::Join).map(|r| r.room_id).collect()
        };
        let mine = joined(self.store.rooms_for_user(&requester.user_id).await?);
        let theirs: std::collections::HashSet<OwnedRoomId> =
            joined(self.store.rooms_for_user(other).await?).into_iter().collect();
        let mut shared: Vec<OwnedRoomId> = mine.into_iter().filter(|r| theirs.contains(r)).collect();
        shared.sort();
        Ok(shared)
    }
}
