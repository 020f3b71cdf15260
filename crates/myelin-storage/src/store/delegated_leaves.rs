//! MatrixRTC delegated leaves and their jobs.

use async_trait::async_trait;

use crate::{
    Database, DelegatedLeave, DelegatedLeaveRepo, StorageResult,
    db::Row,
    repo::{DELEGATED_LEAVE_JOB, delegated_leave_job_key},
};

const COLUMNS: &str = "livekit_room, livekit_identity, delay_id, user_id, connected, wait_until_ms, created_ms";

fn delegated_leave(r: &Row<'_>) -> StorageResult<DelegatedLeave> {
    let connected: i64 = r.get(4)?;
    Ok(DelegatedLeave {
        livekit_room: r.get(0)?,
        livekit_identity: r.get(1)?,
        delay_id: r.get(2)?,
        user_id: r.get(3)?,
        connected: connected != 0,
        wait_until_ms: r.get(5)?,
        created_ms: r.get(6)?,
    })
}

#[async_trait]
impl DelegatedLeaveRepo for Database {
    async fn put_delegated_leave(&self, leave: &DelegatedLeave, run_at_ms: u64) -> StorageResult<()> {
        let l = leave.clone();
        self.transaction(move |c| {
            Box::pin(async move {
                let connected = i64::from(l.connected);
                c.execute(
                    &format!(
                        "INSERT INTO delegated_leaves ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)
                         ON CONFLICT (livekit_room, livekit_identity) DO UPDATE SET delay_id = excluded.delay_id,
                           user_id = excluded.user_id, connected = excluded.connected,
                           wait_until_ms = excluded.wait_until_ms, created_ms = excluded.created_ms"
                    ),
                    &[
                        &l.livekit_room,
                        &l.livekit_identity,
                        &l.delay_id,
                        &l.user_id,
                        &connected,
                        &l.wait_until_ms,
                        &l.created_ms,
                    ],
                )
                .await?;
                let payload =
                    serde_json::json!({ "livekit_room": l.livekit_room, "livekit_identity": l.livekit_identity })
                        .to_string();
                c.execute(
                    "INSERT INTO jobs (kind, dedupe_key, payload, run_at_ms, created_ms) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (dedupe_key) DO UPDATE SET run_at_ms = excluded.run_at_ms",
                    &[
                        &DELEGATED_LEAVE_JOB,
                        &delegated_leave_job_key(&l.livekit_room, &l.livekit_identity),
                        &payload,
                        &run_at_ms,
                        &l.created_ms,
                    ],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn delegated_leave(
        &self,
        livekit_room: &str,
        livekit_identity: &str,
    ) -> StorageResult<Option<DelegatedLeave>> {
        let (room, identity) = (livekit_room.to_owned(), livekit_identity.to_owned());
        self.read(move |c| {
            Box::pin(async move {
                c.query_opt(
                    &format!(
                        "SELECT {COLUMNS} FROM delegated_leaves WHERE livekit_room = $1 AND livekit_identity = $2"
                    ),
                    &[&room, &identity],
                    delegated_leave,
                )
                .await
            })
        })
        .await
    }

    async fn mark_delegated_leave_connected(
        &self,
        livekit_room: &str,
        livekit_identity: &str,
        run_at_ms: u64,
    ) -> StorageResult<bool> {
        let (room, identity) = (livekit_room.to_owned(), livekit_identity.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                let changed = c
                    .execute(
                        "UPDATE delegated_leaves SET connected = 1 WHERE livekit_room = $1 AND livekit_identity = $2",
                        &[&room, &identity],
                    )
                    .await?;
                if changed == 0 {
                    return Ok(false);
                }
                c.execute(
                    "UPDATE jobs SET run_at_ms = $2 WHERE dedupe_key = $1 AND claimed_by IS NULL",
                    &[&delegated_leave_job_key(&room, &identity), &run_at_ms],
                )
                .await?;
                Ok(true)
            })
        })
        .await
    }

    async fn take_delegated_leave(
        &self,
        livekit_room: &str,
        livekit_identity: &str,
    ) -> StorageResult<Option<DelegatedLeave>> {
        let (room, identity) = (livekit_room.to_owned(), livekit_identity.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                let taken = c
                    .query_opt(
                        &format!(
                            "DELETE FROM delegated_leaves WHERE livekit_room = $1 AND livekit_identity = $2
                             RETURNING {COLUMNS}"
                        ),
                        &[&room, &identity],
                        delegated_leave,
                    )
                    .await?;
                if taken.is_some() {
                    c.execute(
                        "DELETE FROM jobs WHERE dedupe_key = $1 AND claimed_by IS NULL",
                        &[&delegated_leave_job_key(&room, &identity)],
                    )
                    .await?;
                }
                Ok(taken)
            })
        })
        .await
    }
}
