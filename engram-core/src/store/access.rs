//! Accesses recorded by recalls, held in memory until the next write transaction persists
//! them: reads stay read-only, and the durable statistics change only at a commit.

use foldhash::HashMap;
use parking_lot::Mutex;

/// Distinct episodes held at most; accesses to further episodes are dropped (and counted)
/// until a commit drains the log. About 32 MiB at the limit.
pub(crate) const MAX_PENDING: usize = 1 << 20;

/// Pending accesses: episode id → (newest access time, accesses).
#[derive(Default)]
pub(crate) struct AccessLog {
    pending: Mutex<HashMap<u64, (i64, u64)>>,
    dropped: std::sync::atomic::AtomicU64,
}

impl AccessLog {
    /// Records one access at clock time `at` to each episode in `ids`.
    pub(crate) fn record(&self, ids: impl IntoIterator<Item = u64>, at: i64) {
        let mut pending = self.pending.lock();
        for id in ids {
            let full = pending.len() >= MAX_PENDING;
            match pending.get_mut(&id) {
                Some((last, n)) => {
                    *last = (*last).max(at);
                    *n += 1;
                }
                None if full => {
                    self.dropped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                None => {
                    pending.insert(id, (at, 1));
                }
            }
        }
    }

    /// Takes every pending access, sorted by id (commit records list them in that order).
    pub(crate) fn take(&self) -> Vec<(u64, (i64, u64))> {
        let mut out: Vec<_> = std::mem::take(&mut *self.pending.lock())
            .into_iter()
            .collect();
        out.sort_unstable_by_key(|&(id, _)| id);
        out
    }

    /// Episodes with accesses waiting for a commit.
    pub(crate) fn pending(&self) -> u64 {
        self.pending.lock().len() as u64
    }

    /// Accesses dropped because the log was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}
