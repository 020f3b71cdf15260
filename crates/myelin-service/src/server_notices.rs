//! Server notices: messages from the server's admins to a user (the admin API's
//! `send_server_notice`, `myelin user notice`), sent by the system user
//! `@<server_notices.system_mxid_localpart>` in the user's one server notices room.
//!
//! The room is made by the first notice: private, named as configured, the user invited (not
//! joined, as the spec asks), tagged `m.server_notice` for them, and members other than the
//! system user below every power level (`users_default: -10`), so nobody else writes in it.
//! Rejecting the invite is refused (`M_CANNOT_LEAVE_SERVER_NOTICE_ROOM`); leaving after joining
//! is allowed, and the next notice opens a new room. Which room is the user's is one row per user,
//! changed by compare-and-swap, so processes sharing a database agree on it.

use myelin_core::{
    ErrorCode, MatrixError, MatrixResult, Membership,
    types::{DeviceId, OwnedEventId, OwnedRoomId, OwnedTransactionId, OwnedUserId, RoomId, UserId},
};
use myelin_storage::UserRecord;
use ruma::events::TimelineEventType;
use serde_json::{Value, json};

use crate::{
    Services,
    rooms::{CreateRoomRequest, EventSpec},
};

/// The room tag that marks a user's server notices room.
pub const SERVER_NOTICE_TAG: &str = "m.server_notice";

/// The error for rejecting the invite to a server notices room.
fn cannot_leave() -> MatrixError {
    MatrixError::new(ErrorCode::Other("M_CANNOT_LEAVE_SERVER_NOTICE_ROOM"), "You cannot reject this invite")
        .with_status(403)
}

/// A notice to send: an event type (`m.room.message` unless given) and its content.
pub struct Notice {
    pub event_type: TimelineEventType,
    pub content: Value,
    /// Makes the send idempotent: the same (sender, transaction) answers the first event.
    pub txn: Option<(String, OwnedTransactionId)>,
}

impl Notice {
    /// A plain text notice.
    pub fn text(body: &str) -> Self {
        Self {
            event_type: TimelineEventType::RoomMessage,
            content: json!({ "msgtype": "m.text", "body": body }),
            txn: None,
        }
    }
}

impl Services {
    /// The system user that sends server notices, unless they are turned off.
    pub fn server_notices_user(&self) -> Option<OwnedUserId> {
        let localpart = &self.config.server_notices.system_mxid_localpart;
        if localpart.is_empty() { None } else { self.user_id(localpart).ok() }
    }

    /// Sends a notice to a local user in their server notices room; answers the event's id.
    pub async fn send_server_notice(&self, user_id: &UserId, notice: Notice) -> MatrixResult<OwnedEventId> {
        let system = self
            .server_notices_user()
            .ok_or_else(|| MatrixError::invalid_param("Server notices are not enabled on this server"))?;
        if !self.is_local_user(user_id) {
            return Err(MatrixError::invalid_param("Server notices can only be sent to local users"));
        }
        if user_id == system {
            return Err(MatrixError::invalid_param("The server notices user cannot be sent notices"));
        }
        if !notice.content.is_object() {
            return Err(MatrixError::bad_json("content must be an object"));
        }
        let user = self.existing_user(user_id).await?;
        if user.deactivated {
            return Err(MatrixError::invalid_param("The user is deactivated"));
        }
        self.ensure_system_user(&system).await?;
        let room_id = {
            let _guard = self.locks.lock(&format!("server_notices:{user_id}")).await;
            self.server_notice_room_for(user_id, &system).await?
        };
        let mut spec = EventSpec::message(notice.event_type, notice.content);
        let device = notice.txn.as_ref().map(|(device, _)| <&DeviceId>::from(device.as_str()));
        if let Some((_, txn)) = &notice.txn {
            spec = spec.with_txn(txn.clone());
        }
        self.send(&system, device, &room_id, spec).await
    }

    /// The system user, made on the first notice (no password: nobody logs in as it). An account
    /// someone registered under the name before is not taken over: anyone who can reach it (a
    /// password, a device, an address to reset a password through) keeps it theirs.
    async fn ensure_system_user(&self, system: &UserId) -> MatrixResult<()> {
        let config = &self.config.server_notices;
        match self.store.get_user(system).await? {
            Some(user) => {
                let reachable = user.password_hash.is_some()
                    || user.deactivated
                    || user.is_guest
                    || user.is_admin
                    || !self.store.list_devices(system).await?.is_empty()
                    || !self.store.user_threepids(system).await?.is_empty();
                if reachable {
                    return Err(MatrixError::invalid_param(format!(
                        "server_notices.system_mxid_localpart names an account in use ({system}): choose another"
                    )));
                }
                Ok(())
            }
            None => {
                let record = UserRecord {
                    user_id: system.to_owned(),
                    password_hash: None,
                    is_admin: false,
                    is_guest: false,
                    deactivated: false,
                    displayname: Some(config.system_mxid_display_name.clone()).filter(|n| !n.is_empty()),
                    avatar_url: Some(config.system_mxid_avatar_url.clone()).filter(|u| !u.is_empty()),
                    created_ms: self.clock.now_ms(),
                };
                match self.store.create_user(record).await {
                    Ok(()) => Ok(()),
                    Err(err) if err.is_conflict() => Ok(()), // made by another process meanwhile
                    Err(err) => Err(err.into()),
                }
            }
        }
    }

    /// The user's server notices room: theirs while they are invited or joined, else a new one.
    async fn server_notice_room_for(&self, user_id: &UserId, system: &UserId) -> MatrixResult<OwnedRoomId> {
        let current = self.store.server_notice_room(user_id).await?;
        if let Some(room_id) = &current {
            let membership = self.store.membership(room_id, user_id).await?.map(|m| m.membership);
            if matches!(membership, Some(Membership::Invite | Membership::Join)) {
                return Ok(room_id.clone());
            }
        }
        let config = &self.config.server_notices;
        let mut power = serde_json::Map::new();
        power.insert("users_default".into(), json!(-10));
        let request = CreateRoomRequest {
            preset: Some("private_chat".to_owned()),
            name: Some(config.room_name.clone()).filter(|n| !n.is_empty()),
            topic: Some(config.room_topic.clone()).filter(|t| !t.is_empty()),
            invite: vec![user_id.to_string()],
            power_level_content_override: Some(power),
            ..CreateRoomRequest::default()
        };
        let made = self.create_room_as(system, None, request).await?;
        let room_id = self.store.swap_server_notice_room(user_id, current.as_deref(), &made).await?;
        if room_id != made {
            // Another process made the user's room at the same moment: theirs stands; this one's
            // invite is withdrawn and the room left.
            let withdraw = crate::rooms::MembershipChange::new(system, &made, user_id, Membership::Leave);
            let _ = self.update_membership(withdraw).await;
            let leave = crate::rooms::MembershipChange::new(system, &made, system, Membership::Leave);
            let _ = self.update_membership(leave).await;
            return Ok(room_id);
        }
        let tags = json!({ "tags": { SERVER_NOTICE_TAG: {} } });
        self.store.put_account_data(user_id, Some(&room_id), "m.tag", tags.to_string()).await?;
        self.notifier.notify_users(&[user_id.to_owned()]);
        Ok(room_id)
    }

    /// Refuses a user's rejection of the invite to their server notices room.
    pub(crate) async fn check_server_notice_leave(&self, user_id: &UserId, room_id: &RoomId) -> MatrixResult<()> {
        if self.server_notices_user().is_none() {
            return Ok(());
        }
        let invited =
            self.store.membership(room_id, user_id).await?.is_some_and(|m| m.membership == Membership::Invite);
        if invited && self.store.server_notice_room(user_id).await?.as_deref() == Some(room_id) {
            return Err(cannot_leave());
        }
        Ok(())
    }

    /// Whether a name is kept for the server (the server notices user): not for registration.
    pub fn is_reserved_localpart(&self, localpart: &str) -> bool {
        let notices = &self.config.server_notices.system_mxid_localpart;
        !notices.is_empty() && localpart.eq_ignore_ascii_case(notices)
    }
}
