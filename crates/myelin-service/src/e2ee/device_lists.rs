//! Device-list tracking: which users' devices a user must re-query (`changed`) or may forget
//! (`left`) between two stream positions, following room sharing (invariants 7, 8 of the E2EE
//! research note). Used by sync and `/keys/changes`.

use std::collections::BTreeSet;

use myelin_core::{
    MatrixResult, Membership,
    types::{DeviceId, OwnedDeviceId, OwnedUserId, UserId},
};
use myelin_storage::{StreamPos, UserRoom};

use crate::{Services, accounts::Requester, uia::AuthData};

#[derive(Debug, Default, PartialEq, Eq)]
pub struct DeviceListDelta {
    pub changed: BTreeSet<OwnedUserId>,
    pub left: BTreeSet<OwnedUserId>,
}

impl DeviceListDelta {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.left.is_empty()
    }
}

impl Services {
    /// Users whose device lists `user_id` must hear about for `(since, until]`.
    pub async fn device_list_delta(
        &self,
        user_id: &UserId,
        rooms: &[UserRoom],
        since: StreamPos,
        until: StreamPos,
    ) -> MatrixResult<DeviceListDelta> {
        let mut candidates: BTreeSet<OwnedUserId> =
            self.store.device_list_changes(since, until).await?.into_iter().collect();
        let mut departed: BTreeSet<OwnedUserId> = BTreeSet::new();
        // Membership changes in the user's rooms: newly shared users have changed device lists
        // from this user's point of view; users gone may have left entirely.
        // Only rooms with news can have membership changes; of those, only the changed members
        // are read, except in a room the user joined or left now, where every member counts.
        for room in rooms.iter().filter(|r| r.last_event_pos > since) {
            let own_change = room.membership_pos > since && room.membership_pos <= until;
            if room.membership != Membership::Join && !own_change {
                continue;
            }
            let members = if own_change {
                self.store.room_members(&room.room_id, None).await?
            } else {
                self.store.membership_changes(&room.room_id, since, until).await?
            };
            for member in members {
                match member.membership {
                    Membership::Join | Membership::Invite if room.membership == Membership::Join => {
                        candidates.insert(member.user_id);
                    }
                    _ => {
                        departed.insert(member.user_id);
                    }
                }
            }
        }
        let mut everyone: Vec<OwnedUserId> = candidates.iter().chain(departed.iter()).cloned().collect();
        everyone.sort();
        everyone.dedup();
        everyone.retain(|u| u != user_id);
        let sharing: BTreeSet<OwnedUserId> =
            self.store.sharing_rooms_with(user_id, &everyone).await?.into_iter().collect();
        let mut delta = DeviceListDelta::default();
        for user in candidates {
            if user == user_id || sharing.contains(&user) {
                delta.changed.insert(user);
            }
        }
        for user in departed {
            if user != user_id && !sharing.contains(&user) {
                delta.left.insert(user);
            }
        }
        delta.changed.retain(|u| !delta.left.contains(u));
        Ok(delta)
    }
}

/// Most devices deleted in one request.
const MAX_DEVICES_PER_DELETE: usize = 1000;
/// Longest device display name.
const MAX_DEVICE_NAME_BYTES: usize = 1024;

impl Services {
    /// Deletes devices (tokens, keys, inbox) and tells everyone sharing a room with the user.
    pub async fn delete_devices(&self, user_id: &UserId, device_ids: &[OwnedDeviceId]) -> MatrixResult<()> {
        self.store.delete_devices(user_id, device_ids).await?;
        self.announce_device_change(user_id, super::keys::DeviceChange::Devices(device_ids.to_vec())).await
    }

    /// Deletes every device of the user but `keep`, as `delete_devices` does.
    pub async fn delete_all_devices(&self, user_id: &UserId, keep: Option<&DeviceId>) -> MatrixResult<()> {
        let before: Vec<OwnedDeviceId> =
            self.store.list_devices(user_id).await?.into_iter().map(|d| d.device_id).collect();
        self.store.delete_all_devices(user_id, keep).await?;
        let after: Vec<OwnedDeviceId> =
            self.store.list_devices(user_id).await?.into_iter().map(|d| d.device_id).collect();
        let gone = before.into_iter().filter(|d| !after.contains(d)).collect();
        self.announce_device_change(user_id, super::keys::DeviceChange::Devices(gone)).await
    }

    /// `/logout`: the requester's device goes.
    pub async fn logout(&self, requester: &Requester) -> MatrixResult<()> {
        self.delete_devices(&requester.user_id, std::slice::from_ref(&requester.device_id)).await
    }

    /// `/logout/all`: every device of the requester goes (the dehydrated device stays).
    pub async fn logout_all(&self, requester: &Requester) -> MatrixResult<()> {
        self.delete_all_devices(&requester.user_id, None).await
    }

    /// `DELETE /devices/{id}` and `/delete_devices`, with the account password (UIA).
    pub async fn delete_devices_with_auth(
        &self,
        requester: &Requester,
        device_ids: &[OwnedDeviceId],
        auth: Option<&AuthData>,
    ) -> MatrixResult<()> {
        if device_ids.len() > MAX_DEVICES_PER_DELETE {
            return Err(myelin_core::MatrixError::invalid_param("Too many devices"));
        }
        self.require_password_auth(requester, auth).await?;
        self.delete_devices(&requester.user_id, device_ids).await
    }

    /// `DELETE /devices/{id}`: 404 for a device the requester does not have, then as
    /// [`Self::delete_devices_with_auth`].
    pub async fn delete_device(
        &self,
        requester: &Requester,
        device_id: &DeviceId,
        auth: Option<&AuthData>,
    ) -> MatrixResult<()> {
        self.device(&requester.user_id, device_id).await?;
        self.delete_devices_with_auth(requester, &[device_id.to_owned()], auth).await
    }

    /// The requester's devices.
    pub async fn devices(&self, requester: &Requester) -> MatrixResult<Vec<myelin_storage::DeviceRecord>> {
        Ok(self.store.list_devices(&requester.user_id).await?)
    }

    /// One of the user's devices.
    pub async fn device(&self, user_id: &UserId, device_id: &DeviceId) -> MatrixResult<myelin_storage::DeviceRecord> {
        self.store
            .get_device(user_id, device_id)
            .await?
            .ok_or_else(|| myelin_core::MatrixError::not_found("Device not found"))
    }

    /// `PUT /devices/{deviceId}`: renames one of the requester's devices; an application service
    /// creates the device if its user has none of that id (MSC4190). True if it was created.
    pub async fn put_device(
        &self,
        requester: &Requester,
        device_id: &DeviceId,
        name: Option<String>,
    ) -> MatrixResult<bool> {
        if requester.appservice.is_some() && self.store.get_device(&requester.user_id, device_id).await?.is_none() {
            if name.as_ref().is_some_and(|n| n.len() > MAX_DEVICE_NAME_BYTES) {
                return Err(myelin_core::MatrixError::invalid_param("display_name is too long"));
            }
            // The session's token is never handed out: the service acts with its own token and
            // `device_id`.
            self.issue_session(&requester.user_id, Some(device_id.to_string()), name, false).await?;
            return Ok(true);
        }
        self.rename_device(&requester.user_id, device_id, name).await?;
        Ok(false)
    }

    /// Renames one of the user's devices.
    pub async fn rename_device(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        name: Option<String>,
    ) -> MatrixResult<()> {
        if name.as_ref().is_some_and(|n| n.len() > MAX_DEVICE_NAME_BYTES) {
            return Err(myelin_core::MatrixError::invalid_param("display_name is too long"));
        }
        if !self.store.set_device_display_name(user_id, device_id, name).await? {
            return Err(myelin_core::MatrixError::not_found("Device not found"));
        }
        Ok(())
    }

    /// `/keys/changes`: users whose devices changed between two positions, and users the
    /// requester no longer shares a room with.
    pub async fn key_changes(
        &self,
        requester: &Requester,
        from: StreamPos,
        to: StreamPos,
    ) -> MatrixResult<DeviceListDelta> {
        let to = to.min(self.store.refresh_stream_head().await?).max(from);
        let rooms = self.store.rooms_for_user(&requester.user_id).await?;
        self.device_list_delta(&requester.user_id, &rooms, from, to).await
    }
}
