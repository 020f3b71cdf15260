//! Each user's rooms — memberships with the rooms' sort keys (`UserRoom`) — kept in memory for
//! the syncs, which need the whole list on every request (a user in 1 000 rooms: 1 000 rows).
//!
//! An entry remembers the stream position it is valid at; a later request reads only what
//! moved after it (the user's membership changes and the rooms with newer events, two indexed
//! reads) and applies that. Because the catch-up goes through the database by position, it is
//! right on every process of a PostgreSQL cluster without any signal. The one change without a
//! position — forgetting a room — drops the entry (`invalidate`, `Signal::RoomsOfUser` for the
//! other processes).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use myelin_core::MatrixResult;
use myelin_storage::{Store, StreamPos, UserRoom};

/// Rooms kept over all users; past this the least recently used users are dropped.
const MAX_ROOMS: usize = 200_000;
/// A catch-up reads at most this many changed rooms; more and the whole list is read again.
const MAX_DELTA: usize = 256;
/// Further behind than this many positions, the whole list is read again (the catch-up walks
/// every room with an event since then).
const MAX_LAG: StreamPos = 20_000;

struct Entry {
    rooms: Arc<Vec<UserRoom>>,
    valid_at: StreamPos,
    used: u64,
}

#[derive(Default)]
pub struct UserRoomsCache {
    inner: Mutex<Inner>,
    /// Counts invalidations; a list read before one is not kept (it may predate the change).
    epoch: AtomicU64,
}

#[derive(Default)]
struct Inner {
    users: HashMap<String, Entry>,
    rooms: usize,
    tick: u64,
}

impl UserRoomsCache {
    /// The user's rooms as of at least `now` (rows may be newer, as with a database read).
    pub async fn get(&self, store: &dyn Store, user_id: &str, now: StreamPos) -> MatrixResult<Arc<Vec<UserRoom>>> {
        let epoch = self.epoch.load(Ordering::Acquire);
        let cached = self.lookup(user_id);
        let rooms = match cached {
            Some((rooms, valid_at)) if valid_at >= now => return Ok(rooms),
            Some((rooms, valid_at)) if now - valid_at <= MAX_LAG => {
                let changed = store.rooms_for_user_since(user_id, valid_at, MAX_DELTA).await?;
                if changed.is_empty() {
                    rooms
                } else if changed.len() < MAX_DELTA {
                    Arc::new(apply(&rooms, changed))
                } else {
                    Arc::new(store.rooms_for_user(user_id).await?)
                }
            }
            _ => Arc::new(store.rooms_for_user(user_id).await?),
        };
        self.store(user_id, rooms.clone(), now, epoch);
        Ok(rooms)
    }

    pub fn invalidate(&self, user_id: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut inner) = self.inner.lock()
            && let Some(old) = inner.users.remove(user_id)
        {
            inner.rooms -= old.rooms.len();
        }
    }

    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut inner) = self.inner.lock() {
            *inner = Inner::default();
        }
    }

    fn lookup(&self, user_id: &str) -> Option<(Arc<Vec<UserRoom>>, StreamPos)> {
        let mut inner = self.inner.lock().ok()?;
        inner.tick += 1;
        let tick = inner.tick;
        let entry = inner.users.get_mut(user_id)?;
        entry.used = tick;
        Some((entry.rooms.clone(), entry.valid_at))
    }

    /// Keeps `rooms` unless a concurrent request stored a list valid at a later position, or
    /// something was invalidated since the read began (`epoch`).
    fn store(&self, user_id: &str, rooms: Arc<Vec<UserRoom>>, valid_at: StreamPos, epoch: u64) {
        let Ok(mut inner) = self.inner.lock() else { return };
        if self.epoch.load(Ordering::Acquire) != epoch
            || inner.users.get(user_id).is_some_and(|e| e.valid_at > valid_at)
        {
            return;
        }
        inner.tick += 1;
        let used = inner.tick;
        let added = rooms.len();
        if let Some(old) = inner.users.insert(user_id.to_owned(), Entry { rooms, valid_at, used }) {
            inner.rooms -= old.rooms.len();
        }
        inner.rooms += added;
        while inner.rooms > MAX_ROOMS && inner.users.len() > 1 {
            let Some(oldest) = inner.users.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| k.clone()) else { break };
            if let Some(old) = inner.users.remove(&oldest) {
                inner.rooms -= old.rooms.len();
            }
        }
    }
}

/// `rooms` with the `changed` rows replacing (or joining) the ones of the same room.
fn apply(rooms: &[UserRoom], changed: Vec<UserRoom>) -> Vec<UserRoom> {
    let mut changed: HashMap<String, UserRoom> = changed.into_iter().map(|r| (r.room_id.clone(), r)).collect();
    let mut out: Vec<UserRoom> =
        rooms.iter().map(|room| changed.remove(&room.room_id).unwrap_or_else(|| room.clone())).collect();
    out.extend(changed.into_values());
    out
}
