//! A small pool of read-only connections; reads run on tokio's blocking threads.

use std::{path::PathBuf, sync::Mutex};

use rusqlite::{Connection, OpenFlags};

use crate::{StorageError, StorageResult};

const MAX_IDLE: usize = 16;

pub struct ReadPool {
    path: PathBuf,
    idle: std::sync::Arc<Mutex<Vec<Connection>>>,
}

impl ReadPool {
    pub fn new(path: PathBuf) -> Self {
        Self { path, idle: Default::default() }
    }

    /// Runs `f` on a pooled read connection.
    pub async fn read<T, F>(&self, f: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StorageResult<T> + Send + 'static,
    {
        let idle = self.idle.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
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
                && idle.len() < MAX_IDLE
            {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StorageError::Database(format!("read task failed: {e}")))?
    }
}
