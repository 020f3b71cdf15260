//! Each user's rooms — memberships with the rooms' sort keys (`UserRoom`) — kept in memory for
//! the syncs, which need the whole list on every request (a user in 1 000 rooms: 1 000 rows).
//!
//! An entry remembers the stream position it is valid at; a later request reads only what
//! moved after it (the user's membership changes and the rooms with newer events, two indexed
//! reads) and applies that. Because the catch-up goes through the database by position, it is
//! right on every process of a PostgreSQL cluster without any signal. The one change without a
//! position — forgetting a room — invalidates the entry (in every process); every list is also
//! read whole again after `MAX_AGE`, in case an invalidation was lost. The lists live in a
//! [`Cache`] weighed by their length.

use std::{collections::HashMap, sync::Arc, time::Duration};

use myelin_core::{
    Clock, MatrixResult, StreamPos,
    types::{OwnedRoomId, OwnedUserId, UserId},
};
use myelin_storage::{Store, UserRoom};

use crate::cache::Cache;

/// Rooms kept over all users (a list weighs its length; a user without rooms weighs 1).
const MAX_ROOMS: usize = 200_000;
/// A catch-up reads at most this many changed rooms; more and the whole list is read again.
const MAX_DELTA: usize = 256;
/// Further behind than this many positions, the whole list is read again (the catch-up walks
/// every room with an event since then).
const MAX_LAG: u64 = 20_000;
/// A list is read whole again at least this often: the backstop for a change without a position
/// whose invalidation never arrived (a forget made through a process that died before telling).
const MAX_AGE: Duration = Duration::from_secs(300);

/// A user's room list and the position it is valid at.
#[derive(Clone)]
pub struct RoomList {
    rooms: Arc<Vec<UserRoom>>,
    valid_at: StreamPos,
}

pub struct UserRoomsCache {
    pub(crate) cache: Cache<OwnedUserId, RoomList>,
}

impl UserRoomsCache {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { cache: Cache::new("user_rooms", MAX_ROOMS, Some(MAX_AGE), clock) }
    }

    /// The user's rooms as of at least `now` (rows may be newer, as with a database read).
    pub async fn get(&self, store: &dyn Store, user_id: &UserId, now: StreamPos) -> MatrixResult<Arc<Vec<UserRoom>>> {
        let key = user_id.to_owned();
        let epoch = self.cache.epoch();
        let cached = self.cache.get_with_age(&key);
        let whole = || async { Ok::<_, myelin_core::MatrixError>(Arc::new(store.rooms_for_user(user_id).await?)) };
        let (rooms, loaded) = match cached {
            Some((list, _)) if list.valid_at >= now => return Ok(list.rooms),
            Some((list, loaded)) if now.distance_from(list.valid_at) <= MAX_LAG => {
                let changed = store.rooms_for_user_since(user_id, list.valid_at, MAX_DELTA).await?;
                if changed.is_empty() {
                    (list.rooms, Some(loaded))
                } else if changed.len() < MAX_DELTA {
                    (Arc::new(apply(&list.rooms, changed)), Some(loaded))
                } else {
                    (whole().await?, None)
                }
            }
            _ => (whole().await?, None),
        };
        let weight = rooms.len().max(1);
        let list = RoomList { rooms: rooms.clone(), valid_at: now };
        // Brought up to date, it keeps the age of its last whole read.
        self.cache.insert_unless_newer(key, list, weight, epoch, loaded, |cached, new| cached.valid_at > new.valid_at);
        Ok(rooms)
    }
}

/// `rooms` with the `changed` rows replacing (or joining) the ones of the same room.
fn apply(rooms: &[UserRoom], changed: Vec<UserRoom>) -> Vec<UserRoom> {
    let mut changed: HashMap<OwnedRoomId, UserRoom> = changed.into_iter().map(|r| (r.room_id.clone(), r)).collect();
    let mut out: Vec<UserRoom> =
        rooms.iter().map(|room| changed.remove(&room.room_id).unwrap_or_else(|| room.clone())).collect();
    out.extend(changed.into_values());
    out
}

#[cfg(test)]
mod tests {
    use myelin_core::{Membership, StreamPos};
    use myelin_storage::UserRoom;
    use ruma::{owned_event_id, owned_room_id, owned_user_id};

    use super::apply;

    fn room(id: &str, membership: Membership, pos: i64) -> UserRoom {
        UserRoom {
            room_id: ruma::OwnedRoomId::try_from(id).expect("room id"),
            membership,
            membership_event_id: owned_event_id!("$m"),
            membership_pos: StreamPos(pos),
            last_event_pos: StreamPos(pos),
            bump_pos: StreamPos(pos),
            forgotten: false,
            membership_sender: owned_user_id!("@a:x"),
        }
    }

    #[test]
    fn changes_replace_their_rooms_and_new_rooms_join_the_list() {
        let list = vec![room("!a:x", Membership::Join, 1), room("!b:x", Membership::Join, 2)];
        let updated = apply(&list, vec![room("!b:x", Membership::Leave, 5), room("!c:x", Membership::Invite, 6)]);
        let summary: Vec<(String, Membership)> =
            updated.iter().map(|r| (r.room_id.to_string(), r.membership)).collect();
        assert_eq!(
            summary,
            [
                ("!a:x".into(), Membership::Join),
                ("!b:x".into(), Membership::Leave),
                ("!c:x".into(), Membership::Invite)
            ]
        );
        let _ = owned_room_id!("!unused:x");
    }
}
