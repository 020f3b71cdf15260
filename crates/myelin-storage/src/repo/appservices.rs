use async_trait::async_trait;
use myelin_core::{StreamPos, types::OwnedEventId};

use crate::StorageResult;

/// The job kind that sends an application service's outbox (one job per service, keyed
/// `appservice {id}`, queued by the writes that fill the outbox).
pub const APPSERVICE_JOB: &str = "appservice";

/// The job key of an application service's sender.
pub fn appservice_job_key(appservice_id: &str) -> String {
    format!("{APPSERVICE_JOB} {appservice_id}")
}

/// One entry of an application service's outbox: an event, an ephemeral event or a to-device
/// message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppserviceOutboxEntry {
    pub id: i64,
    pub event_id: Option<OwnedEventId>,
    pub ephemeral: Option<String>,
    pub to_device: Option<String>,
    pub created_ms: u64,
}

/// What an entry queued outside an event's write carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppserviceItem {
    /// An ephemeral event's JSON (typing, receipt, presence).
    Ephemeral(String),
    /// A to-device message's JSON.
    ToDevice(String),
    /// Nothing to send but a reason for a transaction (device lists changed, MSC3202).
    Wake,
}

/// Application services' outboxes (events are queued by `EventRepo::persist_event` through
/// `NewEvent::appservices`).
#[async_trait]
pub trait AppserviceRepo {
    /// Queues items for a service, and its sender job.
    async fn queue_appservice_items(
        &self,
        appservice_id: &str,
        items: &[AppserviceItem],
        now_ms: u64,
    ) -> StorageResult<()>;
    /// The oldest entries of a service's outbox, at most `limit`.
    async fn appservice_outbox(&self, appservice_id: &str, limit: usize) -> StorageResult<Vec<AppserviceOutboxEntry>>;
    /// How many entries wait for the service.
    async fn appservice_outbox_len(&self, appservice_id: &str) -> StorageResult<u64>;
    /// The transaction in flight to the service, if any: its id and body.
    async fn appservice_txn(&self, appservice_id: &str) -> StorageResult<Option<(String, String)>>;
    /// Records the transaction about to be sent: its id, body and entries (a retry sends it
    /// again, unchanged).
    async fn start_appservice_txn(
        &self,
        appservice_id: &str,
        txn_id: &str,
        body: &str,
        entry_ids: &[i64],
    ) -> StorageResult<()>;
    /// The service accepted its transaction: its entries and the record go.
    async fn finish_appservice_txn(&self, appservice_id: &str) -> StorageResult<()>;
    /// Where the service's device-list updates have reached (MSC3202), if they started.
    async fn appservice_device_list_pos(&self, appservice_id: &str) -> StorageResult<Option<StreamPos>>;
    async fn set_appservice_device_list_pos(&self, appservice_id: &str, pos: StreamPos) -> StorageResult<()>;
}
