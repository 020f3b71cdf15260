//! Events by id, kept in memory: syncs read the same state events (create, power levels, names,
//! members) again and again, and an SQLite reader's page cache is emptied by every commit.
//!
//! An event row never changes but for `redacted_by`, set when a redaction is persisted: the send
//! path drops the redacted event (`invalidate`) and tells the other processes
//! (`Signal::Redacted`). A read that raced with an invalidation is not kept (`epoch`), so a stale
//! row cannot outlive the signal; and an event is read again after `MAX_AGE` whatever happened,
//! in case a signal was lost. Anything else that changes an event row must invalidate it too.
//!
//! Two generations approximate least-recently-used eviction: hits move to `young`; when `young`
//! is full it becomes `old` and the previous `old` is dropped.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use myelin_core::MatrixResult;
use myelin_storage::{Store, StoredEvent};

use crate::Services;

/// Bytes of event JSON per generation (two generations are kept).
const GENERATION_BYTES: usize = 16 << 20;
/// An event is read again after this long: the backstop for a redaction whose signal never
/// arrived (its process died between the commit and the broadcast).
const MAX_AGE: Duration = Duration::from_secs(600);

type Cached = (Arc<StoredEvent>, Instant);

#[derive(Default)]
pub struct EventCache {
    inner: Mutex<Generations>,
    /// Counts invalidations; a database read started before one is not cached.
    epoch: AtomicU64,
}

#[derive(Default)]
struct Generations {
    young: HashMap<String, Cached>,
    young_bytes: usize,
    old: HashMap<String, Cached>,
}

impl Generations {
    fn get(&mut self, event_id: &str) -> Option<Arc<StoredEvent>> {
        if let Some((ev, read)) = self.young.get(event_id) {
            return (read.elapsed() < MAX_AGE).then(|| ev.clone());
        }
        let (ev, read) = self.old.remove(event_id)?;
        if read.elapsed() >= MAX_AGE {
            return None;
        }
        self.insert(ev.clone(), read);
        Some(ev)
    }

    fn insert(&mut self, ev: Arc<StoredEvent>, read: Instant) {
        let size = ev.json.len() + ev.event_id.len() * 2;
        if self.young_bytes + size > GENERATION_BYTES {
            self.old = std::mem::take(&mut self.young);
            self.young_bytes = 0;
        }
        self.young_bytes += size;
        self.young.insert(ev.event_id.clone(), (ev, read));
    }
}

impl EventCache {
    pub fn invalidate(&self, event_id: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut inner) = self.inner.lock() {
            inner.young.remove(event_id);
            inner.old.remove(event_id);
        }
    }

    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut inner) = self.inner.lock() {
            *inner = Generations::default();
        }
    }

    /// The events that exist among `event_ids`, in the order asked.
    async fn get_many(&self, store: &dyn Store, event_ids: &[String]) -> MatrixResult<Vec<StoredEvent>> {
        let mut found: Vec<Option<StoredEvent>> = Vec::with_capacity(event_ids.len());
        let mut missing = Vec::new();
        if let Ok(mut inner) = self.inner.lock() {
            for id in event_ids {
                let hit = inner.get(id).map(|ev| StoredEvent::clone(&ev));
                if hit.is_none() {
                    missing.push(id.clone());
                }
                found.push(hit);
            }
        } else {
            missing = event_ids.to_vec();
            found.resize(event_ids.len(), None);
        }
        if missing.is_empty() {
            return Ok(found.into_iter().flatten().collect());
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let now = Instant::now();
        let read: HashMap<String, StoredEvent> =
            store.get_events(&missing).await?.into_iter().map(|ev| (ev.event_id.clone(), ev)).collect();
        if let Ok(mut inner) = self.inner.lock()
            && self.epoch.load(Ordering::Acquire) == epoch
        {
            for ev in read.values() {
                inner.insert(Arc::new(ev.clone()), now);
            }
        }
        Ok(event_ids.iter().zip(found).filter_map(|(id, hit)| hit.or_else(|| read.get(id).cloned())).collect())
    }
}

impl Services {
    /// The events that exist among `event_ids`, from the cache or the database.
    pub async fn events(&self, event_ids: &[String]) -> MatrixResult<Vec<StoredEvent>> {
        if event_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.event_cache.get_many(self.store.as_ref(), event_ids).await
    }

    pub async fn event(&self, event_id: &str) -> MatrixResult<Option<StoredEvent>> {
        Ok(self.events(&[event_id.to_owned()]).await?.pop())
    }
}
