//! aiosmtpd (PyPI) as the SMTP server a test's Myelin sends email to: every message lands in a
//! Maildir the test reads. The venv is the test tools' (`scripts/test-tools-venv.sh`).

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{free_port, s3::tools_venv};

/// A running aiosmtpd on 127.0.0.1 storing what it receives; stopped when dropped.
pub struct MailSink {
    child: tokio::process::Child,
    maildir: PathBuf,
    pub port: u16,
}

impl MailSink {
    pub async fn start() -> Result<Self> {
        let venv = tools_venv()?;
        let port = free_port()?;
        let maildir = std::env::temp_dir().join(format!("myelin-mail-{:016x}", rand::random::<u64>()));
        let child = tokio::process::Command::new(venv.join("bin/python"))
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("start aiosmtpd")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if Instant::now() > deadline {
                bail!("aiosmtpd did not listen on port {port}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self { child, maildir, port })
    }

    /// The `[email]` section sending to this sink (no TLS: it is on loopback).
    pub fn config(&self) -> String {
        format!(
            "[email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\ntls = \"none\"\nfrom = \"Myelin <noreply@example.org>\"\n",
            self.port
        )
    }

    /// Every message received so far, whole (headers and body), oldest first.
    pub fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else { return Vec::new() };
        let mut files: Vec<(std::time::SystemTime, PathBuf)> =
            entries.flatten().filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path()))).collect();
        files.sort();
        files.into_iter().filter_map(|(_, path)| std::fs::read_to_string(path).ok()).collect()
    }

    /// Waits for the `n`-th message (counting from 1) to arrive.
    pub async fn wait_for(&self, n: usize) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(message) = self.messages().into_iter().nth(n - 1) {
                return Ok(message);
            }
            if Instant::now() > deadline {
                bail!("message {n} never arrived at the mail sink");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for MailSink {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.maildir);
    }
}
