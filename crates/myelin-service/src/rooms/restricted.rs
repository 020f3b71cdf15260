//! Restricted rooms (join rules `restricted` and `knock_restricted`, room versions 8+): a user
//! who is not invited may join if they are joined to one of the rooms the rule's `allow` list
//! names. A user of the room's server with the power to invite vouches for the join, named in its
//! `join_authorised_via_users_server`, and that server signs the join (for a user of another
//! server, in `send_join`). The auth rules then check the vouching user and the signature.

use myelin_core::{
    ErrorCode, MatrixError, MatrixResult, Membership,
    types::{OwnedRoomId, OwnedUserId, RoomId, StateEventType, UserId},
};
use serde_json::Value;

use super::version_rules;
use crate::Services;

/// The content key naming the user who vouches for a restricted join.
pub const JOIN_AUTHORISED_VIA: &str = "join_authorised_via_users_server";

impl Services {
    /// Who of this server vouches for `user_id` joining `room_id`: `None` when the join needs
    /// no one (the room is not restricted, or the user is invited or joined already).
    /// `M_FORBIDDEN` when the user is in none of the allowed rooms, `M_UNABLE_TO_AUTHORISE_JOIN`
    /// when this server is in none of them (it cannot tell), `M_UNABLE_TO_GRANT_JOIN` when none
    /// of its users in the room may invite.
    pub(crate) async fn join_authoriser(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> MatrixResult<Option<OwnedUserId>> {
        let Some(room) = self.store.get_room(room_id).await? else { return Ok(None) };
        let (_, rules) = version_rules(room.room_version.as_str())?;
        if !rules.authorization.restricted_join_rule {
            return Ok(None);
        }
        let Some(join_rules) = self.store.current_state_event(room_id, &StateEventType::RoomJoinRules, "").await?
        else {
            return Ok(None);
        };
        let content = Self::event_content(&join_rules);
        let rule = content["join_rule"].as_str().unwrap_or_default();
        let restricted =
            rule == "restricted" || (rule == "knock_restricted" && rules.authorization.knock_restricted_join_rule);
        if !restricted {
            return Ok(None);
        }
        let current = self.store.membership(room_id, user_id).await?.map(|m| m.membership);
        if matches!(current, Some(Membership::Join | Membership::Invite)) {
            return Ok(None);
        }
        let allowed: Vec<OwnedRoomId> = content["allow"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["type"] == "m.room_membership")
            .filter_map(|a| a["room_id"].as_str().and_then(|r| RoomId::parse(r).ok()))
            .collect();
        let mut known = false;
        let mut member = false;
        for allowed_room in &allowed {
            let here = self.servers_in_room(allowed_room).await?.contains(&self.server_name);
            known |= here;
            if here
                && self.store.membership(allowed_room, user_id).await?.is_some_and(|m| m.membership == Membership::Join)
            {
                member = true;
                break;
            }
        }
        if !member {
            return Err(if known || allowed.is_empty() {
                MatrixError::forbidden("You are not joined to any room that grants access to this one")
            } else {
                MatrixError::new(
                    ErrorCode::Other("M_UNABLE_TO_AUTHORISE_JOIN"),
                    "This server cannot tell whether the user may join: it is in none of the allowed rooms",
                )
                .with_status(400)
            });
        }
        let power = self.power_levels(room_id).await?;
        let invite = power.action_level("invite");
        let authoriser = self
            .store
            .room_members(room_id, Some(Membership::Join))
            .await?
            .into_iter()
            .filter(|m| self.is_local_user(&m.user_id) && power.user_level(&m.user_id) >= invite)
            .max_by_key(|m| power.user_level(&m.user_id))
            .map(|m| m.user_id);
        match authoriser {
            Some(user) => Ok(Some(user)),
            None => Err(MatrixError::new(
                ErrorCode::Other("M_UNABLE_TO_GRANT_JOIN"),
                "No user of this server in the room may invite: try another server",
            )
            .with_status(400)),
        }
    }

    /// Whether `content` names a user of this server as vouching for a join.
    pub(crate) fn vouched_here(&self, content: &Value) -> bool {
        content[JOIN_AUTHORISED_VIA]
            .as_str()
            .and_then(|u| UserId::parse(u).ok())
            .is_some_and(|u| self.is_local_user(&u))
    }
}
