//! The content repository's records: complete uploads, reservations (MSC2246) and their filling.

use myelin_core::types::UserId;
use myelin_storage::*;

use super::open_store;

fn record(id: &str, uploader: &str, content: Option<MediaContent>, expires: Option<u64>) -> MediaRecord {
    MediaRecord {
        origin: "test".into(),
        media_id: id.into(),
        uploader: Some(UserId::parse(uploader).expect("user id")),
        content_type: Some("image/png".into()),
        upload_name: None,
        content,
        created_ms: 1_000,
        unused_expires_ms: expires,
    }
}

/// A complete upload reads back as stored; an id is never given twice; reservations are
/// limited per uploader (expired ones do not count) and filled once, by their uploader, before
/// they expire.
pub async fn media_records_reservations_and_fills(url: String) {
    let store = open_store(&url).await;
    let content = MediaContent { sha256: "ab".repeat(32), length: 42 };
    let done = record("done", "@a:test", Some(content.clone()), None);
    store.put_media(&done).await.expect("put");
    assert_eq!(store.media("test", "done").await.expect("read"), Some(done.clone()));
    assert!(store.media("other", "done").await.expect("read").is_none(), "keyed by origin too");
    assert!(store.put_media(&done).await.expect_err("the same id again").is_conflict());

    // Two reservations allowed; an expired one does not count.
    assert!(store.reserve_media(&record("old", "@a:test", None, Some(1_500)), 2, 1_000).await.expect("reserve"));
    assert!(store.reserve_media(&record("p1", "@a:test", None, Some(90_000)), 2, 2_000).await.expect("reserve"));
    assert!(store.reserve_media(&record("p2", "@a:test", None, Some(90_000)), 2, 2_000).await.expect("reserve"));
    assert!(
        !store.reserve_media(&record("p3", "@a:test", None, Some(90_000)), 2, 2_000).await.expect("reserve"),
        "a third unexpired reservation is refused"
    );
    assert!(store.media("test", "p3").await.expect("read").is_none());
    assert!(store.reserve_media(&record("b1", "@b:test", None, Some(90_000)), 2, 2_000).await.expect("reserve"));
    let pending = store.media("test", "p1").await.expect("read").expect("reserved");
    assert_eq!(pending.content, None);

    let fill = |id: &'static str, user: &'static str, now_ms: u64| MediaFill {
        origin: "test",
        media_id: id,
        uploader: <&UserId>::try_from(user).expect("user id"),
        content_type: Some("text/plain"),
        upload_name: Some("notes.txt"),
        content: &content,
        now_ms,
    };
    let (a, b) = ("@a:test", "@b:test");
    assert_eq!(store.fill_reserved_media(fill("nope", a, 3_000)).await.expect("fill"), FillOutcome::NotFound);
    assert_eq!(store.fill_reserved_media(fill("p1", b, 3_000)).await.expect("fill"), FillOutcome::NotYours);
    assert_eq!(store.fill_reserved_media(fill("old", a, 3_000)).await.expect("fill"), FillOutcome::Expired);
    assert_eq!(store.fill_reserved_media(fill("p1", a, 3_000)).await.expect("fill"), FillOutcome::Filled);
    assert_eq!(store.fill_reserved_media(fill("p1", a, 3_000)).await.expect("fill"), FillOutcome::AlreadyUploaded);
    assert_eq!(store.fill_reserved_media(fill("done", a, 3_000)).await.expect("fill"), FillOutcome::AlreadyUploaded);
    let filled = store.media("test", "p1").await.expect("read").expect("filled");
    assert_eq!(filled.content, Some(content.clone()));
    assert_eq!(filled.content_type.as_deref(), Some("text/plain"));
    assert_eq!(filled.upload_name.as_deref(), Some("notes.txt"));
    assert_eq!(filled.unused_expires_ms, None);
    // A filled reservation no longer counts against the limit.
    assert!(store.reserve_media(&record("p3", "@a:test", None, Some(90_000)), 2, 3_000).await.expect("reserve"));
}

/// A thumbnail is found by its size and method; a second one made meanwhile leaves the first.
pub async fn media_thumbnails_are_kept_per_size_and_method(url: String) {
    let store = open_store(&url).await;
    let thumb = |method: &str, sha: &str| ThumbnailRecord {
        origin: "test".into(),
        media_id: "pic".into(),
        width: 96,
        height: 96,
        method: method.into(),
        content_type: "image/png".into(),
        content: MediaContent { sha256: sha.repeat(64), length: 7 },
    };
    assert!(store.media_thumbnail("test", "pic", 96, 96, "crop").await.expect("read").is_none());
    store.put_media_thumbnail(&thumb("crop", "a")).await.expect("put");
    store.put_media_thumbnail(&thumb("crop", "b")).await.expect("a second one is no error");
    store.put_media_thumbnail(&thumb("scale", "c")).await.expect("put");
    assert_eq!(store.media_thumbnail("test", "pic", 96, 96, "crop").await.expect("read"), Some(thumb("crop", "a")));
    assert_eq!(store.media_thumbnail("test", "pic", 96, 96, "scale").await.expect("read"), Some(thumb("scale", "c")));
    assert!(store.media_thumbnail("test", "pic", 32, 32, "crop").await.expect("read").is_none());
}
