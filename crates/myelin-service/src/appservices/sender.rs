//! Sending to application services. What a service is interested in waits in its durable
//! outbox (events written with the event itself, ephemeral events and to-device messages as
//! they happen); one `appservice` job per service (so one transaction in flight to it across
//! every process) sends them as transactions of at most [`TXN_ENTRIES`], oldest first. A
//! transaction's entries are recorded before it is first sent, so a retry (after a failure or a
//! crash) is the very same transaction; a failure retries the job with backoff, never giving up.
//! Also: the user and alias queries, and the ping.

use std::time::{Duration, Instant};

use myelin_core::{
    ErrorCode, MatrixError, MatrixResult,
    types::{OwnedEventId, RoomAliasId, UserId},
};
use myelin_storage::{AppserviceItem, AppserviceOutboxEntry, appservice_job_key};
use serde_json::{Value, json};

use super::Appservice;
use crate::{Services, pdu::ClientFormat};

/// Entries in one transaction (Synapse sends at most 100 events and 100 ephemeral events).
const TXN_ENTRIES: usize = 100;
/// Transactions sent per job run before it yields to other jobs.
const TXNS_PER_RUN: usize = 20;
/// A service that failed is retried after this long at first, doubled per failure up to the
/// cap (Synapse's backoff reaches 512 s).
const RETRY_FIRST_MS: u64 = 2_000;
const RETRY_MAX_MS: u64 = 512_000;
/// How long a service has to answer a transaction, a query or a ping.
pub(crate) const APPSERVICE_TIMEOUT: Duration = Duration::from_secs(60);
const PING_TIMEOUT: Duration = Duration::from_secs(15);

/// When a service whose transaction failed `attempts` times in a row is tried again.
pub fn appservice_retry_at(now_ms: u64, attempts: u32) -> u64 {
    let backoff = RETRY_FIRST_MS.saturating_mul(1 << attempts.saturating_sub(1).min(20)).min(RETRY_MAX_MS);
    now_ms.saturating_add(backoff)
}

/// A path segment, percent-encoded.
fn segment(text: &str) -> String {
    crate::federation::encode_component(text)
}

impl Services {
    /// Queues an ephemeral event (typing, a receipt) for the services that receive them and are
    /// interested in the room.
    pub(crate) async fn queue_appservice_ephemeral(&self, services: &[String], edu: &Value) {
        let item = [AppserviceItem::Ephemeral(edu.to_string())];
        for service in services {
            match self.store.queue_appservice_items(service, &item, self.now_ms()).await {
                Ok(()) => self.jobs_queued.notify_one(),
                Err(err) => tracing::warn!(%err, "could not queue an ephemeral event for application services"),
            }
        }
    }

    /// The to-device messages (recipient, device, content) of a send that go to services too:
    /// those to users of a service that receives ephemeral events (MSC2409), as the service
    /// reads them (`to_user_id`, `to_device_id`, `sender`, `type`, `content`), by service.
    pub(crate) fn appservice_to_device(
        &self,
        sender: &UserId,
        event_type: &str,
        messages: &[(myelin_core::types::OwnedUserId, myelin_core::types::OwnedDeviceId, String)],
    ) -> Vec<(String, Vec<AppserviceItem>)> {
        let services = self.appservices();
        services
            .iter()
            .filter(|a| a.receive_ephemeral && a.url.is_some())
            .filter_map(|a| {
                let items: Vec<AppserviceItem> = messages
                    .iter()
                    .filter(|(user, ..)| a.is_interested_in_user(user))
                    .map(|(user, device, content)| {
                        let content = serde_json::from_str::<Value>(content).unwrap_or_else(|_| json!({}));
                        let message = json!({
                            "to_user_id": user, "to_device_id": device, "sender": sender, "type": event_type,
                            "content": content,
                        });
                        AppserviceItem::ToDevice(message.to_string())
                    })
                    .collect();
                (!items.is_empty()).then(|| (a.id.clone(), items))
            })
            .collect()
    }

    /// A device list changed that these users must hear of: the services that track device
    /// lists (MSC3202) and hold one of them get a transaction, which says which lists changed.
    pub(crate) async fn wake_appservices_for_device_lists(&self, told: &[myelin_core::types::OwnedUserId]) {
        for service in self.appservices().iter().filter(|a| a.msc3202 && a.url.is_some()) {
            if told.iter().any(|u| service.is_interested_in_user(u)) {
                match self.store.queue_appservice_items(&service.id, &[AppserviceItem::Wake], self.now_ms()).await {
                    Ok(()) => self.jobs_queued.notify_one(),
                    Err(err) => tracing::warn!(%err, appservice = %service.id, "could not queue a device-list wake-up"),
                }
            }
        }
    }

    /// Device lists that changed since the service last heard (MSC3202), for its users in
    /// `users`: `changed` and `left` as sync gives them to a client. The first time, nothing
    /// (the service starts from the present).
    async fn appservice_device_lists(
        &self,
        service: &Appservice,
        users: &[myelin_core::types::OwnedUserId],
    ) -> MatrixResult<Option<Value>> {
        let until = self.store.refresh_stream_head().await?;
        let since = self.store.appservice_device_list_pos(&service.id).await?;
        self.store.set_appservice_device_list_pos(&service.id, until).await?;
        let Some(since) = since.filter(|s| *s < until) else { return Ok(None) };
        let mut changed = std::collections::BTreeSet::new();
        let mut left = std::collections::BTreeSet::new();
        for user in users {
            let rooms = self.store.rooms_for_user(user).await?;
            let delta = self.device_list_delta(user, &rooms, since, until).await?;
            changed.extend(delta.changed);
            left.extend(delta.left);
        }
        let left: Vec<_> = left.difference(&changed).cloned().collect();
        if changed.is_empty() && left.is_empty() {
            return Ok(None);
        }
        Ok(Some(json!({ "changed": changed, "left": left })))
    }

    /// Queues what [`Self::appservice_to_device`] found.
    pub(crate) async fn queue_appservice_to_device(
        &self,
        queued: Vec<(String, Vec<AppserviceItem>)>,
    ) -> MatrixResult<()> {
        for (service, items) in queued {
            self.store.queue_appservice_items(&service, &items, self.now_ms()).await?;
            self.jobs_queued.notify_one();
        }
        Ok(())
    }

    /// The `appservice` job: sends the service's outbox, transaction by transaction. True if
    /// entries are left (the job runs again).
    pub(crate) async fn run_appservice_sender(&self, appservice_id: &str) -> MatrixResult<bool> {
        let Some(service) = self.appservice_by_id(appservice_id) else {
            // A service removed from the configuration: its outbox waits for it to come back.
            tracing::info!(appservice = appservice_id, "no such application service configured: its queue waits");
            return Ok(false);
        };
        let Some(url) = service.url.clone() else { return Ok(false) };
        for _ in 0..TXNS_PER_RUN {
            let (txn_id, body) = match self.store.appservice_txn(&service.id).await? {
                Some(txn) => txn,
                None => {
                    let entries = self.store.appservice_outbox(&service.id, TXN_ENTRIES).await?;
                    let (Some(first), Some(last)) = (entries.first(), entries.last()) else { return Ok(false) };
                    let txn_id = format!("{}-{}", first.id, last.id);
                    let ids: Vec<i64> = entries.iter().map(|e| e.id).collect();
                    let body = self.transaction_body(&service, &entries).await?.to_string();
                    self.store.start_appservice_txn(&service.id, &txn_id, &body, &ids).await?;
                    (txn_id, body)
                }
            };
            let events = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|b| b["events"].as_array().map(Vec::len))
                .unwrap_or_default();
            let path = format!("{url}/_matrix/app/v1/transactions/{}", segment(&txn_id));
            let sent = self
                .appservice_http
                .put(&path)
                .bearer_auth(&service.hs_token)
                .timeout(APPSERVICE_TIMEOUT)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => {
                    self.metrics.appservice_sent_transactions.inc();
                    self.metrics.appservice_sent_events.add(events as u64);
                    self.store.finish_appservice_txn(&service.id).await?;
                }
                Ok(response) => {
                    self.metrics.appservice_failed_transactions.inc();
                    return Err(MatrixError::internal(format!(
                        "application service {} answered transaction {txn_id} with {}",
                        service.id,
                        response.status()
                    )));
                }
                Err(err) => {
                    self.metrics.appservice_failed_transactions.inc();
                    return Err(MatrixError::internal(format!(
                        "application service {} did not take transaction {txn_id}: {err}",
                        service.id
                    )));
                }
            }
        }
        Ok(true)
    }

    /// After a sender finished: entries queued meanwhile (whose job insert found the finishing
    /// job) get a new one.
    pub(crate) async fn recheck_appservice(&self, appservice_id: &str) -> MatrixResult<()> {
        // A service not configured here (or without a URL) has nothing sent: its queue waits for
        // a process that has it, not for a job run again at once.
        if self.appservice_by_id(appservice_id).is_none_or(|s| s.url.is_none()) {
            return Ok(());
        }
        if self.store.appservice_outbox_len(appservice_id).await? > 0 {
            let now = self.now_ms();
            let job = myelin_storage::NewJob {
                kind: myelin_storage::APPSERVICE_JOB.to_owned(),
                dedupe_key: Some(appservice_job_key(appservice_id)),
                payload: appservice_id.to_owned(),
                run_at_ms: now,
            };
            if self.store.schedule_job(job, now).await? {
                self.jobs_queued.notify_one();
            }
        }
        Ok(())
    }

    /// A transaction's body: the events (client format), the ephemeral events and to-device
    /// messages (MSC2409, under their unstable and stable names), and for a service that asks
    /// (MSC3202) the one-time key counts and unused fallback key types of its users' devices
    /// that the transaction concerns (its own user's, the events' and the messages' recipients').
    async fn transaction_body(&self, service: &Appservice, entries: &[AppserviceOutboxEntry]) -> MatrixResult<Value> {
        let event_ids: Vec<OwnedEventId> = entries.iter().filter_map(|e| e.event_id.clone()).collect();
        let stored = self.events(&event_ids).await?;
        let events = self.client_events(&stored, ClientFormat::Client, None).await?;
        let parse = |json: &Option<String>| json.as_deref().and_then(|j| serde_json::from_str::<Value>(j).ok());
        let ephemeral: Vec<Value> = entries.iter().filter_map(|e| parse(&e.ephemeral)).collect();
        let to_device: Vec<Value> = entries.iter().filter_map(|e| parse(&e.to_device)).collect();
        let mut body = json!({ "events": events });
        if !ephemeral.is_empty() {
            body["ephemeral"] = ephemeral.clone().into();
            body["de.sorunome.msc2409.ephemeral"] = ephemeral.into();
        }
        if service.msc3202 {
            let mut users: Vec<myelin_core::types::OwnedUserId> = vec![service.sender.clone()];
            for event in &stored {
                users.push(event.sender.clone());
                users.extend(event.state_key.as_deref().and_then(|k| UserId::parse(k).ok()));
            }
            users.extend(to_device.iter().filter_map(|m| m["to_user_id"].as_str().and_then(|u| UserId::parse(u).ok())));
            users.retain(|u| self.is_local_user(u) && service.is_interested_in_user(u));
            users.sort();
            users.dedup();
            if let Some(lists) = self.appservice_device_lists(service, &users).await? {
                body["org.matrix.msc3202.device_lists"] = lists;
            }
            let (counts, fallbacks) = self.key_counts_of(&users).await?;
            body["org.matrix.msc3202.device_one_time_keys_count"] = counts.clone();
            body["org.matrix.msc3202.device_one_time_key_counts"] = counts;
            body["org.matrix.msc3202.device_unused_fallback_key_types"] = fallbacks;
        }
        if !to_device.is_empty() {
            body["de.sorunome.msc2409.to_device"] = to_device.into();
        }
        Ok(body)
    }

    /// One-time key counts and unused fallback key types of these users' devices, by user and
    /// device (MSC3202's shapes).
    async fn key_counts_of(&self, users: &[myelin_core::types::OwnedUserId]) -> MatrixResult<(Value, Value)> {
        let mut counts = serde_json::Map::new();
        let mut fallbacks = serde_json::Map::new();
        for user in users {
            let mut user_counts = serde_json::Map::new();
            let mut user_fallbacks = serde_json::Map::new();
            for device in self.store.list_devices(user).await? {
                let (one_time, unused) = self.key_counts(user, &device.device_id).await?;
                user_counts.insert(device.device_id.to_string(), one_time);
                user_fallbacks.insert(device.device_id.to_string(), unused);
            }
            counts.insert(user.to_string(), user_counts.into());
            fallbacks.insert(user.to_string(), user_fallbacks.into());
        }
        Ok((counts.into(), fallbacks.into()))
    }

    /// Asks the services whose namespace holds `user_id` whether it exists
    /// (`GET /_matrix/app/v1/users/{userId}`); true if one said so and made it.
    pub(crate) async fn query_appservices_for_user(&self, user_id: &UserId) -> bool {
        for service in self.appservices().iter().filter(|a| a.url.is_some() && a.is_interested_in_user(user_id)) {
            let path = format!("/_matrix/app/v1/users/{}", segment(user_id.as_str()));
            if self.query_appservice(service, &path).await && matches!(self.store.get_user(user_id).await, Ok(Some(_)))
            {
                return true;
            }
        }
        false
    }

    /// Asks the services whose namespace holds `alias` to make it
    /// (`GET /_matrix/app/v1/rooms/{roomAlias}`); true if one said it did.
    pub(crate) async fn query_appservices_for_alias(&self, alias: &RoomAliasId) -> bool {
        for service in self.appservices().iter().filter(|a| a.url.is_some() && a.is_interested_in_alias(alias)) {
            let path = format!("/_matrix/app/v1/rooms/{}", segment(alias.as_str()));
            if self.query_appservice(service, &path).await {
                return true;
            }
        }
        false
    }

    /// One query to a service; true if it answered 2xx.
    async fn query_appservice(&self, service: &Appservice, path: &str) -> bool {
        let Some(url) = &service.url else { return false };
        let answer = self
            .appservice_http
            .get(format!("{url}{path}"))
            .bearer_auth(&service.hs_token)
            .timeout(APPSERVICE_TIMEOUT)
            .send()
            .await;
        match answer {
            Ok(response) => response.status().is_success(),
            Err(err) => {
                tracing::info!(appservice = %service.id, %err, path, "application service query failed");
                false
            }
        }
    }

    /// `POST /_matrix/client/v1/appservice/{appserviceId}/ping`: the homeserver pings the
    /// service (`POST /_matrix/app/v1/ping`) and answers how long it took.
    pub async fn ping_appservice(
        &self,
        requester: &crate::accounts::Requester,
        appservice_id: &str,
        transaction_id: Option<String>,
    ) -> MatrixResult<Value> {
        let service = match (&requester.appservice, self.appservice_by_id(appservice_id)) {
            (Some(own), Some(service)) if *own == service.id => service,
            _ => return Err(MatrixError::forbidden("This is not your application service")),
        };
        let Some(url) = &service.url else {
            return Err(MatrixError::new(ErrorCode::Other("M_URL_NOT_SET"), "The application service has no URL")
                .with_status(400));
        };
        let mut body = json!({});
        if let Some(txn) = transaction_id {
            body["transaction_id"] = txn.into();
        }
        let started = Instant::now();
        let answer = self
            .appservice_http
            .post(format!("{url}/_matrix/app/v1/ping"))
            .bearer_auth(&service.hs_token)
            .timeout(PING_TIMEOUT)
            .json(&body)
            .send()
            .await;
        match answer {
            Ok(response) if response.status().is_success() => {
                Ok(json!({ "duration_ms": started.elapsed().as_millis() as u64 }))
            }
            Ok(response) => {
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                Err(MatrixError::new(
                    ErrorCode::Other("M_BAD_STATUS"),
                    "The application service answered with an error",
                )
                .with_status(502)
                .with_field("status", status.into())
                .with_field("body", text.into()))
            }
            Err(err) if err.is_timeout() => Err(MatrixError::new(
                ErrorCode::Other("M_CONNECTION_TIMEOUT"),
                "The application service did not answer in time",
            )
            .with_status(504)),
            Err(err) => Err(MatrixError::new(
                ErrorCode::Other("M_CONNECTION_FAILED"),
                format!("Could not reach the application service: {err}"),
            )
            .with_status(502)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::appservice_retry_at;

    #[test]
    fn retries_back_off_to_512_seconds_and_never_stop() {
        assert_eq!(appservice_retry_at(0, 1), 2_000);
        assert_eq!(appservice_retry_at(0, 2), 4_000);
        assert_eq!(appservice_retry_at(0, 9), 512_000);
        assert_eq!(appservice_retry_at(0, 1000), 512_000);
    }
}
