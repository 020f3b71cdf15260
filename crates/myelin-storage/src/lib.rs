//! Storage: one repository trait per concern, and the backends that implement them.
//!
//! Invariants:
//! - Nothing above this crate sees SQL; nothing in this crate sees HTTP or Matrix auth rules.
//! - Every write is one atomic operation (`persist_event` writes the event, its state group,
//!   current state, memberships, extremities, push actions and transaction id together), so a crash
//!   never leaves half an event.
//! - Rows a sync must notice carry a position on the single global stream. `stream_head()` is the
//!   highest position whose write has committed; readers never look past it.
//! - Backends pass the same conformance suite (`tests/conformance.rs`).

pub mod error;
pub mod migrate;
pub mod postgres;
pub mod repo;
pub mod sqlite;

pub use error::{StorageError, StorageResult};
pub use repo::*;

use std::sync::Arc;

/// Opens the backend named by a database URL: `sqlite:PATH` or `postgres://...`.
pub async fn open(url: &str) -> StorageResult<Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        let store = sqlite::SqliteStore::open(std::path::Path::new(path)).await?;
        Ok(Arc::new(store))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::open(url).await?))
    } else {
        Err(StorageError::Config(format!("unsupported database URL {url:?}; expected sqlite:PATH or postgres://...")))
    }
}
