//! Joining a big room fast (partial state, MSC3706). A room this server holds no state of is
//! joined asking the resident server to leave member events out of its `send_join` answer
//! (`omit_members`): the join is stored against that partial state at once, and the user is in
//! the room. Until the whole state is known (the `partial_state_resync` job fetches it from the
//! room's servers with `/state` at the join):
//! - events from other servers are judged by their auth events only (the state before them and
//!   the current state lack members);
//! - events go to the servers the resident named besides those of the members known;
//! - the member list a client asks for waits for the whole state (clients encrypt for it);
//! - this server answers no join, leave or knock for the room (its state would be partial).
//!
//! Once fetched and checked, the members left out are added to every state of the room where the
//! state does not already hold a later membership (`complete_partial_state`).

use std::time::Duration;

use myelin_core::{
    MatrixError, MatrixResult, StateMap,
    types::{OwnedEventId, OwnedRoomId, OwnedServerName, RoomId, StateEventType},
};
use myelin_storage::NewJob;
use serde_json::{Value, json};

use super::encode_component;
use crate::{Services, jobs::JobKind};

/// How long a member list waits for a room's whole state.
const MEMBERS_WAIT: Duration = Duration::from_secs(60);

impl Services {
    /// Queues the fetch of a room's whole state (once per room).
    pub(crate) async fn schedule_partial_state_resync(&self, room_id: &RoomId) -> MatrixResult<()> {
        let now = self.now_ms();
        let job = NewJob {
            kind: JobKind::PartialStateResync.as_str().to_owned(),
            dedupe_key: Some(format!("partial_state_resync {room_id}")),
            payload: json!({ "room_id": room_id }).to_string(),
            run_at_ms: now,
        };
        self.store.schedule_job(job, now).await?;
        self.jobs_queued.notify_one();
        Ok(())
    }

    /// The `partial_state_resync` job: the state before this server's join, from the servers
    /// the resident named, checked, then completing the room's state.
    pub(crate) async fn run_partial_state_resync(&self, payload: &str) -> MatrixResult<()> {
        let room_id = serde_json::from_str::<Value>(payload)
            .ok()
            .and_then(|p| p.get("room_id").and_then(Value::as_str).and_then(|r| OwnedRoomId::try_from(r).ok()))
            .ok_or_else(|| MatrixError::internal(format!("bad partial_state_resync payload {payload}")))?;
        let Some(partial) = self.store.partial_state(&room_id).await? else { return Ok(()) };
        let Some(join) = self.event(&partial.join_event_id).await? else {
            // The join was never stored (the process died before): nothing is partial.
            self.store.clear_partial_state(&room_id).await?;
            return Ok(());
        };
        let known = match join.state_before {
            Some(group) => self.state_group(group).await?,
            None => return Err(MatrixError::internal(format!("the join to {room_id} has no state"))),
        };
        let mut last_error = MatrixError::not_found("No server to fetch the room's state from");
        for server in partial.servers.iter().filter(|s| **s != self.server_name) {
            match self.fetch_state_at(server, &room_id, &join.event_id).await {
                Ok(full) => return self.complete_room_state(&room_id, &join.event_id, &known, &full).await,
                Err(e) => {
                    tracing::info!(%room_id, %server, error = %e.message, "fetching the room's whole state failed");
                    last_error = e;
                }
            }
        }
        Err(last_error)
    }

    /// `GET /state?event_id=` from `server`: the state before `event_id`, with its auth chain,
    /// checked and stored as outliers; answers the state its accepted events make.
    async fn fetch_state_at(
        &self,
        server: &OwnedServerName,
        room_id: &RoomId,
        event_id: &OwnedEventId,
    ) -> MatrixResult<StateMap> {
        let room = self.store.get_room(room_id).await?.ok_or_else(|| MatrixError::not_found("Unknown room"))?;
        let path = format!(
            "/_matrix/federation/v1/state/{}?event_id={}",
            encode_component(room_id.as_str()),
            encode_component(event_id.as_str())
        );
        let answer = self.federation_get(server, &path).await.map_err(super::joins::remote_error)?;
        let state = self.store_sent_state(&answer, "pdus", &room.room_version, room_id).await?;
        if !state.contains_key(&(StateEventType::RoomCreate, String::new())) {
            return Err(MatrixError::bad_json("The state answered holds no create event"));
        }
        Ok(state)
    }

    /// Adds what the partial state left out (`full` less what `known` holds) to the room.
    async fn complete_room_state(
        &self,
        room_id: &RoomId,
        join: &OwnedEventId,
        known: &StateMap,
        full: &StateMap,
    ) -> MatrixResult<()> {
        let missing: StateMap =
            full.iter().filter(|(key, _)| !known.contains_key(*key)).map(|(k, v)| (k.clone(), v.clone())).collect();
        let members = self.member_changes(&StateMap::new(), &missing, join).await?;
        let entries = missing.into_iter().map(|((t, k), e)| (t, k, e)).collect();
        let _room_guard = self.locks.lock(room_id.as_str()).await;
        self.store.flush_writes().await?;
        let groups = self.store.complete_partial_state(room_id, entries, members.clone()).await?;
        for group in groups {
            self.invalidate(&self.state_groups, &group);
        }
        self.invalidate(&self.heads.cache, &room_id.to_owned());
        tracing::info!(%room_id, members = members.len(), "the room's whole state is known");
        let wake: Vec<_> = self
            .store
            .room_members(room_id, Some(myelin_core::Membership::Join))
            .await?
            .into_iter()
            .filter(|m| self.is_local_user(&m.user_id))
            .map(|m| m.user_id)
            .collect();
        self.notifier.notify_users(&wake);
        Ok(())
    }

    /// Waits (a while) until the room's whole state is known: a member list is asked for to
    /// encrypt for every member, and a partial one would leave some out.
    pub(crate) async fn wait_for_whole_state(&self, room_id: &RoomId) -> MatrixResult<()> {
        let deadline = tokio::time::Instant::now() + MEMBERS_WAIT;
        while self.room_head(room_id).await?.partial_servers.is_some() {
            if tokio::time::Instant::now() > deadline {
                return Err(MatrixError::new(
                    myelin_core::ErrorCode::Unknown,
                    "The room's member list is still being fetched from other servers; try again",
                )
                .with_status(503));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            // Another process may have completed it.
            if self.store.partial_state(room_id).await?.is_none() {
                self.heads.cache.invalidate(&room_id.to_owned());
            }
        }
        Ok(())
    }
}
