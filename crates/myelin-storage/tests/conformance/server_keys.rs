//! Other servers' signing keys.

use myelin_storage::*;
use ruma::ServerName;

use super::open_store;

fn key(id: &str, public_key: &str, valid_until_ts: u64, expired_ts: Option<u64>, json: &str) -> ServerKeyRecord {
    ServerKeyRecord {
        key_id: id.into(),
        public_key: public_key.into(),
        valid_until_ts,
        expired_ts,
        key_json: json.into(),
        fetched_ms: 10,
    }
}

/// Keys are stored per server with their raw document, replaced by key id, and kept apart
/// per server.
pub async fn server_keys_are_cached_per_server_and_key_id(url: String) {
    let store = open_store(&url).await;
    let a = <&ServerName>::try_from("a.example").expect("server name");
    let b = <&ServerName>::try_from("b.example:8448").expect("server name");
    assert!(store.server_keys(a).await.expect("read").is_empty());
    let doc = r#"{"server_name":"a.example","verify_keys":{}}"#;
    store
        .put_server_keys(
            a,
            vec![key("ed25519:new", "AAAA", 1_000, None, doc), key("ed25519:old", "BBBB", 500, Some(500), doc)],
        )
        .await
        .expect("put");
    store.put_server_keys(b, vec![key("ed25519:new", "CCCC", 2_000, None, "{}")]).await.expect("put");
    let stored = store.server_keys(a).await.expect("read");
    assert_eq!(
        stored,
        vec![key("ed25519:new", "AAAA", 1_000, None, doc), key("ed25519:old", "BBBB", 500, Some(500), doc)]
    );

    // A later document replaces the rows of its key ids and leaves the others.
    let mut renewed = key("ed25519:new", "AAAA", 9_000, None, "{\"renewed\":true}");
    renewed.fetched_ms = 20;
    store.put_server_keys(a, vec![renewed.clone()]).await.expect("put again");
    let stored = store.server_keys(a).await.expect("read");
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0], renewed);
    assert_eq!(stored[1].key_id, "ed25519:old");
    assert_eq!(store.server_keys(b).await.expect("read")[0].public_key, "CCCC");
}
