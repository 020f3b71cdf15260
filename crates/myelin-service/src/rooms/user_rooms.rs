//! Each user's rooms — memberships with the rooms' sort keys (`UserRoom`) — kept in memory for
//! the syncs, which need the whole list on every request (a user in 1 000 rooms: 1 000 rows).
//!
//! An entry remembers the stream position it is valid at; a later request reads only what
//! moved after it (the user's membership changes and the rooms with newer events, two indexed
//! reads) and applies that. Because the catch-up goes through the database by position, it is
//! right on every process of a PostgreSQL cluster without any signal. The one change without a
//! position — forgetting a room — drops the entry (`invalidate`, `Signal::RoomsOfUser` for the
//! other processes); every list is also read whole again after `MAX_AGE`, in case a signal was
//! lost.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use myelin_core::{MatrixError, MatrixResult};
use myelin_storage::{Store, StreamPos, UserRoom};

/// Rooms kept over all users; past this the least recently used users are dropped.
const MAX_ROOMS: usize = 200_000;
/// A catch-up reads at most this many changed rooms; more and the whole list is read again.
const MAX_DELTA: usize = 256;
/// Further behind than this many positions, the whole list is read again (the catch-up walks
/// every room with an event since then).
const MAX_LAG: StreamPos = 20_000;
/// A list is read whole again at least this often: the backstop for a change without a position
/// whose signal never arrived (a forget made through a process that died before telling).
const MAX_AGE: Duration = Duration::from_secs(300);

struct Entry {
    rooms: Arc<Vec<UserRoom>>,
    valid_at: StreamPos,
    /// When the list was last read whole.
    loaded: Instant,
    used: u64,
}

impl Entry {
    /// What the entry counts against [`MAX_ROOMS`] (a user without rooms still takes room).
    fn weight(&self) -> usize {
        self.rooms.len().max(1)
    }
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
        let cached = self.lookup(user_id).filter(|(_, _, loaded)| loaded.elapsed() < MAX_AGE);
        let whole = || async { Ok::<_, MatrixError>((Arc::new(store.rooms_for_user(user_id).await?), Instant::now())) };
        let (rooms, loaded) = match cached {
            Some((rooms, valid_at, _)) if valid_at >= now => return Ok(rooms),
            Some((rooms, valid_at, loaded)) if now - valid_at <= MAX_LAG => {
                let changed = store.rooms_for_user_since(user_id, valid_at, MAX_DELTA).await?;
                if changed.is_empty() {
                    (rooms, loaded)
                } else if changed.len() < MAX_DELTA {
                    (Arc::new(apply(&rooms, changed)), loaded)
                } else {
                    whole().await?
                }
            }
            _ => whole().await?,
        };
        self.store(user_id, Entry { rooms: rooms.clone(), valid_at: now, loaded, used: 0 }, epoch);
        Ok(rooms)
    }

    pub fn invalidate(&self, user_id: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut inner) = self.inner.lock()
            && let Some(old) = inner.users.remove(user_id)
        {
            inner.rooms -= old.weight();
        }
    }

    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut inner) = self.inner.lock() {
            *inner = Inner::default();
        }
    }

    fn lookup(&self, user_id: &str) -> Option<(Arc<Vec<UserRoom>>, StreamPos, Instant)> {
        let mut inner = self.inner.lock().ok()?;
        inner.tick += 1;
        let tick = inner.tick;
        let entry = inner.users.get_mut(user_id)?;
        entry.used = tick;
        Some((entry.rooms.clone(), entry.valid_at, entry.loaded))
    }

    /// Keeps `entry` unless a concurrent request stored a list valid at a later position, or
    /// something was invalidated since the read began (`epoch`).
    fn store(&self, user_id: &str, mut entry: Entry, epoch: u64) {
        let Ok(mut inner) = self.inner.lock() else { return };
        if self.epoch.load(Ordering::Acquire) != epoch
            || inner.users.get(user_id).is_some_and(|e| e.valid_at > entry.valid_at)
        {
            return;
        }
        inner.tick += 1;
        entry.used = inner.tick;
        let added = entry.weight();
        if let Some(old) = inner.users.insert(user_id.to_owned(), entry) {
            inner.rooms -= old.weight();
        }
        inner.rooms += added;
        if inner.rooms > MAX_ROOMS {
            // Over budget: drop the least recently used eighth at once (one sort per many inserts).
            let mut by_use: Vec<(u64, String)> = inner.users.iter().map(|(k, e)| (e.used, k.clone())).collect();
            by_use.sort_unstable();
            let drop = (by_use.len() / 8).max(1).min(by_use.len().saturating_sub(1));
            for (_, user) in by_use.into_iter().take(drop) {
                if let Some(old) = inner.users.remove(&user) {
                    inner.rooms -= old.weight();
                }
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
