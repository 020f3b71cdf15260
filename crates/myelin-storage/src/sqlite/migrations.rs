//! Embedded migrations, applied in order inside one transaction each; `user_version` records the
//! last applied one.

use rusqlite::Connection;

/// Every migration, in order. The same files feed the PostgreSQL backend (`postgres/migrations.rs`).
pub const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_initial.sql"),
    include_str!("../../migrations/0002_jobs.sql"),
    include_str!("../../migrations/0003_e2ee.sql"),
    include_str!("../../migrations/0004_key_backup.sql"),
    include_str!("../../migrations/0005_dehydrated_devices.sql"),
    include_str!("../../migrations/0006_sliding_sync.sql"),
    include_str!("../../migrations/0007_room_list_deltas.sql"),
    include_str!("../../migrations/0008_member_counts.sql"),
];

pub fn run(conn: &mut Connection) -> rusqlite::Result<()> {
    let current: usize = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))?.max(0) as usize;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = index + 1, "applied database migration");
    }
    Ok(())
}
