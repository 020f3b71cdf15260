use async_trait::async_trait;
use myelin_core::types::{OwnedEventId, OwnedServerName, ServerName};

use crate::StorageResult;

/// One entry of a destination's outgoing queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    pub id: i64,
    /// A PDU: the event and its JSON (`None` if the event is gone).
    pub event: Option<(OwnedEventId, Option<String>)>,
    /// An EDU's JSON.
    pub edu: Option<String>,
    /// When it was queued (clock milliseconds).
    pub created_ms: u64,
}

/// The federation sender's queue and the receiver's transaction log.
#[async_trait]
pub trait FederationRepo {
    /// Queues an EDU for each destination.
    async fn queue_edu(&self, destinations: &[OwnedServerName], edu: &str, now_ms: u64) -> StorageResult<()>;
    /// Queues events already stored for one destination (sticky events for a server that just
    /// joined), in this order.
    async fn queue_pdus(&self, destination: &ServerName, event_ids: &[OwnedEventId], now_ms: u64) -> StorageResult<()>;
    /// The oldest queued entries for `destination`: up to `max_pdus` PDUs and `max_edus` EDUs
    /// (in queue order, stopping at the first entry over either limit).
    async fn outbox(
        &self,
        destination: &ServerName,
        max_pdus: usize,
        max_edus: usize,
    ) -> StorageResult<Vec<OutboxEntry>>;
    /// Removes entries the destination accepted.
    async fn delete_outbox(&self, ids: &[i64]) -> StorageResult<()>;
    /// Destinations with queued entries.
    async fn outbox_destinations(&self) -> StorageResult<Vec<OwnedServerName>>;
    /// The answer given to transaction `txn_id` of `origin`, if it was processed.
    async fn inbound_txn(&self, origin: &ServerName, txn_id: &str) -> StorageResult<Option<String>>;
    /// Records the answer to a processed transaction (the first answer stays).
    async fn record_inbound_txn(
        &self,
        origin: &ServerName,
        txn_id: &str,
        response: &str,
        now_ms: u64,
    ) -> StorageResult<()>;
}
