//! The fan-count index: live bindings per node, so a count is one map probe instead of a
//! walk of the node's binding list. Filled lazily (open stays O(1)) and kept current by
//! the writer, with the same coherence rule as [`super::lru::VersionedLru`].

use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use foldhash::fast::FixedState;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Node {
    Episode,
    Concept,
}

#[derive(Clone, Copy)]
struct Fan {
    count: u64,
    /// The first commit whose snapshots see `count`.
    valid_from: u64,
}

pub(crate) struct FanIndex {
    episodes: DashMap<u64, Fan, FixedState>,
    concepts: DashMap<u64, Fan, FixedState>,
}

impl FanIndex {
    pub(crate) fn new() -> Self {
        FanIndex {
            episodes: DashMap::with_hasher(FixedState::default()),
            concepts: DashMap::with_hasher(FixedState::default()),
        }
    }

    fn map(&self, node: Node) -> &DashMap<u64, Fan, FixedState> {
        match node {
            Node::Episode => &self.episodes,
            Node::Concept => &self.concepts,
        }
    }

    /// The fan count of `id` as snapshot `snapshot` sees it, if indexed.
    pub(crate) fn get(&self, node: Node, id: u64, snapshot: u64) -> Option<u64> {
        // The `Ref` (a shard read lock) ends with this expression.
        self.map(node)
            .get(&id)
            .filter(|f| f.valid_from <= snapshot)
            .map(|f| f.count)
    }

    /// Records a count a snapshot of the newest commit computed, unless a newer commit has
    /// started or the node is already indexed.
    pub(crate) fn fill(
        &self,
        node: Node,
        id: u64,
        count: u64,
        snapshot: u64,
        committing: &AtomicU64,
    ) {
        // `entry` holds the shard's write lock while `committing` is read.
        if let Entry::Vacant(v) = self.map(node).entry(id)
            && committing.load(Ordering::Acquire) <= snapshot
        {
            v.insert(Fan {
                count,
                valid_from: snapshot,
            });
        }
    }

    /// The writer: commit `txn` changes `id`'s count by `delta`.
    pub(crate) fn apply(&self, node: Node, id: u64, delta: i64, txn: u64) {
        if let Some(mut f) = self.map(node).get_mut(&id) {
            f.count = f.count.saturating_add_signed(delta);
            f.valid_from = txn;
        }
    }

    /// The writer: commit `txn` deletes the node.
    pub(crate) fn remove(&self, node: Node, id: u64) {
        self.map(node).remove(&id);
    }

    pub(crate) fn clear(&self) {
        self.episodes.clear();
        self.concepts.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.episodes.len() + self.concepts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_counts_follow_the_writer_and_respect_snapshots() {
        let f = FanIndex::new();
        let committing = AtomicU64::new(4);
        f.fill(Node::Concept, 7, 3, 4, &committing);
        assert_eq!(f.get(Node::Concept, 7, 4), Some(3));
        assert_eq!(f.get(Node::Concept, 7, 3), None); // filled at 4: unknown before
        assert_eq!(f.get(Node::Episode, 7, 4), None);
        committing.store(5, Ordering::Release);
        f.apply(Node::Concept, 7, -2, 5);
        assert_eq!(f.get(Node::Concept, 7, 4), None); // changed at 5
        assert_eq!(f.get(Node::Concept, 7, 5), Some(1));
        f.fill(Node::Concept, 8, 1, 4, &committing); // stale reader: dropped
        assert_eq!(f.get(Node::Concept, 8, 5), None);
        f.apply(Node::Concept, 8, 1, 5); // not indexed: nothing to keep current
        assert_eq!(f.len(), 1);
        f.remove(Node::Concept, 7);
        assert_eq!(f.len(), 0);
    }
}
