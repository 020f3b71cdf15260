//! The one cache mechanism of the server. Every cache is a [`Cache`]: bounded (a weight budget,
//! least recently used entries go first: `myelin_core::lru`), optionally re-read after a
//! maximum age, and invalidated through one path: [`Services::invalidate`] drops an entry here and
//! broadcasts `Signal::Invalidate { cache, key }`, which the other processes of a PostgreSQL
//! deployment apply to their cache of the same name (`cluster.rs`); `Signal::Resync` clears them
//! all.
//!
//! A read from storage that raced with an invalidation must not be kept (it may predate the
//! change): take [`Cache::epoch`] before reading and store with [`Cache::insert_if_current`].

use std::{
    hash::Hash,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use myelin_core::{
    Clock, StreamPos,
    lru::Lru,
    types::{OwnedEventId, OwnedRoomId, OwnedUserId},
};

use myelin_storage::{Change, Store};

use crate::Services;

/// How a cache's key travels in an invalidation signal.
pub trait CacheKey: Hash + Eq + Clone + Send + Sync + 'static {
    fn to_signal(&self) -> String;
    fn from_signal(key: &str) -> Option<Self>;
}

impl CacheKey for OwnedUserId {
    fn to_signal(&self) -> String {
        self.to_string()
    }
    fn from_signal(key: &str) -> Option<Self> {
        OwnedUserId::try_from(key).ok()
    }
}

/// Plain strings (URLs of URL previews).
impl CacheKey for String {
    fn to_signal(&self) -> String {
        self.clone()
    }
    fn from_signal(key: &str) -> Option<Self> {
        Some(key.to_owned())
    }
}

impl CacheKey for OwnedRoomId {
    fn to_signal(&self) -> String {
        self.to_string()
    }
    fn from_signal(key: &str) -> Option<Self> {
        OwnedRoomId::try_from(key).ok()
    }
}

impl CacheKey for OwnedEventId {
    fn to_signal(&self) -> String {
        self.to_string()
    }
    fn from_signal(key: &str) -> Option<Self> {
        OwnedEventId::try_from(key).ok()
    }
}

impl CacheKey for i64 {
    fn to_signal(&self) -> String {
        self.to_string()
    }
    fn from_signal(key: &str) -> Option<Self> {
        key.parse().ok()
    }
}

/// A sliding sync connection: `[user, device, conn_id]` as JSON.
impl CacheKey for myelin_storage::ConnectionKey {
    fn to_signal(&self) -> String {
        serde_json::json!([self.user_id, self.device_id, self.conn_id]).to_string()
    }
    fn from_signal(key: &str) -> Option<Self> {
        let (user_id, device_id, conn_id) = serde_json::from_str(key).ok()?;
        Some(Self { user_id, device_id, conn_id })
    }
}

struct Entry<V> {
    value: V,
    loaded: Instant,
}

/// A bounded, invalidatable cache of `V` (cheap to clone: an `Arc` or a small value) by `K`.
pub struct Cache<K, V> {
    name: &'static str,
    entries: Mutex<Lru<K, Entry<V>>>,
    /// Counts invalidations: a value read before one is not kept.
    epoch: AtomicU64,
    max_age: Option<Duration>,
    clock: Arc<dyn Clock>,
    /// Lookups that found a fresh entry, and all lookups (the metrics).
    hits: AtomicU64,
    lookups: AtomicU64,
}

/// A cache's use, for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub lookups: u64,
    pub size: usize,
}

impl<K: CacheKey, V: Clone> Cache<K, V> {
    /// A cache named `name` (the name its invalidation signals carry) holding entries that weigh
    /// `capacity` in all, each re-read after `max_age` if given.
    pub fn new(name: &'static str, capacity: usize, max_age: Option<Duration>, clock: Arc<dyn Clock>) -> Self {
        Self {
            name,
            entries: Mutex::new(Lru::new(capacity)),
            epoch: AtomicU64::new(0),
            max_age,
            clock,
            hits: AtomicU64::new(0),
            lookups: AtomicU64::new(0),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru<K, Entry<V>>> {
        match self.entries.lock() {
            Ok(entries) => entries,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The cached value, unless absent or older than the maximum age.
    pub fn get(&self, key: &K) -> Option<V> {
        self.get_with_age(key).map(|(value, _)| value)
    }

    /// The cached value and when it was loaded.
    pub fn get_with_age(&self, key: &K) -> Option<(V, Instant)> {
        let now = self.clock.now();
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let mut entries = self.lock();
        let entry = entries.get(key)?;
        if self.max_age.is_some_and(|max| now.saturating_duration_since(entry.loaded) >= max) {
            return None;
        }
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some((entry.value.clone(), entry.loaded))
    }

    /// How much it was used and how many entries it holds.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            lookups: self.lookups.load(Ordering::Relaxed),
            size: self.len(),
        }
    }

    /// The invalidation counter, to take before reading what will be stored.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Stores a value read when the counter was `epoch`, unless something was invalidated since.
    pub fn insert_if_current(&self, key: K, value: V, weight: usize, epoch: u64) {
        self.insert_unless_newer(key, value, weight, epoch, None, |_, _| false);
    }

    /// As [`insert_if_current`](Self::insert_if_current), for a value loaded at `loaded` (now
    /// when `None`; an entry brought up to date keeps the age of its last full read), and not
    /// over an entry cached meanwhile that is `newer` than `value` (a slower concurrent read must
    /// not replace a later one).
    pub fn insert_unless_newer(
        &self,
        key: K,
        value: V,
        weight: usize,
        epoch: u64,
        loaded: Option<Instant>,
        newer: impl FnOnce(&V, &V) -> bool,
    ) {
        let loaded = loaded.unwrap_or_else(|| self.clock.now());
        let mut entries = self.lock();
        if self.epoch.load(Ordering::Acquire) != epoch || entries.get(&key).is_some_and(|e| newer(&e.value, &value)) {
            return;
        }
        entries.insert_weighted(key, Entry { value, loaded }, weight);
    }

    /// Stores a value known to be current (written by this process under a lock that orders it).
    pub fn insert(&self, key: K, value: V, weight: usize) {
        let loaded = self.clock.now();
        self.lock().insert_weighted(key, Entry { value, loaded }, weight);
    }

    /// Replaces `key`'s entry by `value` only while that entry is one `current` accepts (say,
    /// the value `value` was derived from): a derived value is not stored over an invalidation,
    /// or a newer value, that came in between. Nothing is stored where the key has no entry.
    pub fn replace_if(&self, key: K, value: V, weight: usize, current: impl FnOnce(&V) -> bool) {
        let loaded = self.clock.now();
        let mut entries = self.lock();
        if entries.get(&key).is_some_and(|e| current(&e.value)) {
            entries.insert_weighted(key, Entry { value, loaded }, weight);
        }
    }

    /// Drops `key` here (see [`Services::invalidate`] to drop it everywhere).
    pub fn invalidate(&self, key: &K) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.lock().remove(key);
    }

    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.lock().clear();
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// A cache as the invalidation path sees it: by name, with string keys.
pub trait Invalidate: Send + Sync {
    fn name(&self) -> &'static str;
    fn invalidate_key(&self, key: &str);
    fn clear_all(&self);
    fn cache_stats(&self) -> CacheStats;
}

impl<K: CacheKey, V: Clone + Send + Sync> Invalidate for Cache<K, V> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn invalidate_key(&self, key: &str) {
        match K::from_signal(key) {
            Some(key) => self.invalidate(&key),
            // A key this process cannot read: drop everything rather than keep a stale entry.
            None => self.clear(),
        }
    }

    fn clear_all(&self) {
        self.clear();
    }

    fn cache_stats(&self) -> CacheStats {
        self.stats()
    }
}

/// A value kept with the stream position it was read at.
impl<K: CacheKey, V: Clone + Send + Sync> Cache<K, (StreamPos, V)> {
    /// `key`'s value and the position it was read at, while the change marks say no write of
    /// `change` came after that position (`Store::may_have_changed`): a value read then is
    /// still what a read would find.
    pub fn get_unchanged(&self, key: &K, store: &dyn Store, change: Change) -> Option<(StreamPos, V)> {
        self.get(key).filter(|(read_at, _)| !store.may_have_changed(change, *read_at))
    }
}

impl Services {
    /// Drops `key` from `cache` in this process and in every other process of the deployment.
    pub(crate) fn invalidate<K: CacheKey, V: Clone + Send + Sync>(&self, cache: &Cache<K, V>, key: &K) {
        cache.invalidate(key);
        self.invalidate_elsewhere(cache, key);
    }

    /// Drops `key` from the other processes' cache of this name only (this process has just
    /// brought its own entry up to date).
    pub(crate) fn invalidate_elsewhere<K: CacheKey, V: Clone + Send + Sync>(&self, cache: &Cache<K, V>, key: &K) {
        self.store
            .broadcast(myelin_storage::Signal::Invalidate { cache: cache.name().to_owned(), key: key.to_signal() });
    }

    /// Every cache of this process, for invalidations from other processes (and the metrics).
    pub(crate) fn caches(&self) -> [&dyn Invalidate; 15] {
        [
            &self.heads.cache,
            &self.state_groups,
            &self.events_cache,
            &self.user_rooms.cache,
            &self.push_rules,
            &self.ignored_users,
            &self.room_members_summaries,
            &self.direct_rooms,
            &self.room_kinds,
            &self.to_device_swept,
            &self.sliding_connections,
            &self.answered_key_counts,
            &self.room_unread_newest,
            &self.sent_txns,
            &self.joined_members,
        ]
    }
}

/// "At most once per period per key", in memory (per process): `allow` answers true when the
/// key was not allowed within the last `every_ms`, and records it. Forgets everything past
/// [`THROTTLE_KEYS`] keys (a missed throttle only costs a write).
pub struct Throttle<K> {
    last: std::sync::Mutex<std::collections::HashMap<K, u64>>,
}

impl<K> Default for Throttle<K> {
    fn default() -> Self {
        Self { last: std::sync::Mutex::new(std::collections::HashMap::new()) }
    }
}

/// Keys a [`Throttle`] holds before it starts over.
const THROTTLE_KEYS: usize = 100_000;

impl<K: std::hash::Hash + Eq> Throttle<K> {
    pub fn allow(&self, key: K, now_ms: u64, every_ms: u64) -> bool {
        let Ok(mut last) = self.last.lock() else { return false };
        if last.get(&key).is_some_and(|at| now_ms.saturating_sub(*at) < every_ms) {
            return false;
        }
        if last.len() > THROTTLE_KEYS {
            last.clear();
        }
        last.insert(key, now_ms);
        true
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use myelin_core::ManualClock;

    use super::Cache;

    #[test]
    fn entries_expire_evict_and_refuse_stale_reads() {
        let clock = Arc::new(ManualClock::new(0));
        let cache: Cache<i64, &str> = Cache::new("test", 2, Some(Duration::from_secs(10)), clock.clone());
        let epoch = cache.epoch();
        cache.insert_if_current(1, "one", 1, epoch);
        cache.insert_if_current(2, "two", 1, epoch);
        assert_eq!(cache.get(&1), Some("one"));
        cache.insert_if_current(3, "three", 1, epoch);
        assert_eq!(cache.get(&2), None, "the least recently used went");
        clock.advance(Duration::from_secs(10));
        assert_eq!(cache.get(&1), None, "too old");

        // A read that began before an invalidation is not stored.
        let before = cache.epoch();
        cache.invalidate(&4);
        cache.insert_if_current(4, "stale", 1, before);
        assert_eq!(cache.get(&4), None);
        cache.insert_if_current(4, "fresh", 1, cache.epoch());
        assert_eq!(cache.get(&4), Some("fresh"));
        cache.clear();
        assert!(cache.is_empty());
    }

    #[test]
    fn a_derived_value_replaces_only_the_entry_it_came_from() {
        let cache: Cache<i64, Arc<&str>> = Cache::new("test", 10, None, Arc::new(ManualClock::new(0)));
        let first = Arc::new("first");
        cache.insert(1, first.clone(), 1);
        cache.replace_if(1, Arc::new("second"), 1, |current| Arc::ptr_eq(current, &first));
        assert_eq!(cache.get(&1).as_deref(), Some(&"second"));
        // Derived from `first`, which is no longer there: refused.
        cache.replace_if(1, Arc::new("from first again"), 1, |current| Arc::ptr_eq(current, &first));
        assert_eq!(cache.get(&1).as_deref(), Some(&"second"));
        // Invalidated meanwhile: nothing comes back.
        let second = cache.get(&1).expect("cached");
        cache.invalidate(&1);
        cache.replace_if(1, Arc::new("third"), 1, |current| Arc::ptr_eq(current, &second));
        assert_eq!(cache.get(&1), None);
    }
}
