use async_trait::async_trait;
use myelin_core::types::{OwnedRoomId, RoomId, UserId};

use crate::StorageResult;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupVersion {
    pub version: i64,
    pub algorithm: String,
    pub auth_data: String,
    pub etag: i64,
    pub count: u64,
}

/// One backed-up room key (`KeyBackupData`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupKey {
    pub room_id: OwnedRoomId,
    pub session_id: String,
    pub first_message_index: i64,
    pub forwarded_count: i64,
    pub is_verified: bool,
    pub session_data: String,
}

impl BackupKey {
    /// Whether this key should replace `old` (the specification's order): a verified key beats an
    /// unverified one, then the lower `first_message_index`, then the lower `forwarded_count`.
    pub fn replaces(&self, old: &BackupKey) -> bool {
        if self.is_verified != old.is_verified {
            return self.is_verified;
        }
        if self.first_message_index != old.first_message_index {
            return self.first_message_index < old.first_message_index;
        }
        self.forwarded_count < old.forwarded_count
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackupWrite {
    /// Written (or nothing needed changing): the version's etag and key count now.
    Done { etag: i64, count: u64 },
    /// The version is not the current one (or does not exist): the current version, if any.
    WrongVersion { current: Option<i64> },
}

/// Server-side key backup, per user.
#[async_trait]
pub trait BackupRepo {
    /// Creates a new version, numbered after every earlier one (deleted ones included).
    async fn create_backup_version(&self, user_id: &UserId, algorithm: &str, auth_data: String) -> StorageResult<i64>;
    /// A version that is not deleted; `None` asks for the newest one.
    async fn backup_version(&self, user_id: &UserId, version: Option<i64>) -> StorageResult<Option<BackupVersion>>;
    /// Replaces a live version's `auth_data`; false if there is no such version.
    async fn update_backup_version(&self, user_id: &UserId, version: i64, auth_data: String) -> StorageResult<bool>;
    /// Deletes a version and its keys; false if it never existed.
    async fn delete_backup_version(&self, user_id: &UserId, version: i64) -> StorageResult<bool>;
    /// Stores keys into the current version, each replacing a stored one only if better.
    async fn put_backup_keys(&self, user_id: &UserId, version: i64, keys: Vec<BackupKey>)
    -> StorageResult<BackupWrite>;
    /// Keys of a version, optionally of one room or one session.
    async fn backup_keys(
        &self,
        user_id: &UserId,
        version: i64,
        room_id: Option<&RoomId>,
        session_id: Option<&str>,
    ) -> StorageResult<Vec<BackupKey>>;
    /// Deletes keys of a version (all, one room's, or one session).
    async fn delete_backup_keys(
        &self,
        user_id: &UserId,
        version: i64,
        room_id: Option<&RoomId>,
        session_id: Option<&str>,
    ) -> StorageResult<BackupWrite>;
}
