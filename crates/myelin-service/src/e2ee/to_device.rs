//! `/sendToDevice` and the to-device part of sync: messages wait in each device's inbox until the
//! device acknowledges them by syncing past them; at most 100 are delivered per response, in
//! order.

use std::collections::HashSet;

use myelin_core::{ErrorCode, MatrixError, MatrixResult};
use myelin_storage::StreamPos;
use serde_json::{Value, json};

use crate::{Services, accounts::Requester};

/// Messages per sync response.
pub const TO_DEVICE_BATCH: usize = 100;
/// Messages in one `/sendToDevice` request (after `*` expansion).
const MAX_MESSAGES_PER_REQUEST: usize = 10_000;

impl Services {
    /// `PUT /sendToDevice/{type}/{txnId}`.
    pub async fn send_to_device(
        &self,
        r: &Requester,
        event_type: &str,
        txn_id: &str,
        body: &Value,
    ) -> MatrixResult<()> {
        if event_type.is_empty() || event_type.len() > 255 {
            return Err(MatrixError::invalid_param("Invalid event type"));
        }
        let Some(users) = body.get("messages").and_then(Value::as_object) else {
            return Err(MatrixError::bad_json("messages must be an object"));
        };
        let mut messages = Vec::new();
        for (user, devices) in users {
            let Some(devices) = devices.as_object() else {
                return Err(MatrixError::bad_json("messages must map users to {device: content}"));
            };
            if !self.is_local_user(user) {
                continue; // no federation yet
            }
            let known: Option<HashSet<String>> = if devices.contains_key("*") || !devices.is_empty() {
                Some(self.store.list_devices(user).await?.into_iter().map(|d| d.device_id).collect())
            } else {
                None
            };
            let known = known.unwrap_or_default();
            for (device, content) in devices {
                if !content.is_object() {
                    return Err(MatrixError::bad_json("Each message content must be an object"));
                }
                let targets: Vec<&String> =
                    if device == "*" { known.iter().collect() } else { known.get(device).into_iter().collect() };
                for target in targets {
                    messages.push((user.clone(), target.clone(), content.to_string()));
                }
            }
            if messages.len() > MAX_MESSAGES_PER_REQUEST {
                return Err(MatrixError::new(ErrorCode::TooLarge, "Too many to-device messages in one request"));
            }
        }
        let recipients: Vec<String> = {
            let mut users: Vec<String> = messages.iter().map(|(u, ..)| u.clone()).collect();
            users.sort();
            users.dedup();
            users
        };
        let _guard = self.locks.lock(&format!("todevice\u{0}{}\u{0}{}\u{0}{txn_id}", r.user_id, r.device_id)).await;
        if self
            .store
            .send_to_device(&r.user_id, &r.device_id, txn_id, event_type, messages, myelin_core::time::now_ms())
            .await?
        {
            self.notifier.notify_users(&recipients);
        }
        Ok(())
    }

    /// The to-device section of a sync for this device: acknowledges what the client confirmed it
    /// received (`acked`, from its token), then returns the next messages up to `until` and the
    /// position the next token must acknowledge.
    pub async fn to_device_for_sync(
        &self,
        user_id: &str,
        device_id: &str,
        acked: Option<StreamPos>,
        until: StreamPos,
        limit: usize,
    ) -> MatrixResult<(Vec<Value>, StreamPos)> {
        let limit = limit.clamp(1, TO_DEVICE_BATCH);
        // Deleting is a write: only when something acknowledged is still there (most syncs have
        // nothing in the inbox, and a sync must not queue a write each time).
        if let Some(acked) = acked
            && acked > 0
            && !self.store.to_device_messages(user_id, device_id, 0, acked, 1).await?.is_empty()
        {
            self.store.delete_to_device_messages(user_id, device_id, acked).await?;
        }
        let messages = self.store.to_device_messages(user_id, device_id, acked.unwrap_or(0), until, limit).await?;
        let next = if messages.len() == limit { messages.last().map_or(until, |m| m.stream_pos) } else { until };
        let events = messages
            .into_iter()
            .map(|m| {
                let content = serde_json::from_str::<Value>(&m.content).unwrap_or_else(|_| json!({}));
                json!({ "sender": m.sender, "type": m.event_type, "content": content })
            })
            .collect();
        Ok((events, next))
    }
}
