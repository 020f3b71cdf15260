//! Following the other Myelin processes that share the database: their signals (see
//! `myelin_storage::Signal`) wake this process's syncs and drop what it caches about their
//! writes. With SQLite there are no other processes and no signals.

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
    fn apply_signal(&self, signal: Signal) {
        match signal {
            Signal::Wake { users, pos } => {
                self.notifier.local.notify_users_at(users, pos, &|| self.store.stream_head());
            }
            Signal::RoomHead { room_id } => self.heads.invalidate(&room_id),
            Signal::Redacted { event_id } => self.event_cache.invalidate(&event_id),
            Signal::RoomsOfUser { user_id } => self.user_rooms.invalidate(&user_id),
            Signal::AccountData { user_id } => {
                self.push.invalidate(&user_id);
                self.ignored.invalidate(&user_id);
            }
            Signal::Typing { room_id, user_id, timeout_ms, serial } => {
                let timeout = timeout_ms.map(std::time::Duration::from_millis);
                self.typing.apply_remote(&room_id, &user_id, timeout, serial);
            }
            Signal::Resync => {
                self.heads.clear();
                self.user_rooms.clear();
                self.event_cache.clear();
                self.push.clear();
                self.ignored.clear();
                self.notifier.local.notify_all();
            }
        }
    }
}
