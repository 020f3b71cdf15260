use async_trait::async_trait;
use myelin_core::{
    StreamPos,
    types::{OwnedDeviceId, OwnedUserId, UserId},
};

use crate::StorageResult;

/// A remote user's device as its server described it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteDevice {
    pub device_id: OwnedDeviceId,
    /// The signed `device_keys` object's JSON, if the device has keys.
    pub keys: Option<String>,
    pub display_name: Option<String>,
}

/// How far this server follows a remote user's device list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteDeviceListState {
    /// The origin's stream id of the last update applied.
    pub stream_id: i64,
    /// A gap was seen: the list must be resynced before it is answered from.
    pub stale: bool,
}

/// A change to a remote user's device list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteDeviceChange {
    /// The whole list from `/user/devices`: devices and cross-signing keys (key type → JSON);
    /// the list is no longer stale.
    Resync { stream_id: i64, devices: Vec<RemoteDevice>, cross_signing: Vec<(String, String)> },
    /// One `m.device_list_update`: the device added or changed, or deleted.
    Device { stream_id: i64, device: RemoteDevice, deleted: bool },
    /// One `m.signing_key_update`: these cross-signing keys replace the stored ones of their type.
    CrossSigning(Vec<(String, String)>),
}

/// Device lists of other servers' users, local users' device-list stream ids as other servers
/// see them, and OpenID tokens.
#[async_trait]
pub trait RemoteDeviceRepo {
    /// Whether the user's list is kept, and how far.
    async fn remote_device_list_state(&self, user_id: &UserId) -> StorageResult<Option<RemoteDeviceListState>>;
    /// Applies a change (an update or a signing key update of a list not kept is applied all the
    /// same, but the list stays untrusted until a resync) and records "this user's device list
    /// changed" on the stream, where local syncs see it.
    async fn update_remote_device_list(&self, user_id: &UserId, change: RemoteDeviceChange)
    -> StorageResult<StreamPos>;
    /// Marks a kept list stale (a gap), durably, before it is resynced.
    async fn mark_remote_device_list_stale(&self, user_id: &UserId) -> StorageResult<()>;
    /// Forgets a remote user's list (no room is shared any more).
    async fn forget_remote_device_list(&self, user_id: &UserId) -> StorageResult<()>;
    /// The stored devices of a remote user.
    async fn remote_devices(&self, user_id: &UserId) -> StorageResult<Vec<RemoteDevice>>;
    /// The stored cross-signing keys of a remote user: (key type, JSON).
    async fn remote_cross_signing_keys(&self, user_id: &UserId) -> StorageResult<Vec<(String, String)>>;
    /// Takes `count` new stream ids for a local user's outgoing device-list updates; answers the
    /// id before them (0 if none) and the first new one (they are consecutive).
    async fn next_device_list_stream_ids(&self, user_id: &UserId, count: u32) -> StorageResult<(i64, i64)>;
    /// A local user's current device-list stream id as other servers see it (0 if none yet).
    async fn device_list_stream_id(&self, user_id: &UserId) -> StorageResult<i64>;
    /// Stores an OpenID token for the user until `expires_ms`.
    async fn create_openid_token(&self, token: &str, user_id: &UserId, expires_ms: u64) -> StorageResult<()>;
    /// The user of an OpenID token that has not expired at `now_ms`.
    async fn openid_token_user(&self, token: &str, now_ms: u64) -> StorageResult<Option<OwnedUserId>>;
    /// Deletes OpenID tokens that expired before `now_ms`; returns how many.
    async fn delete_expired_openid_tokens(&self, now_ms: u64) -> StorageResult<u64>;
}
