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
//!
//! When the change marks vouch that no membership moved since an entry's position (SQLite), only
//! rooms' positions can have moved: the rooms with events in that span are read once for every
//! user catching up over the same span (a busy room's message wakes all its listeners at the same
//! positions) and applied to each user's list, without a read of its own.

use std::{collections::HashMap, sync::Arc, time::Duration};

use myelin_core::{
    Clock, MatrixResult, StreamPos,
    types::{OwnedRoomId, OwnedUserId, UserId},
};
use myelin_storage::{Change, RoomPositions, Store, UserRoom};

use crate::{cache::Cache, shared_reads::SharedReads};

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
/// Spans whose moved rooms are remembered for the users catching up over them.
const SPANS_KEPT: usize = 8;

/// A user's room list and the position it is valid at.
#[derive(Clone)]
pub struct RoomList {
    rooms: Arc<Vec<UserRoom>>,
    valid_at: StreamPos,
}

/// The rooms with events after a position (`None`: [`MAX_DELTA`] or more).
type MovedRooms = Option<Arc<HashMap<OwnedRoomId, RoomPositions>>>;

pub struct UserRoomsCache {
    pub(crate) cache: Cache<OwnedUserId, RoomList>,
    /// The rooms with events in a span `(since, until]`, by span.
    moved: SharedReads<(StreamPos, StreamPos), MovedRooms>,
}

impl UserRoomsCache {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { cache: Cache::new("user_rooms", MAX_ROOMS, Some(MAX_AGE), clock), moved: SharedReads::new(SPANS_KEPT) }
    }

    /// The rooms with events after `since`, as read when the head was at least `until` (rows
    /// may be newer); one read for every caller asking about the same span.
    async fn moved_rooms(&self, store: &dyn Store, since: StreamPos, until: StreamPos) -> MatrixResult<MovedRooms> {
        self.moved
            .get_or_read((since, until), || async {
                let rows = store.rooms_with_events_since(since, MAX_DELTA).await?;
                Ok((rows.len() < MAX_DELTA)
                    .then(|| Arc::new(rows.into_iter().map(|row| (row.room_id.clone(), row)).collect())))
            })
            .await
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
                let moved = match store.may_have_changed(Change::Membership, list.valid_at) {
                    false => self.moved_rooms(store, list.valid_at, now).await?,
                    true => None,
                };
                let changed = match moved {
                    Some(moved) => positions_moved(&list.rooms, &moved),
                    None => store.rooms_for_user_since(user_id, list.valid_at, MAX_DELTA).await?,
                };
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

/// The user's rooms among `moved`, with their new positions.
fn positions_moved(rooms: &[UserRoom], moved: &HashMap<OwnedRoomId, RoomPositions>) -> Vec<UserRoom> {
    rooms
        .iter()
        .filter_map(|room| {
            let to = moved.get(&room.room_id)?;
            Some(UserRoom { last_event_pos: to.last_event_pos, bump_pos: to.bump_pos, ..room.clone() })
        })
        .collect()
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

    use super::{apply, positions_moved};

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

    #[test]
    fn moved_positions_update_only_the_users_rooms() {
        let list = vec![room("!a:x", Membership::Join, 1), room("!b:x", Membership::Leave, 2)];
        let moved: std::collections::HashMap<_, _> = [("!b:x", 7, 6), ("!elsewhere:x", 8, 8)]
            .into_iter()
            .map(|(id, last, bump)| {
                let room_id = ruma::OwnedRoomId::try_from(id).expect("room id");
                let positions = myelin_storage::RoomPositions {
                    room_id: room_id.clone(),
                    last_event_pos: StreamPos(last),
                    bump_pos: StreamPos(bump),
                };
                (room_id, positions)
            })
            .collect();
        let changed = positions_moved(&list, &moved);
        let summary: Vec<(&str, Membership, StreamPos, StreamPos, StreamPos)> = changed
            .iter()
            .map(|r| (r.room_id.as_str(), r.membership, r.membership_pos, r.last_event_pos, r.bump_pos))
            .collect();
        assert_eq!(summary, [("!b:x", Membership::Leave, StreamPos(2), StreamPos(7), StreamPos(6))]);
    }
}
