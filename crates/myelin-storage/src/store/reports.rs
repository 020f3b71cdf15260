//! Reports for the admins.

use async_trait::async_trait;

use crate::{Database, ReportRecord, ReportRepo, StorageResult};

#[async_trait]
impl ReportRepo for Database {
    async fn add_report(&self, report: &ReportRecord) -> StorageResult<i64> {
        let r = report.clone();
        self.transaction(move |c| {
            Box::pin(async move {
                c.query_one(
                    "INSERT INTO reports (reporter, room_id, event_id, user_id, reason, score, created_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                    &[&r.reporter, &r.room_id, &r.event_id, &r.user_id, &r.reason, &r.score, &r.created_ms],
                    |row| row.get::<i64>(0),
                )
                .await
            })
        })
        .await
    }

    async fn reports(&self, before: Option<i64>, limit: usize) -> StorageResult<Vec<ReportRecord>> {
        let before = before.unwrap_or(i64::MAX);
        self.read(move |c| {
            Box::pin(async move {
                c.query(
                    "SELECT id, reporter, room_id, event_id, user_id, reason, score, created_ms FROM reports
                     WHERE id < $1 ORDER BY id DESC LIMIT $2",
                    &[&before, &limit],
                    |r| {
                        Ok(ReportRecord {
                            id: r.get(0)?,
                            reporter: r.get(1)?,
                            room_id: r.get(2)?,
                            event_id: r.get(3)?,
                            user_id: r.get(4)?,
                            reason: r.get(5)?,
                            score: r.get(6)?,
                            created_ms: r.get(7)?,
                        })
                    },
                )
                .await
            })
        })
        .await
    }
}
