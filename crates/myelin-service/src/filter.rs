//! Event filters (`/user/{id}/filter`, `/sync?filter=`, `/messages?filter=`).

use std::fmt;

use serde::{Deserialize, Serialize};

use myelin_storage::StoredEvent;

/// A filter's part that must be a JSON object (an array would otherwise read as an empty one):
/// a client that sends another shape gets 400, not a filter that silently matches everything.
fn object<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned + Default,
{
    use serde::de::Error;
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Null => Ok(T::default()),
        value @ serde_json::Value::Object(_) => serde_json::from_value(value).map_err(D::Error::custom),
        other => Err(D::Error::custom(format!("expected an object, not {other}"))),
    }
}

impl Filter {
    /// A filter from JSON, which must be an object.
    pub fn from_json(json: &serde_json::Value) -> Result<Self, String> {
        if !json.is_object() {
            return Err("a filter is a JSON object".to_owned());
        }
        Self::deserialize(json).map_err(|e| e.to_string())
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_fields: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_format: Option<String>,
    #[serde(default, deserialize_with = "object")]
    pub presence: EventFilter,
    #[serde(default, deserialize_with = "object")]
    pub account_data: EventFilter,
    #[serde(default, deserialize_with = "object")]
    pub room: RoomFilter,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EventFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub senders: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_senders: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RoomFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_rooms: Option<Vec<String>>,
    #[serde(default)]
    pub include_leave: bool,
    #[serde(default, deserialize_with = "object")]
    pub timeline: RoomEventFilter,
    #[serde(default, deserialize_with = "object")]
    pub state: RoomEventFilter,
    #[serde(default, deserialize_with = "object")]
    pub ephemeral: RoomEventFilter,
    #[serde(default, deserialize_with = "object")]
    pub account_data: RoomEventFilter,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RoomEventFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub senders: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_senders: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_rooms: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains_url: Option<bool>,
    #[serde(default)]
    pub lazy_load_members: bool,
    #[serde(default)]
    pub include_redundant_members: bool,
}

/// `m.room.*` matches `m.room.message`; a trailing `*` is a prefix wildcard.
fn type_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

fn allowed(
    event_type: &str,
    sender: &str,
    types: &Option<Vec<String>>,
    not_types: &Option<Vec<String>>,
    senders: &Option<Vec<String>>,
    not_senders: &Option<Vec<String>>,
) -> bool {
    if not_types.as_ref().is_some_and(|n| n.iter().any(|p| type_matches(p, event_type))) {
        return false;
    }
    if types.as_ref().is_some_and(|t| !t.iter().any(|p| type_matches(p, event_type))) {
        return false;
    }
    if not_senders.as_ref().is_some_and(|n| n.iter().any(|s| s == sender)) {
        return false;
    }
    senders.as_ref().is_none_or(|s| s.iter().any(|x| x == sender))
}

/// Whether `types`/`not_types` let `event_type` through; its name is only built when a filter on
/// types is set.
fn types_allow(types: &Option<Vec<String>>, not_types: &Option<Vec<String>>, event_type: &dyn fmt::Display) -> bool {
    if types.is_none() && not_types.is_none() {
        return true;
    }
    allowed(&event_type.to_string(), "", types, not_types, &None, &None)
}

impl RoomEventFilter {
    pub fn matches(&self, ev: &StoredEvent) -> bool {
        if !self.allows_type(&ev.event_type)
            || !allowed("", ev.sender.as_str(), &None, &None, &self.senders, &self.not_senders)
        {
            return false;
        }
        if let Some(want_url) = self.contains_url {
            let has_url = serde_json::from_str::<serde_json::Value>(&ev.json)
                .ok()
                .is_some_and(|v| v.get("content").and_then(|c| c.get("url")).is_some_and(|u| u.is_string()));
            if has_url != want_url {
                return false;
            }
        }
        true
    }

    pub fn room_allowed(&self, room_id: &str) -> bool {
        room_allowed(room_id, &self.rooms, &self.not_rooms)
    }

    pub fn type_allowed(&self, event_type: &str) -> bool {
        allowed(event_type, "", &self.types, &self.not_types, &None, &None)
    }

    /// As [`Self::type_allowed`], for a typed event type (named only if a filter needs it).
    pub fn allows_type(&self, event_type: &dyn fmt::Display) -> bool {
        types_allow(&self.types, &self.not_types, event_type)
    }
}

impl EventFilter {
    pub fn type_allowed(&self, event_type: &str) -> bool {
        allowed(event_type, "", &self.types, &self.not_types, &None, &None)
    }
}

impl RoomFilter {
    pub fn room_allowed(&self, room_id: &str) -> bool {
        room_allowed(room_id, &self.rooms, &self.not_rooms)
    }
}

fn room_allowed(room_id: &str, rooms: &Option<Vec<String>>, not_rooms: &Option<Vec<String>>) -> bool {
    !not_rooms.as_ref().is_some_and(|n| n.iter().any(|r| r == room_id))
        && rooms.as_ref().is_none_or(|r| r.iter().any(|x| x == room_id))
}

#[cfg(test)]
mod tests {
    use super::{Filter, RoomEventFilter, type_matches};

    #[test]
    fn types_match_exactly_or_by_prefix_wildcard() {
        assert!(type_matches("m.room.message", "m.room.message"));
        assert!(type_matches("m.room.*", "m.room.member"));
        assert!(type_matches("*", "anything"));
        assert!(!type_matches("m.room", "m.room.member"));
        assert!(!type_matches("m.room.*", "m.call.invite"));
    }

    #[test]
    fn a_filter_allows_and_refuses_types_senders_and_rooms() {
        let filter: RoomEventFilter = serde_json::from_value(serde_json::json!({
            "types": ["m.room.*"], "not_types": ["m.room.member"], "rooms": ["!a:x", "!b:x"], "not_rooms": ["!b:x"]
        }))
        .expect("filter");
        assert!(filter.type_allowed("m.room.message"));
        assert!(!filter.type_allowed("m.room.member"), "not_types wins");
        assert!(!filter.type_allowed("m.reaction"));
        assert!(filter.room_allowed("!a:x"));
        assert!(!filter.room_allowed("!b:x"), "not_rooms wins");
        assert!(!filter.room_allowed("!c:x"));
        let full: Filter =
            serde_json::from_value(serde_json::json!({"room": {"timeline": {"limit": 5}}})).expect("filter");
        assert_eq!(full.room.timeline.limit, Some(5));
        assert!(full.room.room_allowed("!any:x"), "no room list allows every room");
    }
}
