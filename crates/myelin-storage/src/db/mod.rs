//! The one place that knows there are two databases. Repositories (`crate::store`) are written
//! once against [`Conn`]: SQL in PostgreSQL's syntax (`$1` placeholders, `= ANY($n)` for lists,
//! `FOR UPDATE` where a row must be locked across processes), values through [`ToValue`], rows
//! through [`Row::get`]. Each backend module holds its dialect and its commit path:
//!
//! - `sqlite.rs`: the SQL is rewritten for SQLite (`?n`, `IN (SELECT value FROM json_each(?n))`,
//!   no row locks: one writer thread serialises every write); reads on a pool of read-only
//!   connections; writes group-committed by the writer thread.
//! - `postgres.rs`: the SQL runs as written; reads and short transactions on a pool; stream
//!   writes group-committed by this process's writer, with stream positions reserved in blocks
//!   (`positions.rs`) so that processes write side by side.
//!
//! Three kinds of work:
//! - [`Database::read`]: one read-only connection for the closure.
//! - [`Database::write`] / [`Database::submit`]: a *stream write*. It runs in the writer's group
//!   commit, in queue order, and may take stream positions ([`Positions`]); its future resolves
//!   only once the write is durable.
//! - [`Database::transaction`]: a short transaction that takes no stream position (PostgreSQL
//!   runs it on a pooled connection beside the writer; SQLite has only the one writer).

pub mod changes;
mod head;
pub(crate) mod positions;
pub mod postgres;
pub mod sqlite;
mod value;

use std::{future::Future, pin::Pin, sync::Arc};

pub use changes::Change;
pub(crate) use head::StreamHead;
pub use positions::Positions;
pub use value::{FromColumn, Kind, SqlKind, ToValue, Value};

use crate::{Signal, StorageError, StorageResult, StreamPos};

pub type BoxFut<'c, T> = Pin<Box<dyn Future<Output = T> + Send + 'c>>;

/// Parameters of a statement, in order (`$1`, `$2`, ...).
pub type Params<'a> = &'a [&'a dyn ToValue];

/// A database connection, in a read, a transaction or a stream write.
pub struct Conn<'a>(ConnInner<'a>);

enum ConnInner<'a> {
    Sqlite(&'a mut rusqlite::Connection),
    Postgres(&'a mut postgres::PgConn),
}

/// One write of [`Conn::execute_all`]: a statement with its parameters, or rows to insert
/// (`INSERT INTO table (columns...)` and one value per column each, see [`Conn::insert_rows`]).
pub enum Write<'a> {
    Sql(&'a str, Params<'a>),
    Rows(&'a str, &'a [Vec<&'a dyn ToValue>]),
}

/// Which database a connection talks to, for the few statements that cannot be written once
/// (full-text search) and for migrations' backend-only sections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A migration file as `dialect` runs it: the lines between `-- @sqlite` (or `-- @postgres`)
/// and the next marker (`-- @sqlite`, `-- @postgres`, `-- @end`) are kept only for that backend;
/// everything else is shared.
pub fn migration_for(sql: &str, dialect: Dialect) -> String {
    let mut keep = true;
    let mut out = String::with_capacity(sql.len());
    for line in sql.lines() {
        match line.trim() {
            "-- @sqlite" => keep = dialect == Dialect::Sqlite,
            "-- @postgres" => keep = dialect == Dialect::Postgres,
            "-- @end" => keep = true,
            _ if keep => {
                out.push_str(line);
                out.push('\n');
            }
            _ => {}
        }
    }
    out
}

/// One result row. Columns are read by index with [`Row::get`].
pub struct Row<'r>(RowInner<'r>);

enum RowInner<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Postgres(&'r tokio_postgres::Row),
}

impl Row<'_> {
    /// Column `idx` (from 0) as `T`; a value of the wrong type is `StorageError::Corrupt`.
    pub fn get<T: FromColumn>(&self, idx: usize) -> StorageResult<T> {
        match &self.0 {
            RowInner::Sqlite(row) => {
                let value = row.get_ref(idx).map_err(StorageError::from)?;
                T::from_sqlite(value).map_err(|e| StorageError::Corrupt(format!("column {idx}: {e}")))
            }
            RowInner::Postgres(row) => {
                T::from_postgres(row, idx).map_err(|e| StorageError::Corrupt(format!("column {idx}: {e}")))
            }
        }
    }
}

impl<'a> Conn<'a> {
    pub(crate) fn sqlite(conn: &'a mut rusqlite::Connection) -> Self {
        Self(ConnInner::Sqlite(conn))
    }

    pub(crate) fn postgres(conn: &'a mut postgres::PgConn) -> Self {
        Self(ConnInner::Postgres(conn))
    }

    pub fn dialect(&self) -> Dialect {
        match self.0 {
            ConnInner::Sqlite(_) => Dialect::Sqlite,
            ConnInner::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Every row of `sql`, each turned into a `T` by `map`.
    pub async fn query<T, F>(&mut self, sql: &str, params: Params<'_>, map: F) -> StorageResult<Vec<T>>
    where
        T: Send,
        F: FnMut(&Row<'_>) -> StorageResult<T> + Send,
    {
        match &mut self.0 {
            ConnInner::Sqlite(c) => sqlite::query(c, sql, params, map),
            ConnInner::Postgres(c) => c.query_map(sql, params, map).await,
        }
    }

    /// The first row of `sql`, if there is one.
    pub async fn query_opt<T, F>(&mut self, sql: &str, params: Params<'_>, map: F) -> StorageResult<Option<T>>
    where
        T: Send,
        F: FnMut(&Row<'_>) -> StorageResult<T> + Send,
    {
        Ok(self.query(sql, params, map).await?.into_iter().next())
    }

    /// The first row of `sql`; no row at all is `StorageError::Corrupt` (use for aggregates).
    pub async fn query_one<T, F>(&mut self, sql: &str, params: Params<'_>, map: F) -> StorageResult<T>
    where
        T: Send,
        F: FnMut(&Row<'_>) -> StorageResult<T> + Send,
    {
        self.query_opt(sql, params, map).await?.ok_or_else(|| StorageError::Corrupt(format!("no row from {sql}")))
    }

    /// Runs `sql`; returns the number of rows it changed.
    pub async fn execute(&mut self, sql: &str, params: Params<'_>) -> StorageResult<u64> {
        match &mut self.0 {
            ConnInner::Sqlite(c) => sqlite::execute(c, sql, params),
            ConnInner::Postgres(c) => c.execute(sql, params).await,
        }
    }

    /// The last statement of a short transaction (`Database::transaction`): on PostgreSQL the
    /// COMMIT goes out with it, one round trip for both; nothing may run after it. Elsewhere (a
    /// writer job, SQLite) a plain [`execute`](Self::execute).
    pub async fn execute_then_commit(&mut self, sql: &str, params: Params<'_>) -> StorageResult<u64> {
        match &mut self.0 {
            ConnInner::Sqlite(c) => sqlite::execute(c, sql, params),
            ConnInner::Postgres(c) => c.execute_then_commit(sql, params).await,
        }
    }

    /// Like [`execute_then_commit`](Self::execute_then_commit), for a statement that returns rows
    /// (`UPDATE ... RETURNING`).
    pub async fn query_then_commit<T, F>(&mut self, sql: &str, params: Params<'_>, map: F) -> StorageResult<Vec<T>>
    where
        T: Send,
        F: FnMut(&Row<'_>) -> StorageResult<T> + Send,
    {
        match &mut self.0 {
            ConnInner::Sqlite(c) => sqlite::query(c, sql, params, map),
            ConnInner::Postgres(c) => c.query_then_commit(sql, params, map).await,
        }
    }

    /// Runs several writes in order. PostgreSQL sends them all before awaiting the first answer
    /// (one network round trip); the first error is returned. Returns the rows changed.
    pub async fn execute_all(&mut self, writes: &[Write<'_>]) -> StorageResult<u64> {
        match &mut self.0 {
            ConnInner::Sqlite(c) => {
                let mut changed = 0;
                for write in writes {
                    changed += match write {
                        Write::Sql(sql, params) => sqlite::execute(c, sql, params)?,
                        Write::Rows(insert, rows) => sqlite::insert_rows(c, insert, rows)?,
                    };
                }
                Ok(changed)
            }
            ConnInner::Postgres(c) => c.execute_pipelined(writes).await,
        }
    }

    /// A stream write's last statements, run as [`execute_all`](Self::execute_all). On PostgreSQL,
    /// in the last job of the writer's batch, the batch's commit goes out in the same round trip
    /// (nothing may run after it). Elsewhere a plain `execute_all`.
    pub async fn execute_last(&mut self, writes: &[Write<'_>], positions: &Positions) -> StorageResult<u64> {
        match &mut self.0 {
            ConnInner::Sqlite(_) => self.execute_all(writes).await,
            ConnInner::Postgres(c) => c.execute_last(writes, positions).await,
        }
    }

    /// Inserts rows: `insert` is `INSERT INTO table (columns...)`, each row one value per column.
    /// PostgreSQL inserts them all with one statement (`SELECT * FROM UNNEST(arrays...)`), SQLite
    /// runs one prepared insert per row.
    pub async fn insert_rows(&mut self, insert: &str, rows: &[Vec<&dyn ToValue>]) -> StorageResult<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        self.execute_all(&[Write::Rows(insert, rows)]).await
    }

    /// Runs one query once per parameter set; the rows of each, in order. PostgreSQL pipelines
    /// them (one round trip for all).
    pub async fn query_each<T, F>(
        &mut self,
        sql: &str,
        param_sets: &[Vec<&dyn ToValue>],
        mut map: F,
    ) -> StorageResult<Vec<Vec<T>>>
    where
        T: Send,
        F: FnMut(&Row<'_>) -> StorageResult<T> + Send,
    {
        match &mut self.0 {
            ConnInner::Sqlite(c) => param_sets.iter().map(|params| sqlite::query(c, sql, params, &mut map)).collect(),
            ConnInner::Postgres(c) => c.query_each(sql, param_sets, map).await,
        }
    }

    /// Takes a lock on `key` until the end of the current transaction, for read-modify-write
    /// sequences that must not interleave across processes. PostgreSQL: an advisory transaction
    /// lock; SQLite: nothing to do (its one writer runs one write at a time).
    pub async fn lock_until_commit(&mut self, key: &str) -> StorageResult<()> {
        match &mut self.0 {
            ConnInner::Sqlite(_) => Ok(()),
            ConnInner::Postgres(c) => {
                let key = advisory_key(key);
                c.execute("SELECT pg_advisory_xact_lock($1)", &[&key]).await.map(|_| ())
            }
        }
    }
}

/// A 64-bit advisory lock key for a name (FNV-1a: stable across processes and versions).
pub(crate) fn advisory_key(name: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// A stream write waiting for the writer: it runs inside the batch's transaction (in its own
/// savepoint) and reports whether it succeeded; `deliver` answers its caller after the commit.
pub(crate) type Job = Box<dyn for<'c, 'x> FnOnce(&'c mut Conn<'x>, &'c mut Positions) -> BoxFut<'c, Ran> + Send>;

/// What a job left after running: whether to keep its savepoint, and how to answer its caller
/// once the batch's fate is known (`Some(err)` if the commit failed).
pub(crate) struct Ran {
    pub ok: bool,
    pub deliver: Box<dyn FnOnce(Option<StorageError>) + Send>,
}

/// Wraps `f` into a [`Job`] and the receiver of its committed result.
pub(crate) fn job<T, F>(f: F) -> (Job, tokio::sync::oneshot::Receiver<StorageResult<T>>)
where
    T: Send + 'static,
    F: for<'c, 'x> FnOnce(&'c mut Conn<'x>, &'c mut Positions) -> BoxFut<'c, StorageResult<T>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel::<StorageResult<T>>();
    let job: Job = Box::new(move |conn, positions| {
        Box::pin(async move {
            let result = f(conn, positions).await;
            let ok = result.is_ok();
            let deliver = Box::new(move |commit_error: Option<StorageError>| {
                let _ = tx.send(match commit_error {
                    Some(err) => Err(err),
                    None => result,
                });
            });
            Ran { ok, deliver }
        })
    });
    (job, rx)
}

/// The database: SQLite or PostgreSQL behind the same operations. Every repository trait is
/// implemented once for it (`crate::store`).
pub struct Database {
    backend: Backend,
    head: Arc<StreamHead>,
    /// The writes that PostgreSQL group-commits across callers (`postgres/grouped.rs`).
    pub(crate) grouped: crate::store::GroupedWrites,
    /// Token owners and key counts this process has read (PostgreSQL; `store/notified.rs`).
    pub(crate) notified: Arc<crate::store::Notified>,
}

enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(Box<postgres::Postgres>),
}

impl Database {
    /// Opens the backend named by a database URL: `sqlite:PATH` or `postgres://...`, migrating
    /// its schema to the current version.
    pub async fn open(url: &str) -> StorageResult<Self> {
        if let Some(path) = url.strip_prefix("sqlite:") {
            let (backend, head) = sqlite::Sqlite::open(std::path::Path::new(path)).await?;
            Ok(Self {
                backend: Backend::Sqlite(backend),
                head,
                grouped: Default::default(),
                notified: Default::default(),
            })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let (backend, head) = postgres::Postgres::open(url).await?;
            let notified: Arc<crate::store::Notified> = Default::default();
            tokio::spawn(crate::store::follow_notified_invalidations(Arc::downgrade(&notified), backend.signals()));
            Ok(Self { backend: Backend::Postgres(Box::new(backend)), head, grouped: Default::default(), notified })
        } else {
            Err(StorageError::Config(format!(
                "unsupported database URL {url:?}; expected sqlite:PATH or postgres://..."
            )))
        }
    }

    /// Runs `f` on a read connection. (SQLite learns per call site whether its reads are quick
    /// enough to run on the calling thread.)
    #[track_caller]
    pub fn read<T, F>(&self, f: F) -> impl Future<Output = StorageResult<T>> + Send + '_
    where
        T: Send + 'static,
        F: for<'c, 'x> FnOnce(&'c mut Conn<'x>) -> BoxFut<'c, StorageResult<T>> + Send + 'static,
    {
        let site = std::panic::Location::caller();
        async move {
            match &self.backend {
                Backend::Sqlite(db) => db.read(site, f).await,
                Backend::Postgres(db) => db.read(f).await,
            }
        }
    }

    /// Queues a stream write now (writes apply in the order they were queued) and returns a
    /// future of its result, which resolves once the write is durable.
    pub fn submit<T, F>(&self, f: F) -> impl Future<Output = StorageResult<T>> + Send + 'static
    where
        T: Send + 'static,
        F: for<'c, 'x> FnOnce(&'c mut Conn<'x>, &'c mut Positions) -> BoxFut<'c, StorageResult<T>> + Send + 'static,
    {
        let (job, rx) = job(f);
        let sent = match &self.backend {
            Backend::Sqlite(db) => db.submit(job, false),
            Backend::Postgres(db) => db.submit(job),
        };
        async move {
            sent?;
            rx.await.map_err(|_| StorageError::WriterGone)?
        }
    }

    /// A stream write, awaited.
    pub async fn write<T, F>(&self, f: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: for<'c, 'x> FnOnce(&'c mut Conn<'x>, &'c mut Positions) -> BoxFut<'c, StorageResult<T>> + Send + 'static,
    {
        self.submit(f).await
    }

    /// A short transaction that takes no stream position; committed (durably) when it returns.
    pub async fn transaction<T, F>(&self, f: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: for<'c, 'x> FnOnce(&'c mut Conn<'x>) -> BoxFut<'c, StorageResult<T>> + Send + 'static,
    {
        self.transaction_with(false, f).await
    }

    /// Like [`transaction`](Self::transaction), for state a client can rebuild: it survives the
    /// server process being killed, not necessarily the machine (no fsync of its own).
    pub async fn transaction_relaxed<T, F>(&self, f: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: for<'c, 'x> FnOnce(&'c mut Conn<'x>) -> BoxFut<'c, StorageResult<T>> + Send + 'static,
    {
        self.transaction_with(true, f).await
    }

    async fn transaction_with<T, F>(&self, relaxed: bool, f: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: for<'c, 'x> FnOnce(&'c mut Conn<'x>) -> BoxFut<'c, StorageResult<T>> + Send + 'static,
    {
        match &self.backend {
            Backend::Sqlite(db) => {
                let (job, rx) = job(move |conn, _| f(conn));
                db.submit(job, relaxed)?;
                rx.await.map_err(|_| StorageError::WriterGone)?
            }
            Backend::Postgres(db) => db.transaction(relaxed, f).await,
        }
    }

    /// The highest committed stream position this process knows of.
    pub fn stream_head(&self) -> StreamPos {
        self.head.get()
    }

    /// Whether a write of `change` may have taken a position after `since` (up to the stream
    /// head): `false` only when none did, so a read of such changes would find nothing.
    pub fn may_have_changed(&self, change: Change, since: StreamPos) -> bool {
        self.head.may_have_changed(change, since)
    }

    /// Learns of every move of [`stream_head`](Self::stream_head).
    pub fn watch_stream_head(&self) -> tokio::sync::watch::Receiver<StreamPos> {
        self.head.watch()
    }

    /// The highest position taken by a committed write of this process: once the head reaches
    /// it, readers see every write this process has acknowledged.
    pub fn written_head(&self) -> StreamPos {
        self.head.written()
    }

    /// The committed head as the database has it now (other processes may have committed beyond
    /// what this one has heard of); advances `stream_head()` too.
    pub async fn refresh_stream_head(&self) -> StorageResult<StreamPos> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(self.head.get()),
            Backend::Postgres(db) => {
                let (safe, marks) = db.safe_head_and_marks().await?;
                Ok(self.head.advance_learning(safe, marks.as_ref()))
            }
        }
    }

    pub(crate) fn broadcast_signal(&self, signal: Signal) {
        if let Backend::Postgres(db) = &self.backend {
            db.broadcast(signal);
        }
    }

    pub(crate) fn subscribe_signals(&self) -> tokio::sync::broadcast::Receiver<Signal> {
        match &self.backend {
            Backend::Sqlite(db) => db.signals(),
            Backend::Postgres(db) => db.signals(),
        }
    }

    /// The PostgreSQL connection pool, for tools that need raw SQL (migration, tests).
    pub fn postgres(&self) -> Option<&postgres::Postgres> {
        match &self.backend {
            Backend::Postgres(db) => Some(db),
            Backend::Sqlite(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Dialect, migration_for};

    #[test]
    fn migration_sections_go_to_their_backend_only() {
        let sql = "CREATE TABLE a (x INTEGER);\n-- @sqlite\nCREATE VIRTUAL TABLE f USING fts5(x);\n\
                   -- @postgres\nALTER TABLE a ADD COLUMN v tsvector;\n-- @end\nCREATE INDEX i ON a (x);\n";
        assert_eq!(
            migration_for(sql, Dialect::Sqlite),
            "CREATE TABLE a (x INTEGER);\nCREATE VIRTUAL TABLE f USING fts5(x);\nCREATE INDEX i ON a (x);\n"
        );
        assert_eq!(
            migration_for(sql, Dialect::Postgres),
            "CREATE TABLE a (x INTEGER);\nALTER TABLE a ADD COLUMN v tsvector;\nCREATE INDEX i ON a (x);\n"
        );
    }
}
