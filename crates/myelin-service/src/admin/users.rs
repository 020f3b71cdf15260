//! Accounts as admins see them: the user list and one user's details, their devices, rooms,
//! pushers and uploads, deactivation (with erasure) and password resets.

use myelin_core::{
    MatrixError, MatrixResult,
    types::{DeviceId, OwnedDeviceId, OwnedUserId, UserId},
};
use myelin_storage::{UserListFilter, UserRecord};
use serde_json::{Value, json};

use super::{Page, next_token};
use crate::{Services, accounts::Requester};

/// `GET /_synapse/admin/v2/users`'s query.
#[derive(Debug, Default)]
pub struct UserListQuery {
    pub page: Page,
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
    /// `GET /_synapse/admin/v2/users`: a page of users in user id order, `total` and, when more
    /// follow, `next_token`.
    pub async fn admin_list_users(&self, requester: &Requester, query: UserListQuery) -> MatrixResult<Value> {
        Self::require_admin(requester)?;
        let filter = UserListFilter { name: query.name, guests: query.guests, deactivated: query.deactivated };
        let (users, total) = self.store.list_users(&filter, query.page.from, query.page.size()).await?;
        let mut body = json!({ "users": users.iter().map(listed).collect::<Vec<_>>(), "total": total });
        if let Some(next) = next_token(query.page, users.len(), total) {
            body["next_token"] = next.into();
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
            let (users, total) = self.store.list_users(&filter, out.len() as u64, super::MAX_PAGE).await?;
            let done = users.is_empty();
            out.extend(users.into_iter().map(|u| u.user_id));
            if done || out.len() as u64 >= total {
                return Ok(out);
            }
        }
    }

    /// A local user an admin names who exists (`M_NOT_FOUND` otherwise).
    async fn administered_user(&self, requester: &Requester, user_id: &UserId) -> MatrixResult<UserRecord> {
        Self::require_admin(requester)?;
        self.local_user_for_admin(user_id)?;
        self.existing_user(user_id).await
    }

    /// `GET /_synapse/admin/v2/users/{userId}/devices`.
    pub async fn admin_devices(&self, requester: &Requester, user_id: &UserId) -> MatrixResult<Value> {
        self.administered_user(requester, user_id).await?;
        let devices: Vec<Value> = self.store.list_devices(user_id).await?.iter().map(admin_device).collect();
        Ok(json!({ "total": devices.len(), "devices": devices }))
    }

    /// `GET /_synapse/admin/v2/users/{userId}/devices/{deviceId}`.
    pub async fn admin_device(
        &self,
        requester: &Requester,
        user_id: &UserId,
        device: &DeviceId,
    ) -> MatrixResult<Value> {
        self.administered_user(requester, user_id).await?;
        Ok(admin_device(&self.device(user_id, device).await?))
    }

    /// `PUT /_synapse/admin/v2/users/{userId}/devices/{deviceId}`: renames the device.
    pub async fn admin_rename_device(
        &self,
        requester: &Requester,
        user_id: &UserId,
        device: &DeviceId,
        name: Option<String>,
    ) -> MatrixResult<()> {
        self.administered_user(requester, user_id).await?;
        self.rename_device(user_id, device, name).await
    }

    /// `DELETE /_synapse/admin/v2/users/{userId}/devices/{deviceId}` and `POST …/delete_devices`:
    /// logs the devices out (devices the user does not have are ignored, as Synapse).
    pub async fn admin_delete_devices(
        &self,
        requester: &Requester,
        user_id: &UserId,
        devices: Vec<OwnedDeviceId>,
    ) -> MatrixResult<()> {
        self.administered_user(requester, user_id).await?;
        if devices.len() > super::MAX_PAGE {
            return Err(MatrixError::invalid_param("Too many devices"));
        }
        self.delete_devices(user_id, &devices).await?;
        tracing::warn!(admin = %requester.user_id, %user_id, devices = devices.len(), "admin API: devices deleted");
        Ok(())
    }

    /// `GET /_synapse/admin/v1/users/{userId}/joined_rooms`.
    pub async fn admin_joined_rooms(&self, requester: &Requester, user_id: &UserId) -> MatrixResult<Value> {
        self.administered_user(requester, user_id).await?;
        let rooms = self.joined_rooms(user_id).await?;
        Ok(json!({ "total": rooms.len(), "joined_rooms": rooms }))
    }

    /// `GET /_synapse/admin/v1/users/{userId}/memberships`: every room the user has a membership
    /// of, with it.
    pub async fn admin_memberships(&self, requester: &Requester, user_id: &UserId) -> MatrixResult<Value> {
        self.administered_user(requester, user_id).await?;
        let memberships: serde_json::Map<String, Value> = self
            .store
            .rooms_for_user(user_id)
            .await?
            .into_iter()
            .map(|r| (r.room_id.to_string(), r.membership.as_str().into()))
            .collect();
        Ok(json!({ "memberships": memberships }))
    }

    /// `GET /_synapse/admin/v1/users/{userId}/pushers`.
    pub async fn admin_pushers(&self, requester: &Requester, user_id: &UserId) -> MatrixResult<Value> {
        self.administered_user(requester, user_id).await?;
        let pushers: Vec<Value> = self
            .store
            .pushers(user_id)
            .await?
            .into_iter()
            .map(|p| {
                json!({
                    "app_id": p.app_id,
                    "pushkey": p.pushkey,
                    "kind": p.kind,
                    "app_display_name": p.app_display_name,
                    "device_display_name": p.device_display_name,
                    "profile_tag": p.profile_tag.unwrap_or_default(),
                    "lang": p.lang,
                    "data": serde_json::from_str::<Value>(&p.data).unwrap_or_default(),
                    "user_name": user_id,
                })
            })
            .collect();
        Ok(json!({ "total": pushers.len(), "pushers": pushers }))
    }
}

/// A device as the admin API shows it.
fn admin_device(d: &myelin_storage::DeviceRecord) -> Value {
    json!({
        "device_id": d.device_id,
        "display_name": d.display_name,
        "last_seen_ip": d.last_seen_ip,
        "last_seen_ts": d.last_seen_ms,
        "last_seen_user_agent": Value::Null,
        "user_id": d.user_id,
    })
}
