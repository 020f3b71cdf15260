//! The stream writer of one process. Stream writes queue here; the writer task runs every queued
//! write inside its own SAVEPOINT of one transaction (group commit).
//!
//! Positions come from reserved blocks (`Reserver`), so the writers of several processes commit
//! side by side instead of one after another. The commit records what kinds of change the batch
//! made (`stream_changes`, for the other processes' change marks) and deletes its reservations;
//! right after it, the writer reads the new safe head (below any reservation still open
//! elsewhere) with the marks up to it, NOTIFYs both to the other processes and only then answers
//! the batch's callers. All of that goes out in one round trip with the last job's writes when
//! the job ends with `Conn::execute_last` (an event's persist does), else on its own.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_postgres::Config;

use super::{super::Ran, PgConn, Reserver, bus::take_head, publish_head_sql};
use crate::{
    StorageError, StorageResult,
    db::{Conn, Job, Positions, StreamHead, changes::BatchChanges},
};

/// Jobs one batch takes at most.
const MAX_BATCH: usize = 256;

pub struct Writer {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Writer {
    pub fn start(config: Config, head: Arc<StreamHead>, origin: String, reserver: Arc<Reserver>) -> Self {
        let (jobs, rx) = mpsc::unbounded_channel::<Job>();
        tokio::spawn(run(config, rx, head, origin, reserver));
        Self { jobs }
    }

    /// Queues a job now (so writes apply in call order).
    pub fn submit(&self, job: Job) -> StorageResult<()> {
        self.jobs.send(job).map_err(|_| StorageError::WriterGone)
    }
}

/// The writer's connection and its backend process id (the owner of its reservations).
struct Connection {
    conn: PgConn,
    pid: i64,
}

/// The head's publication, prepared on the writer's connection as [`PUBLISH`] (`prepare`:
/// `PREPARE ... AS` [`publish_head_sql`]): a batch's end runs it by name inside its one string of
/// statements, on a plan made once.
async fn connect(config: &Config, prepare: &str) -> StorageResult<Connection> {
    let mut conn = PgConn::connect(config).await?;
    conn.batch(prepare).await?;
    let pid = Conn::postgres(&mut conn).query_one("SELECT pg_backend_pid()", &[], |r| r.get(0)).await?;
    Ok(Connection { conn, pid })
}

/// The name of the prepared publication on the writer's connection.
const PUBLISH: &str = "myelin_publish_head";

async fn run(
    config: Config,
    mut rx: mpsc::UnboundedReceiver<Job>,
    head: Arc<StreamHead>,
    origin: String,
    reserver: Arc<Reserver>,
) {
    let prepare = format!("PREPARE {PUBLISH} AS {}", publish_head_sql(&origin));
    let mut connection: Option<Connection> = None;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if connection.as_ref().is_none_or(|c| c.conn.is_closed()) {
            connection = match connect(&config, &prepare).await {
                Ok(c) => Some(c),
                Err(err) => {
                    // The jobs never ran; dropping them drops their senders: callers see
                    // `WriterGone`.
                    tracing::error!(%err, jobs = batch.len(), "stream writer cannot connect");
                    drop(batch);
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                }
            };
        }
        let Some(c) = connection.as_mut() else { continue };
        // A block sized for the batch: a job takes one position, or a few; more are reserved
        // when it runs out.
        let block = (batch.len() as i64 * 4).max(64);
        let mut positions = Positions::reserved(reserver.clone(), c.pid, block);
        let mut delivers = Vec::with_capacity(batch.len());
        let outcome = run_batch(&mut c.conn, batch, &mut positions, &mut delivers).await;
        positions.settle().await;
        let reserved = positions.asked_for_reservation();
        let ridden = c.conn.take_ridden();
        match outcome {
            Ok(()) => {
                let published = match ridden {
                    Some(ended) => ended,
                    None => c.conn.batch_first_value(&end_of_batch_sql(reserved, positions.changes())).await,
                };
                if published.is_ok()
                    && let Some(highest) = positions.highest()
                {
                    head.wrote(highest);
                }
                match published {
                    Ok(Some(payload)) => {
                        take_head(&head, &payload);
                    }
                    Ok(None) => {}
                    Err(err) => {
                        c.conn.clear_deferred();
                        let _ = c.conn.batch("ROLLBACK").await;
                        fail(delivers, &err);
                        release_reservations(&mut c.conn, reserved, &head).await;
                        continue;
                    }
                }
                for deliver in delivers {
                    deliver(None);
                }
            }
            Err(err) => {
                tracing::error!(%err, "write batch failed and was rolled back");
                c.conn.clear_deferred();
                let _ = c.conn.batch("ROLLBACK").await;
                fail(delivers, &err);
                release_reservations(&mut c.conn, reserved, &head).await;
            }
        }
    }
}

fn fail(delivers: Vec<Box<dyn FnOnce(Option<StorageError>) + Send>>, err: &StorageError) {
    let message = err.to_string();
    for deliver in delivers {
        deliver(Some(StorageError::Batch(message.clone())));
    }
}

/// The end of a batch after its last job, as one string of statements: its change marks and the
/// deletion of its reservations, `COMMIT`, then the new safe head read and `NOTIFY`d
/// ([`PUBLISH`]); without reserved positions only the `COMMIT`. The head is read after the commit,
/// in a transaction of its own: of two processes' batches committing side by side, the one that
/// commits last then sees both reservations gone (read inside the transaction, each could see the
/// other's still open, and neither would announce a head past both). Should a statement before
/// the `COMMIT` fail, the rest of the string is skipped and the transaction stays open for the
/// writer to roll back. Sent on its own, or with the last job's writes (`PgConn::execute_last`);
/// the answer's first value is the published head payload.
pub(super) fn end_of_batch_sql(reserved: bool, changes: &[BatchChanges]) -> String {
    if !reserved {
        return "RELEASE SAVEPOINT job; COMMIT".to_owned();
    }
    format!(
        "RELEASE SAVEPOINT job; {}DELETE FROM stream_reservations WHERE owner_pid = pg_backend_pid(); COMMIT; \
         EXECUTE {PUBLISH}",
        record_changes_sql(changes)
    )
}

/// The statement recording a batch's kinds of change (empty if it made none a reader asks about,
/// as a batch of messages): one row per kind and block, at the highest position of that kind in
/// the block. Per block, because the safe head can stop between two blocks of one batch (another
/// process's block between them): the head's marks must cover the first block's changes then.
fn record_changes_sql(changes: &[BatchChanges]) -> String {
    let rows: Vec<String> =
        changes.iter().flat_map(BatchChanges::marked).map(|(kind, pos)| format!("({kind}, {pos})")).collect();
    if rows.is_empty() {
        return String::new();
    }
    format!("INSERT INTO stream_changes (kind, pos) VALUES {} ON CONFLICT DO NOTHING; ", rows.join(", "))
}

/// After a failed batch: gives up its reservations (their positions stay unused) and publishes
/// the head that may now move past them. If this fails too (the connection is gone), the other
/// processes delete the reservations once this backend has ended (`bus.rs`).
async fn release_reservations(c: &mut PgConn, reserved: bool, head: &StreamHead) {
    if !reserved {
        return;
    }
    let sql = format!("DELETE FROM stream_reservations WHERE owner_pid = pg_backend_pid(); EXECUTE {PUBLISH}");
    match c.batch_first_value(&sql).await {
        Ok(Some(payload)) => {
            take_head(head, &payload);
        }
        Ok(None) => {}
        Err(err) => tracing::warn!(%err, "could not release the reservations of a failed batch"),
    }
}

async fn run_batch(
    c: &mut PgConn,
    batch: Vec<Job>,
    positions: &mut Positions,
    delivers: &mut Vec<Box<dyn FnOnce(Option<StorageError>) + Send>>,
) -> StorageResult<()> {
    // Round trips are the cost here: savepoint bookkeeping rides along with the neighbouring
    // statements.
    c.defer("BEGIN; SAVEPOINT job");
    let jobs = batch.len();
    for (i, job) in batch.into_iter().enumerate() {
        if i + 1 == jobs {
            // The last job may send the batch's end with its last writes.
            c.offer_commit_ride();
        }
        let Ran { ok, deliver } = {
            let mut conn = Conn::postgres(c);
            job(&mut conn, positions).await
        };
        delivers.push(deliver);
        if c.has_ridden() {
            // The transaction has ended with this job's writes (the last job's).
            break;
        }
        if !ok {
            // Undo the job's work now (its failure may have aborted the transaction).
            c.batch("ROLLBACK TO SAVEPOINT job").await?;
        }
        if i + 1 < jobs {
            // Goes out with the next job's first statement: no round trip of its own.
            c.defer("RELEASE SAVEPOINT job; SAVEPOINT job");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::record_changes_sql;
    use crate::{Change, StreamPos, db::changes::BatchChanges};

    #[test]
    fn every_block_of_a_batch_records_its_own_kinds() {
        let mut first = BatchChanges::default();
        first.record(Change::ToDevice, StreamPos(28));
        first.record(Change::ToDevice, StreamPos(29));
        let mut second = BatchChanges::default();
        second.record(Change::ToDevice, StreamPos(40));
        second.record(Change::Receipt, StreamPos(41));
        second.record(Change::Message, StreamPos(42));
        assert_eq!(
            record_changes_sql(&[BatchChanges::default(), first, second]),
            "INSERT INTO stream_changes (kind, pos) VALUES (1, 29), (1, 40), (3, 41) ON CONFLICT DO NOTHING; "
        );
        let mut messages = BatchChanges::default();
        messages.record(Change::Message, StreamPos(43));
        assert_eq!(record_changes_sql(&[messages]), "", "messages mark nothing");
    }
}
