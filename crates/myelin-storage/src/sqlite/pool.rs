//! A fixed pool of read-only connections; reads run on tokio's blocking threads. A semaphore caps
//! concurrent reads at the pool size, which bounds connections (each with its own page cache),
//! threads and memory however many requests arrive at once.

use std::{path::PathBuf, sync::Mutex};

use rusqlite::{Connection, OpenFlags};

use crate::{StorageError, StorageResult};

/// Concurrent reads (and connections). WAL readers do not block each other or the writer.
const READERS: usize = 8;

pub struct ReadPool {
    path: PathBuf,
    idle: std::sync::Arc<Mutex<Vec<Connection>>>,
    permits: std::sync::Arc<tokio::sync::Semaphore>,
}

impl ReadPool {
    pub fn new(path: PathBuf) -> Self {
        Self { path, idle: Default::default(), permits: std::sync::Arc::new(tokio::sync::Semaphore::new(READERS)) }
    }

    /// Runs `f` on a pooled read connection.
    pub async fn read<T, F>(&self, f: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StorageResult<T> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StorageError::Database("read pool closed".into()))?;
        let idle = self.idle.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = idle.lock().map_err(|_| StorageError::Database("read pool poisoned".into()))?.pop();
            let conn = match conn {
                Some(conn) => conn,
                None => {
                    let conn = Connection::open_with_flags(
                        &path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
                    )?;
                    conn.busy_timeout(std::time::Duration::from_secs(10))?;
                    conn.set_prepared_statement_cache_capacity(128);
                    conn
                }
            };
            let result = f(&conn);
            if let Ok(mut idle) = idle.lock()
                && idle.len() < READERS
            {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StorageError::Database(format!("read task failed: {e}")))?
    }
}
