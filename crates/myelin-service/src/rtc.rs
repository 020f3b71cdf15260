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

use hmac::{Hmac, Mac};
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
/// Lifetime of a LiveKit access token (the reference service's).
const LIVEKIT_TOKEN_LIFETIME_S: u64 = 3600;
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

/// A LiveKit access token: HS256 over LiveKit's claims (`iss` the API key, `sub` the identity,
/// a `video` grant to join, publish and subscribe in `room`), valid for an hour from `now_s`.
pub fn livekit_access_token(livekit: &LiveKitConfig, identity: &str, room: &str, now_s: u64) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = json!({ "alg": "HS256", "typ": "JWT" });
    let claims = json!({
        "iss": livekit.key,
        "sub": identity,
        "identity": identity,
        "iat": now_s,
        "nbf": now_s,
        "exp": now_s + LIVEKIT_TOKEN_LIFETIME_S,
        "video": {
            "roomJoin": true,
            "room": room,
            "canPublish": true,
            "canSubscribe": true,
            "canUpdateOwnMetadata": true,
        },
    });
    let signing_input = format!("{}.{}", b64.encode(header.to_string()), b64.encode(claims.to_string()));
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let signature = match Hmac::<Sha256>::new_from_slice(livekit.secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(signing_input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    };
    format!("{signing_input}.{}", b64.encode(signature))
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
    /// user is in the room; answers the SFU's URL and an access token for the call.
    pub async fn livekit_token(&self, request: LiveKitTokenRequest) -> MatrixResult<Value> {
        let livekit = self
            .livekit()
            .ok_or_else(|| MatrixError::not_found("No LiveKit SFU is configured on this server"))?
            .clone();
        let (room_id, openid) = match &request {
            LiveKitTokenRequest::Legacy { room, openid, .. } => (room, openid),
            LiveKitTokenRequest::Slot { room_id, openid, .. } => (room_id, openid),
        };
        // Checked before the OpenID token: a server is asked about it only if one of its users
        // is in the room (nobody makes this server call arbitrary hosts).
        let room = <&RoomId>::try_from(room_id.as_str()).map_err(|_| MatrixError::bad_json("Invalid room id"))?;
        let server = <&ServerName>::try_from(openid.matrix_server_name.as_str()).map_err(|_| unauthorised())?;
        if server != self.server_name() && !self.server_in_room(room, server).await? {
            return Err(MatrixError::forbidden("You are not a member of this room"));
        }
        let user_id = self.openid_user(openid).await?;
        let (identity, livekit_room) = match &request {
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
        self.require_call_member(&user_id, room_id).await?;
        let jwt = livekit_access_token(&livekit, &identity, &livekit_room, self.now_ms() / 1000);
        Ok(json!({ "url": livekit.url, "jwt": jwt }))
    }

    /// The user an OpenID token stands for (401 `M_UNAUTHORIZED` if none).
    async fn openid_user(&self, openid: &OpenIdToken) -> MatrixResult<OwnedUserId> {
        let server = <&ServerName>::try_from(openid.matrix_server_name.as_str()).map_err(|_| unauthorised())?;
        self.openid_token_owner(server, &openid.access_token).await?.ok_or_else(unauthorised)
    }

    /// Whether a user of `server` is joined to the room, as this server knows it.
    async fn server_in_room(&self, room_id: &RoomId, server: &ServerName) -> MatrixResult<bool> {
        Ok(self
            .store
            .room_members(room_id, Some(Membership::Join))
            .await?
            .iter()
            .any(|m| m.user_id.server_name() == server))
    }

    /// A call's participants are the room's members: a user this server does not know to be
    /// joined to the room gets no token for its call.
    async fn require_call_member(&self, user_id: &OwnedUserId, room_id: &str) -> MatrixResult<()> {
        let room_id = <&RoomId>::try_from(room_id).map_err(|_| MatrixError::bad_json("Invalid room id"))?;
        let membership = self.store.membership(room_id, user_id).await?.map(|m| m.membership);
        if membership != Some(Membership::Join) {
            return Err(MatrixError::forbidden("You are not a member of this room"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use myelin_core::config::LiveKitConfig;

    use super::{livekit_access_token, livekit_hash};

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

    #[test]
    fn an_access_token_carries_livekit_claims_and_verifies() {
        use base64::Engine;
        use hmac::{Hmac, Mac};
        let livekit = LiveKitConfig { url: "wss://sfu.test".into(), key: "devkey".into(), secret: "secret".into() };
        let jwt = livekit_access_token(&livekit, "ident", "room", 1_000);
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let claims: serde_json::Value = serde_json::from_slice(&b64.decode(parts[1]).expect("b64")).expect("json");
        assert_eq!(claims["iss"], "devkey");
        assert_eq!(claims["sub"], "ident");
        assert_eq!(claims["exp"], 4_600);
        assert_eq!(claims["video"]["room"], "room");
        assert_eq!(claims["video"]["roomJoin"], true);
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"secret").expect("key");
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        mac.verify_slice(&b64.decode(parts[2]).expect("b64")).expect("signed with the secret");
    }
}
