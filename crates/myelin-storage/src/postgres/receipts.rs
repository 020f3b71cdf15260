use async_trait::async_trait;

use super::{PgStore, to_u64};
use crate::{ReceiptRecord, ReceiptRepo, StorageResult, StreamPos};

#[async_trait]
impl ReceiptRepo for PgStore {
    async fn put_receipt(&self, receipt: ReceiptRecord, event_pos: StreamPos) -> StorageResult<Option<StreamPos>> {
        self.writer
            .write(move |c, positions| {
                Box::pin(async move {
                    let existing: Option<i64> = c
                        .query_opt(
                            "SELECT event_pos FROM receipts
                             WHERE room_id = $1 AND receipt_type = $2 AND user_id = $3 AND thread_id = $4",
                            &[&receipt.room_id, &receipt.receipt_type, &receipt.user_id, &receipt.thread_id],
                        )
                        .await?
                        .map(|r| r.get(0));
                    if existing.is_some_and(|old| old >= event_pos) {
                        return Ok(None);
                    }
                    let pos = positions.allocate();
                    c.execute(
                        "INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, event_pos, ts, stream_pos)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                         ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE SET event_id = excluded.event_id,
                             event_pos = excluded.event_pos, ts = excluded.ts, stream_pos = excluded.stream_pos",
                        &[
                            &receipt.room_id,
                            &receipt.receipt_type,
                            &receipt.user_id,
                            &receipt.thread_id,
                            &receipt.event_id,
                            &event_pos,
                            &(receipt.ts as i64),
                            &pos,
                        ],
                    )
                    .await?;
                    Ok(Some(pos))
                })
            })
            .await
    }

    async fn receipts_since(
        &self,
        room_ids: &[String],
        since: StreamPos,
        until: StreamPos,
    ) -> StorageResult<Vec<ReceiptRecord>> {
        let mut c = self.pool.get().await?;
        Ok(c.query(
            "SELECT room_id, receipt_type, user_id, thread_id, event_id, ts FROM receipts
             WHERE room_id = ANY($1) AND stream_pos > $2 AND stream_pos <= $3",
            &[&room_ids, &since, &until],
        )
        .await?
        .iter()
        .map(|r| ReceiptRecord {
            room_id: r.get(0),
            receipt_type: r.get(1),
            user_id: r.get(2),
            thread_id: r.get(3),
            event_id: r.get(4),
            ts: to_u64(r.get(5)),
        })
        .collect())
    }

    async fn unread_counts(&self, user_id: &str, room_id: &str, until: StreamPos) -> StorageResult<(u64, u64)> {
        let mut c = self.pool.get().await?;
        unread_counts(&mut c, user_id, room_id, until).await
    }
}

/// (notifications, highlights) for the user in the room after their newest read receipt, up to
/// `until` (also read for a whole sliding sync window in `sliding_sync.rs`).
pub(super) async fn unread_counts(
    c: &mut super::conn::PgConn,
    user_id: &str,
    room_id: &str,
    until: StreamPos,
) -> StorageResult<(u64, u64)> {
    let row = c.query_one(&unread_counts_sql("$1", "$2", "$3"), &[&user_id, &room_id, &until]).await?;
    Ok((to_u64(row.get(0)), to_u64(row.get(1))))
}

/// `(notifications, highlights)` of the user in the room after their newest read receipt, up to
/// `until`, as one row; the arguments are SQL expressions (parameters or outer columns).
pub(super) fn unread_counts_sql(user_id: &str, room_id: &str, until: &str) -> String {
    format!(
        "SELECT COUNT(*) AS notifications, COALESCE(SUM(highlight), 0)::BIGINT AS highlights FROM event_push_actions
         WHERE user_id = {user_id} AND room_id = {room_id} AND stream_pos <= {until}
           AND stream_pos > (SELECT COALESCE(MAX(event_pos), 0) FROM receipts WHERE room_id = {room_id}
                             AND user_id = {user_id} AND receipt_type IN ('m.read', 'm.read.private')
                             AND thread_id IN ('', 'main'))"
    )
}
