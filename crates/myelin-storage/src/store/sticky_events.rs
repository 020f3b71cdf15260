//! Sticky events (MSC4354).

use async_trait::async_trait;
use myelin_core::{StreamPos, types::OwnedRoomId};

use crate::{Database, StickyEvent, StickyEventRepo, StorageResult};

#[async_trait]
impl StickyEventRepo for Database {
    async fn sticky_events_in(
        &self,
        rooms: &[OwnedRoomId],
        upto: StreamPos,
        now_ms: u64,
    ) -> StorageResult<Vec<StickyEvent>> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let rooms = rooms.to_vec();
        self.read(move |c| {
            Box::pin(async move {
                c.query(
                    "SELECT room_id, event_id, stream_pos, expires_ms FROM sticky_events
                     WHERE room_id = ANY($1) AND expires_ms > $2 AND stream_pos <= $3
                     ORDER BY stream_pos",
                    &[&rooms, &now_ms, &upto],
                    |r| {
                        Ok(StickyEvent {
                            room_id: r.get(0)?,
                            event_id: r.get(1)?,
                            stream_pos: r.get(2)?,
                            expires_ms: r.get(3)?,
                        })
                    },
                )
                .await
            })
        })
        .await
    }

    async fn delete_expired_sticky_events(&self, now_ms: u64) -> StorageResult<u64> {
        self.transaction(move |c| {
            Box::pin(async move { c.execute("DELETE FROM sticky_events WHERE expires_ms <= $1", &[&now_ms]).await })
        })
        .await
    }
}
