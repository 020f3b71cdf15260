//! Delegated leaves: a call member hands its delayed leave event (MSC4140) to the JWT service,
//! which keeps it from firing while the member's LiveKit participant is connected to the SFU and
//! sends it as soon as the participant is gone, so the member's `m.rtc.member` state ends when
//! the media ends, not a dead man's switch delay later, and a client that is killed while its
//! media connection lives on is not dropped from the call.
//!
//! A delegation is a row (`DelegatedLeaveRepo`) and a `delegated_leave` job on the job queue, so
//! it survives restarts and is driven by one process at a time. The job, the SFU's webhooks
//! (`sfu_webhook`) and the SFU's API share the work as the reference service's state machine
//! does:
//! - waiting: the participant has not been seen on the SFU. The job asks the SFU
//!   (`GetParticipant`) with a growing interval (a webhook may have come before the delegation);
//!   a `participant_joined` webhook or a positive lookup makes it connected. Not seen by the
//!   wait limit (the delay, at most an hour): the leave is sent. A connection that failed
//!   before joining ends the delegation without sending (the client's own timer still runs).
//! - connected: the job restarts the delayed event at 80 % of its delay, each time first asking
//!   the SFU whether the participant is still there (a missed webhook); the participant leaving
//!   or being lost (webhook) or gone (lookup) sends the leave at once. The delayed event gone
//!   (cancelled or sent by the client) ends the delegation.
//!
//! Delegation is in-process: the delayed event is this server's, so only this server's users
//! delegate (the reference service restarts remote users' events over their client API).

use myelin_core::{ErrorCode, MatrixError, MatrixResult};
use myelin_storage::DelegatedLeave;
use serde::Deserialize;

use super::{
    CallParticipant, LeaveDelegation,
    sfu_api::{self, ParticipantChange, WebhookError},
};
use crate::{Services, delayed_events::DelayedAction};

/// The longest a delegation waits for its participant to appear on the SFU.
const MAX_WAIT_MS: u64 = 60 * 60 * 1000;
/// Lookups of a participant not seen yet: every half of the time waited so far, within these.
const MIN_LOOKUP_INTERVAL_MS: u64 = 1000;
const MAX_LOOKUP_INTERVAL_MS: u64 = 60 * 1000;

/// What the job of a delegation names.
#[derive(Deserialize)]
struct JobPayload {
    livekit_room: String,
    livekit_identity: String,
}

impl Services {
    /// Takes over a participant's delayed leave (replacing its earlier delegation, if any).
    pub(super) async fn delegate_leave(
        &self,
        participant: &CallParticipant,
        delegation: LeaveDelegation,
    ) -> MatrixResult<()> {
        if !self.is_local_user(&participant.user_id) {
            return Err(MatrixError::forbidden(
                "Delegation of delayed events is only supported for users of this homeserver",
            ));
        }
        let event = self.store.delayed_event(&delegation.delay_id).await?;
        if event.is_none_or(|e| e.user_id != participant.user_id) {
            return Err(MatrixError::not_found("Delayed event not found"));
        }
        let now = self.now_ms();
        let leave = DelegatedLeave {
            livekit_room: participant.livekit_room.clone(),
            livekit_identity: participant.identity.clone(),
            delay_id: delegation.delay_id,
            user_id: participant.user_id.clone(),
            connected: false,
            wait_until_ms: now.saturating_add(delegation.delay_timeout_ms.min(MAX_WAIT_MS)),
            created_ms: now,
        };
        self.store.put_delegated_leave(&leave, now).await?;
        self.calls_queued.notify_one();
        Ok(())
    }

    /// `POST …/sfu_webhook`: the SFU reports a participant joining or leaving.
    pub async fn livekit_webhook(&self, authorization: &str, body: &[u8]) -> MatrixResult<()> {
        let livekit =
            self.livekit().ok_or_else(|| MatrixError::not_found("No LiveKit SFU is configured on this server"))?;
        let event = match sfu_api::verify_webhook(livekit, authorization, body, self.now_ms() / 1000) {
            Ok(Some(event)) => event,
            Ok(None) => return Ok(()),
            Err(WebhookError::Unauthorised(why)) => {
                tracing::warn!(why, "refused an SFU webhook");
                return Err(
                    MatrixError::new(ErrorCode::Unauthorized, "The webhook is not signed by the SFU").with_status(401)
                );
            }
            Err(WebhookError::Malformed) => return Err(MatrixError::new(ErrorCode::NotJson, "Not a webhook event")),
        };
        let (room, identity) = (event.room.as_str(), event.identity.as_str());
        match event.change {
            ParticipantChange::Joined => {
                // The job restarts the leave now and keeps doing so.
                if self.store.mark_delegated_leave_connected(room, identity, self.now_ms()).await? {
                    self.calls_queued.notify_one();
                }
            }
            ParticipantChange::Left | ParticipantChange::Lost => {
                let Some(leave) = self.store.delegated_leave(room, identity).await? else { return Ok(()) };
                // A connection that failed before it joined: nothing to end (the client's own
                // timer still runs); one that hung up before it joined changes nothing.
                if !leave.connected && event.change == ParticipantChange::Left {
                    return Ok(());
                }
                if let Some(leave) = self.store.take_delegated_leave(room, identity).await?
                    && leave.connected
                {
                    self.send_delegated_leave(&leave).await?;
                }
            }
        }
        Ok(())
    }

    /// The `delegated_leave` job: when it wants to run again, or `None` when the delegation ended.
    pub(crate) async fn run_delegated_leave(&self, payload: &str, now: u64) -> MatrixResult<Option<u64>> {
        let job: JobPayload = serde_json::from_str(payload)
            .map_err(|e| MatrixError::internal(format!("bad delegated_leave payload: {e}")))?;
        let Some(leave) = self.store.delegated_leave(&job.livekit_room, &job.livekit_identity).await? else {
            return Ok(None);
        };
        let Some(livekit) = self.livekit().cloned() else {
            // The SFU was removed from the configuration: the client's own timer is all there is.
            self.store.take_delegated_leave(&leave.livekit_room, &leave.livekit_identity).await?;
            return Ok(None);
        };
        let present = sfu_api::participant_present(
            &self.livekit_http,
            &livekit,
            &leave.livekit_room,
            &leave.livekit_identity,
            now / 1000,
        )
        .await;
        if let Err(err) = &present {
            tracing::debug!(room = leave.livekit_room, %err, "could not look up a delegating participant");
        }
        if !leave.connected {
            if matches!(present, Ok(true)) {
                self.store.mark_delegated_leave_connected(&leave.livekit_room, &leave.livekit_identity, now).await?;
                return self.keep_leave_pending(&leave, now).await;
            }
            if now >= leave.wait_until_ms {
                self.end_delegation(&leave, true).await?;
                return Ok(None);
            }
            let waited = now.saturating_sub(leave.created_ms);
            let interval = (waited / 2).clamp(MIN_LOOKUP_INTERVAL_MS, MAX_LOOKUP_INTERVAL_MS);
            return Ok(Some(now.saturating_add(interval).min(leave.wait_until_ms)));
        }
        if matches!(present, Ok(false)) {
            // Gone without a webhook reaching this server.
            self.end_delegation(&leave, true).await?;
            return Ok(None);
        }
        self.keep_leave_pending(&leave, now).await
    }

    /// Restarts the delayed leave; the next restart is due at 80 % of its delay.
    async fn keep_leave_pending(&self, leave: &DelegatedLeave, now: u64) -> MatrixResult<Option<u64>> {
        let Some(event) = self.store.delayed_event(&leave.delay_id).await? else {
            self.end_delegation(leave, false).await?;
            return Ok(None);
        };
        match self.update_delayed_event(None, &leave.delay_id, DelayedAction::Restart).await {
            Ok(()) => Ok(Some(now.saturating_add(event.delay_ms.saturating_mul(4) / 5))),
            Err(err) if err.code == ErrorCode::NotFound => {
                // Cancelled or sent meanwhile (by the client, or because it was due).
                self.end_delegation(leave, false).await?;
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    /// Forgets the delegation; sends the leave if `send` (unless someone took it first).
    async fn end_delegation(&self, leave: &DelegatedLeave, send: bool) -> MatrixResult<()> {
        if let Some(taken) = self.store.take_delegated_leave(&leave.livekit_room, &leave.livekit_identity).await?
            && send
        {
            self.send_delegated_leave(&taken).await?;
        }
        Ok(())
    }

    async fn send_delegated_leave(&self, leave: &DelegatedLeave) -> MatrixResult<()> {
        match self.update_delayed_event(None, &leave.delay_id, DelayedAction::Send).await {
            // Already sent or cancelled: the member is gone either way.
            Err(err) if err.code == ErrorCode::NotFound => Ok(()),
            other => other,
        }
    }
}
