//! The PostgreSQL backend, for several Myelin processes sharing one database.
//!
//! - Reads use a bounded pool of connections, each with its own prepared-statement cache.
//! - Writes that take stream positions go through this process's stream writer (`writer.rs`),
//!   which group-commits them and orders its batches with every other process's through a row
//!   lock on `stream_head`; other writes are single statements or short transactions.
//! - `LISTEN`/`NOTIFY` on channel `myelin` carries new stream heads and `Signal`s between
//!   processes (`bus.rs`).

mod account_data;
mod accounts;
mod backup;
mod bus;
mod conn;
mod dehydrated;
mod devices;
mod events;
mod jobs;
mod keys;
mod migrations;
mod receipts;
mod rooms;
mod sliding_sync;
mod state;
mod to_device;
mod writer;

use std::{
    str::FromStr,
    sync::{Arc, atomic::AtomicI64},
};

use crate::{StorageError, StorageResult};
pub use conn::PgConn;
pub use migrations::translate as translate_migration;

/// Connections for reads and short writes, per process.
const POOL_SIZE: usize = 16;

pub struct PgStore {
    pool: conn::PgPool,
    writer: writer::Writer,
    head: Arc<AtomicI64>,
    bus: bus::Bus,
}

impl PgStore {
    pub async fn open(url: &str) -> StorageResult<Self> {
        let config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StorageError::Config(format!("invalid PostgreSQL URL: {e}")))?;
        let mut conn = PgConn::connect(&config).await?;
        migrations::run(&mut conn).await?;
        let head: i64 = conn.query_one("SELECT pos FROM stream_head WHERE id = 1", &[]).await?.get(0);
        drop(conn);
        let head = Arc::new(AtomicI64::new(head));
        let origin = format!("{:016x}", rand_origin());
        let bus = bus::Bus::start(config.clone(), head.clone(), origin.clone()).await?;
        let writer = writer::Writer::start(config.clone(), head.clone(), origin);
        Ok(Self { pool: conn::PgPool::new(config, POOL_SIZE), writer, head, bus })
    }

    /// A connection of the pool, for tools (migration, tests) that need raw SQL.
    pub async fn connection(&self) -> StorageResult<impl std::ops::DerefMut<Target = PgConn> + '_> {
        self.pool.get().await
    }
}

/// A per-process id, so a process can ignore its own notifications.
fn rand_origin() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

/// Reads a non-negative BIGINT as u64.
fn to_u64(v: i64) -> u64 {
    v.max(0) as u64
}

/// Creates database `name` through `admin_url` (a URL of any database of the cluster, e.g.
/// `postgres://user@host/postgres`) and returns the URL of the new database.
pub async fn create_database(admin_url: &str, name: &str) -> StorageResult<String> {
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StorageError::Config(format!("invalid database name {name:?}")));
    }
    let config = tokio_postgres::Config::from_str(admin_url)
        .map_err(|e| StorageError::Config(format!("invalid PostgreSQL URL: {e}")))?;
    let mut conn = PgConn::connect(&config).await?;
    conn.batch(&format!("CREATE DATABASE {name}")).await?;
    let (base, _) = admin_url.rsplit_once('/').ok_or_else(|| StorageError::Config("URL has no database".into()))?;
    let query = admin_url.split_once('?').map(|(_, q)| format!("?{q}")).unwrap_or_default();
    Ok(format!("{}/{name}{query}", base.split('?').next().unwrap_or(base)))
}
