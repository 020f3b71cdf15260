//! Presence rows: changes others see take a stream position; activity only moves times.

use async_trait::async_trait;
use myelin_core::{
    Membership,
    types::{OwnedUserId, UserId},
};

use crate::{
    Database, PresenceRecord, PresenceRepo, StorageResult, StreamPos,
    db::{Change, Conn, Row},
};

const COLUMNS: &str = "user_id, state, status_msg, last_active_ms, alive_until_ms, local, stream_pos";

fn record(r: &Row<'_>) -> StorageResult<PresenceRecord> {
    Ok(PresenceRecord {
        user_id: r.get(0)?,
        state: r.get(1)?,
        status_msg: r.get(2)?,
        last_active_ms: r.get(3)?,
        alive_until_ms: r.get(4)?,
        local: r.get(5)?,
        stream_pos: r.get(6)?,
    })
}

async fn upsert(c: &mut Conn<'_>, r: &PresenceRecord, pos: StreamPos) -> StorageResult<()> {
    c.execute(
        "INSERT INTO presence (user_id, state, status_msg, last_active_ms, alive_until_ms, local, stream_pos)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, status_msg = excluded.status_msg,
             last_active_ms = excluded.last_active_ms, alive_until_ms = excluded.alive_until_ms,
             local = excluded.local, stream_pos = excluded.stream_pos",
        &[&r.user_id, &r.state, &r.status_msg, &r.last_active_ms, &r.alive_until_ms, &r.local, &pos],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl PresenceRepo for Database {
    async fn put_presence(&self, record: PresenceRecord) -> StorageResult<StreamPos> {
        self.write(move |c, positions| {
            Box::pin(async move {
                let pos = positions.next(Change::Presence).await?;
                upsert(c, &record, pos).await?;
                Ok(pos)
            })
        })
        .await
    }

    async fn get_presence(&self, user_id: &UserId) -> StorageResult<Option<PresenceRecord>> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query_opt(&format!("SELECT {COLUMNS} FROM presence WHERE user_id = $1"), &[&user_id], record).await
            })
        })
        .await
    }

    async fn presence_of(&self, user_ids: &[OwnedUserId]) -> StorageResult<Vec<PresenceRecord>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let user_ids = user_ids.to_vec();
        self.read(move |c| {
            Box::pin(async move {
                c.query(&format!("SELECT {COLUMNS} FROM presence WHERE user_id = ANY($1)"), &[&user_ids], record).await
            })
        })
        .await
    }

    async fn presence_changes_seen_by(
        &self,
        viewer: &UserId,
        since: StreamPos,
        until: StreamPos,
        limit: usize,
    ) -> StorageResult<Vec<PresenceRecord>> {
        if !self.may_have_changed(Change::Presence, since) {
            return Ok(Vec::new());
        }
        let viewer = viewer.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query(
                    &format!(
                        "SELECT {COLUMNS} FROM presence p WHERE p.stream_pos > $1 AND p.stream_pos <= $2
                           AND (p.user_id = $3 OR EXISTS (
                               SELECT 1 FROM room_members a JOIN room_members b ON a.room_id = b.room_id
                               WHERE a.user_id = $3 AND a.membership = $4 AND b.user_id = p.user_id
                                 AND b.membership IN ($4, $5)))
                         ORDER BY p.stream_pos DESC LIMIT {limit}"
                    ),
                    &[&since, &until, &viewer, &Membership::Join, &Membership::Invite],
                    record,
                )
                .await
            })
        })
        .await
    }

    async fn touch_presence(&self, user_id: &UserId, last_active_ms: u64, alive_until_ms: u64) -> StorageResult<()> {
        let user_id = user_id.to_owned();
        // Lost with the machine at worst (not with the process): the next sync writes it again.
        self.transaction_relaxed(move |c| {
            Box::pin(async move {
                c.execute(
                    "UPDATE presence SET
                         last_active_ms = CASE WHEN last_active_ms < $2 THEN $2 ELSE last_active_ms END,
                         alive_until_ms = CASE WHEN alive_until_ms < $3 THEN $3 ELSE alive_until_ms END
                     WHERE user_id = $1",
                    &[&user_id, &last_active_ms, &alive_until_ms],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn expire_presence(
        &self,
        idle_before_ms: u64,
        now_ms: u64,
        limit: usize,
    ) -> StorageResult<Vec<PresenceRecord>> {
        self.write(move |c, positions| {
            Box::pin(async move {
                // One sweeper at a time across processes: each change is decided once.
                c.lock_until_commit("presence timers").await?;
                let stale = c
                    .query(
                        &format!(
                            "SELECT {COLUMNS} FROM presence
                             WHERE (state <> 'offline' AND alive_until_ms < $2)
                                OR (state = 'online' AND local = 1 AND last_active_ms < $1)
                             ORDER BY alive_until_ms LIMIT {limit}"
                        ),
                        &[&idle_before_ms, &now_ms],
                        record,
                    )
                    .await?;
                let mut changed = Vec::with_capacity(stale.len());
                for mut row in stale {
                    row.state = if row.alive_until_ms < now_ms { "offline" } else { "unavailable" }.to_owned();
                    let pos = positions.next(Change::Presence).await?;
                    upsert(c, &row, pos).await?;
                    row.stream_pos = pos;
                    changed.push(row);
                }
                Ok(changed)
            })
        })
        .await
    }
}
