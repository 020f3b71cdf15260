//! Dehydrated devices (MSC3814): a device a user leaves on the server, without access tokens,
//! that keeps receiving room keys while every real device is offline; a new login fetches its
//! encrypted state and its to-device events and rehydrates it.

use myelin_core::{
    ErrorCode, MatrixError, MatrixResult, StreamPos,
    types::{DeviceId, OwnedDeviceId},
};
use myelin_storage::{KeyUpload, KeyUploadOutcome, NewDehydratedDevice};
use serde_json::{Value, json};

use super::keys::{DeviceChange, checked_device_keys, parse_keys};
use crate::{Services, accounts::Requester};

/// To-device events per page of `/dehydrated_device/{id}/events`.
const EVENTS_PER_PAGE: usize = 100;

impl Services {
    /// `PUT /dehydrated_device`: replaces the user's dehydrated device.
    pub async fn put_dehydrated_device(&self, r: &Requester, body: &Value) -> MatrixResult<Value> {
        let device_id = body.get("device_id").and_then(Value::as_str).filter(|d| !d.is_empty() && d.len() <= 255);
        let (Some(device_id), Some(device_data)) = (device_id, body.get("device_data").filter(|d| d.is_object()))
        else {
            return Err(MatrixError::bad_json("device_id (string) and device_data (object) are required"));
        };
        let keys = body.get("device_keys").ok_or_else(|| MatrixError::missing_param("device_keys is required"))?;
        let device_id = OwnedDeviceId::from(device_id);
        let (device_keys, public) = checked_device_keys(keys, &r.user_id, &device_id)?;
        let signing = Some((format!("ed25519:{device_id}"), public));
        let signing = signing.as_ref().map(|(id, k)| (id.as_str(), k.as_str()));
        let mut upload = KeyUpload { device_keys: Some(device_keys), ..Default::default() };
        if let Some(otks) = body.get("one_time_keys") {
            upload.one_time_keys = parse_keys(otks, "one_time_keys", &r.user_id, signing)?;
        }
        if let Some(fallback) = body.get("fallback_keys") {
            upload.fallback_keys = parse_keys(fallback, "fallback_keys", &r.user_id, signing)?;
        }
        let name = body.get("initial_device_display_name").and_then(Value::as_str).map(str::to_owned);
        let new = NewDehydratedDevice {
            user_id: r.user_id.clone(),
            device_id: device_id.clone(),
            device_data: device_data.to_string(),
            display_name: name,
            keys: upload,
            now_ms: self.clock.now_ms(),
        };
        match self.store.put_dehydrated_device(new).await {
            Ok(KeyUploadOutcome::Stored { .. }) => {}
            Ok(KeyUploadOutcome::Conflict { key_id }) => {
                return Err(MatrixError::invalid_param(format!("Conflict storing the dehydrated device ({key_id})")));
            }
            // The device id is taken by one of the user's ordinary devices.
            Err(err) if err.is_conflict() => {
                return Err(MatrixError::invalid_param(format!("Device id {device_id} is already in use")));
            }
            Err(err) => return Err(err.into()),
        }
        self.announce_device_change(&r.user_id, DeviceChange::Devices(vec![device_id.clone()])).await?;
        Ok(json!({ "device_id": device_id }))
    }

    pub async fn dehydrated_device(&self, r: &Requester) -> MatrixResult<Value> {
        let (device_id, data) = self
            .store
            .dehydrated_device(&r.user_id)
            .await?
            .ok_or_else(|| MatrixError::not_found("No dehydrated device"))?;
        Ok(
            json!({ "device_id": device_id, "device_data": serde_json::from_str::<Value>(&data).unwrap_or_else(|_| json!({})) }),
        )
    }

    pub async fn delete_dehydrated_device(&self, r: &Requester) -> MatrixResult<Value> {
        let device_id = self
            .store
            .delete_dehydrated_device(&r.user_id)
            .await?
            .ok_or_else(|| MatrixError::not_found("No dehydrated device"))?;
        self.announce_device_change(&r.user_id, DeviceChange::Devices(vec![device_id.clone()])).await?;
        Ok(json!({ "device_id": device_id }))
    }

    /// The dehydrated device's to-device events after `next_batch`, a page at a time; nothing is
    /// deleted (a rehydrating client may retry), and `next_batch` is present only if more remain.
    pub async fn dehydrated_device_events(
        &self,
        r: &Requester,
        device_id: &DeviceId,
        next_batch: Option<&str>,
    ) -> MatrixResult<Value> {
        let current = self.store.dehydrated_device(&r.user_id).await?;
        if current.as_ref().is_none_or(|(id, _)| id != device_id) {
            return Err(MatrixError::forbidden("Not your dehydrated device"));
        }
        let after = match next_batch {
            Some(token) => token
                .parse::<StreamPos>()
                .ok()
                .filter(|p| *p >= StreamPos::ZERO)
                .ok_or_else(|| MatrixError::new(ErrorCode::InvalidParam, "Invalid next_batch"))?,
            None => StreamPos::ZERO,
        };
        let head = self.store.refresh_stream_head().await?;
        let messages = self.store.to_device_messages(&r.user_id, device_id, after, head, EVENTS_PER_PAGE).await?;
        // Always a `next_batch`, also on the last page and on an empty one: clients (matrix-js-sdk,
        // matrix-sdk-crypto) loop "until no events, passing the previous next_batch", so a page
        // without one would send them back to the start forever.
        let next = messages.last().map_or(after, |m| m.stream_pos).to_string();
        let events: Vec<Value> = messages
            .into_iter()
            .map(|m| {
                let content = serde_json::from_str::<Value>(&m.content).unwrap_or_else(|_| json!({}));
                json!({ "sender": m.sender, "type": m.event_type, "content": content })
            })
            .collect();
        Ok(json!({ "events": events, "next_batch": next }))
    }
}
