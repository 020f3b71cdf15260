//! Moving an installation from SQLite to PostgreSQL (`myelin db migrate`). Every table of the
//! schema is copied row for row inside one SQLite read transaction (a consistent snapshot, even
//! while a server still runs on it), in batches, then verified: per table, the row count and an
//! order-independent checksum of the rows must be equal on both sides.

use std::hash::{DefaultHasher, Hash, Hasher};

use rusqlite::{Connection, OpenFlags, types::Value};
use tokio_postgres::types::ToSql;

use crate::{Database, StorageError, StorageResult, db::postgres::PgConn};

/// Rows per INSERT.
const BATCH: usize = 1_000;

/// What was moved, per table: (name, rows, checksum).
pub type MigrationReport = Vec<(String, u64, u64)>;

/// Progress of one table: (table, rows copied so far, rows in all).
pub type Progress<'a> = &'a mut dyn FnMut(&str, u64, u64);

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Int,
    Text,
}

struct Table {
    name: String,
    columns: Vec<(String, Kind)>,
}

fn tables(conn: &Connection) -> StorageResult<Vec<Table>> {
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    // Full-text indexes (FTS5 virtual tables and their shadow tables `<name>_*`) are SQLite's
    // own: PostgreSQL builds its index from the copied rows.
    let virtual_tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%'")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for name in names {
        if virtual_tables.iter().any(|v| name == *v || name.starts_with(&format!("{v}_"))) {
            continue;
        }
        let columns = conn
            .prepare(&format!("SELECT name, type FROM pragma_table_info('{name}') ORDER BY cid"))?
            .query_map([], |r| {
                let ty: String = r.get(1)?;
                Ok((r.get::<_, String>(0)?, if ty.eq_ignore_ascii_case("INTEGER") { Kind::Int } else { Kind::Text }))
            })?
            .collect::<Result<_, _>>()?;
        out.push(Table { name, columns });
    }
    Ok(out)
}

/// One cell, normalised the same way on both sides for the checksum.
fn hash_cell(h: &mut DefaultHasher, cell: &Value) {
    match cell {
        Value::Null => 0u8.hash(h),
        Value::Integer(i) => (1u8, i).hash(h),
        Value::Text(t) => (2u8, t).hash(h),
        Value::Real(f) => (3u8, f.to_bits()).hash(h),
        Value::Blob(b) => (4u8, b).hash(h),
    }
}

fn row_hash(cells: &[Value]) -> u64 {
    let mut h = DefaultHasher::new();
    for cell in cells {
        hash_cell(&mut h, cell);
    }
    h.finish()
}

/// Copies every table of the SQLite database at `from` into the empty PostgreSQL database behind
/// `to` (migrated to the same schema version), then verifies counts and checksums.
pub async fn sqlite_to_postgres(
    from: &std::path::Path,
    to: &Database,
    progress: Progress<'_>,
) -> StorageResult<MigrationReport> {
    let to = to.postgres().ok_or_else(|| StorageError::Config("the target must be a PostgreSQL database".into()))?;
    let mut source = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let version: i64 = source.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version as usize != crate::db::sqlite::MIGRATIONS.len() {
        return Err(StorageError::Config(format!(
            "{} is at schema version {version}; start this version of Myelin on it once to upgrade it first",
            from.display()
        )));
    }
    let snapshot = source.transaction()?;
    let tables = tables(&snapshot)?;
    let mut target = to.connect().await?;
    for table in &tables {
        let sql = if table.name == "stream_head" {
            "SELECT pos > 0 FROM stream_head".to_owned()
        } else {
            format!("SELECT EXISTS (SELECT 1 FROM {})", table.name)
        };
        if target.client().query_one(&sql, &[]).await?.get::<_, bool>(0) {
            return Err(StorageError::Config(format!("the target database is not empty (table {})", table.name)));
        }
    }

    target.batch("BEGIN").await?;
    let copied = copy_all(&snapshot, &tables, &mut target, progress).await;
    match copied {
        Ok(()) => target.batch("COMMIT").await?,
        Err(err) => {
            let _ = target.batch("ROLLBACK").await;
            return Err(err);
        }
    }

    // Verify: the same rows on both sides, table by table.
    let mut report = Vec::new();
    for table in &tables {
        let (count, sum) = sqlite_checksum(&snapshot, table)?;
        let (pg_count, pg_sum) = postgres_checksum(&mut target, table).await?;
        if (count, sum) != (pg_count, pg_sum) {
            return Err(StorageError::Corrupt(format!(
                "verification failed for {}: {count} rows (checksum {sum:016x}) in SQLite, \
                 {pg_count} rows (checksum {pg_sum:016x}) in PostgreSQL",
                table.name
            )));
        }
        report.push((table.name.clone(), count, sum));
    }
    Ok(report)
}

async fn copy_all(
    source: &Connection,
    tables: &[Table],
    target: &mut PgConn,
    progress: Progress<'_>,
) -> StorageResult<()> {
    for table in tables {
        let total: i64 = source.query_row(&format!("SELECT COUNT(*) FROM {}", table.name), [], |r| r.get(0))?;
        let total = total.max(0) as u64;
        progress(&table.name, 0, total);
        if table.name == "stream_head" {
            target.batch("DELETE FROM stream_head").await?;
        }
        let columns: Vec<&str> = table.columns.iter().map(|(c, _)| c.as_str()).collect();
        let casts: Vec<String> = table
            .columns
            .iter()
            .enumerate()
            .map(|(i, (_, kind))| format!("${}::{}[]", i + 1, if *kind == Kind::Int { "BIGINT" } else { "TEXT" }))
            .collect();
        let insert =
            format!("INSERT INTO {} ({}) SELECT * FROM UNNEST({})", table.name, columns.join(", "), casts.join(", "));
        let mut stmt = source.prepare(&format!("SELECT {} FROM {}", columns.join(", "), table.name))?;
        let mut rows = stmt.query([])?;
        let mut done = 0u64;
        loop {
            // Column-wise buffers of one batch.
            let mut ints: Vec<Vec<Option<i64>>> = vec![Vec::new(); columns.len()];
            let mut texts: Vec<Vec<Option<String>>> = vec![Vec::new(); columns.len()];
            let mut n = 0;
            while n < BATCH {
                let Some(row) = rows.next()? else { break };
                for (i, (_, kind)) in table.columns.iter().enumerate() {
                    match (kind, row.get::<_, Value>(i)?) {
                        (_, Value::Null) => {
                            ints[i].push(None);
                            texts[i].push(None);
                        }
                        (Kind::Int, Value::Integer(v)) => ints[i].push(Some(v)),
                        (Kind::Text, Value::Text(t)) => texts[i].push(Some(t)),
                        (_, other) => {
                            return Err(StorageError::Corrupt(format!(
                                "{}.{}: unexpected value {other:?}",
                                table.name, table.columns[i].0
                            )));
                        }
                    }
                }
                n += 1;
            }
            if n == 0 {
                break;
            }
            let params: Vec<&(dyn ToSql + Sync)> = table
                .columns
                .iter()
                .enumerate()
                .map(|(i, (_, kind))| -> &(dyn ToSql + Sync) {
                    if *kind == Kind::Int { &ints[i] } else { &texts[i] }
                })
                .collect();
            target.client().execute(&insert, &params).await?;
            done += n as u64;
            progress(&table.name, done, total);
        }
    }
    // Syncs resume with tokens from the SQLite days: every kind may have changed up to the copied
    // head (the change rows of PostgreSQL, `db/changes.rs`).
    target
        .batch(&format!(
            "INSERT INTO stream_changes (kind, pos) SELECT kind, pos FROM stream_head, generate_series(0, {}) AS \
             kinds(kind) WHERE id = 1 ON CONFLICT DO NOTHING",
            crate::Change::ASKED.len() - 1
        ))
        .await?;
    // Identity columns (every `id INTEGER PRIMARY KEY` of the schema) continue after the
    // copied ids.
    for table in tables.iter().filter(|t| t.columns.iter().any(|(c, _)| c == "id")) {
        let name = &table.name;
        let sequence = format!("pg_get_serial_sequence('{name}', 'id')");
        target
            .batch(&format!(
                "SELECT setval({sequence}, GREATEST((SELECT MAX(id) FROM {name}), 1)) WHERE {sequence} IS NOT NULL"
            ))
            .await?;
    }
    Ok(())
}

fn sqlite_checksum(conn: &Connection, table: &Table) -> StorageResult<(u64, u64)> {
    let columns: Vec<&str> = table.columns.iter().map(|(c, _)| c.as_str()).collect();
    let mut stmt = conn.prepare(&format!("SELECT {} FROM {}", columns.join(", "), table.name))?;
    let mut rows = stmt.query([])?;
    let (mut count, mut sum) = (0u64, 0u64);
    while let Some(row) = rows.next()? {
        let cells: Vec<Value> = (0..columns.len()).map(|i| row.get::<_, Value>(i)).collect::<Result<_, _>>()?;
        count += 1;
        sum = sum.wrapping_add(row_hash(&cells));
    }
    Ok((count, sum))
}

async fn postgres_checksum(conn: &mut PgConn, table: &Table) -> StorageResult<(u64, u64)> {
    let columns: Vec<&str> = table.columns.iter().map(|(c, _)| c.as_str()).collect();
    // A cursor, so a big table is read in pieces rather than all at once.
    conn.batch("BEGIN").await?;
    // One cursor name per table: the FETCH statement is prepared and cached with its row shape.
    let cursor = format!("verify_{}", table.name);
    conn.batch(&format!("DECLARE {cursor} NO SCROLL CURSOR FOR SELECT {} FROM {}", columns.join(", "), table.name))
        .await?;
    let (mut count, mut sum) = (0u64, 0u64);
    loop {
        let rows = conn.client().query(&format!("FETCH 5000 FROM {cursor}"), &[]).await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let cells: Vec<Value> = table
                .columns
                .iter()
                .enumerate()
                .map(|(i, (_, kind))| match kind {
                    Kind::Int => row.get::<_, Option<i64>>(i).map_or(Value::Null, Value::Integer),
                    Kind::Text => row.get::<_, Option<String>>(i).map_or(Value::Null, Value::Text),
                })
                .collect();
            count += 1;
            sum = sum.wrapping_add(row_hash(&cells));
        }
    }
    conn.batch(&format!("CLOSE {cursor}; COMMIT")).await?;
    Ok((count, sum))
}
