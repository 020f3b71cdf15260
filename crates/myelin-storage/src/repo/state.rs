use async_trait::async_trait;
use myelin_core::{
    StateGroupId,
    types::{OwnedEventId, StateEventType},
};

use crate::StorageResult;

/// A new delta group is cut into a full snapshot after this many hops (every backend).
pub const MAX_STATE_DELTA_HOPS: i64 = 100;

/// One state entry: (event type, state key, event id).
pub type StateEntry = (StateEventType, String, OwnedEventId);

/// State groups: immutable snapshots of room state, stored as deltas.
#[async_trait]
pub trait StateRepo {
    /// The full state of a group, with its delta chain resolved.
    async fn state_group(&self, group_id: StateGroupId) -> StorageResult<Vec<StateEntry>>;
}
