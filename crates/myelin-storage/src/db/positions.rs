//! Stream positions handed out inside one write batch.
//!
//! SQLite has one writer: positions are a counter from the committed head, and the head moves
//! when the batch commits.
//!
//! PostgreSQL has one writer per process, writing side by side. A batch reserves a block of
//! positions (`postgres::Reserver`: one short transaction that moves `stream_head.pos` and records
//! the block in `stream_reservations`) the first time it needs one, and a further block if it runs
//! out; its commit deletes its reservations. Readers stop below the lowest reservation still
//! recorded (`postgres::SAFE_HEAD`), so no reader passes a position that may still commit. Blocks
//! are never carried from one batch to the next: a batch reserves after every write queued before
//! it was acknowledged, so a write that follows another (a client's next request, an event built
//! on the previous one) always gets a higher position.

use std::sync::Arc;

use super::{
    changes::{BatchChanges, Change},
    postgres::Reserver,
};
use crate::{StorageResult, StreamPos};

/// Positions of one batch.
pub struct Positions {
    next: i64,
    /// Last position of the current block (inclusive).
    end: i64,
    /// Highest position handed out, if any.
    highest: Option<StreamPos>,
    /// PostgreSQL: where blocks come from, and the writer's backend that owns them.
    reserver: Option<(Arc<Reserver>, i64)>,
    /// How many positions a PostgreSQL reservation asks for.
    block: i64,
    /// What kind of change each position carried (`super::changes`).
    changes: BatchChanges,
}

impl Positions {
    /// SQLite: positions after the committed head, without limit.
    pub(crate) fn after(head: StreamPos) -> Self {
        Self {
            next: head.get() + 1,
            end: i64::MAX,
            highest: None,
            reserver: None,
            block: 0,
            changes: BatchChanges::default(),
        }
    }

    /// PostgreSQL: positions reserved through `reserver` for the writer whose database backend
    /// is `owner_pid`, `block` at a time.
    pub(crate) fn reserved(reserver: Arc<Reserver>, owner_pid: i64, block: i64) -> Self {
        Self {
            next: 1,
            end: 0,
            highest: None,
            reserver: Some((reserver, owner_pid)),
            block: block.max(1),
            changes: BatchChanges::default(),
        }
    }

    /// The next position, higher than every one this batch handed out before, for a write of
    /// `change` (what readers asking "anything of this kind since my token" may skip depends on
    /// it: say [`Change::Any`] when unsure).
    pub async fn next(&mut self, change: Change) -> StorageResult<StreamPos> {
        if self.next > self.end
            && let Some((reserver, owner_pid)) = &self.reserver
        {
            let (low, high) = reserver.reserve(self.block, *owner_pid).await?;
            self.next = low.get();
            self.end = high.get();
        }
        let pos = StreamPos(self.next);
        self.next += 1;
        self.highest = Some(pos);
        self.changes.record(change, pos);
        Ok(pos)
    }

    /// What kinds of change the batch's positions carried.
    pub(crate) fn changes(&self) -> &BatchChanges {
        &self.changes
    }

    /// The highest position handed out, if any was.
    pub fn highest(&self) -> Option<StreamPos> {
        self.highest
    }

    /// Where an SQLite batch's head moves to: the last position handed out (or where it was).
    pub(crate) fn sqlite_head(&self, start: StreamPos) -> StreamPos {
        self.highest.unwrap_or(start)
    }
}
