//! Reports for the admins.

use async_trait::async_trait;

use crate::{Database, ReportFilter, ReportRecord, ReportRepo, StorageResult, db::Row};

const COLUMNS: &str = "id, reporter, room_id, event_id, user_id, reason, score, created_ms";

fn report_from_row(r: &Row<'_>) -> StorageResult<ReportRecord> {
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
}

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

    async fn event_reports(
        &self,
        filter: &ReportFilter,
        offset: u64,
        limit: usize,
    ) -> StorageResult<(Vec<ReportRecord>, u64)> {
        let reporter = filter.reporter.as_ref().map(|u| u.as_str().to_owned()).unwrap_or_default();
        let room = filter.room_id.as_ref().map(|r| r.as_str().to_owned()).unwrap_or_default();
        let order = if filter.newest_first { "DESC" } else { "ASC" };
        self.read(move |c| {
            Box::pin(async move {
                let matching = "event_id IS NOT NULL AND ($1 = '' OR reporter = $1) AND ($2 = '' OR room_id = $2)";
                let total: u64 = c
                    .query_one(&format!("SELECT COUNT(*) FROM reports WHERE {matching}"), &[&reporter, &room], |r| {
                        r.get(0)
                    })
                    .await?;
                let sql = format!(
                    "SELECT {COLUMNS} FROM reports WHERE {matching} ORDER BY id {order} LIMIT {limit} OFFSET {offset}"
                );
                let reports = c.query(&sql, &[&reporter, &room], report_from_row).await?;
                Ok((reports, total))
            })
        })
        .await
    }

    async fn report(&self, id: i64) -> StorageResult<Option<ReportRecord>> {
        self.read(move |c| {
            Box::pin(async move {
                c.query_opt(&format!("SELECT {COLUMNS} FROM reports WHERE id = $1"), &[&id], report_from_row).await
            })
        })
        .await
    }

    async fn delete_report(&self, id: i64) -> StorageResult<bool> {
        self.transaction(move |c| {
            Box::pin(async move { Ok(c.execute("DELETE FROM reports WHERE id = $1", &[&id]).await? > 0) })
        })
        .await
    }
}
