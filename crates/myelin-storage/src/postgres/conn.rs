//! Connections: a client with its own prepared-statement cache (one round trip per query after
//! the first), and a bounded pool of them. A broken connection is dropped, not returned.

use std::{collections::HashMap, future::Future, pin::Pin, sync::Arc};

use tokio_postgres::{Client, Config, NoTls, Row, Statement, types::ToSql};

use crate::{StorageError, StorageResult};

pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// One connection and the statements prepared on it.
pub struct PgConn {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl PgConn {
    pub async fn connect(config: &Config) -> StorageResult<Self> {
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::warn!(%err, "PostgreSQL connection closed");
            }
        });
        Ok(Self { client, statements: HashMap::new() })
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    async fn statement(&mut self, sql: &str) -> StorageResult<Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        if self.statements.len() >= 256 {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    pub async fn query(&mut self, sql: &str, params: Params<'_>) -> StorageResult<Vec<Row>> {
        let statement = self.statement(sql).await?;
        Ok(self.client.query(&statement, params).await?)
    }

    pub async fn query_opt(&mut self, sql: &str, params: Params<'_>) -> StorageResult<Option<Row>> {
        let statement = self.statement(sql).await?;
        Ok(self.client.query_opt(&statement, params).await?)
    }

    pub async fn query_one(&mut self, sql: &str, params: Params<'_>) -> StorageResult<Row> {
        let statement = self.statement(sql).await?;
        Ok(self.client.query_one(&statement, params).await?)
    }

    pub async fn execute(&mut self, sql: &str, params: Params<'_>) -> StorageResult<u64> {
        let statement = self.statement(sql).await?;
        Ok(self.client.execute(&statement, params).await?)
    }

    /// Runs several independent statements as one pipeline: all are sent before the first answer
    /// is awaited (one network round trip instead of one each). They still execute in order, in
    /// the current transaction; the first error is returned.
    pub async fn execute_pipelined(&mut self, statements: &[(&str, Params<'_>)]) -> StorageResult<()> {
        let mut prepared = Vec::with_capacity(statements.len());
        for (sql, _) in statements {
            prepared.push(self.statement(sql).await?);
        }
        let client = &self.client;
        let runs = prepared.iter().zip(statements).map(|(statement, (_, params))| client.execute(statement, params));
        futures_util::future::try_join_all(runs).await?;
        Ok(())
    }

    /// Runs statements without parameters in one round trip and returns the first column of the
    /// first row any of them produced (e.g. `BEGIN; SELECT pos ... FOR UPDATE`).
    pub async fn batch_first_value(&mut self, sql: &str) -> StorageResult<Option<String>> {
        let messages = self.client.simple_query(sql).await?;
        Ok(messages.into_iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        }))
    }

    /// Runs statements without parameters (BEGIN, COMMIT, SAVEPOINT...).
    pub async fn batch(&mut self, sql: &str) -> StorageResult<()> {
        Ok(self.client.batch_execute(sql).await?)
    }
}

/// A fixed number of connections behind a semaphore, opened on demand.
pub struct PgPool {
    config: Config,
    idle: std::sync::Mutex<Vec<PgConn>>,
    permits: Arc<tokio::sync::Semaphore>,
    size: usize,
}

/// A pooled connection; goes back to the pool when dropped (unless it broke).
pub struct Pooled<'a> {
    conn: Option<PgConn>,
    pool: &'a PgPool,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = PgConn;
    fn deref(&self) -> &PgConn {
        self.conn.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut PgConn {
        self.conn.as_mut().expect("present until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
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
        let permit = self.permits.acquire().await.map_err(|_| StorageError::Database("pool closed".into()))?;
        let idle = self.idle.lock().map_err(|_| StorageError::Database("pool poisoned".into()))?.pop();
        let conn = match idle {
            Some(conn) if !conn.is_closed() => conn,
            _ => PgConn::connect(&self.config).await?,
        };
        Ok(Pooled { conn: Some(conn), pool: self, _permit: permit })
    }

    /// Runs `f` inside one transaction on a pooled connection; commits if it returns `Ok`.
    pub async fn transaction<T, F>(&self, f: F) -> StorageResult<T>
    where
        T: Send,
        F: for<'c> FnOnce(&'c mut PgConn) -> BoxFut<'c, StorageResult<T>> + Send,
    {
        let mut conn = self.get().await?;
        conn.batch("BEGIN").await?;
        match f(&mut conn).await {
            Ok(value) => {
                conn.batch("COMMIT").await?;
                Ok(value)
            }
            Err(err) => {
                // A failed rollback leaves the connection unusable: drop it instead of reusing.
                if conn.batch("ROLLBACK").await.is_err() {
                    conn.conn.take();
                }
                Err(err)
            }
        }
    }
}
