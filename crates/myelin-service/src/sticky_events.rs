//! Sticky events (MSC4354): events every member's client is sent until they expire, however
//! big the timeline gap and whenever the member joined — MatrixRTC call memberships in
//! matrix-js-sdk's newer mode. A client asks with `?org.matrix.msc4354.sticky_duration_ms=` on
//! a send; the PDU carries `msc4354_sticky: {duration_ms}` (so other servers keep it sticky too);
//! the event is sticky from `min(received, origin_server_ts)` for at most an hour.
//!
//! A sync (v2, and the sliding sync extension) gives each joined room the unexpired sticky
//! events written since its token — all of them for a room new to the client — except those
//! already in its timeline, each with the time it has left in `unsigned`. History visibility
//! does not apply (the MSC's rule: a member who joins mid-call must see the call).

use std::collections::{HashMap, HashSet};

use myelin_core::{
    MatrixError, MatrixResult, StreamPos,
    types::{EventId, OwnedRoomId, RoomId, ServerName},
};
use myelin_storage::{NewJob, StickyEvent};
use ruma::CanonicalJsonValue;
use serde_json::{Value, json};

use crate::{
    Services,
    pdu::{self, ClientFormat, Viewer},
};

/// The longest a sticky event stays sticky.
pub const MAX_STICKY_DURATION_MS: u64 = 3_600_000;
/// The PDU's top-level field.
pub const PDU_FIELD: &str = "msc4354_sticky";
/// Where a sync v2 room carries its sticky events.
pub const SYNC_SECTION: &str = "msc4354_sticky";
/// The `unsigned` field with the milliseconds a sticky event has left.
pub const UNSIGNED_TTL: &str = "msc4354_sticky_duration_ttl_ms";
/// Sticky events one room carries in one sync response at most (the newest).
pub const MAX_PER_ROOM: usize = 100;

/// The PDU field of a sticky event.
pub fn pdu_field(duration_ms: u64) -> CanonicalJsonValue {
    let mut object = ruma::CanonicalJsonObject::new();
    object.insert(
        "duration_ms".into(),
        CanonicalJsonValue::Integer(ruma::Int::from(duration_ms.min(u32::MAX as u64) as u32)),
    );
    CanonicalJsonValue::Object(object)
}

/// Until when an event another server sent, received at `received_ms`, is sticky: `None` if
/// it is not a sticky event or has expired already.
pub fn sticky_until(pdu_json: &Value, received_ms: u64) -> Option<u64> {
    let duration = pdu_json.get(PDU_FIELD)?.get("duration_ms")?.as_u64()?.min(MAX_STICKY_DURATION_MS);
    let origin = pdu_json.get("origin_server_ts").and_then(Value::as_u64).unwrap_or(received_ms);
    let until = origin.min(received_ms).saturating_add(duration);
    (until > received_ms).then_some(until)
}

impl Services {
    /// The unexpired sticky events of these rooms up to `upto`, by room.
    pub(crate) async fn sticky_events_by_room(
        &self,
        rooms: &[OwnedRoomId],
        upto: StreamPos,
    ) -> MatrixResult<HashMap<OwnedRoomId, Vec<StickyEvent>>> {
        let mut by_room: HashMap<OwnedRoomId, Vec<StickyEvent>> = HashMap::new();
        for sticky in self.store.sticky_events_in(rooms, upto, self.now_ms()).await? {
            by_room.entry(sticky.room_id.clone()).or_default().push(sticky);
        }
        Ok(by_room)
    }

    /// A room's sticky events for a client whose last view of it was `since` (`None`: the room
    /// is new to it), leaving out those in `timeline` and those of users the viewer ignores;
    /// client format with their time left.
    pub(crate) async fn sticky_section(
        &self,
        sticky: &[StickyEvent],
        since: Option<StreamPos>,
        timeline: &HashSet<&EventId>,
        viewer: Option<Viewer<'_>>,
    ) -> MatrixResult<Vec<Value>> {
        let wanted: Vec<&StickyEvent> = sticky
            .iter()
            .filter(|s| since.is_none_or(|since| s.stream_pos > since))
            .filter(|s| !timeline.contains::<EventId>(s.event_id.as_ref()))
            .collect();
        let wanted = &wanted[wanted.len().saturating_sub(MAX_PER_ROOM)..];
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<_> = wanted.iter().map(|s| s.event_id.clone()).collect();
        let expiry: HashMap<&EventId, u64> = wanted.iter().map(|s| (s.event_id.as_ref(), s.expires_ms)).collect();
        let now = self.now_ms();
        let ignored = match viewer {
            Some(viewer) => Some(self.ignored_users(viewer.user_id).await?),
            None => None,
        };
        let mut out = Vec::with_capacity(ids.len());
        for ev in self.events(&ids).await? {
            // Like timelines, nothing from users the viewer ignores.
            if ignored.as_ref().is_some_and(|ignored| ignored.contains(&ev.sender)) {
                continue;
            }
            let mut value = pdu::client_event(&ev, None, ClientFormat::Sync, viewer, None, now);
            if let Some(expires) = expiry.get::<EventId>(ev.event_id.as_ref()) {
                value["unsigned"][UNSIGNED_TTL] = Value::from(expires.saturating_sub(now));
            }
            out.push(value);
        }
        Ok(out)
    }
}

/// A server that joined a room is sent this server's unexpired sticky events of the room this
/// long after its join (by a `sticky_catch_up` job): it is still taking in the room's state from
/// its join when the join is placed.
pub const CATCH_UP_DELAY_MS: u64 = 2_000;

/// The job queue key of a room's catch-up for a server.
fn catch_up_key(room_id: &RoomId, server: &ServerName) -> String {
    format!("{}:{room_id} {server}", crate::jobs::JobKind::StickyCatchUp.as_str())
}

impl Services {
    /// A server joined the room (its first member): it will be pushed this server's own sticky
    /// events of the room (MSC4354: sticky events reach servers that join later).
    pub(crate) async fn server_joined(&self, room_id: &RoomId, server: &ServerName) {
        let payload = json!({ "room_id": room_id, "destination": server }).to_string();
        let job = NewJob {
            kind: crate::jobs::JobKind::StickyCatchUp.as_str().to_owned(),
            dedupe_key: Some(catch_up_key(room_id, server)),
            payload,
            run_at_ms: self.now_ms().saturating_add(CATCH_UP_DELAY_MS),
        };
        match self.store.schedule_job(job, self.now_ms()).await {
            Ok(_) => self.jobs_queued.notify_one(),
            Err(err) => {
                tracing::warn!(%room_id, %server, %err, "could not queue the sticky events for a joined server")
            }
        }
    }

    /// The `sticky_catch_up` job: queues this server's unexpired sticky events of the room for
    /// the destination, oldest first, if it is still in the room.
    pub(crate) async fn run_sticky_catch_up(&self, payload: &str) -> MatrixResult<()> {
        let bad = || MatrixError::internal(format!("bad sticky_catch_up payload {payload}"));
        let payload: Value = serde_json::from_str(payload).map_err(|_| bad())?;
        let room_id = payload["room_id"].as_str().and_then(|r| RoomId::parse(r).ok()).ok_or_else(bad)?;
        let destination = payload["destination"].as_str().and_then(|d| ServerName::parse(d).ok()).ok_or_else(bad)?;
        if !self.servers_in_room(&room_id).await?.contains(&destination) {
            return Ok(());
        }
        let sticky = self.store.sticky_events_in(std::slice::from_ref(&room_id), StreamPos::MAX, self.now_ms()).await?;
        let ids: Vec<_> = sticky.into_iter().map(|s| s.event_id).collect();
        let own: Vec<_> = self
            .events(&ids)
            .await?
            .into_iter()
            .filter(|e| self.is_local_user(&e.sender))
            .map(|e| e.event_id.clone())
            .collect();
        if own.is_empty() {
            return Ok(());
        }
        tracing::debug!(%room_id, %destination, events = own.len(), "sending our sticky events to a server that joined");
        self.store.queue_pdus(&destination, &own, self.now_ms()).await?;
        self.wake_senders(&[destination]).await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::sticky_until;

    #[test]
    fn stickiness_starts_at_the_earlier_of_sending_and_receipt_and_lasts_an_hour_at_most() {
        let pdu =
            |ts: u64, duration: u64| json!({ "origin_server_ts": ts, "msc4354_sticky": { "duration_ms": duration } });
        assert_eq!(sticky_until(&pdu(1_000, 5_000), 2_000), Some(6_000), "from the origin's time, earlier");
        assert_eq!(sticky_until(&pdu(9_000, 5_000), 2_000), Some(7_000), "a clock ahead does not extend it");
        assert_eq!(sticky_until(&pdu(0, 99_999_999), 1_000), Some(3_600_000), "capped at an hour");
        assert_eq!(sticky_until(&pdu(1_000, 500), 2_000), None, "expired on arrival");
        assert_eq!(sticky_until(&json!({ "origin_server_ts": 1 }), 2), None, "not sticky");
        assert_eq!(sticky_until(&json!({ "msc4354_sticky": { "duration_ms": "x" } }), 2), None);
    }
}
