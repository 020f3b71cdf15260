use async_trait::async_trait;
use myelin_core::types::{OwnedUserId, UserId};

use crate::StorageResult;

/// One entry of the content repository: what an `mxc://{origin}/{media_id}` URI names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaRecord {
    pub origin: String,
    pub media_id: String,
    pub uploader: Option<OwnedUserId>,
    pub content_type: Option<String>,
    pub upload_name: Option<String>,
    /// The blob's length and sha256 (hex); `None` while an asynchronous upload is pending.
    pub content: Option<MediaContent>,
    pub created_ms: u64,
    /// A pending upload may be filled until then.
    pub unused_expires_ms: Option<u64>,
}

/// Where a media's bytes are: the blob of this hash, this long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaContent {
    pub sha256: String,
    pub length: u64,
}

/// The bytes and description that fill a reserved media id.
#[derive(Clone, Debug)]
pub struct MediaFill<'a> {
    pub origin: &'a str,
    pub media_id: &'a str,
    pub uploader: &'a UserId,
    pub content_type: Option<&'a str>,
    pub upload_name: Option<&'a str>,
    pub content: &'a MediaContent,
    pub now_ms: u64,
}

/// What filling a reserved media id came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FillOutcome {
    Filled,
    NotFound,
    /// Another user reserved it.
    NotYours,
    AlreadyUploaded,
    Expired,
}

/// A thumbnail of a media at one of the standard sizes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThumbnailRecord {
    pub origin: String,
    pub media_id: String,
    pub width: u32,
    pub height: u32,
    /// `crop` or `scale`.
    pub method: String,
    pub content_type: String,
    pub content: MediaContent,
    /// When it was made (or fetched from the media's server).
    pub created_ms: u64,
}

/// The content repository's records.
#[async_trait]
pub trait MediaRepo {
    /// Stores the record of a complete upload (or of a remote media fetched).
    async fn put_media(&self, record: &MediaRecord) -> StorageResult<()>;
    /// Reserves an id for an asynchronous upload (`record` has no content), unless its uploader
    /// already holds `max_pending` unexpired reservations: false then.
    async fn reserve_media(&self, record: &MediaRecord, max_pending: usize, now_ms: u64) -> StorageResult<bool>;
    /// Fills a reserved id, if it is the uploader's, still empty and not expired.
    async fn fill_reserved_media(&self, fill: MediaFill<'_>) -> StorageResult<FillOutcome>;
    async fn media(&self, origin: &str, media_id: &str) -> StorageResult<Option<MediaRecord>>;
    /// Stores a thumbnail's record; one made meanwhile by another request stays.
    async fn put_media_thumbnail(&self, thumbnail: &ThumbnailRecord) -> StorageResult<()>;
    async fn media_thumbnail(
        &self,
        origin: &str,
        media_id: &str,
        width: u32,
        height: u32,
        method: &str,
    ) -> StorageResult<Option<ThumbnailRecord>>;
    /// Records a download at `now_ms`.
    async fn touch_media(&self, origin: &str, media_id: &str, now_ms: u64) -> StorageResult<()>;
    /// Complete media of `origin` (or, if `other_origins`, of every origin but it) not downloaded
    /// since `before_ms`, oldest access first, at most `limit`.
    async fn media_unused_since(
        &self,
        origin: &str,
        other_origins: bool,
        before_ms: u64,
        limit: usize,
    ) -> StorageResult<Vec<MediaRecord>>;
    /// Other origins' media (not `origin`'s) that have thumbnails here made before `before_ms`
    /// but no media row (their server's thumbnail was fetched, not the original), at most `limit`.
    async fn thumbnailed_remote_media_since(
        &self,
        origin: &str,
        before_ms: u64,
        limit: usize,
    ) -> StorageResult<Vec<(String, String)>>;
    /// Deletes these media (`(origin, media_id)`) and their thumbnails; answers the blobs no
    /// record names any more (the caller deletes them from the blob store).
    async fn delete_media(&self, media: &[(String, String)]) -> StorageResult<Vec<String>>;
    /// Bytes `uploader` uploaded since `since_ms`.
    async fn uploaded_bytes_since(&self, uploader: &UserId, since_ms: u64) -> StorageResult<u64>;
    /// Every `mxc://` URI in use as a picture that must outlive retention: users' avatars (global
    /// and per room) and rooms' avatars.
    async fn avatar_uris(&self) -> StorageResult<Vec<String>>;
}
