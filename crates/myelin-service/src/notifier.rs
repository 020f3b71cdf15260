//! Wake-ups for long-polling syncs. A sync subscribes for its user *before* it reads, then waits
//! for the user's counter to move; every write that a user must see bumps that user's counter.
//! `LocalNotifier` serves one process; `ClusterNotifier` also tells the other processes sharing
//! the database (their wake-ups arrive through `cluster.rs`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::watch;

pub trait Notifier: Send + Sync {
    /// Wakes every sync of these users.
    fn notify_users(&self, user_ids: &[String]);
    /// A subscription for one user's wake-ups; take it before reading what to answer.
    fn subscribe(&self, user_id: &str) -> Subscription;
}

pub struct Subscription {
    rx: watch::Receiver<u64>,
    // Keeps the entry alive while subscribed; dropped entries are cleaned lazily.
    _guard: Arc<()>,
}

impl Subscription {
    /// Waits until the user is notified after this subscription was taken.
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// A user's wake-up counter and the guard its subscriptions hold.
type UserChannel = (watch::Sender<u64>, Arc<()>);

#[derive(Default)]
pub struct LocalNotifier {
    users: Mutex<HashMap<String, UserChannel>>,
}

impl LocalNotifier {
    /// Wakes every sync of this process (after signals from other processes may have been lost).
    pub fn notify_all(&self) {
        let Ok(mut users) = self.users.lock() else { return };
        users.retain(|_, (tx, guard)| {
            tx.send_modify(|n| *n = n.wrapping_add(1));
            Arc::strong_count(guard) > 1
        });
    }
}

/// Wakes local syncs at once and broadcasts the wake-up to the other processes.
pub struct ClusterNotifier {
    pub local: LocalNotifier,
    pub store: Arc<dyn myelin_storage::Store>,
}

impl ClusterNotifier {
    pub fn notify_users(&self, user_ids: &[String]) {
        self.local.notify_users(user_ids);
        // The head now covers whatever the caller committed before notifying.
        let pos = self.store.stream_head();
        self.store.broadcast(myelin_storage::Signal::Wake { users: user_ids.to_vec(), pos });
    }

    pub fn subscribe(&self, user_id: &str) -> Subscription {
        self.local.subscribe(user_id)
    }
}

impl Notifier for ClusterNotifier {
    fn notify_users(&self, user_ids: &[String]) {
        ClusterNotifier::notify_users(self, user_ids)
    }

    fn subscribe(&self, user_id: &str) -> Subscription {
        ClusterNotifier::subscribe(self, user_id)
    }
}

impl Notifier for LocalNotifier {
    fn notify_users(&self, user_ids: &[String]) {
        let Ok(mut users) = self.users.lock() else { return };
        for user_id in user_ids {
            if let Some((tx, guard)) = users.get(user_id) {
                if Arc::strong_count(guard) == 1 {
                    users.remove(user_id);
                } else {
                    tx.send_modify(|n| *n = n.wrapping_add(1));
                }
            }
        }
    }

    fn subscribe(&self, user_id: &str) -> Subscription {
        let mut users = match self.users.lock() {
            Ok(users) => users,
            Err(poisoned) => poisoned.into_inner(),
        };
        let (tx, guard) = users.entry(user_id.to_owned()).or_insert_with(|| (watch::channel(0).0, Arc::new(())));
        let mut rx = tx.subscribe();
        rx.mark_unchanged();
        Subscription { rx, _guard: guard.clone() }
    }
}
