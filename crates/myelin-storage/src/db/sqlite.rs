//! The embedded SQLite backend: WAL mode, one writer thread that batches concurrent writes into
//! one transaction (group commit, one fsync for many requests), and a pool of read connections.
//!
//! Dialect: the repositories' SQL is PostgreSQL's; [`translate`] rewrites the few constructs
//! SQLite spells differently. Row locks (`FOR UPDATE`) are dropped: the single writer already
//! runs one write at a time.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use futures_util::FutureExt;
use rusqlite::{Connection, OpenFlags};

use super::{BoxFut, Conn, Job, Params, Positions, Row, RowInner, StreamHead};
use crate::{Signal, StorageError, StorageResult, StreamPos};

/// Concurrent reads (and read connections). WAL readers do not block each other or the writer.
const READERS: usize = 8;
/// Jobs one write batch takes at most.
const MAX_BATCH: usize = 256;

/// Every migration, in order; PostgreSQL runs the same files (`postgres.rs`).
pub const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_initial.sql"),
    include_str!("../../migrations/0002_jobs.sql"),
    include_str!("../../migrations/0003_e2ee.sql"),
    include_str!("../../migrations/0004_key_backup.sql"),
    include_str!("../../migrations/0005_dehydrated_devices.sql"),
    include_str!("../../migrations/0006_sliding_sync.sql"),
    include_str!("../../migrations/0007_room_list_deltas.sql"),
    include_str!("../../migrations/0008_member_counts.sql"),
    include_str!("../../migrations/0009_house.sql"),
    include_str!("../../migrations/0010_server_keys.sql"),
    include_str!("../../migrations/0011_federation_events.sql"),
    include_str!("../../migrations/0012_remote_memberships.sql"),
    include_str!("../../migrations/0013_federated_e2ee.sql"),
    include_str!("../../migrations/0014_partial_state.sql"),
    include_str!("../../migrations/0015_matrixrtc.sql"),
    include_str!("../../migrations/0016_delegated_leaves.sql"),
    include_str!("../../migrations/0017_erased_users.sql"),
    include_str!("../../migrations/0018_media.sql"),
    include_str!("../../migrations/0019_pushers.sql"),
    include_str!("../../migrations/0020_reports.sql"),
    include_str!("../../migrations/0021_search.sql"),
    include_str!("../../migrations/0022_presence.sql"),
    include_str!("../../migrations/0023_media_retention.sql"),
    include_str!("../../migrations/0024_jump_to_date.sql"),
    include_str!("../../migrations/0025_threepids.sql"),
    include_str!("../../migrations/0026_guests.sql"),
    include_str!("../../migrations/0027_push_action_tweaks.sql"),
    include_str!("../../migrations/0028_server_notices.sql"),
    include_str!("../../migrations/0029_remote_thumbnails.sql"),
    include_str!("../../migrations/0030_admin.sql"),
    include_str!("../../migrations/0031_appservices.sql"),
    include_str!("../../migrations/0032_appservice_device_lists.sql"),
    include_str!("../../migrations/0033_oauth.sql"),
    include_str!("../../migrations/0034_rendezvous.sql"),
    include_str!("../../migrations/0035_passkeys.sql"),
    include_str!("../../migrations/0036_unread_highlights.sql"),
    include_str!("../../migrations/0037_stream_changes.sql"),
    include_str!("../../migrations/0038_notified_caches.sql"),
];

pub struct Sqlite {
    writer: mpsc::Sender<Queued>,
    readers: ReadPool,
    /// Never sent on: one process owns an SQLite database, so there is nobody to tell.
    signals: tokio::sync::broadcast::Sender<Signal>,
}

struct Queued {
    relaxed: bool,
    job: Job,
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

fn migrate(conn: &mut Connection) -> StorageResult<()> {
    let current: usize = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))?.max(0) as usize;
    if current > MIGRATIONS.len() {
        // A newer Myelin's database: this binary would misread it (downgrade by restoring a backup).
        return Err(StorageError::Corrupt(format!(
            "the database is at schema version {current}, newer than this Myelin's {}: run the newer \
             version or restore a backup taken before the upgrade",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(&super::migration_for(sql, super::Dialect::Sqlite))?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = index + 1, "applied database migration");
    }
    Ok(())
}

impl Sqlite {
    pub(crate) async fn open(path: &Path) -> StorageResult<(Self, Arc<StreamHead>)> {
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
                migrate(&mut conn)?;
                let head: i64 = conn.query_row("SELECT pos FROM stream_head WHERE id = 1", [], |r| r.get(0))?;
                Ok((conn, StreamPos(head)))
            }
        })
        .await
        .map_err(|e| StorageError::Task(e.to_string()))??;
        let head = StreamHead::new(head);
        let (writer, rx) = mpsc::channel::<Queued>();
        std::thread::Builder::new()
            .name("myelin-sqlite-writer".into())
            .spawn({
                let head = head.clone();
                move || run_writer(conn, rx, head)
            })
            .map_err(|e| StorageError::Task(format!("cannot start the writer: {e}")))?;
        watch_other_writers(&path, Arc::downgrade(&head));
        let backend = Self { writer, readers: ReadPool::new(path), signals: tokio::sync::broadcast::channel(1).0 };
        Ok((backend, head))
    }

    pub(crate) async fn read<T, F>(&self, site: ReadSite, f: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: for<'c, 'x> FnOnce(&'c mut Conn<'x>) -> BoxFut<'c, StorageResult<T>> + Send + 'static,
    {
        self.readers.read(site, f).await
    }

    pub(crate) fn submit(&self, job: Job, relaxed: bool) -> StorageResult<()> {
        self.writer.send(Queued { relaxed, job }).map_err(|_| StorageError::WriterGone)
    }

    pub(crate) fn signals(&self) -> tokio::sync::broadcast::Receiver<Signal> {
        self.signals.subscribe()
    }
}

/// How often the stored head is looked at for another writer's positions.
const OTHER_WRITERS_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Another process writing to the same file (the admin CLI beside a running server): the stored
/// head is read every second and this process's head moves up to it, so its readers see those
/// writes without waiting for a write of their own. Ends when the store is dropped.
fn watch_other_writers(path: &Path, head: std::sync::Weak<StreamHead>) {
    let path = path.to_owned();
    let spawned = std::thread::Builder::new().name("myelin-sqlite-head".into()).spawn(move || {
        let Ok(conn) = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY) else { return };
        loop {
            std::thread::sleep(OTHER_WRITERS_POLL);
            let Some(head) = head.upgrade() else { return };
            if let Ok(stored) = conn.query_row("SELECT pos FROM stream_head WHERE id = 1", [], |r| r.get::<_, i64>(0))
                && stored > head.get().get()
            {
                head.wrote(StreamPos(stored));
                head.advance_learning(StreamPos(stored), None);
            }
        }
    });
    if let Err(err) = spawned {
        tracing::warn!(%err, "cannot watch the database for other writers");
    }
}

/// Runs a repository future to completion on this thread. Every await in it is an SQLite call,
/// which completes at once; anything else is a bug, reported instead of blocking.
fn run_now<T>(future: BoxFut<'_, T>) -> StorageResult<T> {
    future.now_or_never().ok_or_else(|| StorageError::Task("an SQLite operation awaited something else".into()))
}

/// The writer thread: takes every job waiting, runs each in its own savepoint of one
/// transaction (a failing job rolls back alone), commits once, advances the head, then answers.
/// A batch made only of relaxed jobs commits without waiting for the disk.
fn run_writer(mut conn: Connection, rx: mpsc::Receiver<Queued>, head: Arc<StreamHead>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let relaxed = batch.iter().all(|q| q.relaxed);
        if relaxed {
            let _ = conn.pragma_update(None, "synchronous", "NORMAL");
        }
        let mut start = head.get();
        let mut positions = Positions::after(start);
        let mut delivers = Vec::with_capacity(batch.len());
        let outcome = (|| -> StorageResult<()> {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            // Another process (the admin CLI) may have written since the last batch: positions go
            // on from the stored head, read under the write lock.
            let stored: i64 = conn.query_row("SELECT pos FROM stream_head WHERE id = 1", [], |r| r.get(0))?;
            if stored > start.get() {
                head.others_wrote_up_to(StreamPos(stored));
                start = StreamPos(stored);
                positions = Positions::after(start);
            }
            for queued in batch {
                conn.execute_batch("SAVEPOINT job")?;
                let ran = {
                    let mut c = Conn::sqlite(&mut conn);
                    run_now((queued.job)(&mut c, &mut positions))
                };
                match ran {
                    Ok(ran) => {
                        conn.execute_batch(if ran.ok { "RELEASE job" } else { "ROLLBACK TO job; RELEASE job" })?;
                        delivers.push(ran.deliver);
                    }
                    Err(err) => {
                        // The job is dropped unanswered: its caller sees `WriterGone`.
                        tracing::error!(%err, "write job could not run");
                        conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
                    }
                }
            }
            let new_head = positions.sqlite_head(start);
            if new_head != start {
                conn.execute("UPDATE stream_head SET pos = ?1 WHERE id = 1", [new_head.get()])?;
            }
            conn.execute_batch("COMMIT")?;
            Ok(())
        })();
        if relaxed {
            let _ = conn.pragma_update(None, "synchronous", "FULL");
        }
        match outcome {
            Ok(()) => {
                head.wrote(positions.sqlite_head(start));
                head.advance_past(positions.changes(), positions.sqlite_head(start));
                for deliver in delivers {
                    deliver(None);
                }
            }
            Err(err) => {
                tracing::error!(%err, "write batch failed and was rolled back");
                let _ = conn.execute_batch("ROLLBACK");
                let message = err.to_string();
                for deliver in delivers {
                    deliver(Some(StorageError::Batch(message.clone())));
                }
            }
        }
    }
}

/// Where a read is asked for (the repository statement's call site): the pool learns per site
/// whether its reads are quick.
pub(crate) type ReadSite = &'static std::panic::Location<'static>;

/// A site whose reads took longer than this [`SLOW_RUNS_TO_LEAVE`] times in a row goes to the
/// blocking threads. (Twice: on a busy machine a quick read is now and then preempted halfway,
/// rarely twice running. Wall time, not the thread's CPU time, whose clock is a system call:
/// reading it around every read cost 5% of a fan-out's CPU.)
const INLINE_BUDGET: Duration = Duration::from_millis(1);
const SLOW_RUNS_TO_LEAVE: u32 = 2;
/// Quick runs in a row on a blocking thread after which a site's reads come back inline.
const QUICK_RUNS_TO_RETURN: u32 = 8;

/// A fixed pool of read-only connections. A semaphore caps concurrent reads at the pool size,
/// which bounds connections (each with its own page cache), threads and memory however many
/// requests arrive at once.
///
/// Most reads are index lookups over cached pages that take microseconds: those run on the
/// calling (async) thread, since handing them to a blocking thread costs more than the read
/// (two thread switches, and a queue when many syncs wake at once: a busy room's 50 woken
/// listeners spent 14 ms each waiting for ten such hand-offs, against 0.35 ms of work). A read
/// site whose reads took more than [`INLINE_BUDGET`] twice in a row runs on tokio's blocking
/// threads until it has been quick [`QUICK_RUNS_TO_RETURN`] times in a row there, so a scan
/// (search, an admin listing, a big room's members) holds an async thread for long only twice.
struct ReadPool {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<tokio::sync::Semaphore>,
    /// What is known of the sites: slow ones (on the blocking threads) with their quick runs
    /// there in a row, quick ones with their slow runs in a row (below the limit).
    slow_sites: Arc<Mutex<HashMap<usize, SiteRecord>>>,
    /// Every read on the blocking threads, as before reads ran inline
    /// (`MYELIN_SQLITE_READS=blocking`, for measuring one against the other).
    always_blocking: bool,
}

impl ReadPool {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Default::default(),
            permits: Arc::new(tokio::sync::Semaphore::new(READERS)),
            slow_sites: Default::default(),
            always_blocking: std::env::var("MYELIN_SQLITE_READS").is_ok_and(|v| v == "blocking"),
        }
    }

    async fn read<T, F>(&self, site: ReadSite, f: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: for<'c, 'x> FnOnce(&'c mut Conn<'x>) -> BoxFut<'c, StorageResult<T>> + Send + 'static,
    {
        let permit =
            self.permits.clone().acquire_owned().await.map_err(|_| StorageError::Task("read pool closed".into()))?;
        let key = site as *const std::panic::Location<'static> as usize;
        let slow = self.always_blocking
            || self.slow_sites.lock().map(|sites| matches!(sites.get(&key), Some(SiteRecord::Slow(_)))).unwrap_or(true);
        let (idle, path, sites) = (self.idle.clone(), self.path.clone(), self.slow_sites.clone());
        let run = move || {
            let _permit = permit;
            let started = Instant::now();
            let result = read_on(&idle, &path, f);
            let quick = started.elapsed() <= INLINE_BUDGET;
            if let Ok(mut sites) = sites.lock() {
                let record = sites.get(&key).copied();
                match (record, quick) {
                    // The usual case: a quick site, quick again.
                    (None, true) => {}
                    (Some(SiteRecord::Quick(_)), true) => {
                        sites.remove(&key);
                    }
                    (None, false) => {
                        sites.insert(key, next_slow(1));
                    }
                    (Some(SiteRecord::Quick(slow_runs)), false) => {
                        sites.insert(key, next_slow(slow_runs + 1));
                    }
                    (Some(SiteRecord::Slow(quick_runs)), true) if quick_runs + 1 >= QUICK_RUNS_TO_RETURN => {
                        sites.remove(&key);
                    }
                    (Some(SiteRecord::Slow(quick_runs)), true) => {
                        sites.insert(key, SiteRecord::Slow(quick_runs + 1));
                    }
                    (Some(SiteRecord::Slow(_)), false) => {
                        sites.insert(key, SiteRecord::Slow(0));
                    }
                }
            }
            result
        };
        if !slow {
            return run();
        }
        tokio::task::spawn_blocking(run).await.map_err(|e| StorageError::Task(format!("read task failed: {e}")))?
    }
}

/// What the pool knows of a read site it has seen take long.
#[derive(Clone, Copy, Debug)]
enum SiteRecord {
    /// Still inline, after this many slow runs in a row.
    Quick(u32),
    /// On the blocking threads, after this many quick runs in a row there.
    Slow(u32),
}

/// The record of a site after `slow_runs` slow runs in a row.
fn next_slow(slow_runs: u32) -> SiteRecord {
    if slow_runs >= SLOW_RUNS_TO_LEAVE { SiteRecord::Slow(0) } else { SiteRecord::Quick(slow_runs) }
}

/// Runs `f` on an idle read connection (or a new one), then gives the connection back.
fn read_on<T, F>(idle: &Mutex<Vec<Connection>>, path: &Path, f: F) -> StorageResult<T>
where
    F: for<'c, 'x> FnOnce(&'c mut Conn<'x>) -> BoxFut<'c, StorageResult<T>>,
{
    let pooled = idle.lock().map_err(|_| StorageError::Task("read pool poisoned".into()))?.pop();
    let mut conn = match pooled {
        Some(conn) => conn,
        None => {
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
            )?;
            conn.busy_timeout(std::time::Duration::from_secs(10))?;
            conn.set_prepared_statement_cache_capacity(128);
            conn
        }
    };
    let result = {
        let mut c = Conn::sqlite(&mut conn);
        run_now(f(&mut c)).and_then(|r| r)
    };
    if let Ok(mut idle) = idle.lock()
        && idle.len() < READERS
    {
        idle.push(conn);
    }
    result
}

thread_local! {
    /// Translated statements, by their PostgreSQL text (a handful of distinct statements).
    static TRANSLATED: std::cell::RefCell<HashMap<String, Arc<str>>> = Default::default();
}

/// The SQLite spelling of a repository statement, translated once per thread.
fn sqlite_sql(sql: &str) -> Arc<str> {
    TRANSLATED.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(translated) = cache.get(sql) {
            return translated.clone();
        }
        if cache.len() >= 4096 {
            cache.clear();
        }
        let translated: Arc<str> = translate(sql).into();
        cache.insert(sql.to_owned(), translated.clone());
        translated
    })
}

/// Rewrites PostgreSQL's spelling into SQLite's, outside string literals:
/// `$n` → `?n`; `= ANY($n)` → `IN (SELECT value FROM json_each(?n))` (the list is bound as a JSON
/// array); `FOR UPDATE [OF table] [SKIP LOCKED]` → nothing.
pub fn translate(sql: &str) -> String {
    let sql = without_row_locks(sql);
    let mut out = String::with_capacity(sql.len() + 16);
    let bytes = sql.as_bytes();
    let mut i = 0;
    let mut in_string = false;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'\'' {
            in_string = !in_string;
        }
        if !in_string && sql[i..].starts_with("= ANY($") {
            let digits: String = sql[i + 7..].chars().take_while(char::is_ascii_digit).collect();
            if !digits.is_empty() && sql[i + 7 + digits.len()..].starts_with(')') {
                out.push_str("IN (SELECT value FROM json_each(?");
                out.push_str(&digits);
                out.push_str("))");
                i += 7 + digits.len() + 1;
                continue;
            }
        }
        if !in_string && c == b'$' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            out.push('?');
            i += 1;
            continue;
        }
        // Copy one character (which may be several bytes).
        let len = sql[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&sql[i..i + len]);
        i += len;
    }
    out
}

/// `sql` without its `FOR UPDATE [OF table] [SKIP LOCKED]` clauses.
fn without_row_locks(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find(" FOR UPDATE") {
        out.push_str(&rest[..at]);
        rest = &rest[at + " FOR UPDATE".len()..];
        if let Some(after) = rest.strip_prefix(" OF ") {
            let table_len = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            rest = &after[table_len..];
        }
        if let Some(after) = rest.strip_prefix(" SKIP LOCKED") {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn bind<'p>(params: Params<'p>) -> Vec<super::Value<'p>> {
    params.iter().map(|p| p.to_value()).collect()
}

pub(super) fn query<T, F>(conn: &mut Connection, sql: &str, params: Params<'_>, mut map: F) -> StorageResult<Vec<T>>
where
    F: FnMut(&Row<'_>) -> StorageResult<T>,
{
    let values = bind(params);
    let mut stmt = conn.prepare_cached(&sqlite_sql(sql))?;
    let mut rows = stmt.query(rusqlite::params_from_iter(values.iter()))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(map(&Row(RowInner::Sqlite(row)))?);
    }
    Ok(out)
}

/// One prepared insert per row (see `Conn::insert_rows`).
pub(super) fn insert_rows(
    conn: &mut Connection,
    insert: &str,
    rows: &[Vec<&dyn super::ToValue>],
) -> StorageResult<u64> {
    let Some(width) = rows.first().map(Vec::len) else { return Ok(0) };
    let placeholders: Vec<String> = (1..=width).map(|i| format!("${i}")).collect();
    let sql = format!("{insert} VALUES ({})", placeholders.join(", "));
    let mut changed = 0;
    for row in rows {
        changed += execute(conn, &sql, row)?;
    }
    Ok(changed)
}

pub(super) fn execute(conn: &mut Connection, sql: &str, params: Params<'_>) -> StorageResult<u64> {
    let values = bind(params);
    let mut stmt = conn.prepare_cached(&sqlite_sql(sql))?;
    Ok(stmt.execute(rusqlite::params_from_iter(values.iter()))? as u64)
}

#[cfg(test)]
mod tests {
    use std::{panic::Location, thread::ThreadId, time::Instant};

    use super::{INLINE_BUDGET, QUICK_RUNS_TO_RETURN, ReadPool, ReadSite, translate};

    /// Runs a read at `site` that uses `cpu` of CPU; returns the thread it ran on.
    async fn read_on_thread(pool: &ReadPool, site: ReadSite, cpu: std::time::Duration) -> ThreadId {
        pool.read(site, move |_| {
            let started = Instant::now();
            while started.elapsed() < cpu {
                std::hint::spin_loop();
            }
            let thread = std::thread::current().id();
            Box::pin(async move { Ok(thread) })
        })
        .await
        .expect("read")
    }

    #[tokio::test(flavor = "current_thread")]
    async fn quick_reads_run_inline_and_a_slow_site_moves_to_the_blocking_threads_until_it_is_quick_again() {
        let path = std::env::temp_dir().join(format!("myelin-read-pool-{}.db", std::process::id()));
        rusqlite::Connection::open(&path).expect("create").execute_batch("CREATE TABLE t (a INTEGER)").expect("t");
        let pool = ReadPool::new(path.clone());
        let here = std::thread::current().id();
        let quick_site: ReadSite = Location::caller();
        let slow_site: ReadSite = Location::caller();
        assert!(!std::ptr::eq(quick_site, slow_site), "two sites");
        for _ in 0..3 {
            assert_eq!(
                read_on_thread(&pool, quick_site, std::time::Duration::ZERO).await,
                here,
                "a quick read is inline"
            );
        }
        let slow = INLINE_BUDGET * 3;
        // Not known to be slow yet: it runs inline twice (once could be the machine's fault),
        // and is then sent away.
        assert_eq!(read_on_thread(&pool, slow_site, slow).await, here);
        assert_eq!(read_on_thread(&pool, slow_site, slow).await, here);
        assert_ne!(read_on_thread(&pool, slow_site, slow).await, here, "a slow site goes to the blocking threads");
        assert_eq!(read_on_thread(&pool, quick_site, std::time::Duration::ZERO).await, here, "other sites stay inline");
        // Quick again: after enough quick runs in a row on the blocking threads, it comes back.
        for _ in 0..QUICK_RUNS_TO_RETURN {
            assert_ne!(read_on_thread(&pool, slow_site, std::time::Duration::ZERO).await, here);
        }
        assert_eq!(read_on_thread(&pool, slow_site, std::time::Duration::ZERO).await, here, "back inline");
        // One slow run between quick ones is forgiven; two in a row are not.
        assert_eq!(read_on_thread(&pool, slow_site, slow).await, here);
        assert_eq!(read_on_thread(&pool, slow_site, std::time::Duration::ZERO).await, here);
        assert_eq!(read_on_thread(&pool, slow_site, slow).await, here);
        assert_eq!(read_on_thread(&pool, slow_site, slow).await, here);
        assert_ne!(read_on_thread(&pool, slow_site, std::time::Duration::ZERO).await, here);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn placeholders_lists_and_locks_are_rewritten() {
        assert_eq!(translate("SELECT a FROM t WHERE b = $1 AND c = $12"), "SELECT a FROM t WHERE b = ?1 AND c = ?12");
        assert_eq!(
            translate("SELECT a FROM t WHERE b = ANY($2) FOR UPDATE"),
            "SELECT a FROM t WHERE b IN (SELECT value FROM json_each(?2))"
        );
        assert_eq!(translate("SELECT 1 FROM t LIMIT 1 FOR UPDATE SKIP LOCKED"), "SELECT 1 FROM t LIMIT 1");
        assert_eq!(
            translate("SELECT 1 FROM t r LEFT JOIN u ON 1 FOR UPDATE OF r\n"),
            "SELECT 1 FROM t r LEFT JOIN u ON 1\n"
        );
    }

    #[test]
    fn string_literals_are_left_alone() {
        assert_eq!(translate("SELECT '$1 = ANY($2)' WHERE a = $1"), "SELECT '$1 = ANY($2)' WHERE a = ?1");
        assert_eq!(translate("SELECT 'é$' || $3"), "SELECT 'é$' || ?3");
    }
}
