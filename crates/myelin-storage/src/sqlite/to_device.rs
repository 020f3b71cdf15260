use async_trait::async_trait;
use rusqlite::params;

use super::SqliteStore;
use crate::{StorageResult, StreamPos, ToDeviceMessage, ToDeviceRepo};

#[async_trait]
impl ToDeviceRepo for SqliteStore {
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
            .write(move |conn, positions| {
                let fresh = conn.execute(
                    "INSERT INTO to_device_txns (user_id, device_id, txn_id, created_ms) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT DO NOTHING",
                    params![sender, sender_device, txn_id, myelin_core::time::now_ms() as i64],
                )? == 1;
                if !fresh {
                    return Ok(false);
                }
                let mut insert = conn.prepare_cached(
                    "INSERT INTO to_device_inbox (user_id, device_id, stream_pos, sender, event_type, content)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for (user, device, content) in messages {
                    insert.execute(params![user, device, positions.allocate(), sender, event_type, content])?;
                }
                Ok(true)
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
        let (user, device) = (user_id.to_owned(), device_id.to_owned());
        self.readers
            .read(move |conn| {
                // The limit is part of the SQL: a bound LIMIT makes SQLite re-prepare each time.
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT stream_pos, sender, event_type, content FROM to_device_inbox
                     WHERE user_id = ?1 AND device_id = ?2 AND stream_pos > ?3 AND stream_pos <= ?4
                     ORDER BY stream_pos LIMIT {limit}"
                ))?;
                let rows = stmt.query_map(params![user, device, after, until], |r| {
                    Ok(ToDeviceMessage {
                        stream_pos: r.get(0)?,
                        sender: r.get(1)?,
                        event_type: r.get(2)?,
                        content: r.get(3)?,
                    })
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn delete_to_device_messages(&self, user_id: &str, device_id: &str, up_to: StreamPos) -> StorageResult<()> {
        let (user, device) = (user_id.to_owned(), device_id.to_owned());
        self.writer
            .write(move |conn, _| {
                conn.prepare_cached(
                    "DELETE FROM to_device_inbox WHERE user_id = ?1 AND device_id = ?2 AND stream_pos <= ?3",
                )?
                .execute(params![user, device, up_to])?;
                Ok(())
            })
            .await
    }
}
