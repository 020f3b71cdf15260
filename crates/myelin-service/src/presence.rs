//! Presence: whether users are online, idle (`unavailable`) or offline, and their status
//! message, shown to the users they share a room with (sync v2's `presence` section,
//! `GET /presence/{userId}/status`) and sent to the servers those rooms share (`m.presence`).
//!
//! Tracked (the default, `presence.enabled = true`): a sync shows its user online and keeps
//! them so until `offline_after_ms` after it ends; an online user who has not acted (sent,
//! set their presence) for `idle_after_ms` becomes `unavailable`. The timers run on the
//! injected clock from every process (`spawn_timers`); the store decides each change once.
//! Only changes others see take a stream position and wake their syncs; a sync that changes
//! nothing writes only when the time it is kept present until runs short.
//! `"untracked"`: only what users set. `false`: no presence at all (reads answer offline).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use myelin_core::{
    MatrixError, MatrixResult,
    types::{OwnedServerName, OwnedUserId, ServerName, UserId},
};
use myelin_storage::{PresenceRecord, StreamPos};
use serde_json::{Map, Value, json};

use crate::{Services, accounts::Requester, filter::EventFilter};

/// Longest status message.
const MAX_STATUS_BYTES: usize = 1024;
/// Activity is written at most this often per user and process; what this process knows of a
/// user's row is re-read after this long.
const TOUCH_EVERY_MS: u64 = 15_000;
/// `currently_active` while the last action is this recent.
const ACTIVE_WINDOW_MS: u64 = 60_000;
/// A remote user is kept present this long after their server last said so (as Synapse).
const REMOTE_TIMEOUT_MS: u64 = 30 * 60 * 1000;
/// Most presence changes one sync reads.
const MAX_CHANGES: usize = 1000;
/// Changes one timer pass makes at most (the rest wait for the next).
const TIMER_BATCH: usize = 500;

/// A presence state a user can set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PresenceState {
    Online,
    Offline,
    Unavailable,
}

impl PresenceState {
    pub fn parse(raw: &str) -> MatrixResult<Self> {
        match raw {
            "online" => Ok(Self::Online),
            "offline" => Ok(Self::Offline),
            "unavailable" => Ok(Self::Unavailable),
            _ => Err(MatrixError::invalid_param("presence must be online, offline or unavailable")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Offline => "offline",
            Self::Unavailable => "unavailable",
        }
    }
}

/// What this process last wrote of its users' presence, so that a sync that changes nothing
/// needs no database round trip.
#[derive(Default)]
pub struct PresenceSeen {
    users: Mutex<HashMap<OwnedUserId, Seen>>,
    /// When each user's last action was written.
    active: crate::cache::Throttle<OwnedUserId>,
}

#[derive(Clone, Copy)]
struct Seen {
    state: &'static str,
    /// The `alive_until_ms` last written.
    alive_until_ms: u64,
    /// When this entry was read or written (entries older than [`TOUCH_EVERY_MS`] are re-read:
    /// another process or the timers may have changed the row).
    at_ms: u64,
}

impl PresenceSeen {
    fn get(&self, user_id: &UserId, now_ms: u64) -> Option<Seen> {
        let users = self.users.lock().ok()?;
        users.get(user_id).copied().filter(|s| now_ms.saturating_sub(s.at_ms) < TOUCH_EVERY_MS)
    }

    fn put(&self, user_id: &UserId, seen: Seen) {
        if let Ok(mut users) = self.users.lock() {
            if users.len() > 100_000 {
                users.clear();
            }
            users.insert(user_id.to_owned(), seen);
        }
    }

    /// Whether an action of the user at `now_ms` should be written (at most one per
    /// [`TOUCH_EVERY_MS`] per user and process).
    fn mark_active(&self, user_id: &UserId, now_ms: u64) -> bool {
        self.active.allow(user_id.to_owned(), now_ms, TOUCH_EVERY_MS)
    }

    fn forget(&self, user_id: &UserId) {
        if let Ok(mut users) = self.users.lock() {
            users.remove(user_id);
        }
    }
}

fn state_str(state: &str) -> &'static str {
    match state {
        "online" => "online",
        "unavailable" => "unavailable",
        _ => "offline",
    }
}

impl Services {
    /// A presence row as clients see it (`m.presence` content).
    fn presence_content(&self, record: &PresenceRecord) -> Value {
        let now = self.now_ms();
        let mut content = json!({ "presence": state_str(&record.state) });
        if record.last_active_ms > 0 {
            let ago = now.saturating_sub(record.last_active_ms);
            content["last_active_ago"] = ago.into();
            content["currently_active"] = (record.state == "online" && ago < ACTIVE_WINDOW_MS).into();
        }
        if let Some(msg) = &record.status_msg {
            content["status_msg"] = msg.clone().into();
        }
        content
    }

    /// `GET /presence/{userId}/status`: oneself, or a user one shares a room with.
    pub async fn presence(&self, requester: &Requester, user_id: &UserId) -> MatrixResult<Value> {
        if requester.user_id != user_id
            && self.store.sharing_rooms_with(&requester.user_id, &[user_id.to_owned()]).await?.is_empty()
        {
            return Err(MatrixError::forbidden("You are not allowed to see their presence"));
        }
        if !self.config.presence.enabled() {
            return Ok(json!({ "presence": "offline" }));
        }
        Ok(match self.store.get_presence(user_id).await? {
            Some(record) => self.presence_content(&record),
            None => json!({ "presence": "offline" }),
        })
    }

    /// `PUT /presence/{userId}/status` (one's own only): a change others see, and activity.
    pub async fn set_presence(
        &self,
        requester: &Requester,
        user_id: &UserId,
        state: PresenceState,
        status_msg: Option<String>,
    ) -> MatrixResult<()> {
        requester.require_self(user_id, "set presence")?;
        if status_msg.as_ref().is_some_and(|s| s.len() > MAX_STATUS_BYTES) {
            return Err(MatrixError::invalid_param("status_msg is too long"));
        }
        if !self.config.presence.enabled() {
            return Ok(());
        }
        let now = self.now_ms();
        let old = self.store.get_presence(user_id).await?;
        let last_active_ms = match state {
            PresenceState::Online => now,
            _ => old.as_ref().map_or(0, |o| o.last_active_ms),
        };
        // Setting oneself online counts as a sync that just ended, if none keeps one present.
        let alive_until_ms = old.as_ref().map_or(0, |o| o.alive_until_ms).max(if state == PresenceState::Offline {
            0
        } else {
            now + self.config.presence.offline_after_ms
        });
        let record = PresenceRecord {
            user_id: user_id.to_owned(),
            state: state.as_str().to_owned(),
            status_msg,
            last_active_ms,
            alive_until_ms,
            local: true,
            stream_pos: StreamPos::ZERO,
        };
        let unchanged = old.as_ref().is_some_and(|o| o.state == record.state && o.status_msg == record.status_msg);
        if unchanged {
            self.store.touch_presence(user_id, last_active_ms, alive_until_ms).await?;
        } else {
            self.publish_presence(record).await?;
        }
        Ok(())
    }

    /// A sync (v2 or sliding) of `user_id` begins and may wait `timeout`: under tracking, the
    /// user is online (unless the client asked otherwise with `set_presence`) and stays present
    /// until `offline_after_ms` after the wait.
    pub async fn presence_on_sync(
        &self,
        user_id: &UserId,
        set_presence: Option<PresenceState>,
        timeout: Duration,
    ) -> MatrixResult<()> {
        if !self.config.presence.tracked() {
            return Ok(());
        }
        let wanted = set_presence.unwrap_or(PresenceState::Online);
        if wanted == PresenceState::Offline {
            // "Do not change my presence".
            return Ok(());
        }
        let now = self.now_ms();
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let alive_until_ms = now.saturating_add(timeout_ms).saturating_add(self.config.presence.offline_after_ms);
        let seen = match self.presence_seen.get(user_id, now) {
            Some(seen) => seen,
            None => {
                let row = self.store.get_presence(user_id).await?;
                let seen = Seen {
                    state: row.as_ref().map_or("offline", |r| state_str(&r.state)),
                    alive_until_ms: row.as_ref().map_or(0, |r| r.alive_until_ms),
                    at_ms: now,
                };
                self.presence_seen.put(user_id, seen);
                seen
            }
        };
        // Online from offline (a user coming back), or unavailable as asked: a change others see.
        let change = matches!((seen.state, wanted), ("offline", _) | ("online", PresenceState::Unavailable));
        if change {
            let old = self.store.get_presence(user_id).await?;
            let record = PresenceRecord {
                user_id: user_id.to_owned(),
                state: wanted.as_str().to_owned(),
                status_msg: old.as_ref().and_then(|o| o.status_msg.clone()),
                last_active_ms: if wanted == PresenceState::Online { now } else { old.map_or(0, |o| o.last_active_ms) },
                alive_until_ms,
                local: true,
                stream_pos: StreamPos::ZERO,
            };
            self.publish_presence(record).await?;
            self.presence_seen.put(user_id, Seen { state: wanted.as_str(), alive_until_ms, at_ms: now });
        } else if seen.alive_until_ms < now.saturating_add(self.config.presence.offline_after_ms / 2) {
            // What is stored runs out soon: keep the user present (long polls write about once
            // per poll, short ones once per half `offline_after_ms`).
            self.store.touch_presence(user_id, 0, alive_until_ms).await?;
            self.presence_seen.put(user_id, Seen { state: seen.state, alive_until_ms, at_ms: now });
        }
        Ok(())
    }

    /// The user did something (sent an event): under tracking, they are active; an idle user is
    /// online again.
    pub(crate) async fn presence_active(&self, user_id: &UserId) -> MatrixResult<()> {
        if !self.config.presence.tracked() {
            return Ok(());
        }
        let now = self.now_ms();
        if !self.presence_seen.mark_active(user_id, now) {
            return Ok(());
        }
        let row = self.store.get_presence(user_id).await?;
        match row {
            Some(row) if row.state == "unavailable" => {
                let record = PresenceRecord { state: "online".to_owned(), last_active_ms: now, ..row };
                self.presence_seen.forget(user_id);
                self.publish_presence(record).await?;
            }
            Some(_) => self.store.touch_presence(user_id, now, 0).await?,
            None => {}
        }
        Ok(())
    }

    /// Stores a change others see, wakes the syncs of those who share a room with the user and
    /// tells the servers those rooms share (a local user's change).
    async fn publish_presence(&self, record: PresenceRecord) -> MatrixResult<()> {
        let user_id = record.user_id.clone();
        let local = record.local;
        let content = self.presence_content(&record);
        self.store.put_presence(record).await?;
        let mut mates = self.store.room_mates(&user_id).await?;
        if !mates.contains(&user_id) {
            mates.push(user_id.clone());
        }
        self.notifier.notify_users(&mates);
        if local {
            self.send_presence_edu(&user_id, &mates, content).await?;
        }
        Ok(())
    }

    /// Queues an `m.presence` EDU for every other server with a user sharing a room with
    /// `user_id`.
    async fn send_presence_edu(&self, user_id: &UserId, mates: &[OwnedUserId], mut content: Value) -> MatrixResult<()> {
        let mut destinations: Vec<OwnedServerName> =
            mates.iter().map(|u| u.server_name().to_owned()).filter(|s| *s != self.server_name).collect();
        destinations.sort();
        destinations.dedup();
        if destinations.is_empty() {
            return Ok(());
        }
        content["user_id"] = user_id.as_str().into();
        let edu = json!({ "edu_type": "m.presence", "content": { "push": [content] } });
        self.store.queue_edu(&destinations, &edu.to_string(), self.now_ms()).await?;
        self.wake_senders(&destinations).await
    }

    /// `m.presence` from `origin`: the presence of its users who share a room with ours.
    pub(crate) async fn receive_presence_edu(&self, origin: &ServerName, content: &Value) -> MatrixResult<()> {
        if !self.config.presence.enabled() {
            return Ok(());
        }
        let Some(pushes) = content.get("push").and_then(Value::as_array) else { return Ok(()) };
        let now = self.now_ms();
        for push in pushes.iter().take(1000) {
            let Some(user_id) = push.get("user_id").and_then(Value::as_str).and_then(|u| UserId::parse(u).ok()) else {
                continue;
            };
            if user_id.server_name() != origin {
                continue;
            }
            let Some(state) = push.get("presence").and_then(Value::as_str).and_then(|p| PresenceState::parse(p).ok())
            else {
                continue;
            };
            // Only users someone here can see: not a way to fill this server's tables.
            if self.store.room_mates(&user_id).await?.iter().all(|u| u.server_name() != self.server_name) {
                continue;
            }
            let ago = push.get("last_active_ago").and_then(Value::as_u64).unwrap_or(0);
            let status_msg = push
                .get("status_msg")
                .and_then(Value::as_str)
                .filter(|s| s.len() <= MAX_STATUS_BYTES)
                .map(str::to_owned);
            let old = self.store.get_presence(&user_id).await?;
            let record = PresenceRecord {
                user_id: user_id.clone(),
                state: state.as_str().to_owned(),
                status_msg,
                last_active_ms: now.saturating_sub(ago),
                alive_until_ms: if state == PresenceState::Offline { 0 } else { now + REMOTE_TIMEOUT_MS },
                local: false,
                stream_pos: StreamPos::ZERO,
            };
            if old.as_ref().is_some_and(|o| o.state == record.state && o.status_msg == record.status_msg) {
                self.store.touch_presence(&user_id, record.last_active_ms, record.alive_until_ms).await?;
            } else {
                self.publish_presence(record).await?;
            }
        }
        Ok(())
    }

    /// One pass of the timers: idle users become `unavailable`, users whose sync ended long
    /// enough ago (or whose server went quiet) `offline`. Answers how many changed.
    pub async fn run_presence_timers(&self) -> MatrixResult<usize> {
        if !self.config.presence.tracked() {
            return Ok(0);
        }
        let now = self.now_ms();
        let idle_before = now.saturating_sub(self.config.presence.idle_after_ms);
        let changed = self.store.expire_presence(idle_before, now, TIMER_BATCH).await?;
        for record in &changed {
            self.presence_seen.forget(&record.user_id);
            let mut mates = self.store.room_mates(&record.user_id).await?;
            mates.push(record.user_id.clone());
            self.notifier.notify_users(&mates);
            if record.local {
                self.send_presence_edu(&record.user_id, &mates, self.presence_content(record)).await?;
            }
        }
        Ok(changed.len())
    }

    /// Sync v2's `presence.events`: initially, everyone present among the users one shares a
    /// room with; after a token, the changes since of those users (oneself included).
    pub(crate) async fn presence_for_sync(
        &self,
        user_id: &UserId,
        since: Option<StreamPos>,
        until: StreamPos,
        filter: &EventFilter,
    ) -> MatrixResult<Vec<Value>> {
        if !self.config.presence.enabled() || !filter.type_allowed("m.presence") || filter.limit == Some(0) {
            return Ok(Vec::new());
        }
        let records = match since {
            None => {
                let mut mates = self.store.room_mates(user_id).await?;
                if !mates.iter().any(|m| m == user_id) {
                    mates.push(user_id.to_owned());
                }
                let mut records = self.store.presence_of(&mates).await?;
                records.retain(|r| r.state != "offline" || r.status_msg.is_some());
                records
            }
            Some(since) if since >= until => return Ok(Vec::new()),
            Some(since) => {
                // The newest change of each user counts.
                let mut latest: HashMap<OwnedUserId, PresenceRecord> = HashMap::new();
                for record in self.store.presence_changes_seen_by(user_id, since, until, MAX_CHANGES).await? {
                    latest.entry(record.user_id.clone()).or_insert(record);
                }
                let mut records: Vec<PresenceRecord> = latest.into_values().collect();
                records.sort_by_key(|r| r.stream_pos);
                records
            }
        };
        let limit = filter.limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let senders_ok = |u: &UserId| {
            filter.senders.as_ref().is_none_or(|s| s.iter().any(|x| x == u.as_str()))
                && !filter.not_senders.as_ref().is_some_and(|s| s.iter().any(|x| x == u.as_str()))
        };
        Ok(records
            .iter()
            .filter(|r| senders_ok(&r.user_id))
            .take(limit)
            .map(|r| {
                let mut event = Map::new();
                event.insert("type".into(), "m.presence".into());
                event.insert("sender".into(), r.user_id.as_str().into());
                event.insert("content".into(), self.presence_content(r));
                Value::Object(event)
            })
            .collect())
    }
}

/// Runs the presence timers every so often (a fraction of the shorter timer, at most 5 s) for
/// as long as the services live.
pub fn spawn_timers(services: &Arc<Services>) {
    let config = &services.config.presence;
    if !config.tracked() {
        return;
    }
    let every = Duration::from_millis((config.idle_after_ms.min(config.offline_after_ms) / 4).clamp(250, 5_000));
    let services = Arc::downgrade(services);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(s) = services.upgrade() else { return };
            if let Err(err) = s.run_presence_timers().await {
                tracing::warn!(%err, "presence timers");
            }
        }
    });
}
