use async_trait::async_trait;
use myelin_core::types::{OwnedUserId, UserId};

use crate::{MediaRecord, StorageResult};

/// A media as admins see it: its record and what admins decided about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminMediaRecord {
    pub media: MediaRecord,
    pub last_access_ms: u64,
    /// The admin who quarantined it (its bytes are no longer served).
    pub quarantined_by: Option<OwnedUserId>,
    /// Kept safe from quarantine and from bulk deletion.
    pub protected: bool,
}

/// One user's uploads in total.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaUsage {
    pub user_id: OwnedUserId,
    pub displayname: Option<String>,
    pub media_count: u64,
    pub media_length: u64,
}

/// Which old media a bulk deletion takes.
#[derive(Clone, Debug)]
pub struct OldMediaQuery<'a> {
    /// This server's name: only its uploads are considered.
    pub origin: &'a str,
    /// Last downloaded (or uploaded) before then.
    pub before_ms: u64,
    /// Larger than this many bytes.
    pub size_gt: u64,
    pub limit: usize,
}

/// What admins decide about media: quarantine, protection, and the lists they look at.
#[async_trait]
pub trait MediaAdminRepo {
    /// Quarantines these media (those not protected); answers how many became quarantined.
    async fn quarantine_media(&self, media: &[(String, String)], by: &UserId, now_ms: u64) -> StorageResult<u64>;
    /// Lifts a quarantine; false if there was none.
    async fn unquarantine_media(&self, origin: &str, media_id: &str) -> StorageResult<bool>;
    /// Whether the media is quarantined (its bytes and thumbnails are not served).
    async fn is_quarantined(&self, origin: &str, media_id: &str) -> StorageResult<bool>;
    /// Protects a media from quarantine and bulk deletion, or lifts that.
    async fn set_media_protected(&self, origin: &str, media_id: &str, protected: bool) -> StorageResult<()>;
    /// One media with what admins decided about it.
    async fn admin_media(&self, origin: &str, media_id: &str) -> StorageResult<Option<AdminMediaRecord>>;
    /// A user's uploads, newest first, `offset`/`limit` paged, and how many there are.
    async fn uploads_of(
        &self,
        uploader: &UserId,
        offset: u64,
        limit: usize,
    ) -> StorageResult<(Vec<AdminMediaRecord>, u64)>;
    /// Local uploads a bulk deletion may take: complete, not protected, matching `query`,
    /// oldest access first.
    async fn old_local_media(&self, query: OldMediaQuery<'_>) -> StorageResult<Vec<(String, String)>>;
    /// Uploads per user, most bytes first, `offset`/`limit` paged, and how many users uploaded.
    async fn media_usage(&self, offset: u64, limit: usize) -> StorageResult<(Vec<MediaUsage>, u64)>;
}
