//! Events by id, kept in memory: syncs read the same state events (create, power levels, names,
//! members) again and again, and an SQLite reader's page cache is emptied by every commit.
//!
//! An event row never changes but for `redacted_by`, set when a redaction is persisted: the send
//! path invalidates the redacted event (here and, by signal, in the other processes). A read that
//! raced with an invalidation is not kept, and an event is read again after a maximum age
//! whatever happened, in case a signal was lost. Anything else that changes an event row must
//! invalidate it too. The cache (`Services::events_cache`) is weighed in bytes of JSON.

use std::{collections::HashMap, sync::Arc};

use myelin_core::{
    MatrixResult,
    types::{EventId, OwnedEventId},
};
use myelin_storage::StoredEvent;

use crate::Services;

/// What an event weighs in the cache: its JSON and ids.
fn weight(ev: &StoredEvent) -> usize {
    ev.json.len() + ev.event_id.as_str().len() * 2
}

impl Services {
    /// The events that exist among `event_ids`, in the order asked, from the cache or the database.
    pub async fn events(&self, event_ids: &[OwnedEventId]) -> MatrixResult<Vec<StoredEvent>> {
        if event_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut found: Vec<Option<StoredEvent>> = Vec::with_capacity(event_ids.len());
        let mut missing = Vec::new();
        for id in event_ids {
            let hit = self.events_cache.get(id).map(|ev| StoredEvent::clone(&ev));
            if hit.is_none() {
                missing.push(id.clone());
            }
            found.push(hit);
        }
        if missing.is_empty() {
            return Ok(found.into_iter().flatten().collect());
        }
        let epoch = self.events_cache.epoch();
        let read: HashMap<OwnedEventId, StoredEvent> =
            self.store.get_events(&missing).await?.into_iter().map(|ev| (ev.event_id.clone(), ev)).collect();
        for ev in read.values() {
            self.events_cache.insert_if_current(ev.event_id.clone(), Arc::new(ev.clone()), weight(ev), epoch);
        }
        Ok(event_ids.iter().zip(found).filter_map(|(id, hit)| hit.or_else(|| read.get(id).cloned())).collect())
    }

    pub async fn event(&self, event_id: &EventId) -> MatrixResult<Option<StoredEvent>> {
        Ok(self.events(&[event_id.to_owned()]).await?.pop())
    }
}
