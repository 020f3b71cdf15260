//! Users: credentials, admin flag, deactivation and the global profile.

use async_trait::async_trait;

use myelin_core::{
    Membership,
    types::{OwnedDeviceId, OwnedUserId, UserId},
};

use crate::{AccountRepo, Database, StorageResult, UserDirectoryHit, UserListFilter, UserRecord, db::Row};

/// A `LIKE … ESCAPE '\\'` pattern for text containing `term`, taken literally.
fn contains_pattern(term: &str) -> String {
    format!("%{}%", super::escape_like(term))
}

fn user_from_row(r: &Row<'_>) -> StorageResult<UserRecord> {
    Ok(UserRecord {
        user_id: r.get(0)?,
        password_hash: r.get(1)?,
        is_admin: r.get(2)?,
        deactivated: r.get(3)?,
        displayname: r.get(4)?,
        avatar_url: r.get(5)?,
        created_ms: r.get(6)?,
        is_guest: r.get(7)?,
    })
}

/// What belongs to the user rather than to one device, deleted when the account is deactivated
/// (after every device, with `devices::delete_devices`).
const USER_TABLES: [&str; 4] = ["cross_signing_keys", "dehydrated_devices", "access_tokens", "refresh_tokens"];

#[async_trait]
impl AccountRepo for Database {
    async fn create_user(&self, user: UserRecord) -> StorageResult<()> {
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO users (user_id, password_hash, is_admin, deactivated, displayname, avatar_url, created_ms,
                                        is_guest)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[
                        &user.user_id,
                        &user.password_hash,
                        &user.is_admin,
                        &user.deactivated,
                        &user.displayname,
                        &user.avatar_url,
                        &user.created_ms,
                        &user.is_guest,
                    ],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn get_user(&self, user_id: &UserId) -> StorageResult<Option<UserRecord>> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query_opt(
                    "SELECT user_id, password_hash, is_admin, deactivated, displayname, avatar_url, created_ms, is_guest
                     FROM users WHERE user_id = $1",
                    &[&user_id],
                    user_from_row,
                )
                .await
            })
        })
        .await
    }

    async fn set_password_hash(&self, user_id: &UserId, hash: Option<String>) -> StorageResult<()> {
        let user_id = user_id.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute("UPDATE users SET password_hash = $2 WHERE user_id = $1", &[&user_id, &hash]).await?;
                Ok(())
            })
        })
        .await
    }

    async fn upgrade_guest(&self, user_id: &UserId, hash: Option<String>) -> StorageResult<bool> {
        let _forget = super::notified::TokenOwnersChanged(self, user_id);
        let user_id = user_id.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                let changed = c
                    .execute(
                        "UPDATE users SET is_guest = 0, password_hash = $2 WHERE user_id = $1 AND is_guest = 1",
                        &[&user_id, &hash],
                    )
                    .await?;
                Ok(changed == 1)
            })
        })
        .await
    }

    async fn deactivate_user(&self, user_id: &UserId) -> StorageResult<()> {
        let _forget = super::notified::DevicesChanged::of(self, user_id);
        let user_id = user_id.to_owned();
        self.write(move |c, positions| {
            Box::pin(async move {
                c.execute(
                    "UPDATE users SET deactivated = 1, password_hash = NULL, displayname = NULL, avatar_url = NULL
                     WHERE user_id = $1",
                    &[&user_id],
                )
                .await?;
                let devices: Vec<OwnedDeviceId> =
                    c.query("SELECT device_id FROM devices WHERE user_id = $1", &[&user_id], |r| r.get(0)).await?;
                super::devices::delete_devices(c, positions, &user_id, &devices).await?;
                for table in USER_TABLES {
                    c.execute(&format!("DELETE FROM {table} WHERE user_id = $1"), &[&user_id]).await?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn mark_user_erased(&self, user_id: &UserId, now_ms: u64) -> StorageResult<()> {
        let user_id = user_id.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO erased_users (user_id, erased_ms) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING",
                    &[&user_id, &now_ms],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn erased_users_among(&self, users: &[OwnedUserId]) -> StorageResult<Vec<OwnedUserId>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let users = users.to_vec();
        self.read(move |c| {
            Box::pin(async move {
                c.query("SELECT user_id FROM erased_users WHERE user_id = ANY($1)", &[&users], |r| r.get(0)).await
            })
        })
        .await
    }

    async fn set_displayname(&self, user_id: &UserId, name: Option<String>) -> StorageResult<()> {
        let user_id = user_id.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute("UPDATE users SET displayname = $2 WHERE user_id = $1", &[&user_id, &name]).await?;
                Ok(())
            })
        })
        .await
    }

    async fn set_avatar_url(&self, user_id: &UserId, url: Option<String>) -> StorageResult<()> {
        let user_id = user_id.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute("UPDATE users SET avatar_url = $2 WHERE user_id = $1", &[&user_id, &url]).await?;
                Ok(())
            })
        })
        .await
    }

    async fn list_users(
        &self,
        filter: &UserListFilter,
        offset: u64,
        limit: usize,
    ) -> StorageResult<(Vec<UserRecord>, u64)> {
        let pattern = filter.name.as_deref().map_or_else(String::new, |name| contains_pattern(&name.to_lowercase()));
        let guests = i64::from(filter.guests);
        let deactivated = i64::from(filter.deactivated);
        self.read(move |c| {
            Box::pin(async move {
                let matching = "($1 = '' OR LOWER(user_id) LIKE $1 ESCAPE '\\'
                                 OR LOWER(COALESCE(displayname, '')) LIKE $1 ESCAPE '\\')
                                AND ($2 = 1 OR is_guest = 0) AND ($3 = 1 OR deactivated = 0)";
                let total: u64 = c
                    .query_one(
                        &format!("SELECT COUNT(*) FROM users WHERE {matching}"),
                        &[&pattern, &guests, &deactivated],
                        |r| r.get(0),
                    )
                    .await?;
                let users = c
                    .query(
                        &format!(
                            "SELECT user_id, password_hash, is_admin, deactivated, displayname, avatar_url, created_ms,
                                    is_guest
                             FROM users WHERE {matching} ORDER BY user_id LIMIT {limit} OFFSET {offset}"
                        ),
                        &[&pattern, &guests, &deactivated],
                        user_from_row,
                    )
                    .await?;
                Ok((users, total))
            })
        })
        .await
    }

    async fn search_users(&self, searcher: &UserId, term: &str, limit: usize) -> StorageResult<Vec<UserDirectoryHit>> {
        let searcher = searcher.to_owned();
        // Case-insensitive on both backends: the pattern is lowercased here, the columns in SQL.
        let term = term.to_lowercase();
        let pattern = contains_pattern(&term);
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT u.user_id, u.displayname, u.avatar_url FROM users u
                     WHERE u.deactivated = 0
                       AND (LOWER(u.user_id) LIKE $2 ESCAPE '\\' OR LOWER(u.displayname) LIKE $2 ESCAPE '\\')
                       AND (u.user_id = $1
                            OR EXISTS (SELECT 1 FROM room_members a JOIN room_members b ON a.room_id = b.room_id
                                       WHERE a.user_id = $1 AND a.membership = $3
                                         AND b.user_id = u.user_id AND b.membership = $3)
                            OR EXISTS (SELECT 1 FROM room_members m JOIN rooms r ON r.room_id = m.room_id
                                       WHERE m.user_id = u.user_id AND m.membership = $3 AND r.join_rule = 'public'))
                     ORDER BY u.user_id LIMIT {limit}"
                );
                c.query(&sql, &[&searcher, &pattern, &Membership::Join], |r| {
                    Ok(UserDirectoryHit { user_id: r.get(0)?, displayname: r.get(1)?, avatar_url: r.get(2)? })
                })
                .await
            })
        })
        .await
    }
}
