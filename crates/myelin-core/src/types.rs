//! The domain's small types, used in every layer's signatures: ruma's ids, a stream position, a
//! membership, room state keyed by event type and state key.

use std::{collections::HashMap, fmt, str::FromStr};

pub use ruma::{
    DeviceId, EventId, OwnedDeviceId, OwnedEventId, OwnedRoomAliasId, OwnedRoomId, OwnedServerName, OwnedTransactionId,
    OwnedUserId, RoomAliasId, RoomId, RoomVersionId, ServerName, TransactionId, UserId,
    events::{StateEventType, TimelineEventType},
};
use serde::{Deserialize, Serialize};

/// A position on the global stream: every row a sync must notice carries one. Positions only
/// grow; there may be gaps (positions reserved and never used).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StreamPos(pub i64);

impl StreamPos {
    /// Before every position.
    pub const ZERO: StreamPos = StreamPos(0);
    pub const MIN: StreamPos = StreamPos(i64::MIN);
    pub const MAX: StreamPos = StreamPos(i64::MAX);

    pub fn get(self) -> i64 {
        self.0
    }

    /// The position just before this one (pagination: "up to, not including").
    pub fn prev(self) -> StreamPos {
        StreamPos(self.0.saturating_sub(1))
    }

    /// The position just after this one.
    pub fn next(self) -> StreamPos {
        StreamPos(self.0.saturating_add(1))
    }

    /// How far this position is past `earlier` (0 if it is not).
    pub fn distance_from(self, earlier: StreamPos) -> u64 {
        u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0)
    }
}

impl fmt::Display for StreamPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for StreamPos {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(StreamPos)
    }
}

/// A user's membership of a room (`m.room.member`'s `membership`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Membership {
    Join,
    Invite,
    Leave,
    Ban,
    Knock,
}

impl Membership {
    pub fn as_str(self) -> &'static str {
        match self {
            Membership::Join => "join",
            Membership::Invite => "invite",
            Membership::Leave => "leave",
            Membership::Ban => "ban",
            Membership::Knock => "knock",
        }
    }

    /// Joined, invited or knocking: the user is (or may become) part of the room, and must leave
    /// before forgetting it.
    pub fn is_current(self) -> bool {
        matches!(self, Membership::Join | Membership::Invite | Membership::Knock)
    }

    /// Left or banned: what the user may still read ends at this membership.
    pub fn is_gone(self) -> bool {
        matches!(self, Membership::Leave | Membership::Ban)
    }
}

impl fmt::Display for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A membership value that is none of the five the specification defines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown membership {0:?}")]
pub struct UnknownMembership(pub String);

impl FromStr for Membership {
    type Err = UnknownMembership;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "join" => Membership::Join,
            "invite" => Membership::Invite,
            "leave" => Membership::Leave,
            "ban" => Membership::Ban,
            "knock" => Membership::Knock,
            other => return Err(UnknownMembership(other.to_owned())),
        })
    }
}

/// The state event type of the same name as an event's type (ruma converts only the other way).
pub fn state_event_type(event_type: &TimelineEventType) -> StateEventType {
    StateEventType::from(event_type.to_string())
}

/// Where a piece of room state sits: its event type and state key.
pub type StateKey = (StateEventType, String);

/// Room state: (event type, state key) → event id.
pub type StateMap = HashMap<StateKey, OwnedEventId>;

/// The id of a state group (an immutable snapshot of room state, stored as a delta).
pub type StateGroupId = i64;

#[cfg(test)]
mod tests {
    use super::{Membership, StreamPos};

    #[test]
    fn memberships_round_trip_through_their_names() {
        for m in [Membership::Join, Membership::Invite, Membership::Leave, Membership::Ban, Membership::Knock] {
            assert_eq!(m.as_str().parse::<Membership>(), Ok(m));
            assert_eq!(serde_json::to_value(m).ok(), Some(serde_json::json!(m.as_str())));
        }
        assert!("joined".parse::<Membership>().is_err());
        assert!(Membership::Knock.is_current() && !Membership::Ban.is_current());
        assert!(Membership::Ban.is_gone() && !Membership::Invite.is_gone());
    }

    #[test]
    fn stream_positions_order_and_step() {
        assert!(StreamPos(3) < StreamPos(4));
        assert_eq!(StreamPos(4).prev(), StreamPos(3));
        assert_eq!(StreamPos::MIN.prev(), StreamPos::MIN);
        assert_eq!(StreamPos(10).distance_from(StreamPos(4)), 6);
        assert_eq!(StreamPos(4).distance_from(StreamPos(10)), 0);
        assert_eq!("17".parse::<StreamPos>(), Ok(StreamPos(17)));
        assert_eq!(StreamPos(17).to_string(), "17");
    }
}
