//! Blobs as files under a directory.

use std::path::PathBuf;

use async_trait::async_trait;

use super::{BlobStore, ByteStream, PutOutcome, Spool, file_stream, sync_dir, valid_hash};
use crate::StorageResult;

/// Blobs as files `root/ab/cd/abcd…` (the hash's first two bytes as directories); uploads are
/// spooled in `root/tmp` and renamed into place.
pub struct FsBlobStore {
    root: PathBuf,
    spool: Spool,
}

impl FsBlobStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        Self { spool: Spool::new(root.join("tmp")), root }
    }

    /// The file of a blob; `None` for a name that is not a SHA-256 in lower-case hex.
    fn path_of(&self, sha256: &str) -> Option<PathBuf> {
        valid_hash(sha256).then(|| self.root.join(&sha256[0..2]).join(&sha256[2..4]).join(sha256))
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn put(&self, bytes: ByteStream, max_len: u64) -> StorageResult<PutOutcome> {
        let Some((temp, content)) = self.spool.write(bytes, max_len).await? else { return Ok(PutOutcome::TooLarge) };
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
        match tokio::fs::File::open(&path).await {
            Ok(file) => Ok(Some(file_stream(file))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    async fn delete(&self, sha256: &str) -> StorageResult<()> {
        let Some(path) = self.path_of(sha256) else { return Ok(()) };
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err.into()),
        }
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
