//! Receipts, read markers, typing and account data: small writes that wake syncs.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use myelin_core::{MatrixError, MatrixResult, time::now_ms};
use myelin_storage::ReceiptRecord;
use serde_json::Value;

use crate::Services;

pub const IGNORED_USERS_TYPE: &str = "m.ignored_user_list";

/// Each user's `m.ignored_user_list`, cached; dropped when the user changes it.
#[derive(Default)]
pub struct IgnoredUsersCache {
    users: Mutex<HashMap<String, Arc<HashSet<String>>>>,
}

impl IgnoredUsersCache {
    pub fn invalidate(&self, user_id: &str) {
        if let Ok(mut users) = self.users.lock() {
            users.remove(user_id);
        }
    }

    pub fn clear(&self) {
        if let Ok(mut users) = self.users.lock() {
            users.clear();
        }
    }
}

/// Longest typing timeout honoured.
const MAX_TYPING_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest account data content accepted.
const MAX_ACCOUNT_DATA_BYTES: usize = 65_536;

impl Services {
    async fn joined_user_ids(&self, room_id: &str) -> MatrixResult<Vec<String>> {
        Ok(self.store.room_members(room_id, Some("join")).await?.into_iter().map(|m| m.user_id).collect())
    }

    async fn require_joined(&self, user_id: &str, room_id: &str) -> MatrixResult<()> {
        match self.store.membership(room_id, user_id).await? {
            Some(m) if m.membership == "join" => Ok(()),
            _ => Err(MatrixError::forbidden("You are not joined to this room")),
        }
    }

    pub async fn send_receipt(
        &self,
        user_id: &str,
        room_id: &str,
        receipt_type: &str,
        event_id: &str,
        thread_id: Option<String>,
    ) -> MatrixResult<()> {
        if !matches!(receipt_type, "m.read" | "m.read.private" | "m.fully_read") {
            return Err(MatrixError::invalid_param(format!("Unknown receipt type {receipt_type:?}")));
        }
        self.require_joined(user_id, room_id).await?;
        let event = self
            .store
            .get_event(event_id)
            .await?
            .filter(|e| e.room_id == room_id)
            .ok_or_else(|| MatrixError::not_found("Event not found"))?;
        if receipt_type == "m.fully_read" {
            return self.set_fully_read(user_id, room_id, event_id).await;
        }
        let thread_id = thread_id.unwrap_or_default();
        if thread_id.len() > 255 {
            return Err(MatrixError::invalid_param("thread_id is too long"));
        }
        let receipt = ReceiptRecord {
            room_id: room_id.to_owned(),
            receipt_type: receipt_type.to_owned(),
            user_id: user_id.to_owned(),
            thread_id,
            event_id: event_id.to_owned(),
            ts: now_ms(),
        };
        if self.store.put_receipt(receipt, event.stream_pos).await?.is_some() {
            if receipt_type == "m.read.private" {
                self.notifier.notify_users(&[user_id.to_owned()]);
            } else {
                self.notifier.notify_users(&self.joined_user_ids(room_id).await?);
            }
        }
        Ok(())
    }

    pub async fn set_fully_read(&self, user_id: &str, room_id: &str, event_id: &str) -> MatrixResult<()> {
        let content = serde_json::json!({ "event_id": event_id }).to_string();
        self.store.put_account_data(user_id, room_id, "m.fully_read", content).await?;
        self.notifier.notify_users(&[user_id.to_owned()]);
        Ok(())
    }

    pub async fn set_typing(
        &self,
        user_id: &str,
        room_id: &str,
        typing: bool,
        timeout_ms: Option<u64>,
    ) -> MatrixResult<()> {
        self.require_joined(user_id, room_id).await?;
        let timeout = typing.then(|| Duration::from_millis(timeout_ms.unwrap_or(30_000)).min(MAX_TYPING_TIMEOUT));
        if let Some(serial) = self.typing.set(room_id, user_id, timeout) {
            self.store.broadcast(myelin_storage::Signal::Typing {
                room_id: room_id.to_owned(),
                user_id: user_id.to_owned(),
                timeout_ms: timeout.map(|t| t.as_millis() as u64),
                serial,
            });
            self.notifier.notify_users(&self.joined_user_ids(room_id).await?);
        }
        Ok(())
    }

    /// Stores account data (global when `room_id` is empty) and wakes the user's syncs.
    pub async fn put_account_data(
        &self,
        user_id: &str,
        room_id: &str,
        data_type: &str,
        content: Value,
    ) -> MatrixResult<()> {
        if !content.is_object() {
            return Err(MatrixError::bad_json("Account data must be a JSON object"));
        }
        if data_type.is_empty() || data_type.len() > 255 {
            return Err(MatrixError::invalid_param("Invalid account data type"));
        }
        if data_type == crate::push::PUSH_RULES_TYPE {
            return Err(MatrixError::bad_json("Use the push rules API to change push rules").with_status(400));
        }
        let json = content.to_string();
        if json.len() > MAX_ACCOUNT_DATA_BYTES {
            return Err(MatrixError::new(myelin_core::ErrorCode::TooLarge, "Account data is too large"));
        }
        if !room_id.is_empty() && self.store.get_room(room_id).await?.is_none() {
            return Err(MatrixError::not_found("Unknown room"));
        }
        self.store.put_account_data(user_id, room_id, data_type, json).await?;
        if data_type == IGNORED_USERS_TYPE {
            self.ignored.invalidate(user_id);
            self.store.broadcast(myelin_storage::Signal::AccountData { user_id: user_id.to_owned() });
        }
        self.notifier.notify_users(&[user_id.to_owned()]);
        Ok(())
    }

    /// The users `user_id` ignores: their messages and invites are hidden from them.
    pub async fn ignored_users(&self, user_id: &str) -> MatrixResult<Arc<HashSet<String>>> {
        if let Some(set) = self.ignored.users.lock().ok().and_then(|u| u.get(user_id).cloned()) {
            return Ok(set);
        }
        let stored = self.store.get_account_data(user_id, "", IGNORED_USERS_TYPE).await?;
        let set: HashSet<String> = stored
            .and_then(|json| serde_json::from_str::<Value>(&json).ok())
            .and_then(|v| v.get("ignored_users").and_then(Value::as_object).map(|o| o.keys().cloned().collect()))
            .unwrap_or_default();
        let set = Arc::new(set);
        if let Ok(mut users) = self.ignored.users.lock() {
            if users.len() > 10_000 {
                users.clear();
            }
            users.insert(user_id.to_owned(), set.clone());
        }
        Ok(set)
    }

    pub async fn get_account_data(&self, user_id: &str, room_id: &str, data_type: &str) -> MatrixResult<Value> {
        if data_type == crate::push::PUSH_RULES_TYPE && room_id.is_empty() {
            let rules = self.push.ruleset(self.store.as_ref(), user_id).await?;
            return Ok(serde_json::json!({ "global": *rules }));
        }
        let json = self
            .store
            .get_account_data(user_id, room_id, data_type)
            .await?
            .ok_or_else(|| MatrixError::not_found("Account data not found"))?;
        serde_json::from_str(&json).map_err(|e| MatrixError::internal(e.to_string()))
    }
}
