use async_trait::async_trait;
use myelin_core::types::{OwnedDeviceId, OwnedRoomId, OwnedUserId, RoomId, UserId};

use crate::StorageResult;

/// The job kind that sends delayed events (the services' job runner knows it by this name).
pub const DELAYED_EVENT_JOB: &str = "delayed_event";

/// The job queue key of a delayed event's job.
pub fn delayed_event_job_key(delay_id: &str) -> String {
    format!("{DELAYED_EVENT_JOB}:{delay_id}")
}

/// An event a client scheduled to be sent later (MSC4140).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DelayedEvent {
    pub delay_id: String,
    pub user_id: OwnedUserId,
    /// The device that scheduled it; the event is sent from it.
    pub device_id: OwnedDeviceId,
    pub room_id: OwnedRoomId,
    pub event_type: String,
    /// `None` for a message event.
    pub state_key: Option<String>,
    /// The event's content, JSON.
    pub content: String,
    /// What a restart adds to the time of the restart.
    pub delay_ms: u64,
    /// Sent as a sticky event (MSC4354) for this long.
    pub sticky_duration_ms: Option<u64>,
    /// The transaction id of the client's request: a repeat of it schedules nothing.
    pub txn_id: Option<String>,
    pub send_at_ms: u64,
    pub created_ms: u64,
}

/// What scheduling a delayed event did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scheduled {
    /// Stored, with its job.
    New,
    /// The device already scheduled one under this transaction id: that one's delay id.
    Repeat(String),
    /// The user has as many pending as allowed: nothing stored.
    LimitReached,
}

/// Delayed events and the job that sends each one.
#[async_trait]
pub trait DelayedEventRepo {
    /// Stores a delayed event and queues its job (kind [`DELAYED_EVENT_JOB`], due at
    /// `send_at_ms`) in one transaction, unless the device already scheduled one under the same
    /// transaction id or the user has `max_per_user` pending.
    async fn schedule_delayed_event(&self, event: &DelayedEvent, max_per_user: usize) -> StorageResult<Scheduled>;
    async fn delayed_event(&self, delay_id: &str) -> StorageResult<Option<DelayedEvent>>;
    /// A user's pending delayed events (not those being sent), soonest first.
    async fn delayed_events_of(&self, user_id: &UserId) -> StorageResult<Vec<DelayedEvent>>;
    /// Moves a delayed event of `user_id` that is not being sent (and its job, unless a process
    /// is running it) to `send_at_ms`; false if the user has no such delayed event.
    async fn restart_delayed_event(&self, delay_id: &str, user_id: &UserId, send_at_ms: u64) -> StorageResult<bool>;
    /// Marks those of these delayed events due by `due_by_ms` as being sent (from then on they
    /// are neither restarted nor cancelled) and answers them, soonest due first; those gone or
    /// due later are left out. Marking one already marked answers it again (a send cut short by
    /// a crash is redone).
    async fn fire_delayed_events(&self, delay_ids: &[String], due_by_ms: u64) -> StorageResult<Vec<DelayedEvent>>;
    /// Deletes a delayed event that is not being sent, and its job unless a process is
    /// running it (that run finds the event gone); false if there was none.
    async fn cancel_delayed_event(&self, delay_id: &str) -> StorageResult<bool>;
    /// Deletes a delayed event (sent), and its job unless a process is running it; false if
    /// there was none.
    async fn delete_delayed_event(&self, delay_id: &str) -> StorageResult<bool>;
    /// Deletes the delayed state events pending (not being sent) at `(room, type, state key)`
    /// that users other than `writer` scheduled (a write to a state entry cancels the others' pending writes to
    /// it); answers their ids.
    async fn cancel_delayed_state_of_others(
        &self,
        room_id: &RoomId,
        event_type: &str,
        state_key: &str,
        writer: &UserId,
    ) -> StorageResult<Vec<String>>;
}
