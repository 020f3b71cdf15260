//! Keeping the content repository bounded: upload limits per user and period, and retention —
//! media not downloaded for a configured time is deleted (this server's and other servers'
//! cached copies separately; avatars always kept), its blobs with it once no record names them.
//! The retention pass runs from every process (`spawn_retention`); deleting what another process
//! deleted already is nothing.
//!
//! A blob is deleted after the transaction that removed its last record; an upload of the same
//! bytes that found the blob present a moment before and writes its record a moment after would
//! be left without bytes. The window is the few milliseconds between the two steps of that
//! upload, for a file nobody had downloaded for the whole lifetime.

use std::{collections::HashSet, sync::Arc, time::Duration};

use myelin_core::{ErrorCode, MatrixError, MatrixResult, types::UserId};

use crate::Services;

/// A download moves the media's last access at most this often (per process).
const ACCESS_GRANULARITY_MS: u64 = 60 * 60 * 1000;
/// Media one retention pass deletes at most, per kind (local, remote).
const RETENTION_BATCH: usize = 500;

/// Downloads already written recently, by `(origin, media_id)`.
#[derive(Default)]
pub struct MediaAccesses {
    written: crate::cache::Throttle<(String, String)>,
}

impl Services {
    /// Refuses an upload of `incoming` more bytes past one of the configured limits (400
    /// `M_RESOURCE_LIMIT_EXCEEDED`, as Synapse).
    pub(crate) async fn check_upload_limits(&self, uploader: &UserId, incoming: u64) -> MatrixResult<()> {
        let now = self.now_ms();
        for limit in &self.config.media.upload_limits {
            let used = self.store.uploaded_bytes_since(uploader, now.saturating_sub(limit.period_ms)).await?;
            if used.saturating_add(incoming) > limit.max_bytes {
                return Err(MatrixError::new(
                    ErrorCode::Other("M_RESOURCE_LIMIT_EXCEEDED"),
                    "Media upload limit exceeded",
                )
                .with_status(400));
            }
        }
        Ok(())
    }

    /// A media was downloaded (or thumbnailed): its last access moves, at most hourly.
    pub(crate) async fn media_accessed(&self, origin: &str, media_id: &str) {
        if self.config.media.local_media_lifetime_ms == 0 && self.config.media.remote_media_lifetime_ms == 0 {
            return;
        }
        let now = self.now_ms();
        let granularity = [self.config.media.local_media_lifetime_ms, self.config.media.remote_media_lifetime_ms]
            .into_iter()
            .filter(|l| *l > 0)
            .map(|l| l / 4)
            .fold(ACCESS_GRANULARITY_MS, u64::min);
        if !self.media_accesses.written.allow((origin.to_owned(), media_id.to_owned()), now, granularity) {
            return;
        }
        if let Err(err) = self.store.touch_media(origin, media_id, now).await {
            tracing::warn!(%err, origin, media_id, "could not record a media download");
        }
    }

    /// One retention pass: deletes media past its lifetime (avatars kept) and the blobs no
    /// record names any more. Answers how many media were deleted.
    pub async fn run_media_retention(&self) -> MatrixResult<usize> {
        let media = &self.config.media;
        if media.local_media_lifetime_ms == 0 && media.remote_media_lifetime_ms == 0 {
            return Ok(0);
        }
        let now = self.now_ms();
        let kept: HashSet<String> = self.store.avatar_uris().await?.into_iter().collect();
        let origin = self.server_name.as_str();
        let mut doomed: Vec<(String, String)> = Vec::new();
        for (lifetime, remote) in [(media.local_media_lifetime_ms, false), (media.remote_media_lifetime_ms, true)] {
            if lifetime == 0 {
                continue;
            }
            let old =
                self.store.media_unused_since(origin, remote, now.saturating_sub(lifetime), RETENTION_BATCH).await?;
            doomed.extend(
                old.into_iter()
                    .filter(|m| !kept.contains(&format!("mxc://{}/{}", m.origin, m.media_id)))
                    .map(|m| (m.origin, m.media_id)),
            );
            if remote {
                // Thumbnails fetched from other servers without their original.
                let fetched = self
                    .store
                    .thumbnailed_remote_media_since(origin, now.saturating_sub(lifetime), RETENTION_BATCH)
                    .await?;
                doomed.extend(fetched.into_iter().filter(|(o, id)| !kept.contains(&format!("mxc://{o}/{id}"))));
            }
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        let blobs = self.store.delete_media(&doomed).await?;
        for sha256 in &blobs {
            if let Err(err) = self.blobs.delete(sha256).await {
                tracing::warn!(%err, sha256, "could not delete a media blob");
            }
        }
        tracing::info!(media = doomed.len(), blobs = blobs.len(), "media retention: unused media deleted");
        Ok(doomed.len())
    }
}

/// Runs the retention pass every so often (a quarter of the shorter lifetime, between a second
/// and an hour) for as long as the services live.
pub fn spawn_retention(services: &Arc<Services>) {
    let media = &services.config.media;
    let lifetimes = [media.local_media_lifetime_ms, media.remote_media_lifetime_ms];
    let Some(shortest) = lifetimes.into_iter().filter(|l| *l > 0).min() else { return };
    let every = Duration::from_millis((shortest / 4).clamp(1_000, ACCESS_GRANULARITY_MS));
    let services = Arc::downgrade(services);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(s) = services.upgrade() else { return };
            if let Err(err) = s.run_media_retention().await {
                tracing::warn!(%err, "media retention");
            }
        }
    });
}
