//! Per-device inboxes of to-device messages.

use async_trait::async_trait;

use myelin_core::types::{DeviceId, UserId};

use crate::{
    Database, StorageResult, StreamPos, ToDeviceMessage, ToDeviceRepo, ToDeviceSend,
    db::{Change, ToValue},
};

#[async_trait]
impl ToDeviceRepo for Database {
    async fn send_to_device(&self, send: ToDeviceSend) -> StorageResult<bool> {
        let ToDeviceSend { sender, sender_device, txn_id, event_type, messages, now_ms } = send;
        self.write(move |c, positions| {
            Box::pin(async move {
                let fresh = c
                    .execute(
                        "INSERT INTO to_device_txns (user_id, device_id, txn_id, created_ms) VALUES ($1, $2, $3, $4)
                         ON CONFLICT DO NOTHING",
                        &[&sender, &sender_device, &txn_id, &now_ms],
                    )
                    .await?
                    == 1;
                if !fresh {
                    return Ok(false);
                }
                let mut stream_positions = Vec::with_capacity(messages.len());
                for _ in &messages {
                    stream_positions.push(positions.next(Change::ToDevice).await?);
                }
                let rows: Vec<Vec<&dyn ToValue>> = messages
                    .iter()
                    .zip(&stream_positions)
                    .map(|((user, device, content), pos)| -> Vec<&dyn ToValue> {
                        vec![user, device, pos, &sender, &event_type, content]
                    })
                    .collect();
                c.insert_rows(
                    "INSERT INTO to_device_inbox (user_id, device_id, stream_pos, sender, event_type, content)",
                    &rows,
                )
                .await?;
                Ok(true)
            })
        })
        .await
    }

    async fn to_device_messages(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        after: StreamPos,
        until: StreamPos,
        limit: usize,
    ) -> StorageResult<Vec<ToDeviceMessage>> {
        if !self.may_have_changed(Change::ToDevice, after) {
            return Ok(Vec::new());
        }
        let (user, device) = (user_id.to_owned(), device_id.to_owned());
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT stream_pos, sender, event_type, content FROM to_device_inbox
                     WHERE user_id = $1 AND device_id = $2 AND stream_pos > $3 AND stream_pos <= $4
                     ORDER BY stream_pos LIMIT {limit}"
                );
                c.query(&sql, &[&user, &device, &after, &until], |r| {
                    Ok(ToDeviceMessage {
                        stream_pos: r.get(0)?,
                        sender: r.get(1)?,
                        event_type: r.get(2)?,
                        content: r.get(3)?,
                    })
                })
                .await
            })
        })
        .await
    }

    async fn delete_to_device_messages(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        up_to: StreamPos,
    ) -> StorageResult<()> {
        let (user, device) = (user_id.to_owned(), device_id.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute(
                    "DELETE FROM to_device_inbox WHERE user_id = $1 AND device_id = $2 AND stream_pos <= $3",
                    &[&user, &device, &up_to],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }
}
