//! Stream positions handed out inside one write batch.
//!
//! SQLite has one writer: positions are a counter from the committed head, and the head moves
//! when the batch commits.
//!
//! PostgreSQL has one writer per process, writing side by side. A batch reserves a block of
//! positions (`postgres::Reserver`: one short transaction that moves `stream_head.pos` and records
//! the block in `stream_reservations`) and a further block if it runs out; its commit deletes its
//! reservations. The first block is asked for when the batch starts, on the reserver's own
//! connection, while the batch's first statements (a room's row, read and locked) run on the
//! writer's: the two round trips overlap. Readers stop below the lowest reservation still
//! recorded (`postgres::SAFE_HEAD`), so no reader passes a position that may still commit. Blocks
//! are never carried from one batch to the next: a batch reserves after every write queued before
//! it was acknowledged, so a write that follows another (a client's next request, an event built
//! on the previous one) always gets a higher position.

use std::sync::Arc;

use tokio::task::JoinHandle;

use super::{
    changes::{BatchChanges, Change},
    postgres::Reserver,
};
use crate::{StorageError, StorageResult, StreamPos};

/// A block of positions asked for and not yet answered: (first, last).
type PendingBlock = JoinHandle<StorageResult<(StreamPos, StreamPos)>>;

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
    /// PostgreSQL: the first block, asked for when the batch started.
    pending: Option<PendingBlock>,
    /// What kind of change each position carried (`super::changes`), per block: PostgreSQL's
    /// safe head can stop between two blocks of one batch (another process's block in between),
    /// so each block's marks must hold on their own. SQLite has one block.
    changes: Vec<BatchChanges>,
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
            pending: None,
            changes: vec![BatchChanges::default()],
        }
    }

    /// PostgreSQL: positions reserved through `reserver` for the writer whose database backend
    /// is `owner_pid`, `block` at a time. The first block is asked for now (needs a tokio
    /// runtime); [`settle`](Self::settle) before the batch ends.
    pub(crate) fn reserved(reserver: Arc<Reserver>, owner_pid: i64, block: i64) -> Self {
        let block = block.max(1);
        let asking = reserver.clone();
        let pending = tokio::spawn(async move { asking.reserve(block, owner_pid).await });
        Self {
            next: 1,
            end: 0,
            highest: None,
            reserver: Some((reserver, owner_pid)),
            block,
            pending: Some(pending),
            changes: Vec::new(),
        }
    }

    /// Waits for the block asked for at the start if no position took it (its positions stay
    /// unused: the commit deletes the reservation, and readers skip the gap).
    pub(crate) async fn settle(&mut self) {
        if let Some(pending) = self.pending.take()
            && let Err(err) = answer(pending).await
        {
            tracing::warn!(%err, "a reservation of stream positions failed");
        }
    }

    /// No reservation is still on its way.
    pub(crate) fn settled(&self) -> bool {
        self.pending.is_none()
    }

    /// Whether a reservation was asked for: every PostgreSQL batch asks for its first block when
    /// it starts (it may have been recorded even if its answer was lost), so its commit deletes
    /// this writer's reservations.
    pub(crate) fn asked_for_reservation(&self) -> bool {
        self.reserver.is_some()
    }

    /// The next position, higher than every one this batch handed out before, for a write of
    /// `change` (what readers asking "anything of this kind since my token" may skip depends on
    /// it: say [`Change::Any`] when unsure).
    pub async fn next(&mut self, change: Change) -> StorageResult<StreamPos> {
        if self.next > self.end
            && let Some((reserver, owner_pid)) = &self.reserver
        {
            let (low, high) = match self.pending.take() {
                Some(pending) => answer(pending).await?,
                None => reserver.reserve(self.block, *owner_pid).await?,
            };
            self.start_block(low, high);
        }
        let pos = StreamPos(self.next);
        self.next += 1;
        self.highest = Some(pos);
        if let Some(block) = self.changes.last_mut() {
            block.record(change, pos);
        }
        Ok(pos)
    }

    /// Goes on in a new block of positions, `low..=high`.
    fn start_block(&mut self, low: StreamPos, high: StreamPos) {
        self.next = low.get();
        self.end = high.get();
        self.changes.push(BatchChanges::default());
    }

    /// What kinds of change the batch's positions carried, block by block.
    pub(crate) fn changes(&self) -> &[BatchChanges] {
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

/// The answer to a reservation asked for earlier.
async fn answer(pending: PendingBlock) -> StorageResult<(StreamPos, StreamPos)> {
    pending.await.map_err(|err| StorageError::Task(format!("reservation task: {err}")))?
}

#[cfg(test)]
mod tests {
    use super::{Change, Positions};
    use crate::StreamPos;

    #[tokio::test]
    async fn each_block_keeps_the_marks_of_its_own_positions() {
        // A batch in two blocks with another writer's block (30..=39) between them: a head at 29
        // must find the first block's to-device message marked at or below it.
        let mut positions = Positions::after(StreamPos(0));
        positions.start_block(StreamPos(20), StreamPos(29));
        for _ in 20..30 {
            positions.next(Change::ToDevice).await.expect("position");
        }
        positions.start_block(StreamPos(40), StreamPos(49));
        assert_eq!(positions.next(Change::ToDevice).await.expect("position"), StreamPos(40));
        positions.next(Change::Message).await.expect("position");
        let blocks: Vec<Vec<(usize, i64)>> = positions.changes().iter().map(|b| b.marked().collect()).collect();
        assert_eq!(blocks, [vec![], vec![(1, 29)], vec![(1, 40)]]);
    }
}
