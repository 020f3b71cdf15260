use async_trait::async_trait;
use myelin_core::{
    StreamPos,
    types::{DeviceId, OwnedDeviceId, OwnedTransactionId, OwnedUserId, UserId},
};

use crate::StorageResult;

/// A to-device message waiting in a device's inbox.
#[derive(Clone, Debug)]
pub struct ToDeviceMessage {
    pub stream_pos: StreamPos,
    pub sender: OwnedUserId,
    pub event_type: String,
    pub content: String,
}

/// One `/sendToDevice` request: its messages, each for a (user, device), all of one type.
#[derive(Clone, Debug)]
pub struct ToDeviceSend {
    pub sender: OwnedUserId,
    pub sender_device: OwnedDeviceId,
    pub txn_id: OwnedTransactionId,
    pub event_type: String,
    /// (recipient user, recipient device, content JSON).
    pub messages: Vec<(OwnedUserId, OwnedDeviceId, String)>,
    pub now_ms: u64,
}

/// Per-device inboxes of to-device messages.
#[async_trait]
pub trait ToDeviceRepo {
    /// Queues the messages, each at its own stream position, unless the sender's `txn_id` was
    /// used before (then nothing is stored and the answer is `false`).
    async fn send_to_device(&self, send: ToDeviceSend) -> StorageResult<bool>;
    /// Messages for the device with positions in `(after, until]`, oldest first, at most `limit`.
    async fn to_device_messages(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        after: StreamPos,
        until: StreamPos,
        limit: usize,
    ) -> StorageResult<Vec<ToDeviceMessage>>;
    /// Deletes the device's messages up to `pos` (acknowledged, or the device was deleted then).
    async fn delete_to_device_messages(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        up_to: StreamPos,
    ) -> StorageResult<()>;
}
