//! The server admins' view of accounts, in the shapes of Synapse's admin API (`/_synapse/admin`,
//! which admin UIs speak): the user list and one user's details, deactivation (with erasure) and
//! password resets. The admin CLI calls the same functions (`myelin user …`). Every action that
//! removes something is written to the log with the admin who did it.

use myelin_core::{
    MatrixError, MatrixResult,
    types::{OwnedUserId, UserId},
};
use myelin_storage::{UserListFilter, UserRecord};
use serde_json::{Value, json};

use crate::{Services, accounts::Requester};

/// Users listed per page unless asked otherwise, and at most.
const USERS_PAGE: usize = 100;
const MAX_USERS_PAGE: usize = 1000;

/// `GET /_synapse/admin/v2/users`'s query.
#[derive(Debug, Default)]
pub struct UserListQuery {
    /// The offset to start from (`next_token` of the previous page).
    pub from: u64,
    pub limit: Option<usize>,
    /// A part of the user id or display name.
    pub name: Option<String>,
    /// Guests too (default true, as Synapse).
    pub guests: bool,
    /// Deactivated users too (default false).
    pub deactivated: bool,
}

/// A user as the list shows them (Synapse's flags as 0/1 there).
fn listed(user: &UserRecord) -> Value {
    json!({
        "name": user.user_id,
        "displayname": user.displayname,
        "avatar_url": user.avatar_url,
        "is_guest": u8::from(user.is_guest),
        "admin": u8::from(user.is_admin),
        "deactivated": u8::from(user.deactivated),
        "user_type": Value::Null,
        "shadow_banned": 0,
        "locked": false,
        "creation_ts": user.created_ms,
    })
}

impl Services {
    /// `M_FORBIDDEN` unless the requester is a server admin.
    pub fn require_admin(requester: &Requester) -> MatrixResult<()> {
        if requester.is_admin { Ok(()) } else { Err(MatrixError::forbidden("You are not a server admin")) }
    }

    /// A user of this server named in an admin request (`M_INVALID_PARAM` for another server's).
    fn local_user_for_admin(&self, user_id: &UserId) -> MatrixResult<()> {
        if self.is_local_user(user_id) {
            Ok(())
        } else {
            Err(MatrixError::invalid_param("Only local users can be administered"))
        }
    }

    /// `GET /_synapse/admin/v2/users`: a page of users in user id order, `total` and, when more
    /// follow, `next_token`.
    pub async fn admin_list_users(&self, requester: &Requester, query: UserListQuery) -> MatrixResult<Value> {
        Self::require_admin(requester)?;
        let limit = query.limit.unwrap_or(USERS_PAGE).clamp(1, MAX_USERS_PAGE);
        let filter = UserListFilter { name: query.name, guests: query.guests, deactivated: query.deactivated };
        let (users, total) = self.store.list_users(&filter, query.from, limit).await?;
        let mut body = json!({ "users": users.iter().map(listed).collect::<Vec<_>>(), "total": total });
        let next = query.from + users.len() as u64;
        if next < total {
            body["next_token"] = next.to_string().into();
        }
        Ok(body)
    }

    /// `GET /_synapse/admin/v2/users/{userId}`: one user with their addresses.
    pub async fn admin_user(&self, requester: &Requester, user_id: &UserId) -> MatrixResult<Value> {
        Self::require_admin(requester)?;
        self.local_user_for_admin(user_id)?;
        let user = self.existing_user(user_id).await?;
        let threepids: Vec<Value> = self
            .store
            .user_threepids(user_id)
            .await?
            .into_iter()
            .map(|t| json!({ "medium": t.medium, "address": t.address, "added_at": t.added_ms, "validated_at": t.validated_ms }))
            .collect();
        let erased = !self.store.erased_users_among(&[user_id.to_owned()]).await?.is_empty();
        Ok(json!({
            "name": user.user_id,
            "displayname": user.displayname,
            "avatar_url": user.avatar_url,
            "threepids": threepids,
            "is_guest": user.is_guest,
            "admin": user.is_admin,
            "deactivated": user.deactivated,
            "erased": erased,
            "shadow_banned": false,
            "locked": false,
            "suspended": false,
            "creation_ts": user.created_ms,
            "appservice_id": Value::Null,
            "user_type": Value::Null,
            "external_ids": [],
        }))
    }

    /// `POST /_synapse/admin/v1/deactivate/{userId}` (`erase`: their messages hidden from
    /// later joiners). Logged with the admin who did it.
    pub async fn admin_deactivate(&self, requester: &Requester, user_id: &UserId, erase: bool) -> MatrixResult<()> {
        Self::require_admin(requester)?;
        self.local_user_for_admin(user_id)?;
        self.deactivate_erasing(user_id, erase).await?;
        tracing::warn!(admin = %requester.user_id, %user_id, erase, "admin API: user deactivated");
        Ok(())
    }

    /// `POST /_synapse/admin/v1/reset_password/{userId}`: a new password, and (unless
    /// `logout_devices` is false) every device logged out. Logged with the admin who did it.
    pub async fn admin_reset_password(
        &self,
        requester: &Requester,
        user_id: &UserId,
        new_password: String,
        logout_devices: bool,
    ) -> MatrixResult<()> {
        Self::require_admin(requester)?;
        self.local_user_for_admin(user_id)?;
        if self.existing_user(user_id).await?.deactivated {
            return Err(MatrixError::invalid_param("The user is deactivated"));
        }
        self.set_password(user_id, new_password).await?;
        if logout_devices {
            self.delete_all_devices(user_id, None).await?;
        }
        tracing::warn!(admin = %requester.user_id, %user_id, logout_devices, "admin API: password reset");
        Ok(())
    }

    /// The users an admin list names, for the CLI (`myelin user list`).
    pub async fn all_user_ids(&self, deactivated: bool) -> MatrixResult<Vec<OwnedUserId>> {
        let filter = UserListFilter { name: None, guests: true, deactivated };
        let mut out = Vec::new();
        loop {
            let (users, total) = self.store.list_users(&filter, out.len() as u64, MAX_USERS_PAGE).await?;
            let done = users.is_empty();
            out.extend(users.into_iter().map(|u| u.user_id));
            if done || out.len() as u64 >= total {
                return Ok(out);
            }
        }
    }
}
