//! The writer's queue of stored episodes with a time to live, soonest expiry first: what a
//! commit reaps from, so that reaping costs the episodes it deletes rather than a pass over
//! every id ever assigned (which grows without bound under a sliding time-to-live window).
//!
//! Not on disk: the first reap of a writer's life builds it with one pass over the episode
//! table, and each commit then adds the episodes it stored with a time to live. Entries of
//! episodes deleted another way (or dropped by compaction) stay until they surface, when
//! the table says they are gone, or until stale ones are the majority and are swept out.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::error::Result;
use crate::store::records::table;
use crate::store::snapshot::{ANY_TIME, Role, Version};

/// Entries beyond twice the live episodes (plus this slack) are swept out.
const SLACK: usize = 4096;

#[derive(Default)]
pub(crate) struct ExpiryQueue(BinaryHeap<Reverse<(i64, u64)>>);

impl ExpiryQueue {
    /// Every stored episode of `v` that has a time to live.
    pub(crate) fn scan(v: &Version) -> Result<ExpiryQueue> {
        let mut entries = Vec::new();
        for id in v.table_ids(Role::EpisodeTable) {
            if v.episode_entry(id, ANY_TIME)?.is_some() {
                let at = v.expires_at(id)?;
                if at != table::NEVER {
                    entries.push(Reverse((at, id)));
                }
            }
        }
        Ok(ExpiryQueue(BinaryHeap::from(entries)))
    }

    pub(crate) fn push(&mut self, id: u64, at: i64) {
        if at != table::NEVER {
            self.0.push(Reverse((at, id)));
        }
    }

    /// Removes and returns the next entry expiring at or before `now`, if any.
    pub(crate) fn pop_due(&mut self, now: i64) -> Option<(i64, u64)> {
        let &Reverse((at, _)) = self.0.peek()?;
        (at <= now).then(|| self.0.pop().expect("peeked").0)
    }

    /// The soonest expiry of an entry `stored` says is still there, dropping the ones
    /// before it that are gone; `table::NEVER` when none is.
    pub(crate) fn next(&mut self, stored: impl Fn(u64) -> Result<bool>) -> Result<i64> {
        while let Some(&Reverse((at, id))) = self.0.peek() {
            if stored(id)? {
                return Ok(at);
            }
            self.0.pop();
        }
        Ok(table::NEVER)
    }

    /// Drops the entries `stored` says are gone once they can outnumber those that are not:
    /// linear in the queue, at most once per as many deletions, so amortized constant.
    pub(crate) fn sweep(&mut self, live: u64, stored: impl Fn(u64) -> Result<bool>) -> Result<()> {
        if self.0.len() <= (live as usize).saturating_mul(2).saturating_add(SLACK) {
            return Ok(());
        }
        let mut kept = Vec::with_capacity(self.0.len());
        for e in std::mem::take(&mut self.0).into_vec() {
            if stored(e.0.1)? {
                kept.push(e);
            }
        }
        self.0 = BinaryHeap::from(kept);
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_due_entries_soonest_first_and_skips_gone_ones_for_the_next_expiry() {
        let mut q = ExpiryQueue::default();
        for (id, at) in [(1, 30), (2, 10), (3, 20), (4, table::NEVER), (5, 40)] {
            q.push(id, at);
        }
        assert_eq!(q.len(), 4, "a NEVER expiry is not queued");
        assert_eq!(q.pop_due(25), Some((10, 2)));
        assert_eq!(q.pop_due(25), Some((20, 3)));
        assert_eq!(q.pop_due(25), None);
        // Episode 1 was deleted another way: its entry is dropped on the way to 5's.
        assert_eq!(q.next(|id| Ok(id != 1)).unwrap(), 40);
        assert_eq!(q.len(), 1);
        assert_eq!(q.next(|_| Ok(false)).unwrap(), table::NEVER);
    }

    #[test]
    fn sweeping_keeps_stored_entries_once_gone_ones_can_be_the_majority() {
        let mut q = ExpiryQueue::default();
        let n = 3 * SLACK as u64;
        for id in 0..n {
            q.push(id, 1_000 + id as i64);
        }
        let stored = |id: u64| Ok(id.is_multiple_of(4));
        // Under the bound (live episodes could hold every entry): nothing read, nothing lost.
        q.sweep(n, |_| panic!("not swept under the bound")).unwrap();
        assert_eq!(q.len(), n as usize);
        q.sweep(n / 4, stored).unwrap();
        assert_eq!(q.len(), n as usize / 4);
        let mut due = Vec::new();
        while let Some((_, id)) = q.pop_due(i64::MAX) {
            due.push(id);
        }
        assert_eq!(due, (0..n).step_by(4).collect::<Vec<_>>());
    }
}
