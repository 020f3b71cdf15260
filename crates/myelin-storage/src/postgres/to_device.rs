use async_trait::async_trait;

use super::PgStore;
use crate::{StorageResult, StreamPos, ToDeviceMessage, ToDeviceRepo};

#[async_trait]
impl ToDeviceRepo for PgStore {
    async fn send_to_device(
        &self,
        sender: &str,
        sender_device: &str,
        txn_id: &str,
        event_type: &str,
        messages: Vec<(String, String, String)>,
    ) -> StorageResult<bool> {
        let (sender, sender_device, txn_id, event_type) =
            (sender.to_owned(), sender_device.to_owned(), txn_id.to_owned(), event_type.to_owned());
        self.writer
            .write(move |c, positions| {
                Box::pin(async move {
                    let now = myelin_core::time::now_ms() as i64;
                    let fresh = c
                        .execute(
                            "INSERT INTO to_device_txns (user_id, device_id, txn_id, created_ms) VALUES ($1, $2, $3, $4)
                             ON CONFLICT DO NOTHING",
                            &[&sender, &sender_device, &txn_id, &now],
                        )
                        .await?
                        == 1;
                    if !fresh {
                        return Ok(false);
                    }
                    let users: Vec<&str> = messages.iter().map(|m| m.0.as_str()).collect();
                    let devices: Vec<&str> = messages.iter().map(|m| m.1.as_str()).collect();
                    let contents: Vec<&str> = messages.iter().map(|m| m.2.as_str()).collect();
                    let stream_positions: Vec<i64> = messages.iter().map(|_| positions.allocate()).collect();
                    c.execute(
                        "INSERT INTO to_device_inbox (user_id, device_id, stream_pos, sender, event_type, content)
                         SELECT u, d, p, $1, $2, m FROM UNNEST($3::TEXT[], $4::TEXT[], $5::BIGINT[], $6::TEXT[]) AS x(u, d, p, m)",
                        &[&sender, &event_type, &users, &devices, &stream_positions, &contents],
                    )
                    .await?;
                    Ok(true)
                })
            })
            .await
    }

    async fn to_device_messages(
        &self,
        user_id: &str,
        device_id: &str,
        after: StreamPos,
        until: StreamPos,
        limit: usize,
    ) -> StorageResult<Vec<ToDeviceMessage>> {
        let mut c = self.pool.get().await?;
        Ok(c.query(
            "SELECT stream_pos, sender, event_type, content FROM to_device_inbox
             WHERE user_id = $1 AND device_id = $2 AND stream_pos > $3 AND stream_pos <= $4
             ORDER BY stream_pos LIMIT $5",
            &[&user_id, &device_id, &after, &until, &(limit as i64)],
        )
        .await?
        .iter()
        .map(|r| ToDeviceMessage { stream_pos: r.get(0), sender: r.get(1), event_type: r.get(2), content: r.get(3) })
        .collect())
    }

    async fn delete_to_device_messages(&self, user_id: &str, device_id: &str, up_to: StreamPos) -> StorageResult<()> {
        let mut c = self.pool.get().await?;
        c.execute(
            "DELETE FROM to_device_inbox WHERE user_id = $1 AND device_id = $2 AND stream_pos <= $3",
            &[&user_id, &device_id, &up_to],
        )
        .await?;
        Ok(())
    }
}
