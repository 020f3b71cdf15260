//! Backups restored: an SQLite installation copied while the server runs (`myelin db backup`),
//! a PostgreSQL one with `pg_dump`; the server started on the restored copy serves the history
//! as of the backup and logs its users in, as docs/operations.md describes.

use anyhow::{Context, Result, bail, ensure};
use myelin_e2e::{NO_RATE_LIMITS, TestServer, bodies, new_postgres_database, repeat_of_sqlite_pass};
use serde_json::json;

/// The history the test checks after the restore: messages before the backup, one after it.
async fn history_around_a_backup(server: &TestServer) -> Result<(myelin_e2e::Client, String, Vec<String>)> {
    let alice = server.register("alice").await?;
    let room = alice.create_room(json!({ "name": "Kept" })).await?;
    let mut before = Vec::new();
    for i in 0..20 {
        let body = format!("before {i}");
        alice.send_message(&room, &body).await?;
        before.push(body);
    }
    Ok((alice, room, before))
}

async fn check_restored(server: &TestServer, room: &str, before: &[String]) -> Result<()> {
    let alice = server.login("alice").await?;
    let messages = alice.all_messages_forward(room, 50).await?;
    let texts = bodies(&messages);
    let kept: Vec<&String> = texts.iter().filter(|b| b.starts_with("before")).collect();
    ensure!(kept.len() == before.len(), "the history before the backup: {texts:?}");
    ensure!(!texts.iter().any(|b| b == "after the backup"), "nothing written after the backup: {texts:?}");
    // The restored server takes new writes.
    alice.send_message(room, "after the restore").await?;
    Ok(())
}

#[tokio::test]
async fn an_sqlite_backup_taken_while_serving_is_restored() -> Result<()> {
    // SQLite on both passes of the suite (the backup is SQLite's).
    let mut server = TestServer::start_sqlite().await?;
    let (alice, room, before) = history_around_a_backup(&server).await?;
    let backup = server.data_dir().join("backup.db");
    let out = server.admin(&["db", "backup", "--to", &backup.display().to_string()])?;
    ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again = server.admin(&["db", "backup", "--to", &backup.display().to_string()])?;
    ensure!(!again.status.success(), "an existing file is not overwritten");
    alice.send_message(&room, "after the backup").await?;
    server.stop().await?;
    // Restore: the backup replaces the database (its WAL files go with the old one).
    let db = server.data_dir().join("myelin.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::copy(&backup, &db).context("restore the backup")?;
    server.start_again().await?;
    check_restored(&server, &room, &before).await
}

#[tokio::test]
async fn a_postgres_dump_is_restored_into_a_new_database() -> Result<()> {
    if repeat_of_sqlite_pass("a_postgres_dump_is_restored_into_a_new_database") {
        return Ok(());
    }
    let mut server = TestServer::start_postgres_with(NO_RATE_LIMITS).await?;
    let (alice, room, before) = history_around_a_backup(&server).await?;
    let url = server.database_url().context("a PostgreSQL server")?.to_owned();
    let bindir = std::fs::read_dir("/usr/lib/postgresql")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_dump").exists())
        .max()
        .context("pg_dump from the PostgreSQL installation")?;
    let dump = server.data_dir().join("myelin.dump");
    let out = std::process::Command::new(bindir.join("pg_dump"))
        .args(["--format=custom", "--no-owner", "--file"])
        .arg(&dump)
        .arg(&url)
        .output()?;
    if !out.status.success() {
        bail!("pg_dump: {}", String::from_utf8_lossy(&out.stderr));
    }
    alice.send_message(&room, "after the backup").await?;
    let restored = new_postgres_database().await?;
    let out = std::process::Command::new(bindir.join("pg_restore"))
        .args(["--no-owner", "--exit-on-error", "--dbname"])
        .arg(&restored)
        .arg(&dump)
        .output()?;
    if !out.status.success() {
        bail!("pg_restore: {}", String::from_utf8_lossy(&out.stderr));
    }
    server.restart_on_database(&restored).await?;
    check_restored(&server, &room, &before).await
}
