//! Online backups of an SQLite installation (`myelin db backup`): `VACUUM INTO` writes a
//! consistent copy of the database (as of one read transaction) to a new file while the server
//! keeps running on it. PostgreSQL installations are backed up with `pg_dump` (docs/operations.md).

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::{StorageError, StorageResult};

/// Copies the SQLite database at `database` (a `sqlite:PATH` URL) into `to`, which must not
/// exist; answers the copy's size in bytes.
pub fn sqlite_snapshot(database: &str, to: &Path) -> StorageResult<u64> {
    let Some(path) = database.strip_prefix("sqlite:") else {
        return Err(StorageError::Corrupt(format!(
            "{database}: only SQLite installations are backed up this way; use pg_dump for PostgreSQL"
        )));
    };
    if to.exists() {
        return Err(StorageError::Corrupt(format!("{} exists: choose a new file", to.display())));
    }
    let to_text = to.to_str().ok_or_else(|| StorageError::Corrupt(format!("{}: not UTF-8", to.display())))?;
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.execute("VACUUM INTO ?1", [to_text])?;
    Ok(std::fs::metadata(to).map(|m| m.len()).unwrap_or(0))
}
