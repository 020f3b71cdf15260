//! Wake-ups for long-polling syncs. A sync subscribes for its user *before* it reads, then waits
//! for the user's counter to move; every write that a user must see bumps that user's counter.
//!
//! A wake-up is for a position: a sync woken before the stream head reaches the write would read
//! nothing new and wait again. With several PostgreSQL processes writing side by side, a write can
//! commit while the head is still held below it by another process's batch; its wake-up then
//! waits (`pending`) until the head passes it. `LocalNotifier` serves one process;
//! `ClusterNotifier` also tells the other processes sharing the database (their wake-ups arrive
//! through `cluster.rs` and wait the same way).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use myelin_core::types::{OwnedUserId, UserId};
use myelin_storage::StreamPos;
use tokio::sync::watch;

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

/// The wake-ups of one process's syncs.
#[derive(Default)]
pub struct LocalNotifier {
    users: Mutex<HashMap<OwnedUserId, UserChannel>>,
    /// Wake-ups for positions the stream head has not reached yet, by position.
    pending: Mutex<BTreeMap<StreamPos, Vec<OwnedUserId>>>,
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

    /// Wakes every sync of these users now.
    pub fn notify_users(&self, user_ids: &[OwnedUserId]) {
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

    /// Wakes these users' syncs once the stream head (read by `head`) reaches `pos`.
    pub fn notify_users_at(&self, user_ids: &[OwnedUserId], pos: StreamPos, head: &dyn Fn() -> StreamPos) {
        if pos <= head() {
            self.notify_users(user_ids);
            return;
        }
        if let Ok(mut pending) = self.pending.lock() {
            pending.entry(pos).or_default().extend_from_slice(user_ids);
        }
        // The head may have moved after it was read and before the entry was in place.
        self.head_moved(head());
    }

    /// The stream head moved to `head`: the wake-ups waiting for it go out.
    pub fn head_moved(&self, head: StreamPos) {
        let due: Vec<OwnedUserId> = {
            let Ok(mut pending) = self.pending.lock() else { return };
            let later = pending.split_off(&head.next());
            std::mem::replace(&mut *pending, later).into_values().flatten().collect()
        };
        if !due.is_empty() {
            self.notify_users(&due);
        }
    }

    /// A subscription for one user's wake-ups; take it before reading what to answer.
    pub fn subscribe(&self, user_id: &UserId) -> Subscription {
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

/// Wakes local syncs and broadcasts the wake-up to the other processes.
pub struct ClusterNotifier {
    pub local: LocalNotifier,
    pub store: Arc<dyn myelin_storage::Store>,
}

impl ClusterNotifier {
    /// Wakes these users' syncs for everything this process has written so far: at once if the
    /// head covers it, else when it does; other processes likewise.
    pub fn notify_users(&self, user_ids: &[OwnedUserId]) {
        let pos = self.store.written_head();
        self.local.notify_users_at(user_ids, pos, &|| self.store.stream_head());
        self.store.broadcast(myelin_storage::Signal::Wake { users: user_ids.to_vec(), pos });
    }

    pub fn subscribe(&self, user_id: &UserId) -> Subscription {
        self.local.subscribe(user_id)
    }
}

/// Sends the wake-ups waiting for the stream head whenever it moves, for as long as `notifier`
/// lives. Needs a tokio runtime.
pub fn follow_stream_head(notifier: &Arc<ClusterNotifier>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    let mut head = notifier.store.watch_stream_head();
    let notifier = Arc::downgrade(notifier);
    runtime.spawn(async move {
        while head.changed().await.is_ok() {
            let pos = *head.borrow_and_update();
            let Some(notifier) = notifier.upgrade() else { return };
            notifier.local.head_moved(pos);
        }
    });
}

#[cfg(test)]
mod tests {
    use myelin_core::StreamPos;
    use ruma::user_id;

    use super::LocalNotifier;

    #[tokio::test]
    async fn a_wake_up_waits_for_the_head_to_reach_its_position() {
        let notifier = LocalNotifier::default();
        let mut alice = notifier.subscribe(user_id!("@alice:x"));
        let mut bob = notifier.subscribe(user_id!("@bob:x"));
        notifier.notify_users_at(&[user_id!("@alice:x").to_owned()], StreamPos(10), &|| StreamPos(10));
        notifier.notify_users_at(&[user_id!("@bob:x").to_owned()], StreamPos(12), &|| StreamPos(10));
        tokio::time::timeout(std::time::Duration::from_millis(100), alice.changed()).await.expect("alice woken");
        let early = tokio::time::timeout(std::time::Duration::from_millis(50), bob.changed()).await;
        assert!(early.is_err(), "bob's write is not visible yet");
        notifier.head_moved(StreamPos(11));
        let early = tokio::time::timeout(std::time::Duration::from_millis(50), bob.changed()).await;
        assert!(early.is_err(), "still not");
        notifier.head_moved(StreamPos(12));
        tokio::time::timeout(std::time::Duration::from_millis(100), bob.changed()).await.expect("bob woken");
    }
}
