//! The single writer. Requests queue on a channel; the writer thread takes every request waiting,
//! runs each inside its own SAVEPOINT of one transaction (a failing request rolls back alone),
//! commits once, advances the stream head, and only then answers the callers. One fsync covers
//! the whole batch, and callers never hear "done" before their write is durable.
//!
//! Relaxed writes (state that can be rebuilt, e.g. sliding sync connections) skip the fsync when
//! a batch holds nothing else: committed to the WAL in the OS page cache, they survive a crash of
//! the process (`kill -9`) but not of the machine. A batch with any ordinary write is synced whole.

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
    mpsc,
};

use rusqlite::Connection;

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
type Run = Box<dyn FnOnce(&Connection, &mut Positions) -> (bool, Deliver) + Send>;

struct Job {
    relaxed: bool,
    run: Run,
}

const MAX_BATCH: usize = 256;

pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    pub fn start(conn: Connection, head: Arc<AtomicI64>) -> StorageResult<Self> {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("myelin-sqlite-writer".into())
            .spawn(move || run(conn, rx, head))
            .map_err(|e| StorageError::Database(format!("cannot start writer: {e}")))?;
        Ok(Self { jobs })
    }

    /// Runs `f` in the write transaction and answers after the commit.
    pub async fn write<T, F>(&self, f: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Positions) -> StorageResult<T> + Send + 'static,
    {
        self.submit_job(false, f).await
    }

    /// Like [`Writer::write`] for data that may be lost with the machine (not with the process):
    /// no fsync unless the batch also carries ordinary writes.
    pub async fn write_relaxed<T, F>(&self, f: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Positions) -> StorageResult<T> + Send + 'static,
    {
        self.submit_job(true, f).await
    }

    /// Queues `f` now (so writes apply in call order) and returns a future of its committed result.
    pub fn submit<T, F>(&self, f: F) -> impl std::future::Future<Output = StorageResult<T>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Positions) -> StorageResult<T> + Send + 'static,
    {
        self.submit_job(false, f)
    }

    fn submit_job<T, F>(
        &self,
        relaxed: bool,
        f: F,
    ) -> impl std::future::Future<Output = StorageResult<T>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Positions) -> StorageResult<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<StorageResult<T>>();
        let run: Run = Box::new(move |conn, positions| {
            let result = f(conn, positions);
            let ok = result.is_ok();
            let deliver: Deliver = Box::new(move |commit_error| {
                let _ = tx.send(match commit_error {
                    Some(err) => Err(err),
                    None => result,
                });
            });
            (ok, deliver)
        });
        let sent = self.jobs.send(Job { relaxed, run }).map_err(|_| StorageError::WriterGone);
        async move {
            sent?;
            rx.await.map_err(|_| StorageError::WriterGone)?
        }
    }
}

fn run(mut conn: Connection, rx: mpsc::Receiver<Job>, head: Arc<AtomicI64>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let relaxed = batch.iter().all(|job| job.relaxed);
        if relaxed {
            let _ = conn.pragma_update(None, "synchronous", "NORMAL");
        }
        let start = head.load(Ordering::Acquire);
        let mut positions = Positions { next: start + 1 };
        let mut delivers = Vec::with_capacity(batch.len());
        let outcome = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            for job in batch {
                tx.execute_batch("SAVEPOINT job")?;
                let (ok, deliver) = (job.run)(&tx, &mut positions);
                if ok {
                    tx.execute_batch("RELEASE job")?;
                } else {
                    tx.execute_batch("ROLLBACK TO job; RELEASE job")?;
                }
                delivers.push(deliver);
            }
            let new_head = positions.next - 1;
            if new_head != start {
                tx.execute("UPDATE stream_head SET pos = ?1 WHERE id = 1", [new_head])?;
            }
            tx.commit()
        })();
        if relaxed {
            let _ = conn.pragma_update(None, "synchronous", "FULL");
        }
        match outcome {
            Ok(()) => {
                head.store(positions.next - 1, Ordering::Release);
                for deliver in delivers {
                    deliver(None);
                }
            }
            Err(err) => {
                tracing::error!(%err, "write batch failed and was rolled back");
                for deliver in delivers {
                    deliver(Some(StorageError::Database(err.to_string())));
                }
            }
        }
    }
}
