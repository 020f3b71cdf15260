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
        created_ms: 1_000,
    };
    assert!(store.media_thumbnail("test", "pic", 96, 96, "crop").await.expect("read").is_none());
    store.put_media_thumbnail(&thumb("crop", "a")).await.expect("put");
    store.put_media_thumbnail(&thumb("crop", "b")).await.expect("a second one is no error");
    store.put_media_thumbnail(&thumb("scale", "c")).await.expect("put");
    assert_eq!(store.media_thumbnail("test", "pic", 96, 96, "crop").await.expect("read"), Some(thumb("crop", "a")));
    assert_eq!(store.media_thumbnail("test", "pic", 96, 96, "scale").await.expect("read"), Some(thumb("scale", "c")));
    assert!(store.media_thumbnail("test", "pic", 32, 32, "crop").await.expect("read").is_none());
}

/// Retention: downloads move the last access; unused media of this origin or of others is
/// listed oldest first; deleting media answers only the blobs no record names any more; the
/// bytes a user uploaded in a period; avatars in use.
pub async fn unused_media_is_found_and_deleted_with_its_unshared_blobs(url: String) {
    let store = open_store(&url).await;
    let shared = MediaContent { sha256: "aa".repeat(32), length: 10 };
    let own = MediaContent { sha256: "bb".repeat(32), length: 20 };
    let thumb = MediaContent { sha256: "cc".repeat(32), length: 5 };
    let mut remote = record("remote", "@a:test", Some(own.clone()), None);
    remote.origin = "elsewhere".into();
    remote.uploader = None;
    for media in [
        record("one", "@a:test", Some(shared.clone()), None),
        record("two", "@a:test", Some(shared.clone()), None),
        record("three", "@b:test", Some(own.clone()), None),
        remote,
    ] {
        store.put_media(&media).await.expect("put");
    }
    store
        .put_media_thumbnail(&ThumbnailRecord {
            origin: "test".into(),
            media_id: "one".into(),
            width: 32,
            height: 32,
            method: "crop".into(),
            content_type: "image/png".into(),
            content: thumb.clone(),
            created_ms: 1_000,
        })
        .await
        .expect("thumbnail");
    // A thumbnail fetched from another server without its original (no media row).
    let fetched = MediaContent { sha256: "dd".repeat(32), length: 6 };
    store
        .put_media_thumbnail(&ThumbnailRecord {
            origin: "elsewhere".into(),
            media_id: "thumbonly".into(),
            width: 96,
            height: 96,
            method: "crop".into(),
            content_type: "image/jpeg".into(),
            content: fetched.clone(),
            created_ms: 2_000,
        })
        .await
        .expect("thumbnail");

    // All created at 1 000; "two" downloaded at 5 000.
    store.touch_media("test", "two", 5_000).await.expect("touch");
    store.touch_media("test", "two", 4_000).await.expect("an older access changes nothing");
    let ids = |media: Vec<MediaRecord>| media.into_iter().map(|m| m.media_id).collect::<Vec<_>>();
    let mut local = ids(store.media_unused_since("test", false, 3_000, 10).await.expect("unused"));
    local.sort();
    assert_eq!(local, ["one", "three"]);
    assert_eq!(ids(store.media_unused_since("test", true, 3_000, 10).await.expect("unused")), ["remote"]);
    assert_eq!(store.media_unused_since("test", false, 6_000, 1).await.expect("unused").len(), 1, "the limit");

    // "one" shares its blob with "two": only its thumbnail's blob goes; "three" shares with the
    // remote copy: nothing goes; then the remote copy: its blob goes.
    assert_eq!(store.delete_media(&[("test".into(), "one".into())]).await.expect("delete"), [thumb.sha256]);
    assert!(store.media("test", "one").await.expect("read").is_none());
    assert!(store.media_thumbnail("test", "one", 32, 32, "crop").await.expect("read").is_none());
    assert!(store.delete_media(&[("test".into(), "three".into())]).await.expect("delete").is_empty());
    assert_eq!(store.delete_media(&[("elsewhere".into(), "remote".into())]).await.expect("delete"), [own.sha256]);
    assert!(store.delete_media(&[("test".into(), "gone".into())]).await.expect("nothing").is_empty());
    // The fetched thumbnail: listed once older than asked, not as this origin's, then deleted.
    assert!(store.thumbnailed_remote_media_since("test", 2_000, 10).await.expect("list").is_empty());
    let orphans = store.thumbnailed_remote_media_since("test", 2_001, 10).await.expect("list");
    assert_eq!(orphans, [("elsewhere".to_owned(), "thumbonly".to_owned())]);
    assert!(store.thumbnailed_remote_media_since("elsewhere", 9_000, 10).await.expect("list").is_empty());
    assert_eq!(store.delete_media(&orphans).await.expect("delete"), [fetched.sha256]);

    // Uploads per user and period.
    let a = UserId::parse("@a:test").expect("user id");
    assert_eq!(store.uploaded_bytes_since(&a, 0).await.expect("sum"), 10, "two is left");
    assert_eq!(store.uploaded_bytes_since(&a, 2_000).await.expect("sum"), 0);

    // Avatars: a user's, a member's in a room.
    store.create_user(super::user("@pic:test")).await.expect("user");
    store
        .set_avatar_url(&UserId::parse("@pic:test").expect("user id"), Some("mxc://test/avatar".into()))
        .await
        .expect("avatar");
    assert_eq!(store.avatar_uris().await.expect("avatars"), ["mxc://test/avatar"]);
}
