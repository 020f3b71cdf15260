use async_trait::async_trait;
use myelin_core::types::{OwnedUserId, UserId};

use crate::StorageResult;

#[derive(Clone, Debug)]
pub struct UserRecord {
    pub user_id: OwnedUserId,
    /// PHC string (argon2id); `None`: cannot log in with a password.
    pub password_hash: Option<String>,
    pub is_admin: bool,
    /// A guest account (`/register?kind=guest`).
    pub is_guest: bool,
    pub deactivated: bool,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
    pub created_ms: u64,
}

#[derive(Clone, Debug)]
pub struct UserDirectoryHit {
    pub user_id: OwnedUserId,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

/// Which users the admins' list shows.
#[derive(Clone, Debug, Default)]
pub struct UserListFilter {
    /// A part of the user id or display name (ignoring case).
    pub name: Option<String>,
    /// Guests are listed too.
    pub guests: bool,
    /// Deactivated users are listed too.
    pub deactivated: bool,
}

/// Users: credentials, admin flag, deactivation and the global profile.
#[async_trait]
pub trait AccountRepo {
    /// Creates a user; `StorageError::Conflict` if the id is taken.
    async fn create_user(&self, user: UserRecord) -> StorageResult<()>;
    async fn get_user(&self, user_id: &UserId) -> StorageResult<Option<UserRecord>>;
    async fn set_password_hash(&self, user_id: &UserId, hash: Option<String>) -> StorageResult<()>;
    /// Makes a guest a full user with this password; false if the user is not a guest (any more).
    async fn upgrade_guest(&self, user_id: &UserId, hash: Option<String>) -> StorageResult<bool>;
    /// Marks the user deactivated, clears the password and profile, and deletes every device,
    /// token and key.
    async fn deactivate_user(&self, user_id: &UserId) -> StorageResult<()>;
    /// Marks a (deactivated) user erased: their messages are hidden from later joiners.
    async fn mark_user_erased(&self, user_id: &UserId, now_ms: u64) -> StorageResult<()>;
    /// Those of `users` who were erased.
    async fn erased_users_among(&self, users: &[OwnedUserId]) -> StorageResult<Vec<OwnedUserId>>;
    async fn set_displayname(&self, user_id: &UserId, name: Option<String>) -> StorageResult<()>;
    async fn set_avatar_url(&self, user_id: &UserId, url: Option<String>) -> StorageResult<()>;
    /// Users whose id or display name contains `term` (ignoring case), visible to `searcher`:
    /// those who share a room with them or are joined to a room whose join rule is `public`.
    async fn search_users(&self, searcher: &UserId, term: &str, limit: usize) -> StorageResult<Vec<UserDirectoryHit>>;
    /// The users `filter` lets through, in user id order, from the `offset`-th, at most
    /// `limit`; and how many it lets through in all.
    async fn list_users(
        &self,
        filter: &UserListFilter,
        offset: u64,
        limit: usize,
    ) -> StorageResult<(Vec<UserRecord>, u64)>;
}
