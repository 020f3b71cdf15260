use async_trait::async_trait;

use crate::{StorageResult, StreamPos};

/// A to-device message waiting in a device's inbox.
#[derive(Clone, Debug)]
pub struct ToDeviceMessage {
    pub stream_pos: StreamPos,
    pub sender: String,
    pub event_type: String,
    pub content: String,
}

/// Per-device inboxes of to-device messages.
#[async_trait]
pub trait ToDeviceRepo {
    /// Queues `messages` (recipient user, recipient device, content JSON) from the sender's device,
    /// each at its own stream position, unless the sender's `txn_id` was used before (then
    /// nothing is stored and the answer is `false`).
    async fn send_to_device(
        &self,
        sender: &str,
        sender_device: &str,
        txn_id: &str,
        event_type: &str,
        messages: Vec<(String, String, String)>,
        now_ms: u64,
    ) -> StorageResult<bool>;
    /// Messages for the device with positions in `(after, until]`, oldest first, at most `limit`.
    async fn to_device_messages(
        &self,
        user_id: &str,
        device_id: &str,
        after: StreamPos,
        until: StreamPos,
        limit: usize,
    ) -> StorageResult<Vec<ToDeviceMessage>>;
    /// Deletes the device's messages up to `pos` (acknowledged, or the device was deleted then).
    async fn delete_to_device_messages(&self, user_id: &str, device_id: &str, up_to: StreamPos) -> StorageResult<()>;
}
