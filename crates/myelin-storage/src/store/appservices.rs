//! Application services' outboxes.

use async_trait::async_trait;

use crate::{
    AppserviceItem, AppserviceOutboxEntry, AppserviceRepo, Database, StorageError, StorageResult, StreamPos,
    db::{Row, ToValue, Write},
};

/// Queues the sender job of service `$1` (unless one is waiting: a service backing off after
/// failures keeps its retry time).
pub(crate) const APPSERVICE_JOB_INSERT: &str = "INSERT INTO jobs (kind, dedupe_key, payload, run_at_ms, created_ms)
     VALUES ('appservice', 'appservice ' || CAST($1 AS TEXT), CAST($1 AS TEXT), 0, CAST($2 AS BIGINT))
     ON CONFLICT (dedupe_key) DO NOTHING";

const ENTRY_COLUMNS: &str = "id, event_id, ephemeral, to_device, created_ms";

fn entry_from_row(r: &Row<'_>) -> StorageResult<AppserviceOutboxEntry> {
    Ok(AppserviceOutboxEntry {
        id: r.get(0)?,
        event_id: r.get(1)?,
        ephemeral: r.get(2)?,
        to_device: r.get(3)?,
        created_ms: r.get(4)?,
    })
}

#[async_trait]
impl AppserviceRepo for Database {
    async fn queue_appservice_items(
        &self,
        appservice_id: &str,
        items: &[AppserviceItem],
        now_ms: u64,
    ) -> StorageResult<()> {
        let id = appservice_id.to_owned();
        let columns: Vec<(Option<String>, Option<String>)> = items
            .iter()
            .map(|item| match item {
                AppserviceItem::Ephemeral(json) => (Some(json.clone()), None),
                AppserviceItem::ToDevice(json) => (None, Some(json.clone())),
                AppserviceItem::Wake => (None, None),
            })
            .collect();
        self.transaction(move |c| {
            Box::pin(async move {
                let rows: Vec<Vec<&dyn ToValue>> = columns
                    .iter()
                    .map(|(ephemeral, to_device)| -> Vec<&dyn ToValue> { vec![&id, ephemeral, to_device, &now_ms] })
                    .collect();
                let job_params: [&dyn ToValue; 2] = [&id, &now_ms];
                c.execute_all(&[
                    Write::Rows(
                        "INSERT INTO appservice_outbox (appservice_id, ephemeral, to_device, created_ms)",
                        &rows,
                    ),
                    Write::Sql(APPSERVICE_JOB_INSERT, &job_params),
                ])
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn appservice_outbox(&self, appservice_id: &str, limit: usize) -> StorageResult<Vec<AppserviceOutboxEntry>> {
        let appservice_id = appservice_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT {ENTRY_COLUMNS} FROM appservice_outbox WHERE appservice_id = $1 ORDER BY id LIMIT {limit}"
                );
                c.query(&sql, &[&appservice_id], entry_from_row).await
            })
        })
        .await
    }

    async fn appservice_outbox_len(&self, appservice_id: &str) -> StorageResult<u64> {
        let appservice_id = appservice_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query_one("SELECT COUNT(*) FROM appservice_outbox WHERE appservice_id = $1", &[&appservice_id], |r| {
                    r.get(0)
                })
                .await
            })
        })
        .await
    }

    async fn appservice_txn(&self, appservice_id: &str) -> StorageResult<Option<(String, String)>> {
        let appservice_id = appservice_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query_opt(
                    "SELECT txn_id, body FROM appservice_txns WHERE appservice_id = $1",
                    &[&appservice_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .await
            })
        })
        .await
    }

    async fn start_appservice_txn(
        &self,
        appservice_id: &str,
        txn_id: &str,
        body: &str,
        entry_ids: &[i64],
    ) -> StorageResult<()> {
        let (appservice_id, txn_id, body) = (appservice_id.to_owned(), txn_id.to_owned(), body.to_owned());
        let ids = serde_json::to_string(entry_ids).map_err(|e| StorageError::Corrupt(e.to_string()))?;
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO appservice_txns (appservice_id, txn_id, body, entry_ids) VALUES ($1, $2, $3, $4)",
                    &[&appservice_id, &txn_id, &body, &ids],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn finish_appservice_txn(&self, appservice_id: &str) -> StorageResult<()> {
        let appservice_id = appservice_id.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                let ids: Option<String> = c
                    .query_opt(
                        "SELECT entry_ids FROM appservice_txns WHERE appservice_id = $1",
                        &[&appservice_id],
                        |r| r.get(0),
                    )
                    .await?;
                let ids: Vec<i64> = match ids {
                    Some(ids) => serde_json::from_str(&ids).map_err(|e| StorageError::Corrupt(e.to_string()))?,
                    None => return Ok(()),
                };
                c.execute("DELETE FROM appservice_outbox WHERE id = ANY($1)", &[&ids]).await?;
                c.execute("DELETE FROM appservice_txns WHERE appservice_id = $1", &[&appservice_id]).await?;
                Ok(())
            })
        })
        .await
    }

    async fn appservice_device_list_pos(&self, appservice_id: &str) -> StorageResult<Option<StreamPos>> {
        let appservice_id = appservice_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query_opt(
                    "SELECT pos FROM appservice_device_lists WHERE appservice_id = $1",
                    &[&appservice_id],
                    |r| r.get(0),
                )
                .await
            })
        })
        .await
    }

    async fn set_appservice_device_list_pos(&self, appservice_id: &str, pos: StreamPos) -> StorageResult<()> {
        let appservice_id = appservice_id.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO appservice_device_lists (appservice_id, pos) VALUES ($1, $2)
                     ON CONFLICT (appservice_id) DO UPDATE SET pos = $2",
                    &[&appservice_id, &pos],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }
}
