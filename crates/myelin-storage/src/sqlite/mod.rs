//! The embedded SQLite backend: WAL mode, one writer thread that batches concurrent writes into
//! one transaction (group commit, one fsync for many requests), and a pool of read connections.

mod account_data;
mod accounts;
mod backup;
mod dehydrated;
mod devices;
mod events;
mod jobs;
mod keys;
pub(crate) mod migrations;
mod pool;
mod receipts;
mod rooms;
mod sliding_sync;
mod state;
mod to_device;
mod writer;

use std::{
    path::Path,
    sync::{Arc, atomic::AtomicI64},
};

use rusqlite::Connection;

use crate::{StorageError, StorageResult, StreamPos};
pub use writer::Positions;

/// The SQLite store. Cheap to share: clones of the inner handles.
pub struct SqliteStore {
    writer: writer::Writer,
    readers: pool::ReadPool,
    head: Arc<AtomicI64>,
    /// Never sent on: one process owns an SQLite database, so there is nobody to tell.
    signals: tokio::sync::broadcast::Sender<crate::Signal>,
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk before the writer answers, so an acknowledged write survives a
    // power cut, not only `kill -9`. Group commit keeps the fsync count low.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(())
}

impl SqliteStore {
    pub async fn open(path: &Path) -> StorageResult<Self> {
        let path = path.to_owned();
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| StorageError::Config(format!("{}: {e}", parent.display())))?;
        }
        let (conn, head) = tokio::task::spawn_blocking({
            let path = path.clone();
            move || -> StorageResult<(Connection, StreamPos)> {
                let mut conn = Connection::open(&path)?;
                configure(&conn)?;
                migrations::run(&mut conn)?;
                let head: StreamPos = conn.query_row("SELECT pos FROM stream_head WHERE id = 1", [], |r| r.get(0))?;
                Ok((conn, head))
            }
        })
        .await
        .map_err(|e| StorageError::Database(e.to_string()))??;
        let head = Arc::new(AtomicI64::new(head));
        let writer = writer::Writer::start(conn, head.clone())?;
        let readers = pool::ReadPool::new(path);
        Ok(Self { writer, readers, head, signals: tokio::sync::broadcast::channel(1).0 })
    }
}

/// Reads an optional non-negative integer column as u64.
fn opt_u64(v: Option<i64>) -> Option<u64> {
    v.map(|v| v.max(0) as u64)
}

impl crate::ClusterBus for SqliteStore {
    fn broadcast(&self, _signal: crate::Signal) {}

    fn signals(&self) -> tokio::sync::broadcast::Receiver<crate::Signal> {
        self.signals.subscribe()
    }
}
