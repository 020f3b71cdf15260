//! Rooms: the send pipeline (build, sign, authorise, persist, notify), creation, membership,
//! reads with history visibility, aliases and the public directory.

mod create;
mod directory;
mod head;
mod hierarchy;
mod membership;
mod mutual;
mod power;
mod read;
mod restricted;
mod send;
mod state;
mod upgrade;
mod user_rooms;

pub use create::{CreateRoomRequest, InitialStateEvent};
pub use directory::{PublicRoomsRequest, RoomVisibility};
pub use head::{RoomHead, RoomHeads};
pub use hierarchy::HierarchyRequest;
pub use membership::{MemberAction, MembershipChange};
pub use power::PowerLevels;
pub use read::{MessagesPage, MessagesRequest, RelationsPage, RelationsRequest, ThreadsPage, Visibility};
pub use restricted::JOIN_AUTHORISED_VIA;
pub use send::EventSpec;
pub(crate) use send::{PduFields, PushedEvent, assemble_pdu, push_power_levels};
pub use user_rooms::UserRoomsCache;

use myelin_core::{ErrorCode, MatrixError, MatrixResult};
use ruma::{RoomVersionId, room_version_rules::RoomVersionRules};

/// The rules of a supported room version, or `M_UNSUPPORTED_ROOM_VERSION`.
pub fn version_rules(version: &str) -> MatrixResult<(RoomVersionId, RoomVersionRules)> {
    let id = RoomVersionId::try_from(version).map_err(|_| {
        MatrixError::new(ErrorCode::UnsupportedRoomVersion, format!("Unsupported room version {version:?}"))
    })?;
    let rules = id.rules().ok_or_else(|| {
        MatrixError::new(ErrorCode::UnsupportedRoomVersion, format!("Unsupported room version {version:?}"))
    })?;
    Ok((id, rules))
}

/// Room versions this server can create and join, for capabilities.
pub const SUPPORTED_ROOM_VERSIONS: &[&str] = &["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"];
