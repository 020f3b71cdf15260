//! Room state maps and a cache of resolved state groups.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use myelin_core::MatrixResult;
use myelin_storage::Store;

/// (event type, state key) -> event id.
pub type StateMap = HashMap<(String, String), String>;

const MAX_CACHED_GROUPS: usize = 4096;

#[derive(Default)]
pub struct StateCache {
    groups: Mutex<HashMap<i64, Arc<StateMap>>>,
}

impl StateCache {
    /// The full state of a group (state groups are immutable, so caching is always safe).
    pub async fn group(&self, store: &dyn Store, group: i64) -> MatrixResult<Arc<StateMap>> {
        if let Some(map) = self.groups.lock().ok().and_then(|g| g.get(&group).cloned()) {
            return Ok(map);
        }
        let entries = store.state_group(group).await?;
        let map: Arc<StateMap> = Arc::new(entries.into_iter().map(|(t, k, e)| ((t, k), e)).collect());
        if let Ok(mut groups) = self.groups.lock() {
            if groups.len() >= MAX_CACHED_GROUPS {
                groups.clear();
            }
            groups.insert(group, map.clone());
        }
        Ok(map)
    }
}
