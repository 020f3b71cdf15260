use async_trait::async_trait;
use myelin_core::types::OwnedUserId;

use crate::StorageResult;

/// The job kind that drives a delegated leave.
pub const DELEGATED_LEAVE_JOB: &str = "delegated_leave";

/// The job queue key of the delegated leave of a LiveKit participant.
pub fn delegated_leave_job_key(livekit_room: &str, livekit_identity: &str) -> String {
    format!("{DELEGATED_LEAVE_JOB}:{livekit_room} {livekit_identity}")
}

/// A call member's delayed leave event, handed to the server to keep alive while the member's
/// LiveKit participant is connected (MatrixRTC, MSC4140 delegation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DelegatedLeave {
    pub livekit_room: String,
    pub livekit_identity: String,
    pub delay_id: String,
    pub user_id: OwnedUserId,
    /// The SFU has seen the participant (its webhook or a lookup).
    pub connected: bool,
    /// A participant not connected by then is taken as gone: the leave is sent.
    pub wait_until_ms: u64,
    pub created_ms: u64,
}

/// Delegated leaves and their jobs.
#[async_trait]
pub trait DelegatedLeaveRepo {
    /// Stores a delegation, replacing the participant's earlier one, and queues its job
    /// (kind [`DELEGATED_LEAVE_JOB`]) to run at `run_at_ms`, in one transaction.
    async fn put_delegated_leave(&self, leave: &DelegatedLeave, run_at_ms: u64) -> StorageResult<()>;
    async fn delegated_leave(
        &self,
        livekit_room: &str,
        livekit_identity: &str,
    ) -> StorageResult<Option<DelegatedLeave>>;
    /// Marks the participant connected and brings its job forward to `run_at_ms` (unless a
    /// process is running it); false if there is no such delegation.
    async fn mark_delegated_leave_connected(
        &self,
        livekit_room: &str,
        livekit_identity: &str,
        run_at_ms: u64,
    ) -> StorageResult<bool>;
    /// Removes the delegation (and its job, unless a process is running it) and returns it: the
    /// one who takes it sends the leave.
    async fn take_delegated_leave(
        &self,
        livekit_room: &str,
        livekit_identity: &str,
    ) -> StorageResult<Option<DelegatedLeave>>;
}
