//! User-interactive authentication sessions.

use async_trait::async_trait;

use crate::{Database, StorageError, StorageResult, UiaRepo};

fn stages(json: &str) -> StorageResult<Vec<String>> {
    serde_json::from_str(json).map_err(|e| StorageError::Corrupt(format!("uia session stages: {e}")))
}

#[async_trait]
impl UiaRepo for Database {
    async fn create_uia_session(&self, session_id: &str, now_ms: u64) -> StorageResult<()> {
        let session_id = session_id.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO uia_sessions (session_id, completed, created_ms) VALUES ($1, '[]', $2)",
                    &[&session_id, &now_ms],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn uia_session(&self, session_id: &str, created_after_ms: u64) -> StorageResult<Option<Vec<String>>> {
        let session_id = session_id.to_owned();
        let completed: Option<String> = self
            .read(move |c| {
                Box::pin(async move {
                    c.query_opt(
                        "SELECT completed FROM uia_sessions WHERE session_id = $1 AND created_ms >= $2",
                        &[&session_id, &created_after_ms],
                        |r| r.get(0),
                    )
                    .await
                })
            })
            .await?;
        completed.as_deref().map(stages).transpose()
    }

    async fn complete_uia_stage(&self, session_id: &str, stage: &str) -> StorageResult<bool> {
        let (session_id, stage) = (session_id.to_owned(), stage.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                let completed: Option<String> = c
                    .query_opt(
                        "SELECT completed FROM uia_sessions WHERE session_id = $1 FOR UPDATE",
                        &[&session_id],
                        |r| r.get(0),
                    )
                    .await?;
                let Some(completed) = completed else { return Ok(false) };
                let mut done = stages(&completed)?;
                if !done.contains(&stage) {
                    done.push(stage);
                    let json = serde_json::to_string(&done).map_err(|e| StorageError::Corrupt(e.to_string()))?;
                    c.execute("UPDATE uia_sessions SET completed = $2 WHERE session_id = $1", &[&session_id, &json])
                        .await?;
                }
                Ok(true)
            })
        })
        .await
    }

    async fn delete_uia_session(&self, session_id: &str) -> StorageResult<()> {
        let session_id = session_id.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute("DELETE FROM uia_sessions WHERE session_id = $1", &[&session_id]).await?;
                Ok(())
            })
        })
        .await
    }

    async fn delete_uia_sessions_before(&self, before_ms: u64) -> StorageResult<u64> {
        self.transaction(move |c| {
            Box::pin(async move { c.execute("DELETE FROM uia_sessions WHERE created_ms < $1", &[&before_ms]).await })
        })
        .await
    }
}
