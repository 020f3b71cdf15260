//! What this process keeps of access tokens' owners (PostgreSQL only; SQLite reads its file
//! in-process, faster than any bookkeeping).
//!
//! Every request starts with its access token. When one message wakes fifty listeners, their
//! next long-polls would each ask PostgreSQL who owns their token, fifty statements that give
//! the answers of a moment ago. An answer is kept here until what it depends on changes:
//!
//! - on this process, each repository method that deletes tokens or changes a user's admin,
//!   guest, deactivated or locked flag forgets the user's (or the token's) entries when it has
//!   committed, before it returns;
//! - for every process, triggers on `access_tokens` and `users` (migration 0038) NOTIFY
//!   `Signal::Invalidate { cache: "token_owners", key: user }` in the changing transaction, so
//!   the news goes out with its commit whoever wrote it (another process, the admin command, SQL
//!   by hand); [`follow_invalidations`] applies it. A lost link to the database's notifications
//!   (`Signal::Resync`) forgets everything.
//!
//! A read that raced with a forgetting is not kept (the epoch), and no answer is kept longer
//! than [`MAX_AGE`], should a notification ever be missed without a resync.

use std::{
    collections::HashMap,
    sync::{Mutex, Weak},
    time::{Duration, Instant},
};

use myelin_core::types::UserId;

use crate::{Signal, TokenOwner};

/// The cache's name in `Signal::Invalidate` (the triggers of migration 0038 spell it too).
pub const TOKEN_OWNERS_CACHE: &str = "token_owners";
/// Entries kept at most; past this the cache starts over.
const CAPACITY: usize = 100_000;
/// An answer is read again after this long, whatever the notifications said.
const MAX_AGE: Duration = Duration::from_secs(60);

#[derive(Default)]
pub(crate) struct TokenOwners {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    owners: HashMap<String, (TokenOwner, Instant)>,
    /// Moves on at every forgetting: a read begun before it is not kept.
    epoch: u64,
}

impl TokenOwners {
    pub(crate) fn get(&self, token: &str) -> Option<TokenOwner> {
        let inner = self.inner.lock().ok()?;
        let (owner, at) = inner.owners.get(token)?;
        (at.elapsed() < MAX_AGE).then(|| owner.clone())
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.inner.lock().map_or(u64::MAX, |inner| inner.epoch)
    }

    /// Keeps `owner` unless something was forgotten since `epoch` was taken.
    pub(crate) fn insert_if_current(&self, token: &str, owner: TokenOwner, epoch: u64) {
        let Ok(mut inner) = self.inner.lock() else { return };
        if inner.epoch != epoch {
            return;
        }
        if inner.owners.len() >= CAPACITY {
            inner.owners.clear();
        }
        inner.owners.insert(token.to_owned(), (owner, Instant::now()));
    }

    pub(crate) fn forget_user(&self, user: &UserId) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.epoch += 1;
            inner.owners.retain(|_, (owner, _)| owner.user_id != user);
        }
    }

    pub(crate) fn forget_token(&self, token: &str) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.epoch += 1;
            inner.owners.remove(token);
        }
    }

    pub(crate) fn forget_all(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.epoch += 1;
            inner.owners.clear();
        }
    }
}

/// Applies the database's notifications about token owners for as long as `owners` lives.
pub(crate) async fn follow_invalidations(
    owners: Weak<TokenOwners>,
    mut signals: tokio::sync::broadcast::Receiver<Signal>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let signal = signals.recv().await;
        let Some(owners) = owners.upgrade() else { return };
        match signal {
            Ok(Signal::Invalidate { cache, key }) if cache == TOKEN_OWNERS_CACHE => {
                match <&UserId>::try_from(key.as_str()) {
                    Ok(user) => owners.forget_user(user),
                    Err(_) => owners.forget_all(),
                }
            }
            Ok(Signal::Resync) | Err(RecvError::Lagged(_)) => owners.forget_all(),
            Ok(_) => {}
            Err(RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use myelin_core::types::{OwnedDeviceId, OwnedUserId};

    use super::TokenOwners;
    use crate::TokenOwner;

    fn owner(user: &str) -> TokenOwner {
        TokenOwner {
            user_id: OwnedUserId::try_from(user).expect("user"),
            device_id: OwnedDeviceId::from("D"),
            expires_ms: None,
            is_admin: false,
            is_guest: false,
            deactivated: false,
            locked: false,
        }
    }

    #[test]
    fn a_read_that_raced_with_a_forgetting_is_not_kept() {
        let owners = TokenOwners::default();
        let epoch = owners.epoch();
        owners.forget_user(&OwnedUserId::try_from("@b:test").expect("user"));
        owners.insert_if_current("t1", owner("@a:test"), epoch);
        assert!(owners.get("t1").is_none(), "read before @b was forgotten: maybe stale");
        owners.insert_if_current("t1", owner("@a:test"), owners.epoch());
        assert!(owners.get("t1").is_some());
    }

    #[test]
    fn forgetting_a_user_forgets_each_of_their_tokens_only() {
        let owners = TokenOwners::default();
        for (token, user) in [("a1", "@a:test"), ("a2", "@a:test"), ("b1", "@b:test")] {
            owners.insert_if_current(token, owner(user), owners.epoch());
        }
        owners.forget_user(&OwnedUserId::try_from("@a:test").expect("user"));
        assert!(owners.get("a1").is_none() && owners.get("a2").is_none());
        assert!(owners.get("b1").is_some());
        owners.forget_token("b1");
        assert!(owners.get("b1").is_none());
        owners.insert_if_current("b2", owner("@b:test"), owners.epoch());
        owners.forget_all();
        assert!(owners.get("b2").is_none());
    }
}
