//! Reading power levels for server-side checks that the auth rules do not cover (redacting other
//! users' events, aliases, room directory visibility).

use serde_json::Value;

pub struct PowerLevels {
    content: Value,
    creators: Vec<String>,
}

impl PowerLevels {
    /// `content` of `m.room.power_levels` (or `None` if absent); `creators` hold infinite power
    /// in rooms whose version privileges creators (v12), else the creator when no PL event exists.
    pub fn new(content: Option<Value>, creators: Vec<String>) -> Self {
        Self { content: content.unwrap_or(Value::Null), creators }
    }

    fn int(v: Option<&Value>) -> Option<i64> {
        v.and_then(|v| v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
    }

    pub fn user_level(&self, user_id: &str) -> i64 {
        if self.creators.iter().any(|c| c == user_id) {
            return i64::MAX;
        }
        if self.content.is_null() {
            return 0;
        }
        Self::int(self.content.get("users").and_then(|u| u.get(user_id)))
            .or_else(|| Self::int(self.content.get("users_default")))
            .unwrap_or(0)
    }

    /// Level required for an action key such as `redact`, `kick`, `ban`, `invite`.
    pub fn action_level(&self, action: &str) -> i64 {
        let default = if action == "invite" { 0 } else { 50 };
        Self::int(self.content.get(action)).unwrap_or(default)
    }

    pub fn event_level(&self, event_type: &str, is_state: bool) -> i64 {
        Self::int(self.content.get("events").and_then(|e| e.get(event_type))).unwrap_or_else(|| {
            if is_state {
                Self::int(self.content.get("state_default")).unwrap_or(if self.content.is_null() { 0 } else { 50 })
            } else {
                Self::int(self.content.get("events_default")).unwrap_or(0)
            }
        })
    }
}
