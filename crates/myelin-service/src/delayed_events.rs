//! Delayed events (MSC4140): an event a client schedules now to be sent later unless it restarts
//! or cancels the timer — MatrixRTC's dead man's switch (a call member schedules its own leave,
//! restarts it every few seconds, and leaves by itself when its client dies).
//!
//! Each delayed event is a row and a job of the job queue due when the event is
//! (`DelayedEventRepo`): it survives restarts and `kill -9`, overdue ones are sent at start in the
//! order they were due, and one process of a deployment sends each. The event is sent from the
//! device that scheduled it under a transaction id derived from its delay id, so a run repeated
//! after a crash (or a `send` action racing the timer) de-duplicates to the first event; that
//! device sees the delay id in the event's `unsigned` instead of a transaction id. Permission is
//! checked when the event is sent, like any event of that user at that time. A write to a state
//! entry by another user (local or remote) cancels the delayed writes to it others have pending.

use myelin_core::{
    ErrorCode, MatrixError, MatrixResult,
    types::{OwnedEventId, OwnedTransactionId, RoomId, StateEventType, TimelineEventType, TransactionId, UserId},
};
use myelin_storage::{DelayedEvent, Scheduled, StorageError};
use serde_json::{Value, json};

use crate::{Services, accounts::Requester, rooms::EventSpec};

/// Transaction ids of delayed events start with this; the rest is the delay id.
const DELAYED_TXN_PREFIX: &str = "org.matrix.msc4140.delay:";
/// The `unsigned` field that names a delayed event's delay id to its sender.
pub const UNSIGNED_DELAY_ID: &str = "org.matrix.msc4140.delay_id";

/// The delay id a `delayed_event` job is for, from its payload.
pub(crate) fn delay_id_of_job(payload: &str) -> MatrixResult<String> {
    serde_json::from_str::<Value>(payload)
        .ok()
        .and_then(|p| p.get("delay_id").and_then(Value::as_str).map(str::to_owned))
        .ok_or_else(|| MatrixError::new(ErrorCode::Unknown, "delayed_event job without a delay id"))
}

/// The delay id of an event sent as a delayed event, from its transaction id.
pub fn delay_id_of_txn(txn_id: &TransactionId) -> Option<&str> {
    txn_id.as_str().strip_prefix(DELAYED_TXN_PREFIX)
}

fn delayed_txn_id(delay_id: &str) -> OwnedTransactionId {
    OwnedTransactionId::from(format!("{DELAYED_TXN_PREFIX}{delay_id}"))
}

/// What a delayed event's job found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DelayedRun {
    /// Sent (or refused by the room, and so dropped): to be forgotten.
    Sent,
    /// Restarted meanwhile: due at this time.
    NotYet(u64),
    /// Cancelled or sent by a request meanwhile.
    Gone,
}

/// What a client asks of a delayed event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DelayedAction {
    /// Forget it.
    Cancel,
    /// Wait its whole delay again, from now.
    Restart,
    /// Send it now.
    Send,
}

impl DelayedAction {
    pub fn parse(raw: &str) -> MatrixResult<Self> {
        match raw {
            "cancel" => Ok(Self::Cancel),
            "restart" => Ok(Self::Restart),
            "send" => Ok(Self::Send),
            _ => Err(MatrixError::invalid_param("The action must be cancel, restart or send")),
        }
    }
}

impl Services {
    /// Schedules `spec` in `room_id` to be sent after `delay_ms`; answers the delay id.
    pub async fn schedule_delayed_event(
        &self,
        requester: &Requester,
        room_id: &RoomId,
        spec: EventSpec,
        delay_ms: u64,
    ) -> MatrixResult<String> {
        let rtc = &self.config().rtc;
        if rtc.max_event_delay_ms == 0 {
            return Err(MatrixError::forbidden("Sending delayed events has been disallowed"));
        }
        if delay_ms > rtc.max_event_delay_ms {
            // The shape matrix-js-sdk recognises (it then schedules with the maximum instead).
            let mut err = MatrixError::new(
                ErrorCode::Unknown,
                format!(
                    "The requested delay ({delay_ms}ms) exceeds the allowed maximum ({}ms)",
                    rtc.max_event_delay_ms
                ),
            )
            .with_status(400);
            err.extra = json!({
                "org.matrix.msc4140.errcode": "M_MAX_DELAY_EXCEEDED",
                "org.matrix.msc4140.max_delay": rtc.max_event_delay_ms,
            })
            .as_object()
            .cloned();
            return Err(err);
        }
        // Membership changes may need other servers (a remote invite is countersigned first):
        // not something a timer waits on.
        if matches!(
            spec.event_type,
            TimelineEventType::RoomCreate | TimelineEventType::RoomRedaction | TimelineEventType::RoomMember
        ) {
            return Err(MatrixError::invalid_param("This event type cannot be delayed"));
        }
        if !spec.content.is_object() {
            return Err(MatrixError::bad_json("Event content must be a JSON object"));
        }
        // The room must be one the user is in now; whether the event is allowed is decided when
        // it is sent, against the room as it is then.
        let membership = self.store.membership(room_id, &requester.user_id).await?.map(|m| m.membership);
        if membership != Some(myelin_core::Membership::Join) {
            return Err(MatrixError::forbidden("You are not in this room"));
        }
        self.check_rate_limit(crate::ratelimit::Limit::Messages, requester.user_id.as_str())?;
        let now = self.now_ms();
        let event = DelayedEvent {
            delay_id: format!("myd_{}", self.random.alphanumeric(20)),
            user_id: requester.user_id.clone(),
            device_id: requester.device_id.clone(),
            room_id: room_id.to_owned(),
            event_type: spec.event_type.to_string(),
            state_key: spec.state_key.clone(),
            content: spec.content.to_string(),
            delay_ms,
            sticky_duration_ms: spec.sticky_duration_ms,
            txn_id: spec.txn_id.as_ref().map(ToString::to_string),
            send_at_ms: now.saturating_add(delay_ms),
            created_ms: now,
        };
        match self.store.schedule_delayed_event(&event, rtc.max_delayed_events_per_user).await? {
            Scheduled::New => {
                self.timers_queued.notify_one();
                Ok(event.delay_id)
            }
            // A retried request (its answer was lost): the same delayed event.
            Scheduled::Repeat(delay_id) => Ok(delay_id),
            Scheduled::LimitReached => {
                // A place frees when the soonest pending one is sent.
                let soonest = self.store.delayed_events_of(&requester.user_id).await?.first().map(|e| e.send_at_ms);
                let retry_after = soonest.map_or(1000, |at| at.saturating_sub(now).max(1000));
                let mut err = MatrixError::limit_exceeded(retry_after);
                err.message =
                    format!("You may have at most {} delayed events pending", rtc.max_delayed_events_per_user);
                Err(err)
            }
        }
    }

    /// The requester's pending delayed events, as the unstable list endpoint shows them.
    pub async fn delayed_events(&self, requester: &Requester) -> MatrixResult<Vec<Value>> {
        Ok(self
            .store
            .delayed_events_of(&requester.user_id)
            .await?
            .into_iter()
            .map(|e| {
                let mut entry = json!({
                    "delay_id": e.delay_id,
                    "room_id": e.room_id,
                    "type": e.event_type,
                    "delay": e.delay_ms,
                    "running_since": e.send_at_ms.saturating_sub(e.delay_ms),
                    "content": serde_json::from_str::<Value>(&e.content).unwrap_or_else(|_| json!({})),
                });
                if let Some(state_key) = e.state_key {
                    entry["state_key"] = Value::String(state_key);
                }
                entry
            })
            .collect())
    }

    /// Cancels, restarts or sends a delayed event. `requester` is `None` when the request came
    /// without an access token: the delay id is then the capability (MatrixRTC's JWT service
    /// restarts a member's leave for it that way).
    pub async fn update_delayed_event(
        &self,
        requester: Option<&Requester>,
        delay_id: &str,
        action: DelayedAction,
    ) -> MatrixResult<()> {
        let not_found = || MatrixError::not_found("Delayed event not found");
        let event = self.store.delayed_event(delay_id).await?.ok_or_else(not_found)?;
        if requester.is_some_and(|r| r.user_id != event.user_id) {
            return Err(not_found());
        }
        match action {
            // An event being sent (its time came, or a `send`) is no longer cancelled or restarted.
            DelayedAction::Cancel => {
                if !self.store.cancel_delayed_event(delay_id).await? {
                    return Err(not_found());
                }
            }
            DelayedAction::Restart => {
                let send_at = self.now_ms().saturating_add(event.delay_ms);
                if !self.store.restart_delayed_event(delay_id, &event.user_id, send_at).await? {
                    return Err(not_found());
                }
            }
            DelayedAction::Send => {
                let ids = [delay_id.to_owned()];
                let event = self.store.fire_delayed_events(&ids, u64::MAX).await?.pop().ok_or_else(not_found)?;
                self.send_delayed_event(&event).await?;
            }
        }
        Ok(())
    }

    /// The `delayed_event` job, whole: sends the event if it is due and forgets it (a restart
    /// may have moved it while the job was claimed: it then answers the new time to wait for).
    pub(crate) async fn run_delayed_event(&self, delay_id: &str, now: u64) -> MatrixResult<Option<u64>> {
        match self.store.fire_delayed_events(&[delay_id.to_owned()], now).await?.pop() {
            Some(event) => {
                self.send_delayed_event(&event).await?;
                Ok(None)
            }
            None => Ok(self.store.delayed_event(delay_id).await?.map(|e| e.send_at_ms)),
        }
    }

    /// What became of a delayed event a job found not due: cancelled or sent by a request
    /// (gone), or restarted while the job was claimed.
    pub(crate) async fn unfired_delayed_event(&self, delay_id: &str) -> MatrixResult<DelayedRun> {
        Ok(match self.store.delayed_event(delay_id).await? {
            Some(event) => DelayedRun::NotYet(event.send_at_ms),
            None => DelayedRun::Gone,
        })
    }

    /// Sends a delayed event marked as being sent, without forgetting it (its job's clean-up
    /// does). An event the room no longer allows (the user left, lost the power) counts as sent:
    /// it is dropped with the error logged; a failure of the server is kept to retry.
    pub(crate) async fn send_fired_delayed_event(&self, event: &DelayedEvent) -> MatrixResult<DelayedRun> {
        match self.send_delayed_now(event).await {
            Err(err) if err.status >= 500 => Err(err),
            _ => Ok(DelayedRun::Sent),
        }
    }

    /// The `send` action: sends a delayed event (marked as being sent) now and forgets it
    /// (unless the server failed: its job sends it then).
    async fn send_delayed_event(&self, event: &DelayedEvent) -> MatrixResult<()> {
        let sent = self.send_delayed_now(event).await;
        if !matches!(&sent, Err(err) if err.status >= 500) {
            self.store.delete_delayed_event(&event.delay_id).await?;
        }
        sent.map(|_| ())
    }

    /// Sends a delayed event from the device that scheduled it.
    async fn send_delayed_now(&self, event: &DelayedEvent) -> MatrixResult<OwnedEventId> {
        let requester = Requester {
            user_id: event.user_id.clone(),
            device_id: event.device_id.clone(),
            is_admin: false,
            is_guest: false,
            access_token: String::new(),
            appservice: None,
        };
        let content = serde_json::from_str::<Value>(&event.content)
            .map_err(|e| StorageError::Corrupt(format!("delayed event {}: {e}", event.delay_id)))?;
        let spec = match &event.state_key {
            Some(state_key) => EventSpec::state(StateEventType::from(event.event_type.as_str()), state_key, content),
            None => EventSpec::message(TimelineEventType::from(event.event_type.as_str()), content),
        }
        .with_txn(delayed_txn_id(&event.delay_id))
        .sticky(event.sticky_duration_ms);
        let sent = self.send_event_for(&requester, &event.room_id, spec, false).await;
        match &sent {
            Ok(event_id) => tracing::debug!(delay_id = event.delay_id, %event_id, "delayed event sent"),
            Err(err) if err.status >= 500 => {}
            Err(err) => {
                tracing::info!(delay_id = event.delay_id, error = %err, "delayed event refused when due; dropped");
            }
        }
        sent
    }

    /// A state entry was written by `writer`: the delayed writes to it other users have pending
    /// are cancelled (their timer would otherwise overwrite a newer state).
    pub(crate) async fn state_written(&self, room_id: &RoomId, event_type: &str, state_key: &str, writer: &UserId) {
        match self.store.cancel_delayed_state_of_others(room_id, event_type, state_key, writer).await {
            Ok(cancelled) if !cancelled.is_empty() => {
                tracing::debug!(%room_id, event_type, state_key, ?cancelled, "delayed state writes cancelled by a newer write");
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, "could not cancel the delayed state writes of a written entry"),
        }
    }
}
