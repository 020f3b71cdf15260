//! The content repository: uploads (whole, or reserved first and filled later as MSC2246 has
//! it), downloads and the media config. Records live in the database (`MediaRepo`), bytes in the
//! blob store, content-addressed, so the same file uploaded twice is stored once. Thumbnails
//! (`thumbnail.rs`) are made on first request at one of a few standard sizes and kept.

pub mod multipart;
pub mod preview;
pub mod retention;
pub mod thumbnail;

use std::time::Duration;

use futures_util::StreamExt;
use myelin_core::{ErrorCode, MatrixError, MatrixResult, types::UserId};
use myelin_storage::{
    FillOutcome, MediaFill, MediaRecord, ThumbnailRecord,
    blob::{ByteStream, PutOutcome},
};
use serde_json::{Value, json};

use crate::{Services, accounts::Requester};

/// Length of the media ids this server makes.
const MEDIA_ID_LEN: usize = 24;
/// Longest content type or file name kept.
const MAX_NAME_BYTES: usize = 255;
/// Default and longest wait for a reserved upload's bytes (`timeout_ms`).
const DEFAULT_DOWNLOAD_WAIT: Duration = Duration::from_secs(20);
const MAX_DOWNLOAD_WAIT: Duration = Duration::from_secs(60);
/// How often a download waiting for a reserved upload looks again (any process may fill it).
const PENDING_POLL: Duration = Duration::from_millis(100);

/// Images with more pixels than this are not thumbnailed (checked from the header).
const MAX_THUMBNAIL_SOURCE_PIXELS: u64 = 32_000_000;
/// Bytes held in memory, as the stream the blob store takes.
fn stream_of(bytes: Vec<u8>) -> ByteStream {
    Box::pin(futures_util::stream::once(async move { Ok(bytes::Bytes::from(bytes)) }))
}

/// Largest thumbnail kept from another server.
const MAX_REMOTE_THUMBNAIL_BYTES: u64 = 4 * 1024 * 1024;

/// Types a browser may render in place (the spec's list); anything else is served as an
/// attachment so an uploaded page cannot run in the server's origin.
const INLINE_TYPES: &[&str] = &[
    "text/css",
    "text/plain",
    "text/csv",
    "application/json",
    "application/ld+json",
    "image/jpeg",
    "image/gif",
    "image/png",
    "image/apng",
    "image/webp",
    "image/avif",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "video/quicktime",
    "audio/mp4",
    "audio/webm",
    "audio/aac",
    "audio/mpeg",
    "audio/ogg",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-pn-wav",
    "audio/flac",
    "audio/x-flac",
];

/// An upload as it comes in.
pub struct Upload {
    pub content_type: Option<String>,
    pub filename: Option<String>,
    /// What the request said its length is, if it did (refused early when over the limit).
    pub declared_length: Option<u64>,
    pub bytes: ByteStream,
}

/// A media's bytes and how to present them.
pub struct Download {
    pub content_type: String,
    pub filename: Option<String>,
    pub length: u64,
    /// Whether a browser may show it in place (else: as an attachment).
    pub inline: bool,
    pub bytes: ByteStream,
}

fn too_large(max: u64) -> MatrixError {
    MatrixError::new(ErrorCode::TooLarge, format!("Uploads are limited to {max} bytes"))
}

/// A content type or file name as given, refused if unreasonable.
fn checked_name(value: Option<String>, what: &str) -> MatrixResult<Option<String>> {
    match value {
        Some(v) if v.len() > MAX_NAME_BYTES || v.chars().any(char::is_control) => {
            Err(MatrixError::invalid_param(format!("Invalid {what}")))
        }
        Some(v) if v.is_empty() => Ok(None),
        other => Ok(other),
    }
}

/// Whether `id` can be a media id (`[A-Za-z0-9_-]+`).
pub fn valid_media_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_NAME_BYTES
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Services {
    /// A download as another server receives it: the `Content-Type` (multipart/mixed with a
    /// fresh boundary) and the body.
    pub fn media_as_multipart(&self, download: Download) -> (String, ByteStream) {
        let Download { content_type, filename, inline, bytes, .. } = download;
        let boundary = self.random.alphanumeric(32);
        let disposition = multipart::content_disposition(inline, filename.as_deref());
        let body = multipart::body(&boundary, &content_type, &disposition, bytes);
        (format!("multipart/mixed; boundary={boundary}"), body)
    }

    /// `GET /_matrix/client/v1/media/config`.
    pub fn media_config(&self) -> Value {
        json!({ "m.upload.size": self.config.media.max_upload_bytes })
    }

    /// Stores an upload's bytes; `None` when it was larger than allowed.
    async fn store_upload_bytes(
        &self,
        uploader: &UserId,
        upload: &mut Upload,
    ) -> MatrixResult<myelin_storage::MediaContent> {
        let max = self.config.media.max_upload_bytes;
        if upload.declared_length.is_some_and(|n| n > max) {
            return Err(too_large(max));
        }
        self.check_upload_limits(uploader, upload.declared_length.unwrap_or(0)).await?;
        let bytes = std::mem::replace(&mut upload.bytes, Box::pin(futures_util::stream::empty()));
        let content = match self.blobs.put(bytes, max).await? {
            PutOutcome::Stored(content) => content,
            PutOutcome::TooLarge => return Err(too_large(max)),
        };
        if upload.declared_length.is_none() {
            // Sent without a length: checked again now that it is known.
            self.check_upload_limits(uploader, content.length).await?;
        }
        Ok(content)
    }

    /// `POST /_matrix/media/v3/upload`: stores the bytes, then the record; answers the `mxc://` URI.
    pub async fn upload_media(&self, requester: &Requester, mut upload: Upload) -> MatrixResult<String> {
        let content_type = checked_name(upload.content_type.take(), "content type")?;
        let filename = checked_name(upload.filename.take(), "filename")?;
        let content = self.store_upload_bytes(&requester.user_id, &mut upload).await?;
        let media_id = self.random.alphanumeric(MEDIA_ID_LEN);
        let now = self.clock.now_ms();
        let record = MediaRecord {
            origin: self.server_name.to_string(),
            media_id: media_id.clone(),
            uploader: Some(requester.user_id.clone()),
            content_type,
            upload_name: filename,
            content: Some(content),
            created_ms: now,
            unused_expires_ms: None,
        };
        self.store.put_media(&record).await?;
        Ok(format!("mxc://{}/{media_id}", self.server_name))
    }

    /// `POST /_matrix/media/v1/create` (MSC2246): reserves an id to upload to later.
    pub async fn create_media(&self, requester: &Requester) -> MatrixResult<Value> {
        let media_id = self.random.alphanumeric(MEDIA_ID_LEN);
        let now = self.clock.now_ms();
        let expires = now + self.config.media.unused_expiry_ms;
        let record = MediaRecord {
            origin: self.server_name.to_string(),
            media_id: media_id.clone(),
            uploader: Some(requester.user_id.clone()),
            content_type: None,
            upload_name: None,
            content: None,
            created_ms: now,
            unused_expires_ms: Some(expires),
        };
        if !self.store.reserve_media(&record, self.config.media.max_pending_uploads, now).await? {
            return Err(MatrixError::new(
                ErrorCode::LimitExceeded { retry_after_ms: 60_000 },
                "Too many pending uploads: upload to the ones you have first",
            )
            .with_status(429));
        }
        Ok(json!({ "content_uri": format!("mxc://{}/{media_id}", self.server_name), "unused_expires_at": expires }))
    }

    /// `PUT /_matrix/media/v3/upload/{serverName}/{mediaId}` (MSC2246): fills a reserved id.
    pub async fn upload_reserved_media(
        &self,
        requester: &Requester,
        server_name: &str,
        media_id: &str,
        mut upload: Upload,
    ) -> MatrixResult<()> {
        if server_name != self.server_name.as_str() || !valid_media_id(media_id) {
            return Err(MatrixError::not_found("No such reserved media"));
        }
        let content_type = checked_name(upload.content_type.take(), "content type")?;
        let filename = checked_name(upload.filename.take(), "filename")?;
        // Refuse what can be refused before reading the body.
        let now = self.clock.now_ms();
        self.check_fillable(self.store.media(server_name, media_id).await?, requester, now)?;
        let content = self.store_upload_bytes(&requester.user_id, &mut upload).await?;
        let fill = MediaFill {
            origin: server_name,
            media_id,
            uploader: &requester.user_id,
            content_type: content_type.as_deref(),
            upload_name: filename.as_deref(),
            content: &content,
            now_ms: self.clock.now_ms(),
        };
        match self.store.fill_reserved_media(fill).await? {
            FillOutcome::Filled => Ok(()),
            FillOutcome::NotFound | FillOutcome::Expired => Err(MatrixError::not_found("No such reserved media")),
            FillOutcome::NotYours => Err(MatrixError::forbidden("This media id was reserved by another user")),
            FillOutcome::AlreadyUploaded => Err(cannot_overwrite()),
        }
    }

    fn check_fillable(&self, record: Option<MediaRecord>, requester: &Requester, now: u64) -> MatrixResult<()> {
        let Some(record) = record else { return Err(MatrixError::not_found("No such reserved media")) };
        if record.uploader.as_ref() != Some(&requester.user_id) {
            return Err(MatrixError::forbidden("This media id was reserved by another user"));
        }
        if record.content.is_some() {
            return Err(cannot_overwrite());
        }
        if record.unused_expires_ms.is_some_and(|t| t <= now) {
            return Err(MatrixError::not_found("No such reserved media"));
        }
        Ok(())
    }

    /// `GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}`: the thumbnail at the
    /// standard size serving the request, made now if it was never asked for.
    pub async fn thumbnail_media(
        &self,
        server_name: &str,
        media_id: &str,
        width: u32,
        height: u32,
        method: thumbnail::Method,
        timeout: Option<Duration>,
    ) -> MatrixResult<Download> {
        self.check_not_quarantined(server_name, media_id).await?;
        let size = thumbnail::snap(width, height, method);
        if server_name != self.server_name.as_str() && valid_media_id(media_id) {
            let method = size.method.as_str();
            // Another server's media: a thumbnail kept here is served whether or not the
            // original is; one not fetched yet comes from its server, without the original.
            let kept = self.store.media_thumbnail(server_name, media_id, size.width, size.height, method).await?;
            if let Some(kept) = kept {
                // Viewing a thumbnail is using the media (a thumbnail fetched without the original
                // is fetched again once per `remote_media_lifetime_ms`: it has no media row).
                self.media_accessed(server_name, media_id).await;
                return self.serve_thumbnail(kept).await;
            }
            if self.store.media(server_name, media_id).await?.is_none() {
                let wait = timeout.unwrap_or(DEFAULT_DOWNLOAD_WAIT).min(MAX_DOWNLOAD_WAIT);
                match self.fetch_remote_thumbnail(server_name, media_id, size, wait).await {
                    Ok(thumb) => return self.serve_thumbnail(thumb).await,
                    // A server from before authenticated media: the original, thumbnailed here.
                    Err(err) if err.code == ErrorCode::Unrecognized => {}
                    Err(err) => return Err(err),
                }
            }
        }
        let record = self.media_record(server_name, media_id, timeout).await?;
        let method = size.method.as_str();
        let kept = self.store.media_thumbnail(server_name, media_id, size.width, size.height, method).await?;
        let thumb = match kept {
            Some(kept) => kept,
            None => {
                // One request makes it; the others wait and find it made.
                let key = format!("thumbnail:{server_name}/{media_id}/{}x{}/{method}", size.width, size.height);
                let _making = self.locks.lock(&key).await;
                match self.store.media_thumbnail(server_name, media_id, size.width, size.height, method).await? {
                    Some(kept) => kept,
                    None => self.make_thumbnail(record, size).await?,
                }
            }
        };
        self.serve_thumbnail(thumb).await
    }

    /// A kept thumbnail's bytes.
    async fn serve_thumbnail(&self, thumb: ThumbnailRecord) -> MatrixResult<Download> {
        let Some(bytes) = self.blobs.get(&thumb.content.sha256).await? else {
            tracing::error!(media_id = %thumb.media_id, sha256 = %thumb.content.sha256, "a thumbnail's blob is missing from the store");
            return Err(MatrixError::not_found("No such media"));
        };
        Ok(Download {
            inline: true,
            content_type: thumb.content_type,
            filename: None,
            length: thumb.content.length,
            bytes,
        })
    }

    async fn make_thumbnail(&self, record: MediaRecord, size: thumbnail::Size) -> MatrixResult<ThumbnailRecord> {
        let no_thumbnail = || MatrixError::not_found("No thumbnail can be made of this media");
        let Some(content) = record.content.clone() else { return Err(no_thumbnail()) };
        let content_type = record.content_type.clone().unwrap_or_default();
        if !content_type.starts_with("image/") || content.length > self.config.media.max_upload_bytes {
            return Err(no_thumbnail());
        }
        // Decoding is CPU work and holds the whole image: off the async threads, a few at a time
        // (the bytes are read only once a turn has come).
        let _permit = self.thumbnailer.acquire().await.map_err(|_| MatrixError::internal("Thumbnailer closed"))?;
        let Some(mut stream) = self.blobs.get(&content.sha256).await? else { return Err(no_thumbnail()) };
        let mut data = Vec::with_capacity(usize::try_from(content.length).unwrap_or(0));
        while let Some(chunk) = stream.next().await {
            data.extend_from_slice(&chunk.map_err(myelin_storage::StorageError::from)?);
        }
        let made = tokio::task::spawn_blocking(move || thumbnail::make(&data, size, MAX_THUMBNAIL_SOURCE_PIXELS))
            .await
            .map_err(|e| MatrixError::internal(format!("Thumbnailer failed: {e}")))?;
        let (content_type, content) = match made {
            thumbnail::Outcome::Made(thumb) => match self.blobs.put(stream_of(thumb.bytes), u64::MAX).await? {
                PutOutcome::Stored(stored) => (thumb.content_type.to_owned(), stored),
                PutOutcome::TooLarge => return Err(no_thumbnail()),
            },
            thumbnail::Outcome::Original(detected) => (detected.to_owned(), content),
            thumbnail::Outcome::Refused(why) => {
                tracing::debug!(media_id = %record.media_id, %why, "no thumbnail");
                return Err(no_thumbnail());
            }
        };
        let thumb = ThumbnailRecord {
            origin: record.origin,
            media_id: record.media_id,
            width: size.width,
            height: size.height,
            method: size.method.as_str().to_owned(),
            content_type,
            content,
            created_ms: self.clock.now_ms(),
        };
        self.store.put_media_thumbnail(&thumb).await?;
        Ok(thumb)
    }

    /// Another server's thumbnail of its media (`/_matrix/federation/v1/media/thumbnail`), kept
    /// like one made here. Only an image this server recognises is kept and served, with the
    /// type its bytes show (not the one the other server claims). One fetch per thumbnail at a
    /// time in this process.
    async fn fetch_remote_thumbnail(
        &self,
        origin: &str,
        media_id: &str,
        size: thumbnail::Size,
        wait: Duration,
    ) -> MatrixResult<ThumbnailRecord> {
        let not_found = || MatrixError::not_found("No such media");
        let server = ruma::ServerName::parse(origin).map_err(|_| not_found())?;
        let method = size.method.as_str();
        let key = format!("remote_thumbnail:{origin}/{media_id}/{}x{}/{method}", size.width, size.height);
        let _fetching = self.locks.lock(&key).await;
        if let Some(kept) = self.store.media_thumbnail(origin, media_id, size.width, size.height, method).await? {
            return Ok(kept); // fetched meanwhile
        }
        let path = format!(
            "/_matrix/federation/v1/media/thumbnail/{media_id}?width={}&height={}&method={method}&animated=false&timeout_ms={}",
            size.width,
            size.height,
            wait.as_millis()
        );
        let response = match self.federation_get_streaming(&server, &path, true).await {
            Ok(response) => response,
            Err(err) if err.errcode() == Some("M_UNRECOGNIZED") => {
                return Err(MatrixError::new(ErrorCode::Unrecognized, "No thumbnails over federation there"));
            }
            Err(err) if err.errcode() == Some("M_NOT_FOUND") => return Err(not_found()),
            Err(err) => return Err(err.into()),
        };
        let (_, _, mut bytes) = self.media_part_of(origin, response).await?;
        let mut data = Vec::new();
        while let Some(chunk) = bytes.next().await {
            data.extend_from_slice(&chunk.map_err(myelin_storage::StorageError::from)?);
            if data.len() as u64 > MAX_REMOTE_THUMBNAIL_BYTES {
                return Err(MatrixError::internal(format!("{origin} sent an oversized thumbnail")).with_status(502));
            }
        }
        let Some(content_type) = thumbnail::image_type(&data) else {
            return Err(MatrixError::internal(format!("{origin} sent a thumbnail that is no image")).with_status(502));
        };
        let content = match self.blobs.put(stream_of(data), MAX_REMOTE_THUMBNAIL_BYTES).await? {
            PutOutcome::Stored(content) => content,
            PutOutcome::TooLarge => return Err(not_found()),
        };
        let thumb = ThumbnailRecord {
            origin: origin.to_owned(),
            media_id: media_id.to_owned(),
            width: size.width,
            height: size.height,
            method: method.to_owned(),
            content_type: content_type.to_owned(),
            content,
            created_ms: self.clock.now_ms(),
        };
        self.store.put_media_thumbnail(&thumb).await?;
        Ok(thumb)
    }

    /// The file part of another server's multipart media answer (MSC3916): its content type,
    /// disposition and bytes, following a `Location` part to where the bytes are.
    async fn media_part_of(
        &self,
        origin: &str,
        response: reqwest::Response,
    ) -> MatrixResult<(Option<String>, Option<String>, ByteStream)> {
        let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let boundary = header(reqwest::header::CONTENT_TYPE)
            .as_deref()
            .and_then(multipart::boundary_of)
            .ok_or_else(|| MatrixError::internal(format!("{origin} sent media not as multipart")).with_status(502))?;
        let answer: ByteStream =
            Box::pin(futures_util::TryStreamExt::map_err(response.bytes_stream(), std::io::Error::other));
        let part = multipart::file_part(&boundary, answer)
            .await
            .map_err(|e| MatrixError::internal(format!("{origin} sent unreadable media: {e}")).with_status(502))?;
        Ok(match part.body {
            multipart::FileBody::Bytes(bytes) => (part.content_type, part.content_disposition, bytes),
            multipart::FileBody::Location(url) => {
                let response = self.federation_get_url(origin, &url).await?;
                let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
                let content_type = part.content_type.or_else(|| header(reqwest::header::CONTENT_TYPE));
                let disposition = part.content_disposition.or_else(|| header(reqwest::header::CONTENT_DISPOSITION));
                let bytes: ByteStream =
                    Box::pin(futures_util::TryStreamExt::map_err(response.bytes_stream(), std::io::Error::other));
                (content_type, disposition, bytes)
            }
        })
    }

    /// A media's record once its bytes are there, waiting up to `timeout` for a reserved
    /// upload to be filled.
    async fn media_record(
        &self,
        server_name: &str,
        media_id: &str,
        timeout: Option<Duration>,
    ) -> MatrixResult<MediaRecord> {
        if !valid_media_id(media_id) {
            return Err(MatrixError::not_found("No such media"));
        }
        let wait = timeout.unwrap_or(DEFAULT_DOWNLOAD_WAIT).min(MAX_DOWNLOAD_WAIT);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let Some(record) = self.store.media(server_name, media_id).await? else {
                if server_name != self.server_name.as_str() {
                    return self.fetch_remote_media(server_name, media_id, wait).await;
                }
                return Err(MatrixError::not_found("No such media"));
            };
            if record.content.is_some() {
                self.media_accessed(server_name, media_id).await;
                return Ok(record);
            }
            if record.unused_expires_ms.is_some_and(|t| t <= self.clock.now_ms()) {
                return Err(MatrixError::not_found("No such media"));
            }
            if tokio::time::Instant::now() + PENDING_POLL > deadline {
                return Err(MatrixError::new(
                    ErrorCode::Other("M_NOT_YET_UPLOADED"),
                    "The media has not been uploaded yet",
                )
                .with_status(504));
            }
            tokio::time::sleep(PENDING_POLL).await;
        }
    }

    /// Another server's media, fetched over federation (`/_matrix/federation/v1/media/download`,
    /// else the legacy unauthenticated path with `allow_remote=false`), stored like a local
    /// upload and kept. One fetch per media at a time in this process.
    async fn fetch_remote_media(&self, origin: &str, media_id: &str, wait: Duration) -> MatrixResult<MediaRecord> {
        let not_found = || MatrixError::not_found("No such media");
        let server = ruma::ServerName::parse(origin).map_err(|_| not_found())?;
        let _fetching = self.locks.lock(&format!("remote_media:{origin}/{media_id}")).await;
        if let Some(record) = self.store.media(origin, media_id).await?.filter(|r| r.content.is_some()) {
            return Ok(record); // fetched meanwhile
        }
        let timeout_ms = wait.as_millis();
        let path = format!("/_matrix/federation/v1/media/download/{media_id}?timeout_ms={timeout_ms}");
        let (content_type, disposition, bytes) = match self.federation_get_streaming(&server, &path, true).await {
            Ok(response) => self.media_part_of(origin, response).await?,
            // A server from before authenticated media: its legacy path, asking it not to fetch further.
            Err(err) if err.errcode() == Some("M_UNRECOGNIZED") => {
                let legacy = format!(
                    "/_matrix/media/v3/download/{origin}/{media_id}?allow_remote=false&timeout_ms={timeout_ms}"
                );
                let response = self.federation_get_streaming(&server, &legacy, false).await?;
                let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
                let (content_type, disposition) =
                    (header(reqwest::header::CONTENT_TYPE), header(reqwest::header::CONTENT_DISPOSITION));
                let bytes: ByteStream =
                    Box::pin(futures_util::TryStreamExt::map_err(response.bytes_stream(), std::io::Error::other));
                (content_type, disposition, bytes)
            }
            Err(err) => return Err(err.into()),
        };
        let max = self.config.media.max_upload_bytes;
        let content = match self.blobs.put(bytes, max).await {
            Ok(PutOutcome::Stored(content)) => content,
            Ok(PutOutcome::TooLarge) => return Err(too_large(max).with_status(502)),
            Err(err) => {
                tracing::warn!(origin, media_id, error = %err, "fetching remote media failed");
                return Err(MatrixError::internal(format!("Fetching the media from {origin} failed")).with_status(502));
            }
        };
        let record = MediaRecord {
            origin: origin.to_owned(),
            media_id: media_id.to_owned(),
            uploader: None,
            content_type: checked_name(content_type, "content type").ok().flatten(),
            upload_name: disposition
                .as_deref()
                .and_then(multipart::disposition_filename)
                .and_then(|n| checked_name(Some(n), "filename").ok().flatten()),
            content: Some(content),
            created_ms: self.clock.now_ms(),
            unused_expires_ms: None,
        };
        match self.store.put_media(&record).await {
            Ok(()) => Ok(record),
            // Another process fetched it meanwhile.
            Err(err) if err.is_conflict() => self.store.media(origin, media_id).await?.ok_or_else(not_found),
            Err(err) => Err(err.into()),
        }
    }

    /// `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}`: the bytes, waiting up to
    /// `timeout` for a reserved upload to be filled.
    pub async fn download_media(
        &self,
        server_name: &str,
        media_id: &str,
        timeout: Option<Duration>,
    ) -> MatrixResult<Download> {
        self.check_not_quarantined(server_name, media_id).await?;
        let record = self.media_record(server_name, media_id, timeout).await?;
        let Some(content) = record.content else { return Err(MatrixError::not_found("No such media")) };
        let Some(bytes) = self.blobs.get(&content.sha256).await? else {
            tracing::error!(media_id, sha256 = %content.sha256, "a media's blob is missing from the store");
            return Err(MatrixError::not_found("No such media"));
        };
        let content_type = record.content_type.unwrap_or_else(|| "application/octet-stream".to_owned());
        let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        Ok(Download {
            inline: INLINE_TYPES.contains(&essence.as_str()),
            content_type,
            filename: record.upload_name,
            length: content.length,
            bytes,
        })
    }
}

fn cannot_overwrite() -> MatrixError {
    MatrixError::new(ErrorCode::Other("M_CANNOT_OVERWRITE_MEDIA"), "This media has already been uploaded")
        .with_status(409)
}

#[cfg(test)]
mod tests {
    use super::{checked_name, valid_media_id};

    #[test]
    fn media_ids_and_names_are_checked() {
        assert!(valid_media_id("abcXYZ019_-"));
        for bad in ["", "a/b", "a.b", "..", "a b", "ü"] {
            assert!(!valid_media_id(bad), "{bad:?}");
        }
        assert_eq!(checked_name(Some(String::new()), "x").ok(), Some(None));
        assert!(checked_name(Some("a\nb".into()), "x").is_err());
        assert!(checked_name(Some("x".repeat(256)), "x").is_err());
        assert_eq!(checked_name(Some("photo.png".into()), "x").ok(), Some(Some("photo.png".into())));
    }
}
