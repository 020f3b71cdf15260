//! `/sendToDevice` and the to-device part of sync: messages wait in each device's inbox until the
//! device acknowledges them by syncing past them; at most 100 are delivered per response, in
//! order.

use std::collections::{BTreeMap, HashSet};

use myelin_core::{
    ErrorCode, MatrixError, MatrixResult,
    types::{DeviceId, OwnedDeviceId, OwnedServerName, OwnedUserId, TransactionId, UserId},
};
use myelin_storage::{Change, StreamPos, ToDeviceSend};
use serde_json::{Map, Value, json};

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
        txn_id: &TransactionId,
        body: &Value,
    ) -> MatrixResult<()> {
        if event_type.is_empty() || event_type.len() > 255 {
            return Err(MatrixError::invalid_param("Invalid event type"));
        }
        let Some(users) = body.get("messages").and_then(Value::as_object) else {
            return Err(MatrixError::bad_json("messages must be an object"));
        };
        let mut messages = Vec::new();
        let mut remote: BTreeMap<OwnedServerName, Map<String, Value>> = BTreeMap::new();
        let mut remote_count = 0;
        for (user, devices) in users {
            let Some(devices) = devices.as_object() else {
                return Err(MatrixError::bad_json("messages must map users to {device: content}"));
            };
            let Ok(user) = UserId::parse(user) else { continue };
            if !self.is_local_user(&user) {
                if devices.values().any(|c| !c.is_object()) {
                    return Err(MatrixError::bad_json("Each message content must be an object"));
                }
                remote_count += devices.len();
                remote
                    .entry(user.server_name().to_owned())
                    .or_default()
                    .insert(user.to_string(), Value::Object(devices.clone()));
                continue; // sent to its server below
            }
            let known: HashSet<OwnedDeviceId> = if devices.is_empty() {
                HashSet::new()
            } else {
                self.store.list_devices(&user).await?.into_iter().map(|d| d.device_id).collect()
            };
            for (device, content) in devices {
                if !content.is_object() {
                    return Err(MatrixError::bad_json("Each message content must be an object"));
                }
                let targets: Vec<&OwnedDeviceId> = if device == "*" {
                    known.iter().collect()
                } else {
                    known.get(<&DeviceId>::from(device.as_str())).into_iter().collect()
                };
                for target in targets {
                    messages.push((user.clone(), target.clone(), content.to_string()));
                }
            }
            if messages.len() + remote_count > MAX_MESSAGES_PER_REQUEST {
                return Err(MatrixError::new(ErrorCode::TooLarge, "Too many to-device messages in one request"));
            }
        }
        let recipients: Vec<OwnedUserId> = {
            let mut users: Vec<OwnedUserId> = messages.iter().map(|(u, ..)| u.clone()).collect();
            users.sort();
            users.dedup();
            users
        };
        let for_appservices = self.appservice_to_device(&r.user_id, event_type, &messages);
        let send = ToDeviceSend {
            sender: r.user_id.clone(),
            sender_device: r.device_id.clone(),
            txn_id: txn_id.to_owned(),
            event_type: event_type.to_owned(),
            messages,
            now_ms: self.clock.now_ms(),
        };
        if self.store.send_to_device(send).await? {
            self.notifier.notify_users(&recipients);
            self.queue_appservice_to_device(for_appservices).await?;
            // Only on the first use of the transaction id: a retry sends nothing twice.
            self.send_remote_to_device(r, event_type, txn_id, remote).await?;
        }
        Ok(())
    }

    /// The to-device section of a sync for this device: acknowledges what the client confirmed it
    /// received (`acked`, from its token), then returns the next messages up to `until` and the
    /// position the next token must acknowledge.
    pub async fn to_device_for_sync(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        acked: Option<StreamPos>,
        until: StreamPos,
        limit: usize,
    ) -> MatrixResult<(Vec<Value>, StreamPos)> {
        let limit = limit.clamp(1, TO_DEVICE_BATCH);
        // Deleting is a write: only when something acknowledged is still there (most syncs have
        // nothing in the inbox, and a sync must not queue a write each time). Nor is it looked for
        // again while no to-device message was written since the inbox was last found swept.
        if let Some(acked) = acked
            && acked > StreamPos::ZERO
        {
            let key = format!("{user_id}|{device_id}");
            let swept = self
                .to_device_swept
                .get(&key)
                .is_some_and(|swept| swept <= acked && !self.store.may_have_changed(Change::ToDevice, swept));
            if !swept {
                let epoch = self.to_device_swept.epoch();
                if !self.store.to_device_messages(user_id, device_id, StreamPos::ZERO, acked, 1).await?.is_empty() {
                    self.store.delete_to_device_messages(user_id, device_id, acked).await?;
                }
                self.to_device_swept.insert_if_current(key, acked, 1, epoch);
            }
        }
        let after = acked.unwrap_or(StreamPos::ZERO);
        let messages = self.store.to_device_messages(user_id, device_id, after, until, limit).await?;
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
