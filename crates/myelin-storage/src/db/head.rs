//! The stream head of one process: the highest position its readers may look at, with the
//! change marks that must cover every position up to it before it moves there.

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

use super::changes;
use crate::StreamPos;

/// The highest stream position readers may look at: every position at or below it is committed
/// or will never be. Watchers learn when it moves.
pub(crate) struct StreamHead {
    tx: tokio::sync::watch::Sender<StreamPos>,
    /// The highest position a committed write of this process took.
    written: AtomicI64,
    /// What kind of change positions up to the head carried (`changes.rs`).
    changes: changes::ChangeMarks,
}

impl StreamHead {
    pub(crate) fn new(pos: StreamPos) -> Arc<Self> {
        Arc::new(Self {
            tx: tokio::sync::watch::channel(pos).0,
            written: AtomicI64::new(pos.get()),
            changes: changes::ChangeMarks::new(pos),
        })
    }

    /// Whether a write of `change` may have taken a position after `since`, up to the head.
    pub(crate) fn may_have_changed(&self, change: changes::Change, since: StreamPos) -> bool {
        self.changes.may_have_changed(change, since)
    }

    /// Another writer took positions up to `pos`, of kinds unknown (SQLite: the admin CLI), and
    /// the head will move past them later: every kind may have changed up to `pos`.
    pub(crate) fn others_wrote_up_to(&self, pos: StreamPos) {
        self.changes.everything_up_to(pos);
    }

    /// Records that a write of this process took positions up to `pos` and committed.
    pub(crate) fn wrote(&self, pos: StreamPos) {
        self.written.fetch_max(pos.get(), Ordering::AcqRel);
    }

    pub(crate) fn written(&self) -> StreamPos {
        StreamPos(self.written.load(Ordering::Acquire))
    }

    pub(crate) fn get(&self) -> StreamPos {
        *self.tx.borrow()
    }

    /// Moves the head past a batch of this process's writer (SQLite), taking the batch's change
    /// marks first.
    pub(crate) fn advance_past(&self, batch: &[changes::BatchChanges], pos: StreamPos) -> StreamPos {
        for block in batch {
            self.changes.apply(block);
        }
        self.advance(pos)
    }

    /// Moves the head to `pos`, taking first what is known of the kinds of change up to it: the
    /// marks read with a PostgreSQL safe head, or `None` (another writer of unknown kinds: every
    /// kind may have changed). Returns the head after.
    pub(crate) fn advance_learning(&self, pos: StreamPos, marks: Option<&changes::HeadMarks>) -> StreamPos {
        self.changes.learn(pos, marks);
        self.advance(pos)
    }

    /// Moves the head up to `pos` (never down); returns the head after. Private to this module:
    /// the change marks must cover every position up to `pos` first, which the two ways above see
    /// to.
    fn advance(&self, pos: StreamPos) -> StreamPos {
        let mut now = pos;
        self.tx.send_if_modified(|head| {
            if pos > *head {
                *head = pos;
                true
            } else {
                now = *head;
                false
            }
        });
        now
    }

    pub(crate) fn watch(&self) -> tokio::sync::watch::Receiver<StreamPos> {
        self.tx.subscribe()
    }
}
