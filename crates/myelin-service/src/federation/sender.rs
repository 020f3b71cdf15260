//! Sending to other servers. Events and EDUs for a destination wait in the durable outbox (rows
//! written with the event itself); one `federation_send` job per destination (keyed by it, so at
//! most one transaction is in flight to a server across every process) sends them as
//! transactions of at most 50 PDUs and 100 EDUs, oldest first, and deletes what the destination
//! accepted. A failure retries the job with backoff, which a request from that server cuts short;
//! a destination that is down costs the others nothing (each has its own job). A periodic sweep
//! wakes destinations whose job went missing. Typing notifications that waited out an outage are
//! dropped rather than sent late.

use myelin_core::{
    MatrixError, MatrixResult,
    types::{OwnedServerName, ServerName},
};
use myelin_storage::NewJob;
use serde_json::{Value, json};

use crate::{Services, jobs::JobKind};

/// PDUs and EDUs in one transaction (specification).
const TXN_PDUS: usize = 50;
const TXN_EDUS: usize = 100;
/// Transactions sent per job run before it yields to other jobs.
const TXNS_PER_RUN: usize = 20;
/// A typing notification older than this when its transaction goes out is dropped: after an
/// outage it would tell of typing long over.
const TYPING_STALE_MS: u64 = 30_000;
/// A failed destination is retried after this long at first, doubled per failure up to the cap.
const RETRY_FIRST_MS: u64 = 5_000;
const RETRY_MAX_MS: u64 = 60 * 60 * 1000;

/// The job key of a destination's sender (a space: no server name has one, and PostgreSQL text
/// takes no NUL).
pub(crate) fn sender_key(destination: &ServerName) -> String {
    format!("{}{destination}", sender_key_prefix())
}

/// What every sender's job key starts with.
pub(crate) fn sender_key_prefix() -> String {
    "federation_send ".to_owned()
}

/// When a destination whose sending failed `attempts` times in a row is tried again: never
/// given up (the outbox waits), at most an hour apart.
pub fn destination_retry_at(now_ms: u64, attempts: u32) -> u64 {
    now_ms.saturating_add(destination_backoff_ms(attempts))
}

/// How long a destination whose sending failed `attempts` times in a row is left alone.
pub fn destination_backoff_ms(attempts: u32) -> u64 {
    RETRY_FIRST_MS.saturating_mul(1 << attempts.saturating_sub(1).min(20)).min(RETRY_MAX_MS)
}

/// Whether an EDU queued at `created_ms` would only mislead at `now_ms`: typing long over.
fn stale_on_arrival(edu: &Value, created_ms: u64, now_ms: u64) -> bool {
    edu["edu_type"] == "m.typing" && now_ms.saturating_sub(created_ms) > TYPING_STALE_MS
}

fn destination_of(payload: &str) -> MatrixResult<OwnedServerName> {
    serde_json::from_str::<Value>(payload)
        .ok()
        .and_then(|p| p.get("destination").and_then(Value::as_str).and_then(|d| ServerName::parse(d).ok()))
        .ok_or_else(|| MatrixError::internal(format!("bad federation_send payload {payload}")))
}

impl Services {
    /// Starts (or keeps) the sender of each destination.
    pub(crate) async fn wake_senders(&self, destinations: &[OwnedServerName]) -> MatrixResult<()> {
        let now = self.now_ms();
        for destination in destinations {
            let job = NewJob {
                kind: JobKind::FederationSend.as_str().to_owned(),
                dedupe_key: Some(sender_key(destination)),
                payload: json!({ "destination": destination }).to_string(),
                run_at_ms: now,
            };
            self.store.schedule_job(job, now).await?;
        }
        if !destinations.is_empty() {
            self.jobs_queued.notify_one();
        }
        Ok(())
    }

    /// A server talked to us: it is up, so its sender stops waiting out a backoff.
    pub async fn destination_is_up(&self, destination: &ServerName) -> MatrixResult<()> {
        if self.store.advance_job(&sender_key(destination), self.now_ms()).await? {
            self.jobs_queued.notify_one();
        }
        Ok(())
    }

    /// The `federation_send` job: sends the destination's outbox, transaction by transaction.
    /// True if entries are left (the job runs again).
    pub(crate) async fn run_sender(&self, payload: &str) -> MatrixResult<bool> {
        let destination = destination_of(payload)?;
        for _ in 0..TXNS_PER_RUN {
            let batch = self.store.outbox(&destination, TXN_PDUS, TXN_EDUS).await?;
            let (Some(first), Some(last)) = (batch.first(), batch.last()) else { return Ok(false) };
            let mut pdus = Vec::new();
            let mut edus = Vec::new();
            let now = self.now_ms();
            for entry in &batch {
                if let Some((_, Some(json))) = &entry.event
                    && let Ok(pdu) = serde_json::from_str::<Value>(json)
                {
                    pdus.push(pdu);
                }
                if let Some(edu) = &entry.edu
                    && let Ok(edu) = serde_json::from_str::<Value>(edu)
                    && !stale_on_arrival(&edu, entry.created_ms, now)
                {
                    edus.push(edu);
                }
            }
            let ids: Vec<i64> = batch.iter().map(|e| e.id).collect();
            if pdus.is_empty() && edus.is_empty() {
                // Only what went stale (or vanished): nothing to send.
                self.store.delete_outbox(&ids).await?;
                continue;
            }
            // The same entries always make the same transaction id: a retry after a crash is
            // recognised by the destination.
            let txn_id = format!("{}-{}", first.id, last.id);
            let body = json!({
                "origin": self.server_name,
                "origin_server_ts": self.now_ms(),
                "pdus": pdus,
                "edus": edus,
            });
            let path = format!("/_matrix/federation/v1/send/{txn_id}");
            tracing::debug!(%destination, %txn_id, pdus = pdus.len(), edus = edus.len(), "sending a transaction");
            let answer = match self.federation_send(reqwest::Method::PUT, &destination, &path, &body).await {
                Ok(answer) => answer,
                Err(e) => {
                    self.metrics.federation_failed_transactions.inc();
                    return Err(MatrixError::internal(format!("sending to {destination}: {e}")));
                }
            };
            self.metrics.federation_sent_transactions.inc();
            self.metrics.federation_sent_pdus.add(pdus.len() as u64);
            self.metrics.federation_sent_edus.add(edus.len() as u64);
            if let Some(results) = answer.get("pdus").and_then(Value::as_object) {
                for (event_id, result) in results {
                    if let Some(error) = result.get("error") {
                        tracing::info!(%destination, %event_id, %error, "the destination did not accept an event");
                    }
                }
            }
            self.store.delete_outbox(&ids).await?;
        }
        Ok(true)
    }

    /// After a sender finished: entries queued meanwhile (whose wake-up found the finishing job)
    /// get a new one.
    pub(crate) async fn recheck_sender(&self, payload: &str) -> MatrixResult<()> {
        let destination = destination_of(payload)?;
        if !self.store.outbox(&destination, 1, 1).await?.is_empty() {
            self.wake_senders(&[destination]).await?;
        }
        Ok(())
    }

    /// The periodic sweep: a sender for every destination with queued entries.
    pub(crate) async fn sweep_outbox(&self) -> MatrixResult<()> {
        let destinations = self.store.outbox_destinations().await?;
        self.wake_senders(&destinations).await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::stale_on_arrival;

    #[test]
    fn typing_queued_through_an_outage_is_dropped_and_nothing_else() {
        let typing = json!({ "edu_type": "m.typing", "content": {} });
        let receipt = json!({ "edu_type": "m.receipt", "content": {} });
        assert!(!stale_on_arrival(&typing, 1_000, 20_000), "fresh typing goes");
        assert!(stale_on_arrival(&typing, 1_000, 60_000), "typing from a minute ago does not");
        assert!(!stale_on_arrival(&receipt, 1_000, 10_000_000), "a receipt is never stale");
    }
}
