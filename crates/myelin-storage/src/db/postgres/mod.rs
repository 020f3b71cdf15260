//! The PostgreSQL backend, for several Myelin processes sharing one database.
//!
//! - Reads and short transactions use a bounded pool of connections per process, each with its
//!   own prepared-statement cache.
//! - Stream writes go through this process's writer (`writer.rs`), which group-commits them. The
//!   writers of different processes run side by side: each batch reserves its stream positions
//!   in a block (`Reserver`, a transaction of its own that holds the `stream_head` row for
//!   microseconds, not until the batch commits) and deletes the reservation when it commits.
//!   Readers stop below the lowest open reservation ([`SAFE_HEAD`]), so positions may have gaps
//!   but a reader never passes a position that can still commit.
//! - Rows that must not be written by two processes at once are locked with `FOR UPDATE` (a
//!   room's row while an event is added to it) or an advisory lock (`Conn::lock_until_commit`).
//! - `LISTEN`/`NOTIFY` on channel `myelin` carries new stream heads and `Signal`s between
//!   processes (`bus.rs`).

mod bus;
mod conn;
mod grouped;
mod writer;

use std::{str::FromStr, sync::Arc};

pub use conn::PgConn;
pub(crate) use conn::PgPool;
pub(crate) use grouped::{Grouped, GroupedWrite};
use tokio::sync::Mutex;
use tokio_postgres::Config;

use super::{BoxFut, Conn, Job, StreamHead, changes::HeadMarks};
use crate::{Change, Signal, StorageError, StorageResult, StreamPos, db::sqlite::MIGRATIONS};

/// Connections for reads and short transactions, per process.
const POOL_SIZE: usize = 16;
/// Advisory lock key for schema changes ("myelin" in ASCII).
const MIGRATION_LOCK: i64 = 0x6d79_656c_696e;

/// The highest position readers may look at: below the lowest open reservation, else the highest
/// position reserved (all of which have committed or been given up).
pub(crate) const SAFE_HEAD: &str = "SELECT COALESCE((SELECT MIN(low) FROM stream_reservations) - 1, \
     (SELECT pos FROM stream_head WHERE id = 1))";

/// The statement that reads the safe head and, in the same snapshot, each asked kind's highest
/// position at or below it (`changes.rs`), as the text of a head payload (`bus.rs`):
/// `{"o": origin, "head": N, "marks": [...]}`. The head is computed once (`MATERIALIZED`: else
/// PostgreSQL copies its subqueries into every mark's, which costs more to plan than to run).
pub(crate) fn head_payload_sql(origin: &str) -> String {
    let marks: Vec<String> = (0..Change::ASKED.len())
        .map(|kind| format!("(SELECT MAX(pos) FROM stream_changes WHERE kind = {kind} AND pos <= h)"))
        .collect();
    // The origin is hex: nothing to escape.
    format!(
        "WITH s AS MATERIALIZED ({SAFE_HEAD} AS h) \
         SELECT json_build_object('o', '{origin}', 'head', h, 'marks', json_build_array({}))::TEXT FROM s",
        marks.join(", ")
    )
}

/// The statement that reads the safe head with its marks and publishes them: the payload of a
/// NOTIFY on `myelin`, also returned.
pub(crate) fn publish_head_sql(origin: &str) -> String {
    format!("SELECT p, pg_notify('myelin', p) FROM ({}) AS x(p)", head_payload_sql(origin))
}

/// Milliseconds since the epoch by the database's clock.
const DB_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::BIGINT";

pub struct Postgres {
    pool: Arc<PgPool>,
    /// [`head_payload_sql`], built once.
    head_sql: String,
    writer: writer::Writer,
    bus: bus::Bus,
    config: Config,
}

impl Postgres {
    pub(crate) async fn open(url: &str) -> StorageResult<(Self, Arc<StreamHead>)> {
        let config = Config::from_str(url).map_err(|e| StorageError::Config(format!("invalid PostgreSQL URL: {e}")))?;
        let mut conn = PgConn::connect(&config).await?;
        migrate(&mut conn).await?;
        let head = safe_head(&mut conn).await?;
        drop(conn);
        let head = StreamHead::new(head);
        let origin = format!("{:016x}", rand_origin());
        let bus = bus::Bus::start(config.clone(), head.clone(), origin.clone()).await?;
        let reserver = Arc::new(Reserver { config: config.clone(), conn: Mutex::new(None) });
        let writer = writer::Writer::start(config.clone(), head.clone(), origin, reserver);
        let head_sql = head_payload_sql("");
        Ok((Self { pool: Arc::new(PgPool::new(config.clone(), POOL_SIZE)), head_sql, writer, bus, config }, head))
    }

    pub(crate) async fn read<T, F>(&self, f: F) -> StorageResult<T>
    where
        F: for<'c, 'x> FnOnce(&'c mut Conn<'x>) -> BoxFut<'c, StorageResult<T>>,
    {
        self.pool.run(f).await
    }

    pub(crate) async fn transaction<T, F>(&self, relaxed: bool, f: F) -> StorageResult<T>
    where
        F: for<'c, 'x> FnOnce(&'c mut Conn<'x>) -> BoxFut<'c, StorageResult<T>>,
    {
        self.pool.transaction(relaxed, f).await
    }

    /// Writes `item` with the others of its group that queue meanwhile (`grouped.rs`).
    pub(crate) async fn write_grouped<I: GroupedWrite, O: Send + 'static>(
        &self,
        group: &Grouped<I, O>,
        item: I,
    ) -> StorageResult<O> {
        group.write(&self.pool, item).await
    }

    pub(crate) fn submit(&self, job: Job) -> StorageResult<()> {
        self.writer.submit(job)
    }

    /// The safe head and the change marks up to it.
    pub(crate) async fn safe_head_and_marks(&self) -> StorageResult<(StreamPos, Option<HeadMarks>)> {
        let mut pooled = self.pool.get().await?;
        let conn = pooled.conn()?;
        let payload: String = Conn::postgres(conn).query_one(&self.head_sql, &[], |r| r.get(0)).await?;
        bus::head_news(&payload).ok_or_else(|| StorageError::Corrupt("the safe head read has no head".into()))
    }

    pub(crate) fn broadcast(&self, signal: Signal) {
        self.bus.broadcast(signal);
    }

    pub(crate) async fn flush_signals(&self) {
        self.bus.flush().await;
    }

    pub(crate) fn signals(&self) -> tokio::sync::broadcast::Receiver<Signal> {
        self.bus.signals()
    }

    /// A connection of its own, for tools (migration, tests) that need raw SQL.
    pub async fn connect(&self) -> StorageResult<PgConn> {
        PgConn::connect(&self.config).await
    }
}

async fn safe_head(conn: &mut PgConn) -> StorageResult<StreamPos> {
    let mut c = Conn::postgres(conn);
    c.query_one(SAFE_HEAD, &[], |r| r.get(0)).await
}

/// Hands out blocks of stream positions on a connection of its own. A reservation is one
/// statement in its own transaction: it moves `stream_head.pos` up by the block's size and records
/// the block, with the backend of the writer that will fill it, in `stream_reservations`. It
/// commits without waiting for the disk: a batch that uses the block commits synchronously, which
/// makes the reservation durable before anything written in it is.
pub(crate) struct Reserver {
    config: Config,
    conn: Mutex<Option<PgConn>>,
}

impl Reserver {
    /// Reserves `count` positions for the writer whose backend is `owner_pid`: (first, last).
    pub(crate) async fn reserve(&self, count: i64, owner_pid: i64) -> StorageResult<(StreamPos, StreamPos)> {
        let mut guard = self.conn.lock().await;
        if guard.as_ref().is_none_or(PgConn::is_closed) {
            let mut conn = PgConn::connect(&self.config).await?;
            conn.batch("SET synchronous_commit = off").await?;
            *guard = Some(conn);
        }
        let conn = guard.as_mut().ok_or(StorageError::WriterGone)?;
        let sql = format!(
            "WITH r AS (UPDATE stream_head SET pos = pos + $1 WHERE id = 1 RETURNING pos)
             INSERT INTO stream_reservations (low, high, owner_pid, created_ms)
             SELECT pos - $1 + 1, pos, $2, {DB_NOW_MS} FROM r RETURNING low, high"
        );
        let reserved =
            Conn::postgres(conn).query_one(&sql, &[&count, &owner_pid], |r| Ok((r.get(0)?, r.get(1)?))).await;
        if reserved.is_err() {
            *guard = None;
        }
        reserved
    }
}

/// SQLite → PostgreSQL, for the shared migration files: a rowid primary key becomes an identity
/// column (which never reuses values, like SQLite's AUTOINCREMENT); every integer is 64 bits.
pub fn translate_migration(sql: &str) -> String {
    crate::db::migration_for(sql, crate::db::Dialect::Postgres)
        .replace("id INTEGER PRIMARY KEY AUTOINCREMENT,", "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,")
        .replace("id INTEGER PRIMARY KEY,", "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,")
        .replace("INTEGER", "BIGINT")
}

/// Applies the missing migrations, each in its own transaction, under an advisory lock so that
/// several processes starting together migrate once.
async fn migrate(conn: &mut PgConn) -> StorageResult<()> {
    conn.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await?;
    let result = apply_migrations(conn).await;
    conn.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await?;
    result
}

async fn apply_migrations(conn: &mut PgConn) -> StorageResult<()> {
    conn.batch(
        "CREATE TABLE IF NOT EXISTS schema_version (id BIGINT PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL)",
    )
    .await?;
    let current: i64 = Conn::postgres(conn)
        .query_opt("SELECT version FROM schema_version WHERE id = 1", &[], |r| r.get(0))
        .await?
        .unwrap_or(0);
    if current > MIGRATIONS.len() as i64 {
        return Err(StorageError::Corrupt(format!(
            "the database is at schema version {current}, newer than this Myelin's {}: run the newer version or \
             restore a backup taken before the upgrade",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        let version = (index + 1) as i64;
        conn.batch("BEGIN").await?;
        let applied = async {
            conn.batch(&translate_migration(sql)).await?;
            conn.execute(
                "INSERT INTO schema_version (id, version) VALUES (1, $1)
                 ON CONFLICT (id) DO UPDATE SET version = excluded.version",
                &[&version],
            )
            .await?;
            conn.batch("COMMIT").await
        }
        .await;
        if let Err(err) = applied {
            let _ = conn.batch("ROLLBACK").await;
            return Err(err);
        }
        tracing::info!(version, "applied database migration (PostgreSQL)");
    }
    Ok(())
}

/// A per-process id, so a process can ignore its own notifications.
fn rand_origin() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

/// Creates database `name` through `admin_url` (a URL of any database of the cluster, e.g.
/// `postgres://user@host/postgres`) and returns the URL of the new database.
pub async fn create_database(admin_url: &str, name: &str) -> StorageResult<String> {
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StorageError::Config(format!("invalid database name {name:?}")));
    }
    let config =
        Config::from_str(admin_url).map_err(|e| StorageError::Config(format!("invalid PostgreSQL URL: {e}")))?;
    let mut conn = PgConn::connect(&config).await?;
    conn.batch(&format!("CREATE DATABASE {name}")).await?;
    let (base, _) = admin_url.rsplit_once('/').ok_or_else(|| StorageError::Config("URL has no database".into()))?;
    let query = admin_url.split_once('?').map(|(_, q)| format!("?{q}")).unwrap_or_default();
    Ok(format!("{}/{name}{query}", base.split('?').next().unwrap_or(base)))
}
