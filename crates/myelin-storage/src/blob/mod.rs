//! Media bytes, content-addressed by SHA-256: a blob is written once however many uploads carry
//! it. One interface, [`BlobStore`]: files under the data directory (`fs.rs`, the default) or
//! an S3-compatible object store (`s3.rs`, for processes on several machines). Bytes stream in
//! and out in chunks, never held whole in memory.

mod fs;
mod s3;
mod sigv4;

use std::{
    path::{Path, PathBuf},
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use async_trait::async_trait;
use bytes::Bytes;
pub use fs::FsBlobStore;
use futures_util::{Stream, StreamExt};
use myelin_core::config::Config;
pub use s3::S3BlobStore;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::{MediaContent, StorageResult};

/// A stream of bytes going into or out of the store.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Size of the chunks read back from a file.
const READ_CHUNK: usize = 64 * 1024;

/// What storing a stream came to.
#[derive(Debug, PartialEq, Eq)]
pub enum PutOutcome {
    Stored(MediaContent),
    /// The stream went past the limit; nothing was kept.
    TooLarge,
}

#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores the stream's bytes, at most `max_len` of them. Durable when it returns.
    async fn put(&self, bytes: ByteStream, max_len: u64) -> StorageResult<PutOutcome>;
    /// The blob's bytes, if the store has it.
    async fn get(&self, sha256: &str) -> StorageResult<Option<ByteStream>>;
    /// Removes the blob (no record names it any more); a blob that is not there is no error.
    async fn delete(&self, sha256: &str) -> StorageResult<()>;
}

/// The blob store the configuration names: S3 if `[media.s3]` is set, else files under
/// `media.path` (default `<data_dir>/media`). Uploads are spooled under that path either way.
pub fn open_blob_store(config: &Config) -> Result<Arc<dyn BlobStore>, String> {
    let local = config.media_path();
    Ok(match &config.media.s3 {
        Some(s3) => Arc::new(S3BlobStore::new(s3, local.join("tmp"))?),
        None => Arc::new(FsBlobStore::new(local)),
    })
}

/// Whether `sha256` is a SHA-256 in lower-case hex (blob names are built from it).
fn valid_hash(sha256: &str) -> bool {
    sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Temporary files for bytes on their way in, unique within and across processes.
struct Spool {
    dir: PathBuf,
    next: AtomicU64,
}

impl Spool {
    fn new(dir: PathBuf) -> Self {
        Self { dir, next: AtomicU64::new(0) }
    }

    /// Writes the stream to a new temporary file, hashing as it goes; `None` (and no file) past
    /// `max_len`. The file is flushed to disk.
    async fn write(&self, mut bytes: ByteStream, max_len: u64) -> std::io::Result<Option<(PathBuf, MediaContent)>> {
        tokio::fs::create_dir_all(&self.dir).await?;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let temp = self.dir.join(format!("{}-{nanos}-{n}", std::process::id()));
        let written = async {
            let mut file = tokio::fs::File::create(&temp).await?;
            let mut hasher = Sha256::new();
            let mut length: u64 = 0;
            while let Some(chunk) = bytes.next().await {
                let chunk = chunk?;
                length += chunk.len() as u64;
                if length > max_len {
                    return Ok(None);
                }
                hasher.update(&chunk);
                file.write_all(&chunk).await?;
            }
            file.sync_all().await?;
            let sha256: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
            std::io::Result::Ok(Some(MediaContent { sha256, length }))
        }
        .await;
        match written {
            Ok(Some(content)) => Ok(Some((temp, content))),
            Ok(None) => {
                let _ = tokio::fs::remove_file(&temp).await;
                Ok(None)
            }
            Err(err) => {
                let _ = tokio::fs::remove_file(&temp).await;
                Err(err)
            }
        }
    }
}

/// A file's bytes as a stream of chunks.
fn file_stream(file: tokio::fs::File) -> ByteStream {
    use tokio::io::AsyncReadExt;
    Box::pin(futures_util::stream::try_unfold(file, |mut file| async move {
        let mut buf = vec![0u8; READ_CHUNK];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), file)))
    }))
}

/// Flushes a directory's entries (a rename into it) to disk.
async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    tokio::fs::File::open(dir).await?.sync_all().await
}
