//! EDUs: typing notifications and read receipts, to and from the other servers in a room; the
//! end-to-end encryption EDUs are handed to `e2ee.rs`.

use std::time::Duration;

use myelin_core::{
    MatrixError, MatrixResult, Membership,
    types::{EventId, OwnedServerName, RoomId, ServerName, UserId},
};
use myelin_storage::ReceiptRecord;
use ruma::events::receipt::{ReceiptThread, ReceiptType};
use serde_json::{Value, json};

use crate::Services;

/// How long a remote user shows as typing (the EDU has no timeout; servers resend it).
const REMOTE_TYPING_TIMEOUT: Duration = Duration::from_secs(30);

/// The `m.receipt` EDU for one receipt.
pub(crate) fn receipt_edu(receipt: &ReceiptRecord) -> Value {
    let mut data = json!({ "ts": receipt.ts });
    if let Some(thread) = receipt.thread.as_str() {
        data["thread_id"] = thread.into();
    }
    json!({
        "edu_type": "m.receipt",
        "content": {
            (receipt.room_id.as_str()): {
                (receipt.receipt_type.as_str()): {
                    (receipt.user_id.as_str()): { "event_ids": [receipt.event_id], "data": data }
                }
            }
        }
    })
}

impl Services {
    /// Queues an EDU about a room for every other server with members in it.
    pub(crate) async fn send_room_edu(&self, room_id: &RoomId, edu: &Value) -> MatrixResult<()> {
        let destinations: Vec<OwnedServerName> =
            self.servers_in_room(room_id).await?.into_iter().filter(|s| *s != self.server_name).collect();
        if destinations.is_empty() {
            return Ok(());
        }
        self.store.queue_edu(&destinations, &edu.to_string(), self.now_ms()).await?;
        self.wake_senders(&destinations).await
    }

    pub(crate) async fn send_typing_edu(&self, room_id: &RoomId, user_id: &UserId, typing: bool) -> MatrixResult<()> {
        let edu = json!({
            "edu_type": "m.typing",
            "content": { "room_id": room_id, "user_id": user_id, "typing": typing },
        });
        self.send_room_edu(room_id, &edu).await
    }

    /// One EDU of a transaction from `origin`. Unknown types are ignored.
    pub(crate) async fn receive_edu(&self, origin: &ServerName, edu: &Value) -> MatrixResult<()> {
        let content = edu.get("content").unwrap_or(&Value::Null);
        match edu.get("edu_type").and_then(Value::as_str) {
            Some("m.typing") => {
                let room_id = parse_room(content.get("room_id"))?;
                self.check_server_acl(origin, &room_id).await?;
                let user_id = self.remote_member(origin, content.get("user_id"), &room_id).await?;
                let typing = content.get("typing").and_then(Value::as_bool).unwrap_or(false);
                self.apply_typing(&room_id, &user_id, typing.then_some(REMOTE_TYPING_TIMEOUT)).await?;
                Ok(())
            }
            Some("m.receipt") => {
                let Some(rooms) = content.as_object() else { return Ok(()) };
                for (room_id, types) in rooms {
                    let room_id = parse_room(Some(&Value::String(room_id.clone())))?;
                    if self.check_server_acl(origin, &room_id).await.is_err() {
                        continue;
                    }
                    let Some(users) = types.get(ReceiptType::Read.as_str()).and_then(Value::as_object) else {
                        continue;
                    };
                    for (user_id, receipt) in users {
                        let user_id =
                            self.remote_member(origin, Some(&Value::String(user_id.clone())), &room_id).await?;
                        self.apply_remote_receipt(&room_id, &user_id, receipt).await?;
                    }
                }
                Ok(())
            }
            Some("m.presence") => self.receive_presence_edu(origin, content).await,
            Some("m.device_list_update") => self.receive_device_list_update(origin, content).await,
            Some("m.signing_key_update") => self.receive_signing_key_update(origin, content).await,
            Some("m.direct_to_device") => self.receive_direct_to_device(origin, content).await,
            _ => Ok(()),
        }
    }

    /// A user of `origin` joined to `room_id`, or an error.
    async fn remote_member(
        &self,
        origin: &ServerName,
        user: Option<&Value>,
        room_id: &RoomId,
    ) -> MatrixResult<ruma::OwnedUserId> {
        let user_id = user
            .and_then(Value::as_str)
            .and_then(|u| UserId::parse(u).ok())
            .ok_or_else(|| MatrixError::bad_json("EDU without a valid user_id"))?;
        if user_id.server_name() != origin {
            return Err(MatrixError::forbidden("EDU about a user of another server"));
        }
        match self.store.membership(room_id, &user_id).await? {
            Some(m) if m.membership == Membership::Join => Ok(user_id),
            _ => Err(MatrixError::forbidden("EDU about a user who is not in the room")),
        }
    }

    async fn apply_remote_receipt(&self, room_id: &RoomId, user_id: &UserId, receipt: &Value) -> MatrixResult<()> {
        let Some(event_id) = receipt
            .get("event_ids")
            .and_then(Value::as_array)
            .and_then(|ids| ids.last())
            .and_then(Value::as_str)
            .and_then(|id| EventId::parse(id).ok())
        else {
            return Ok(());
        };
        let Some(event) = self.event(&event_id).await?.filter(|e| e.room_id == room_id) else { return Ok(()) };
        let data = receipt.get("data").unwrap_or(&Value::Null);
        let thread = match data.get("thread_id").and_then(Value::as_str) {
            None => ReceiptThread::Unthreaded,
            Some(t) => ReceiptThread::try_from(Some(t)).unwrap_or(ReceiptThread::Unthreaded),
        };
        let record = ReceiptRecord {
            room_id: room_id.to_owned(),
            receipt_type: ReceiptType::Read,
            user_id: user_id.to_owned(),
            thread,
            event_id,
            ts: data.get("ts").and_then(Value::as_u64).unwrap_or_else(|| self.now_ms()),
        };
        if self.store.put_receipt(record, event.stream_pos).await?.is_some() {
            self.notifier.notify_users(&self.joined_user_ids(room_id).await?);
        }
        Ok(())
    }
}

fn parse_room(value: Option<&Value>) -> MatrixResult<ruma::OwnedRoomId> {
    value
        .and_then(Value::as_str)
        .and_then(|r| RoomId::parse(r).ok())
        .ok_or_else(|| MatrixError::bad_json("EDU without a valid room_id"))
}
