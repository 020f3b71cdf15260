//! Storage: one repository trait per concern (`repo/`), implemented once (`store/`) over a
//! database that is SQLite or PostgreSQL (`db/`).
//!
//! Invariants:
//! - Nothing above this crate sees SQL; nothing in this crate sees HTTP or Matrix auth rules.
//! - Every write is one atomic operation (`enqueue_event` writes the event, its state group,
//!   current state, memberships, extremities, push actions and transaction id together), so a crash
//!   never leaves half an event.
//! - Rows a sync must notice carry a position on the global stream. `stream_head()` is a position
//!   at or below which everything has committed (or never will); readers never look past it.
//! - Both backends pass the same conformance suite (`tests/conformance/`).

pub mod blob;
pub mod db;
pub mod error;
pub mod migrate;
pub mod repo;
pub mod snapshot;
mod store;

use std::sync::Arc;

pub use db::{Change, Database};
pub use error::{StorageError, StorageResult};
pub use repo::*;
pub use store::{KEY_COUNTS_CACHE, TOKEN_OWNERS_CACHE};

/// Opens the backend named by a database URL: `sqlite:PATH` or `postgres://...`.
pub async fn open(url: &str) -> StorageResult<Arc<dyn Store>> {
    Ok(Arc::new(Database::open(url).await?))
}

/// Creates database `name` through `admin_url` (a URL of any database of a PostgreSQL cluster)
/// and returns the URL of the new database (tests and tools).
pub use db::postgres::create_database;
