//! Blobs as objects of an S3-compatible store (AWS S3, MinIO, Garage, …), keyed by their hash,
//! path-style (`{endpoint}/{bucket}/{sha256}`), signed with SigV4. An upload is spooled to a
//! local file first (its hash names the object and is signed as the payload's), then sent with
//! its length; an object already there is not sent again.

use std::path::PathBuf;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use myelin_core::config::S3Config;

use super::{BlobStore, ByteStream, PutOutcome, Spool, file_stream, sigv4, valid_hash};
use crate::{StorageError, StorageResult};

/// How long one request to the store may take (a large upload streams within it).
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

pub struct S3BlobStore {
    http: reqwest::Client,
    /// `scheme://host[:port]`, no trailing slash.
    endpoint: String,
    host: String,
    bucket: String,
    region: String,
    access_key: String,
    secret_key: String,
    spool: Spool,
}

fn s3_error(what: &str, detail: impl std::fmt::Display) -> StorageError {
    StorageError::Io(std::io::Error::other(format!("S3 {what}: {detail}")))
}

impl S3BlobStore {
    pub fn new(config: &S3Config, spool_dir: PathBuf) -> Result<Self, String> {
        let endpoint = config.endpoint.trim_end_matches('/').to_owned();
        let host = endpoint
            .strip_prefix("https://")
            .or_else(|| endpoint.strip_prefix("http://"))
            .filter(|h| !h.is_empty() && !h.contains('/'))
            .ok_or_else(|| format!("media.s3.endpoint must be http(s)://host[:port], not {endpoint:?}"))?
            .to_owned();
        // The Host header leaves out a default port: so must the signature.
        let default_port = if endpoint.starts_with("https://") { ":443" } else { ":80" };
        let host = host.strip_suffix(default_port).map_or(host.clone(), str::to_owned);
        let bucket_ok = !config.bucket.is_empty()
            && config.bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(format!("media.s3.bucket {:?} is not a bucket name", config.bucket));
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the S3 client: {e}"))?;
        Ok(Self {
            http,
            endpoint,
            host,
            bucket: config.bucket.clone(),
            region: config.region.clone(),
            access_key: config.access_key.clone(),
            secret_key: config.secret_key.clone(),
            spool: Spool::new(spool_dir),
        })
    }

    /// A signed request for the object `sha256`.
    fn request(&self, method: reqwest::Method, sha256: &str, payload_sha256: &str) -> reqwest::RequestBuilder {
        let path = format!("/{}/{sha256}", self.bucket);
        let unix_time = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let headers = sigv4::sign(
            &sigv4::Request { method: method.as_str(), host: &self.host, path: &path, payload_sha256, unix_time },
            &sigv4::Credentials {
                access_key: &self.access_key,
                secret_key: &self.secret_key,
                region: &self.region,
                service: "s3",
            },
        );
        let mut builder = self.http.request(method, format!("{}{path}", self.endpoint));
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        builder
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(&self, bytes: ByteStream, max_len: u64) -> StorageResult<PutOutcome> {
        let Some((temp, content)) = self.spool.write(bytes, max_len).await? else { return Ok(PutOutcome::TooLarge) };
        let sent = async {
            let head = self
                .request(reqwest::Method::HEAD, &content.sha256, sigv4::EMPTY_PAYLOAD_SHA256)
                .send()
                .await
                .map_err(|e| s3_error("HEAD", e))?;
            if head.status().is_success() {
                return Ok(()); // the same bytes are stored already
            }
            let file = tokio::fs::File::open(&temp).await?;
            let response = self
                .request(reqwest::Method::PUT, &content.sha256, &content.sha256)
                .header(reqwest::header::CONTENT_LENGTH, content.length)
                .body(reqwest::Body::wrap_stream(file_stream(file)))
                .send()
                .await
                .map_err(|e| s3_error("PUT", e))?;
            if !response.status().is_success() {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                return Err(s3_error("PUT", format!("{status}: {body}")));
            }
            StorageResult::Ok(())
        }
        .await;
        let _ = tokio::fs::remove_file(&temp).await;
        sent.map(|()| PutOutcome::Stored(content))
    }

    async fn get(&self, sha256: &str) -> StorageResult<Option<ByteStream>> {
        if !valid_hash(sha256) {
            return Ok(None);
        }
        let response = self
            .request(reqwest::Method::GET, sha256, sigv4::EMPTY_PAYLOAD_SHA256)
            .send()
            .await
            .map_err(|e| s3_error("GET", e))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            return Err(s3_error("GET", format!("{status}: {body}")));
        }
        Ok(Some(Box::pin(response.bytes_stream().map_err(std::io::Error::other))))
    }

    async fn delete(&self, sha256: &str) -> StorageResult<()> {
        if !valid_hash(sha256) {
            return Ok(());
        }
        let response = self
            .request(reqwest::Method::DELETE, sha256, sigv4::EMPTY_PAYLOAD_SHA256)
            .send()
            .await
            .map_err(|e| s3_error("DELETE", e))?;
        // S3 answers 204 whether or not the object was there.
        if !response.status().is_success() && response.status() != reqwest::StatusCode::NOT_FOUND {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            return Err(s3_error("DELETE", format!("{status}: {body}")));
        }
        Ok(())
    }
}
