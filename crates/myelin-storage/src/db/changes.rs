//! What kind of news each stream position carried, as far as the readers that ask "what changed
//! since my token" need to know: for each kind, the highest position a write of that kind took.
//!
//! When a busy room's message wakes its listeners, each woken sync asks the same questions —
//! account data, to-device messages, device lists, receipts, presence, membership changes,
//! sticky events since its token — and almost always hears "nothing". A read for changes after
//! `since` of a kind whose mark is at or below `since` has nothing to find, and answers empty
//! without touching the database.
//!
//! Only exact where this process sees every write: SQLite, one writer thread (another process
//! writing the file — the admin CLI — marks every kind up to the head it left). PostgreSQL
//! processes write side by side and do not tell each other what kind their positions were, so
//! there every read runs.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::StreamPos;

/// What a stream write changed. A write takes its positions through
/// [`Positions::next`](super::Positions::next) with one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// An event that changes no state, is not sticky and brings no resolved state: only
    /// timelines, rooms' positions and notification counts move.
    Message,
    AccountData,
    ToDevice,
    /// A user's devices or keys changed (`device_list_changes`).
    DeviceList,
    Receipt,
    Presence,
    /// A room membership row moved (only ever marked through [`Change::Any`] today).
    Membership,
    /// A sticky event (only ever marked through [`Change::Any`] today).
    Sticky,
    /// Anything at all: state events, memberships, sticky events, outliers, federation's bulk
    /// writes. Marks every kind.
    Any,
}

impl Change {
    /// The kinds readers can ask about ([`may_have_changed`](super::Database::may_have_changed)),
    /// in mark order.
    pub const ASKED: [Change; 7] = [
        Change::AccountData,
        Change::ToDevice,
        Change::DeviceList,
        Change::Receipt,
        Change::Presence,
        Change::Membership,
        Change::Sticky,
    ];
}

fn slot(change: Change) -> Option<usize> {
    Change::ASKED.iter().position(|k| *k == change)
}

/// The highest position of each kind of change in one batch (local to the writer).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct BatchChanges([Option<i64>; Change::ASKED.len()]);

impl BatchChanges {
    pub(crate) fn record(&mut self, change: Change, pos: StreamPos) {
        let mut mark = |i: usize| self.0[i] = Some(self.0[i].map_or(pos.get(), |m| m.max(pos.get())));
        match change {
            Change::Message => {}
            Change::Any => (0..Change::ASKED.len()).for_each(&mut mark),
            kind => {
                if let Some(i) = slot(kind) {
                    mark(i);
                }
            }
        }
    }
}

/// The process's marks: for each kind, the highest position a committed (or failed: marks only
/// ever err towards "changed") write of that kind took.
pub(crate) struct ChangeMarks {
    marks: [AtomicI64; Change::ASKED.len()],
    /// Whether this process sees every write (SQLite).
    exact: bool,
}

impl ChangeMarks {
    /// Marks at `head`: anything up to it may have changed.
    pub(crate) fn new(head: StreamPos, exact: bool) -> Self {
        Self { marks: std::array::from_fn(|_| AtomicI64::new(head.get())), exact }
    }

    /// Takes a batch's marks. Called before the head moves past the batch, so a reader that
    /// sees the new head sees the marks too.
    pub(crate) fn apply(&self, batch: &BatchChanges) {
        for (mark, pos) in self.marks.iter().zip(batch.0) {
            if let Some(pos) = pos {
                mark.fetch_max(pos, Ordering::AcqRel);
            }
        }
    }

    /// Another writer took positions up to `pos`, of kinds unknown: every kind may have changed.
    pub(crate) fn everything_up_to(&self, pos: StreamPos) {
        for mark in &self.marks {
            mark.fetch_max(pos.get(), Ordering::AcqRel);
        }
    }

    /// Whether a write of `change` may have taken a position after `since`. `false` only when
    /// this process sees every write and none of that kind came after `since`.
    pub(crate) fn may_have_changed(&self, change: Change, since: StreamPos) -> bool {
        if !self.exact {
            return true;
        }
        match slot(change) {
            Some(i) => self.marks[i].load(Ordering::Acquire) > since.get(),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{BatchChanges, Change, ChangeMarks};
    use crate::StreamPos;

    #[test]
    fn a_kind_is_unchanged_only_past_its_last_write_and_any_marks_every_kind() {
        let marks = ChangeMarks::new(StreamPos(10), true);
        assert!(marks.may_have_changed(Change::Receipt, StreamPos(9)), "anything before the start may have");
        assert!(!marks.may_have_changed(Change::Receipt, StreamPos(10)));
        let mut batch = BatchChanges::default();
        batch.record(Change::Message, StreamPos(11));
        batch.record(Change::AccountData, StreamPos(12));
        marks.apply(&batch);
        assert!(!marks.may_have_changed(Change::Receipt, StreamPos(10)), "a message is no receipt");
        assert!(marks.may_have_changed(Change::AccountData, StreamPos(11)));
        assert!(!marks.may_have_changed(Change::AccountData, StreamPos(12)));
        let mut batch = BatchChanges::default();
        batch.record(Change::Any, StreamPos(13));
        marks.apply(&batch);
        for kind in [Change::Presence, Change::Membership, Change::Sticky, Change::ToDevice, Change::DeviceList] {
            assert!(marks.may_have_changed(kind, StreamPos(12)), "{kind:?} after Any");
        }
        marks.everything_up_to(StreamPos(20));
        assert!(marks.may_have_changed(Change::Receipt, StreamPos(19)));
        assert!(!marks.may_have_changed(Change::Receipt, StreamPos(20)));
        // What readers cannot ask about is always news.
        assert!(marks.may_have_changed(Change::Message, StreamPos(20)));
        assert!(marks.may_have_changed(Change::Any, StreamPos(20)));
    }

    #[test]
    fn without_every_write_in_sight_everything_may_have_changed() {
        let marks = ChangeMarks::new(StreamPos(10), false);
        assert!(marks.may_have_changed(Change::Receipt, StreamPos(100)));
    }
}
