use async_trait::async_trait;
use myelin_core::{
    StreamPos,
    types::{OwnedEventId, OwnedRoomId},
};

use crate::StorageResult;

/// A sticky event (MSC4354) not yet expired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StickyEvent {
    pub room_id: OwnedRoomId,
    pub event_id: OwnedEventId,
    pub stream_pos: StreamPos,
    pub expires_ms: u64,
}

/// Sticky events: written with their event (`NewEvent::sticky_until_ms`), read by syncs.
#[async_trait]
pub trait StickyEventRepo {
    /// The sticky events of `rooms` at positions up to `upto` that expire after `now_ms`,
    /// oldest first.
    async fn sticky_events_in(
        &self,
        rooms: &[OwnedRoomId],
        upto: StreamPos,
        now_ms: u64,
    ) -> StorageResult<Vec<StickyEvent>>;
    /// Forgets the sticky events expired at `now_ms`; returns how many.
    async fn delete_expired_sticky_events(&self, now_ms: u64) -> StorageResult<u64>;
}
