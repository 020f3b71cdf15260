//! Named locks local to this process. They order work inside one process and save it from
//! doing the same thing twice; none of them is what keeps the data right across processes.
//!
//! - A room's lock: its events are built one at a time, in order. Across processes the database
//!   decides: the persist locks the room's row and checks the event still extends the room's
//!   current extremities, else the event is rebuilt (`rooms/send.rs`).
//! - A (user, device, transaction id) lock while a send is in flight. Across processes the
//!   persist's transaction-id check answers a repeat with the first event.
//!
//! What must hold across processes is a PostgreSQL lock taken inside the write's transaction:
//! a row lock (`FOR UPDATE`) or an advisory lock (`Conn::lock_until_commit`: key uploads per
//! device, a user's dehydrated device, filters, key backup versions), or a compare-and-swap
//! (push rules, sliding sync connections). ARCHITECTURE.md lists them.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

#[derive(Default)]
pub struct KeyedLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl KeyedLocks {
    pub async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = match self.locks.lock() {
                Ok(l) => l,
                Err(poisoned) => poisoned.into_inner(),
            };
            if locks.len() > 10_000 {
                locks.retain(|_, l| Arc::strong_count(l) > 1);
            }
            locks.entry(key.to_owned()).or_default().clone()
        };
        lock.lock_owned().await
    }
}
