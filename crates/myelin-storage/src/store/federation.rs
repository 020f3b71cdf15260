//! The federation sender's outgoing queue and the receiver's transaction log.

use async_trait::async_trait;

use myelin_core::types::{OwnedEventId, OwnedServerName, ServerName};

use crate::{Database, FederationRepo, OutboxEntry, StorageResult, db::ToValue};

#[async_trait]
impl FederationRepo for Database {
    async fn queue_edu(&self, destinations: &[OwnedServerName], edu: &str, now_ms: u64) -> StorageResult<()> {
        if destinations.is_empty() {
            return Ok(());
        }
        let (destinations, edu) = (destinations.to_vec(), edu.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                let rows: Vec<Vec<&dyn ToValue>> =
                    destinations.iter().map(|d| -> Vec<&dyn ToValue> { vec![d, &edu, &now_ms] }).collect();
                c.insert_rows("INSERT INTO federation_outbox (destination, edu, created_ms)", &rows).await?;
                Ok(())
            })
        })
        .await
    }

    async fn queue_pdus(&self, destination: &ServerName, event_ids: &[OwnedEventId], now_ms: u64) -> StorageResult<()> {
        if event_ids.is_empty() {
            return Ok(());
        }
        let (destination, event_ids) = (destination.to_owned(), event_ids.to_vec());
        self.transaction(move |c| {
            Box::pin(async move {
                let rows: Vec<Vec<&dyn ToValue>> =
                    event_ids.iter().map(|e| -> Vec<&dyn ToValue> { vec![&destination, e, &now_ms] }).collect();
                c.insert_rows("INSERT INTO federation_outbox (destination, event_id, created_ms)", &rows).await?;
                Ok(())
            })
        })
        .await
    }

    async fn outbox(
        &self,
        destination: &ServerName,
        max_pdus: usize,
        max_edus: usize,
    ) -> StorageResult<Vec<OutboxEntry>> {
        let destination = destination.to_owned();
        let limit = max_pdus + max_edus;
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT o.id, o.event_id, e.json, o.edu, o.created_ms FROM federation_outbox o
                     LEFT JOIN events e ON e.event_id = o.event_id
                     WHERE o.destination = $1 ORDER BY o.id LIMIT {limit}"
                );
                type Row = (i64, Option<OwnedEventId>, Option<String>, Option<String>, u64);
                let rows: Vec<Row> = c
                    .query(&sql, &[&destination], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
                    .await?;
                let (mut pdus, mut edus) = (0, 0);
                let mut out = Vec::new();
                for (id, event_id, json, edu, created_ms) in rows {
                    if event_id.is_some() {
                        pdus += 1;
                    } else {
                        edus += 1;
                    }
                    if pdus > max_pdus || edus > max_edus {
                        break;
                    }
                    out.push(OutboxEntry { id, event: event_id.map(|e| (e, json)), edu, created_ms });
                }
                Ok(out)
            })
        })
        .await
    }

    async fn delete_outbox(&self, ids: &[i64]) -> StorageResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids = ids.to_vec();
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute("DELETE FROM federation_outbox WHERE id = ANY($1)", &[&ids]).await?;
                Ok(())
            })
        })
        .await
    }

    async fn outbox_destinations(&self) -> StorageResult<Vec<OwnedServerName>> {
        self.read(move |c| {
            Box::pin(async move {
                c.query("SELECT DISTINCT destination FROM federation_outbox ORDER BY destination", &[], |r| r.get(0))
                    .await
            })
        })
        .await
    }

    async fn inbound_txn(&self, origin: &ServerName, txn_id: &str) -> StorageResult<Option<String>> {
        let (origin, txn_id) = (origin.to_owned(), txn_id.to_owned());
        self.read(move |c| {
            Box::pin(async move {
                c.query_opt(
                    "SELECT response FROM federation_inbound_txns WHERE origin = $1 AND txn_id = $2",
                    &[&origin, &txn_id],
                    |r| r.get(0),
                )
                .await
            })
        })
        .await
    }

    async fn record_inbound_txn(
        &self,
        origin: &ServerName,
        txn_id: &str,
        response: &str,
        now_ms: u64,
    ) -> StorageResult<()> {
        let (origin, txn_id, response) = (origin.to_owned(), txn_id.to_owned(), response.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO federation_inbound_txns (origin, txn_id, response, created_ms) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (origin, txn_id) DO NOTHING",
                    &[&origin, &txn_id, &response, &now_ms],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }
}
