//! The content repository as a client uses it: uploads, authenticated downloads (MSC3916),
//! asynchronous uploads (MSC2246), limits, the headers that keep uploaded files harmless, and
//! bytes that survive a crash.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use myelin_e2e::{Client, TestServer, errcode};
use reqwest::Method;
use serde_json::Value;

/// `mxc://server/id` → (server, id).
fn mxc_parts(uri: &Value) -> Result<(String, String)> {
    let uri = uri.as_str().context("content_uri is a string")?;
    let rest = uri.strip_prefix("mxc://").context("an mxc URI")?;
    let (server, id) = rest.split_once('/').context("server/id")?;
    Ok((server.to_owned(), id.to_owned()))
}

async fn upload(client: &Client, name: &str, content_type: &str, bytes: &[u8]) -> Result<(String, String)> {
    let (status, body) = client
        .send_bytes(Method::POST, &format!("/_matrix/media/v3/upload?filename={name}"), content_type, bytes.to_vec())
        .await?;
    ensure!(status == 200, "upload: {status} {body}");
    mxc_parts(&body["content_uri"])
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Count of blob files under the data directory's media store.
fn blob_files(server: &TestServer) -> usize {
    fn walk(dir: &std::path::Path) -> usize {
        let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
        entries
            .flatten()
            .map(|e| {
                let path = e.path();
                if path.is_dir() {
                    if path.file_name().is_some_and(|n| n == "tmp") { 0 } else { walk(&path) }
                } else {
                    1
                }
            })
            .sum()
    }
    walk(&server.data_dir().join("media"))
}

/// Upload, then download with a token (never without), by the uploader and by another user; the
/// file name and type come back; the same bytes are stored once; the old unauthenticated paths
/// are frozen; an HTML upload is served as an attachment under a sandboxing CSP.
#[tokio::test]
async fn uploads_are_downloaded_with_a_token_and_served_harmlessly() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let png: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
    let (origin, id) = upload(&alice, "cat%20photo.png", "image/png", &png).await?;
    ensure!(origin == server.server_name(), "{origin}");
    let path = format!("/_matrix/client/v1/media/download/{origin}/{id}");

    let (status, _, body) = server.anonymous().get_bytes(&path).await?;
    ensure!(status == 401, "no token, no media: {status} {}", String::from_utf8_lossy(&body));
    for reader in [&alice, &bob] {
        let (status, headers, body) = reader.get_bytes(&path).await?;
        ensure!(status == 200, "{status}");
        ensure!(body == png, "the same {} bytes back (got {})", png.len(), body.len());
        ensure!(header(&headers, "content-type") == "image/png", "{headers:?}");
        ensure!(header(&headers, "content-disposition") == "inline; filename*=utf-8''cat%20photo.png", "{headers:?}");
        ensure!(header(&headers, "content-security-policy").starts_with("sandbox"), "{headers:?}");
        ensure!(header(&headers, "cross-origin-resource-policy") == "cross-origin", "{headers:?}");
    }
    let (status, headers, _) = bob.get_bytes(&format!("{path}/renamed.png")).await?;
    ensure!(status == 200 && header(&headers, "content-disposition").ends_with("''renamed.png"), "{headers:?}");

    // The same bytes again: a new id, one blob.
    let (_, second) = upload(&bob, "copy.png", "image/png", &png).await?;
    ensure!(second != id, "each upload has its own id");
    ensure!(blob_files(&server) == 1, "one stored file for both: {}", blob_files(&server));

    for legacy in [
        format!("/_matrix/media/v3/download/{origin}/{id}"),
        format!("/_matrix/media/r0/download/{origin}/{id}"),
        format!("/_matrix/media/v3/thumbnail/{origin}/{id}?width=32&height=32"),
        "/_matrix/media/v3/config".to_owned(),
    ] {
        let (status, body) = alice.get(&legacy).await?;
        ensure!(status == 404 && errcode(&body) == "M_NOT_FOUND", "{legacy}: frozen: {status} {body}");
    }

    let (_, page) = upload(&alice, "page.html", "text/html", b"<script>alert(1)</script>").await?;
    let (status, headers, _) = bob.get_bytes(&format!("/_matrix/client/v1/media/download/{origin}/{page}")).await?;
    ensure!(status == 200, "{status}");
    ensure!(header(&headers, "content-disposition").starts_with("attachment"), "{headers:?}");
    ensure!(header(&headers, "x-content-type-options") == "nosniff", "{headers:?}");

    // Not an image: no thumbnail.
    let (status, body) =
        bob.get(&format!("/_matrix/client/v1/media/thumbnail/{origin}/{page}?width=32&height=32")).await?;
    ensure!(status == 404 && errcode(&body) == "M_NOT_FOUND", "{status} {body}");

    for (missing, what) in [
        (format!("/_matrix/client/v1/media/download/{origin}/nothere"), "unknown id"),
        (format!("/_matrix/client/v1/media/download/{origin}/..%2F..%2Fetc"), "not a media id"),
    ] {
        let (status, body) = alice.get(&missing).await?;
        ensure!(status == 404 && errcode(&body) == "M_NOT_FOUND", "{what}: {status} {body}");
    }
    Ok(())
}

fn png(width: u32, height: u32) -> Result<Vec<u8>> {
    let picture = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(picture).write_with_encoder(image::codecs::png::PngEncoder::new(&mut out))?;
    Ok(out)
}

/// Thumbnails as Element asks for them: a crop is exactly the size asked, a scale keeps the
/// aspect ratio, a picture smaller than asked is its own thumbnail, odd sizes are served from the
/// standard ones (so repeated odd requests make nothing new), bad parameters are refused.
#[tokio::test]
async fn thumbnails_are_made_at_standard_sizes_and_never_upscaled() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let (origin, big) = upload(&alice, "big.png", "image/png", &png(1000, 500)?).await?;
    let small_png = png(20, 20)?;
    let (_, small) = upload(&alice, "small.png", "image/png", &small_png).await?;
    let thumbnail = |id: &str, query: &str| format!("/_matrix/client/v1/media/thumbnail/{origin}/{id}?{query}");

    let (status, headers, body) = alice.get_bytes(&thumbnail(&big, "width=96&height=96&method=crop")).await?;
    ensure!(status == 200 && header(&headers, "content-type") == "image/png", "{status} {headers:?}");
    let crop = image::load_from_memory(&body)?;
    ensure!((crop.width(), crop.height()) == (96, 96), "{}×{}", crop.width(), crop.height());
    let (status, _, body) = alice.get_bytes(&thumbnail(&big, "width=320&height=240&method=scale")).await?;
    ensure!(status == 200, "{status}");
    let scale = image::load_from_memory(&body)?;
    ensure!((scale.width(), scale.height()) == (320, 160), "{}×{}", scale.width(), scale.height());

    let (status, _, body) = alice.get_bytes(&thumbnail(&small, "width=800&height=600")).await?;
    ensure!(status == 200 && body == small_png, "a 20×20 picture is its own 800×600 thumbnail: {status}");
    // Served as what its bytes are, not as what the uploader called them.
    let (_, disguised) = upload(&alice, "x.svg", "image/svg+xml", &small_png).await?;
    let (status, headers, _) = alice.get_bytes(&thumbnail(&disguised, "width=96&height=96")).await?;
    ensure!(status == 200 && header(&headers, "content-type") == "image/png", "{status} {headers:?}");

    // Odd sizes: served from the standard ones already made.
    let files = blob_files(&server);
    for query in ["width=90&height=90&method=crop", "width=300&height=200", "width=33&height=17&method=crop"] {
        let (status, _, _) = alice.get_bytes(&thumbnail(&big, query)).await?;
        ensure!(status == 200, "{query}: {status}");
    }
    ensure!(blob_files(&server) == files, "no new thumbnail for sizes snapped to made ones");

    for (query, code) in [
        ("height=32", "M_MISSING_PARAM"),
        ("width=32&height=abc", "M_INVALID_PARAM"),
        ("width=0&height=32", "M_INVALID_PARAM"),
        ("width=32&height=32&method=stretch", "M_INVALID_PARAM"),
    ] {
        let (status, body) = alice.get(&thumbnail(&big, query)).await?;
        ensure!(status == 400 && errcode(&body) == code, "{query}: {status} {body}");
    }
    let (status, body) = server.anonymous().get(&thumbnail(&big, "width=32&height=32")).await?;
    ensure!(status == 401, "{status} {body}");
    Ok(())
}

/// The configured limit is published and enforced, whether the request says its length or not;
/// nothing of a refused upload is kept.
#[tokio::test]
async fn uploads_over_the_limit_are_refused_and_leave_nothing() -> Result<()> {
    let server = TestServer::start_with("[media]\nmax_upload_bytes = 1000\n").await?;
    let alice = server.register("alice").await?;
    let (status, body) = alice.get("/_matrix/client/v1/media/config").await?;
    ensure!(status == 200 && body["m.upload.size"] == 1000, "{status} {body}");
    let (status, body) = server.anonymous().get("/_matrix/client/v1/media/config").await?;
    ensure!(status == 401, "{status} {body}");

    let (status, body) =
        alice.send_bytes(Method::POST, "/_matrix/media/v3/upload", "application/octet-stream", vec![7; 1001]).await?;
    ensure!(status == 413 && errcode(&body) == "M_TOO_LARGE", "{status} {body}");
    upload(&alice, "fits.bin", "application/octet-stream", &[7; 1000]).await?;

    // Chunked (no Content-Length): stopped while streaming.
    let (status, body) = chunked_upload(&server, &alice, 20, 100).await?;
    ensure!(status == 413 && body.contains("M_TOO_LARGE"), "{status} {body}");
    let (status, body) = chunked_upload(&server, &alice, 9, 100).await?;
    ensure!(status == 200 && body.contains("mxc://"), "900 bytes in chunks fit: {status} {body}");
    ensure!(blob_files(&server) == 2, "only the uploads that fitted are stored: {}", blob_files(&server));
    Ok(())
}

/// Uploads `chunks` chunks of `size` bytes with chunked transfer encoding (no length given):
/// the status and body of the answer.
async fn chunked_upload(server: &TestServer, client: &Client, chunks: usize, size: usize) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = server.base_url().trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&addr).await?;
    let head = format!(
        "POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        client.token.clone().unwrap_or_default()
    );
    socket.write_all(head.as_bytes()).await?;
    for _ in 0..chunks {
        // The server may answer and close before the end: later writes may fail.
        if socket.write_all(format!("{size:x}\r\n").as_bytes()).await.is_err()
            || socket.write_all(&vec![b'x'; size]).await.is_err()
            || socket.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = socket.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, answer))
}

/// MSC2246 (Complement's TestAsyncUpload): an id is reserved, then filled by its owner only,
/// once; a download waits for the bytes (504 `M_NOT_YET_UPLOADED` if they do not come in time)
/// and gets them when they arrive while it waits; a user may hold only so many reservations.
#[tokio::test]
async fn reserved_uploads_are_filled_once_by_their_owner_and_awaited_by_readers() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let (status, created) = alice.post("/_matrix/media/v1/create", &serde_json::json!({})).await?;
    ensure!(status == 200, "{status} {created}");
    ensure!(created["unused_expires_at"].as_u64().is_some(), "{created}");
    let (origin, id) = mxc_parts(&created["content_uri"])?;
    let download = format!("/_matrix/client/v1/media/download/{origin}/{id}");
    let put = format!("/_matrix/media/v3/upload/{origin}/{id}?filename=late.txt");

    let started = Instant::now();
    let (status, body) = bob.get(&format!("{download}?timeout_ms=300")).await?;
    ensure!(status == 504 && errcode(&body) == "M_NOT_YET_UPLOADED", "{status} {body}");
    ensure!(started.elapsed() >= Duration::from_millis(200), "it waited: {:?}", started.elapsed());

    let (status, body) = bob.send_bytes(Method::PUT, &put, "text/plain", b"not mine".to_vec()).await?;
    ensure!(status == 403 && errcode(&body) == "M_FORBIDDEN", "{status} {body}");

    // A reader waiting when the bytes arrive gets them.
    let waiting = {
        let bob = bob.clone();
        let download = download.clone();
        tokio::spawn(async move { bob.get_bytes(&format!("{download}?timeout_ms=10000")).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = alice.send_bytes(Method::PUT, &put, "text/plain", b"here at last".to_vec()).await?;
    ensure!(status == 200, "{status} {body}");
    let (status, headers, bytes) = waiting.await??;
    ensure!(status == 200 && bytes == b"here at last", "{status} {}", String::from_utf8_lossy(&bytes));
    ensure!(header(&headers, "content-disposition").ends_with("''late.txt"), "{headers:?}");

    let (status, body) = alice.send_bytes(Method::PUT, &put, "text/plain", b"again".to_vec()).await?;
    ensure!(status == 409 && errcode(&body) == "M_CANNOT_OVERWRITE_MEDIA", "{status} {body}");
    let (status, body) = alice
        .send_bytes(
            Method::PUT,
            &format!("/_matrix/media/v3/upload/{origin}/neverreserved"),
            "text/plain",
            b"x".to_vec(),
        )
        .await?;
    ensure!(status == 404 && errcode(&body) == "M_NOT_FOUND", "{status} {body}");

    // Five reservations at most (the default), a sixth is refused until one is filled.
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (status, body) = alice.post("/_matrix/media/v1/create", &serde_json::json!({})).await?;
        ensure!(status == 200, "{status} {body}");
        ids.push(mxc_parts(&body["content_uri"])?.1);
    }
    let (status, body) = alice.post("/_matrix/media/v1/create", &serde_json::json!({})).await?;
    ensure!(status == 429 && errcode(&body) == "M_LIMIT_EXCEEDED", "{status} {body}");
    let (status, body) = alice
        .send_bytes(
            Method::PUT,
            &format!("/_matrix/media/v3/upload/{origin}/{}", ids[0]),
            "text/plain",
            b"one".to_vec(),
        )
        .await?;
    ensure!(status == 200, "{status} {body}");
    let (status, body) = alice.post("/_matrix/media/v1/create", &serde_json::json!({})).await?;
    ensure!(status == 200, "room for one more: {status} {body}");
    Ok(())
}

/// An upload acknowledged to the client survives `kill -9`.
#[tokio::test]
async fn an_acknowledged_upload_survives_kill_9() -> Result<()> {
    let mut server = TestServer::start().await?;
    let alice = server.register("alice").await?;
    let bytes: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let (origin, id) = upload(&alice, "kept.bin", "application/octet-stream", &bytes).await?;
    server.kill9();
    server.start_again().await?;
    let (status, _, body) =
        alice.on(&server).get_bytes(&format!("/_matrix/client/v1/media/download/{origin}/{id}")).await?;
    ensure!(status == 200 && body == bytes, "{status}, {} bytes", body.len());
    Ok(())
}

/// With `[media.s3]`, the bytes live in the S3 store (moto here) under their hash, nothing stays
/// on local disk, and downloads, thumbnails and a restart work as with files.
#[tokio::test]
async fn media_lives_in_an_s3_store_when_one_is_configured() -> Result<()> {
    let s3 = myelin_e2e::S3Server::start("myelin-media").await?;
    let mut server = TestServer::start_with(&s3.config("myelin-media")).await?;
    let alice = server.register("alice").await?;
    let picture = png(400, 300)?;
    let (origin, id) = upload(&alice, "s3.png", "image/png", &picture).await?;
    let sha256: String = {
        use sha2::Digest;
        sha2::Sha256::digest(&picture).iter().map(|b| format!("{b:02x}")).collect()
    };
    ensure!(s3.object("myelin-media", &sha256).await?.as_deref() == Some(&picture[..]), "the object is the upload");
    ensure!(blob_files(&server) == 0, "nothing kept on local disk: {}", blob_files(&server));

    let path = format!("/_matrix/client/v1/media/download/{origin}/{id}");
    let (status, _, body) = alice.get_bytes(&path).await?;
    ensure!(status == 200 && body == picture, "{status}");
    let (status, _, body) = alice
        .get_bytes(&format!("/_matrix/client/v1/media/thumbnail/{origin}/{id}?width=96&height=96&method=crop"))
        .await?;
    ensure!(status == 200, "{status}");
    let thumb = image::load_from_memory(&body)?;
    ensure!((thumb.width(), thumb.height()) == (96, 96), "{}×{}", thumb.width(), thumb.height());

    server.restart().await?;
    let (status, _, body) = alice.on(&server).get_bytes(&path).await?;
    ensure!(status == 200 && body == picture, "after a restart: {status}");
    Ok(())
}

/// Three processes of one deployment (PostgreSQL) sharing one S3 store: an upload through one is
/// downloaded and thumbnailed through the others, the same bytes uploaded through another are kept
/// once; an asynchronous upload (MSC2246) reserved through one is filled through a second while a
/// reader waits on the third, which gets the bytes when they arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_processes_share_one_s3_store() -> Result<()> {
    if myelin_e2e::repeat_of_sqlite_pass("three_processes_share_one_s3_store") {
        return Ok(());
    }
    let s3 = myelin_e2e::S3Server::start("shared-media").await?;
    let a = TestServer::start_postgres_with(&s3.config("shared-media")).await?;
    let b = a.start_peer().await?;
    let c = a.start_peer().await?;
    let alice = a.register("alice").await?;
    let (alice_b, alice_c) = (alice.on(&b), alice.on(&c));

    let picture = png(640, 480)?;
    let (origin, id) = upload(&alice, "shared.png", "image/png", &picture).await?;
    let path = format!("/_matrix/client/v1/media/download/{origin}/{id}");
    for (through, client) in [("b", &alice_b), ("c", &alice_c)] {
        let (status, headers, body) = client.get_bytes(&path).await?;
        ensure!(status == 200 && body == picture, "through {through}: {status}");
        ensure!(header(&headers, "content-type") == "image/png", "{headers:?}");
    }
    let thumbnail = format!("/_matrix/client/v1/media/thumbnail/{origin}/{id}?width=320&height=240&method=scale");
    let (status, _, from_b) = alice_b.get_bytes(&thumbnail).await?;
    ensure!(status == 200 && image::load_from_memory(&from_b)?.width() == 320, "thumbnail through b: {status}");
    let (status, _, from_c) = alice_c.get_bytes(&thumbnail).await?;
    ensure!(status == 200 && from_c == from_b, "the thumbnail made through b, served by c: {status}");

    let (again_origin, again_id) = upload(&alice_c, "same.png", "image/png", &picture).await?;
    ensure!(again_id != id, "a new media id for the same bytes");
    let (status, _, body) =
        alice_b.get_bytes(&format!("/_matrix/client/v1/media/download/{again_origin}/{again_id}")).await?;
    ensure!(status == 200 && body == picture, "{status}");
    let sha256: String = {
        use sha2::Digest;
        sha2::Sha256::digest(&picture).iter().map(|b| format!("{b:02x}")).collect()
    };
    ensure!(s3.object("shared-media", &sha256).await?.as_deref() == Some(&picture[..]), "one object, by its hash");

    // Reserved through a, filled through b, awaited through c.
    let (status, created) = alice.post("/_matrix/media/v1/create", &serde_json::json!({})).await?;
    ensure!(status == 200, "{status} {created}");
    let (origin, id) = mxc_parts(&created["content_uri"])?;
    let waiting = {
        let reader = alice_c.clone();
        let download = format!("/_matrix/client/v1/media/download/{origin}/{id}?timeout_ms=10000");
        tokio::spawn(async move { reader.get_bytes(&download).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let put = format!("/_matrix/media/v3/upload/{origin}/{id}?filename=late.txt");
    let (status, body) = alice_b.send_bytes(Method::PUT, &put, "text/plain", b"filled elsewhere".to_vec()).await?;
    ensure!(status == 200, "{status} {body}");
    let (status, _, bytes) = waiting.await??;
    ensure!(status == 200 && bytes == b"filled elsewhere", "{status} {}", String::from_utf8_lossy(&bytes));
    Ok(())
}

/// Another server's media (MSC3916 over federation): fetched from its server on first request,
/// with its type and name, then served from here (even with the other server gone); thumbnails
/// of it are made here; a media the other server lacks is 404.
#[tokio::test]
async fn media_of_another_server_is_fetched_over_federation_and_kept() -> Result<()> {
    let mut a = TestServer::start_federating().await?;
    let b = TestServer::start_federating().await?;
    let alice = a.register("alice").await?;
    let bob = b.register("bob").await?;
    let picture = png(300, 200)?;
    let (origin, id) = upload(&alice, "from%20a.png", "image/png", &picture).await?;
    ensure!(origin == a.server_name(), "{origin}");
    let path = format!("/_matrix/client/v1/media/download/{origin}/{id}");

    let (status, headers, body) = bob.get_bytes(&path).await?;
    ensure!(status == 200, "{status} {}\n{}", String::from_utf8_lossy(&body), b.log());
    ensure!(body == picture, "the same bytes across servers");
    ensure!(header(&headers, "content-type") == "image/png", "{headers:?}");
    ensure!(header(&headers, "content-disposition") == "inline; filename*=utf-8''from%20a.png", "{headers:?}");
    let (status, _, body) = bob
        .get_bytes(&format!("/_matrix/client/v1/media/thumbnail/{origin}/{id}?width=32&height=32&method=crop"))
        .await?;
    ensure!(status == 200 && image::load_from_memory(&body)?.width() == 32, "{status}");
    let (status, body) = bob.get(&format!("/_matrix/client/v1/media/download/{origin}/nosuchmedia")).await?;
    ensure!(status == 404 && errcode(&body) == "M_NOT_FOUND", "{status} {body}");

    // Kept: served with its origin stopped.
    a.stop().await?;
    let (status, _, body) = bob.get_bytes(&path).await?;
    ensure!(status == 200 && body == picture, "from the copy kept: {status}");
    Ok(())
}

/// A thumbnail of another server's media not fetched yet comes from that server as a thumbnail
/// (the original is not fetched): served at the size asked for, kept (served with the origin
/// stopped), while the original was never copied here.
#[tokio::test]
async fn a_remote_thumbnail_is_fetched_as_a_thumbnail_without_the_original() -> Result<()> {
    let mut a = TestServer::start_federating().await?;
    let b = TestServer::start_federating().await?;
    let alice = a.register("alice").await?;
    let bob = b.register("bob").await?;
    let photo = png(1600, 1200)?;
    let (origin, id) = upload(&alice, "big.png", "image/png", &photo).await?;
    let thumbnail = format!("/_matrix/client/v1/media/thumbnail/{origin}/{id}?width=96&height=96&method=crop");
    let (status, headers, body) = bob.get_bytes(&thumbnail).await?;
    ensure!(status == 200, "{status} {}\n{}", String::from_utf8_lossy(&body), b.log());
    let thumb = image::load_from_memory(&body)?;
    ensure!((thumb.width(), thumb.height()) == (96, 96), "{}×{}", thumb.width(), thumb.height());
    ensure!(header(&headers, "content-type").starts_with("image/"), "{headers:?}");
    ensure!(body.len() < photo.len() / 4, "a thumbnail's bytes, not the photo's: {}", body.len());

    a.stop().await?;
    let (status, _, again) = bob.get_bytes(&thumbnail).await?;
    ensure!(status == 200 && again == body, "kept: {status}");
    let (status, _, _) =
        bob.get_bytes(&format!("/_matrix/client/v1/media/download/{origin}/{id}?timeout_ms=2000")).await?;
    ensure!(status != 200, "the original was never fetched: {status}");
    Ok(())
}

/// A small web site on 127.0.0.1 for URL previews: a page with Open Graph tags and an image.
async fn web_site(picture: Vec<u8>) -> Result<String> {
    use axum::{Router, http::header, routing::get};
    let page = "<html><head><title>Ignored</title>\
                <meta property=\"og:title\" content=\"The rose garden &amp; more\">\
                <meta name=\"description\" content=\"Flowers in spring\">\
                <meta property=\"og:image\" content=\"/rose.png\"></head><body>hello</body></html>";
    let app = Router::new()
        .route("/page.html", get(move || async move { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page) }))
        .route("/rose.png", get(move || async move { ([(header::CONTENT_TYPE, "image/png")], picture) }))
        .route("/moved", get(|| async { axum::response::Redirect::temporary("/page.html") }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(base)
}

/// URL previews when turned on: the page's Open Graph title, its description as the fallback,
/// its image stored here as media (downloadable), redirects followed; off by default; pages on
/// private addresses refused unless the outbound policy allows them.
#[tokio::test]
async fn url_previews_show_a_pages_open_graph_data_when_turned_on() -> Result<()> {
    let picture = png(64, 32)?;
    let site = web_site(picture.clone()).await?;
    let preview = |url: &str| format!("/_matrix/client/v1/media/preview_url?url={}", myelin_e2e::enc(url));

    let off = TestServer::start().await?;
    let alice = off.register("alice").await?;
    let (status, body) = alice.get(&preview(&format!("{site}/page.html"))).await?;
    ensure!(status == 404 && errcode(&body) == "M_UNRECOGNIZED", "off by default: {status} {body}");

    let private = TestServer::start_with("[media]\nurl_previews = true\n").await?;
    let alice = private.register("alice").await?;
    let (status, body) = alice.get(&preview(&format!("{site}/page.html"))).await?;
    ensure!(status == 502, "127.0.0.1 is refused unless allowed: {status} {body}");

    let server =
        TestServer::start_with("[media]\nurl_previews = true\n[federation]\nip_range_allowlist = [\"127.0.0.1/32\"]\n")
            .await?;
    let alice = server.register("alice").await?;
    for page in ["page.html", "moved"] {
        let (status, og) = alice.get(&preview(&format!("{site}/{page}"))).await?;
        ensure!(status == 200, "{page}: {status} {og}");
        ensure!(og["og:title"] == "The rose garden & more" && og["og:description"] == "Flowers in spring", "{og}");
        ensure!(og["og:image:type"] == "image/png" && og["matrix:image:size"] == picture.len(), "{og}");
        let image = og["og:image"].as_str().unwrap_or_default().trim_start_matches("mxc://").to_owned();
        let (status, _, body) = alice.get_bytes(&format!("/_matrix/client/v1/media/download/{image}")).await?;
        ensure!(status == 200 && body == picture, "the image is kept as media: {status}");
    }
    let (status, og) = alice.get(&preview(&format!("{site}/rose.png"))).await?;
    ensure!(status == 200 && og["og:image:type"] == "image/png", "an image link: {status} {og}");
    for (url, code) in [("ftp://example.org/x", "M_INVALID_PARAM"), ("not a url", "M_INVALID_PARAM")] {
        let (status, body) = alice.get(&preview(url)).await?;
        ensure!(status == 400 && errcode(&body) == code, "{url}: {status} {body}");
    }
    let (status, body) = alice.get("/_matrix/client/v1/media/preview_url").await?;
    ensure!(status == 400 && errcode(&body) == "M_MISSING_PARAM", "{status} {body}");
    Ok(())
}

/// Retention of this server's media: what nobody downloads for the lifetime is deleted, bytes
/// and all; what is downloaded stays, and so do avatars however old.
#[tokio::test]
async fn unused_local_media_is_deleted_after_its_lifetime_and_avatars_are_kept() -> Result<()> {
    let config = format!("{}[media]\nlocal_media_lifetime_ms = 3000\n", myelin_e2e::NO_RATE_LIMITS);
    let server = TestServer::start_with(&config).await?;
    let alice = server.register("alice").await?;
    let (origin, avatar) = upload(&alice, "me.png", "image/png", b"avatar bytes").await?;
    let (status, body) = alice
        .put(
            &format!("/_matrix/client/v3/profile/{}/avatar_url", myelin_e2e::enc(&alice.user_id)),
            &serde_json::json!({ "avatar_url": format!("mxc://{origin}/{avatar}") }),
        )
        .await?;
    ensure!(status == 200, "{body}");
    let (_, unused) = upload(&alice, "old.txt", "text/plain", b"nobody reads this").await?;
    let (_, read) = upload(&alice, "news.txt", "text/plain", b"read every second").await?;
    ensure!(blob_files(&server) == 3);
    let download = |id: &str| format!("/_matrix/client/v1/media/download/{origin}/{id}");

    // Only "read" is downloaded meanwhile (a download of "unused" would keep it).
    let started = Instant::now();
    while blob_files(&server) > 2 {
        let (status, _, _) = alice.get_bytes(&download(&read)).await?;
        ensure!(status == 200, "the media downloaded all along is kept");
        ensure!(started.elapsed() < Duration::from_secs(15), "unused media never deleted\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (status, _, _) = alice.get_bytes(&download(&unused)).await?;
    ensure!(status == 404, "the unused media is gone: {status}");
    let (status, _, _) = alice.get_bytes(&download(&read)).await?;
    ensure!(status == 200, "the media downloaded all along is kept");
    let (status, _, body) = alice.get_bytes(&download(&avatar)).await?;
    ensure!(status == 200 && body == b"avatar bytes", "the avatar is kept: {status}");
    Ok(())
}

/// Retention of other servers' media: the cached copy goes after its lifetime and is fetched
/// again when asked for.
#[tokio::test]
async fn cached_remote_media_is_purged_and_fetched_again() -> Result<()> {
    let a = TestServer::start_federating().await?;
    let mut b = TestServer::start_federating().await?;
    std::fs::write(
        b.data_dir().join("e2e-config.toml"),
        format!("{}[media]\nremote_media_lifetime_ms = 2000\n", myelin_e2e::NO_RATE_LIMITS),
    )?;
    b.restart().await?;
    let alice = a.register("alice").await?;
    let bob = b.register("bob").await?;
    let (origin, id) = upload(&alice, "shared.bin", "application/octet-stream", b"cached over there").await?;
    let path = format!("/_matrix/client/v1/media/download/{origin}/{id}");
    let (status, _, body) = bob.get_bytes(&path).await?;
    ensure!(status == 200 && body == b"cached over there", "{status}\n{}", b.log());
    ensure!(blob_files(&b) == 1, "cached on B");
    let started = Instant::now();
    while blob_files(&b) > 0 {
        ensure!(started.elapsed() < Duration::from_secs(15), "B never purged its copy\n{}", b.log());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (status, _, body) = bob.get_bytes(&path).await?;
    ensure!(status == 200 && body == b"cached over there", "fetched again: {status}");
    ensure!(blob_files(&a) == 1 && blob_files(&b) == 1, "A keeps its own; B has it again");
    Ok(())
}

/// Upload limits per user and period: past one, 400 `M_RESOURCE_LIMIT_EXCEEDED`; another user
/// has their own.
#[tokio::test]
async fn uploads_past_a_users_limit_are_refused() -> Result<()> {
    let config = format!(
        "{}[media]\n[[media.upload_limits]]\nperiod_ms = 3600000\nmax_bytes = 1000\n",
        myelin_e2e::NO_RATE_LIMITS
    );
    let server = TestServer::start_with(&config).await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    upload(&alice, "a", "application/octet-stream", &[1u8; 600]).await?;
    let (status, body) =
        alice.send_bytes(Method::POST, "/_matrix/media/v3/upload", "application/octet-stream", vec![2u8; 600]).await?;
    ensure!(status == 400 && errcode(&body) == "M_RESOURCE_LIMIT_EXCEEDED", "{status} {body}");
    upload(&alice, "b", "application/octet-stream", &[3u8; 300]).await?;
    upload(&bob, "c", "application/octet-stream", &[4u8; 900]).await?;
    Ok(())
}
