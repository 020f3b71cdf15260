use async_trait::async_trait;
use myelin_core::{
    Membership, StateGroupId, StreamPos,
    types::{
        DeviceId, EventId, OwnedDeviceId, OwnedEventId, OwnedRoomId, OwnedServerName, OwnedTransactionId, OwnedUserId,
        RoomId, RoomVersionId, TimelineEventType, TransactionId, UserId,
    },
};
use ruma::events::relation::RelationType;

use crate::{SearchEntry, StateEntry, StorageResult};

/// An event as stored: the PDU JSON plus the indexes the server keeps about it.
#[derive(Clone, Debug)]
pub struct StoredEvent {
    pub stream_pos: StreamPos,
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    pub event_type: TimelineEventType,
    pub state_key: Option<String>,
    pub origin_server_ts: u64,
    pub depth: i64,
    /// The full PDU JSON (unredacted; redaction is applied when serving).
    pub json: String,
    pub redacted_by: Option<OwnedEventId>,
    pub sender_device: Option<OwnedDeviceId>,
    pub txn_id: Option<OwnedTransactionId>,
    /// The state group the event was authorised against.
    pub state_before: Option<StateGroupId>,
    /// The state group after it (the same as `state_before` for non-state events).
    pub state_after: Option<StateGroupId>,
    /// Stored without a place in the timeline: an auth or state event received over federation,
    /// or an event that was not accepted.
    pub outlier: bool,
    /// Why it was not accepted (`rejected: …` or `soft_failed: …`), if it was not.
    pub rejection: Option<String>,
}

/// The membership row an `m.room.member` event writes.
#[derive(Clone, Debug)]
pub struct MembershipUpdate {
    pub user_id: OwnedUserId,
    pub membership: Membership,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

/// A notifying push action for one recipient of an event.
#[derive(Clone, Debug)]
pub struct PushActionRecord {
    pub user_id: OwnedUserId,
    pub highlight: bool,
    /// The thread root, for an event in a thread.
    pub thread_id: Option<OwnedEventId>,
    /// The actions of the rule that matched (JSON), tweaks and all.
    pub actions: String,
}

/// How the reason of a rejected event begins (`rejected: …`). A rejected event changes no state:
/// the state after it is the state before it. A soft-failed one (`soft_failed: …`) passed the
/// auth rules against the state before it and keeps its place in the state after it.
pub const REJECTED: &str = "rejected";

/// Whether a stored event's reason marks it rejected (not merely soft-failed).
pub fn is_rejection(reason: Option<&str>) -> bool {
    reason.is_some_and(|r| r.starts_with(REJECTED))
}

/// Everything persisted together with one new event.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    pub event_type: TimelineEventType,
    pub state_key: Option<String>,
    pub origin_server_ts: u64,
    pub depth: i64,
    pub json: String,
    /// The events this one follows; they stop being forward extremities.
    pub prev_events: Vec<OwnedEventId>,
    /// (device id, transaction id) of the client request that sent it.
    pub txn: Option<(OwnedDeviceId, OwnedTransactionId)>,
    /// The event this redaction redacts (already checked as allowed).
    pub redacts: Option<OwnedEventId>,
    /// `m.relates_to`: (rel_type, the event it relates to).
    pub relation: Option<(RelationType, OwnedEventId)>,
    pub membership: Option<MembershipUpdate>,
    /// Set for the `m.room.create` event: the room row to create.
    pub new_room: Option<NewRoom>,
    /// Set for `m.room.join_rules` events: the room's new join rule.
    pub join_rule: Option<String>,
    pub push_actions: Vec<PushActionRecord>,
    /// The room's forward extremities the event was built on. If set and the stored ones differ
    /// (another process wrote to the room meanwhile), nothing is written: `StaleHead`.
    pub expected_extremities: Option<Vec<OwnedEventId>>,
    /// Where the state before the event comes from.
    pub state: EventState,
    /// Membership rows that change with the room's current state besides the event's own
    /// (`membership`): the members of a room joined over federation, or those moved by state
    /// resolution.
    pub member_changes: Vec<MemberChange>,
    /// Set for an event that was not accepted (`rejected: …` / `soft_failed: …`): it is stored
    /// with its state groups but changes nothing else (no current state, extremity, membership,
    /// redaction or push action) and is hidden from timelines.
    pub rejection: Option<String>,
    /// Other servers that must receive the event (a row each in the federation outbox, written
    /// in the same transaction).
    pub destinations: Vec<OwnedServerName>,
    /// Application services interested in the event (a row each in their outbox and their
    /// sender job, written in the same transaction).
    pub appservices: Vec<String>,
    /// A sticky event (MSC4354) is sent to the room's members until this time (an accepted
    /// event only; a row of `StickyEventRepo`).
    pub sticky_until_ms: Option<u64>,
    /// Its searchable text (an accepted event only; a row of `SearchRepo`'s index).
    pub search: Option<SearchEntry>,
}

/// The state before a new event.
#[derive(Clone, Debug, Default)]
pub enum EventState {
    /// The room's current state (a local event built on every forward extremity).
    #[default]
    Current,
    /// Given by the caller (the resolution of the states after its prev events): an event
    /// received over federation, or a join to a room on another server. `current` is the room's
    /// new current state when it is not simply the state after the event (the room had other
    /// forward extremities).
    Resolved { before: Vec<StateEntry>, current: Option<Vec<StateEntry>> },
}

/// A membership row set from a member event of the room's current state.
#[derive(Clone, Debug)]
pub struct MemberChange {
    pub event_id: OwnedEventId,
    pub sender: OwnedUserId,
    pub update: MembershipUpdate,
}

/// An event stored without a place in the timeline or the room's state: the auth chain and state
/// received with a join, or auth events fetched to check another event. Its checks were done by
/// the caller.
#[derive(Clone, Debug)]
pub struct OutlierEvent {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    pub event_type: TimelineEventType,
    pub state_key: Option<String>,
    pub origin_server_ts: u64,
    pub depth: i64,
    pub json: String,
    pub rejection: Option<String>,
}

/// A local user's membership of a room this server is not in: an invite received over
/// federation, a knock sent, or the rejection of either. Written at once: the room's row if it has
/// none, the event as an outlier, the membership row at a new stream position and the stripped
/// state the user may see of the room.
#[derive(Clone, Debug)]
pub struct OutOfRoomMembership {
    pub event: OutlierEvent,
    /// The room's row, created if the room is unknown.
    pub room_version: RoomVersionId,
    pub creator: OwnedUserId,
    pub update: MembershipUpdate,
    /// The stripped state (a JSON array) shown with the membership; `None` removes it.
    pub stripped_state: Option<String>,
}

/// An event of a room's history fetched from another server (`/backfill`), stored as an accepted
/// outlier and now given a place in the timeline.
#[derive(Clone, Debug)]
pub struct BackfilledEvent {
    pub event_id: OwnedEventId,
    /// The state group it is shown against (its state before and after).
    pub state_group: StateGroupId,
    /// `m.relates_to`: (rel_type, the event it relates to).
    pub relation: Option<(RelationType, OwnedEventId)>,
    /// The event this redaction redacts (already checked as allowed).
    pub redacts: Option<OwnedEventId>,
    /// Its searchable text.
    pub search: Option<SearchEntry>,
}

#[derive(Clone, Debug)]
pub struct NewRoom {
    pub room_version: RoomVersionId,
    pub creator: OwnedUserId,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PersistOutcome {
    Persisted {
        stream_pos: StreamPos,
    },
    /// The (user, device, txn id) was used before: nothing written, this is its event.
    DuplicateTxn {
        event_id: OwnedEventId,
    },
    /// The room moved on since the event was built (`expected_extremities` differ): nothing
    /// written; rebuild it on the new head.
    StaleHead,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

/// A write that has been queued; it resolves once the write is durable (or failed).
pub type PendingPersist = std::pin::Pin<Box<dyn std::future::Future<Output = StorageResult<PersistOutcome>> + Send>>;

/// Events: the atomic persist path and the timeline reads.
#[async_trait]
pub trait EventRepo {
    /// Queues a new event for persistence at the room's forward extremity, atomically with its
    /// state group, current state, membership, extremities, redaction, push actions and
    /// transaction id. Writes are applied in the order of `enqueue_event` calls, so a caller that
    /// holds a room's lock while enqueuing may release it before the returned future resolves:
    /// the next event of the room will be applied after this one.
    fn enqueue_event(&self, event: NewEvent) -> PendingPersist;
    /// `enqueue_event` and wait until it is durable.
    async fn persist_event(&self, event: NewEvent) -> StorageResult<PersistOutcome> {
        self.enqueue_event(event).await
    }
    /// Resolves once every write this process queued before the call is durable (or failed).
    async fn flush_writes(&self) -> StorageResult<()>;
    /// A position at or below which every write has committed (or never will), as far as this
    /// process knows.
    fn stream_head(&self) -> StreamPos;
    /// The committed head as the database has it now: other processes may have committed beyond
    /// what this one has heard of (a sync token from another process shows it). Advances
    /// `stream_head()` too.
    async fn refresh_stream_head(&self) -> StorageResult<StreamPos>;
    /// Whether a write of `change` may have taken a position after `since`: `false` only when
    /// none of that kind did up to the head this process knows (on PostgreSQL, the writes of
    /// other processes count once their head notification arrives). The repositories' "changes
    /// since" reads answer empty by themselves then; this is for a caller deciding whether to
    /// ask at all, or whether what it kept still holds.
    fn may_have_changed(&self, change: crate::Change, since: StreamPos) -> bool;
    /// Learns of every move of [`stream_head`](Self::stream_head).
    fn watch_stream_head(&self) -> tokio::sync::watch::Receiver<StreamPos>;
    /// The highest position taken by a committed write of this process (readers see every write
    /// this process acknowledged once the head reaches it).
    fn written_head(&self) -> StreamPos;
    /// Stores events as outliers (an event already stored is left as it is).
    async fn persist_outliers(&self, events: Vec<OutlierEvent>) -> StorageResult<()>;
    /// Gives history fetched from another server a place in its room's timeline before every
    /// event the database holds: negative stream positions, so that no sync ever shows it as
    /// new, in the order given (newest first). Only events stored as accepted outliers are
    /// placed (one already in a timeline, unknown or rejected is skipped). Answers the ids placed.
    async fn place_backfilled(&self, events: Vec<BackfilledEvent>) -> StorageResult<Vec<OwnedEventId>>;
    /// Writes a local user's membership of a room this server is not in (see
    /// [`OutOfRoomMembership`]); returns its stream position.
    async fn persist_out_of_room_membership(&self, membership: OutOfRoomMembership) -> StorageResult<StreamPos>;
    /// The stripped state stored with a user's membership of a room this server is not in:
    /// (the membership event it came with, the JSON array).
    async fn remote_room_state(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> StorageResult<Option<(OwnedEventId, String)>>;
    async fn get_event(&self, event_id: &EventId) -> StorageResult<Option<StoredEvent>>;
    /// The events that exist among `event_ids`, in the order asked.
    async fn get_events(&self, event_ids: &[OwnedEventId]) -> StorageResult<Vec<StoredEvent>>;
    async fn event_for_txn(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        txn_id: &TransactionId,
    ) -> StorageResult<Option<OwnedEventId>>;
    /// Room events ordered by stream position. Backward: positions `<= from` and `> to`,
    /// newest first. Forward: positions `> from` and `<= to`, oldest first.
    async fn room_events(
        &self,
        room_id: &RoomId,
        from: StreamPos,
        to: Option<StreamPos>,
        dir: Direction,
        limit: usize,
    ) -> StorageResult<Vec<StoredEvent>>;
    /// `m.room.member` events about `user_id` with positions in `(since, until]`, oldest first.
    async fn membership_events_for_user(
        &self,
        user_id: &UserId,
        since: StreamPos,
        until: StreamPos,
    ) -> StorageResult<Vec<StoredEvent>>;
    /// The state group after the newest event of the room at or before `pos`.
    async fn state_group_at(&self, room_id: &RoomId, pos: StreamPos) -> StorageResult<Option<StateGroupId>>;
    /// Events relating to `event_id` (optionally only `rel_type`), positions `<= from`, newest first.
    async fn relations(
        &self,
        event_id: &EventId,
        rel_type: Option<&RelationType>,
        from: StreamPos,
        limit: usize,
    ) -> StorageResult<Vec<StoredEvent>>;
    /// Thread roots of a room (events with at least one `m.thread` child), newest activity first,
    /// with the position of their latest reply `<= from`.
    async fn thread_roots(
        &self,
        room_id: &RoomId,
        from: StreamPos,
        limit: usize,
    ) -> StorageResult<Vec<(StoredEvent, StreamPos)>>;
    async fn forward_extremities(&self, room_id: &RoomId) -> StorageResult<Vec<StoredEvent>>;
    /// The room's timeline event closest to `ts_ms` at or after it (`forward`) or at or before
    /// it, by `origin_server_ts`, at or below `until`.
    async fn event_near_timestamp(
        &self,
        room_id: &RoomId,
        ts_ms: u64,
        forward: bool,
        until: StreamPos,
    ) -> StorageResult<Option<StoredEvent>>;
    /// Forgets transaction ids recorded before `before_ms` (retries older than that are new sends).
    async fn delete_txn_ids_before(&self, before_ms: u64) -> StorageResult<u64>;
}
