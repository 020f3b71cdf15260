//! Membership changes: join, leave, invite, kick, ban, unban, knock, forget. Permission checks
//! are the room version's auth rules, applied in the send pipeline.

use myelin_core::{
    MatrixError, MatrixResult, Membership,
    types::{DeviceId, OwnedEventId, OwnedRoomId, OwnedServerName, RoomAliasId, RoomId, StateEventType, UserId},
};
use serde_json::{Map, Value};

use super::{EventSpec, send::Target};
use crate::{Services, accounts::Requester, ratelimit::Limit};

/// Longest `reason` accepted on a membership change.
const MAX_REASON_BYTES: usize = 1024;

/// A membership change: `actor` sets `target`'s membership of `room_id`.
#[derive(Clone, Debug)]
pub struct MembershipChange<'a> {
    pub actor: &'a UserId,
    pub device_id: Option<&'a DeviceId>,
    pub room_id: &'a RoomId,
    pub target: &'a UserId,
    pub membership: Membership,
    pub reason: Option<String>,
    /// Further content fields (e.g. `is_direct`, or the whole content a client sent as state).
    pub content: Map<String, Value>,
}

impl<'a> MembershipChange<'a> {
    pub fn new(actor: &'a UserId, room_id: &'a RoomId, target: &'a UserId, membership: Membership) -> Self {
        Self { actor, device_id: None, room_id, target, membership, reason: None, content: Map::new() }
    }

    pub fn from_device(mut self, device_id: &'a DeviceId) -> Self {
        self.device_id = Some(device_id);
        self
    }

    pub fn with_reason(mut self, reason: Option<String>) -> Self {
        self.reason = reason;
        self
    }

    pub fn with_content(mut self, content: Map<String, Value>) -> Self {
        self.content = content;
        self
    }
}

/// What a moderator does to another member (`/invite`, `/kick`, `/ban`, `/unban`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberAction {
    Invite,
    Kick,
    Ban,
    Unban,
}

fn check_reason(reason: &Option<String>) -> MatrixResult<()> {
    if reason.as_ref().is_some_and(|r| r.len() > MAX_REASON_BYTES) {
        return Err(MatrixError::invalid_param("reason is too long"));
    }
    Ok(())
}

impl Services {
    /// Sets a user's membership of a room.
    pub async fn update_membership(&self, change: MembershipChange<'_>) -> MatrixResult<OwnedEventId> {
        check_reason(&change.reason)?;
        if self.store.get_room(change.room_id).await?.is_none() {
            return Err(MatrixError::not_found("Unknown room"));
        }
        if matches!(change.membership, Membership::Join | Membership::Invite | Membership::Knock) {
            self.check_room_not_blocked(change.room_id).await?;
        }
        if change.membership == Membership::Invite {
            // A remote invitee's server answers for its user when it countersigns the invite.
            if self.is_local_user(change.target) {
                let mut user = self.store.get_user(change.target).await?;
                // A user an application service's namespace holds may exist once it is asked.
                if user.is_none() && self.query_appservices_for_user(change.target).await {
                    user = self.store.get_user(change.target).await?;
                }
                if user.is_none_or(|u| u.deactivated) {
                    return Err(MatrixError::not_found("Unknown user"));
                }
            }
        }
        if change.membership == Membership::Leave && change.actor == change.target {
            self.check_server_notice_leave(change.target, change.room_id).await?;
        }
        // Rejecting an invite to (or withdrawing a knock on) a room this server is not in goes
        // through a server that is.
        if change.membership == Membership::Leave
            && change.actor == change.target
            && self.outside_membership(change.room_id, change.target).await?.is_some()
        {
            check_reason(&change.reason)?;
            self.leave_remote_room(change.target, change.room_id, change.reason).await?;
            let record = self.store.membership(change.room_id, change.target).await?;
            return record.map(|m| m.event_id).ok_or_else(|| MatrixError::internal("the leave was not recorded"));
        }
        let mut content = change.content;
        content.insert("membership".into(), change.membership.as_str().into());
        if let Some(reason) = change.reason {
            content.insert("reason".into(), reason.into());
        }
        if matches!(change.membership, Membership::Join | Membership::Knock)
            && let Some(profile) = self.store.get_user(change.target).await?
        {
            if profile.is_guest && !self.guests_may_join(change.room_id).await? {
                return Err(MatrixError::forbidden("Guests cannot join this room"));
            }
            if let Some(name) = profile.displayname {
                content.entry("displayname").or_insert(name.into());
            }
            if let Some(url) = profile.avatar_url {
                content.entry("avatar_url").or_insert(url.into());
            }
        }
        // A join to a restricted room is vouched for by a user of this server who may invite.
        if change.membership == Membership::Join
            && change.actor == change.target
            && let Some(authoriser) = self.join_authoriser(change.room_id, change.target).await?
        {
            content.insert(super::JOIN_AUTHORISED_VIA.into(), authoriser.as_str().into());
        }
        let spec = EventSpec::state(StateEventType::RoomMember, change.target.as_str(), Value::Object(content));
        let target = Target::Existing(change.room_id);
        Ok(self.send_event(change.actor, change.device_id, target, spec, false).await?.0)
    }

    /// `/join`, `/rooms/{id}/join`, `/knock`: the requester's own membership of a room given by
    /// id or alias; returns the room id.
    pub async fn join_or_knock(
        &self,
        requester: &Requester,
        room: &str,
        membership: Membership,
        reason: Option<String>,
        via: &[OwnedServerName],
    ) -> MatrixResult<OwnedRoomId> {
        let room_id = self.resolve_room(room).await?;
        // Joins and knocks through another server skip `update_membership`, which checks local ones.
        if membership == Membership::Knock && self.needs_remote_join(&room_id).await? {
            self.check_room_not_blocked(&room_id).await?;
            check_reason(&reason)?;
            self.check_rate_limit(Limit::Messages, requester.user_id.as_str())?;
            return self.knock_remote_room(&requester.user_id, &room_id, reason, via).await;
        }
        if membership == Membership::Join && self.needs_remote_join(&room_id).await? {
            self.check_room_not_blocked(&room_id).await?;
            if requester.is_guest {
                return Err(MatrixError::forbidden("Guests cannot join rooms on other servers"));
            }
            check_reason(&reason)?;
            // Through the server that invited the user, those the client named, those in the
            // room, then the room's own.
            let servers = self.servers_for_outside_user(&room_id, &requester.user_id, via).await?;
            let mut content = Map::new();
            if let Some(reason) = reason {
                content.insert("reason".into(), reason.into());
            }
            self.check_rate_limit(Limit::Messages, requester.user_id.as_str())?;
            return self
                .join_remote_room(&requester.user_id, Some(&requester.device_id), &room_id, &servers, content)
                .await;
        }
        // A room everyone has left is gone, as on Synapse (whose server leaves it with its last
        // user): an old invite to it cannot bring it back to life.
        if matches!(membership, Membership::Join | Membership::Knock)
            && self.store.get_room(&room_id).await?.is_some()
            && self.servers_in_room(&room_id).await?.is_empty()
        {
            return Err(MatrixError::not_found("Everyone has left this room: it no longer exists"));
        }
        let change = MembershipChange::new(&requester.user_id, &room_id, &requester.user_id, membership)
            .from_device(&requester.device_id)
            .with_reason(reason);
        self.update_membership(change).await?;
        Ok(room_id)
    }

    /// A join must go through another server: this server does not know the room, or none of
    /// its users is in it while other servers are.
    async fn needs_remote_join(&self, room_id: &RoomId) -> MatrixResult<bool> {
        let Some(room) = self.store.get_room(room_id).await? else { return Ok(true) };
        let servers = self.servers_in_room(room_id).await?;
        // A room known only from an invite or a knock has no state here.
        Ok(!servers.contains(&self.server_name) && (!servers.is_empty() || room.current_state_group.is_none()))
    }

    /// `/rooms/{id}/leave`.
    pub async fn leave_room(
        &self,
        requester: &Requester,
        room_id: &RoomId,
        reason: Option<String>,
    ) -> MatrixResult<()> {
        let change = MembershipChange::new(&requester.user_id, room_id, &requester.user_id, Membership::Leave)
            .from_device(&requester.device_id)
            .with_reason(reason);
        self.update_membership(change).await?;
        Ok(())
    }

    /// `/invite`, `/kick`, `/ban`, `/unban` (counted against the requester's message rate limit).
    pub async fn act_on_member(
        &self,
        requester: &Requester,
        room_id: &RoomId,
        target: &UserId,
        action: MemberAction,
        reason: Option<String>,
    ) -> MatrixResult<()> {
        self.check_rate_limit(Limit::Messages, requester.user_id.as_str())?;
        let membership = match action {
            MemberAction::Invite => Membership::Invite,
            MemberAction::Kick => {
                // Only someone in the room (or invited to it, or knocking) can be kicked: the
                // auth rules would let a kick turn a ban into a leave, which is an unban.
                match self.store.membership(room_id, target).await?.map(|m| m.membership) {
                    Some(Membership::Join | Membership::Invite | Membership::Knock) => {}
                    Some(Membership::Ban) => {
                        return Err(MatrixError::forbidden("The user is banned: unban them instead"));
                    }
                    _ => return Err(MatrixError::forbidden("The user is not in the room")),
                }
                Membership::Leave
            }
            MemberAction::Ban => Membership::Ban,
            MemberAction::Unban => {
                // Unbanning moves the target from ban to leave; the auth rules require the ban level.
                match self.store.membership(room_id, target).await? {
                    Some(m) if m.membership == Membership::Ban => {}
                    _ => return Err(MatrixError::forbidden("The user is not banned")),
                }
                Membership::Leave
            }
        };
        let change = MembershipChange::new(&requester.user_id, room_id, target, membership)
            .from_device(&requester.device_id)
            .with_reason(reason);
        self.update_membership(change).await?;
        Ok(())
    }

    /// Resolves `#alias:server` or `!room` to a local room id.
    pub async fn resolve_room(&self, room_id_or_alias: &str) -> MatrixResult<OwnedRoomId> {
        if room_id_or_alias.starts_with('#') {
            let alias =
                RoomAliasId::parse(room_id_or_alias).map_err(|_| MatrixError::invalid_param("Invalid room alias"))?;
            let resolved = self.local_alias(&alias).await?;
            resolved.map(|(room, _)| room).ok_or_else(|| MatrixError::not_found("Room alias not found"))
        } else {
            RoomId::parse(room_id_or_alias).map_err(|_| MatrixError::invalid_param("Invalid room id or alias"))
        }
    }

    pub async fn forget_room(&self, user_id: &UserId, room_id: &RoomId) -> MatrixResult<()> {
        match self.store.membership(room_id, user_id).await? {
            Some(m) if m.membership.is_current() => {
                Err(MatrixError::bad_json("You must leave the room before forgetting it").with_status(400))
            }
            Some(_) => {
                self.store.forget_room(user_id, room_id).await?;
                // Forgetting takes no stream position, so cached room lists cannot catch up on it.
                self.invalidate(&self.user_rooms.cache, &user_id.to_owned());
                Ok(())
            }
            None => Err(MatrixError::not_found("You are not a member of this room")),
        }
    }

    /// Whether the room lets guests join (`m.room.guest_access` is `can_join`).
    async fn guests_may_join(&self, room_id: &RoomId) -> MatrixResult<bool> {
        let event = self.store.current_state_event(room_id, &StateEventType::RoomGuestAccess, "").await?;
        Ok(event.is_some_and(|e| Self::event_content(&e)["guest_access"] == "can_join"))
    }

    /// A room closed to guests: this server's guests in it leave, as the spec asks.
    pub(crate) async fn remove_guests(&self, room_id: &RoomId) {
        let members = match self.store.room_members(room_id, Some(Membership::Join)).await {
            Ok(members) => members,
            Err(err) => {
                tracing::warn!(%err, %room_id, "could not list the members to remove guests");
                return;
            }
        };
        for member in members.into_iter().filter(|m| self.is_local_user(&m.user_id)) {
            let is_guest = matches!(self.store.get_user(&member.user_id).await, Ok(Some(u)) if u.is_guest);
            if is_guest {
                let change = MembershipChange::new(&member.user_id, room_id, &member.user_id, Membership::Leave);
                if let Err(err) = self.update_membership(change).await {
                    tracing::warn!(%err, user = %member.user_id, %room_id, "could not remove a guest");
                }
            }
        }
    }

    /// The rooms the user is joined to.
    pub async fn joined_rooms(&self, user_id: &UserId) -> MatrixResult<Vec<OwnedRoomId>> {
        let rooms = self.store.rooms_for_user(user_id).await?;
        Ok(rooms.into_iter().filter(|r| r.membership == Membership::Join).map(|r| r.room_id).collect())
    }
}
