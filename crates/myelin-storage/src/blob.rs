//! Media bytes, content-addressed by SHA-256: a blob is written once however many uploads carry
//! it. One interface, [`BlobStore`]; the filesystem store under the data directory is the
//! default. Bytes stream in and out in chunks, never held whole in memory.

use std::{
    path::{Path, PathBuf},
    pin::Pin,
    sync::atomic::{AtomicU64, Ordering},
};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{MediaContent, StorageResult};

/// A stream of bytes going into or out of the store.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Size of the chunks read back from a blob.
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
}

/// Blobs as files `root/ab/cd/abcd…` (the hash's first two bytes as directories).
pub struct FsBlobStore {
    root: PathBuf,
    next_temp: AtomicU64,
}

impl FsBlobStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), next_temp: AtomicU64::new(0) }
    }

    /// The file of a blob; `None` for a name that is not a SHA-256 in lower-case hex.
    fn path_of(&self, sha256: &str) -> Option<PathBuf> {
        let valid = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        valid.then(|| self.root.join(&sha256[0..2]).join(&sha256[2..4]).join(sha256))
    }

    fn temp_path(&self) -> PathBuf {
        let n = self.next_temp.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        self.root.join("tmp").join(format!("{}-{nanos}-{n}", std::process::id()))
    }
}

/// Flushes a directory's entries (a rename into it) to disk.
async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    tokio::fs::File::open(dir).await?.sync_all().await
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn put(&self, mut bytes: ByteStream, max_len: u64) -> StorageResult<PutOutcome> {
        let temp = self.temp_path();
        if let Some(dir) = temp.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
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
        let content = match written {
            Ok(Some(content)) => content,
            Ok(None) => {
                let _ = tokio::fs::remove_file(&temp).await;
                return Ok(PutOutcome::TooLarge);
            }
            Err(err) => {
                let _ = tokio::fs::remove_file(&temp).await;
                return Err(err.into());
            }
        };
        let Some(path) = self.path_of(&content.sha256) else {
            return Err(std::io::Error::other("unexpected hash form").into());
        };
        if tokio::fs::try_exists(&path).await? {
            // The same bytes are stored already.
            tokio::fs::remove_file(&temp).await?;
            return Ok(PutOutcome::Stored(content));
        }
        let dir = path.parent().unwrap_or(&self.root);
        tokio::fs::create_dir_all(dir).await?;
        tokio::fs::rename(&temp, &path).await?;
        sync_dir(dir).await?;
        Ok(PutOutcome::Stored(content))
    }

    async fn get(&self, sha256: &str) -> StorageResult<Option<ByteStream>> {
        let Some(path) = self.path_of(sha256) else { return Ok(None) };
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let chunks = futures_util::stream::try_unfold(file, |mut file| async move {
            let mut buf = vec![0u8; READ_CHUNK];
            let n = file.read(&mut buf).await?;
            if n == 0 {
                return Ok(None);
            }
            buf.truncate(n);
            Ok(Some((Bytes::from(buf), file)))
        });
        Ok(Some(Box::pin(chunks)))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures_util::StreamExt;

    use super::{BlobStore, ByteStream, FsBlobStore, PutOutcome};

    fn stream_of(chunks: &[&'static [u8]]) -> ByteStream {
        let items: Vec<std::io::Result<Bytes>> = chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        Box::pin(futures_util::stream::iter(items))
    }

    async fn read_all(mut s: ByteStream) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk.expect("chunk"));
        }
        out
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("myelin-blob-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[tokio::test]
    async fn blobs_are_stored_once_by_hash_and_read_back_whole() {
        let dir = temp_dir("dedupe");
        let store = FsBlobStore::new(&dir);
        let PutOutcome::Stored(first) = store.put(stream_of(&[b"hello ", b"world"]), 100).await.expect("put") else {
            panic!("stored")
        };
        // sha256("hello world")
        assert_eq!(first.sha256, "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
        assert_eq!(first.length, 11);
        let PutOutcome::Stored(second) = store.put(stream_of(&[b"hello world"]), 100).await.expect("put") else {
            panic!("stored")
        };
        assert_eq!(second, first, "the same bytes are the same blob");
        let files = walk(&dir);
        assert_eq!(files.len(), 1, "one file for both uploads, no temporary left: {files:?}");
        let back = store.get(&first.sha256).await.expect("get").expect("present");
        assert_eq!(read_all(back).await, b"hello world");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_stream_past_the_limit_leaves_nothing_and_odd_names_find_nothing() {
        let dir = temp_dir("limit");
        let store = FsBlobStore::new(&dir);
        assert_eq!(store.put(stream_of(&[b"12345", b"6"]), 5).await.expect("put"), PutOutcome::TooLarge);
        assert!(walk(&dir).is_empty(), "{:?}", walk(&dir));
        for name in ["../../etc/passwd", "ABCDEF", "", &"g".repeat(64)] {
            assert!(store.get(name).await.expect("get").is_none(), "{name}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
            }
        }
        out
    }
}
