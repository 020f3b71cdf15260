//! The stream writer of one process. Writes that take stream positions queue here; the writer
//! task runs every queued write inside its own SAVEPOINT of one transaction (group commit).
//!
//! Cross-process ordering: each batch starts by locking the `stream_head` row (`FOR UPDATE`) and
//! holds it until its commit. Batches of all processes therefore commit one after another in
//! position order, so positions stay gap-free and a reader that sees position N committed has
//! every position below N committed too. The batch's last statement NOTIFYs the new head, which
//! PostgreSQL delivers to the other processes in commit order.

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

use tokio::sync::mpsc;
use tokio_postgres::Config;

use super::conn::{BoxFut, PgConn};
use crate::{StorageError, StorageResult, StreamPos};

/// Hands out stream positions inside a write batch.
pub struct Positions {
    next: StreamPos,
}

impl Positions {
    pub fn allocate(&mut self) -> StreamPos {
        let pos = self.next;
        self.next += 1;
        pos
    }
}

type Deliver = Box<dyn FnOnce(Option<StorageError>) + Send>;
type Job = Box<dyn for<'c> FnOnce(&'c mut PgConn, &'c mut Positions) -> BoxFut<'c, (bool, Deliver)> + Send>;

const MAX_BATCH: usize = 256;

pub struct Writer {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Writer {
    pub fn start(config: Config, head: Arc<AtomicI64>, origin: String) -> Self {
        let (jobs, rx) = mpsc::unbounded_channel::<Job>();
        tokio::spawn(run(config, rx, head, origin));
        Self { jobs }
    }

    /// Queues `f` now (so writes apply in call order) and returns a future of its committed result.
    pub fn submit<T, F>(&self, f: F) -> impl std::future::Future<Output = StorageResult<T>> + Send + 'static
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut PgConn, &'c mut Positions) -> BoxFut<'c, StorageResult<T>> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<StorageResult<T>>();
        let job: Job = Box::new(move |conn, positions| {
            Box::pin(async move {
                let result = f(conn, positions).await;
                let ok = result.is_ok();
                let deliver: Deliver = Box::new(move |commit_error| {
                    let _ = tx.send(match commit_error {
                        Some(err) => Err(err),
                        None => result,
                    });
                });
                (ok, deliver)
            })
        });
        let sent = self.jobs.send(job).map_err(|_| StorageError::WriterGone);
        async move {
            sent?;
            rx.await.map_err(|_| StorageError::WriterGone)?
        }
    }

    pub async fn write<T, F>(&self, f: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut PgConn, &'c mut Positions) -> BoxFut<'c, StorageResult<T>> + Send + 'static,
    {
        self.submit(f).await
    }
}

async fn run(config: Config, mut rx: mpsc::UnboundedReceiver<Job>, head: Arc<AtomicI64>, origin: String) {
    let mut conn: Option<PgConn> = None;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if conn.as_ref().is_none_or(PgConn::is_closed) {
            conn = match PgConn::connect(&config).await {
                Ok(c) => Some(c),
                Err(err) => {
                    tracing::error!(%err, "stream writer cannot connect");
                    fail_all(batch, &err);
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                }
            };
        }
        let Some(c) = conn.as_mut() else { continue };
        let mut delivers = Vec::with_capacity(batch.len());
        match run_batch(c, batch, &mut delivers, &origin).await {
            Ok(new_head) => {
                head.fetch_max(new_head, Ordering::AcqRel);
                for deliver in delivers {
                    deliver(None);
                }
            }
            Err(err) => {
                tracing::error!(%err, "write batch failed and was rolled back");
                let _ = c.batch("ROLLBACK").await;
                for deliver in delivers {
                    deliver(Some(StorageError::Database(err.to_string())));
                }
            }
        }
    }
}

fn fail_all(batch: Vec<Job>, err: &StorageError) {
    // The jobs never ran; dropping them drops their senders, and callers see `WriterGone`.
    tracing::debug!(%err, jobs = batch.len(), "dropping write batch");
    drop(batch);
}

async fn run_batch(
    c: &mut PgConn,
    batch: Vec<Job>,
    delivers: &mut Vec<Deliver>,
    origin: &str,
) -> StorageResult<StreamPos> {
    // Round trips are the cost here (the head lock is held throughout): savepoint bookkeeping
    // rides along with the neighbouring statements.
    let start = c
        .batch_first_value("BEGIN; SELECT pos FROM stream_head WHERE id = 1 FOR UPDATE; SAVEPOINT job")
        .await?
        .and_then(|v| v.parse::<StreamPos>().ok())
        .ok_or_else(|| StorageError::Corrupt("stream_head row missing".into()))?;
    let mut positions = Positions { next: start + 1 };
    let jobs = batch.len();
    let mut close = "";
    for (i, job) in batch.into_iter().enumerate() {
        let (ok, deliver) = job(c, &mut positions).await;
        delivers.push(deliver);
        close = if ok { "RELEASE SAVEPOINT job" } else { "ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job" };
        if i + 1 < jobs {
            c.batch(&format!("{close}; SAVEPOINT job")).await?;
        }
    }
    let new_head = positions.next - 1;
    if new_head != start {
        // Both values are numbers and a hex id: nothing to escape.
        let payload = serde_json::json!({ "o": origin, "head": new_head }).to_string();
        c.batch(&format!(
            "{close}; UPDATE stream_head SET pos = {new_head} WHERE id = 1; \
             SELECT pg_notify('myelin', '{payload}'); COMMIT"
        ))
        .await?;
    } else {
        c.batch(&format!("{close}; COMMIT")).await?;
    }
    Ok(new_head)
}
