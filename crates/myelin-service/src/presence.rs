//! Presence, basic: the server answers what a user set (kept as private account data), without
//! tracking activity or sending presence in syncs (the media/push/presence issue does that).

use myelin_core::{MatrixError, MatrixResult, types::UserId};
use serde_json::{Value, json};

use crate::{Services, accounts::Requester};

/// Where a user's presence is kept (account data under Myelin's own namespace).
const PRESENCE_TYPE: &str = "org.myelin.presence";
/// Longest status message.
const MAX_STATUS_BYTES: usize = 1024;

/// A presence state a user can set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PresenceState {
    Online,
    Offline,
    Unavailable,
}

impl PresenceState {
    pub fn parse(raw: &str) -> MatrixResult<Self> {
        match raw {
            "online" => Ok(Self::Online),
            "offline" => Ok(Self::Offline),
            "unavailable" => Ok(Self::Unavailable),
            _ => Err(MatrixError::invalid_param("presence must be online, offline or unavailable")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Offline => "offline",
            Self::Unavailable => "unavailable",
        }
    }
}

impl Services {
    /// `GET /presence/{userId}/status`: what the user set, `offline` if nothing.
    pub async fn presence(&self, user_id: &UserId) -> MatrixResult<Value> {
        let stored = self.store.get_account_data(user_id, None, PRESENCE_TYPE).await?;
        Ok(stored
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .unwrap_or_else(|| json!({ "presence": PresenceState::Offline.as_str() })))
    }

    /// `PUT /presence/{userId}/status` (one's own only).
    pub async fn set_presence(
        &self,
        requester: &Requester,
        user_id: &UserId,
        state: PresenceState,
        status_msg: Option<String>,
    ) -> MatrixResult<()> {
        requester.require_self(user_id, "set presence")?;
        if status_msg.as_ref().is_some_and(|s| s.len() > MAX_STATUS_BYTES) {
            return Err(MatrixError::invalid_param("status_msg is too long"));
        }
        let content = json!({ "presence": state.as_str(), "status_msg": status_msg }).to_string();
        self.store.put_account_data(user_id, None, PRESENCE_TYPE, content).await?;
        Ok(())
    }
}
