use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::{ReceiptRecord, ReceiptRepo, StorageResult, StreamPos};

#[async_trait]
impl ReceiptRepo for SqliteStore {
    async fn put_receipt(&self, receipt: ReceiptRecord, event_pos: StreamPos) -> StorageResult<Option<StreamPos>> {
        self.writer
            .write(move |conn, positions| {
                let existing: Option<i64> = conn
                    .prepare_cached(
                        "SELECT event_pos FROM receipts WHERE room_id = ?1 AND receipt_type = ?2 AND user_id = ?3 AND thread_id = ?4",
                    )?
                    .query_row([&receipt.room_id, &receipt.receipt_type, &receipt.user_id, &receipt.thread_id], |r| r.get(0))
                    .optional()?;
                if existing.is_some_and(|old| old >= event_pos) {
                    return Ok(None);
                }
                let pos = positions.allocate();
                conn.prepare_cached(
                    "INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, event_pos, ts, stream_pos)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE SET event_id = excluded.event_id,
                         event_pos = excluded.event_pos, ts = excluded.ts, stream_pos = excluded.stream_pos",
                )?
                .execute(params![
                    receipt.room_id,
                    receipt.receipt_type,
                    receipt.user_id,
                    receipt.thread_id,
                    receipt.event_id,
                    event_pos,
                    receipt.ts as i64,
                    pos
                ])?;
                Ok(Some(pos))
            })
            .await
    }

    async fn receipts_since(
        &self,
        room_ids: &[String],
        since: StreamPos,
        until: StreamPos,
    ) -> StorageResult<Vec<ReceiptRecord>> {
        let room_ids = room_ids.to_vec();
        self.readers
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT room_id, receipt_type, user_id, thread_id, event_id, ts FROM receipts
                     WHERE room_id = ?1 AND stream_pos > ?2 AND stream_pos <= ?3",
                )?;
                let mut out = Vec::new();
                for room_id in room_ids {
                    let rows = stmt.query_map(params![room_id, since, until], |r| {
                        Ok(ReceiptRecord {
                            room_id: r.get(0)?,
                            receipt_type: r.get(1)?,
                            user_id: r.get(2)?,
                            thread_id: r.get(3)?,
                            event_id: r.get(4)?,
                            ts: r.get::<_, i64>(5)?.max(0) as u64,
                        })
                    })?;
                    for row in rows {
                        out.push(row?);
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn unread_counts(&self, user_id: &str, room_id: &str, until: StreamPos) -> StorageResult<(u64, u64)> {
        let (user_id, room_id) = (user_id.to_owned(), room_id.to_owned());
        self.readers.read(move |conn| Ok(unread_counts(conn, &user_id, &room_id, until)?)).await
    }
}

/// (notifications, highlights) for the user in the room after their newest read receipt, up to
/// `until` (also read for a whole sliding sync window in `sliding_sync.rs`).
pub(super) fn unread_counts(
    conn: &rusqlite::Connection,
    user_id: &str,
    room_id: &str,
    until: StreamPos,
) -> rusqlite::Result<(u64, u64)> {
    let (notify, highlight): (i64, i64) = conn
        .prepare_cached(
            "SELECT COUNT(*), COALESCE(SUM(highlight), 0) FROM event_push_actions
             WHERE user_id = ?1 AND room_id = ?2 AND stream_pos <= ?3
               AND stream_pos > (SELECT COALESCE(MAX(event_pos), 0) FROM receipts WHERE room_id = ?2 AND user_id = ?1
                                 AND receipt_type IN ('m.read', 'm.read.private') AND thread_id IN ('', 'main'))",
        )?
        .query_row(params![user_id, room_id, until], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok((notify.max(0) as u64, highlight.max(0) as u64))
}
