//! Following the other Myelin processes that share the database: their signals (see
//! `myelin_storage::Signal`) wake this process's syncs, drop what it caches about their writes
//! (one path for every cache: `Signal::Invalidate`, `cache.rs`) and keep typing in step. With
//! SQLite there are no other processes and no signals.

use std::sync::{Arc, Weak};

use myelin_storage::Signal;
use tokio::sync::broadcast::error::RecvError;

use crate::Services;

/// Spawns the task that applies other processes' signals for as long as `services` lives.
/// Needs a tokio runtime.
pub fn follow_other_processes(services: &Arc<Services>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    let mut signals = services.store.signals();
    let services: Weak<Services> = Arc::downgrade(services);
    runtime.spawn(async move {
        loop {
            let signal = match signals.recv().await {
                Ok(signal) => signal,
                // Fell behind and lost signals: act as after a lost connection.
                Err(RecvError::Lagged(_)) => Signal::Resync,
                Err(RecvError::Closed) => return,
            };
            let Some(services) = services.upgrade() else { return };
            services.apply_signal(signal);
        }
    });
}

impl Services {
    /// Sends every signal queued for the other processes before returning: an admin command
    /// calls it before it exits, so the processes serving clients hear of what it did (the
    /// syncs its events wake, the cache entries it made stale) at once, not at a timeout.
    pub async fn flush_signals(&self) {
        // A database that does not answer does not hold the command's exit for long.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), self.store.flush_signals()).await;
    }

    fn apply_signal(&self, signal: Signal) {
        match signal {
            Signal::Wake { users, pos } => {
                self.notifier.local.notify_users_at(&users, pos, &|| self.store.stream_head());
            }
            // The storage layer keeps and forgets these itself (`store/notified.rs`).
            Signal::Invalidate { cache, .. }
                if cache == myelin_storage::TOKEN_OWNERS_CACHE || cache == myelin_storage::KEY_COUNTS_CACHE => {}
            Signal::Invalidate { cache, key } => match self.caches().into_iter().find(|c| c.name() == cache) {
                Some(cache) => cache.invalidate_key(&key),
                None => tracing::warn!(cache, "invalidation for a cache this process does not have"),
            },
            Signal::Typing { room_id, user_id, timeout_ms, serial } => {
                let timeout = timeout_ms.map(std::time::Duration::from_millis);
                self.typing.apply_remote(&room_id, &user_id, timeout, serial);
            }
            Signal::Resync => {
                for cache in self.caches() {
                    cache.clear_all();
                }
                self.notifier.local.notify_all();
            }
        }
    }
}
