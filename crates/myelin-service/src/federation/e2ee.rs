//! The federation side of end-to-end encryption: key queries and claims to and from other
//! servers, device lists across servers (`m.device_list_update` / `m.signing_key_update` out and
//! in, gaps resynced through `/user/devices`), to-device messages across servers
//! (`m.direct_to_device`), and OpenID tokens checked by other services (`/openid/userinfo`).

use std::collections::{BTreeMap, HashSet};

use myelin_core::{
    MatrixError, MatrixResult,
    types::{DeviceId, OwnedDeviceId, OwnedServerName, OwnedUserId, ServerName, TransactionId, UserId},
};
use myelin_storage::{NewJob, RemoteDevice, RemoteDeviceChange, ToDeviceSend};
use serde_json::{Map, Value, json};

use super::encode_component;
use crate::{
    Services,
    accounts::Requester,
    e2ee::{
        keys::{DeviceChange, KeysAnswer, parse_claims, parse_query},
        remote::RemoteFailure,
    },
    jobs::JobKind,
};

/// How long an OpenID token is valid.
const OPENID_TOKEN_LIFETIME_MS: u64 = 60 * 60 * 1000;
/// Most devices taken from one `/user/devices` answer.
const MAX_REMOTE_DEVICES: usize = 1_000;

/// The job key of a remote user's device-list resync (no NUL: PostgreSQL text holds none).
fn resync_key(user_id: &UserId) -> String {
    format!("device_list_resync {user_id}")
}

/// A user id from an EDU field, if valid and of `origin`.
fn user_of(origin: &ServerName, value: Option<&Value>) -> Option<OwnedUserId> {
    let user = UserId::parse(value?.as_str()?).ok()?;
    (user.server_name() == origin).then_some(user)
}

/// Most bytes of the messages of one `m.direct_to_device` EDU: under the 64 KiB other servers
/// accept of an EDU, with room for its envelope.
const MAX_TO_DEVICE_EDU_BYTES: usize = 60 * 1024;

/// Splits to-device messages (user → device → message) into parts of at most `budget` bytes of
/// JSON each; a single message larger than that goes alone.
fn split_to_device(users: Map<String, Value>, budget: usize) -> Vec<Map<String, Value>> {
    let mut parts: Vec<Map<String, Value>> = Vec::new();
    let mut current = Map::new();
    let mut size = 0;
    for (user, devices) in users {
        let Value::Object(devices) = devices else { continue };
        for (device, message) in devices {
            let weight = user.len() + device.len() + message.to_string().len() + 8;
            if size + weight > budget && !current.is_empty() {
                parts.push(std::mem::take(&mut current));
                size = 0;
            }
            size += weight;
            if let Value::Object(of_user) = current.entry(user.clone()).or_insert_with(|| Value::Object(Map::new())) {
                of_user.insert(device, message);
            }
        }
    }
    if !current.is_empty() || parts.is_empty() {
        parts.push(current);
    }
    parts
}

impl Services {
    // ----- Client requests about remote users -----

    /// Keys of users of `server`: from the kept device lists where this server follows them,
    /// else `POST /user/keys/query`. The failure, if any, is that server's `failures` entry.
    pub(crate) async fn remote_device_keys(
        &self,
        server: &str,
        users: &Map<String, Value>,
    ) -> MatrixResult<(KeysAnswer, Option<RemoteFailure>)> {
        let mut answer = KeysAnswer::default();
        let mut ask = Map::new();
        for (user, devices) in users {
            let Ok(user_id) = UserId::parse(user) else { continue };
            match self.store.remote_device_list_state(&user_id).await? {
                // Kept lists are current only while a room is shared (else no updates come).
                Some(state) if !state.stale && !self.local_mates(&user_id).await?.is_empty() => {
                    let only: Vec<&str> =
                        devices.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
                    self.cached_keys(&user_id, &only, &mut answer).await?;
                }
                Some(state) => {
                    if !state.stale {
                        self.store.forget_remote_device_list(&user_id).await?;
                    }
                    ask.insert(user.clone(), devices.clone());
                }
                None => {
                    ask.insert(user.clone(), devices.clone());
                }
            }
        }
        if ask.is_empty() {
            return Ok((answer, None));
        }
        let Ok(server) = ServerName::parse(server) else {
            return Ok((
                answer,
                Some(RemoteFailure { errcode: "M_INVALID_PARAM", error: "Invalid server name".into() }),
            ));
        };
        let path = "/_matrix/federation/v1/user/keys/query";
        match self.federation_send(reqwest::Method::POST, &server, path, &json!({ "device_keys": ask })).await {
            Ok(remote) => {
                // Only what was asked for, from the users of that server.
                for (field, into) in [
                    ("device_keys", &mut answer.device_keys),
                    ("master_keys", &mut answer.master_keys),
                    ("self_signing_keys", &mut answer.self_signing_keys),
                ] {
                    for (user, keys) in remote.get(field).and_then(Value::as_object).into_iter().flatten() {
                        if ask.contains_key(user) {
                            into.insert(user.clone(), keys.clone());
                        }
                    }
                }
                Ok((answer, None))
            }
            Err(err) => Ok((answer, Some(err.into()))),
        }
    }

    /// A kept remote device list in the `/keys/query` shape.
    async fn cached_keys(&self, user_id: &UserId, only: &[&str], answer: &mut KeysAnswer) -> MatrixResult<()> {
        let mut devices = Map::new();
        for device in self.store.remote_devices(user_id).await? {
            if !only.is_empty() && !only.contains(&device.device_id.as_str()) {
                continue;
            }
            let Some(mut keys) = device.keys.as_deref().and_then(|k| serde_json::from_str::<Value>(k).ok()) else {
                continue;
            };
            if let Some(name) = &device.display_name {
                keys["unsigned"] = json!({ "device_display_name": name });
            }
            devices.insert(device.device_id.to_string(), keys);
        }
        answer.device_keys.insert(user_id.to_string(), Value::Object(devices));
        for (key_type, json) in self.store.remote_cross_signing_keys(user_id).await? {
            let Ok(key) = serde_json::from_str::<Value>(&json) else { continue };
            match key_type.as_str() {
                "master" => answer.master_keys.insert(user_id.to_string(), key),
                "self_signing" => answer.self_signing_keys.insert(user_id.to_string(), key),
                _ => None,
            };
        }
        Ok(())
    }

    /// `POST /user/keys/claim` to `server` for `{user: {device: algorithm}}`; answers
    /// `{user: {device: {key_id: key}}}`.
    pub(crate) async fn remote_claim_keys(
        &self,
        server: &str,
        users: &Map<String, Value>,
    ) -> Result<Value, RemoteFailure> {
        let server = ServerName::parse(server)
            .map_err(|_| RemoteFailure { errcode: "M_INVALID_PARAM", error: "Invalid server name".into() })?;
        let path = "/_matrix/federation/v1/user/keys/claim";
        let answer =
            self.federation_send(reqwest::Method::POST, &server, path, &json!({ "one_time_keys": users })).await?;
        Ok(answer.get("one_time_keys").cloned().unwrap_or_else(|| json!({})))
    }

    /// Adds a local user's public cross-signing keys (`master_key`, `self_signing_key`: what other
    /// servers are told) to `target`.
    async fn add_public_cross_signing_keys(&self, user_id: &UserId, target: &mut Value) -> MatrixResult<()> {
        for (key_type, json) in self.store.cross_signing_keys(user_id).await? {
            let field = match key_type.as_str() {
                "master" => "master_key",
                "self_signing" => "self_signing_key",
                _ => continue,
            };
            if let Ok(key) = serde_json::from_str::<Value>(&json) {
                target[field] = key;
            }
        }
        Ok(())
    }

    /// The remote part of a `/sendToDevice`: `m.direct_to_device` EDUs per server, queued, each
    /// under the size servers accept (a room key for hundreds of devices is split by recipient).
    pub(crate) async fn send_remote_to_device(
        &self,
        r: &Requester,
        event_type: &str,
        txn_id: &TransactionId,
        messages: BTreeMap<OwnedServerName, Map<String, Value>>,
    ) -> MatrixResult<()> {
        for (server, users) in messages {
            let destinations = [server];
            for (part, users) in split_to_device(users, MAX_TO_DEVICE_EDU_BYTES).into_iter().enumerate() {
                // Unique per sender: the device and its transaction id (and the part).
                let mut message_id = format!("{}/{}", r.device_id, txn_id);
                if part > 0 {
                    message_id.push_str(&format!("/{part}"));
                }
                let edu = json!({
                    "edu_type": "m.direct_to_device",
                    "content": { "sender": r.user_id, "type": event_type, "message_id": message_id, "messages": users },
                });
                self.store.queue_edu(&destinations, &edu.to_string(), self.now_ms()).await?;
            }
            self.wake_senders(&destinations).await?;
        }
        Ok(())
    }

    // ----- Device lists out -----

    /// Tells every other server sharing a room with a local user (`mates`) what changed in the
    /// user's device list.
    pub(crate) async fn send_device_list_updates(
        &self,
        user_id: &UserId,
        mates: &[OwnedUserId],
        change: DeviceChange,
    ) -> MatrixResult<()> {
        let mut destinations: Vec<OwnedServerName> =
            mates.iter().map(|u| u.server_name().to_owned()).filter(|s| *s != self.server_name).collect();
        destinations.sort();
        destinations.dedup();
        let edus = match change {
            DeviceChange::CrossSigning => {
                let mut content = json!({ "user_id": user_id });
                self.add_public_cross_signing_keys(user_id, &mut content).await?;
                vec![json!({ "edu_type": "m.signing_key_update", "content": content })]
            }
            DeviceChange::Devices(devices) if !devices.is_empty() => {
                // Stream ids are taken even with nobody to tell: a server that comes back later
                // must see a gap, not a continuation.
                let count = u32::try_from(devices.len()).unwrap_or(u32::MAX);
                let (mut prev, first) = self.store.next_device_list_stream_ids(user_id, count).await?;
                let keys = self.store.device_keys(&[user_id.to_owned()]).await?;
                let mut edus = Vec::with_capacity(devices.len());
                for (stream_id, device_id) in (first..).zip(devices) {
                    let record = self.store.get_device(user_id, &device_id).await?;
                    let mut content = json!({
                        "user_id": user_id,
                        "device_id": device_id,
                        "stream_id": stream_id,
                        "prev_id": if prev > 0 { vec![prev] } else { Vec::new() },
                        "deleted": record.is_none(),
                    });
                    if let Some(record) = &record {
                        if let Some(name) = &record.display_name {
                            content["device_display_name"] = json!(name);
                        }
                        if let Some(k) = keys.iter().find(|k| k.device_id == device_id)
                            && let Ok(k) = serde_json::from_str::<Value>(&k.json)
                        {
                            content["keys"] = k;
                        }
                    }
                    edus.push(json!({ "edu_type": "m.device_list_update", "content": content }));
                    prev = stream_id;
                }
                edus
            }
            DeviceChange::Devices(_) => Vec::new(),
        };
        if destinations.is_empty() || edus.is_empty() {
            return Ok(());
        }
        for edu in edus {
            self.store.queue_edu(&destinations, &edu.to_string(), self.now_ms()).await?;
        }
        self.wake_senders(&destinations).await
    }

    // ----- Federation requests served -----

    /// `POST /_matrix/federation/v1/user/keys/query`: keys of local users only.
    pub async fn federation_query_keys(&self, origin: &ServerName, body: &Value) -> MatrixResult<Value> {
        tracing::debug!(%origin, "federation key query");
        let wanted: Vec<(OwnedUserId, Vec<String>)> =
            parse_query(body)?.into_iter().filter(|(u, _)| self.is_local_user(u)).collect();
        let answer = self.local_device_keys(&wanted, None).await?;
        Ok(json!({
            "device_keys": answer.device_keys,
            "master_keys": answer.master_keys,
            "self_signing_keys": answer.self_signing_keys,
        }))
    }

    /// `POST /_matrix/federation/v1/user/keys/claim`: keys of local users only.
    pub async fn federation_claim_keys(&self, origin: &ServerName, body: &Value) -> MatrixResult<Value> {
        tracing::debug!(%origin, "federation key claim");
        let claims: Vec<_> = parse_claims(body)?.into_iter().filter(|c| self.is_local_user(&c.user_id)).collect();
        Ok(json!({ "one_time_keys": self.claim_local_keys(&claims).await? }))
    }

    /// `GET /_matrix/federation/v1/user/devices/{userId}`: a local user's whole device list.
    pub async fn federation_user_devices(&self, origin: &ServerName, user_id: &UserId) -> MatrixResult<Value> {
        tracing::debug!(%origin, %user_id, "federation device list query");
        if !self.is_local_user(user_id) {
            return Err(MatrixError::invalid_param("Not a user of this server"));
        }
        // The stream id first: an update taken meanwhile is at worst resent.
        let stream_id = self.store.device_list_stream_id(user_id).await?;
        let keys = self.store.device_keys(&[user_id.to_owned()]).await?;
        let mut devices = Vec::new();
        for device in self.store.list_devices(user_id).await? {
            let mut entry = json!({ "device_id": device.device_id });
            if let Some(name) = &device.display_name {
                entry["device_display_name"] = json!(name);
            }
            if let Some(k) = keys.iter().find(|k| k.device_id == device.device_id)
                && let Ok(k) = serde_json::from_str::<Value>(&k.json)
            {
                entry["keys"] = k;
            }
            devices.push(entry);
        }
        let mut answer = json!({ "user_id": user_id, "stream_id": stream_id, "devices": devices });
        self.add_public_cross_signing_keys(user_id, &mut answer).await?;
        Ok(answer)
    }

    // ----- EDUs in -----

    /// Local users sharing a room with a remote user (none: its updates are not for us).
    async fn local_mates(&self, user_id: &UserId) -> MatrixResult<Vec<OwnedUserId>> {
        Ok(self.store.room_mates(user_id).await?.into_iter().filter(|u| self.is_local_user(u)).collect())
    }

    /// `m.device_list_update`: applied if it follows the last one applied, else the list is
    /// marked stale and resynced.
    pub(crate) async fn receive_device_list_update(&self, origin: &ServerName, content: &Value) -> MatrixResult<()> {
        let Some(user_id) = user_of(origin, content.get("user_id")) else { return Ok(()) };
        let Some(device_id) = content.get("device_id").and_then(Value::as_str).filter(|d| !d.is_empty()) else {
            return Ok(());
        };
        let Some(stream_id) = content.get("stream_id").and_then(Value::as_i64) else { return Ok(()) };
        let mates = self.local_mates(&user_id).await?;
        if mates.is_empty() {
            return Ok(());
        }
        let prev: Vec<i64> =
            content.get("prev_id").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_i64).collect();
        match self.store.remote_device_list_state(&user_id).await? {
            Some(state) if !state.stale && stream_id <= state.stream_id => Ok(()), // seen already
            Some(state) if !state.stale && prev.contains(&state.stream_id) => {
                let deleted = content.get("deleted").and_then(Value::as_bool).unwrap_or(false);
                let keys = content.get("keys").filter(|k| k.is_object()).map(Value::to_string);
                let display_name = content.get("device_display_name").and_then(Value::as_str).map(str::to_owned);
                let device = RemoteDevice { device_id: OwnedDeviceId::from(device_id), keys, display_name };
                self.store
                    .update_remote_device_list(&user_id, RemoteDeviceChange::Device { stream_id, device, deleted })
                    .await?;
                self.notifier.notify_users(&mates);
                self.wake_appservices_for_device_lists(&mates).await;
                Ok(())
            }
            _ => self.schedule_device_list_resync(&user_id).await,
        }
    }

    /// `m.signing_key_update`: the user's master and self-signing keys.
    pub(crate) async fn receive_signing_key_update(&self, origin: &ServerName, content: &Value) -> MatrixResult<()> {
        let Some(user_id) = user_of(origin, content.get("user_id")) else { return Ok(()) };
        let mut keys = Vec::new();
        for (field, key_type) in [("master_key", "master"), ("self_signing_key", "self_signing")] {
            if let Some(key) = content.get(field).filter(|k| k["user_id"].as_str() == Some(user_id.as_str())) {
                keys.push((key_type.to_owned(), key.to_string()));
            }
        }
        let mates = self.local_mates(&user_id).await?;
        if keys.is_empty() || mates.is_empty() {
            return Ok(());
        }
        self.store.update_remote_device_list(&user_id, RemoteDeviceChange::CrossSigning(keys)).await?;
        self.notifier.notify_users(&mates);
        Ok(())
    }

    /// Marks the list stale (durably, with the job) and queues its resync.
    async fn schedule_device_list_resync(&self, user_id: &UserId) -> MatrixResult<()> {
        self.store.mark_remote_device_list_stale(user_id).await?;
        let now = self.now_ms();
        let job = NewJob {
            kind: JobKind::DeviceListResync.as_str().to_owned(),
            dedupe_key: Some(resync_key(user_id)),
            payload: json!({ "user_id": user_id }).to_string(),
            run_at_ms: now,
        };
        self.store.schedule_job(job, now).await?;
        self.jobs_queued.notify_one();
        Ok(())
    }

    /// The `device_list_resync` job: the whole list from the user's server.
    pub(crate) async fn run_device_list_resync(&self, payload: &str) -> MatrixResult<()> {
        let user_id = serde_json::from_str::<Value>(payload)
            .ok()
            .and_then(|p| p.get("user_id").and_then(Value::as_str).and_then(|u| UserId::parse(u).ok()))
            .ok_or_else(|| MatrixError::internal(format!("bad device_list_resync payload {payload}")))?;
        let mates = self.local_mates(&user_id).await?;
        if mates.is_empty() {
            self.store.forget_remote_device_list(&user_id).await?;
            return Ok(());
        }
        let path = format!("/_matrix/federation/v1/user/devices/{}", encode_component(user_id.as_str()));
        let answer = self
            .federation_get(user_id.server_name(), &path)
            .await
            .map_err(|e| MatrixError::internal(format!("resyncing the device list of {user_id}: {e}")))?;
        let Some(stream_id) = answer.get("stream_id").and_then(Value::as_i64) else {
            return Err(MatrixError::internal(format!("{user_id}: /user/devices without a stream_id")));
        };
        let mut seen = HashSet::new();
        let devices: Vec<RemoteDevice> = answer
            .get("devices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|d| {
                let device_id = d.get("device_id").and_then(Value::as_str).filter(|id| !id.is_empty())?;
                let keys = d.get("keys").filter(|k| {
                    k["user_id"].as_str() == Some(user_id.as_str()) && k["device_id"].as_str() == Some(device_id)
                });
                seen.insert(device_id.to_owned()).then(|| RemoteDevice {
                    device_id: <&DeviceId>::from(device_id).to_owned(),
                    keys: keys.map(Value::to_string),
                    display_name: d.get("device_display_name").and_then(Value::as_str).map(str::to_owned),
                })
            })
            .take(MAX_REMOTE_DEVICES)
            .collect();
        let mut cross_signing = Vec::new();
        for (field, key_type) in [("master_key", "master"), ("self_signing_key", "self_signing")] {
            if let Some(key) = answer.get(field).filter(|k| k["user_id"].as_str() == Some(user_id.as_str())) {
                cross_signing.push((key_type.to_owned(), key.to_string()));
            }
        }
        self.store
            .update_remote_device_list(&user_id, RemoteDeviceChange::Resync { stream_id, devices, cross_signing })
            .await?;
        self.notifier.notify_users(&mates);
        Ok(())
    }

    /// `m.direct_to_device`: delivered to the local devices named (`*`: all of them).
    pub(crate) async fn receive_direct_to_device(&self, origin: &ServerName, content: &Value) -> MatrixResult<()> {
        let Some(sender) = user_of(origin, content.get("sender")) else { return Ok(()) };
        let Some(event_type) = content.get("type").and_then(Value::as_str).filter(|t| !t.is_empty() && t.len() <= 255)
        else {
            return Ok(());
        };
        let Some(message_id) = content.get("message_id").and_then(Value::as_str).filter(|m| !m.is_empty()) else {
            return Ok(());
        };
        let mut messages = Vec::new();
        for (user, devices) in content.get("messages").and_then(Value::as_object).into_iter().flatten() {
            let Ok(user) = UserId::parse(user) else { continue };
            let Some(devices) = devices.as_object().filter(|_| self.is_local_user(&user)) else { continue };
            let known: Vec<OwnedDeviceId> =
                self.store.list_devices(&user).await?.into_iter().map(|d| d.device_id).collect();
            for (device, message) in devices {
                if !message.is_object() {
                    continue;
                }
                for target in known.iter().filter(|d| device == "*" || d.as_str() == device) {
                    messages.push((user.clone(), target.clone(), message.to_string()));
                }
            }
        }
        if messages.is_empty() {
            return Ok(());
        }
        let mut recipients: Vec<OwnedUserId> = messages.iter().map(|(u, ..)| u.clone()).collect();
        recipients.sort();
        recipients.dedup();
        let for_appservices = self.appservice_to_device(&sender, event_type, &messages);
        let send = ToDeviceSend {
            sender,
            // A remote sender's messages are told apart by their origin's message id.
            sender_device: OwnedDeviceId::from(format!("federation:{origin}").as_str()),
            txn_id: <&TransactionId>::from(message_id).to_owned(),
            event_type: event_type.to_owned(),
            messages,
            now_ms: self.now_ms(),
        };
        if self.store.send_to_device(send).await? {
            self.notifier.notify_users(&recipients);
            self.queue_appservice_to_device(for_appservices).await?;
        }
        Ok(())
    }

    // ----- OpenID -----

    /// `POST /user/{userId}/openid/request_token`: a token another service may check with this
    /// server's `/openid/userinfo`.
    pub async fn request_openid_token(&self, r: &Requester, user_id: &UserId) -> MatrixResult<Value> {
        if r.user_id != user_id {
            return Err(MatrixError::forbidden("You may only request OpenID tokens for yourself"));
        }
        let token = format!("myo_{}", self.random.alphanumeric(40));
        self.store.create_openid_token(&token, user_id, self.now_ms() + OPENID_TOKEN_LIFETIME_MS).await?;
        Ok(json!({
            "access_token": token,
            "token_type": "Bearer",
            "matrix_server_name": self.server_name,
            "expires_in": OPENID_TOKEN_LIFETIME_MS / 1000,
        }))
    }

    /// The user an OpenID token of `server` stands for (asked of `server`'s `/openid/userinfo`
    /// unless it is this server); `None` if the token is unknown, expired, or names a user of
    /// another server.
    pub(crate) async fn openid_token_owner(
        &self,
        server: &ServerName,
        token: &str,
    ) -> MatrixResult<Option<OwnedUserId>> {
        if server == self.server_name() {
            return Ok(self.store.openid_token_user(token, self.now_ms()).await?);
        }
        let path = format!("/_matrix/federation/v1/openid/userinfo?access_token={}", encode_component(token));
        let body = match self.federation_request(reqwest::Method::GET, server, &path, None, false).await {
            Ok(body) => body,
            Err(err) => {
                tracing::info!(%server, error = %err, "an OpenID token could not be checked with its server");
                return Ok(None);
            }
        };
        Ok(userinfo_user(&body, server))
    }

    /// `GET /_matrix/federation/v1/openid/userinfo`: the user of a valid OpenID token.
    pub async fn openid_userinfo(&self, token: &str) -> MatrixResult<Value> {
        match self.store.openid_token_user(token, self.now_ms()).await? {
            Some(user_id) => Ok(json!({ "sub": user_id })),
            None => Err(MatrixError::unknown_token("Unknown or expired OpenID token")),
        }
    }
}

/// The user an `/openid/userinfo` answer of `server` names, if it is one of `server`'s users (a
/// server vouches for its own users only).
fn userinfo_user(body: &[u8], server: &ServerName) -> Option<OwnedUserId> {
    let sub = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("sub").and_then(Value::as_str).and_then(|s| OwnedUserId::try_from(s).ok()));
    sub.filter(|user| user.server_name() == server)
}

#[cfg(test)]
mod userinfo_tests {
    use ruma::server_name;

    use super::userinfo_user;

    #[test]
    fn a_server_vouches_for_its_own_users_only() {
        let b = server_name!("b.example");
        assert_eq!(
            userinfo_user(br#"{"sub":"@bob:b.example"}"#, b).map(|u| u.to_string()),
            Some("@bob:b.example".into())
        );
        assert_eq!(userinfo_user(br#"{"sub":"@alice:a.example"}"#, b), None, "b cannot vouch for a's alice");
        assert_eq!(userinfo_user(br#"{"sub":"not a user"}"#, b), None);
        assert_eq!(userinfo_user(br#"{"error":"M_UNKNOWN_TOKEN"}"#, b), None);
        assert_eq!(userinfo_user(b"<html>", b), None);
    }
}

#[cfg(test)]
mod split_tests {
    use serde_json::{Map, Value, json};

    use super::split_to_device;

    #[test]
    fn to_device_messages_are_split_by_recipient_under_the_budget() {
        let mut users = Map::new();
        for u in 0..3 {
            let devices: Map<String, Value> =
                (0..50).map(|d| (format!("D{d}"), json!({ "ciphertext": "x".repeat(900) }))).collect();
            users.insert(format!("@u{u}:remote"), Value::Object(devices));
        }
        let parts = split_to_device(users, 60 * 1024);
        assert!(parts.len() >= 3, "150 messages of ~1 KiB make several parts: {}", parts.len());
        let mut count = 0;
        for part in &parts {
            assert!(Value::Object(part.clone()).to_string().len() <= 60 * 1024 + 1024);
            count += part.values().map(|d| d.as_object().map_or(0, Map::len)).sum::<usize>();
        }
        assert_eq!(count, 150, "every message in exactly one part");
        let one: Map<String, Value> =
            [("@a:b".to_owned(), json!({ "D": { "big": "y".repeat(100_000) } }))].into_iter().collect();
        assert_eq!(split_to_device(one, 60 * 1024).len(), 1, "an oversized message goes alone");
        assert_eq!(split_to_device(Map::new(), 10).len(), 1, "nothing to send is one empty part");
    }
}
