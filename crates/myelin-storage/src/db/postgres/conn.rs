//! Connections: a client with its own prepared-statement cache (one round trip per query after
//! the first), and a bounded pool of them. A broken connection is dropped, not returned.

use std::{collections::HashMap, sync::Arc};

use tokio_postgres::{Client, Config, NoTls, Statement, types::ToSql};

use super::super::{BoxFut, Conn, Params, Positions, Row, RowInner, ToValue, Value, Write};
use crate::{StorageError, StorageResult};

/// Prepared statements kept per connection; past this the cache starts over.
const STATEMENT_CACHE: usize = 256;

/// One connection and the statements prepared on it.
pub struct PgConn {
    client: Client,
    statements: HashMap<String, Statement>,
    /// Statements without parameters to send ahead of the next request, in the same round trip
    /// (the writer's savepoint bookkeeping between jobs).
    deferred: Option<String>,
    /// Inside [`PgPool::transaction`]: its COMMIT may go out with the last statement
    /// ([`execute_then_commit`](Self::execute_then_commit)).
    commit_may_ride: bool,
    /// The transaction's COMMIT went out with its last statement (and succeeded).
    committed: bool,
    /// The stream writer, in its batch's last job: the batch's end (and its COMMIT) may go out
    /// with the job's last writes ([`execute_last`](Self::execute_last)).
    commit_ride: bool,
    /// What the COMMIT that went out with a job's last writes answered: the head payload it
    /// published, or its error.
    ridden: Option<StorageResult<Option<String>>>,
}

fn values<'p>(params: Params<'p>) -> Vec<Value<'p>> {
    params.iter().map(|p| p.to_value()).collect()
}

fn refs<'v>(values: &'v [Value<'_>]) -> Vec<&'v (dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

/// What a transaction's last statement should answer (`PgConn::last_statement`).
enum Asked {
    Changed,
    Rows,
}

enum Answer {
    Changed(u64),
    Rows(Vec<tokio_postgres::Row>),
}

impl PgConn {
    pub async fn connect(config: &Config) -> StorageResult<Self> {
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::warn!(%err, "PostgreSQL connection closed");
            }
        });
        Ok(Self {
            client,
            statements: HashMap::new(),
            deferred: None,
            commit_may_ride: false,
            committed: false,
            commit_ride: false,
            ridden: None,
        })
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// The driver's client, for tools that copy data in bulk (`myelin db migrate`).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Drops what was deferred (before a rollback: it may no longer apply).
    pub(crate) fn clear_deferred(&mut self) {
        self.deferred = None;
    }

    /// Queues `sql` (statements without parameters) to go out with the next request.
    pub(crate) fn defer(&mut self, sql: &str) {
        match &mut self.deferred {
            Some(queued) => {
                queued.push_str("; ");
                queued.push_str(sql);
            }
            None => self.deferred = Some(sql.to_owned()),
        }
    }

    async fn statement(&mut self, sql: &str) -> StorageResult<Statement> {
        debug_assert!(!self.committed, "a statement after the transaction's last one: {sql}");
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        if self.statements.len() >= STATEMENT_CACHE {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    pub(crate) async fn query_map<T, F>(&mut self, sql: &str, params: Params<'_>, mut map: F) -> StorageResult<Vec<T>>
    where
        F: FnMut(&Row<'_>) -> StorageResult<T>,
    {
        let statement = self.statement(sql).await?;
        let values = values(params);
        let params = refs(&values);
        let deferred = self.deferred.take();
        let rows = after(&self.client, deferred, self.client.query(&statement, &params)).await?;
        rows.iter().map(|row| map(&Row(RowInner::Postgres(row)))).collect()
    }

    pub(crate) async fn query_each<T, F>(
        &mut self,
        sql: &str,
        param_sets: &[Vec<&dyn ToValue>],
        mut map: F,
    ) -> StorageResult<Vec<Vec<T>>>
    where
        F: FnMut(&Row<'_>) -> StorageResult<T>,
    {
        let statement = self.statement(sql).await?;
        let values: Vec<Vec<Value<'_>>> = param_sets.iter().map(|p| values(p)).collect();
        let params: Vec<Vec<&(dyn ToSql + Sync)>> = values.iter().map(|v| refs(v)).collect();
        let client = &self.client;
        let runs = params.iter().map(|p| client.query(&statement, p));
        let deferred = self.deferred.take();
        let results = after(client, deferred, futures_util::future::try_join_all(runs)).await?;
        results.iter().map(|rows| rows.iter().map(|row| map(&Row(RowInner::Postgres(row)))).collect()).collect()
    }

    pub async fn execute(&mut self, sql: &str, params: Params<'_>) -> StorageResult<u64> {
        let statement = self.statement(sql).await?;
        let values = values(params);
        let params = refs(&values);
        let deferred = self.deferred.take();
        after(&self.client, deferred, self.client.execute(&statement, &params)).await
    }

    /// The last statement of a [`PgPool::transaction`], with the transaction's COMMIT in the same
    /// round trip (nothing may run on the connection after it). Elsewhere a plain `execute`.
    /// Should the statement fail, PostgreSQL answers the COMMIT of the aborted transaction with
    /// a rollback.
    pub(crate) async fn execute_then_commit(&mut self, sql: &str, params: Params<'_>) -> StorageResult<u64> {
        if !self.commit_may_ride {
            return self.execute(sql, params).await;
        }
        match self.last_statement(sql, params, Asked::Changed).await? {
            Answer::Changed(changed) => Ok(changed),
            Answer::Rows(_) => Err(StorageError::Batch("rows where a count was asked for".into())),
        }
    }

    /// Like [`execute_then_commit`](Self::execute_then_commit), for a statement that returns rows
    /// (`UPDATE ... RETURNING`).
    pub(crate) async fn query_then_commit<T, F>(
        &mut self,
        sql: &str,
        params: Params<'_>,
        mut map: F,
    ) -> StorageResult<Vec<T>>
    where
        F: FnMut(&Row<'_>) -> StorageResult<T>,
    {
        if !self.commit_may_ride {
            return self.query_map(sql, params, map).await;
        }
        match self.last_statement(sql, params, Asked::Rows).await? {
            Answer::Rows(rows) => rows.iter().map(|row| map(&Row(RowInner::Postgres(row)))).collect(),
            Answer::Changed(_) => Err(StorageError::Batch("a count where rows were asked for".into())),
        }
    }

    /// A transaction's last statement and its COMMIT, sent together.
    async fn last_statement(&mut self, sql: &str, params: Params<'_>, asked: Asked) -> StorageResult<Answer> {
        let statement = self.statement(sql).await?;
        let values = values(params);
        let params = refs(&values);
        let deferred = self.deferred.take();
        let client = &self.client;
        // Both go out before either answer is awaited: the statement first (a future sends its
        // request when first polled, and `try_join` polls in order).
        let request = async {
            Ok(match asked {
                Asked::Changed => Answer::Changed(client.execute(&statement, &params).await?),
                Asked::Rows => Answer::Rows(client.query(&statement, &params).await?),
            })
        };
        let both = futures_util::future::try_join(request, client.batch_execute("COMMIT"));
        let (answer, ()) = after(client, deferred, both).await?;
        self.commit_may_ride = false;
        self.committed = true;
        Ok(answer)
    }

    /// Runs several writes as one pipeline: all are sent before the first answer is awaited (one
    /// network round trip instead of one each). They still execute in order, in the current
    /// transaction; the first error is returned. Rows to insert become one `UNNEST` statement.
    pub(crate) async fn execute_pipelined(&mut self, writes: &[Write<'_>]) -> StorageResult<u64> {
        Ok(self.pipeline(writes, None).await?.0)
    }

    /// A stream write's last statements: in the last job of the writer's batch (offered with
    /// [`offer_commit_ride`](Self::offer_commit_ride)) the batch's end — its change marks, the
    /// deletion of its reservations, `COMMIT` and the head's publication — goes out in the same
    /// round trip. Nothing may run on the connection after it; the writer takes the outcome with
    /// [`take_ridden`](Self::take_ridden). Elsewhere, or while a reservation is still on its
    /// way, a plain [`execute_pipelined`](Self::execute_pipelined).
    ///
    /// Should a write fail, the transaction is aborted and the end's first statement fails with
    /// it, so nothing commits: the job fails as it would have alone.
    pub(crate) async fn execute_last(&mut self, writes: &[Write<'_>], positions: &Positions) -> StorageResult<u64> {
        if !std::mem::take(&mut self.commit_ride) || !positions.settled() {
            return self.execute_pipelined(writes).await;
        }
        let end = super::writer::end_of_batch_sql(positions.asked_for_reservation(), positions.changes());
        let (changed, ended) = self.pipeline(writes, Some(&end)).await?;
        self.ridden = ended;
        self.committed = true;
        Ok(changed)
    }

    /// The writer offers its batch's end to the last job.
    pub(crate) fn offer_commit_ride(&mut self) {
        self.commit_ride = true;
    }

    /// Whether the batch's end went out with a job's last writes (the transaction is over).
    pub(crate) fn has_ridden(&self) -> bool {
        self.ridden.is_some()
    }

    /// Withdraws the offer and returns what the batch's end answered, if it went out with a
    /// job's last writes: the published head payload, or the error of the end.
    pub(crate) fn take_ridden(&mut self) -> Option<StorageResult<Option<String>>> {
        self.commit_ride = false;
        self.committed = false;
        self.ridden.take()
    }

    /// The writes as one pipeline, then a writer batch's `end` (statements without parameters,
    /// `writer::end_of_batch_sql`) in the same round trip. Returns the rows changed and, if the
    /// writes succeeded and an end was sent, what the end answered (its first value).
    async fn pipeline(
        &mut self,
        writes: &[Write<'_>],
        end: Option<&str>,
    ) -> StorageResult<(u64, Option<StorageResult<Option<String>>>)> {
        // Each write as SQL text and parameter values.
        let mut texts: Vec<std::borrow::Cow<'_, str>> = Vec::with_capacity(writes.len());
        let mut values: Vec<Vec<Value<'_>>> = Vec::with_capacity(writes.len());
        for write in writes {
            match write {
                Write::Sql(sql, params) => {
                    texts.push((*sql).into());
                    values.push(self::values(params));
                }
                Write::Rows(insert, rows) => {
                    let Some(width) = rows.first().map(Vec::len) else { continue };
                    let columns = super::super::value::columns(rows, width)?;
                    let casts: Vec<String> =
                        columns.iter().enumerate().map(|(i, c)| format!("${}::{}", i + 1, c.sql_type())).collect();
                    texts.push(format!("{insert} SELECT * FROM UNNEST({})", casts.join(", ")).into());
                    values.push(columns.into_iter().map(super::super::value::Column::into_value).collect());
                }
            }
        }
        let mut prepared = Vec::with_capacity(texts.len());
        for sql in &texts {
            prepared.push(self.statement(sql).await?);
        }
        let params: Vec<Vec<&(dyn ToSql + Sync)>> = values.iter().map(|v| refs(v)).collect();
        let client = &self.client;
        let runs = prepared.iter().zip(&params).map(|(statement, params)| client.execute(statement, params));
        let deferred = self.deferred.take();
        let all = futures_util::future::try_join_all(runs);
        let Some(end) = end else {
            return Ok((after(client, deferred, all).await?.into_iter().sum(), None));
        };
        // After a failed write the end fails too (the transaction is aborted: its first statement
        // is refused and nothing after it in the batch runs); its answer is then dropped unread,
        // which the driver allows (later requests get their own answers).
        let ending = async { Ok::<_, tokio_postgres::Error>(client.simple_query(end).await) };
        let (changed, ended) = after(client, deferred, futures_util::future::try_join(all, ending)).await?;
        let changed = changed.into_iter().sum();
        Ok((changed, Some(ended.map(first_value).map_err(StorageError::from))))
    }

    /// Runs statements without parameters in one round trip and returns the first column of the
    /// first row any of them produced (e.g. `BEGIN; SELECT pos ... FOR UPDATE`).
    pub async fn batch_first_value(&mut self, sql: &str) -> StorageResult<Option<String>> {
        let sql = match self.deferred.take() {
            Some(deferred) => format!("{deferred}; {sql}"),
            None => sql.to_owned(),
        };
        Ok(first_value(self.client.simple_query(&sql).await?))
    }

    /// Runs statements without parameters (BEGIN, COMMIT, SAVEPOINT...).
    pub async fn batch(&mut self, sql: &str) -> StorageResult<()> {
        match self.deferred.take() {
            Some(deferred) => Ok(self.client.batch_execute(&format!("{deferred}; {sql}")).await?),
            None => Ok(self.client.batch_execute(sql).await?),
        }
    }
}

/// The first column of the first row among a simple query's answers.
fn first_value(messages: Vec<tokio_postgres::SimpleQueryMessage>) -> Option<String> {
    messages.into_iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
        _ => None,
    })
}

/// Runs `request` after the `deferred` statements, pipelined with them: both go out before either
/// answer is awaited (the deferred batch is queued first, so it runs first).
async fn after<T>(
    client: &Client,
    deferred: Option<String>,
    request: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> StorageResult<T> {
    Ok(match deferred {
        None => request.await?,
        Some(sql) => futures_util::future::try_join(client.batch_execute(&sql), request).await?.1,
    })
}

/// A fixed number of connections behind a semaphore, opened on demand.
pub(crate) struct PgPool {
    config: Config,
    idle: std::sync::Mutex<Vec<PgConn>>,
    permits: Arc<tokio::sync::Semaphore>,
    size: usize,
}

/// A pooled connection; goes back to the pool when dropped, unless it broke or is still inside
/// a transaction (its request was cancelled between `BEGIN` and the end: closing the connection
/// makes PostgreSQL roll it back and release its locks, unless a `COMMIT` had already gone out
/// with the last statement: `PgConn::execute_then_commit`).
pub struct Pooled<'a> {
    conn: Option<PgConn>,
    pool: &'a PgPool,
    in_transaction: bool,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Pooled<'_> {
    pub fn conn(&mut self) -> StorageResult<&mut PgConn> {
        self.conn.as_mut().ok_or(StorageError::WriterGone)
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && !self.in_transaction
            && !conn.is_closed()
            && let Ok(mut idle) = self.pool.idle.lock()
            && idle.len() < self.pool.size
        {
            idle.push(conn);
        }
    }
}

impl PgPool {
    pub fn new(config: Config, size: usize) -> Self {
        Self { config, idle: Default::default(), permits: Arc::new(tokio::sync::Semaphore::new(size)), size }
    }

    pub async fn get(&self) -> StorageResult<Pooled<'_>> {
        let permit = self.permits.acquire().await.map_err(|_| StorageError::Task("pool closed".into()))?;
        let idle = self.idle.lock().map_err(|_| StorageError::Task("pool poisoned".into()))?.pop();
        let conn = match idle {
            Some(conn) if !conn.is_closed() => conn,
            _ => PgConn::connect(&self.config).await?,
        };
        Ok(Pooled { conn: Some(conn), pool: self, in_transaction: false, _permit: permit })
    }

    /// Runs `f` on a pooled connection, outside any explicit transaction.
    pub async fn run<T, F>(&self, f: F) -> StorageResult<T>
    where
        F: for<'c, 'x> FnOnce(&'c mut Conn<'x>) -> BoxFut<'c, StorageResult<T>>,
    {
        let mut pooled = self.get().await?;
        let mut conn = Conn::postgres(pooled.conn()?);
        f(&mut conn).await
    }

    /// Runs `f` inside one transaction on a pooled connection; commits if it returns `Ok`.
    /// `relaxed`: the commit does not wait for the disk (state a client can rebuild).
    pub async fn transaction<T, F>(&self, relaxed: bool, f: F) -> StorageResult<T>
    where
        F: for<'c, 'x> FnOnce(&'c mut Conn<'x>) -> BoxFut<'c, StorageResult<T>>,
    {
        let mut pooled = self.get().await?;
        pooled.in_transaction = true;
        let c = pooled.conn()?;
        // Goes out with the transaction's first statement: no round trip of its own.
        c.defer(if relaxed { "BEGIN; SET LOCAL synchronous_commit = off" } else { "BEGIN" });
        c.commit_may_ride = true;
        c.committed = false;
        let result = f(&mut Conn::postgres(c)).await;
        c.commit_may_ride = false;
        let committed = std::mem::take(&mut c.committed);
        let (ended, outcome) = match result {
            Ok(value) if committed => (true, Ok(value)),
            Ok(value) => match c.batch("COMMIT").await {
                Ok(()) => (true, Ok(value)),
                Err(err) => (false, Err(err)),
            },
            Err(err) => (c.batch("ROLLBACK").await.is_ok(), Err(err)),
        };
        // A connection whose COMMIT or ROLLBACK failed is not reused.
        pooled.in_transaction = !ended;
        outcome
    }
}
