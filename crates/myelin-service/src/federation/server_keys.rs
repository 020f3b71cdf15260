//! Signing keys: ours (`GET /_matrix/key/v2/server`), other servers' (fetched from them,
//! verified, cached in storage with their lifetime), the notary that passes them on with our
//! signature, and the authentication of incoming requests with them.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use myelin_core::{
    MatrixError, MatrixResult,
    types::{OwnedServerName, ServerName},
};
use myelin_storage::ServerKeyRecord;
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue,
    serde::Base64,
    signatures::{PublicKeyMap, sign_json, verify_json},
};
use serde_json::{Value, json};

use super::{FederationError, unauthorized, xmatrix::XMatrix};
use crate::Services;

/// How long our published key document says it is valid (the spec asks for at least an hour).
const OWN_KEYS_VALID_MS: u64 = 7 * 24 * 3600 * 1000;
/// The largest key document read.
const KEY_DOCUMENT_PATH: &str = "/_matrix/key/v2/server";

fn unpadded(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

/// A JSON object as canonical JSON (no floats, integers in range).
pub fn canonical_object(value: Value) -> Result<CanonicalJsonObject, String> {
    match CanonicalJsonValue::try_from(value) {
        Ok(CanonicalJsonValue::Object(object)) => Ok(object),
        Ok(_) => Err("not a JSON object".to_owned()),
        Err(e) => Err(format!("not canonical JSON: {e}")),
    }
}

/// Checks a key document `server` served about itself and turns it into rows: its
/// `server_name` is `server`, it is signed by one of its own `verify_keys`.
pub fn verified_key_records(server: &ServerName, raw: &str, now_ms: u64) -> Result<Vec<ServerKeyRecord>, String> {
    let object: CanonicalJsonObject = serde_json::from_str(raw).map_err(|e| format!("not canonical JSON: {e}"))?;
    let json: Value = serde_json::from_str(raw).map_err(|e| format!("not JSON: {e}"))?;
    if json.get("server_name").and_then(Value::as_str) != Some(server.as_str()) {
        return Err(format!("the key document is not about {server}"));
    }
    let valid_until_ts =
        json.get("valid_until_ts").and_then(Value::as_u64).ok_or("the key document has no valid_until_ts")?;
    let mut keys = BTreeMap::new();
    let mut records = Vec::new();
    for (key_id, key) in json.get("verify_keys").and_then(Value::as_object).ok_or("no verify_keys")? {
        let public_key = key.get("key").and_then(Value::as_str).ok_or_else(|| format!("{key_id} has no key"))?;
        let parsed = Base64::parse(public_key).map_err(|e| format!("{key_id}: {e}"))?;
        keys.insert(key_id.clone(), parsed);
        records.push(ServerKeyRecord {
            key_id: key_id.clone(),
            public_key: public_key.to_owned(),
            valid_until_ts,
            expired_ts: None,
            key_json: raw.to_owned(),
            fetched_ms: now_ms,
        });
    }
    for (key_id, key) in json.get("old_verify_keys").and_then(Value::as_object).into_iter().flatten() {
        let (Some(public_key), Some(expired_ts)) =
            (key.get("key").and_then(Value::as_str), key.get("expired_ts").and_then(Value::as_u64))
        else {
            continue;
        };
        if keys.contains_key(key_id) {
            continue;
        }
        records.push(ServerKeyRecord {
            key_id: key_id.clone(),
            public_key: public_key.to_owned(),
            valid_until_ts: expired_ts,
            expired_ts: Some(expired_ts),
            key_json: raw.to_owned(),
            fetched_ms: now_ms,
        });
    }
    // Only the server's own signature counts here (a notary's copy carries others).
    let mut own = object;
    let signatures = own.get("signatures").and_then(CanonicalJsonValue::as_object).ok_or("the document is unsigned")?;
    let mine = signatures.get(server.as_str()).cloned().ok_or("the document is not signed by its server")?;
    own.insert("signatures".into(), CanonicalJsonValue::Object([(server.to_string(), mine)].into()));
    let map = PublicKeyMap::from([(server.to_string(), keys)]);
    verify_json(&map, &own).map_err(|e| format!("the self-signature does not verify: {e}"))?;
    Ok(records)
}

impl Services {
    /// Our key document, signed: `GET /_matrix/key/v2/server`.
    pub fn own_server_keys(&self) -> MatrixResult<Value> {
        let now = self.clock.now_ms();
        let document = json!({
            "server_name": self.server_name,
            "verify_keys": { &self.keys.key_id: { "key": unpadded(&self.keys.key_pair.public_key()) } },
            "old_verify_keys": {},
            "valid_until_ts": now + OWN_KEYS_VALID_MS,
        });
        self.add_our_signature(document)
    }

    fn add_our_signature(&self, document: Value) -> MatrixResult<Value> {
        let mut object = canonical_object(document).map_err(MatrixError::internal)?;
        sign_json(self.server_name.as_str(), &self.keys.key_pair, &mut object)
            .map_err(|e| MatrixError::internal(format!("signing a key document: {e}")))?;
        serde_json::to_value(object).map_err(|e| MatrixError::internal(e.to_string()))
    }

    /// The public keys (unpadded base64, by key id) of `server` among `key_ids` that are valid at
    /// `valid_at_ms` (now when `None`). A key unknown or expired at that time makes us ask the
    /// server again; a key it no longer vouches for until then is left out.
    pub async fn server_public_keys(
        &self,
        server: &ServerName,
        key_ids: &[String],
        valid_at_ms: Option<u64>,
    ) -> MatrixResult<BTreeMap<String, String>> {
        let valid_at = valid_at_ms.unwrap_or_else(|| self.clock.now_ms());
        if server == self.server_name {
            let mut own = BTreeMap::new();
            if key_ids.contains(&self.keys.key_id) {
                own.insert(self.keys.key_id.clone(), unpadded(&self.keys.key_pair.public_key()));
            }
            return Ok(own);
        }
        let pick = |records: &[ServerKeyRecord]| -> BTreeMap<String, String> {
            records
                .iter()
                .filter(|r| key_ids.contains(&r.key_id) && r.valid_until_ts >= valid_at)
                .map(|r| (r.key_id.clone(), r.public_key.clone()))
                .collect()
        };
        let stored = self.store.server_keys(server).await?;
        let found = pick(&stored);
        if found.len() == key_ids.iter().collect::<BTreeSet<_>>().len() {
            return Ok(found);
        }
        match self.fetch_server_keys(server).await {
            Ok(fetched) => Ok(pick(&fetched)),
            Err(err) => {
                tracing::info!(%server, error = %err, "cannot fetch server keys");
                Ok(found)
            }
        }
    }

    /// Asks `server` for its keys, checks and stores them; the rows stored.
    async fn fetch_server_keys(&self, server: &ServerName) -> Result<Vec<ServerKeyRecord>, FederationError> {
        let raw = self.federation_request(reqwest::Method::GET, server, KEY_DOCUMENT_PATH, None, false).await?;
        let bad = |reason: String| FederationError::BadResponse { destination: server.to_string(), reason };
        let raw = String::from_utf8(raw).map_err(|e| bad(e.to_string()))?;
        let records = verified_key_records(server, &raw, self.clock.now_ms()).map_err(bad)?;
        self.store
            .put_server_keys(server, records.clone())
            .await
            .map_err(|e| bad(format!("storing the keys failed: {e}")))?;
        Ok(records)
    }

    /// The notary for one server (`GET /_matrix/key/v2/query/{server}`): its key documents valid
    /// until at least `minimum_valid_until_ts` (now when `None`), from the cache or fetched
    /// again, each with our signature added. When the server cannot be reached, the last copies
    /// are served even if expired.
    pub async fn notary_server_keys(
        &self,
        server: &ServerName,
        minimum_valid_until_ts: Option<u64>,
    ) -> MatrixResult<Vec<Value>> {
        if server == self.server_name {
            return Ok(vec![self.own_server_keys()?]);
        }
        let minimum = minimum_valid_until_ts.unwrap_or_else(|| self.clock.now_ms());
        let mut records = self.store.server_keys(server).await?;
        if !records.iter().any(|r| r.expired_ts.is_none() && r.valid_until_ts >= minimum) {
            match self.fetch_server_keys(server).await {
                Ok(fetched) => records = fetched,
                Err(err) => tracing::info!(%server, error = %err, "notary: cannot fetch server keys"),
            }
        }
        let documents: BTreeSet<&str> = records.iter().map(|r| r.key_json.as_str()).collect();
        let mut answers = Vec::new();
        for raw in documents {
            let Ok(document) = serde_json::from_str::<Value>(raw) else { continue };
            answers.push(self.add_our_signature(document)?);
        }
        Ok(answers)
    }

    /// The notary for several servers (`POST /_matrix/key/v2/query`):
    /// `{"server_keys": {server: {key_id: {"minimum_valid_until_ts": ts}}}}`.
    pub async fn notary_query(&self, body: &Value) -> MatrixResult<Value> {
        let servers = body
            .get("server_keys")
            .and_then(Value::as_object)
            .ok_or_else(|| MatrixError::bad_json("server_keys must be an object"))?;
        let mut answers = Vec::new();
        for (server, criteria) in servers {
            let Ok(server) = OwnedServerName::try_from(server.as_str()) else { continue };
            let minimum = criteria
                .as_object()
                .into_iter()
                .flat_map(|keys| keys.values())
                .filter_map(|c| c.get("minimum_valid_until_ts").and_then(Value::as_u64))
                .max();
            answers.extend(self.notary_server_keys(&server, minimum).await?);
        }
        Ok(json!({ "server_keys": answers }))
    }

    /// Authenticates a federation request by its `X-Matrix` signature; the origin server.
    /// `uri` is the path and query as received; `body` the JSON content, if any. Any problem
    /// (no or bad header, another destination, unknown key, bad signature) is 401 `M_UNAUTHORIZED`.
    pub async fn authenticate_federation_request(
        &self,
        method: &str,
        uri: &str,
        authorization_headers: &[&str],
        body: Option<&Value>,
    ) -> MatrixResult<OwnedServerName> {
        let mut refusal = unauthorized("Missing X-Matrix authorization");
        for header in authorization_headers {
            let auth = match XMatrix::parse(header) {
                Ok(auth) => auth,
                Err(err) => {
                    refusal = unauthorized(format!("Bad X-Matrix authorization: {err}"));
                    continue;
                }
            };
            match self.check_request_signature(&auth, method, uri, body).await {
                Ok(()) => return Ok(auth.origin),
                Err(err) => refusal = err,
            }
        }
        Err(refusal)
    }

    async fn check_request_signature(
        &self,
        auth: &XMatrix,
        method: &str,
        uri: &str,
        body: Option<&Value>,
    ) -> MatrixResult<()> {
        match &auth.destination {
            Some(destination) if *destination == self.server_name => {}
            Some(destination) => return Err(unauthorized(format!("The request is for {destination}, not us"))),
            None => return Err(unauthorized("The X-Matrix authorization names no destination")),
        }
        if auth.origin == self.server_name {
            return Err(unauthorized("The request claims to come from this server"));
        }
        let keys = self.server_public_keys(&auth.origin, std::slice::from_ref(&auth.key), None).await?;
        let key =
            keys.get(&auth.key).ok_or_else(|| unauthorized(format!("No valid key {} of {}", auth.key, auth.origin)))?;
        super::xmatrix::verify_request(auth, key, &self.server_name, method, uri, body).map_err(unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use myelin_core::types::ServerName;
    use ruma::signatures::Ed25519KeyPair;
    use serde_json::json;

    use super::{unpadded, verified_key_records};

    fn signed_document(server: &str, key_pair: &Ed25519KeyPair, valid_until_ts: u64) -> String {
        let document = json!({
            "server_name": server,
            "verify_keys": { format!("ed25519:{}", key_pair.version()): { "key": unpadded(&key_pair.public_key()) } },
            "old_verify_keys": { "ed25519:old": { "key": "AAAA", "expired_ts": 5 } },
            "valid_until_ts": valid_until_ts,
        });
        let mut object = super::canonical_object(document).expect("object");
        ruma::signatures::sign_json(server, key_pair, &mut object).expect("sign");
        serde_json::to_string(&object).expect("json")
    }

    #[test]
    fn key_documents_must_be_about_and_signed_by_their_server() {
        let key_pair = Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), "k1".into()).expect("key");
        let server = <&ServerName>::try_from("a.example").expect("name");
        let raw = signed_document("a.example", &key_pair, 1_000);
        let records = verified_key_records(server, &raw, 7).expect("verifies");
        assert_eq!(records.len(), 2);
        assert_eq!((records[0].key_id.as_str(), records[0].valid_until_ts), ("ed25519:k1", 1_000));
        assert_eq!(records[0].public_key, unpadded(&key_pair.public_key()));
        assert_eq!((records[1].expired_ts, records[1].valid_until_ts), (Some(5), 5));
        assert_eq!(records[0].key_json, raw, "stored as received");

        let other = <&ServerName>::try_from("b.example").expect("name");
        assert!(verified_key_records(other, &raw, 7).is_err(), "about another server");
        let tampered = raw.replace("1000", "2000");
        assert!(verified_key_records(server, &tampered, 7).is_err(), "changed after signing");
        let impostor = Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), "k1".into()).expect("key");
        let mut forged: serde_json::Value = serde_json::from_str(&raw).expect("json");
        forged["verify_keys"]["ed25519:k1"]["key"] = unpadded(&impostor.public_key()).into();
        assert!(verified_key_records(server, &forged.to_string(), 7).is_err(), "signed by another key");
        assert!(verified_key_records(server, "not json", 7).is_err());
    }
}
