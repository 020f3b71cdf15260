//! Delayed events and their jobs.

use async_trait::async_trait;
use myelin_core::types::{RoomId, UserId};

use crate::{
    Database, DelayedEvent, DelayedEventRepo, Scheduled, StorageResult,
    db::{Conn, Row},
    repo::{DELAYED_EVENT_JOB, delayed_event_job_key},
};

const COLUMNS: &str = "delay_id, user_id, device_id, room_id, event_type, state_key, content, delay_ms, send_at_ms, \
                       created_ms, sticky_duration_ms, txn_id";

fn delayed_event(r: &Row<'_>) -> StorageResult<DelayedEvent> {
    Ok(DelayedEvent {
        delay_id: r.get(0)?,
        user_id: r.get(1)?,
        device_id: r.get(2)?,
        room_id: r.get(3)?,
        event_type: r.get(4)?,
        state_key: r.get(5)?,
        content: r.get(6)?,
        delay_ms: r.get(7)?,
        send_at_ms: r.get(8)?,
        created_ms: r.get(9)?,
        sticky_duration_ms: r.get(10)?,
        txn_id: r.get(11)?,
    })
}

/// Deletes the jobs of these delayed events that no process is running.
async fn delete_idle_jobs(c: &mut Conn<'_>, delay_ids: &[String]) -> StorageResult<()> {
    let keys: Vec<String> = delay_ids.iter().map(|id| delayed_event_job_key(id)).collect();
    c.execute("DELETE FROM jobs WHERE dedupe_key = ANY($1) AND claimed_by IS NULL", &[&keys]).await?;
    Ok(())
}

#[async_trait]
impl DelayedEventRepo for Database {
    async fn schedule_delayed_event(&self, event: &DelayedEvent, max_per_user: usize) -> StorageResult<Scheduled> {
        let e = event.clone();
        self.transaction(move |c| {
            Box::pin(async move {
                // Two schedules of one user in two processes must not both pass the limit.
                c.lock_until_commit(&format!("delayed_events\u{0}{}", e.user_id)).await?;
                if e.txn_id.is_some() {
                    let repeat: Option<String> = c
                        .query_opt(
                            "SELECT delay_id FROM delayed_events WHERE user_id = $1 AND device_id = $2 AND txn_id = $3",
                            &[&e.user_id, &e.device_id, &e.txn_id],
                            |r| r.get(0),
                        )
                        .await?;
                    if let Some(delay_id) = repeat {
                        return Ok(Scheduled::Repeat(delay_id));
                    }
                }
                let pending: i64 = c
                    .query_opt("SELECT COUNT(*) FROM delayed_events WHERE user_id = $1", &[&e.user_id], |r| r.get(0))
                    .await?
                    .unwrap_or(0);
                if usize::try_from(pending).unwrap_or(usize::MAX) >= max_per_user {
                    return Ok(Scheduled::LimitReached);
                }
                c.execute(
                    &format!(
                        "INSERT INTO delayed_events ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                    ),
                    &[
                        &e.delay_id,
                        &e.user_id,
                        &e.device_id,
                        &e.room_id,
                        &e.event_type,
                        &e.state_key,
                        &e.content,
                        &e.delay_ms,
                        &e.send_at_ms,
                        &e.created_ms,
                        &e.sticky_duration_ms,
                        &e.txn_id,
                    ],
                )
                .await?;
                let payload = serde_json::json!({ "delay_id": e.delay_id }).to_string();
                c.execute(
                    "INSERT INTO jobs (kind, dedupe_key, payload, run_at_ms, created_ms) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (dedupe_key) DO UPDATE SET run_at_ms = excluded.run_at_ms",
                    &[&DELAYED_EVENT_JOB, &delayed_event_job_key(&e.delay_id), &payload, &e.send_at_ms, &e.created_ms],
                )
                .await?;
                Ok(Scheduled::New)
            })
        })
        .await
    }

    async fn delayed_event(&self, delay_id: &str) -> StorageResult<Option<DelayedEvent>> {
        let delay_id = delay_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query_opt(
                    &format!("SELECT {COLUMNS} FROM delayed_events WHERE delay_id = $1"),
                    &[&delay_id],
                    delayed_event,
                )
                .await
            })
        })
        .await
    }

    async fn delayed_events_of(&self, user_id: &UserId) -> StorageResult<Vec<DelayedEvent>> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query(
                    &format!(
                        "SELECT {COLUMNS} FROM delayed_events WHERE user_id = $1 AND firing = 0
                         ORDER BY send_at_ms, delay_id"
                    ),
                    &[&user_id],
                    delayed_event,
                )
                .await
            })
        })
        .await
    }

    async fn restart_delayed_event(&self, delay_id: &str, user_id: &UserId, send_at_ms: u64) -> StorageResult<bool> {
        let (delay_id, user_id) = (delay_id.to_owned(), user_id.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                let changed = c
                    .execute(
                        "UPDATE delayed_events SET send_at_ms = $3 WHERE delay_id = $1 AND user_id = $2 AND firing = 0",
                        &[&delay_id, &user_id, &send_at_ms],
                    )
                    .await?;
                if changed == 0 {
                    return Ok(false);
                }
                // A job being run finds the new time and waits for it.
                c.execute(
                    "UPDATE jobs SET run_at_ms = $2 WHERE dedupe_key = $1 AND claimed_by IS NULL",
                    &[&delayed_event_job_key(&delay_id), &send_at_ms],
                )
                .await?;
                Ok(true)
            })
        })
        .await
    }

    async fn fire_delayed_events(&self, delay_ids: &[String], due_by_ms: u64) -> StorageResult<Vec<DelayedEvent>> {
        if delay_ids.is_empty() {
            return Ok(Vec::new());
        }
        let delay_ids = delay_ids.to_vec();
        self.transaction(move |c| {
            Box::pin(async move {
                let mut fired = c
                    .query(
                        &format!(
                            "UPDATE delayed_events SET firing = 1 WHERE delay_id = ANY($1) AND send_at_ms <= $2
                             RETURNING {COLUMNS}"
                        ),
                        &[&delay_ids, &due_by_ms],
                        delayed_event,
                    )
                    .await?;
                fired.sort_by(|a, b| (a.send_at_ms, &a.delay_id).cmp(&(b.send_at_ms, &b.delay_id)));
                Ok(fired)
            })
        })
        .await
    }

    async fn cancel_delayed_event(&self, delay_id: &str) -> StorageResult<bool> {
        let delay_id = delay_id.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                let deleted =
                    c.execute("DELETE FROM delayed_events WHERE delay_id = $1 AND firing = 0", &[&delay_id]).await?;
                if deleted > 0 {
                    delete_idle_jobs(c, std::slice::from_ref(&delay_id)).await?;
                }
                Ok(deleted > 0)
            })
        })
        .await
    }

    async fn delete_delayed_event(&self, delay_id: &str) -> StorageResult<bool> {
        let delay_id = delay_id.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                let deleted = c.execute("DELETE FROM delayed_events WHERE delay_id = $1", &[&delay_id]).await?;
                delete_idle_jobs(c, std::slice::from_ref(&delay_id)).await?;
                Ok(deleted > 0)
            })
        })
        .await
    }

    async fn cancel_delayed_state_of_others(
        &self,
        room_id: &RoomId,
        event_type: &str,
        state_key: &str,
        writer: &UserId,
    ) -> StorageResult<Vec<String>> {
        let (room_id, event_type, state_key, writer) =
            (room_id.to_owned(), event_type.to_owned(), state_key.to_owned(), writer.to_owned());
        // Most state writes have nothing to cancel: a read finds that without a write.
        let (r, t, k, w) = (room_id.clone(), event_type.clone(), state_key.clone(), writer.clone());
        let any: Option<i64> = self
            .read(move |c| {
                Box::pin(async move {
                    c.query_opt(
                        "SELECT 1 FROM delayed_events
                         WHERE room_id = $1 AND event_type = $2 AND state_key = $3 AND user_id <> $4 AND firing = 0 LIMIT 1",
                        &[&r, &t, &k, &w],
                        |row| row.get(0),
                    )
                    .await
                })
            })
            .await?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        self.transaction(move |c| {
            Box::pin(async move {
                let ids: Vec<String> = c
                    .query(
                        "DELETE FROM delayed_events
                         WHERE room_id = $1 AND event_type = $2 AND state_key = $3 AND user_id <> $4 AND firing = 0
                         RETURNING delay_id",
                        &[&room_id, &event_type, &state_key, &writer],
                        |r| r.get(0),
                    )
                    .await?;
                if !ids.is_empty() {
                    delete_idle_jobs(c, &ids).await?;
                }
                Ok(ids)
            })
        })
        .await
    }
}
