//! QR login's rendezvous sessions.

use async_trait::async_trait;

use crate::{Database, RendezvousRecord, RendezvousRepo, RendezvousWrite, StorageResult, db::Row};

const COLUMNS: &str = "session_id, data, content_type, etag, modified_ms, expires_ms";

fn from_row(r: &Row<'_>) -> StorageResult<RendezvousRecord> {
    Ok(RendezvousRecord {
        session_id: r.get(0)?,
        data: r.get(1)?,
        content_type: r.get(2)?,
        etag: r.get(3)?,
        modified_ms: r.get(4)?,
        expires_ms: r.get(5)?,
    })
}

#[async_trait]
impl RendezvousRepo for Database {
    async fn create_rendezvous(&self, session: &RendezvousRecord, now_ms: u64, max_live: u64) -> StorageResult<bool> {
        let s = session.clone();
        self.transaction(move |c| {
            Box::pin(async move {
                let live: u64 = c
                    .query_one("SELECT COUNT(*) FROM rendezvous_sessions WHERE expires_ms > $1", &[&now_ms], |r| {
                        r.get(0)
                    })
                    .await?;
                if live >= max_live {
                    return Ok(false);
                }
                c.execute(
                    "INSERT INTO rendezvous_sessions (session_id, data, content_type, etag, modified_ms, expires_ms)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[&s.session_id, &s.data, &s.content_type, &s.etag, &s.modified_ms, &s.expires_ms],
                )
                .await?;
                Ok(true)
            })
        })
        .await
    }

    async fn rendezvous(&self, session_id: &str, now_ms: u64) -> StorageResult<Option<RendezvousRecord>> {
        let session_id = session_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql =
                    format!("SELECT {COLUMNS} FROM rendezvous_sessions WHERE session_id = $1 AND expires_ms > $2");
                c.query_opt(&sql, &[&session_id, &now_ms], from_row).await
            })
        })
        .await
    }

    async fn write_rendezvous(
        &self,
        session_id: &str,
        expected_etag: &str,
        new: &RendezvousRecord,
        now_ms: u64,
    ) -> StorageResult<RendezvousWrite> {
        let (session_id, expected, new) = (session_id.to_owned(), expected_etag.to_owned(), new.clone());
        self.transaction(move |c| {
            Box::pin(async move {
                let n = c
                    .execute(
                        "UPDATE rendezvous_sessions SET data = $3, content_type = $4, etag = $5, modified_ms = $6
                         WHERE session_id = $1 AND etag = $2 AND expires_ms > $7",
                        &[&session_id, &expected, &new.data, &new.content_type, &new.etag, &new.modified_ms, &now_ms],
                    )
                    .await?;
                if n > 0 {
                    return Ok(RendezvousWrite::Written);
                }
                let live: Option<u64> = c
                    .query_opt(
                        "SELECT expires_ms FROM rendezvous_sessions WHERE session_id = $1 AND expires_ms > $2",
                        &[&session_id, &now_ms],
                        |r| r.get(0),
                    )
                    .await?;
                Ok(if live.is_some() { RendezvousWrite::Conflict } else { RendezvousWrite::Missing })
            })
        })
        .await
    }

    async fn delete_rendezvous(&self, session_id: &str) -> StorageResult<bool> {
        let session_id = session_id.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                let n = c.execute("DELETE FROM rendezvous_sessions WHERE session_id = $1", &[&session_id]).await?;
                Ok(n > 0)
            })
        })
        .await
    }

    async fn delete_expired_rendezvous(&self, now_ms: u64) -> StorageResult<u64> {
        self.transaction(move |c| {
            Box::pin(
                async move { c.execute("DELETE FROM rendezvous_sessions WHERE expires_ms <= $1", &[&now_ms]).await },
            )
        })
        .await
    }
}
