//! Checking ed25519 signatures on key objects (device keys, signed one-time keys, cross-signing
//! keys) with ruma's canonical-JSON verification.

use std::collections::BTreeMap;

use ruma::{CanonicalJsonObject, CanonicalJsonValue, serde::Base64};
use serde_json::Value;

/// Whether `object` carries a valid signature by `signer` (a user id) with key `key_id`
/// (`ed25519:NAME`) whose public key is `public_key` (unpadded base64).
pub fn signed_by(object: &Value, signer: &str, key_id: &str, public_key: &str) -> bool {
    let Some(signature) = object["signatures"][signer][key_id].as_str() else { return false };
    let Ok(mut canonical) = serde_json::from_value::<CanonicalJsonObject>(object.clone()) else { return false };
    // Only the signature being checked: ruma verifies every signer present in the object.
    let mut only = CanonicalJsonObject::new();
    let mut by_key = CanonicalJsonObject::new();
    by_key.insert(key_id.to_owned(), CanonicalJsonValue::String(signature.to_owned()));
    only.insert(signer.to_owned(), CanonicalJsonValue::Object(by_key));
    canonical.insert("signatures".to_owned(), CanonicalJsonValue::Object(only));
    let Ok(key) = Base64::parse(public_key) else { return false };
    let keys = BTreeMap::from([(signer.to_owned(), BTreeMap::from([(key_id.to_owned(), key)]))]);
    ruma::signatures::verify_json(&keys, &canonical).is_ok()
}

/// The ed25519 key of a device-keys or cross-signing-key object: `keys["ed25519:NAME"]`.
pub fn ed25519_key<'a>(object: &'a Value, name: &str) -> Option<&'a str> {
    object["keys"][format!("ed25519:{name}")].as_str()
}

/// The single public key of a cross-signing key object (`keys` has exactly one `ed25519:…`).
pub fn cross_signing_public_key(object: &Value) -> Option<(String, String)> {
    let keys = object["keys"].as_object()?;
    if keys.len() != 1 {
        return None;
    }
    let (id, key) = keys.iter().next()?;
    let name = id.strip_prefix("ed25519:")?;
    (name == key.as_str()?).then(|| (id.clone(), key.as_str().unwrap_or_default().to_owned()))
}
