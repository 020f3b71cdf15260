//! Reading power levels for server-side checks that the auth rules do not cover (redacting other
//! users' events, aliases, room directory visibility).

use myelin_core::types::{OwnedUserId, UserId};
use serde_json::Value;

pub struct PowerLevels {
    content: Value,
    creators: Vec<OwnedUserId>,
}

impl PowerLevels {
    /// `content` of `m.room.power_levels` (or `None` if absent); `creators` hold infinite power
    /// in rooms whose version privileges creators (v12), else the creator when no PL event exists.
    pub fn new(content: Option<Value>, creators: Vec<OwnedUserId>) -> Self {
        Self { content: content.unwrap_or(Value::Null), creators }
    }

    fn int(v: Option<&Value>) -> Option<i64> {
        v.and_then(|v| v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
    }

    pub fn user_level(&self, user_id: &UserId) -> i64 {
        if self.creators.iter().any(|c| c == user_id) {
            return i64::MAX;
        }
        if self.content.is_null() {
            return 0;
        }
        Self::int(self.content.get("users").and_then(|u| u.get(user_id.as_str())))
            .or_else(|| Self::int(self.content.get("users_default")))
            .unwrap_or(0)
    }

    /// Level required for an action key such as `redact`, `kick`, `ban`, `invite`.
    pub fn action_level(&self, action: &str) -> i64 {
        let default = if action == "invite" { 0 } else { 50 };
        Self::int(self.content.get(action)).unwrap_or(default)
    }

    /// Level required to send an event of this type (given as its name).
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

#[cfg(test)]
mod tests {
    use ruma::user_id;
    use serde_json::json;

    use super::PowerLevels;

    #[test]
    fn levels_come_from_the_event_with_the_spec_defaults() {
        let pl = PowerLevels::new(
            Some(json!({"users": {"@mod:x": 50, "@str:x": "75"}, "users_default": 10, "kick": 60,
                        "events": {"m.room.name": 40}, "state_default": 55})),
            vec![],
        );
        assert_eq!(pl.user_level(user_id!("@mod:x")), 50);
        assert_eq!(pl.user_level(user_id!("@str:x")), 75, "string levels of old rooms");
        assert_eq!(pl.user_level(user_id!("@anyone:x")), 10);
        assert_eq!((pl.action_level("kick"), pl.action_level("ban"), pl.action_level("invite")), (60, 50, 0));
        assert_eq!(pl.event_level("m.room.name", true), 40);
        assert_eq!(pl.event_level("m.room.topic", true), 55);
        assert_eq!(pl.event_level("m.room.message", false), 0);
    }

    #[test]
    fn creators_are_above_every_level_and_rooms_without_levels_are_open() {
        let creator = user_id!("@creator:x").to_owned();
        let pl = PowerLevels::new(None, vec![creator.clone()]);
        assert_eq!(pl.user_level(&creator), i64::MAX);
        assert_eq!(pl.user_level(user_id!("@other:x")), 0);
        assert_eq!(pl.event_level("m.room.topic", true), 0, "no power levels event: state needs 0");
    }
}
