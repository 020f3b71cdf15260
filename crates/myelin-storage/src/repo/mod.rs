//! Repository traits, one per concern. Lookups return `Option` because "not found" is a normal
//! answer; writes are single atomic operations.

mod account_data;
mod accounts;
mod appservices;
mod backup;
mod cluster;
mod dehydrated;
mod delayed_events;
mod delegated_leaves;
mod devices;
mod events;
mod federation;
mod jobs;
mod key_json;
mod keys;
mod media;
mod media_admin;
mod oauth;
mod partial_state;
mod passkeys;
mod presence;
mod pushers;
mod receipts;
mod registration_tokens;
mod remote_devices;
mod rendezvous;
mod reports;
mod room_admin;
mod rooms;
mod search;
mod server_keys;
mod server_notices;
mod sliding_sync;
mod state;
mod sticky_events;
mod threepids;
mod to_device;
mod uia;

pub use account_data::*;
pub use accounts::*;
pub use appservices::*;
pub use backup::*;
pub use cluster::*;
pub use dehydrated::*;
pub use delayed_events::*;
pub use delegated_leaves::*;
pub use devices::*;
pub use events::*;
pub use federation::*;
pub use jobs::*;
pub use key_json::same_key;
pub use keys::*;
pub use media::*;
pub use media_admin::*;
pub use oauth::*;
pub use partial_state::*;
pub use passkeys::*;
pub use presence::*;
pub use pushers::*;
pub use receipts::*;
pub use registration_tokens::*;
pub use remote_devices::*;
pub use rendezvous::*;
pub use reports::*;
pub use room_admin::*;
pub use rooms::*;
pub use search::*;
pub use server_keys::*;
pub use server_notices::*;
pub use sliding_sync::*;
pub use state::*;
pub use sticky_events::*;
pub use threepids::*;
pub use to_device::*;
pub use uia::*;

pub use myelin_core::{Membership, StateGroupId, StreamPos};

/// Everything the services need from storage, handed out as one object.
pub trait Store:
    AccountRepo
    + DeviceRepo
    + EventRepo
    + FederationRepo
    + RoomRepo
    + StateRepo
    + AccountDataRepo
    + ReceiptRepo
    + ClusterBus
    + JobRepo
    + KeyRepo
    + ToDeviceRepo
    + BackupRepo
    + DehydratedDeviceRepo
    + SlidingSyncRepo
    + UiaRepo
    + ServerKeyRepo
    + RemoteDeviceRepo
    + PartialStateRepo
    + DelayedEventRepo
    + DelegatedLeaveRepo
    + StickyEventRepo
    + MediaRepo
    + PusherRepo
    + ReportRepo
    + SearchRepo
    + ServerNoticeRepo
    + PresenceRepo
    + ThreepidRepo
    + MediaAdminRepo
    + RoomAdminRepo
    + RegistrationTokenRepo
    + AppserviceRepo
    + OAuthRepo
    + RendezvousRepo
    + PasskeyRepo
    + Send
    + Sync
    + 'static
{
}

impl<T> Store for T where
    T: AccountRepo
        + DeviceRepo
        + EventRepo
        + FederationRepo
        + RoomRepo
        + StateRepo
        + AccountDataRepo
        + ReceiptRepo
        + ClusterBus
        + JobRepo
        + KeyRepo
        + ToDeviceRepo
        + BackupRepo
        + DehydratedDeviceRepo
        + SlidingSyncRepo
        + UiaRepo
        + ServerKeyRepo
        + RemoteDeviceRepo
        + PartialStateRepo
        + DelayedEventRepo
        + DelegatedLeaveRepo
        + StickyEventRepo
        + MediaRepo
        + PusherRepo
        + ReportRepo
        + SearchRepo
        + ServerNoticeRepo
        + PresenceRepo
        + ThreepidRepo
        + MediaAdminRepo
        + RoomAdminRepo
        + RegistrationTokenRepo
        + AppserviceRepo
        + OAuthRepo
        + RendezvousRepo
        + PasskeyRepo
        + Send
        + Sync
        + 'static
{
}
