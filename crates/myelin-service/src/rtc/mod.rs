//! MatrixRTC: transport discovery (MSC4143) and the LiveKit JWT service, embedded.
//!
//! A call's media goes through a LiveKit SFU, which admits a participant with an access token
//! (a JWT signed with the SFU's API secret). Element Call and Element X obtain it from a "JWT
//! service" named by `rtc/transports`: they hand it a Matrix OpenID token, it checks the token
//! with the user's homeserver and answers the SFU's URL and a token for the call's LiveKit room.
//! Myelin is that service itself, on its client listener (`/_myelin/livekit/jwt/...`): local
//! users' OpenID tokens are checked in-process, remote users' with their server's
//! `/openid/userinfo`; and unlike the reference service (element-hq/lk-jwt-service) it also
//! checks that the user is in the room of the call. Identities and room names are the reference
//! service's, byte for byte (`livekit_hash`), so calls mix clients of either.

mod delegated_leave;
mod sfu_api;
pub mod turn;

pub use sfu_api::SFU_API_TIMEOUT;

use myelin_core::{
    ErrorCode, MatrixError, MatrixResult, Membership,
    config::LiveKitConfig,
    types::{OwnedUserId, RoomId, ServerName},
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::Services;

/// Where the JWT service is mounted on the client listener.
pub const LIVEKIT_SERVICE_PATH: &str = "/_myelin/livekit/jwt";
/// The slot of a call in the legacy `/sfu/get` request.
const LEGACY_CALL_SLOT: &str = "m.call#ROOM";

/// An OpenID token a client hands over (`openid_token` of the requests).
#[derive(Clone, Debug)]
pub struct OpenIdToken {
    pub access_token: String,
    pub matrix_server_name: String,
}

/// Who asks for a LiveKit token, for which call.
#[derive(Clone, Debug)]
pub enum LiveKitTokenRequest {
    /// `POST /sfu/get` (legacy): the call of a room; the identity is `user:device`.
    Legacy { room: String, device_id: String, openid: OpenIdToken },
    /// `POST /get_token`: a slot of a room; the identity hashes the member.
    Slot {
        room_id: String,
        slot_id: String,
        openid: OpenIdToken,
        member_id: String,
        claimed_user_id: String,
        claimed_device_id: String,
    },
}

/// A delayed leave event handed over with a request (`delay_id`, `delay_timeout` in ms).
#[derive(Clone, Debug)]
pub struct LeaveDelegation {
    pub delay_id: String,
    pub delay_timeout_ms: u64,
}

/// A user allowed into a call, as the SFU knows them.
struct CallParticipant {
    user_id: OwnedUserId,
    /// The homeserver that vouched for the user's OpenID token.
    server: myelin_core::types::OwnedServerName,
    identity: String,
    livekit_room: String,
}

/// The LiveKit identity or room name of these parts, as the reference service derives it: the
/// SHA-256 of the parts as a JSON array (as Go's `json.Marshal` writes it: `<`, `>`, `&`, U+2028
/// and U+2029 escaped), in unpadded standard base64.
pub fn livekit_hash(parts: &[&str]) -> String {
    use base64::Engine;
    let mut json = String::from("[");
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&go_json_string(part));
    }
    json.push(']');
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(json.as_bytes()))
}

/// A string as Go's `json.Marshal` writes it.
fn go_json_string(s: &str) -> String {
    let escaped = serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned());
    escaped
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

fn unauthorised() -> MatrixError {
    MatrixError::new(ErrorCode::Unauthorized, "The request could not be authorised.").with_status(401)
}

impl Services {
    /// The LiveKit SFU, when one is configured.
    pub fn livekit(&self) -> Option<&LiveKitConfig> {
        self.config().rtc.livekit.as_ref()
    }

    /// The URL of the embedded JWT service (what clients are told to ask for LiveKit tokens).
    pub fn livekit_service_url(&self) -> Option<String> {
        self.livekit().map(|_| format!("{}{LIVEKIT_SERVICE_PATH}", self.config().base_url().trim_end_matches('/')))
    }

    /// `rtc/transports` (MSC4143): the call transports clients may use.
    pub fn rtc_transports(&self) -> Vec<Value> {
        self.livekit_service_url()
            .map(|url| json!({ "type": "livekit", "livekit_service_url": url }))
            .into_iter()
            .collect()
    }

    /// `/sfu/get` and `/get_token`: checks the OpenID token, the claimed identity and that the
    /// user is in the room; for a user of a full-access homeserver, has the SFU create the call's
    /// room and takes over the delayed leave if the request hands one over; answers the SFU's URL
    /// and an access token for the call.
    pub async fn livekit_token(
        &self,
        request: LiveKitTokenRequest,
        delegation: Option<LeaveDelegation>,
    ) -> MatrixResult<Value> {
        let (livekit, participant) = self.call_participant(&request).await?;
        let full_access = self.full_access(&participant.server);
        if delegation.is_some() && !full_access {
            return Err(MatrixError::bad_json("Delegation of delayed events is only supported for full access users"));
        }
        let now_s = self.now_ms() / 1000;
        if full_access {
            if let Err(err) = sfu_api::create_room(&self.livekit_http, &livekit, &participant.livekit_room, now_s).await
            {
                tracing::warn!(room = participant.livekit_room, %err, "the SFU did not create a call's room");
                return Err(MatrixError::internal("Unable to create room on SFU"));
            }
            if let Some(delegation) = delegation {
                self.delegate_leave(&participant, delegation).await?;
            }
        }
        let jwt = sfu_api::access_token(&livekit, &participant.identity, &participant.livekit_room, now_s);
        Ok(json!({ "url": livekit.url, "jwt": jwt }))
    }

    /// `/delegate_delayed_leave`: the member's client is connected to the SFU and hands its
    /// delayed leave over: this server keeps it from firing while the participant stays.
    pub async fn delegate_delayed_leave(
        &self,
        request: LiveKitTokenRequest,
        delegation: LeaveDelegation,
    ) -> MatrixResult<()> {
        let (_, participant) = self.call_participant(&request).await?;
        if !self.full_access(&participant.server) {
            return Err(MatrixError::forbidden("Delegation of delayed events is only supported for full access users"));
        }
        self.delegate_leave(&participant, delegation).await
    }

    /// Whether users of `server` may have the SFU create rooms and delegate their leaves.
    fn full_access(&self, server: &ServerName) -> bool {
        server == self.server_name()
            || self.livekit().is_some_and(|lk| {
                lk.full_access_homeservers.iter().any(|allowed| allowed == "*" || allowed == server.as_str())
            })
    }

    /// Who asks, checked: the OpenID token, the claimed identity and the room membership; with
    /// the participant's LiveKit identity and room.
    async fn call_participant(&self, request: &LiveKitTokenRequest) -> MatrixResult<(LiveKitConfig, CallParticipant)> {
        let livekit = self
            .livekit()
            .ok_or_else(|| MatrixError::not_found("No LiveKit SFU is configured on this server"))?
            .clone();
        let (room_id, openid) = match request {
            LiveKitTokenRequest::Legacy { room, openid, .. } => (room, openid),
            LiveKitTokenRequest::Slot { room_id, openid, .. } => (room_id, openid),
        };
        // Checked before the OpenID token: a server is asked about it only if one of its users
        // is in the room (nobody makes this server call arbitrary hosts).
        let room = <&RoomId>::try_from(room_id.as_str()).map_err(|_| MatrixError::bad_json("Invalid room id"))?;
        let server = <&ServerName>::try_from(openid.matrix_server_name.as_str()).map_err(|_| unauthorised())?;
        if server != self.server_name() && !self.servers_in_room(room).await?.iter().any(|s| s == server) {
            return Err(MatrixError::forbidden("You are not a member of this room"));
        }
        let user_id = self.openid_token_owner(server, &openid.access_token).await?.ok_or_else(unauthorised)?;
        let (identity, livekit_room) = match request {
            LiveKitTokenRequest::Legacy { room, device_id, .. } => {
                (format!("{user_id}:{device_id}"), livekit_hash(&[room, LEGACY_CALL_SLOT]))
            }
            LiveKitTokenRequest::Slot { room_id, slot_id, member_id, claimed_user_id, claimed_device_id, .. } => {
                if claimed_user_id != user_id.as_str() {
                    return Err(unauthorised());
                }
                (livekit_hash(&[user_id.as_str(), claimed_device_id, member_id]), livekit_hash(&[room_id, slot_id]))
            }
        };
        self.require_call_member(&user_id, room).await?;
        let server = server.to_owned();
        Ok((livekit, CallParticipant { user_id, server, identity, livekit_room }))
    }

    /// A call's participants are the room's members: a user this server does not know to be
    /// joined to the room gets no token for its call.
    async fn require_call_member(&self, user_id: &OwnedUserId, room_id: &RoomId) -> MatrixResult<()> {
        let membership = self.store.membership(room_id, user_id).await?.map(|m| m.membership);
        if membership != Some(Membership::Join) {
            return Err(MatrixError::forbidden("You are not a member of this room"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::livekit_hash;

    #[test]
    fn identities_and_rooms_hash_like_the_reference_service() {
        // The vectors of element-hq/lk-jwt-service.
        assert_eq!(
            livekit_hash(&["@alice:example.com", "DEVICE123", "memberABC"]),
            "J+T45tGruxc+HrUOqJJlyQSV33m728Cme4+vt8/SWrU"
        );
        assert_eq!(livekit_hash(&["!roomid:example.com", "slot1234"]), "O8437W3+jmzMVjoIP3tNwbm+XxHQk2iKpOA7aqw3qSc");
        // Go escapes what HTML would read: the hash is over `"\u003c"`, not `"<"`.
        assert_ne!(livekit_hash(&["<&>"]), livekit_hash(&["\\u003c\\u0026\\u003e"]));
        assert_eq!(super::go_json_string("a<b>&\u{2028}"), r#""a\u003cb\u003e\u0026\u2028""#);
    }
}
