//! History from before this server joined a room. When `/messages` pages back past the oldest
//! event this server holds, the room's other servers are asked for what came before it
//! (`GET /backfill`); the events are checked (signatures, hashes, the auth rules against their
//! own auth events, whose chain is fetched where unknown), stored, and placed before everything
//! the room's timeline holds, at negative stream positions: a sync never shows them as new.
//!
//! The state an event of fetched history is shown against is the state before the oldest event
//! this server held when it was fetched (for a room joined over federation, the state its join
//! was authorised against); visibility is judged on that state.

use std::collections::HashSet;

use myelin_core::{
    MatrixResult, StreamPos,
    types::{OwnedEventId, OwnedServerName, RoomId},
};
use myelin_storage::{BackfilledEvent, Direction, StoredEvent};
use serde_json::Value;

use super::{ParsedPdu, encode_component, incoming::relation_of};
use crate::{Services, pdu::Pdu};

/// Events asked for in one `/backfill` request.
const BACKFILL_LIMIT: usize = 100;
/// The oldest timeline events whose missing prev events are looked for.
const EDGE_SCAN: usize = 20;
/// Servers asked, one after the other, before giving up for now.
const SERVERS_TRIED: usize = 5;
/// After an attempt that brought nothing, how long (ms) before the room's servers are asked again.
const QUIET_AFTER_NOTHING_MS: u64 = 30_000;
/// Auth chains fetched for one batch at most (events whose auth events stay unknown are left out).
const AUTH_CHAIN_FETCHES: usize = 10;

impl Services {
    /// Asks the room's other servers for history before the oldest event this server holds of
    /// `room_id`, and places what they answer in the timeline. Answers whether any event was
    /// added. Failures are logged, not returned: the history this server holds is still served.
    pub async fn backfill_room(&self, room_id: &RoomId) -> MatrixResult<bool> {
        let _guard = self.locks.lock(&format!("backfill {room_id}")).await;
        let now = self.clock.now_ms();
        if self.federation.backfill_quiet_until(room_id) > now {
            return Ok(false);
        }
        let oldest = self.store.room_events(room_id, StreamPos::MIN, None, Direction::Forward, EDGE_SCAN).await?;
        let Some(first) = oldest.first() else { return Ok(false) };
        let Some(state_group) = first.state_before.or(first.state_after) else { return Ok(false) };
        let extremities = self.backward_extremities(&oldest).await?;
        if extremities.is_empty() {
            return Ok(false);
        }
        let mut placed = false;
        for server in self.backfill_servers(room_id, &oldest).await? {
            match self.backfill_from(&server, room_id, &extremities, state_group).await {
                Ok(count) => {
                    tracing::info!(%room_id, %server, count, "backfilled history");
                    placed = count > 0;
                    break;
                }
                Err(e) => tracing::info!(%room_id, %server, error = %e.message, "backfill failed"),
            }
        }
        if !placed {
            self.federation.set_backfill_quiet_until(room_id, now + QUIET_AFTER_NOTHING_MS);
        }
        Ok(placed)
    }

    /// The prev events of the room's oldest timeline events that are not in its timeline: where
    /// the history this server holds begins.
    async fn backward_extremities(&self, oldest: &[StoredEvent]) -> MatrixResult<Vec<OwnedEventId>> {
        let mut prevs: Vec<OwnedEventId> = Vec::new();
        for ev in oldest {
            for prev in Pdu::from_stored(ev)?.prev_events {
                if !prevs.contains(&prev) {
                    prevs.push(prev);
                }
            }
        }
        let in_timeline: HashSet<OwnedEventId> =
            self.events(&prevs).await?.into_iter().filter(|e| !e.outlier).map(|e| e.event_id).collect();
        prevs.retain(|p| !in_timeline.contains(p));
        Ok(prevs)
    }

    /// The servers to ask: those of the oldest events' senders first, then the others with
    /// members in the room; never this one.
    async fn backfill_servers(&self, room_id: &RoomId, oldest: &[StoredEvent]) -> MatrixResult<Vec<OwnedServerName>> {
        let mut servers: Vec<OwnedServerName> = oldest.iter().map(|e| e.sender.server_name().to_owned()).collect();
        servers.extend(self.servers_in_room(room_id).await?);
        let mut seen = HashSet::new();
        servers.retain(|s| *s != self.server_name && seen.insert(s.clone()));
        servers.truncate(SERVERS_TRIED);
        Ok(servers)
    }

    /// One `/backfill` request to `server`: the events it answers, checked, stored and placed.
    /// Answers how many were placed.
    async fn backfill_from(
        &self,
        server: &OwnedServerName,
        room_id: &RoomId,
        extremities: &[OwnedEventId],
        state_group: myelin_core::StateGroupId,
    ) -> MatrixResult<usize> {
        let room = self.store.get_room(room_id).await?.ok_or_else(|| myelin_core::MatrixError::not_found("No room"))?;
        let mut path =
            format!("/_matrix/federation/v1/backfill/{}?limit={BACKFILL_LIMIT}", encode_component(room_id.as_str()));
        for id in extremities {
            path.push_str("&v=");
            path.push_str(&encode_component(id.as_str()));
        }
        let answer = self.federation_get(server, &path).await.map_err(super::joins::remote_error)?;
        let mut batch: Vec<ParsedPdu> = Vec::new();
        for raw in answer.get("pdus").and_then(Value::as_array).into_iter().flatten() {
            match ParsedPdu::parse(raw, &room.room_version) {
                Ok(p) if p.room_id == room_id && !batch.iter().any(|b| b.event_id == p.event_id) => batch.push(p),
                Ok(_) => {}
                Err(e) => tracing::info!(%server, error = %e.message, "a backfilled PDU is malformed"),
            }
        }
        // Those already in the timeline stay where they are.
        let ids: Vec<OwnedEventId> = batch.iter().map(|p| p.event_id.clone()).collect();
        let in_timeline: HashSet<OwnedEventId> =
            self.events(&ids).await?.into_iter().filter(|e| !e.outlier).map(|e| e.event_id).collect();
        batch.retain(|p| !in_timeline.contains(&p.event_id));
        if batch.is_empty() {
            return Ok(0);
        }
        // Auth events neither stored nor in the batch: their chain comes from the same server.
        let given: HashSet<OwnedEventId> = batch.iter().map(|p| p.event_id.clone()).collect();
        let mut fetches = 0;
        for parsed in &batch {
            let pdu = parsed.pdu()?;
            let unknown: Vec<OwnedEventId> = pdu.auth_events.iter().filter(|a| !given.contains(*a)).cloned().collect();
            if fetches < AUTH_CHAIN_FETCHES && !self.missing_events(&unknown).await?.is_empty() {
                fetches += 1;
                if let Err(e) = self.fetch_auth_chain(server, parsed).await {
                    tracing::info!(%server, event_id = %parsed.event_id, error = %e.message, "no auth chain");
                }
            }
        }
        // An event whose auth events are still unknown is left out rather than rejected, and so
        // are those that depend on it.
        let mut checkable = Vec::with_capacity(batch.len());
        for parsed in batch {
            let pdu = parsed.pdu()?;
            checkable.push((parsed, pdu));
        }
        loop {
            let present: HashSet<OwnedEventId> = checkable.iter().map(|(p, _)| p.event_id.clone()).collect();
            let mut kept = Vec::with_capacity(checkable.len());
            for (parsed, pdu) in std::mem::take(&mut checkable) {
                let outside: Vec<OwnedEventId> =
                    pdu.auth_events.iter().filter(|a| !present.contains(*a)).cloned().collect();
                if self.missing_events(&outside).await?.is_empty() {
                    kept.push((parsed, pdu));
                }
            }
            let done = kept.len() == present.len();
            checkable = kept;
            if done {
                break;
            }
        }
        self.store_checked_outliers(checkable.iter().map(|(p, _)| p.clone()).collect()).await?;
        // Newest first, as the timeline goes back.
        checkable.sort_by_key(|(p, pdu)| std::cmp::Reverse((p.depth(), pdu.origin_server_ts)));
        let events: Vec<BackfilledEvent> = checkable
            .iter()
            .map(|(p, pdu)| {
                let content: Value = serde_json::from_str(pdu.content.get()).unwrap_or(Value::Null);
                BackfilledEvent {
                    event_id: p.event_id.clone(),
                    state_group,
                    relation: relation_of(&content),
                    redacts: pdu.redacts.clone(),
                    search: crate::search::search_entry(&pdu.kind, &content),
                }
            })
            .collect();
        let placed = self.store.place_backfilled(events).await?;
        for id in &placed {
            self.invalidate(&self.events_cache, id);
        }
        for (_, pdu) in &checkable {
            if let Some(target) = pdu.redacts.as_ref().filter(|_| placed.contains(&pdu.event_id)) {
                self.invalidate(&self.events_cache, target);
            }
        }
        Ok(placed.len())
    }
}
