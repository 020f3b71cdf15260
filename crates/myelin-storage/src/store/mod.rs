//! Every repository trait, implemented once over [`Database`](crate::Database): the SQL is
//! PostgreSQL's spelling, which `db/sqlite.rs` rewrites for SQLite where the two differ.
//!
//! Conventions:
//! - A limit is written into the SQL text (`LIMIT {n}`), never bound: SQLite re-plans a statement
//!   whose `LIMIT` is a parameter on every execution.
//! - A list is bound once (`= ANY($n)`), and work per item uses `query_each`/`execute_all`,
//!   which PostgreSQL pipelines into one round trip.
//! - Positions (`Positions::next`) are taken only inside stream writes.

mod account_data;
mod accounts;
mod appservices;
mod backup;
mod dehydrated;
mod delayed_events;
mod delegated_leaves;
mod devices;
mod events;
mod federation;
mod jobs;
mod keys;
mod media;
mod media_admin;
mod notified;
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

use crate::{MemberRecord, StorageResult, StoredEvent, UserRoom, db::Row};

pub use notified::{KEY_COUNTS_CACHE, TOKEN_OWNERS_CACHE};
pub(crate) use notified::{Notified, follow_invalidations as follow_notified_invalidations};

/// The writes PostgreSQL group-commits across callers (`db/postgres/grouped.rs`), one queue each.
pub(crate) struct GroupedWrites {
    /// Sliding sync connections' compare-and-swap saves.
    pub(crate) connection_saves: crate::db::postgres::Grouped<sliding_sync::ConnectionSave, bool>,
}

impl Default for GroupedWrites {
    fn default() -> Self {
        Self { connection_saves: crate::db::postgres::Grouped::new(sliding_sync::save_connections) }
    }
}

/// `text` for a `LIKE … ESCAPE '\\'` pattern: its `\\`, `%` and `_` taken literally.
pub(crate) fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// The columns [`event_from_row`] reads, from `events e`.
pub(crate) const EVENT_COLUMNS: &str = "e.stream_pos, e.event_id, e.room_id, e.sender, e.event_type, e.state_key, \
     e.origin_server_ts, e.depth, e.json, e.redacted_by, e.sender_device, e.txn_id, e.state_before, e.state_after, \
     e.outlier, e.rejection";
/// How many columns [`EVENT_COLUMNS`] names (a query may read more after them).
pub(crate) const EVENT_COLUMN_COUNT: usize = 16;

pub(crate) fn event_from_row(r: &Row<'_>) -> StorageResult<StoredEvent> {
    Ok(StoredEvent {
        stream_pos: r.get(0)?,
        event_id: r.get(1)?,
        room_id: r.get(2)?,
        sender: r.get(3)?,
        event_type: r.get(4)?,
        state_key: r.get(5)?,
        origin_server_ts: r.get(6)?,
        depth: r.get(7)?,
        json: r.get(8)?,
        redacted_by: r.get(9)?,
        sender_device: r.get(10)?,
        txn_id: r.get(11)?,
        state_before: r.get(12)?,
        state_after: r.get(13)?,
        outlier: r.get(14)?,
        rejection: r.get(15)?,
    })
}

/// The columns [`member_from_row`] reads, from `room_members`.
pub(crate) const MEMBER_COLUMNS: &str = "user_id, membership, event_id, displayname, avatar_url, stream_pos";

pub(crate) fn member_from_row(r: &Row<'_>) -> StorageResult<MemberRecord> {
    Ok(MemberRecord {
        user_id: r.get(0)?,
        membership: r.get(1)?,
        event_id: r.get(2)?,
        displayname: r.get(3)?,
        avatar_url: r.get(4)?,
        stream_pos: r.get(5)?,
    })
}

/// The columns [`user_room_from_row`] reads, from `room_members m JOIN rooms r`.
pub(crate) const USER_ROOM_COLUMNS: &str =
    "m.room_id, m.membership, m.event_id, m.stream_pos, r.last_event_pos, m.forgotten, m.sender, r.bump_pos";

pub(crate) fn user_room_from_row(r: &Row<'_>) -> StorageResult<UserRoom> {
    Ok(UserRoom {
        room_id: r.get(0)?,
        membership: r.get(1)?,
        membership_event_id: r.get(2)?,
        membership_pos: r.get(3)?,
        last_event_pos: r.get(4)?,
        forgotten: r.get(5)?,
        membership_sender: r.get(6)?,
        bump_pos: r.get(7)?,
    })
}

#[async_trait::async_trait]
impl crate::ClusterBus for crate::Database {
    fn broadcast(&self, signal: crate::Signal) {
        self.broadcast_signal(signal);
    }

    async fn flush_signals(&self) {
        if let Some(db) = self.postgres() {
            db.flush_signals().await;
        }
    }

    fn signals(&self) -> tokio::sync::broadcast::Receiver<crate::Signal> {
        self.subscribe_signals()
    }
}
