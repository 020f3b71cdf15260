//! What a PostgreSQL process keeps of two per-user reads that every busy sync repeats, while the
//! database says nothing changed (SQLite reads its file in-process, faster than any bookkeeping):
//!
//! - **Who owns an access token** (`token_owners`): every request starts with its token. When one
//!   message wakes fifty listeners, their next long-polls would each ask PostgreSQL who owns their
//!   token, fifty statements that give the answers of a moment ago.
//! - **A device's one-time and fallback key counts** (`key_counts`): every `/sync` answer carries
//!   them, so each woken listener would read them again.
//!
//! An answer is kept until what it depends on changes:
//!
//! - on this process, each repository method that changes it (deletes tokens, changes a user's
//!   admin, guest, deactivated or locked flag; uploads, claims or deletes keys) forgets the user's
//!   entries when it ends, before it returns ([`TokenOwnersChanged`], [`KeyCountsChanged`]);
//! - token owners, for every process: triggers on `access_tokens` and `users` (migration 0038)
//!   NOTIFY `Signal::Invalidate { cache, key: user }` in the changing transaction, so the news
//!   goes out with its commit whoever wrote it (another process, the admin command, SQL by hand);
//! - key counts, for the other processes: the method that changed them sends one
//!   `Signal::Invalidate` naming every user it touched through the bus when it ends. (A trigger
//!   per key would cost a claim of 500 devices' keys 500 notifications; a count a moment stale is
//!   a hint to upload keys a moment late, not a door left open.)
//!
//! [`follow_invalidations`] applies what the others send. A lost link to the database's
//! notifications (`Signal::Resync`) forgets everything.
//!
//! A read that raced with a forgetting is not kept (the epoch), and no answer is kept longer
//! than [`MAX_AGE`], should a notification ever be missed without a resync.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Mutex, Weak},
    time::{Duration, Instant},
};

use myelin_core::types::{OwnedUserId, UserId};

use crate::{Database, KeyCounts, Signal, StorageResult, TokenOwner};

/// The caches' names in `Signal::Invalidate` (the triggers of migration 0038 spell them too).
pub const TOKEN_OWNERS_CACHE: &str = "token_owners";
pub const KEY_COUNTS_CACHE: &str = "key_counts";
/// Entries kept at most per cache; past this the cache starts over.
const CAPACITY: usize = 100_000;
/// An answer is read again after this long, whatever the notifications said.
const MAX_AGE: Duration = Duration::from_secs(60);

/// The two caches, kept together (one follower applies the notifications of both).
#[derive(Default)]
pub(crate) struct Notified {
    /// Access token → its owner.
    pub(crate) token_owners: PerUserCache<TokenOwner>,
    /// `user_id` NUL `device_id` → the device's key counts.
    pub(crate) key_counts: PerUserCache<KeyCounts>,
}

/// The key of a device in [`Notified::key_counts`].
pub(crate) fn device_key(user: &UserId, device: &str) -> String {
    format!("{user}\u{0}{device}")
}

/// Answers keyed by a string, each belonging to one user, forgotten by user.
pub(crate) struct PerUserCache<V> {
    inner: Mutex<Inner<V>>,
}

struct Inner<V> {
    entries: HashMap<String, (V, OwnedUserId, Instant)>,
    /// Each user's keys in `entries` (and perhaps some no longer there), so that forgetting a
    /// user costs their entries, not a look at every entry.
    by_user: HashMap<OwnedUserId, Vec<String>>,
    /// Moves on at every forgetting: a read begun before it is not kept.
    epoch: u64,
}

impl<V> Default for PerUserCache<V> {
    fn default() -> Self {
        Self { inner: Mutex::new(Inner { entries: HashMap::new(), by_user: HashMap::new(), epoch: 0 }) }
    }
}

impl<V: Clone> PerUserCache<V> {
    pub(crate) fn get(&self, key: &str) -> Option<V> {
        let inner = self.inner.lock().ok()?;
        let (value, _, at) = inner.entries.get(key)?;
        (at.elapsed() < MAX_AGE).then(|| value.clone())
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.inner.lock().map_or(u64::MAX, |inner| inner.epoch)
    }

    /// `key`'s kept answer, or what `read` finds, then kept (as `user_of` the answer's) unless
    /// something was forgotten while it read. With `keep` false (SQLite, where reads are local)
    /// it reads every time and keeps nothing.
    pub(crate) async fn get_or_read<Fut>(
        &self,
        keep: bool,
        key: &str,
        user_of: impl Fn(&V) -> OwnedUserId,
        read: impl FnOnce() -> Fut,
    ) -> StorageResult<Option<V>>
    where
        Fut: Future<Output = StorageResult<Option<V>>>,
    {
        if keep && let Some(value) = self.get(key) {
            return Ok(Some(value));
        }
        let epoch = self.epoch();
        let value = read().await?;
        if keep && let Some(value) = &value {
            self.insert_if_current(key, &user_of(value), value.clone(), epoch);
        }
        Ok(value)
    }

    /// Keeps `value` (of `user`) unless something was forgotten since `epoch` was taken.
    pub(crate) fn insert_if_current(&self, key: &str, user: &UserId, value: V, epoch: u64) {
        let Ok(mut inner) = self.inner.lock() else { return };
        if inner.epoch != epoch {
            return;
        }
        if inner.entries.len() >= CAPACITY {
            inner.entries.clear();
            inner.by_user.clear();
        }
        let known = inner.entries.insert(key.to_owned(), (value, user.to_owned(), Instant::now()));
        if known.is_none_or(|(_, owner, _)| owner != user) {
            inner.by_user.entry(user.to_owned()).or_default().push(key.to_owned());
        }
    }
}

impl<V> PerUserCache<V> {
    pub(crate) fn forget_user(&self, user: &UserId) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.epoch += 1;
            for key in inner.by_user.remove(user).unwrap_or_default() {
                if inner.entries.get(&key).is_some_and(|(_, owner, _)| owner == user) {
                    inner.entries.remove(&key);
                }
            }
        }
    }

    pub(crate) fn forget_key(&self, key: &str) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.epoch += 1;
            if let Some((_, owner, _)) = inner.entries.remove(key)
                && let Some(keys) = inner.by_user.get_mut(&owner)
            {
                keys.retain(|k| k != key);
                if keys.is_empty() {
                    inner.by_user.remove(&owner);
                }
            }
        }
    }

    pub(crate) fn forget_all(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.epoch += 1;
            inner.entries.clear();
            inner.by_user.clear();
        }
    }
}

/// The user's tokens were deleted, or their admin, guest, deactivated or locked flag changed (or
/// may have): when dropped, at the end of the repository method that changed them however it ends
/// (an error or a dropped future may still have committed), forgets their token owners here.
/// Other processes hear of it from the database's triggers.
pub(crate) struct TokenOwnersChanged<'a>(pub(crate) &'a Database, pub(crate) &'a UserId);

impl Drop for TokenOwnersChanged<'_> {
    fn drop(&mut self) {
        self.0.notified.token_owners.forget_user(self.1);
    }
}

/// Devices of the user went (with their tokens and keys): both of the above, when dropped.
pub(crate) struct DevicesChanged<'a> {
    _tokens: TokenOwnersChanged<'a>,
    _keys: KeyCountsChanged<'a>,
}

impl<'a> DevicesChanged<'a> {
    pub(crate) fn of(db: &'a Database, user: &'a UserId) -> Self {
        Self { _tokens: TokenOwnersChanged(db, user), _keys: KeyCountsChanged::user(db, user) }
    }
}

/// The key counts of these users' devices changed (or may have): when dropped, at the end of the
/// repository method that changed them however it ends, forgets them here and tells the other
/// processes in one signal.
pub(crate) struct KeyCountsChanged<'a>(pub(crate) &'a Database, pub(crate) Vec<OwnedUserId>);

impl<'a> KeyCountsChanged<'a> {
    pub(crate) fn user(db: &'a Database, user: &UserId) -> Self {
        Self(db, vec![user.to_owned()])
    }
}

impl Drop for KeyCountsChanged<'_> {
    fn drop(&mut self) {
        for user in &self.1 {
            self.0.notified.key_counts.forget_user(user);
        }
        let key = users_key(&self.1);
        self.0.broadcast_signal(Signal::Invalidate { cache: KEY_COUNTS_CACHE.to_owned(), key });
    }
}

/// Users as one signal's key: one per line, or empty (everyone) when they would not fit in one
/// notification.
fn users_key(users: &[OwnedUserId]) -> String {
    let key = users.iter().map(|u| u.as_str()).collect::<Vec<_>>().join("\n");
    if key.len() <= 6_000 { key } else { String::new() }
}

/// Applies the database's notifications about both caches for as long as `notified` lives.
pub(crate) async fn follow_invalidations(
    notified: Weak<Notified>,
    mut signals: tokio::sync::broadcast::Receiver<Signal>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let signal = signals.recv().await;
        let Some(notified) = notified.upgrade() else { return };
        match signal {
            Ok(Signal::Invalidate { cache, key }) => {
                if cache == TOKEN_OWNERS_CACHE {
                    forget(&notified.token_owners, &key);
                } else if cache == KEY_COUNTS_CACHE {
                    forget(&notified.key_counts, &key);
                }
            }
            Ok(Signal::Resync) | Err(RecvError::Lagged(_)) => {
                notified.token_owners.forget_all();
                notified.key_counts.forget_all();
            }
            Ok(_) => {}
            Err(RecvError::Closed) => return,
        }
    }
}

/// Forgets the entries of the users a signal names, one per line (everything when it names none
/// or one that is no user id).
fn forget<V>(cache: &PerUserCache<V>, key: &str) {
    let users: Option<Vec<&UserId>> = key.split('\n').map(|user| <&UserId>::try_from(user).ok()).collect();
    match users {
        Some(users) if !key.is_empty() => users.into_iter().for_each(|user| cache.forget_user(user)),
        _ => cache.forget_all(),
    }
}

#[cfg(test)]
mod tests {
    use myelin_core::types::{OwnedDeviceId, OwnedUserId};

    use super::PerUserCache;
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
        let owners = PerUserCache::default();
        let epoch = owners.epoch();
        owners.forget_user(&OwnedUserId::try_from("@b:test").expect("user"));
        insert(&owners, "t1", "@a:test", epoch);
        assert!(owners.get("t1").is_none(), "read before @b was forgotten: maybe stale");
        insert(&owners, "t1", "@a:test", owners.epoch());
        assert!(owners.get("t1").is_some());
    }

    fn insert(owners: &PerUserCache<TokenOwner>, token: &str, user: &str, epoch: u64) {
        let value = owner(user);
        owners.insert_if_current(token, &value.user_id.clone(), value, epoch);
    }

    #[test]
    fn a_signal_names_users_one_per_line_or_everyone() {
        let owners = PerUserCache::default();
        for (token, user) in [("a1", "@a:test"), ("b1", "@b:test"), ("c1", "@c:test")] {
            insert(&owners, token, user, owners.epoch());
        }
        let users = [OwnedUserId::try_from("@a:test").expect("user"), OwnedUserId::try_from("@b:test").expect("user")];
        super::forget(&owners, &super::users_key(&users));
        assert!(owners.get("a1").is_none() && owners.get("b1").is_none());
        assert!(owners.get("c1").is_some());
        let many: Vec<OwnedUserId> =
            (0..1_000).map(|i| OwnedUserId::try_from(format!("@user{i}:test")).expect("user")).collect();
        assert_eq!(super::users_key(&many), "", "too long for one notification: everyone");
        super::forget(&owners, "not a user id");
        assert!(owners.get("c1").is_none());
    }

    #[test]
    fn forgetting_a_user_forgets_each_of_their_tokens_only() {
        let owners = PerUserCache::default();
        for (token, user) in [("a1", "@a:test"), ("a2", "@a:test"), ("b1", "@b:test")] {
            insert(&owners, token, user, owners.epoch());
        }
        owners.forget_user(&OwnedUserId::try_from("@a:test").expect("user"));
        assert!(owners.get("a1").is_none() && owners.get("a2").is_none());
        assert!(owners.get("b1").is_some());
        // A key kept again for another user is that user's only.
        insert(&owners, "b1", "@c:test", owners.epoch());
        owners.forget_user(&OwnedUserId::try_from("@b:test").expect("user"));
        assert!(owners.get("b1").is_some(), "now @c's");
        owners.forget_key("b1");
        assert!(owners.get("b1").is_none());
        insert(&owners, "b2", "@b:test", owners.epoch());
        owners.forget_all();
        assert!(owners.get("b2").is_none());
    }
}
