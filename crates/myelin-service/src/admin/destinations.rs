//! Federation destinations as admins see them: every server this server has talked with, and
//! whether sending to it is backing off after failures.

use std::collections::{BTreeMap, HashMap};

use myelin_core::{
    MatrixError, MatrixResult,
    types::{OwnedServerName, ServerName},
};
use myelin_storage::JobRecord;
use serde_json::{Value, json};

use super::{Page, next_token};
use crate::{Services, accounts::Requester, federation};

/// A destination in Synapse's shape: while its sender backs off, when it last failed and how
/// long it waits (`retry_last_ts` is when the wait began: the retry time less the backoff).
fn destination_json(destination: &ServerName, sender: Option<&JobRecord>) -> Value {
    let failing = sender.filter(|job| job.attempts > 0);
    let backoff = failing.map(|job| federation::destination_backoff_ms(job.attempts));
    let last_failure = failing.zip(backoff).map(|(job, backoff)| job.run_at_ms.saturating_sub(backoff));
    json!({
        "destination": destination,
        "retry_last_ts": last_failure.unwrap_or(0),
        "retry_interval": backoff.unwrap_or(0),
        "failure_ts": last_failure,
        "last_successful_stream_ordering": Value::Null,
    })
}

impl Services {
    /// Every known destination with its sender's job, if it has one.
    async fn destinations(&self) -> MatrixResult<BTreeMap<OwnedServerName, Option<JobRecord>>> {
        let mut senders: HashMap<String, JobRecord> = HashMap::new();
        for job in self.store.jobs_keyed(&federation::sender_key_prefix()).await? {
            if let Some(key) = job.dedupe_key.clone() {
                senders.insert(key, job);
            }
        }
        let mut known: Vec<OwnedServerName> = self.store.key_servers().await?;
        known.extend(self.store.outbox_destinations().await?);
        Ok(known
            .into_iter()
            .filter(|d| *d != self.server_name)
            .map(|d| {
                let job = senders.get(&federation::sender_key(&d)).cloned();
                (d, job)
            })
            .collect())
    }

    /// `GET /_synapse/admin/v1/federation/destinations` (`destination`: part of the name).
    pub async fn admin_destinations(
        &self,
        requester: &Requester,
        page: Page,
        name: Option<&str>,
    ) -> MatrixResult<Value> {
        Self::require_admin(requester)?;
        let all: Vec<Value> = self
            .destinations()
            .await?
            .iter()
            .filter(|(d, _)| name.is_none_or(|n| d.as_str().contains(n)))
            .map(|(d, job)| destination_json(d, job.as_ref()))
            .collect();
        let total = all.len() as u64;
        let listed: Vec<Value> =
            all.into_iter().skip(usize::try_from(page.from).unwrap_or(usize::MAX)).take(page.size()).collect();
        let mut body = json!({ "destinations": listed, "total": total });
        if let Some(next) = next_token(page, listed.len(), total) {
            body["next_token"] = next.into();
        }
        Ok(body)
    }

    /// `GET /_synapse/admin/v1/federation/destinations/{destination}`.
    pub async fn admin_destination(&self, requester: &Requester, destination: &ServerName) -> MatrixResult<Value> {
        Self::require_admin(requester)?;
        let all = self.destinations().await?;
        let job = all.get(destination).ok_or_else(unknown_destination)?;
        Ok(destination_json(destination, job.as_ref()))
    }

    /// `POST /_synapse/admin/v1/federation/destinations/{destination}/reset_connection`: the
    /// sender stops backing off and tries now.
    pub async fn admin_reset_destination(&self, requester: &Requester, destination: &ServerName) -> MatrixResult<()> {
        Self::require_admin(requester)?;
        if !self.destinations().await?.contains_key(destination) {
            return Err(unknown_destination());
        }
        self.destination_is_up(destination).await?;
        tracing::info!(admin = %requester.user_id, %destination, "admin API: destination's backoff reset");
        Ok(())
    }
}

fn unknown_destination() -> MatrixError {
    MatrixError::not_found("Unknown destination")
}
