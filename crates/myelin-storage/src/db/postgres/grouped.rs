//! Group commit for one kind of short relaxed write (PostgreSQL): the writes of one kind that
//! callers ask for while one transaction of that kind is on its way are written together by the
//! next one, one statement for all (the `flush` of the group). On SQLite the one writer thread
//! already commits what queued together.
//!
//! When one message wakes fifty sliding sync listeners, each stores its connection's new state.
//! Fifty transactions of one compare-and-swap each cost PostgreSQL fifty `BEGIN`s, `UPDATE`s and
//! `COMMIT`s; grouped, the first goes alone and the rest, queued while it was on its way, go in
//! one or two.
//!
//! A write asked for while nothing of its kind is on its way goes at once, from its caller (one
//! listener alone pays nothing for the grouping). Groups run in a task of their own, so a caller
//! that goes away (a client that hung up) takes no one else's write with it. Two writes of the same key never share a transaction: the
//! later one waits for the next, so each sees the other's outcome as it would one by one.

use std::{
    collections::HashSet,
    hash::Hash,
    sync::{Arc, Mutex},
};

use tokio::sync::oneshot;

use super::conn::PgPool;
use crate::{
    StorageError, StorageResult,
    db::{BoxFut, Conn},
};

/// Writes one transaction takes at most.
const MAX_GROUP: usize = 256;

/// A write that may be grouped: what two of the same key have in common.
pub(crate) trait GroupedWrite: Send + 'static {
    type Key: Hash + Eq + Clone;
    fn key(&self) -> &Self::Key;
}

/// Writes a group in one transaction: one outcome per write, in order. Its last statement
/// should carry the COMMIT (`Conn::query_then_commit`).
pub(crate) type Flush<I, O> = for<'c, 'x> fn(&'c mut Conn<'x>, Vec<I>) -> BoxFut<'c, StorageResult<Vec<O>>>;

/// The writes of one kind waiting for a transaction.
pub(crate) struct Grouped<I, O> {
    queue: Arc<Mutex<Queue<I, O>>>,
    flush: Flush<I, O>,
}

struct Queue<I, O> {
    waiting: Vec<(I, oneshot::Sender<StorageResult<O>>)>,
    /// A task is writing (and will take what waits when it is done).
    flushing: bool,
}

impl<I: GroupedWrite, O: Send + 'static> Grouped<I, O> {
    pub(crate) fn new(flush: Flush<I, O>) -> Self {
        Self { queue: Arc::new(Mutex::new(Queue { waiting: Vec::new(), flushing: false })), flush }
    }

    /// Writes `item`, with whatever else of its kind queues meanwhile; its outcome.
    pub(crate) async fn write(&self, pool: &Arc<PgPool>, item: I) -> StorageResult<O> {
        // Queued behind a write on its way, or (None) to go at once.
        let queued = {
            let mut queue = self.queue.lock().map_err(|_| StorageError::Task("grouped writes poisoned".into()))?;
            if queue.flushing {
                let (tx, rx) = oneshot::channel();
                queue.waiting.push((item, tx));
                Ok(rx)
            } else {
                queue.flushing = true;
                Err(item)
            }
        };
        let rx = match queued {
            Ok(rx) => rx,
            Err(item) => {
                // Nothing on its way: this write goes at once, from here (no task to wake, no
                // answer to pass back). What queues meanwhile is taken by a task when it is done,
                // or should this caller go away first.
                let _hand_over = HandOver { queue: &self.queue, pool, flush: self.flush };
                let flush = self.flush;
                let mut outcome = pool.transaction(true, move |c| flush(c, vec![item])).await?;
                return match (outcome.pop(), outcome.is_empty()) {
                    (Some(outcome), true) => Ok(outcome),
                    _ => Err(StorageError::Batch("a grouped write of 1 gave another number of outcomes".into())),
                };
            }
        };
        rx.await.map_err(|_| StorageError::WriterGone)?
    }
}

/// The end of a write made by its caller: what queued meanwhile goes to a task of its own.
struct HandOver<'a, I: GroupedWrite, O: Send + 'static> {
    queue: &'a Arc<Mutex<Queue<I, O>>>,
    pool: &'a Arc<PgPool>,
    flush: Flush<I, O>,
}

impl<I: GroupedWrite, O: Send + 'static> Drop for HandOver<'_, I, O> {
    fn drop(&mut self) {
        let Ok(mut queue) = self.queue.lock() else { return };
        if queue.waiting.is_empty() {
            queue.flushing = false;
        } else if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(flush_until_empty(self.queue.clone(), self.pool.clone(), self.flush));
        } else {
            // No runtime to write them with (shutting down): they are answered with an error.
            queue.flushing = false;
            queue.waiting.clear();
        }
    }
}

/// Writes what waits, group after group, until nothing does.
async fn flush_until_empty<I: GroupedWrite, O: Send + 'static>(
    queue: Arc<Mutex<Queue<I, O>>>,
    pool: Arc<PgPool>,
    flush: Flush<I, O>,
) {
    // Should this task end early (a panic, the runtime shutting down), what waits is answered
    // with an error and the next write starts a new task.
    let mut ended = Ended { queue: &queue, armed: true };
    loop {
        let group = {
            let Ok(mut waiting) = queue.lock() else { return };
            if waiting.waiting.is_empty() {
                // Under the lock: a write queued after this starts a task of its own.
                waiting.flushing = false;
                ended.armed = false;
                return;
            }
            take_group(&mut waiting.waiting)
        };
        let (items, callers): (Vec<I>, Vec<_>) = group.into_iter().unzip();
        let count = items.len();
        match pool.transaction(true, move |c| flush(c, items)).await {
            Ok(outcomes) if outcomes.len() == count => {
                for (caller, outcome) in callers.into_iter().zip(outcomes) {
                    let _ = caller.send(Ok(outcome));
                }
            }
            Ok(outcomes) => {
                let err = format!("a grouped write of {count} gave {} outcomes", outcomes.len());
                for caller in callers {
                    let _ = caller.send(Err(StorageError::Batch(err.clone())));
                }
            }
            Err(err) => {
                let err = err.to_string();
                for caller in callers {
                    let _ = caller.send(Err(StorageError::Batch(err.clone())));
                }
            }
        }
    }
}

/// Up to [`MAX_GROUP`] waiting writes, oldest first, no two of the same key (the later stays).
fn take_group<I: GroupedWrite, T>(waiting: &mut Vec<(I, T)>) -> Vec<(I, T)> {
    if waiting.len() <= 1 {
        return std::mem::take(waiting);
    }
    let mut group = Vec::new();
    let mut keys = HashSet::new();
    let mut kept = Vec::new();
    for (item, caller) in waiting.drain(..) {
        if group.len() < MAX_GROUP && keys.insert(item.key().clone()) {
            group.push((item, caller));
        } else {
            kept.push((item, caller));
        }
    }
    *waiting = kept;
    group
}

/// A flushing task that ended before the queue was empty: what still waits is answered with an
/// error (its callers' senders dropped) and the next write starts a task.
struct Ended<'a, I, O> {
    queue: &'a Mutex<Queue<I, O>>,
    armed: bool,
}

impl<I, O> Drop for Ended<'_, I, O> {
    fn drop(&mut self) {
        if self.armed
            && let Ok(mut queue) = self.queue.lock()
        {
            queue.flushing = false;
            queue.waiting.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{GroupedWrite, MAX_GROUP, take_group};

    struct Save(u32, &'static str);

    impl GroupedWrite for Save {
        type Key = u32;
        fn key(&self) -> &u32 {
            &self.0
        }
    }

    #[test]
    fn a_group_takes_each_key_once_oldest_first_and_leaves_the_rest_in_order() {
        let mut waiting: Vec<(Save, ())> =
            [(1, "a"), (2, "b"), (1, "c"), (3, "d"), (2, "e"), (1, "f")].map(|(k, v)| (Save(k, v), ())).into();
        let names = |group: &[(Save, ())]| group.iter().map(|(s, _)| s.1).collect::<Vec<_>>();
        assert_eq!(names(&take_group(&mut waiting)), ["a", "b", "d"]);
        assert_eq!(names(&waiting), ["c", "e", "f"]);
        assert_eq!(names(&take_group(&mut waiting)), ["c", "e"]);
        assert_eq!(names(&take_group(&mut waiting)), ["f"]);
        assert!(take_group(&mut waiting).is_empty());
    }

    #[test]
    fn a_group_is_bounded() {
        let mut waiting: Vec<(Save, ())> = (0..MAX_GROUP as u32 + 5).map(|k| (Save(k, "x"), ())).collect();
        assert_eq!(take_group(&mut waiting).len(), MAX_GROUP);
        assert_eq!(
            waiting.iter().map(|(s, _)| s.0).collect::<Vec<_>>(),
            (MAX_GROUP as u32..MAX_GROUP as u32 + 5).collect::<Vec<_>>()
        );
    }
}
