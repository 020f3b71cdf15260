//! `myelin db migrate`: SQLite → PostgreSQL, with a progress bar on standard error.

use std::io::Write;

use anyhow::{Context, bail};

pub async fn migrate(from: &str, to: &str) -> anyhow::Result<()> {
    let Some(path) = from.strip_prefix("sqlite:") else { bail!("--from must be sqlite:PATH, not {from:?}") };
    let path = std::path::Path::new(path);
    if !path.exists() {
        bail!("{} does not exist", path.display());
    }
    if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        bail!("--to must be a postgres:// URL");
    }
    let target = myelin_storage::Database::open(to).await.context("cannot open the PostgreSQL database")?;
    let started = std::time::Instant::now();
    let mut last_draw = std::time::Instant::now() - std::time::Duration::from_secs(1);
    let mut progress = |table: &str, done: u64, total: u64| {
        // Redraw at most 10 times a second, and always at a table's end.
        if done < total && last_draw.elapsed().as_millis() < 100 {
            return;
        }
        last_draw = std::time::Instant::now();
        let width = 30;
        let filled = (done * width as u64).checked_div(total).map_or(width, |f| (f as usize).min(width));
        let mut err = std::io::stderr().lock();
        let _ =
            write!(err, "\r{table:<22} [{}{}] {done:>9}/{total:<9}", "#".repeat(filled), " ".repeat(width - filled));
        if done >= total {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    };
    let report = myelin_storage::migrate::sqlite_to_postgres(path, &target, &mut progress)
        .await
        .context("migration failed; the target database was left unchanged")?;
    let rows: u64 = report.iter().map(|(_, n, _)| n).sum();
    println!("verified {} tables, {rows} rows: counts and checksums equal on both sides", report.len());
    for (table, count, checksum) in &report {
        println!("  {table:<22} {count:>9} rows  checksum {checksum:016x}");
    }
    println!("done in {:.1} s; start Myelin with --database {to}", started.elapsed().as_secs_f64());
    Ok(())
}
