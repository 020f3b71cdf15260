//! Media as Element X's stack uses it (matrix-sdk): an image sent as an attachment, downloaded
//! and thumbnailed by the other member through authenticated media, and an upload to a
//! preallocated URI (MSC2246).

mod common;

use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use common::{register, sync, sync_until, uid};
use matrix_sdk::{
    Room,
    attachment::AttachmentConfig,
    media::{MediaFormat, MediaRequestParameters, MediaThumbnailSettings},
    ruma::{
        api::client::room::create_room::v3::Request as CreateRoomRequest,
        events::room::{
            MediaSource,
            message::{MessageType, OriginalSyncRoomMessageEvent},
        },
        media::Method,
        uint,
    },
};
use myelin_e2e::TestServer;
use tokio::sync::Mutex;

fn png(width: u32, height: u32) -> Result<Vec<u8>> {
    let picture = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(picture).write_with_encoder(image::codecs::png::PngEncoder::new(&mut out))?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_sent_with_the_sdk_is_downloaded_and_thumbnailed_by_the_other_member() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = register(&server, "alice").await?;
    let bob = register(&server, "bob").await?;
    let mut request = CreateRoomRequest::new();
    request.invite = vec![uid(&bob)?];
    let room = alice.create_room(request).await?;
    sync(&bob).await?;
    bob.join_room_by_id(room.room_id()).await.context("bob joins")?;

    let images: Arc<Mutex<Vec<MediaSource>>> = Arc::new(Mutex::new(Vec::new()));
    let sink = images.clone();
    bob.add_event_handler(move |ev: OriginalSyncRoomMessageEvent, _room: Room| {
        let sink = sink.clone();
        async move {
            if let MessageType::Image(image) = ev.content.msgtype {
                sink.lock().await.push(image.source);
            }
        }
    });
    let picture = png(400, 300)?;
    sync(&alice).await?;
    room.send_attachment("rose.png", &mime::IMAGE_PNG, picture.clone(), AttachmentConfig::new())
        .await
        .context("alice sends the image")?;
    sync_until(&bob, 15, || images.try_lock().is_ok_and(|seen| !seen.is_empty()))
        .await
        .context("bob sees the image")?;
    let source = images.lock().await[0].clone();

    let file = bob
        .media()
        .get_media_content(&MediaRequestParameters { source: source.clone(), format: MediaFormat::File }, false)
        .await
        .context("bob downloads the image")?;
    ensure!(file == picture, "the same {} bytes (got {})", picture.len(), file.len());
    let thumbnail = bob
        .media()
        .get_media_content(
            &MediaRequestParameters {
                source,
                format: MediaFormat::Thumbnail(MediaThumbnailSettings::with_method(Method::Crop, uint!(96), uint!(96))),
            },
            false,
        )
        .await
        .context("bob fetches a thumbnail")?;
    let thumbnail = image::load_from_memory(&thumbnail)?;
    ensure!((thumbnail.width(), thumbnail.height()) == (96, 96), "{}×{}", thumbnail.width(), thumbnail.height());

    // MSC2246: a URI first, the bytes after.
    let preallocated = alice.media().create_content_uri().await.context("create a content URI")?;
    let uri = preallocated.uri.clone();
    alice
        .media()
        .upload_preallocated(preallocated, &mime::TEXT_PLAIN, b"written later".to_vec())
        .await
        .context("upload to it")?;
    let later = bob
        .media()
        .get_media_content(
            &MediaRequestParameters { source: MediaSource::Plain(uri), format: MediaFormat::File },
            false,
        )
        .await?;
    ensure!(later == b"written later", "{}", String::from_utf8_lossy(&later));
    Ok(())
}
