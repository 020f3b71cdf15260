//! What kind of news each stream position carried, as far as the readers that ask "what changed
//! since my token" need to know: for each kind, the highest position a write of that kind took.
//!
//! When a busy room's message wakes its listeners, each woken sync asks the same questions —
//! account data, to-device messages, device lists, receipts, presence, membership changes,
//! sticky events since its token — and almost always hears "nothing". A read for changes after
//! `since` of a kind whose mark is at or below `since` has nothing to find, and answers empty
//! without touching the database.
//!
//! Every process keeps the marks of every write, its own and the others':
//! - SQLite has one writer thread, which applies its batch's marks before the head moves past
//!   them. Another process writing the file (the admin CLI) marks every kind up to the head it
//!   left.
//! - PostgreSQL processes write side by side. Each write batch records, in its own transaction,
//!   the highest position of each kind it took (table `stream_changes`: one row per kind it
//!   changed). Every statement that reads the safe head also reads, in the same snapshot, each
//!   kind's highest position at or below it ([`HeadMarks`]); a process takes those marks before
//!   it moves its head there, whichever way it heard of the head (its own commit, another's
//!   NOTIFY, which carries them, the keeper, a refresh). The keeper prunes rows below each
//!   kind's newest one under the safe head.

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
    /// in mark order. A kind's index here is its number in PostgreSQL's `stream_changes.kind`:
    /// append new kinds (with a migration giving them a row at the head), never reorder.
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
    /// Each kind the batch changed (its index in [`Change::ASKED`]) and its highest position.
    pub(crate) fn marked(&self) -> impl Iterator<Item = (usize, i64)> + '_ {
        self.0.iter().enumerate().filter_map(|(kind, pos)| Some((kind, (*pos)?)))
    }

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

/// What the database says of the positions up to a safe head (PostgreSQL), read in the same
/// snapshot as the head: for each kind in [`Change::ASKED`] order, the highest position at or
/// below the head that carried it (`None`: no row, so anything up to the head may have).
pub(crate) type HeadMarks = [Option<i64>; Change::ASKED.len()];

/// The process's marks: for each kind, the highest position a committed (or failed: marks only
/// ever err towards "changed") write of that kind took, for every position up to the head.
pub(crate) struct ChangeMarks {
    marks: [AtomicI64; Change::ASKED.len()],
}

impl ChangeMarks {
    /// Marks at `head`: anything up to it may have changed.
    pub(crate) fn new(head: StreamPos) -> Self {
        Self { marks: std::array::from_fn(|_| AtomicI64::new(head.get())) }
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

    /// Takes what the database says of the positions up to `head` (PostgreSQL). Called before
    /// the head moves there. `None` (a head heard of without marks, from a process that does not
    /// send them) marks every kind.
    pub(crate) fn learn(&self, head: StreamPos, marks: Option<&HeadMarks>) {
        let Some(marks) = marks else {
            self.everything_up_to(head);
            return;
        };
        for (mark, pos) in self.marks.iter().zip(marks) {
            // Nothing recorded at or below the head (the rows start at the head of the upgrade
            // that added them, so this should not happen): anything may have changed.
            let pos = pos.unwrap_or(head.get()).min(head.get());
            mark.fetch_max(pos, Ordering::AcqRel);
        }
    }

    /// Whether a write of `change` may have taken a position after `since` (and at or before the
    /// head): `false` only when none of that kind did.
    pub(crate) fn may_have_changed(&self, change: Change, since: StreamPos) -> bool {
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
        let marks = ChangeMarks::new(StreamPos(10));
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
    fn a_head_heard_of_brings_each_kind_to_its_last_position_at_or_below_it() {
        let marks = ChangeMarks::new(StreamPos(10));
        // Receipts last at 12, presence at 15, to-device never since the rows began.
        let mut heard = [Some(3); Change::ASKED.len()];
        heard[3] = Some(12);
        heard[4] = Some(15);
        heard[1] = None;
        marks.learn(StreamPos(20), Some(&heard));
        assert!(marks.may_have_changed(Change::Receipt, StreamPos(11)));
        assert!(!marks.may_have_changed(Change::Receipt, StreamPos(12)));
        assert!(!marks.may_have_changed(Change::Presence, StreamPos(15)));
        assert!(!marks.may_have_changed(Change::AccountData, StreamPos(10)), "3 is below the start's 10");
        assert!(marks.may_have_changed(Change::AccountData, StreamPos(9)), "the start still counts");
        assert!(marks.may_have_changed(Change::ToDevice, StreamPos(19)), "no row: anything up to the head");
        assert!(!marks.may_have_changed(Change::ToDevice, StreamPos(20)));
        // An older head heard late (out of order) takes nothing back.
        marks.learn(StreamPos(14), Some(&[Some(1); Change::ASKED.len()]));
        assert!(marks.may_have_changed(Change::Presence, StreamPos(14)));
        // A head heard of without marks: every kind up to it.
        marks.learn(StreamPos(30), None);
        assert!(marks.may_have_changed(Change::Receipt, StreamPos(29)));
        assert!(!marks.may_have_changed(Change::Receipt, StreamPos(30)));
    }

    #[test]
    fn a_batch_lists_each_kind_it_changed_once_at_its_highest_position() {
        let mut batch = BatchChanges::default();
        batch.record(Change::Receipt, StreamPos(5));
        batch.record(Change::Message, StreamPos(6));
        batch.record(Change::Receipt, StreamPos(7));
        batch.record(Change::ToDevice, StreamPos(8));
        assert_eq!(batch.marked().collect::<Vec<_>>(), [(1, 8), (3, 7)]);
        let mut any = BatchChanges::default();
        any.record(Change::Any, StreamPos(9));
        assert_eq!(any.marked().count(), Change::ASKED.len());
    }
}
