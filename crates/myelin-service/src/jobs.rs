//! Background work on the durable job queue (`myelin_storage::JobRepo`).
//!
//! Every process runs a runner. It claims due jobs with a lease (a job is run by one process at a
//! time; if that process dies, the lease runs out and another process runs it again), runs each
//! with its handler, and then deletes it, schedules its next run (periodic jobs) or, if it
//! failed, schedules a retry with exponential backoff, keeping it as failed after the last
//! attempt. Jobs survive restarts and `kill -9`: they are rows.
//!
//! Kinds of job (`JobKind`): `cleanup`, hourly per deployment — expired login tokens, old
//! transaction ids, idle sliding sync connections, expired
//! user-interactive authentication sessions; `federation_send`, one per destination with
//! something to send (`federation/sender.rs`); `federation_sweep`, every half minute, which
//! wakes the sender of any destination left with queued entries; `device_list_resync`, a remote
//! user's device list after a gap; `partial_state_resync`, the whole state of a room joined with
//! partial state (`federation/partial_state.rs`); `delayed_event`, one delayed event due
//! (`delayed_events.rs`); `delegated_leave`, a call member's delayed leave kept pending while its
//! participant is on the SFU (`rtc/delegated_leave.rs`); `sticky_catch_up`, this server's sticky
//! events of a room for a server that joined it (`sticky_events.rs`); `push`, a user's
//! notifications to their pushers' gateways (`pushers.rs`, queued by the event write).
//!
//! A process's runner has three lanes (`Lane`): delayed events' timers, calls' delegated leaves,
//! and everything else, each claiming its own kinds; a federation send stuck on a slow server
//! never holds up a timer or a call.

use std::{sync::Arc, time::Duration};

use myelin_core::MatrixResult;
use myelin_storage::{ClaimedJob, JobKinds, NewJob};

use crate::{Services, delayed_events::DelayedRun};

/// How long a claimed job is leased to its process. A live process renews its leases every
/// [`LEASE_RENEWAL`]; the jobs of a process that died are claimed again once their lease is out.
const LEASE_MS: u64 = 60 * 1000;
const LEASE_RENEWAL: Duration = Duration::from_secs(20);
/// The runner looks at the queue at least this often (jobs queued by other processes).
const POLL: Duration = Duration::from_secs(1);
/// Jobs claimed at once (a call's members' timers due together fire in one batch).
const CLAIM_BATCH: usize = 64;
/// Attempts before a job is kept as failed.
pub const MAX_ATTEMPTS: u32 = 8;
/// First retry delay; doubled for each further attempt, up to [`MAX_BACKOFF_MS`].
const BACKOFF_MS: u64 = 10_000;
const MAX_BACKOFF_MS: u64 = 60 * 60 * 1000;

/// The clean-up job runs once an hour per deployment.
const CLEANUP_INTERVAL_MS: u64 = 60 * 60 * 1000;
/// Transaction ids are remembered for a day (like Synapse): a retry after that is a new send.
const TXN_ID_LIFETIME_MS: u64 = 24 * 60 * 60 * 1000;

/// The job that emails a user's unread notifications (`pushers.rs`), keyed `email_push:<user>`.
pub const EMAIL_PUSH_JOB: &str = "email_push";

/// The federation outbox sweep runs this often per deployment.
const FEDERATION_SWEEP_INTERVAL_MS: u64 = 30_000;

/// What a job does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    /// Periodic clean-up of expired and idle rows.
    Cleanup,
    /// Sends one destination's federation outbox.
    FederationSend,
    /// Periodic: wakes the sender of every destination with queued entries.
    FederationSweep,
    /// Fetches a remote user's whole device list after a gap.
    DeviceListResync,
    /// Fetches the whole state of a room joined with partial state.
    PartialStateResync,
    /// Sends a delayed event when it is due.
    DelayedEvent,
    /// Keeps a call member's delegated leave pending while its participant is on the SFU.
    DelegatedLeave,
    /// Sends this server's sticky events of a room to a server that joined it.
    StickyCatchUp,
    /// Sends a user's notifications to their pushers' gateways.
    Push,
    /// Emails a user's notifications still unread after the delay to their email pushers.
    EmailPush,
    /// Deletes a room an admin asked to delete (`DELETE /_synapse/admin/v2/rooms/{roomId}`).
    RoomDeletion,
    /// Sends one application service's outbox.
    Appservice,
}

/// What a job run asks for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// Done (a periodic job runs again after its interval).
    Done,
    /// More work is waiting: run again as soon as possible.
    Again,
    /// Not yet: run again at this time.
    At(u64),
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Cleanup => "cleanup",
            JobKind::FederationSend => "federation_send",
            JobKind::FederationSweep => "federation_sweep",
            JobKind::DeviceListResync => "device_list_resync",
            JobKind::PartialStateResync => "partial_state_resync",
            JobKind::DelayedEvent => myelin_storage::DELAYED_EVENT_JOB,
            JobKind::DelegatedLeave => myelin_storage::DELEGATED_LEAVE_JOB,
            JobKind::StickyCatchUp => "sticky_catch_up",
            JobKind::Push => myelin_storage::PUSH_JOB,
            JobKind::EmailPush => EMAIL_PUSH_JOB,
            JobKind::RoomDeletion => "room_deletion",
            JobKind::Appservice => myelin_storage::APPSERVICE_JOB,
        }
    }

    pub fn parse(kind: &str) -> Option<Self> {
        match kind {
            "cleanup" => Some(JobKind::Cleanup),
            "federation_send" => Some(JobKind::FederationSend),
            "federation_sweep" => Some(JobKind::FederationSweep),
            "device_list_resync" => Some(JobKind::DeviceListResync),
            "partial_state_resync" => Some(JobKind::PartialStateResync),
            myelin_storage::DELAYED_EVENT_JOB => Some(JobKind::DelayedEvent),
            myelin_storage::DELEGATED_LEAVE_JOB => Some(JobKind::DelegatedLeave),
            "sticky_catch_up" => Some(JobKind::StickyCatchUp),
            myelin_storage::PUSH_JOB => Some(JobKind::Push),
            EMAIL_PUSH_JOB => Some(JobKind::EmailPush),
            "room_deletion" => Some(JobKind::RoomDeletion),
            myelin_storage::APPSERVICE_JOB => Some(JobKind::Appservice),
            _ => None,
        }
    }

    /// For periodic jobs: the time between runs.
    fn interval_ms(self) -> Option<u64> {
        match self {
            JobKind::Cleanup => Some(CLEANUP_INTERVAL_MS),
            JobKind::FederationSweep => Some(FEDERATION_SWEEP_INTERVAL_MS),
            JobKind::FederationSend
            | JobKind::DeviceListResync
            | JobKind::PartialStateResync
            | JobKind::DelayedEvent
            | JobKind::DelegatedLeave
            | JobKind::StickyCatchUp
            | JobKind::Push
            | JobKind::EmailPush
            | JobKind::RoomDeletion
            | JobKind::Appservice => None,
        }
    }

    /// When a run that failed for the `attempts`-th time is tried again (`None`: given up).
    fn retry_at(self, now_ms: u64, attempts: u32) -> Option<u64> {
        match self {
            // A destination's queue waits for it however long it is down; a room's state is
            // fetched however long its servers are.
            JobKind::FederationSend | JobKind::PartialStateResync | JobKind::Push | JobKind::EmailPush => {
                Some(crate::federation::destination_retry_at(now_ms, attempts))
            }
            // An application service's queue waits for it however long it is down.
            JobKind::Appservice => Some(crate::appservices::appservice_retry_at(now_ms, attempts)),
            kind => retry_after_failure(now_ms, attempts, kind.interval_ms()),
        }
    }
}

/// When a job that failed its `attempts`-th run is tried again, or `None` to give up.
pub fn retry_at(now_ms: u64, attempts: u32) -> Option<u64> {
    if attempts >= MAX_ATTEMPTS {
        return None;
    }
    let backoff = BACKOFF_MS.saturating_mul(1 << attempts.saturating_sub(1).min(20)).min(MAX_BACKOFF_MS);
    Some(now_ms.saturating_add(backoff))
}

/// When a job of this `interval` (periodic jobs) that failed its `attempts`-th run is tried
/// again. A periodic job never gives up: it is retried with backoff, at most one interval later
/// (else a long database outage would stop the clean-up for good).
fn retry_after_failure(now_ms: u64, attempts: u32, interval_ms: Option<u64>) -> Option<u64> {
    match interval_ms {
        Some(interval) => Some(retry_at(now_ms, attempts).unwrap_or(u64::MAX).min(now_ms.saturating_add(interval))),
        None => retry_at(now_ms, attempts),
    }
}

/// The lanes of a process's runner, each claiming and running its own kinds of job: the
/// delayed events' timers; the delegated leaves of calls (their restarts have a fifth of the
/// leave's delay to spare, and they ask the SFU, which may be slow itself); and everything else
/// (federation sends and resyncs that wait on other servers, clean-up). No slow request in one
/// lane holds up another; within a lane, jobs run one after another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lane {
    Timers,
    Calls,
    Background,
}

impl Lane {
    fn kinds(self) -> JobKinds {
        let (timers, calls) = (myelin_storage::DELAYED_EVENT_JOB, myelin_storage::DELEGATED_LEAVE_JOB);
        match self {
            Lane::Timers => JobKinds::Only(vec![timers.to_owned()]),
            Lane::Calls => JobKinds::Only(vec![calls.to_owned()]),
            Lane::Background => JobKinds::AllBut(vec![timers.to_owned(), calls.to_owned()]),
        }
    }
}

/// Queues the periodic jobs (once per deployment: they are keyed by name) and spawns the
/// runner's lanes; they stop when the services are dropped.
pub fn spawn(services: &Arc<Services>) {
    let renewals = Arc::downgrade(services);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(LEASE_RENEWAL).await;
            let Some(s) = renewals.upgrade() else { return };
            if let Err(err) = s.store.extend_leases(&s.worker_id, s.now_ms() + LEASE_MS).await {
                tracing::warn!(%err, "could not renew the job leases");
            }
        }
    });
    let services = Arc::downgrade(services);
    tokio::spawn(async move {
        if let Some(s) = services.upgrade() {
            // An embedded database has one process: leases left are from its previous life.
            if !s.config().database_url().starts_with("postgres")
                && let Err(err) = s.store.release_all_leases().await
            {
                tracing::warn!(%err, "could not free the job leases of the previous run");
            }
            if let Err(err) = s.schedule_periodic_jobs().await {
                tracing::warn!(%err, "could not queue the periodic jobs");
            }
        }
        tokio::spawn(run_lane(services.clone(), Lane::Timers));
        tokio::spawn(run_lane(services.clone(), Lane::Calls));
        run_lane(services, Lane::Background).await;
    });
}

/// One lane of the runner: claims its due jobs and runs them, then waits for the next one due
/// (at most [`POLL`]: other processes queue jobs too) or a wake-up from this process.
async fn run_lane(services: std::sync::Weak<Services>, lane: Lane) {
    let kinds = lane.kinds();
    loop {
        let Some(s) = services.upgrade() else { return };
        let worked = match s.dispatch_due_jobs(s.now_ms(), &kinds).await {
            Ok(n) => n > 0,
            Err(err) => {
                tracing::warn!(%err, ?lane, "job runner");
                false
            }
        };
        // Due jobs may be waiting beyond the batch: look again at once.
        if worked {
            continue;
        }
        let wait = match s.store.next_job_due(&kinds).await {
            Ok(Some(due)) => Duration::from_millis(due.saturating_sub(s.now_ms())).min(POLL),
            _ => POLL,
        };
        // A notification sent meanwhile is kept by `Notify` until this wait takes it.
        let queued = match lane {
            Lane::Timers => s.timers_queued.clone(),
            Lane::Calls => s.calls_queued.clone(),
            Lane::Background => s.jobs_queued.clone(),
        };
        drop(s);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = queued.notified() => {}
        }
    }
}

impl Services {
    /// Queues a job of `kind` to run at `run_at_ms` (wakes this process's runner).
    pub async fn schedule_job(&self, kind: JobKind, payload: serde_json::Value, run_at_ms: u64) -> MatrixResult<()> {
        let job = NewJob { kind: kind.as_str().to_owned(), dedupe_key: None, payload: payload.to_string(), run_at_ms };
        self.store.schedule_job(job, self.now_ms()).await?;
        self.jobs_queued.notify_one();
        Ok(())
    }

    async fn schedule_periodic_jobs(&self) -> MatrixResult<()> {
        for kind in [JobKind::Cleanup, JobKind::FederationSweep] {
            let job = NewJob {
                kind: kind.as_str().to_owned(),
                dedupe_key: Some(kind.as_str().to_owned()),
                payload: "{}".to_owned(),
                run_at_ms: self.now_ms(),
            };
            self.store.schedule_job(job, self.now_ms()).await?;
        }
        Ok(())
    }

    /// Claims and runs the jobs due at `now`, all to the end; returns how many ran.
    pub async fn run_due_jobs(&self, now: u64) -> MatrixResult<usize> {
        let (count, others) = self.claim_and_fire_timers(now, &JobKinds::All).await?;
        for job in others {
            self.run_job(job, now).await?;
        }
        Ok(count)
    }

    /// Claims the jobs of `kinds` due at `now` and runs the delayed events among them (rooms side
    /// by side, each room's in the order they were due); answers how many were claimed and the
    /// others.
    async fn claim_and_fire_timers(&self, now: u64, kinds: &JobKinds) -> MatrixResult<(usize, Vec<ClaimedJob>)> {
        let claimed = self.store.claim_jobs(&self.worker_id, now, now + LEASE_MS, CLAIM_BATCH, kinds).await?;
        let count = claimed.len();
        let (timers, others): (Vec<ClaimedJob>, Vec<ClaimedJob>) =
            claimed.into_iter().partition(|job| JobKind::parse(&job.kind) == Some(JobKind::DelayedEvent));
        self.run_delayed_event_jobs(timers, now).await;
        Ok((count, others))
    }

    /// A lane's step: claims its jobs due at `now`, fires the delayed events among them, then
    /// runs the others in order, each failure recorded alone.
    async fn dispatch_due_jobs(&self, now: u64, kinds: &JobKinds) -> MatrixResult<usize> {
        let (count, others) = self.claim_and_fire_timers(now, kinds).await?;
        for job in others {
            if let Err(err) = self.run_job(job, now).await {
                // Its outcome could not be recorded (storage failing): the others still run.
                tracing::warn!(%err, "job runner");
            }
        }
        Ok(count)
    }

    /// Runs the claimed `delayed_event` jobs: marks the due ones as being sent in one write,
    /// sends them — the rooms side by side, each room's one after another in the order they were
    /// due — then cleans up at once (forgetting the events, ending their jobs: their commits are
    /// shared). A job that fails is failed alone (retried with backoff), never holding up or
    /// stranding the others.
    async fn run_delayed_event_jobs(&self, jobs: Vec<ClaimedJob>, now: u64) {
        use crate::delayed_events::delay_id_of_job;
        if jobs.is_empty() {
            return;
        }
        let ids: Vec<String> = jobs.iter().filter_map(|job| delay_id_of_job(&job.payload).ok()).collect();
        let fired = match self.store.fire_delayed_events(&ids, now).await {
            Ok(fired) => fired,
            Err(err) => {
                tracing::warn!(%err, "could not mark delayed events as being sent");
                Vec::new()
            }
        };
        // The fired events by room, soonest due first.
        let mut by_room: Vec<Vec<&myelin_storage::DelayedEvent>> = Vec::new();
        for event in &fired {
            match by_room.iter_mut().find(|group| group[0].room_id == event.room_id) {
                Some(group) => group.push(event),
                None => by_room.push(vec![event]),
            }
        }
        let sent: Vec<(String, MatrixResult<DelayedRun>)> =
            futures_util::future::join_all(by_room.into_iter().map(|group| async move {
                let mut outcomes = Vec::with_capacity(group.len());
                for event in group {
                    outcomes.push((event.delay_id.clone(), self.send_fired_delayed_event(event).await));
                }
                outcomes
            }))
            .await
            .into_iter()
            .flatten()
            .collect();
        let mut outcomes: std::collections::HashMap<String, MatrixResult<DelayedRun>> = sent.into_iter().collect();
        let bookkeeping = jobs.into_iter().map(|job| {
            let delay_id = delay_id_of_job(&job.payload);
            let outcome = match &delay_id {
                Ok(id) => outcomes.remove(id),
                Err(err) => Some(Err(err.clone())),
            };
            async move {
                let worker = &self.worker_id;
                let outcome = match (outcome, &delay_id) {
                    (Some(outcome), _) => outcome,
                    (None, Ok(id)) => self.unfired_delayed_event(id).await,
                    (None, Err(err)) => Err(err.clone()),
                };
                match outcome {
                    Ok(DelayedRun::Sent) => {
                        if let Ok(id) = &delay_id {
                            self.store.delete_delayed_event(id).await?;
                        }
                        self.store.complete_job(job.id, worker).await?;
                    }
                    Ok(DelayedRun::Gone) => {
                        self.store.complete_job(job.id, worker).await?;
                    }
                    Ok(DelayedRun::NotYet(at)) => {
                        self.store.reschedule_job(job.id, worker, at).await?;
                    }
                    Err(err) => {
                        let retry = JobKind::DelayedEvent.retry_at(now, job.attempts);
                        tracing::warn!(attempts = job.attempts, retry_at = ?retry, error = %err, "delayed event failed");
                        if retry.is_none()
                            && let Ok(id) = &delay_id
                        {
                            // Given up: it no longer holds one of its user's places.
                            self.store.delete_delayed_event(id).await?;
                        }
                        self.store.fail_job(job.id, worker, &err.to_string(), retry).await?;
                    }
                }
                MatrixResult::Ok(())
            }
        });
        for result in futures_util::future::join_all(bookkeeping).await {
            if let Err(err) = result {
                tracing::warn!(%err, "could not record the outcome of a delayed event's job");
            }
        }
    }

    async fn run_job(&self, job: ClaimedJob, now: u64) -> MatrixResult<()> {
        let Some(kind) = JobKind::parse(&job.kind) else {
            // Queued by a newer process of the deployment, perhaps: retried, then kept.
            let err = format!("unknown job kind {:?}", job.kind);
            tracing::warn!(kind = job.kind, attempts = job.attempts, "job of an unknown kind");
            self.store.fail_job(job.id, &self.worker_id, &err, retry_at(now, job.attempts)).await?;
            return Ok(());
        };
        match self.run_job_kind(kind, &job.payload, now).await {
            Ok(Next::Again) => {
                self.store.reschedule_job(job.id, &self.worker_id, now).await?;
            }
            Ok(Next::At(run_at)) => {
                self.store.reschedule_job(job.id, &self.worker_id, run_at).await?;
            }
            Ok(Next::Done) => match kind.interval_ms() {
                Some(interval) => {
                    self.store.reschedule_job(job.id, &self.worker_id, now + interval).await?;
                }
                None => {
                    self.store.complete_job(job.id, &self.worker_id).await?;
                    if kind == JobKind::FederationSend {
                        // Entries queued while the job was finishing found it still there.
                        self.recheck_sender(&job.payload).await?;
                    }
                    if kind == JobKind::Push {
                        self.recheck_push(&job.payload).await?;
                    }
                    if kind == JobKind::Appservice {
                        self.recheck_appservice(&job.payload).await?;
                    }
                }
            },
            Err(err) => {
                let retry = kind.retry_at(now, job.attempts);
                tracing::warn!(kind = job.kind, attempts = job.attempts, retry_at = ?retry, error = %err, "job failed");
                self.store.fail_job(job.id, &self.worker_id, &err.to_string(), retry).await?;
            }
        }
        Ok(())
    }

    async fn run_job_kind(&self, kind: JobKind, payload: &str, now: u64) -> MatrixResult<Next> {
        match kind {
            JobKind::FederationSend => Ok(if self.run_sender(payload).await? { Next::Again } else { Next::Done }),
            JobKind::FederationSweep => {
                self.sweep_outbox().await?;
                Ok(Next::Done)
            }
            JobKind::DeviceListResync => {
                self.run_device_list_resync(payload).await?;
                Ok(Next::Done)
            }
            JobKind::PartialStateResync => {
                self.run_partial_state_resync(payload).await?;
                Ok(Next::Done)
            }
            JobKind::DelayedEvent => {
                Ok(match self.run_delayed_event(&crate::delayed_events::delay_id_of_job(payload)?, now).await? {
                    Some(run_at) => Next::At(run_at),
                    None => Next::Done,
                })
            }
            JobKind::StickyCatchUp => {
                self.run_sticky_catch_up(payload).await?;
                Ok(Next::Done)
            }
            JobKind::Push => {
                self.run_push(payload).await?;
                Ok(Next::Done)
            }
            JobKind::RoomDeletion => {
                self.run_room_deletion_job(payload).await?;
                Ok(Next::Done)
            }
            JobKind::Appservice => {
                Ok(if self.run_appservice_sender(payload).await? { Next::Again } else { Next::Done })
            }
            JobKind::EmailPush => Ok(match self.run_email_push(payload).await? {
                Some(run_at) => Next::At(run_at),
                None => Next::Done,
            }),
            JobKind::DelegatedLeave => Ok(match self.run_delegated_leave(payload, now).await? {
                Some(run_at) => Next::At(run_at),
                None => Next::Done,
            }),
            JobKind::Cleanup => {
                let tokens = self.store.delete_expired_login_tokens(now).await?
                    + self.store.delete_expired_openid_tokens(now).await?
                    + self
                        .store
                        .delete_expired_oauth_rows(now, now.saturating_sub(crate::oauth::GRANT_LIFETIME_MS))
                        .await?
                    + self.store.delete_expired_rendezvous(now).await?;
                let txns = self.store.delete_txn_ids_before(now.saturating_sub(TXN_ID_LIFETIME_MS)).await?;
                let connections = self
                    .store
                    .delete_idle_sliding_sync_connections((now as i64).saturating_sub(self.sliding_idle_expiry_ms()))
                    .await?;
                let sticky_events = self.store.delete_expired_sticky_events(now).await?;
                let uia_sessions = self
                    .store
                    .delete_uia_sessions_before(now.saturating_sub(crate::uia::SESSION_LIFETIME.as_millis() as u64))
                    .await?;
                tracing::info!(
                    tokens,
                    txns,
                    connections,
                    uia_sessions,
                    sticky_events,
                    "clean-up: expired login tokens (and OAuth grants, browser sessions, rendezvous sessions), old transaction ids, idle sliding sync connections, \
                     expired authentication sessions and expired sticky events removed"
                );
                Ok(Next::Done)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_ATTEMPTS, retry_after_failure, retry_at};

    #[test]
    fn retries_back_off_exponentially_then_give_up() {
        assert_eq!(retry_at(1_000, 1), Some(11_000));
        assert_eq!(retry_at(1_000, 2), Some(21_000));
        assert_eq!(retry_at(1_000, 3), Some(41_000));
        assert_eq!(retry_at(0, MAX_ATTEMPTS - 1), Some(10_000 << (MAX_ATTEMPTS - 2)));
        assert_eq!(retry_at(1_000, MAX_ATTEMPTS), None);
    }

    #[test]
    fn a_periodic_job_is_retried_forever_within_its_interval() {
        assert_eq!(retry_after_failure(0, 1, Some(60_000)), Some(10_000), "backoff while it is shorter");
        assert_eq!(retry_after_failure(0, 7, Some(60_000)), Some(60_000), "capped at the interval");
        assert_eq!(retry_after_failure(0, MAX_ATTEMPTS + 5, Some(60_000)), Some(60_000), "never given up");
        assert_eq!(retry_after_failure(0, MAX_ATTEMPTS, None), None, "a one-off job is kept as failed");
    }
}
