//! Media (the content repository): upload and download throughput of files of a few megabytes,
//! and thumbnail latency for a camera-sized JPEG — the first request (a server may have to make
//! it) and a repeat — through the authenticated media API (MSC3916), as Element does them.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use reqwest::Method;
use serde_json::Value;

use crate::client::User;
use crate::scenarios::{Params, register_users};

/// The picture's size for thumbnails (a 3-megapixel photo).
const PHOTO: (u32, u32) = (2000, 1500);

pub struct MediaResult {
    /// Per file: MB/s of its upload, and of its download.
    pub upload_mb_s: Vec<f64>,
    pub download_mb_s: Vec<f64>,
    /// Per photo: the first 320×240 thumbnail request, then the same again (ms).
    pub thumbnail_first_ms: Vec<f64>,
    pub thumbnail_again_ms: Vec<f64>,
}

/// Bytes that do not compress, different for each `seed`.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn photo(seed: u32) -> Result<Vec<u8>> {
    let (w, h) = PHOTO;
    let picture = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([((x + seed) % 256) as u8, ((y * 3 + seed) % 256) as u8, ((x ^ y) % 256) as u8])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(picture)
        .write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85))?;
    Ok(out)
}

async fn upload(user: &User, content_type: &str, bytes: Vec<u8>) -> Result<String> {
    let resp = user
        .server
        .http()
        .post(format!("{}/_matrix/media/v3/upload", user.server.base()))
        .bearer_auth(user.access_token())
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("upload answered {status}: {body}");
    }
    let uri = body["content_uri"].as_str().context("upload without content_uri")?;
    Ok(uri.trim_start_matches("mxc://").to_owned())
}

async fn get_bytes(user: &User, path: &str) -> Result<usize> {
    let resp = user
        .server
        .http()
        .request(Method::GET, format!("{}{path}", user.server.base()))
        .bearer_auth(user.access_token())
        .send()
        .await?;
    let status = resp.status();
    let bytes = resp.bytes().await?;
    if !status.is_success() {
        bail!("GET {path} answered {status}: {}", String::from_utf8_lossy(&bytes));
    }
    Ok(bytes.len())
}

/// `files` uploads and downloads of `size_mb` MiB each, and thumbnails of `photos` photos.
pub async fn media(
    params: &Params,
    server: &crate::client::Server,
    files: usize,
    size_mb: usize,
    photos: usize,
) -> Result<MediaResult> {
    let users = register_users(server, params, "media", 1).await?;
    let user = users.first().context("no user")?;
    let size = size_mb << 20;
    let mut result = MediaResult {
        upload_mb_s: Vec::new(),
        download_mb_s: Vec::new(),
        thumbnail_first_ms: Vec::new(),
        thumbnail_again_ms: Vec::new(),
    };
    for i in 0..files {
        let data = noise(size, i as u64 + 1);
        let started = Instant::now();
        let media = upload(user, "application/octet-stream", data).await?;
        result.upload_mb_s.push(size_mb as f64 / started.elapsed().as_secs_f64());
        let started = Instant::now();
        let got = get_bytes(user, &format!("/_matrix/client/v1/media/download/{media}")).await?;
        if got != size {
            bail!("downloaded {got} bytes of {size}");
        }
        result.download_mb_s.push(size_mb as f64 / started.elapsed().as_secs_f64());
    }
    for i in 0..photos {
        let media = upload(user, "image/jpeg", photo(i as u32)?).await?;
        let path = format!("/_matrix/client/v1/media/thumbnail/{media}?width=320&height=240&method=scale");
        let started = Instant::now();
        get_bytes(user, &path).await?;
        result.thumbnail_first_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        let started = Instant::now();
        get_bytes(user, &path).await?;
        result.thumbnail_again_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(result)
}
