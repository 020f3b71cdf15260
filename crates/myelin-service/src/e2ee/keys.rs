//! `/keys/upload`, `/keys/query`, `/keys/claim`, cross-signing uploads and signature uploads.

use std::collections::{BTreeMap, HashMap};

use myelin_core::{
    ErrorCode, MatrixError, MatrixResult,
    types::{DeviceId, OwnedDeviceId, OwnedUserId, UserId},
};
use myelin_storage::{ClaimedKey, KeyClaim, KeyUpload, KeyUploadOutcome, UploadedKey};
use serde_json::{Map, Value, json};

use super::{invalid_signature, signatures};
use crate::{Services, accounts::Requester};

/// What changed in a local user's device list (for the update other servers receive).
#[derive(Clone, Debug)]
pub enum DeviceChange {
    /// These devices were added, changed or deleted.
    Devices(Vec<OwnedDeviceId>),
    /// The cross-signing keys changed.
    CrossSigning,
}

/// Most one-time keys in one upload (clients send 50 at a time).
const MAX_KEYS_PER_UPLOAD: usize = 1_000;
/// Longest key id (`algorithm:id`) accepted.
const MAX_KEY_ID_LEN: usize = 255;
/// Most users in one `/keys/query` and devices in one `/keys/claim`.
const MAX_QUERY_USERS: usize = 1_000;
const MAX_CLAIMS: usize = 10_000;

/// The algorithm of a key id, if the id is well formed (`algorithm:name`, both non-empty).
fn key_algorithm(key_id: &str) -> Option<&str> {
    let (alg, name) = key_id.split_once(':')?;
    (!alg.is_empty() && !name.is_empty() && key_id.len() <= MAX_KEY_ID_LEN && !alg.contains(char::is_whitespace))
        .then_some(alg)
}

/// Parses a `{key_id: key}` map of one-time or fallback keys, checking ids, shapes and (for
/// signed keys) the device's signature.
pub(super) fn parse_keys(
    map: &Value,
    what: &str,
    user_id: &UserId,
    device_key: Option<(&str, &str)>,
) -> MatrixResult<Vec<UploadedKey>> {
    let Some(map) = map.as_object() else {
        return Err(MatrixError::bad_json(format!("{what} must be an object")));
    };
    let mut out = Vec::with_capacity(map.len());
    for (key_id, key) in map {
        let Some(algorithm) = key_algorithm(key_id) else {
            return Err(MatrixError::invalid_param(format!("Malformed key id {key_id:?} in {what}")));
        };
        match key {
            Value::String(_) => {}
            Value::Object(o) => {
                if !o.get("key").is_some_and(Value::is_string) {
                    return Err(MatrixError::bad_json(format!("{what}.{key_id} has no key")));
                }
                if !o.get("signatures").is_some_and(Value::is_object) {
                    return Err(MatrixError::bad_json(format!("{what}.{key_id} has no signatures")));
                }
                if algorithm.starts_with("signed_")
                    && let Some((signing_key_id, public_key)) = device_key
                    && !signatures::signed_by(key, user_id.as_str(), signing_key_id, public_key)
                {
                    return Err(invalid_signature(format!("{what}.{key_id} is not signed by the device")));
                }
            }
            _ => return Err(MatrixError::bad_json(format!("{what}.{key_id} must be a string or an object"))),
        }
        out.push(UploadedKey { key_id: key_id.clone(), json: key.to_string() });
    }
    Ok(out)
}

/// Checks an uploaded `device_keys` object: for this user and device, with the device's ed25519
/// key, self-signed. Returns the JSON to store (without `unsigned`) and the ed25519 key.
pub(super) fn checked_device_keys(
    keys: &Value,
    user_id: &UserId,
    device_id: &DeviceId,
) -> MatrixResult<(String, String)> {
    let Some(object) = keys.as_object() else { return Err(MatrixError::bad_json("device_keys must be an object")) };
    if object.get("user_id").and_then(Value::as_str) != Some(user_id.as_str())
        || object.get("device_id").and_then(Value::as_str) != Some(device_id.as_str())
    {
        return Err(MatrixError::invalid_param("device_keys must be for your own user and device"));
    }
    if !object.get("algorithms").is_some_and(Value::is_array) {
        return Err(MatrixError::bad_json("device_keys.algorithms must be a list"));
    }
    if !object.get("keys").and_then(Value::as_object).is_some_and(|k| k.values().all(Value::is_string)) {
        return Err(MatrixError::bad_json("device_keys.keys must map key ids to strings"));
    }
    let Some(public) = signatures::ed25519_key(keys, device_id.as_str()) else {
        return Err(MatrixError::bad_json("device_keys has no ed25519 key for the device"));
    };
    if !signatures::signed_by(keys, user_id.as_str(), &format!("ed25519:{device_id}"), public) {
        return Err(invalid_signature("device_keys is not signed by its own ed25519 key"));
    }
    let mut stored = keys.clone();
    if let Some(o) = stored.as_object_mut() {
        o.remove("unsigned");
    }
    Ok((stored.to_string(), public.to_owned()))
}

impl Services {
    /// `POST /keys/upload`.
    pub async fn upload_keys(&self, r: &Requester, body: &Value) -> MatrixResult<Value> {
        if body.get("device_keys").is_some_and(Value::is_null) {
            return Err(MatrixError::bad_json("device_keys may not be null"));
        }
        let mut upload = KeyUpload::default();
        let stored_keys = self.store.device_keys(std::slice::from_ref(&r.user_id)).await?;
        let mut device_key: Option<String> = stored_keys
            .iter()
            .find(|k| k.device_id == r.device_id)
            .and_then(|k| serde_json::from_str::<Value>(&k.json).ok())
            .and_then(|v| signatures::ed25519_key(&v, r.device_id.as_str()).map(str::to_owned));
        match body.get("device_keys") {
            None => {}
            Some(keys) => {
                let (json, public) = checked_device_keys(keys, &r.user_id, &r.device_id)?;
                device_key = Some(public);
                upload.device_keys = Some(json);
            }
        }
        let signing = device_key.as_deref().map(|k| (format!("ed25519:{}", r.device_id), k.to_owned()));
        let signing = signing.as_ref().map(|(id, k)| (id.as_str(), k.as_str()));
        if let Some(otks) = body.get("one_time_keys") {
            upload.one_time_keys = parse_keys(otks, "one_time_keys", &r.user_id, signing)?;
        }
        let fallback = body.get("fallback_keys").or_else(|| body.get("org.matrix.msc2732.fallback_keys"));
        if let Some(fallback) = fallback {
            upload.fallback_keys = parse_keys(fallback, "fallback_keys", &r.user_id, signing)?;
            let mut algorithms: Vec<&str> = upload.fallback_keys.iter().map(UploadedKey::algorithm).collect();
            algorithms.dedup();
            if algorithms.len() != upload.fallback_keys.len() {
                return Err(MatrixError::invalid_param("At most one fallback key per algorithm"));
            }
        }
        if upload.one_time_keys.len() + upload.fallback_keys.len() > MAX_KEYS_PER_UPLOAD {
            return Err(MatrixError::new(ErrorCode::TooLarge, "Too many keys in one upload"));
        }
        match self.store.upload_keys(&r.user_id, &r.device_id, upload).await? {
            KeyUploadOutcome::Conflict { key_id } => {
                return Err(MatrixError::invalid_param(format!(
                    "Key {key_id} was already uploaded with different content"
                )));
            }
            KeyUploadOutcome::Stored { device_list_changed } => {
                if device_list_changed {
                    self.announce_device_change(&r.user_id, DeviceChange::Devices(vec![r.device_id.clone()])).await?;
                }
            }
        }
        Ok(json!({ "one_time_key_counts": self.one_time_key_counts(&r.user_id, &r.device_id).await? }))
    }

    /// Unclaimed one-time keys per algorithm, `signed_curve25519` always present.
    pub async fn one_time_key_counts(&self, user_id: &UserId, device_id: &DeviceId) -> MatrixResult<Value> {
        Ok(one_time_counts_json(self.store.one_time_key_counts(user_id, device_id).await?))
    }

    /// What a sync tells a device of its keys, in one read: the one-time key counts (as
    /// [`one_time_key_counts`](Self::one_time_key_counts)) and the unused fallback key types.
    pub async fn key_counts(&self, user_id: &UserId, device_id: &DeviceId) -> MatrixResult<(Value, Value)> {
        let counts = self.store.key_counts(user_id, device_id).await?;
        Ok((one_time_counts_json(counts.one_time), counts.unused_fallback.into()))
    }

    /// Wakes everyone who shares a room with the user (and the user's other devices), and tells
    /// the other servers sharing a room with them.
    pub async fn announce_device_change(&self, user_id: &UserId, change: DeviceChange) -> MatrixResult<()> {
        let mut mates = self.store.room_mates(user_id).await?;
        mates.push(user_id.to_owned());
        mates.sort();
        mates.dedup();
        self.notifier.notify_users(&mates);
        self.wake_appservices_for_device_lists(&mates).await;
        self.send_device_list_updates(user_id, &mates, change).await
    }

    /// `POST /keys/query`.
    pub async fn query_keys(&self, r: &Requester, body: &Value) -> MatrixResult<Value> {
        let wanted = parse_query(body)?;
        let mut failures = Map::new();
        let local: Vec<(OwnedUserId, Vec<String>)> =
            wanted.iter().filter(|(u, _)| self.is_local_user(u)).cloned().collect();
        let mut answer = self.local_device_keys(&local, Some(&r.user_id)).await?;
        let remote: Vec<(OwnedUserId, Value)> = wanted
            .iter()
            .filter(|(u, _)| !self.is_local_user(u))
            .map(|(u, devices)| (u.clone(), json!(devices)))
            .collect();
        for (server, users) in super::remote::by_server(remote.iter().map(|(u, v)| (u, v))) {
            let (found, failure) = self.remote_device_keys(&server, &users).await?;
            answer.merge(found);
            if let Some(failure) = failure {
                failures.insert(server, json!({ "errcode": failure.errcode, "error": failure.error }));
            }
        }
        Ok(json!({
            "device_keys": answer.device_keys,
            "master_keys": answer.master_keys,
            "self_signing_keys": answer.self_signing_keys,
            "user_signing_keys": answer.user_signing_keys,
            "failures": failures,
        }))
    }

    /// Device and cross-signing keys of local users (`devices` empty: all of them); the
    /// user-signing key only to its owner (`requester`).
    pub(crate) async fn local_device_keys(
        &self,
        users: &[(OwnedUserId, Vec<String>)],
        requester: Option<&UserId>,
    ) -> MatrixResult<KeysAnswer> {
        let mut answer = KeysAnswer::default();
        let ids: Vec<OwnedUserId> = users.iter().map(|(u, _)| u.clone()).collect();
        let all = self.store.device_keys(&ids).await?;
        for (user, only) in users {
            let names: HashMap<OwnedDeviceId, Option<String>> =
                self.store.list_devices(user).await?.into_iter().map(|d| (d.device_id, d.display_name)).collect();
            let mut devices = Map::new();
            for stored in all.iter().filter(|k| k.user_id == *user) {
                if !only.is_empty() && !only.iter().any(|d| d == stored.device_id.as_str()) {
                    continue;
                }
                let Ok(mut keys) = serde_json::from_str::<Value>(&stored.json) else { continue };
                if let Some(Some(name)) = names.get(&stored.device_id) {
                    keys["unsigned"] = json!({ "device_display_name": name });
                }
                devices.insert(stored.device_id.to_string(), keys);
            }
            answer.device_keys.insert(user.to_string(), Value::Object(devices));
            for (key_type, json) in self.store.cross_signing_keys(user).await? {
                let Ok(key) = serde_json::from_str::<Value>(&json) else { continue };
                match key_type.as_str() {
                    "master" => answer.master_keys.insert(user.to_string(), key),
                    "self_signing" => answer.self_signing_keys.insert(user.to_string(), key),
                    "user_signing" if Some(user.as_ref()) == requester => {
                        answer.user_signing_keys.insert(user.to_string(), key)
                    }
                    _ => None,
                };
            }
        }
        Ok(answer)
    }

    /// `POST /keys/claim`.
    pub async fn claim_keys(&self, body: &Value) -> MatrixResult<Value> {
        let wanted = parse_claims(body)?;
        let mut failures = Map::new();
        let local: Vec<KeyClaim> = wanted.iter().filter(|c| self.is_local_user(&c.user_id)).cloned().collect();
        let mut out = self.claim_local_keys(&local).await?;
        let mut remote: BTreeMap<OwnedUserId, Map<String, Value>> = BTreeMap::new();
        for claim in wanted.iter().filter(|c| !self.is_local_user(&c.user_id)) {
            remote
                .entry(claim.user_id.clone())
                .or_default()
                .insert(claim.device_id.to_string(), json!(claim.algorithm));
        }
        let remote: Vec<(OwnedUserId, Value)> = remote.into_iter().map(|(u, d)| (u, Value::Object(d))).collect();
        for (server, users) in super::remote::by_server(remote.iter().map(|(u, v)| (u, v))) {
            match self.remote_claim_keys(&server, &users).await {
                Ok(answer) => {
                    for (user, devices) in answer.as_object().into_iter().flatten() {
                        if let (true, Some(devices)) = (users.contains_key(user), devices.as_object()) {
                            out.entry(user.clone()).or_default().extend(devices.clone());
                        }
                    }
                }
                Err(failure) => {
                    failures.insert(server, json!({ "errcode": failure.errcode, "error": failure.error }));
                }
            }
        }
        Ok(json!({ "one_time_keys": out, "failures": failures }))
    }

    /// Claims one key per local (user, device, algorithm): `{user: {device: {key_id: key}}}`.
    pub(crate) async fn claim_local_keys(
        &self,
        claims: &[KeyClaim],
    ) -> MatrixResult<BTreeMap<String, Map<String, Value>>> {
        let mut out: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
        if claims.is_empty() {
            return Ok(out);
        }
        let claimed = self.store.claim_keys(claims).await?;
        let mut owners = Vec::new();
        for ClaimedKey { user_id, device_id, key_id, json } in claimed {
            let key = serde_json::from_str::<Value>(&json).unwrap_or(Value::Null);
            out.entry(user_id.to_string()).or_default().insert(device_id.to_string(), json!({ key_id: key }));
            owners.push(user_id);
        }
        // Their devices' key counts changed: let them top up without waiting.
        owners.sort();
        owners.dedup();
        self.notifier.notify_users(&owners);
        Ok(out)
    }

    /// The user's cross-signing keys by type (`master`, `self_signing`, `user_signing`).
    async fn stored_cross_signing_keys(&self, user_id: &UserId) -> MatrixResult<HashMap<String, Value>> {
        Ok(self
            .store
            .cross_signing_keys(user_id)
            .await?
            .into_iter()
            .filter_map(|(t, j)| Some((t, serde_json::from_str(&j).ok()?)))
            .collect())
    }

    /// Stores uploaded cross-signing keys (after user-interactive auth where it is needed).
    async fn upload_cross_signing_keys(
        &self,
        r: &Requester,
        body: &Value,
        existing: &HashMap<String, Value>,
    ) -> MatrixResult<()> {
        let mut keys = Vec::new();
        let master = body.get("master_key").cloned().or_else(|| existing.get("master").cloned());
        for (field, key_type) in
            [("master_key", "master"), ("self_signing_key", "self_signing"), ("user_signing_key", "user_signing")]
        {
            let Some(key) = body.get(field) else { continue };
            if key["user_id"].as_str() != Some(r.user_id.as_str()) {
                return Err(MatrixError::invalid_param(format!("{field} must be for your own user")));
            }
            let usage = key["usage"].as_array().is_some_and(|u| u.iter().any(|x| x.as_str() == Some(key_type)));
            if !usage || signatures::cross_signing_public_key(key).is_none() {
                return Err(MatrixError::invalid_param(format!("{field} is malformed")));
            }
            if key_type != "master" {
                // Signed by the master key (this upload's or the stored one).
                let Some((master_id, master_public)) = master.as_ref().and_then(signatures::cross_signing_public_key)
                else {
                    return Err(MatrixError::invalid_param("A master key is needed first"));
                };
                if !signatures::signed_by(key, r.user_id.as_str(), &master_id, &master_public) {
                    return Err(invalid_signature(format!("{field} is not signed by the master key")));
                }
            }
            keys.push((key_type.to_owned(), key.to_string()));
        }
        if keys.is_empty() {
            return Err(MatrixError::missing_param("No cross-signing key in the upload"));
        }
        if self.store.put_cross_signing_keys(&r.user_id, keys).await? {
            self.announce_device_change(&r.user_id, DeviceChange::CrossSigning).await?;
        }
        Ok(())
    }

    /// `POST /keys/device_signing/upload`: with user-interactive auth unless it is the first
    /// master key or an exact re-upload.
    pub async fn device_signing_upload(&self, r: &Requester, body: &Value) -> MatrixResult<()> {
        let existing = self.stored_cross_signing_keys(&r.user_id).await?;
        if device_signing_needs_auth(body, &existing) {
            let auth: Option<crate::uia::AuthData> = match body.get("auth") {
                Some(auth) => Some(
                    serde_json::from_value(auth.clone())
                        .map_err(|e| MatrixError::bad_json(format!("Invalid auth: {e}")))?,
                ),
                None => None,
            };
            if !self.cross_signing_reset_approved(&r.user_id).await? {
                if self.is_oauth_session(r).await? {
                    return Err(self.cross_signing_reset_challenge().await?);
                }
                self.require_password_auth(r, auth.as_ref()).await?;
            }
        }
        self.upload_cross_signing_keys(r, body, &existing).await
    }

    /// `POST /keys/signatures/upload`: per signed key, either stored or a failure.
    pub async fn upload_signatures(&self, r: &Requester, body: &Value) -> MatrixResult<Value> {
        let Some(users) = body.as_object() else { return Err(MatrixError::bad_json("Body must be an object")) };
        let mut failures: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
        let mine: HashMap<String, Value> = self.stored_cross_signing_keys(&r.user_id).await?;
        for (user, keys) in users {
            let Some(keys) = keys.as_object() else { continue };
            for (key_name, signed) in keys {
                let mut fail = |code: &str, msg: &str| {
                    failures
                        .entry(user.clone())
                        .or_default()
                        .insert(key_name.clone(), json!({ "errcode": code, "error": msg }));
                };
                let Ok(user) = UserId::parse(user) else {
                    fail("M_INVALID_PARAM", "Invalid user id");
                    continue;
                };
                if !self.is_local_user(&user) {
                    fail("M_UNKNOWN", "Federation is not available");
                    continue;
                }
                let user = &user;
                // Which of my keys signs, and what is being signed.
                let (signer_type, target) =
                    if *user == r.user_id { ("self_signing", key_name) } else { ("user_signing", key_name) };
                let signer = if *user == r.user_id
                    && mine
                        .get("master")
                        .and_then(signatures::cross_signing_public_key)
                        .is_some_and(|(_, k)| k == *key_name)
                {
                    // My master key, signed by one of my devices.
                    None
                } else {
                    mine.get(signer_type).and_then(signatures::cross_signing_public_key)
                };
                let verified = match &signer {
                    Some((id, key)) => signatures::signed_by(signed, r.user_id.as_str(), id, key),
                    None => {
                        // A device of mine signs my master key: check with that device's key.
                        let devices = self.store.device_keys(std::slice::from_ref(&r.user_id)).await?;
                        devices.iter().any(|stored| {
                            let Ok(keys) = serde_json::from_str::<Value>(&stored.json) else { return false };
                            let device = stored.device_id.as_str();
                            signatures::ed25519_key(&keys, device).is_some_and(|k| {
                                signatures::signed_by(signed, r.user_id.as_str(), &format!("ed25519:{device}"), k)
                            })
                        })
                    }
                };
                if !verified {
                    fail("M_INVALID_SIGNATURE", "Signature does not verify");
                    continue;
                }
                // Merge the new signatures into the stored key object.
                let own_device = if *user == r.user_id {
                    self.store
                        .device_keys(std::slice::from_ref(user))
                        .await?
                        .into_iter()
                        .find(|k| k.device_id.as_str() == target.as_str())
                } else {
                    None
                };
                let change = if let Some(device) = own_device {
                    let mut stored: Value = serde_json::from_str(&device.json).unwrap_or(Value::Null);
                    merge_signatures(&mut stored, signed);
                    self.store.replace_device_keys(user, &device.device_id, stored.to_string()).await?;
                    DeviceChange::Devices(vec![device.device_id])
                } else if let Some((key_type, json)) =
                    self.store.cross_signing_keys(user).await?.into_iter().find(|(_, j)| {
                        serde_json::from_str::<Value>(j)
                            .ok()
                            .and_then(|v| signatures::cross_signing_public_key(&v))
                            .is_some_and(|(_, k)| k == *key_name)
                    })
                {
                    let mut stored: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
                    merge_signatures(&mut stored, signed);
                    self.store.put_cross_signing_keys(user, vec![(key_type, stored.to_string())]).await?;
                    DeviceChange::CrossSigning
                } else {
                    fail("M_NOT_FOUND", "Unknown key");
                    continue;
                };
                self.announce_device_change(user, change).await?;
            }
        }
        Ok(json!({ "failures": failures }))
    }
}

/// Adds every signature of `from` to `into`.
fn merge_signatures(into: &mut Value, from: &Value) {
    let Some(sigs) = from["signatures"].as_object() else { return };
    if !into["signatures"].is_object() {
        into["signatures"] = json!({});
    }
    for (signer, by_key) in sigs {
        if !into["signatures"][signer].is_object() {
            into["signatures"][signer] = json!({});
        }
        if let Some(by_key) = by_key.as_object() {
            for (key_id, sig) in by_key {
                into["signatures"][signer][key_id] = sig.clone();
            }
        }
    }
}

/// Whether a cross-signing upload needs user-interactive auth: not for the first master key, nor
/// for an exact re-upload of the stored keys (`existing`).
fn device_signing_needs_auth(body: &Value, existing: &HashMap<String, Value>) -> bool {
    if !existing.contains_key("master") {
        return false;
    }
    ![("master_key", "master"), ("self_signing_key", "self_signing"), ("user_signing_key", "user_signing")]
        .iter()
        .all(|(field, key_type)| body.get(*field).is_none_or(|k| existing.get(*key_type) == Some(k)))
}

/// The keys of a `/keys/query` answer.
#[derive(Debug, Default)]
pub(crate) struct KeysAnswer {
    pub device_keys: Map<String, Value>,
    pub master_keys: Map<String, Value>,
    pub self_signing_keys: Map<String, Value>,
    pub user_signing_keys: Map<String, Value>,
}

impl KeysAnswer {
    pub(crate) fn merge(&mut self, other: KeysAnswer) {
        self.device_keys.extend(other.device_keys);
        self.master_keys.extend(other.master_keys);
        self.self_signing_keys.extend(other.self_signing_keys);
        self.user_signing_keys.extend(other.user_signing_keys);
    }
}

/// The `device_keys` of a key query (client or federation): `{user: [device, …]}`, bounded;
/// invalid user ids are skipped.
pub(crate) fn parse_query(body: &Value) -> MatrixResult<Vec<(OwnedUserId, Vec<String>)>> {
    let Some(wanted) = body.get("device_keys").and_then(Value::as_object) else {
        return Err(MatrixError::bad_json("device_keys must be an object"));
    };
    if wanted.len() > MAX_QUERY_USERS {
        return Err(MatrixError::new(ErrorCode::TooLarge, "Too many users in one query"));
    }
    Ok(wanted
        .iter()
        .filter_map(|(u, devices)| {
            let devices = devices.as_array().map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect());
            Some((UserId::parse(u).ok()?, devices.unwrap_or_default()))
        })
        .collect())
}

/// The `one_time_keys` of a key claim (client or federation): `{user: {device: algorithm}}`,
/// bounded; invalid user ids are skipped.
pub(crate) fn parse_claims(body: &Value) -> MatrixResult<Vec<KeyClaim>> {
    let Some(wanted) = body.get("one_time_keys").and_then(Value::as_object) else {
        return Err(MatrixError::bad_json("one_time_keys must be an object"));
    };
    let mut claims = Vec::new();
    for (user, devices) in wanted {
        let Some(devices) = devices.as_object() else {
            return Err(MatrixError::bad_json("one_time_keys must map users to {device: algorithm}"));
        };
        let Ok(user_id) = UserId::parse(user) else { continue };
        for (device, algorithm) in devices {
            let Some(algorithm) = algorithm.as_str() else {
                return Err(MatrixError::bad_json("Each device must map to an algorithm name"));
            };
            claims.push(KeyClaim {
                user_id: user_id.clone(),
                device_id: OwnedDeviceId::from(device.as_str()),
                algorithm: algorithm.to_owned(),
            });
        }
        if claims.len() > MAX_CLAIMS {
            return Err(MatrixError::new(ErrorCode::TooLarge, "Too many keys claimed at once"));
        }
    }
    Ok(claims)
}

/// One-time key counts by algorithm, `signed_curve25519` always present.
fn one_time_counts_json(one_time: Vec<(String, u64)>) -> Value {
    let mut counts = Map::new();
    counts.insert("signed_curve25519".into(), 0.into());
    for (alg, n) in one_time {
        counts.insert(alg, n.into());
    }
    Value::Object(counts)
}
