//! The in-memory side of the dual memory, shared by every snapshot of one handle: the LRU
//! of decoded concepts, the binding-strength cache and the fan-count index. All three are
//! caches of what the mapped files say, kept coherent with snapshots by one rule (see
//! [`lru::VersionedLru`]): the writer announces commit T in `committing` (before it even
//! computes what T changes), then removes or updates what T changes, then publishes T.

mod fan;
mod lru;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use foldhash::HashMap;

pub(crate) use fan::{FanIndex, Node};
use lru::{Cached, VersionedLru};

/// A concept as a cached lookup returns it: decoded once from its validated record and
/// shared by every reader until evicted or changed. Cloning it clones two `Arc`s; the
/// centroid's floats sit in the same allocation as their reference count, so a cache hit
/// reaches them in one step from the cache entry.
#[derive(Clone, Debug, PartialEq)]
pub struct ConceptState {
    id: u64,
    version_txn: u64,
    centroid: Arc<[f32]>,
    label: Arc<str>,
}

impl ConceptState {
    pub(crate) fn new(id: u64, version_txn: u64, centroid: &[f32], label: &str) -> Self {
        ConceptState {
            id,
            version_txn,
            centroid: centroid.into(),
            label: label.into(),
        }
    }
    /// The concept's id.
    pub fn id(&self) -> u64 {
        self.id
    }
    /// The transaction that wrote this version of the concept.
    pub fn version_txn(&self) -> u64 {
        self.version_txn
    }
    /// The centroid, decoded once and shared by every holder of this state.
    pub fn centroid(&self) -> &[f32] {
        &self.centroid
    }
    /// The label.
    pub fn label(&self) -> &str {
        &self.label
    }
    /// Heap bytes this entry holds (what the cache's byte count adds up).
    pub(crate) fn bytes(&self) -> usize {
        std::mem::size_of::<Self>() + 32 + self.centroid.len() * 4 + self.label.len()
    }
}

impl Cached for ConceptState {
    /// Starts fetching every cache line of the centroid at once: a lookup's caller reads it
    /// next, and one memory latency for all its lines beats the prefetcher's ramp.
    fn prefetch(&self) {
        crate::prefetch::lines(self.centroid.as_ptr().cast(), self.centroid.len() * 4);
    }
}

/// What one commit changes in the cached state.
#[derive(Default)]
pub(crate) struct Changes {
    /// Concepts updated or deleted.
    pub concepts: Vec<u64>,
    /// Pairs bound, rebound or unbound.
    pub pairs: Vec<(u64, u64)>,
    /// Net change of each node's live bindings.
    pub fans: HashMap<(Node, u64), i64>,
    /// Nodes deleted.
    pub deleted: Vec<(Node, u64)>,
}

pub(crate) struct Caches {
    /// The newest commit announced by the writer (or adopted by a read-only handle).
    committing: AtomicU64,
    concepts: VersionedLru<u64, ConceptState>,
    strengths: VersionedLru<(u64, u64), f32>,
    /// `None` in an episodes-only handle.
    fans: Option<FanIndex>,
}

/// Counters of a handle's concept cache and sizes of its newest version.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stats {
    /// Concept lookups through the cache ([`crate::ReadTxn::lookup_concept`]).
    pub lookups: u64,
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that decoded the mapped record.
    pub misses: u64,
    /// Entries the cache dropped to make room.
    pub evictions: u64,
    /// Decoded concepts a full cache declined to keep (rarer than what they would evict).
    pub rejections: u64,
    /// hits / lookups (0 before the first lookup).
    pub hit_ratio: f64,
    /// Concepts the cache holds now.
    pub cache_entries: u64,
    /// Bytes of decoded concepts the cache holds.
    pub cache_bytes: u64,
    /// Concepts the cache can hold (`Options::concept_cache_entries`).
    pub cache_capacity: u64,
    /// Nodes whose fan count is indexed.
    pub fan_index_entries: u64,
    /// Binding-strength lookups answered from the strength cache.
    pub strength_hits: u64,
    /// Binding-strength lookups that walked a binding list.
    pub strength_misses: u64,
    /// Live episodes in the newest version.
    pub episodes: u64,
    /// Live concepts in the newest version.
    pub concepts: u64,
    /// Live bindings in the newest version.
    pub bindings: u64,
    /// Live concepts with no live binding left in the newest version (all their members
    /// forgotten or unbound): [`crate::ReadTxn::empty_concepts`] lists them for
    /// [`crate::WriteTxn::delete_concept`]. Kept by every commit, so reading it costs nothing.
    pub empty_concepts: u64,
    /// Episodes whose recorded accesses wait for the next commit.
    pub pending_accesses: u64,
    /// Accesses not recorded because the pending log was full.
    pub dropped_accesses: u64,
}

impl Caches {
    pub(crate) fn new(
        txn: u64,
        concept_entries: usize,
        strength_entries: usize,
        dual: bool,
    ) -> Self {
        let (concept_entries, strength_entries) = match dual {
            true => (concept_entries, strength_entries),
            false => (0, 0),
        };
        Caches {
            committing: AtomicU64::new(txn),
            concepts: VersionedLru::new(concept_entries),
            strengths: VersionedLru::new(strength_entries),
            fans: dual.then(FanIndex::new),
        }
    }

    pub(crate) fn concept(&self, id: u64, snapshot: u64) -> Option<ConceptState> {
        self.concepts.get(&id, snapshot)
    }

    pub(crate) fn fill_concept(&self, state: &ConceptState, snapshot: u64) {
        if self.concepts.enabled() {
            let (id, from, bytes) = (state.id, state.version_txn, state.bytes());
            self.concepts
                .insert(id, state.clone(), from, snapshot, &self.committing, bytes);
        }
    }

    pub(crate) fn strength(&self, pair: (u64, u64), snapshot: u64) -> Option<f32> {
        self.strengths.get(&pair, snapshot)
    }

    /// A record does not say which commit wrote it, so the entry is valid from `snapshot`
    /// on: older snapshots miss rather than risk a binding they do not see.
    pub(crate) fn fill_strength(&self, pair: (u64, u64), strength: f32, snapshot: u64) {
        self.strengths
            .insert(pair, strength, snapshot, snapshot, &self.committing, 48);
    }

    pub(crate) fn fan(&self, node: Node, id: u64, snapshot: u64) -> Option<u64> {
        self.fans.as_ref()?.get(node, id, snapshot)
    }

    pub(crate) fn fill_fan(&self, node: Node, id: u64, count: u64, snapshot: u64) {
        if let Some(f) = &self.fans {
            f.fill(node, id, count, snapshot, &self.committing);
        }
    }

    /// The writer, before it computes what commit `txn` changes: from now on readers of
    /// older snapshots do not fill entries.
    pub(crate) fn announce(&self, txn: u64) {
        self.committing.store(txn, Ordering::Release);
    }

    /// Whether nothing is cached or indexed (checked after [`Caches::announce`], it stays so
    /// until the announced commit is published).
    pub(crate) fn is_empty(&self) -> bool {
        self.concepts.is_empty()
            && self.strengths.is_empty()
            && self.fans.as_ref().is_none_or(|f| f.len() == 0)
    }

    /// The writer, after commit `txn` is durable and before it is published.
    pub(crate) fn apply(&self, txn: u64, changes: &Changes) {
        debug_assert_eq!(self.committing.load(Ordering::Relaxed), txn);
        for id in &changes.concepts {
            self.concepts.remove(id);
        }
        for pair in &changes.pairs {
            self.strengths.remove(pair);
        }
        if let Some(f) = &self.fans {
            for (&(node, id), &delta) in &changes.fans {
                if delta != 0 {
                    f.apply(node, id, delta, txn);
                }
            }
            for &(node, id) in &changes.deleted {
                f.remove(node, id);
            }
        }
    }

    /// A read-only handle adopting commit `txn` written by another process: what changed
    /// is unknown, so everything goes.
    pub(crate) fn reset(&self, txn: u64) {
        self.committing.store(txn, Ordering::Release);
        self.concepts.clear();
        self.strengths.clear();
        if let Some(f) = &self.fans {
            f.clear();
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        let c = self.concepts.counters();
        let s = self.strengths.counters();
        let lookups = c.hits + c.misses;
        Stats {
            lookups,
            hits: c.hits,
            misses: c.misses,
            evictions: c.evictions,
            rejections: c.rejections,
            hit_ratio: if lookups == 0 {
                0.0
            } else {
                c.hits as f64 / lookups as f64
            },
            cache_entries: c.entries,
            cache_bytes: c.bytes,
            cache_capacity: self.concepts.capacity() as u64,
            fan_index_entries: self.fans.as_ref().map_or(0, |f| f.len() as u64),
            strength_hits: s.hits,
            strength_misses: s.misses,
            ..Stats::default()
        }
    }
}
