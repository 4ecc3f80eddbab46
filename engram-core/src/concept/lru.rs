//! A sharded LRU whose entries carry the first commit they are valid for, so one cache
//! serves snapshots of different versions without ever answering from the wrong one.
//!
//! Two refinements over a plain LRU, each measured in `docs/benchmarks.md`: a hit moves its
//! entry to the front only once it has drifted into the older part of the list (relinking
//! on every hit costs two cache misses on the neighbours), and a full shard admits a new
//! entry only if it is asked for at least as often as the entry it would evict (TinyLFU's
//! frequency sketch), so a burst of one-off lookups cannot flush the hot set.

use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use foldhash::fast::FixedState;
use lru::LruCache;
use parking_lot::Mutex;

/// Keys choose their shard with a hash independent of the one inside each shard's map.
pub(crate) trait ShardKey: Hash + Eq + Copy {
    fn spread(&self) -> u64;
}

impl ShardKey for u64 {
    fn spread(&self) -> u64 {
        self.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

impl ShardKey for (u64, u64) {
    fn spread(&self) -> u64 {
        (self.0 ^ self.1.rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

struct Entry<V> {
    value: V,
    /// The first commit whose snapshots see `value`; valid until the writer removes it.
    valid_from: u64,
    bytes: usize,
    /// The shard's clock when the entry last moved to the front.
    touched: u64,
}

/// One lock's worth of the cache, on its own cache line.
type Locked<K, V> = CachePadded<Mutex<Shard<K, V>>>;

struct Shard<K, V> {
    lru: LruCache<K, Entry<V>, FixedState>,
    bytes: usize,
    counters: Counters,
    /// Lookups and inserts so far: the age of an entry is `clock - touched`.
    clock: u64,
    sketch: Sketch,
}

/// Approximate counts of recent requests per key: a count-min sketch of one-byte counters
/// (16 per cached entry) saturating at 15, all halved every `10 × capacity` requests so old
/// popularity fades. A key's four counters share one 64-byte block, so counting a request
/// costs one cache miss, not four.
struct Sketch {
    blocks: Box<[[u8; 64]]>,
    shift: u32,
    samples: usize,
    period: usize,
}

impl Sketch {
    fn new(capacity: usize) -> Self {
        let blocks = (capacity * 16 / 64).next_power_of_two().max(64);
        Sketch {
            blocks: vec![[0; 64]; blocks].into_boxed_slice(),
            shift: 64 - blocks.trailing_zeros(),
            samples: 0,
            period: capacity.max(1) * 10,
        }
    }

    /// The block and the key's four counters in it (one per 16-byte quarter).
    fn slots(&self, spread: u64) -> (usize, [usize; 4]) {
        // SplitMix64's finalizer, so that key 0 and small keys spread too.
        let mut z = spread.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let block = (z >> self.shift) as usize;
        (
            block,
            [0, 1, 2, 3].map(|i| i * 16 + ((z >> (i * 4)) & 15) as usize),
        )
    }

    fn record(&mut self, spread: u64) {
        let (b, slots) = self.slots(spread);
        let block = &mut self.blocks[b];
        for i in slots {
            block[i] = (block[i] + 1).min(15);
        }
        self.samples += 1;
        if self.samples == self.period {
            self.blocks.iter_mut().flatten().for_each(|c| *c /= 2);
            self.samples /= 2;
        }
    }

    fn estimate(&self, spread: u64) -> u8 {
        let (b, slots) = self.slots(spread);
        slots
            .into_iter()
            .map(|i| self.blocks[b][i])
            .min()
            .unwrap_or(0)
    }
}

/// What the cache has done since the handle opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    /// New entries a full shard turned away as less popular than its LRU entry.
    pub rejections: u64,
    pub entries: u64,
    pub bytes: u64,
}

impl Counters {
    fn add(&mut self, o: &Counters) {
        self.hits += o.hits;
        self.misses += o.misses;
        self.evictions += o.evictions;
        self.rejections += o.rejections;
        self.entries += o.entries;
        self.bytes += o.bytes;
    }
}

/// Coherence: `get(k, S)` answers only from an entry with `valid_from <= S`; the writer
/// removes an entry (under its shard lock) after announcing its commit in `committing` and
/// before publishing it; `insert` from a snapshot S is dropped unless `committing <= S`,
/// read under the shard lock. So an entry is never older than a commit that changed it: a
/// writer's removal either follows the insert (and removes it) or precedes it (and then
/// the inserter sees the newer `committing` and gives up).
pub(crate) struct VersionedLru<K, V> {
    shards: Box<[Locked<K, V>]>,
    shift: u32,
}

impl<K: ShardKey, V: Clone> VersionedLru<K, V> {
    /// A cache of at most `capacity` entries (0: disabled), split in shards so concurrent
    /// lookups rarely meet on one lock.
    pub(crate) fn new(capacity: usize) -> Self {
        // Up to 64 shards, each holding at least 64 entries, so that hash imbalance between
        // shards does not change which entries an LRU of this size keeps.
        let shards = (capacity / 64).clamp(1, 64).next_power_of_two().min(64);
        let per_shard = capacity.div_ceil(shards);
        let shards: Box<[_]> = (0..shards)
            .map(|_| {
                let lru = match NonZeroUsize::new(per_shard) {
                    Some(cap) => LruCache::with_hasher(cap, FixedState::default()),
                    None => LruCache::with_hasher(NonZeroUsize::MIN, FixedState::default()),
                };
                CachePadded::new(Mutex::new(Shard {
                    lru,
                    bytes: 0,
                    counters: Counters::default(),
                    clock: 0,
                    sketch: Sketch::new(per_shard),
                }))
            })
            .collect();
        let shift = 64 - shards.len().trailing_zeros();
        VersionedLru {
            shards: if capacity == 0 { Box::new([]) } else { shards },
            shift,
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        !self.shards.is_empty()
    }

    fn shard(&self, key: &K) -> &Mutex<Shard<K, V>> {
        // The top bits of the spread: `shift` is 64 for one shard, where `checked_shr` gives 0.
        let i = key.spread().checked_shr(self.shift).unwrap_or(0) as usize;
        &self.shards[i]
    }

    /// The value cached for `key` that snapshot `snapshot` may see, counted as a hit or miss.
    pub(crate) fn get(&self, key: &K, snapshot: u64) -> Option<V> {
        if !self.enabled() {
            return None;
        }
        let mut guard = self.shard(key).lock();
        let s = &mut *guard;
        s.clock += 1;
        s.sketch.record(key.spread());
        // Entries younger than a quarter of the shard's capacity stay where they are.
        let drift = s.lru.cap().get() as u64 / 4;
        let found = match s.lru.peek_mut(key) {
            Some(e) if e.valid_from <= snapshot => {
                let promote = s.clock - e.touched > drift;
                if promote {
                    e.touched = s.clock;
                }
                Some((e.value.clone(), promote))
            }
            _ => None,
        };
        match found {
            Some((value, promote)) => {
                if promote {
                    s.lru.promote(key);
                }
                s.counters.hits += 1;
                Some(value)
            }
            None => {
                s.counters.misses += 1;
                None
            }
        }
    }

    /// Caches `value`, read by a snapshot of commit `snapshot` and unchanged since commit
    /// `valid_from`, unless a newer commit has started (see the type's documentation).
    pub(crate) fn insert(
        &self,
        key: K,
        value: V,
        valid_from: u64,
        snapshot: u64,
        committing: &AtomicU64,
        bytes: usize,
    ) {
        if !self.enabled() {
            return;
        }
        let mut guard = self.shard(&key).lock();
        let s = &mut *guard;
        if committing.load(Ordering::Acquire) > snapshot {
            return;
        }
        if s.lru.len() == s.lru.cap().get()
            && !s.lru.contains(&key)
            && let Some((victim, _)) = s.lru.peek_lru()
            && s.sketch.estimate(key.spread()) < s.sketch.estimate(victim.spread())
        {
            s.counters.rejections += 1;
            return;
        }
        s.clock += 1;
        let entry = Entry {
            value,
            valid_from,
            bytes,
            touched: s.clock,
        };
        s.bytes += bytes;
        if let Some((old_key, old)) = s.lru.push(key, entry) {
            s.bytes -= old.bytes;
            if old_key != key {
                s.counters.evictions += 1;
            }
        }
    }

    /// Drops `key`'s entry: called by the writer for every key its commit changes.
    pub(crate) fn remove(&self, key: &K) {
        if !self.enabled() {
            return;
        }
        let mut shard = self.shard(key).lock();
        if let Some(old) = shard.lru.pop(key) {
            shard.bytes -= old.bytes;
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.lock().lru.is_empty())
    }

    pub(crate) fn clear(&self) {
        for s in self.shards.iter() {
            let mut s = s.lock();
            s.lru.clear();
            s.bytes = 0;
        }
    }

    pub(crate) fn counters(&self) -> Counters {
        let mut total = Counters::default();
        for s in self.shards.iter() {
            let s = s.lock();
            let mut c = s.counters;
            c.entries = s.lru.len() as u64;
            c.bytes = s.bytes as u64;
            total.add(&c);
        }
        total
    }

    /// Entries the cache holds at most.
    pub(crate) fn capacity(&self) -> usize {
        self.shards.iter().map(|s| s.lock().lru.cap().get()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_snapshots_the_entry_is_valid_for() {
        let c = VersionedLru::<u64, u32>::new(128);
        let committing = AtomicU64::new(5);
        c.insert(1, 10, 3, 5, &committing, 4);
        assert_eq!(c.get(&1, 2), None); // older than the version
        assert_eq!(c.get(&1, 3), Some(10));
        assert_eq!(c.get(&1, 5), Some(10));
        // A commit 6 starts: readers of 5 may no longer fill; the writer removes what it changes.
        committing.store(6, Ordering::Release);
        c.insert(2, 20, 1, 5, &committing, 4);
        assert_eq!(c.get(&2, 5), None);
        c.remove(&1);
        assert_eq!(c.get(&1, 5), None);
        let n = c.counters();
        assert_eq!((n.hits, n.misses, n.entries, n.bytes), (2, 3, 0, 0));
    }

    #[test]
    fn evicts_least_recently_used_and_counts_it() {
        let c = VersionedLru::<u64, u64>::new(64); // one shard of 64
        assert_eq!(c.capacity(), 64);
        let committing = AtomicU64::new(0);
        for k in 0..64 {
            c.insert(k, k, 0, 0, &committing, 8);
        }
        // Age the entries past the promotion threshold, then touch 0: it moves to the front.
        for _ in 0..32 {
            c.get(&1000, 0);
        }
        assert_eq!(c.get(&0, 0), Some(0));
        assert_eq!(c.get(&64, 0), None); // asked for as often as 1, the LRU entry: admitted
        c.insert(64, 64, 0, 0, &committing, 8); // evicts 1
        assert_eq!(c.get(&1, 0), None);
        assert_eq!(c.get(&0, 0), Some(0));
        c.insert(0, 99, 0, 0, &committing, 8); // replacement, not eviction
        let n = c.counters();
        assert_eq!((n.evictions, n.entries, n.bytes), (1, 64, 64 * 8));
        assert_eq!(c.get(&0, 0), Some(99));
    }

    #[test]
    fn a_full_cache_turns_away_keys_rarer_than_its_lru_entry() {
        let c = VersionedLru::<u64, u64>::new(64);
        let committing = AtomicU64::new(0);
        for k in 0..64 {
            for _ in 0..3 {
                c.get(&k, 0); // each key asked for three times, then cached
            }
            c.insert(k, k, 0, 0, &committing, 8);
        }
        c.insert(500, 500, 0, 0, &committing, 8); // never asked for: rejected
        assert_eq!(c.get(&500, 0), None);
        assert_eq!(c.get(&0, 0), Some(0));
        let n = c.counters();
        assert_eq!((n.rejections, n.evictions, n.entries), (1, 0, 64));
        for _ in 0..8 {
            c.get(&600, 0); // now popular
        }
        c.insert(600, 600, 0, 0, &committing, 8);
        assert_eq!(c.get(&600, 0), Some(600));
        assert_eq!(c.counters().evictions, 1);
    }

    #[test]
    fn capacity_zero_disables() {
        let c = VersionedLru::<u64, u64>::new(0);
        c.insert(1, 1, 0, 0, &AtomicU64::new(0), 8);
        assert_eq!(c.get(&1, 0), None);
        assert_eq!(c.counters(), Counters::default());
    }
}
