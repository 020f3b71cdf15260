//! The request of simplified sliding sync (the unstable `org.matrix.simplified_msc3575` shape real
//! clients send), parsed and bounded before anything is read or stored.

use std::{collections::BTreeMap, time::Duration};

use myelin_core::{
    MatrixError, MatrixResult, StreamPos,
    types::{OwnedRoomId, RoomId, StateEventType, UserId},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const MAX_LISTS: usize = 100;
pub const MAX_LIST_NAME_BYTES: usize = 64;
pub const MAX_RANGES: usize = 100;
pub const MAX_TIMELINE_LIMIT: usize = 1000;
pub const MAX_REQUIRED_STATE: usize = 200;
pub const MAX_SUBSCRIPTIONS: usize = 1000;
pub const MAX_CONN_ID_BYTES: usize = 64;
pub const MAX_TO_DEVICE_LIMIT: usize = 100;

/// One `required_state` entry: an event type (`None` for `*`) and a state key (`*`, `$LAZY`,
/// `$ME` or exact). Stored in the connection state as the `[type, state_key]` pair clients send.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "(String, String)", into = "(String, String)")]
pub struct RequiredState {
    pub event_type: Option<StateEventType>,
    pub state_key: String,
}

impl From<(String, String)> for RequiredState {
    fn from((event_type, state_key): (String, String)) -> Self {
        let event_type = (event_type != "*").then(|| StateEventType::from(event_type));
        RequiredState { event_type, state_key }
    }
}

impl From<RequiredState> for (String, String) {
    fn from(entry: RequiredState) -> Self {
        (entry.event_type.map_or_else(|| "*".to_owned(), |t| t.to_string()), entry.state_key)
    }
}

impl RequiredState {
    fn type_matches(&self, t: &StateEventType) -> bool {
        self.event_type.as_ref().is_none_or(|wanted| wanted == t)
    }
}

/// What to send of each room: `required_state` entries and how many timeline events.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RoomConfig {
    #[serde(rename = "s")]
    pub required_state: Vec<RequiredState>,
    #[serde(rename = "l")]
    pub timeline_limit: usize,
}

impl RoomConfig {
    /// Several lists or a subscription select the same room: the larger timeline, the union of
    /// required state.
    pub fn merge(&mut self, other: &RoomConfig) {
        self.timeline_limit = self.timeline_limit.max(other.timeline_limit);
        for entry in &other.required_state {
            if !self.required_state.contains(entry) {
                self.required_state.push(entry.clone());
            }
        }
    }

    /// Entries of `self` that `previous` did not ask for (the config grew).
    pub fn added_since(&self, previous: &RoomConfig) -> Vec<RequiredState> {
        self.required_state.iter().filter(|e| !previous.covers(e)).cloned().collect()
    }

    fn covers(&self, entry: &RequiredState) -> bool {
        self.required_state.iter().any(|p| {
            let type_covered = match (&p.event_type, &entry.event_type) {
                (None, _) => true,
                (Some(pt), Some(t)) => pt == t,
                (Some(_), None) => false,
            };
            type_covered && (p.state_key == "*" || p.state_key == entry.state_key)
        })
    }

    pub fn wants_lazy_members(&self) -> bool {
        self.required_state.iter().any(|e| e.event_type == Some(StateEventType::RoomMember) && e.state_key == "$LAZY")
    }

    /// Whether state `(t, k)` is asked for; `lazy` holds the members `$LAZY` stands for here.
    pub fn wants(&self, user_id: &UserId, lazy: &dyn Fn(&str) -> bool, t: &StateEventType, k: &str) -> bool {
        self.required_state.iter().any(|wanted| {
            wanted.type_matches(t)
                && match wanted.state_key.as_str() {
                    "*" => true,
                    "$ME" => k == user_id.as_str(),
                    "$LAZY" => *t == StateEventType::RoomMember && lazy(k),
                    exact => exact == k,
                }
        })
    }
}

#[derive(Clone, Debug, Default)]
pub struct ListFilters {
    pub is_dm: Option<bool>,
    pub is_encrypted: Option<bool>,
    pub is_invite: Option<bool>,
    /// `None` inside: rooms without a type.
    pub room_types: Option<Vec<Option<String>>>,
    pub not_room_types: Vec<Option<String>>,
    pub tags: Option<Vec<String>>,
    pub not_tags: Vec<String>,
    pub spaces: Option<Vec<OwnedRoomId>>,
}

impl ListFilters {
    pub fn needs_state(&self) -> bool {
        self.is_encrypted.is_some() || self.room_types.is_some() || !self.not_room_types.is_empty()
    }
    pub fn needs_tags(&self) -> bool {
        self.tags.is_some() || !self.not_tags.is_empty()
    }
}

#[derive(Clone, Debug)]
pub struct ListRequest {
    pub ranges: Vec<(usize, usize)>,
    pub config: RoomConfig,
    pub filters: ListFilters,
}

/// The sliding sync extension of sticky events (MSC4354).
pub const STICKY_EXTENSION: &str = "org.matrix.msc4354.sticky_events";

#[derive(Clone, Debug, Default)]
pub struct Extensions {
    /// `Some(since)` when enabled.
    pub to_device: Option<ToDeviceRequest>,
    pub e2ee: bool,
    pub account_data: bool,
    pub receipts: Option<ExtensionScope>,
    pub typing: Option<ExtensionScope>,
    /// `org.matrix.msc4354.sticky_events`: sticky events of the response's rooms, at most
    /// this many per room.
    pub sticky_events: Option<usize>,
}

/// Which rooms of the response a per-room extension (receipts, typing) covers: those in the
/// named `lists`' ranges and the named `rooms` among the subscriptions, `"*"` standing for all
/// lists or all subscriptions. Both default to `["*"]` (as Synapse does).
#[derive(Clone, Debug, Default)]
pub struct ExtensionScope {
    pub lists: Option<Vec<String>>,
    pub rooms: Option<Vec<String>>,
}

impl ExtensionScope {
    fn parse(ext: &serde_json::Map<String, Value>, name: &str) -> MatrixResult<Self> {
        Ok(Self {
            lists: strings(ext.get("lists"), &format!("{name}.lists"))?,
            rooms: strings(ext.get("rooms"), &format!("{name}.rooms"))?,
        })
    }

    /// Whether the scope covers `room_id`, which is in the ranges of `in_lists` and maybe
    /// among the subscriptions.
    pub fn covers(&self, room_id: &RoomId, in_lists: &[String], subscribed: bool) -> bool {
        let all = |names: &Option<Vec<String>>, wanted: &dyn Fn(&str) -> bool| {
            names.as_ref().is_none_or(|names| names.iter().any(|n| n == "*" || wanted(n)))
        };
        (!in_lists.is_empty() && all(&self.lists, &|n| in_lists.iter().any(|l| l == n)))
            || (subscribed && all(&self.rooms, &|n| n == room_id.as_str()))
    }
}

#[derive(Clone, Debug, Default)]
pub struct ToDeviceRequest {
    pub since: Option<StreamPos>,
    pub limit: usize,
}

#[derive(Clone, Debug)]
pub struct SlidingSyncRequest {
    pub pos: Option<String>,
    pub timeout: Duration,
    pub conn_id: String,
    pub txn_id: Option<String>,
    pub lists: BTreeMap<String, ListRequest>,
    pub room_subscriptions: BTreeMap<OwnedRoomId, RoomConfig>,
    pub extensions: Extensions,
    /// What the request asks for, as a number: its body but for what changes from one request to
    /// the next without changing what the answer holds (`txn_id`, the to-device extension's
    /// `since`). The same request again from the newest position may wait before computing.
    pub fingerprint: u64,
}

/// [`SlidingSyncRequest::fingerprint`] of a request body (never 0).
fn fingerprint(body: &serde_json::Map<String, Value>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut body = body.clone();
    body.remove("txn_id");
    if let Some(Value::Object(extensions)) = body.get_mut("extensions")
        && let Some(Value::Object(to_device)) = extensions.get_mut("to_device")
    {
        to_device.remove("since");
    }
    let mut hasher = std::hash::DefaultHasher::new();
    Value::Object(body).to_string().hash(&mut hasher);
    hasher.finish().max(1)
}

fn invalid(message: impl Into<String>) -> MatrixError {
    MatrixError::invalid_param(message)
}

fn object<'a>(value: &'a Value, what: &str) -> MatrixResult<Option<&'a serde_json::Map<String, Value>>> {
    match value {
        Value::Null => Ok(None),
        Value::Object(map) => Ok(Some(map)),
        _ => Err(MatrixError::bad_json(format!("{what} must be an object"))),
    }
}

fn opt_bool(map: &serde_json::Map<String, Value>, key: &str) -> MatrixResult<Option<bool>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(MatrixError::bad_json(format!("{key} must be a boolean"))),
    }
}

/// An optional list of at most [`MAX_REQUIRED_STATE`] items, each read by `item`.
fn list_of<T>(
    value: Option<&Value>,
    what: &str,
    kind: &str,
    item: impl Fn(&Value) -> Option<T>,
) -> MatrixResult<Option<Vec<T>>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) if items.len() <= MAX_REQUIRED_STATE => items
            .iter()
            .map(|v| item(v).ok_or_else(|| MatrixError::bad_json(format!("{what}: entries are {kind}"))))
            .collect::<MatrixResult<Vec<_>>>()
            .map(Some),
        Some(Value::Array(_)) => Err(invalid(format!("{what}: too many entries"))),
        Some(_) => Err(MatrixError::bad_json(format!("{what} must be a list"))),
    }
}

fn strings(value: Option<&Value>, what: &str) -> MatrixResult<Option<Vec<String>>> {
    list_of(value, what, "strings", |v| v.as_str().map(str::to_owned))
}

fn room_ids(value: Option<&Value>, what: &str) -> MatrixResult<Option<Vec<OwnedRoomId>>> {
    list_of(value, what, "room ids", |v| v.as_str().and_then(|id| OwnedRoomId::try_from(id).ok()))
}

/// Room types; `null` stands for rooms without a type.
fn room_types(value: Option<&Value>, what: &str) -> MatrixResult<Option<Vec<Option<String>>>> {
    list_of(value, what, "strings or null", |v| match v {
        Value::Null => Some(None),
        Value::String(s) => Some(Some(s.clone())),
        _ => None,
    })
}

fn room_config(map: &serde_json::Map<String, Value>, what: &str) -> MatrixResult<RoomConfig> {
    let timeline_limit = match map.get("timeline_limit") {
        None | Some(Value::Null) => 0,
        Some(v) => {
            let n = v.as_u64().ok_or_else(|| MatrixError::bad_json(format!("{what}: timeline_limit")))?;
            if n as usize > MAX_TIMELINE_LIMIT {
                return Err(invalid(format!("{what}: timeline_limit may be at most {MAX_TIMELINE_LIMIT}")));
            }
            n as usize
        }
    };
    let mut required_state = Vec::new();
    match map.get("required_state") {
        None | Some(Value::Null) => {}
        Some(Value::Array(entries)) => {
            if entries.len() > MAX_REQUIRED_STATE {
                return Err(invalid(format!("{what}: at most {MAX_REQUIRED_STATE} required_state entries")));
            }
            for entry in entries {
                let pair =
                    entry.as_array().filter(|p| p.len() == 2).and_then(|p| Some((p[0].as_str()?, p[1].as_str()?)));
                let Some((t, k)) = pair else {
                    return Err(MatrixError::bad_json(format!("{what}: required_state entries are [type, state_key]")));
                };
                if t.len() > 255 || k.len() > 255 {
                    return Err(invalid(format!("{what}: required_state entry too long")));
                }
                let entry = RequiredState::from((t.to_owned(), k.to_owned()));
                if !required_state.contains(&entry) {
                    required_state.push(entry);
                }
            }
        }
        Some(_) => return Err(MatrixError::bad_json(format!("{what}: required_state must be a list"))),
    }
    Ok(RoomConfig { required_state, timeline_limit })
}

const KNOWN_FILTERS: [&str; 9] = [
    "is_dm",
    "is_encrypted",
    "is_invite",
    "room_types",
    "not_room_types",
    "tags",
    "not_tags",
    "spaces",
    "room_name_like",
];

fn filters(value: Option<&Value>, list: &str) -> MatrixResult<ListFilters> {
    let Some(map) = object(value.unwrap_or(&Value::Null), "filters")? else { return Ok(ListFilters::default()) };
    if let Some(unknown) = map.keys().find(|k| !KNOWN_FILTERS.contains(&k.as_str())) {
        return Err(invalid(format!("list {list}: unknown filter {unknown:?}")));
    }
    Ok(ListFilters {
        is_dm: opt_bool(map, "is_dm")?,
        is_encrypted: opt_bool(map, "is_encrypted")?,
        is_invite: opt_bool(map, "is_invite")?,
        room_types: room_types(map.get("room_types"), "room_types")?,
        not_room_types: room_types(map.get("not_room_types"), "not_room_types")?.unwrap_or_default(),
        tags: strings(map.get("tags"), "tags")?,
        not_tags: strings(map.get("not_tags"), "not_tags")?.unwrap_or_default(),
        spaces: room_ids(map.get("spaces"), "spaces")?,
    })
}

fn ranges(value: Option<&Value>, list: &str) -> MatrixResult<Vec<(usize, usize)>> {
    let Some(value) = value.filter(|v| !v.is_null()) else { return Ok(Vec::new()) };
    let items = value.as_array().ok_or_else(|| MatrixError::bad_json(format!("list {list}: ranges must be a list")))?;
    if items.len() > MAX_RANGES {
        return Err(invalid(format!("list {list}: at most {MAX_RANGES} ranges")));
    }
    items
        .iter()
        .map(|r| {
            let pair = r.as_array().filter(|p| p.len() == 2).and_then(|p| Some((p[0].as_u64()?, p[1].as_u64()?)));
            match pair {
                Some((a, b)) if a <= b => Ok((a.min(usize::MAX as u64) as usize, b.min(usize::MAX as u64) as usize)),
                Some(_) => Err(invalid(format!("list {list}: a range must have start <= end"))),
                None => Err(invalid(format!("list {list}: ranges are [start, end] with non-negative integers"))),
            }
        })
        .collect()
}

fn enabled<'a>(
    extensions: &'a serde_json::Map<String, Value>,
    name: &str,
) -> MatrixResult<Option<&'a serde_json::Map<String, Value>>> {
    let Some(ext) = object(extensions.get(name).unwrap_or(&Value::Null), name)? else { return Ok(None) };
    Ok(opt_bool(ext, "enabled")?.unwrap_or(false).then_some(ext))
}

impl SlidingSyncRequest {
    /// `pos` and `timeout` come from the query string, the rest from the body.
    pub fn parse(body: &Value, pos: Option<String>, timeout: Duration) -> MatrixResult<Self> {
        // Read in place: a long-polling client sends the same body again and again.
        let no_fields = serde_json::Map::new();
        let body = object(body, "The request body")?.unwrap_or(&no_fields);
        let conn_id = match body.get("conn_id") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(id)) if id.len() <= MAX_CONN_ID_BYTES => id.clone(),
            Some(Value::String(_)) => return Err(invalid(format!("conn_id may be at most {MAX_CONN_ID_BYTES} bytes"))),
            Some(_) => return Err(MatrixError::bad_json("conn_id must be a string")),
        };
        let txn_id = match body.get("txn_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) if id.len() <= 255 => Some(id.clone()),
            Some(_) => return Err(invalid("txn_id must be a string of at most 255 bytes")),
        };
        let mut lists = BTreeMap::new();
        if let Some(map) = object(body.get("lists").unwrap_or(&Value::Null), "lists")? {
            if map.len() > MAX_LISTS {
                return Err(invalid(format!("At most {MAX_LISTS} lists")));
            }
            for (name, list) in map {
                if name.len() > MAX_LIST_NAME_BYTES {
                    return Err(invalid(format!("List names may be at most {MAX_LIST_NAME_BYTES} bytes")));
                }
                let list = object(list, "A list")?.unwrap_or(&no_fields);
                lists.insert(
                    name.clone(),
                    ListRequest {
                        ranges: ranges(list.get("ranges"), name)?,
                        config: room_config(list, &format!("list {name}"))?,
                        filters: filters(list.get("filters"), name)?,
                    },
                );
            }
        }
        let mut room_subscriptions = BTreeMap::new();
        if let Some(map) = object(body.get("room_subscriptions").unwrap_or(&Value::Null), "room_subscriptions")? {
            if map.len() > MAX_SUBSCRIPTIONS {
                return Err(invalid(format!("At most {MAX_SUBSCRIPTIONS} room subscriptions")));
            }
            for (room_id, config) in map {
                let Ok(parsed) = OwnedRoomId::try_from(room_id.as_str()) else {
                    return Err(invalid(format!("{room_id:?} is not a room id")));
                };
                let config = object(config, "A room subscription")?.unwrap_or(&no_fields);
                room_subscriptions.insert(parsed, room_config(config, room_id)?);
            }
        }
        let mut extensions = Extensions::default();
        if let Some(map) = object(body.get("extensions").unwrap_or(&Value::Null), "extensions")? {
            // Unknown extensions are ignored: clients send newer ones to every server.
            if let Some(ext) = enabled(map, "to_device")? {
                let since = match ext.get("since") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(
                        s.parse::<StreamPos>()
                            .ok()
                            .filter(|p| *p >= StreamPos::ZERO)
                            .ok_or_else(|| invalid("to_device.since is not a token of this server"))?,
                    ),
                    Some(_) => return Err(MatrixError::bad_json("to_device.since must be a string")),
                };
                let limit = match ext.get("limit") {
                    None | Some(Value::Null) => MAX_TO_DEVICE_LIMIT,
                    Some(v) => v
                        .as_u64()
                        .ok_or_else(|| MatrixError::bad_json("to_device.limit"))?
                        .clamp(1, MAX_TO_DEVICE_LIMIT as u64) as usize,
                };
                extensions.to_device = Some(ToDeviceRequest { since, limit });
            }
            extensions.e2ee = enabled(map, "e2ee")?.is_some();
            extensions.account_data = enabled(map, "account_data")?.is_some();
            extensions.receipts =
                enabled(map, "receipts")?.map(|ext| ExtensionScope::parse(ext, "receipts")).transpose()?;
            extensions.typing = enabled(map, "typing")?.map(|ext| ExtensionScope::parse(ext, "typing")).transpose()?;
            if let Some(ext) = enabled(map, STICKY_EXTENSION)? {
                let limit = match ext.get("limit") {
                    None | Some(Value::Null) => crate::sticky_events::MAX_PER_ROOM,
                    Some(v) => v
                        .as_u64()
                        .ok_or_else(|| MatrixError::bad_json("sticky_events.limit"))?
                        .clamp(1, crate::sticky_events::MAX_PER_ROOM as u64) as usize,
                };
                extensions.sticky_events = Some(limit);
            }
        }
        let fingerprint = fingerprint(body);
        Ok(Self { pos, timeout, conn_id, txn_id, lists, room_subscriptions, extensions, fingerprint })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use myelin_core::{ErrorCode, types::StateEventType};
    use ruma::{room_id, user_id};
    use serde_json::json;

    use super::{RequiredState, RoomConfig, SlidingSyncRequest};

    fn entry(t: &str, k: &str) -> RequiredState {
        RequiredState::from((t.to_owned(), k.to_owned()))
    }

    fn config(entries: &[(&str, &str)], timeline_limit: usize) -> RoomConfig {
        RoomConfig { required_state: entries.iter().map(|(t, k)| entry(t, k)).collect(), timeline_limit }
    }

    #[test]
    fn the_fingerprint_tells_requests_apart_but_not_by_their_txn_id_or_to_device_since() {
        let fingerprint = |body: serde_json::Value| {
            SlidingSyncRequest::parse(&body, None, Duration::ZERO).expect("a valid request").fingerprint
        };
        let body = |range: u64, txn: &str, since: &str| {
            json!({
                "txn_id": txn,
                "lists": { "all": { "ranges": [[0, range]], "timeline_limit": 1 } },
                "extensions": { "to_device": { "enabled": true, "since": since } },
            })
        };
        assert_eq!(fingerprint(body(9, "a", "1")), fingerprint(body(9, "b", "7")));
        assert_ne!(fingerprint(body(9, "a", "1")), fingerprint(body(19, "a", "1")), "another range");
        assert_ne!(fingerprint(body(9, "a", "1")), 0, "0 stands for unknown");
    }

    #[test]
    fn merged_configs_take_the_larger_timeline_and_the_union_of_state() {
        let mut list = config(&[("m.room.name", ""), ("m.room.member", "$LAZY")], 1);
        list.merge(&config(&[("m.room.name", ""), ("m.room.topic", "")], 20));
        assert_eq!(list, config(&[("m.room.name", ""), ("m.room.member", "$LAZY"), ("m.room.topic", "")], 20));
    }

    #[test]
    fn a_grown_config_names_only_what_the_old_one_did_not_cover() {
        let old = config(&[("m.room.name", ""), ("*", "special")], 1);
        let new = config(&[("m.room.name", ""), ("m.room.topic", ""), ("m.room.avatar", "special"), ("*", "*")], 1);
        assert_eq!(new.added_since(&old), vec![entry("m.room.topic", ""), entry("*", "*")]);
        assert!(old.added_since(&old).is_empty());
    }

    #[test]
    fn wanted_state_understands_wildcards_me_and_lazy_members() {
        let me = user_id!("@me:x");
        let cfg = config(&[("m.room.member", "$ME"), ("m.room.member", "$LAZY"), ("m.room.name", "*"), ("*", "k")], 0);
        let lazy = |k: &str| k == "@sender:x";
        let member = StateEventType::RoomMember;
        assert!(cfg.wants(me, &lazy, &member, "@me:x"));
        assert!(cfg.wants(me, &lazy, &member, "@sender:x"));
        assert!(!cfg.wants(me, &lazy, &member, "@other:x"));
        assert!(cfg.wants(me, &lazy, &StateEventType::RoomName, "anything"));
        assert!(cfg.wants(me, &lazy, &StateEventType::RoomTopic, "k"));
        assert!(!cfg.wants(me, &lazy, &StateEventType::RoomTopic, ""));
        assert!(cfg.wants_lazy_members());
        assert!(!config(&[("*", "$LAZY")], 0).wants_lazy_members(), "$LAZY means members only");
    }

    #[test]
    fn required_state_is_stored_as_the_pair_clients_send() {
        let cfg = config(&[("*", "*"), ("m.room.member", "$LAZY")], 3);
        let stored = serde_json::to_value(&cfg).expect("serialise");
        assert_eq!(stored, json!({ "s": [["*", "*"], ["m.room.member", "$LAZY"]], "l": 3 }));
        assert_eq!(serde_json::from_value::<RoomConfig>(stored).expect("deserialise"), cfg);
    }

    #[test]
    fn requests_are_parsed_and_bounded() {
        let body = json!({
            "conn_id": "room-list",
            "lists": { "all": {
                "ranges": [[0, 19]], "timeline_limit": 1, "required_state": [["m.room.name", ""]],
                "filters": { "is_dm": true, "spaces": ["!space:x"] }
            }},
            "room_subscriptions": { "!r:x": { "timeline_limit": 5 } },
            "extensions": { "to_device": { "enabled": true, "since": "12" }, "receipts": { "enabled": true, "lists": ["all"] },
                            "typing": { "enabled": false }, "unknown": { "enabled": true } }
        });
        let req = SlidingSyncRequest::parse(&body, Some("abc.1".into()), Duration::ZERO).expect("valid");
        assert_eq!(req.conn_id, "room-list");
        let list = &req.lists["all"];
        assert_eq!(list.ranges, vec![(0, 19)]);
        assert_eq!(list.filters.is_dm, Some(true));
        assert_eq!(list.filters.spaces.as_deref(), Some(&[room_id!("!space:x").to_owned()][..]));
        assert_eq!(req.room_subscriptions[room_id!("!r:x")].timeline_limit, 5);
        assert_eq!(req.extensions.to_device.as_ref().and_then(|t| t.since), Some(myelin_core::StreamPos(12)));
        assert!(req.extensions.receipts.is_some() && req.extensions.typing.is_none());

        let refused = [
            (json!({ "lists": { "a": { "ranges": [[5, 1]] } } }), ErrorCode::InvalidParam),
            (json!({ "lists": { "a": { "timeline_limit": 100_000 } } }), ErrorCode::InvalidParam),
            (json!({ "lists": { "a": { "filters": { "is_vip": true } } } }), ErrorCode::InvalidParam),
            (json!({ "lists": { "a": { "required_state": [["only-a-type"]] } } }), ErrorCode::BadJson),
            (json!({ "lists": { "a": { "filters": { "spaces": ["not a room"] } } } }), ErrorCode::BadJson),
            (json!({ "room_subscriptions": { "not-a-room": {} } }), ErrorCode::InvalidParam),
            (json!({ "conn_id": 7 }), ErrorCode::BadJson),
            (json!({ "extensions": { "to_device": { "enabled": true, "since": "-3" } } }), ErrorCode::InvalidParam),
            (json!([]), ErrorCode::BadJson),
        ];
        for (body, code) in refused {
            let err = SlidingSyncRequest::parse(&body, None, Duration::ZERO).expect_err("refused");
            assert_eq!(err.code, code, "{body}");
        }
    }
}
