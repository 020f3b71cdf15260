use async_trait::async_trait;
use myelin_core::{
    StateGroupId, StreamPos,
    types::{OwnedDeviceId, OwnedRoomId, OwnedUserId},
};

use crate::{MemberRecord, StorageResult, StoredEvent};

/// A sliding sync connection as stored: its identity, the newest position and the one before
/// (each with the connection state after it), and when it was last used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredConnection {
    pub generation: String,
    pub seq: i64,
    pub state: String,
    pub prev_seq: i64,
    pub prev_state: String,
    pub last_used_ms: i64,
}

/// What a room list entry shows of a room's members, the same for every viewer, read for many
/// rooms in one go.
#[derive(Clone, Debug)]
pub struct RoomMembersSummary {
    pub room_id: OwnedRoomId,
    pub joined: u64,
    pub invited: u64,
    /// The first [`MEMBERS_IN_SUMMARY`] joined or invited members, earliest first: five heroes
    /// other than any one viewer.
    pub first_members: Vec<MemberRecord>,
    /// The room's current state group.
    pub current_state_group: Option<StateGroupId>,
}

/// Members a [`RoomMembersSummary`] lists: a room name is made of up to five, other than the viewer.
pub const MEMBERS_IN_SUMMARY: usize = 6;

/// Which connection: (user, device, the client's `conn_id`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConnectionKey {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub conn_id: String,
}

/// A room's newest events for a sliding sync window: at most `limit`, in `(since, upper]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineRequest {
    pub room_id: OwnedRoomId,
    pub upper: StreamPos,
    pub since: Option<StreamPos>,
    pub limit: usize,
}

/// Connections one device keeps (Element X uses three), so that a client making up new
/// `conn_id`s cannot grow the table without bound. "Recently used" is as exact as `last_used_ms`,
/// which a connection without news refreshes hourly.
pub const MAX_CONNECTIONS_PER_DEVICE: usize = 20;

/// Per-connection state of simplified sliding sync (MSC4186), keyed by (user, device, conn_id).
#[async_trait]
pub trait SlidingSyncRepo {
    async fn sliding_sync_connection(&self, key: &ConnectionKey) -> StorageResult<Option<StoredConnection>>;
    /// Stores `new` for the connection. With `expected = Some((generation, seq))` only if the
    /// stored row still has that generation and newest position (false otherwise: another
    /// request moved the connection on); with `None` the row is created or replaced, and the
    /// device's connections beyond [`MAX_CONNECTIONS_PER_DEVICE`] (least recently used first)
    /// are deleted in the same write.
    async fn save_sliding_sync_connection(
        &self,
        key: &ConnectionKey,
        expected: Option<(String, i64)>,
        new: StoredConnection,
    ) -> StorageResult<bool>;
    async fn delete_sliding_sync_connection(&self, key: &ConnectionKey) -> StorageResult<()>;
    /// Member summaries of `room_ids`, in their order (one database round trip per room at
    /// most, all in one read).
    async fn room_member_summaries(&self, room_ids: &[OwnedRoomId]) -> StorageResult<Vec<RoomMembersSummary>>;
    /// For each request: the room's newest events in its range, newest first (as `room_events`
    /// backwards), all in one read.
    async fn room_timelines(&self, requests: &[TimelineRequest]) -> StorageResult<Vec<Vec<StoredEvent>>>;
    /// Deletes connections not used since `before_ms`; returns how many.
    async fn delete_idle_sliding_sync_connections(&self, before_ms: i64) -> StorageResult<u64>;
}
