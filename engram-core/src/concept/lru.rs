//! A sharded LRU whose entries carry the first commit they are valid for, so one cache
//! serves snapshots of different versions without ever answering from the wrong one.
//!
//! Refinements over a plain locked LRU, each measured in `docs/benchmarks.md`:
//! - a hit takes its shard's lock shared and moves nothing while its entry is young (it
//!   has not drifted a quarter of the shard since it last moved to the front); only an old
//!   entry is relinked, under the exclusive lock. Relinking on every hit cost two cache
//!   misses on the neighbours and serialized every hit of a hot shard;
//! - hit and miss counts go to per-thread stripes, not to a line every core writes;
//! - a full shard admits a new entry only if it is asked for at least as often as the entry
//!   it would evict (TinyLFU's frequency sketch), so a burst of one-off lookups cannot flush
//!   the hot set.

use std::cell::Cell;
use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;
use foldhash::fast::FixedState;
use lru::LruCache;
use parking_lot::RwLock;

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
type Locked<K, V> = CachePadded<RwLock<Shard<K, V>>>;

struct Shard<K, V> {
    lru: LruCache<K, Entry<V>, FixedState>,
    bytes: usize,
    evictions: u64,
    rejections: u64,
    /// Inserts and relinks so far (changed under the exclusive lock only): the age of an
    /// entry is `clock - touched`.
    clock: u64,
    sketch: Sketch,
}

/// Approximate counts of recent requests per key: a count-min sketch of one-byte counters
/// (16 per cached entry) saturating at 15, all halved after `AGING × capacity` increments so
/// old popularity fades. A key's four counters share one 64-byte block, so counting a request
/// costs one cache miss, not four. Counters are updated with plain atomic loads and stores
/// under the shared lock: a lost increment only blurs an estimate, and a key whose counters
/// are saturated (every hot key) writes nothing.
struct Sketch {
    blocks: Box<[[AtomicU8; 64]]>,
    shift: u32,
    increments: AtomicUsize,
    period: usize,
}

/// Increments per cached entry between two halvings of the sketch. Measured on Zipf(1.0)
/// with a cache of 10 % of 100k concepts: 10 → 77.2 % hits, 20 → 79.3 %, 40 → 80.0 %, against
/// 80.5 % for a clairvoyant cache; longer only delays adapting to a shift in popularity.
const AGING: usize = 40;

/// Entries per shard the sketch sizes its counters for at most.
const SKETCHED: usize = 1 << 16;

impl Sketch {
    fn new(capacity: usize) -> Self {
        // 16 counters per entry, for up to SKETCHED entries: a larger shard shares them, so
        // a huge capacity costs no more than 1 MiB of counters per shard.
        let blocks = (capacity.min(SKETCHED) * 16 / 64)
            .next_power_of_two()
            .max(64);
        Sketch {
            blocks: (0..blocks)
                .map(|_| [const { AtomicU8::new(0) }; 64])
                .collect(),
            shift: 64 - blocks.trailing_zeros(),
            increments: AtomicUsize::new(0),
            period: capacity.max(1).saturating_mul(AGING),
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

    fn record(&self, spread: u64) {
        let (b, slots) = self.slots(spread);
        let mut counted = false;
        for i in slots {
            let c = &self.blocks[b][i];
            let v = c.load(Ordering::Relaxed);
            if v < 15 {
                c.store(v + 1, Ordering::Relaxed);
                counted = true;
            }
        }
        if counted && self.increments.fetch_add(1, Ordering::Relaxed) + 1 == self.period {
            for c in self.blocks.iter().flatten() {
                c.store(c.load(Ordering::Relaxed) / 2, Ordering::Relaxed);
            }
            self.increments.store(self.period / 2, Ordering::Relaxed);
        }
    }

    fn estimate(&self, spread: u64) -> u8 {
        let (b, slots) = self.slots(spread);
        slots
            .into_iter()
            .map(|i| self.blocks[b][i].load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }
}

/// A counter that threads add to on separate cache lines.
struct Striped([CachePadded<AtomicU64>; STRIPES]);

const STRIPES: usize = 32;

impl Striped {
    fn new() -> Self {
        Striped(std::array::from_fn(|_| CachePadded::new(AtomicU64::new(0))))
    }

    fn add(&self) {
        thread_local! {
            static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
        }
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let i = STRIPE.with(|s| {
            if s.get() == usize::MAX {
                s.set(NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES);
            }
            s.get()
        });
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }

    fn sum(&self) -> u64 {
        self.0.iter().map(|c| c.load(Ordering::Relaxed)).sum()
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

/// Coherence: `get(k, S)` answers only from an entry with `valid_from <= S`; the writer
/// removes an entry (under its shard lock) after announcing its commit in `committing` and
/// before publishing it; `insert` from a snapshot S is dropped unless `committing <= S`,
/// read under the shard lock. So an entry is never older than a commit that changed it: a
/// writer's removal either follows the insert (and removes it) or precedes it (and then
/// the inserter sees the newer `committing` and gives up).
pub(crate) struct VersionedLru<K, V> {
    shards: Box<[Locked<K, V>]>,
    shift: u32,
    hits: Striped,
    misses: Striped,
}

/// A cached value. A hit calls `prefetch` on the entry before cloning it out, so the
/// memory a caller reads next is on its way while the hit completes.
pub(crate) trait Cached: Clone {
    fn prefetch(&self) {}
}

impl Cached for f32 {}

impl<K: ShardKey, V: Cached> VersionedLru<K, V> {
    /// A cache of at most `capacity` entries (0: disabled), split in shards so concurrent
    /// lookups rarely meet on one lock.
    pub(crate) fn new(capacity: usize) -> Self {
        // Up to 64 shards, each holding at least 64 entries, so that hash imbalance between
        // shards does not change which entries an LRU of this size keeps.
        let shards = (capacity / 64).clamp(1, 64).next_power_of_two().min(64);
        let per_shard = capacity.div_ceil(shards);
        let shards: Box<[_]> = (0..shards)
            .map(|_| {
                // Bounded by `resize`, not at construction: a bounded `LruCache` allocates
                // its whole capacity up front, and the capacity is the caller's to choose.
                let mut lru = LruCache::unbounded_with_hasher(FixedState::default());
                lru.resize(NonZeroUsize::new(per_shard).unwrap_or(NonZeroUsize::MIN));
                CachePadded::new(RwLock::new(Shard {
                    lru,
                    bytes: 0,
                    evictions: 0,
                    rejections: 0,
                    clock: 0,
                    sketch: Sketch::new(per_shard),
                }))
            })
            .collect();
        let shift = 64 - shards.len().trailing_zeros();
        VersionedLru {
            shards: if capacity == 0 { Box::new([]) } else { shards },
            shift,
            hits: Striped::new(),
            misses: Striped::new(),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        !self.shards.is_empty()
    }

    fn shard(&self, key: &K) -> &RwLock<Shard<K, V>> {
        // The top bits of the spread: `shift` is 64 for one shard, where `checked_shr` gives 0.
        let i = key.spread().checked_shr(self.shift).unwrap_or(0) as usize;
        &self.shards[i]
    }

    /// The value cached for `key` that snapshot `snapshot` may see, counted as a hit or miss.
    pub(crate) fn get(&self, key: &K, snapshot: u64) -> Option<V> {
        if !self.enabled() {
            return None;
        }
        let shard = self.shard(key);
        let (value, old) = {
            let s = shard.read();
            s.sketch.record(key.spread());
            match s.lru.peek(key) {
                Some(e) if e.valid_from <= snapshot => {
                    // Entries younger than a quarter of the shard's capacity stay in place.
                    let old = s.clock - e.touched > s.lru.cap().get() as u64 / 4;
                    e.value.prefetch();
                    (e.value.clone(), old)
                }
                _ => {
                    self.misses.add();
                    return None;
                }
            }
        };
        if old {
            let mut guard = shard.write();
            let s = &mut *guard;
            s.clock += 1;
            if let Some(e) = s.lru.peek_mut(key) {
                e.touched = s.clock;
                s.lru.promote(key);
            }
        }
        self.hits.add();
        Some(value)
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
        let mut guard = self.shard(&key).write();
        let s = &mut *guard;
        if committing.load(Ordering::Acquire) > snapshot {
            return;
        }
        if s.lru.len() == s.lru.cap().get()
            && !s.lru.contains(&key)
            && let Some((victim, _)) = s.lru.peek_lru()
            && s.sketch.estimate(key.spread()) < s.sketch.estimate(victim.spread())
        {
            s.rejections += 1;
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
                s.evictions += 1;
            }
        }
    }

    /// Drops `key`'s entry: called by the writer for every key its commit changes.
    pub(crate) fn remove(&self, key: &K) {
        if !self.enabled() {
            return;
        }
        let mut shard = self.shard(key).write();
        if let Some(old) = shard.lru.pop(key) {
            shard.bytes -= old.bytes;
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.read().lru.is_empty())
    }

    pub(crate) fn clear(&self) {
        for s in self.shards.iter() {
            let mut s = s.write();
            s.lru.clear();
            s.bytes = 0;
        }
    }

    pub(crate) fn counters(&self) -> Counters {
        let mut c = Counters {
            hits: self.hits.sum(),
            misses: self.misses.sum(),
            ..Counters::default()
        };
        for s in self.shards.iter() {
            let s = s.read();
            c.evictions += s.evictions;
            c.rejections += s.rejections;
            c.entries += s.lru.len() as u64;
            c.bytes += s.bytes as u64;
        }
        c
    }

    /// Entries the cache holds at most.
    pub(crate) fn capacity(&self) -> usize {
        self.shards
            .iter()
            .fold(0, |n: usize, s| n.saturating_add(s.read().lru.cap().get()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Cached for u32 {}
    impl Cached for u64 {}

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
        // 0 is older than a quarter of the shard (63 inserts since): a hit moves it to the
        // front.
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
    fn any_capacity_costs_memory_only_as_entries_arrive() {
        // Allocating the capacity up front would abort (or panic on the table size) here.
        let c = VersionedLru::<u64, u32>::new(usize::MAX);
        let committing = AtomicU64::new(0);
        for k in 0..1000 {
            c.insert(k, k as u32, 0, 0, &committing, 4);
        }
        assert_eq!(c.get(&999, 0), Some(999));
        assert_eq!(c.capacity(), usize::MAX);
        assert_eq!(c.counters().evictions, 0);
    }

    #[test]
    fn the_sketch_forgets_old_popularity() {
        let sketch = Sketch::new(4); // halves every 4 × AGING increments
        for _ in 0..20 {
            sketch.record(7u64.spread());
        }
        assert_eq!(sketch.estimate(7u64.spread()), 15); // saturated
        let mut k = 1000u64;
        while sketch.estimate(7u64.spread()) == 15 {
            sketch.record(k.spread());
            k += 1;
            assert!(k < 1000 + 4 * AGING as u64 + 1, "never halved");
        }
        assert_eq!(sketch.estimate(7u64.spread()), 7);
    }

    #[test]
    fn capacity_zero_disables() {
        let c = VersionedLru::<u64, u64>::new(0);
        c.insert(1, 1, 0, 0, &AtomicU64::new(0), 8);
        assert_eq!(c.get(&1, 0), None);
        assert_eq!(c.counters(), Counters::default());
    }
}
