//! PDUs: parsing stored JSON into the shape ruma's state resolution needs, building and signing
//! new events, and turning stored events into what clients see.

use std::collections::BTreeMap;

use myelin_core::{MatrixError, MatrixResult, Random};
use myelin_storage::StoredEvent;
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, DeviceId, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId,
    OwnedUserId, RoomId, ServerName, UserId, events::TimelineEventType, room_version_rules::RoomVersionRules,
};
use serde::Deserialize;
use serde_json::{Value, value::RawValue};

/// A reference to another event: plain id (room v3+) or `[id, {hashes}]` (v1, v2).
#[derive(Deserialize)]
#[serde(untagged)]
enum EventRef {
    Id(OwnedEventId),
    Pair(OwnedEventId, serde::de::IgnoredAny),
}

impl EventRef {
    fn into_id(self) -> OwnedEventId {
        match self {
            Self::Id(id) | Self::Pair(id, _) => id,
        }
    }
}

#[derive(Deserialize)]
struct RawPdu {
    room_id: Option<OwnedRoomId>,
    sender: OwnedUserId,
    origin_server_ts: MilliSecondsSinceUnixEpoch,
    #[serde(rename = "type")]
    kind: TimelineEventType,
    content: Box<RawValue>,
    state_key: Option<String>,
    #[serde(default)]
    prev_events: Vec<EventRef>,
    #[serde(default)]
    auth_events: Vec<EventRef>,
    redacts: Option<OwnedEventId>,
}

/// A parsed PDU, implementing `ruma::state_res::Event`.
#[derive(Debug, Clone)]
pub struct Pdu {
    pub event_id: OwnedEventId,
    pub room_id: Option<OwnedRoomId>,
    pub sender: OwnedUserId,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    pub kind: TimelineEventType,
    pub content: Box<RawValue>,
    pub state_key: Option<String>,
    pub prev_events: Vec<OwnedEventId>,
    pub auth_events: Vec<OwnedEventId>,
    pub redacts: Option<OwnedEventId>,
    /// Not accepted (rejected or soft-failed): state resolution skips it.
    pub rejected: bool,
}

impl Pdu {
    pub fn from_json(event_id: &EventId, json: &str) -> MatrixResult<Self> {
        let raw: RawPdu =
            serde_json::from_str(json).map_err(|e| MatrixError::internal(format!("bad stored PDU {event_id}: {e}")))?;
        let event_id = event_id.to_owned();
        // Room v11+ moved `redacts` into content.
        let redacts = raw.redacts.or_else(|| {
            serde_json::from_str::<Value>(raw.content.get())
                .ok()
                .and_then(|c| c.get("redacts").and_then(Value::as_str).and_then(|s| OwnedEventId::try_from(s).ok()))
        });
        Ok(Self {
            event_id,
            room_id: raw.room_id,
            sender: raw.sender,
            origin_server_ts: raw.origin_server_ts,
            kind: raw.kind,
            content: raw.content,
            state_key: raw.state_key,
            prev_events: raw.prev_events.into_iter().map(EventRef::into_id).collect(),
            auth_events: raw.auth_events.into_iter().map(EventRef::into_id).collect(),
            redacts,
            rejected: false,
        })
    }

    pub fn from_stored(ev: &StoredEvent) -> MatrixResult<Self> {
        let mut pdu = Self::from_json(&ev.event_id, &ev.json)?;
        pdu.rejected = myelin_storage::is_rejection(ev.rejection.as_deref());
        Ok(pdu)
    }
}

impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.event_id
    }
    fn room_id(&self) -> Option<&RoomId> {
        self.room_id.as_deref()
    }
    fn sender(&self) -> &UserId {
        &self.sender
    }
    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }
    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }
    fn content(&self) -> &RawValue {
        &self.content
    }
    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }
    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.prev_events.iter())
    }
    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.auth_events.iter())
    }
    fn redacts(&self) -> Option<&Self::Id> {
        self.redacts.as_ref()
    }
    fn rejected(&self) -> bool {
        self.rejected
    }
}

/// Converts serde_json into canonical JSON, mapping failures (floats, huge ints) to `M_BAD_JSON`.
pub fn to_canonical(value: Value) -> MatrixResult<CanonicalJsonValue> {
    CanonicalJsonValue::try_from(value)
        .map_err(|e| MatrixError::bad_json(format!("content is not canonical JSON: {e}")))
}

/// The event-reference list in the room version's format.
pub fn event_refs(ids: &[OwnedEventId], rules: &RoomVersionRules) -> CanonicalJsonValue {
    use ruma::room_version_rules::EventsReferenceFormatVersion;
    let refs = ids
        .iter()
        .map(|id| match rules.events_reference_format {
            EventsReferenceFormatVersion::V1 => CanonicalJsonValue::Array(vec![
                CanonicalJsonValue::String(id.to_string()),
                CanonicalJsonValue::Object(BTreeMap::new()),
            ]),
            _ => CanonicalJsonValue::String(id.to_string()),
        })
        .collect();
    CanonicalJsonValue::Array(refs)
}

/// Hashes and signs `object` in place and returns its event id, per the room version's format.
pub fn sign_and_id(
    object: &mut CanonicalJsonObject,
    rules: &RoomVersionRules,
    server_name: &ServerName,
    keys: &crate::keys::ServerKeys,
    random: &dyn Random,
) -> MatrixResult<OwnedEventId> {
    use ruma::room_version_rules::EventIdFormatVersion;
    let event_id = match rules.event_id_format {
        EventIdFormatVersion::V1 => {
            let id = format!("${}:{server_name}", random.alphanumeric(18));
            object.insert("event_id".to_owned(), CanonicalJsonValue::String(id.clone()));
            Some(id)
        }
        _ => None,
    };
    ruma::signatures::hash_and_sign_event(server_name.as_str(), &keys.key_pair, object, &rules.redaction).map_err(
        |e| match e {
            ruma::signatures::JsonError::PduTooLarge => {
                MatrixError::new(myelin_core::ErrorCode::TooLarge, "Event is larger than 64 KiB")
            }
            e => MatrixError::bad_json(format!("cannot sign event: {e}")),
        },
    )?;
    let id = match event_id {
        Some(id) => id,
        None => {
            let hash = ruma::signatures::reference_hash(object, rules)
                .map_err(|e| MatrixError::new(myelin_core::ErrorCode::TooLarge, format!("event rejected: {e}")))?;
            format!("${hash}")
        }
    };
    OwnedEventId::try_from(id).map_err(|e| MatrixError::internal(format!("made an invalid event id: {e}")))
}

/// Adds this server's signature to another server's signed event (an invite of a local user):
/// the signatures already there stay, the event id does not change.
pub fn countersign(
    object: &mut CanonicalJsonObject,
    rules: &RoomVersionRules,
    server_name: &ServerName,
    keys: &crate::keys::ServerKeys,
) -> MatrixResult<()> {
    ruma::signatures::hash_and_sign_event(server_name.as_str(), &keys.key_pair, object, &rules.redaction)
        .map_err(|e| MatrixError::bad_json(format!("cannot sign event: {e}")))
}

/// How a client sees an event.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ClientFormat {
    /// With `room_id` (for /messages, /event, /context...).
    Client,
    /// Without `room_id` (inside a room section of /sync).
    Sync,
}

const CLIENT_KEYS: &[&str] =
    &["content", "event_id", "origin_server_ts", "room_id", "sender", "state_key", "type", "redacts"];

/// Who looks at an event: a user's device (it sees the transaction ids of what it sent).
#[derive(Clone, Copy, Debug)]
pub struct Viewer<'a> {
    pub user_id: &'a UserId,
    pub device_id: &'a DeviceId,
}

/// Serialises a stored event for a client at `now_ms`. `viewer` adds `unsigned.transaction_id`
/// when the viewer's device sent it; `redaction` is the redaction event (client format) if redacted.
pub fn client_event(
    ev: &StoredEvent,
    rules: Option<&RoomVersionRules>,
    format: ClientFormat,
    viewer: Option<Viewer<'_>>,
    redaction: Option<Value>,
    now_ms: u64,
) -> Value {
    let mut out = match (&redaction, rules) {
        (Some(_), Some(rules)) => {
            let mut object: serde_json::Map<String, Value> = match serde_json::from_str(&ev.json) {
                Ok(Value::Object(map)) => map,
                _ => serde_json::Map::new(),
            };
            if let Some(redacted) = redact_object(&object, rules) {
                object = redacted;
            }
            let mut out = serde_json::Map::new();
            for key in CLIENT_KEYS {
                if let Some(v) = object.remove(*key) {
                    out.insert((*key).to_owned(), v);
                }
            }
            out
        }
        _ => client_fields(ev),
    };
    out.insert("event_id".to_owned(), Value::String(ev.event_id.to_string()));
    if format == ClientFormat::Sync {
        out.remove("room_id");
    } else {
        out.insert("room_id".to_owned(), Value::String(ev.room_id.to_string()));
    }
    let mut unsigned = serde_json::Map::new();
    unsigned.insert("age".to_owned(), Value::from(now_ms.saturating_sub(ev.origin_server_ts)));
    if let Some(viewer) = viewer
        && ev.sender == viewer.user_id
        && let Some(txn) = &ev.txn_id
    {
        // A delayed event names its delay id to every device of its sender; a transaction id
        // goes to the device that chose it.
        match crate::delayed_events::delay_id_of_txn(txn) {
            Some(delay_id) => {
                unsigned
                    .insert(crate::delayed_events::UNSIGNED_DELAY_ID.to_owned(), Value::String(delay_id.to_owned()));
            }
            None if ev.sender_device.as_deref() == Some(viewer.device_id) => {
                unsigned.insert("transaction_id".to_owned(), Value::String(txn.to_string()));
            }
            None => {}
        }
    }
    if let Some(redaction) = redaction {
        unsigned.insert("redacted_because".to_owned(), redaction);
    }
    out.insert("unsigned".to_owned(), Value::Object(unsigned));
    Value::Object(out)
}

/// The client-visible fields of an unredacted PDU. Only `content` (and a top-level `redacts`) are
/// parsed out of the JSON; hashes, signatures and the DAG references are skipped, and the rest
/// comes from the stored columns.
fn client_fields(ev: &StoredEvent) -> serde_json::Map<String, Value> {
    #[derive(serde::Deserialize)]
    struct Parts {
        #[serde(default)]
        content: Option<Value>,
        #[serde(default)]
        redacts: Option<Value>,
    }
    let parts = serde_json::from_str::<Parts>(&ev.json).unwrap_or(Parts { content: None, redacts: None });
    let mut out = serde_json::Map::new();
    if let Some(content) = parts.content {
        out.insert("content".to_owned(), content);
    }
    if let Some(redacts) = parts.redacts {
        out.insert("redacts".to_owned(), redacts);
    }
    out.insert("origin_server_ts".to_owned(), Value::from(ev.origin_server_ts));
    out.insert("room_id".to_owned(), Value::String(ev.room_id.to_string()));
    out.insert("sender".to_owned(), Value::String(ev.sender.to_string()));
    if let Some(state_key) = &ev.state_key {
        out.insert("state_key".to_owned(), Value::String(state_key.clone()));
    }
    out.insert("type".to_owned(), Value::String(ev.event_type.to_string()));
    out
}

/// A PDU's JSON in its redacted form (erased users' events for later joiners).
pub(crate) fn redacted_json(json: &str, rules: &RoomVersionRules) -> Option<String> {
    match serde_json::from_str(json).ok()? {
        Value::Object(object) => redact_object(&object, rules).map(|o| Value::Object(o).to_string()),
        _ => None,
    }
}

/// The redacted form of a PDU object, per the room version's redaction rules.
fn redact_object(
    object: &serde_json::Map<String, Value>,
    rules: &RoomVersionRules,
) -> Option<serde_json::Map<String, Value>> {
    let CanonicalJsonValue::Object(canonical) = CanonicalJsonValue::try_from(Value::Object(object.clone())).ok()?
    else {
        return None;
    };
    let redacted = ruma::canonical_json::redact(canonical, &rules.redaction, None).ok()?;
    match serde_json::to_value(redacted).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}
