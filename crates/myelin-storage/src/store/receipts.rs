//! Read receipts and the unread counts derived from them.

use async_trait::async_trait;

use myelin_core::types::{OwnedEventId, OwnedRoomId, RoomId, UserId};
use ruma::events::receipt::{ReceiptThread, ReceiptType};

use crate::{
    Database, MemberUnread, ReceiptRecord, ReceiptRepo, StorageError, StorageResult, StreamPos,
    db::{Change, Row, ToValue},
};

/// A receipt's thread as stored: '' unthreaded, 'main', or the thread root's event id.
fn thread_column(thread: &ReceiptThread) -> &str {
    thread.as_str().unwrap_or("")
}

fn receipt_from_row(r: &Row<'_>) -> StorageResult<ReceiptRecord> {
    let thread: String = r.get(3)?;
    let thread = match thread.as_str() {
        "" => ReceiptThread::Unthreaded,
        "main" => ReceiptThread::Main,
        _ => ReceiptThread::Thread(
            OwnedEventId::try_from(thread).map_err(|e| StorageError::Corrupt(format!("receipt thread: {e}")))?,
        ),
    };
    Ok(ReceiptRecord {
        room_id: r.get(0)?,
        receipt_type: ReceiptType::from(r.get::<String>(1)?),
        user_id: r.get(2)?,
        thread,
        event_id: r.get(4)?,
        ts: r.get(5)?,
    })
}

/// A condition on a push action `a` of user `$1`: after their newest read receipt in its room,
/// and after they joined it (an invite's own notification does not stay unread once they joined,
/// as on Synapse, which counts from the join when there is no receipt).
pub(crate) const UNREAD_AFTER_RECEIPT: &str = "a.stream_pos > (SELECT COALESCE(MAX(r.event_pos), 0) FROM receipts r
       WHERE r.room_id = a.room_id AND r.user_id = $1
         AND r.receipt_type IN ('m.read', 'm.read.private') AND r.thread_id IN ('', 'main'))
     AND a.stream_pos > COALESCE((SELECT m.stream_pos FROM room_members m
       WHERE m.room_id = a.room_id AND m.user_id = $1 AND m.membership = 'join'), 0)";

/// `(notifications, highlights)` of user `$1` in room `$2` after their newest read receipt, up
/// to position `$3` (also read for a whole sliding sync window).
/// Notifications and highlights after the user's read marker (and join). Both counts read
/// indexes only: the primary key's, and the partial index of highlighting actions (0036), so
/// no table row is read however many messages are unread.
const UNREAD_COUNTS: &str = "SELECT
       (SELECT COUNT(*) FROM event_push_actions
        WHERE user_id = $1 AND room_id = $2 AND stream_pos <= $3 AND stream_pos > m.pos),
       (SELECT COUNT(*) FROM event_push_actions
        WHERE user_id = $1 AND room_id = $2 AND stream_pos <= $3 AND stream_pos > m.pos AND highlight = 1)
     FROM (SELECT CASE WHEN r.pos > j.pos THEN r.pos ELSE j.pos END AS pos
           FROM (SELECT COALESCE(MAX(event_pos), 0) AS pos FROM receipts WHERE room_id = $2 AND user_id = $1
                 AND receipt_type IN ('m.read', 'm.read.private') AND thread_id IN ('', 'main')) r,
                (SELECT COALESCE(MAX(stream_pos), 0) AS pos FROM room_members
                 WHERE room_id = $2 AND user_id = $1 AND membership = 'join') j) m";

/// [`UNREAD_COUNTS`] for every joined member of room `$1` at once, up to position `$2`: each
/// member's read marker is the later of their newest read receipt and their join, as there.
const ROOM_UNREAD_COUNTS: &str = "SELECT x.user_id, x.pos,
       (SELECT COUNT(*) FROM event_push_actions a
        WHERE a.user_id = x.user_id AND a.room_id = $1 AND a.stream_pos <= $2 AND a.stream_pos > x.pos
          AND a.stream_pos > $4),
       (SELECT COUNT(*) FROM event_push_actions a
        WHERE a.user_id = x.user_id AND a.room_id = $1 AND a.stream_pos <= $2 AND a.stream_pos > x.pos
          AND a.stream_pos > $4 AND a.highlight = 1)
     FROM (SELECT m.user_id,
             CASE WHEN COALESCE(r.pos, 0) > m.stream_pos THEN COALESCE(r.pos, 0) ELSE m.stream_pos END AS pos
           FROM room_members m
           LEFT JOIN (SELECT user_id, MAX(event_pos) AS pos FROM receipts WHERE room_id = $1
                        AND receipt_type IN ('m.read', 'm.read.private') AND thread_id IN ('', 'main')
                      GROUP BY user_id) r ON r.user_id = m.user_id
           WHERE m.room_id = $1 AND m.membership = 'join'
           ORDER BY m.stream_pos LIMIT $3) x";

#[async_trait]
impl ReceiptRepo for Database {
    async fn put_receipt(&self, receipt: ReceiptRecord, event_pos: StreamPos) -> StorageResult<Option<StreamPos>> {
        self.write(move |c, positions| {
            Box::pin(async move {
                // One statement: a row that does not exist yet cannot be locked, so a read and
                // then a write could let a racing older receipt win. (A receipt that loses takes
                // a position all the same: positions may have gaps.)
                let pos = positions.next(Change::Receipt).await?;
                let written = c
                    .execute(
                        "INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, event_pos, ts, stream_pos)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                         ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE SET event_id = excluded.event_id,
                             event_pos = excluded.event_pos, ts = excluded.ts, stream_pos = excluded.stream_pos
                         WHERE receipts.event_pos < excluded.event_pos",
                        &[
                            &receipt.room_id,
                            &receipt.receipt_type.as_str(),
                            &receipt.user_id,
                            &thread_column(&receipt.thread),
                            &receipt.event_id,
                            &event_pos,
                            &receipt.ts,
                            &pos,
                        ],
                    )
                    .await?;
                Ok((written == 1).then_some(pos))
            })
        })
        .await
    }

    async fn receipts_since(
        &self,
        room_ids: &[OwnedRoomId],
        since: StreamPos,
        until: StreamPos,
    ) -> StorageResult<Vec<ReceiptRecord>> {
        if room_ids.is_empty() || !self.may_have_changed(Change::Receipt, since) {
            return Ok(Vec::new());
        }
        let room_ids = room_ids.to_vec();
        self.read(move |c| {
            Box::pin(async move {
                c.query(
                    "SELECT room_id, receipt_type, user_id, thread_id, event_id, ts FROM receipts
                     WHERE room_id = ANY($1) AND stream_pos > $2 AND stream_pos <= $3",
                    &[&room_ids, &since, &until],
                    receipt_from_row,
                )
                .await
            })
        })
        .await
    }

    async fn unread_counts(&self, user_id: &UserId, room_id: &RoomId, until: StreamPos) -> StorageResult<(u64, u64)> {
        let counts = self.unread_counts_in_rooms(user_id, &[room_id.to_owned()], until).await?;
        Ok(counts.into_iter().next().unwrap_or((0, 0)))
    }

    async fn room_unread_counts(
        &self,
        room_id: &RoomId,
        until: StreamPos,
        max_members: usize,
        after: Option<StreamPos>,
    ) -> StorageResult<Vec<MemberUnread>> {
        let room = room_id.to_owned();
        let limit = i64::try_from(max_members).unwrap_or(i64::MAX);
        let after = after.unwrap_or(StreamPos::MIN);
        self.read(move |c| {
            Box::pin(async move {
                c.query(ROOM_UNREAD_COUNTS, &[&room, &until, &limit, &after], |r| {
                    Ok(MemberUnread {
                        user_id: r.get(0)?,
                        from: r.get(1)?,
                        notifications: r.get(2)?,
                        highlights: r.get(3)?,
                    })
                })
                .await
            })
        })
        .await
    }

    async fn unread_counts_in_rooms(
        &self,
        user_id: &UserId,
        room_ids: &[OwnedRoomId],
        until: StreamPos,
    ) -> StorageResult<Vec<(u64, u64)>> {
        let (user, rooms) = (user_id.to_owned(), room_ids.to_vec());
        self.read(move |c| {
            Box::pin(async move {
                let params: Vec<Vec<&dyn ToValue>> =
                    rooms.iter().map(|room| -> Vec<&dyn ToValue> { vec![&user, room, &until] }).collect();
                let counts: Vec<Vec<(u64, u64)>> =
                    c.query_each(UNREAD_COUNTS, &params, |r| Ok((r.get(0)?, r.get(1)?))).await?;
                Ok(counts.into_iter().map(|rows| rows.into_iter().next().unwrap_or((0, 0))).collect())
            })
        })
        .await
    }
}
