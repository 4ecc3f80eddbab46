//! Which ids a node table (`.etab`, `.ctab`) holds entries for, and where each entry is.
//!
//! A table file is a directory of id runs, then the entries: those of the runs in order,
//! then the dense tail, one entry per id from the state's `*_table_from` to `*_ids`, which
//! commits append to. Only compaction (and backup) writes a directory, into a fresh file,
//! so it never changes under a map: it keeps the entries of the ids still stored when
//! older ids around them are gone, and ids in no run and below the tail are gone for good.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::store::file::FileHandle;
use crate::store::meta::VersionState;
use crate::store::records::table;
use crate::store::snapshot::Role;

/// Ids `first..end`, whose entries start at entry `entry`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    first: u64,
    end: u64,
    entry: u64,
}

/// Bytes of one run in the directory: first id, count.
const RUN_LEN: u64 = 16;

/// Ids not stored between two stored ones that compaction keeps as dead entries inside one
/// run rather than starting a new run: at most 3 × 48 bytes against a 16-byte run (and the
/// ~32 bytes a run takes in memory).
pub(crate) const MAX_GAP: u64 = 3;

/// One table's directory, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TableIndex {
    runs: Arc<[Run]>,
    /// Ids below the tail in buckets of `1 << shift`, about one run per bucket: `starts[k]`
    /// runs begin before bucket k, so the run holding an id of bucket k is one of
    /// `runs[starts[k] - 1 .. starts[k + 1]]`, most often one or two of them.
    shift: u32,
    starts: Arc<[usize]>,
    /// Bytes of the directory, before the first entry.
    header: u64,
    /// Entries the runs hold, before the tail's.
    below_tail: u64,
}

/// Bytes of a directory of `runs` runs: 16 each, then their crc32c, zero-padded to 64 (the
/// entries keep the cache-line offsets they have with no directory); none for no runs.
pub(crate) fn directory_len(runs: u64) -> Option<u64> {
    match runs {
        0 => Some(0),
        n => Some(n.checked_mul(RUN_LEN)?.checked_add(4 + 63)? & !63),
    }
}

/// The directory of `runs` (first id, count), as written at the start of a table file.
pub(crate) fn encode_directory(runs: &[(u64, u64)]) -> Vec<u8> {
    let mut b = Vec::with_capacity(directory_len(runs.len() as u64).unwrap_or(0) as usize);
    if runs.is_empty() {
        return b;
    }
    for &(first, count) in runs {
        b.extend_from_slice(&first.to_le_bytes());
        b.extend_from_slice(&count.to_le_bytes());
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b.resize(directory_len(runs.len() as u64).unwrap_or(0) as usize, 0);
    b
}

/// The runs compaction writes for a table whose stored ids are `stored` (ascending) out of
/// `ids` assigned: (runs below the tail as (first id, count), first id of the tail). Gaps
/// of up to [`MAX_GAP`] ids stay inside a run; the last run becomes the tail if it reaches
/// within that of `ids`, and with no stored id at all the tail starts at `ids`.
pub(crate) fn plan(stored: impl IntoIterator<Item = u64>, ids: u64) -> (Vec<(u64, u64)>, u64) {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for id in stored {
        match runs.last_mut() {
            Some((first, count)) if id - (*first + *count) <= MAX_GAP => {
                *count = id + 1 - *first;
            }
            _ => runs.push((id, 1)),
        }
    }
    match runs.last() {
        Some(&(first, count)) if ids - (first + count) <= MAX_GAP => {
            runs.pop();
            (runs, first)
        }
        _ => (runs, ids),
    }
}

impl TableIndex {
    /// Reads the directory of `count` runs at the start of table file `handle`, whose tail
    /// starts at `tail_from`.
    pub(crate) fn read(handle: &FileHandle, count: u64, tail_from: u64) -> Result<Self> {
        if count == 0 {
            return Ok(TableIndex::default());
        }
        let damaged = |what: &str| Error::corrupt(handle.path(), 0, what.to_string());
        let len = directory_len(count).ok_or_else(|| damaged("table directory too long"))?;
        // A file shorter than the directory is refused here, before anything is mapped.
        let map = handle.covering(len)?;
        let bytes = map.bytes(0, len as usize)?;
        Self::decode(bytes, count, tail_from).ok_or_else(|| damaged("table directory damaged"))
    }

    /// Parses a directory of `count` runs (`bytes` is exactly [`directory_len`] long) for a
    /// table whose tail starts at `tail_from`; `None` if the checksum or the order is wrong.
    pub(crate) fn decode(bytes: &[u8], count: u64, tail_from: u64) -> Option<Self> {
        if count == 0 {
            return Some(TableIndex::default());
        }
        let n = usize::try_from(count.checked_mul(RUN_LEN)?).ok()?;
        let crc = u32::from_le_bytes(bytes.get(n..n + 4)?.try_into().ok()?);
        if crc32c::crc32c(&bytes[..n]) != crc {
            return None;
        }
        let mut runs = Vec::with_capacity(count as usize);
        let (mut entry, mut past) = (0u64, 0u64);
        for r in bytes[..n].chunks_exact(RUN_LEN as usize) {
            let first = u64::from_le_bytes(r[..8].try_into().ok()?);
            let len = u64::from_le_bytes(r[8..].try_into().ok()?);
            let end = first.checked_add(len)?;
            // Ascending, disjoint, non-empty, and all below the tail.
            if len == 0 || first < past || (!runs.is_empty() && first == past) || end > tail_from {
                return None;
            }
            runs.push(Run { first, end, entry });
            entry = entry.checked_add(len)?;
            past = end;
        }
        // Buckets: no more of them than runs (plus one), so the index is at most one word
        // per run.
        let mut shift = 0;
        while (tail_from >> shift) > count {
            shift += 1;
        }
        let buckets = (tail_from >> shift) as usize + 1;
        let mut starts = Vec::with_capacity(buckets + 1);
        let mut before = 0;
        for k in 0..=buckets as u64 {
            while runs.get(before).is_some_and(|r| r.first < k << shift) {
                before += 1;
            }
            starts.push(before);
        }
        Some(TableIndex {
            runs: runs.into(),
            shift,
            starts: starts.into(),
            header: directory_len(count)?,
            below_tail: entry,
        })
    }

    /// Index of `id`'s entry in a table whose tail holds `tail` ids.
    fn entry(&self, tail: std::ops::Range<u64>, id: u64) -> Option<u64> {
        if id >= tail.start {
            return (id < tail.end).then(|| self.below_tail + (id - tail.start));
        }
        // The last run starting at or before `id`, among its bucket's few.
        let k = (id >> self.shift) as usize;
        let (from, to) = (*self.starts.get(k)?, *self.starts.get(k + 1)?);
        let near = &self.runs[from.saturating_sub(1)..to];
        let r = near[near.partition_point(|r| r.first <= id).checked_sub(1)?];
        (id < r.end).then(|| r.entry + (id - r.first))
    }
}

/// Both tables' directories, as one version's table files hold them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tables {
    pub episodes: TableIndex,
    pub concepts: TableIndex,
}

impl Tables {
    pub(crate) fn of(&self, role: Role) -> &TableIndex {
        match role {
            Role::EpisodeTable => &self.episodes,
            _ => &self.concepts,
        }
    }

    /// `role`'s directory, if `role` is a node table.
    pub(crate) fn of_mut(&mut self, role: Role) -> Option<&mut TableIndex> {
        match role {
            Role::EpisodeTable => Some(&mut self.episodes),
            Role::ConceptTable => Some(&mut self.concepts),
            _ => None,
        }
    }

    /// What `s` says of `role`'s directory: its runs, and the first id of the tail.
    pub(crate) fn directory(s: &VersionState, role: Role) -> (u64, u64) {
        match role {
            Role::EpisodeTable => (s.episode_table_runs, s.episode_table_from),
            _ => (s.concept_table_runs, s.concept_table_from),
        }
    }

    /// The ids of `role`'s tail in `s` (`EpisodeTable` or `ConceptTable`).
    fn tail(s: &VersionState, role: Role) -> std::ops::Range<u64> {
        match role {
            Role::EpisodeTable => s.episode_table_from..s.episode_ids,
            _ => s.concept_table_from..s.concept_ids,
        }
    }

    /// The ids `role`'s table holds entries for in `s`, ascending.
    pub(crate) fn ids(
        &self,
        s: &VersionState,
        role: Role,
    ) -> impl DoubleEndedIterator<Item = u64> + '_ {
        let runs = self.of(role).runs.iter().flat_map(|r| r.first..r.end);
        runs.chain(Self::tail(s, role))
    }

    /// Entries `role`'s table holds in `s`.
    pub(crate) fn entries(&self, s: &VersionState, role: Role) -> Option<u64> {
        let tail = Self::tail(s, role);
        tail.end
            .checked_sub(tail.start)?
            .checked_add(self.of(role).below_tail)
    }

    /// Bytes of `role`'s table in `s` (`None` for a state whose tail starts past its ids,
    /// which only a damaged commit record can hold).
    pub(crate) fn len(&self, s: &VersionState, role: Role) -> Option<u64> {
        self.entries(s, role)?
            .checked_mul(table::ENTRY)?
            .checked_add(self.of(role).header)
    }

    /// Which entry of `role`'s table is node `id`'s, if it holds one: the ids of
    /// [`Self::ids`] are entries 0, 1, ... in order.
    pub(crate) fn index(&self, s: &VersionState, role: Role, id: u64) -> Option<u64> {
        self.of(role).entry(Self::tail(s, role), id)
    }

    /// Byte offset of `field` of node `id`'s entry, if its table holds one.
    pub(crate) fn entry_offset(
        &self,
        s: &VersionState,
        role: Role,
        id: u64,
        field: u64,
    ) -> Option<u64> {
        let i = self.index(s, role, id)?;
        Some(self.of(role).header + i * table::ENTRY + field)
    }

    /// Whether `role`'s table holds an entry for `id` in `s`.
    pub(crate) fn holds(&self, s: &VersionState, role: Role, id: u64) -> bool {
        self.of(role).entry(Self::tail(s, role), id).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(from: u64, ids: u64) -> VersionState {
        VersionState {
            episode_table_from: from,
            episode_ids: ids,
            ..VersionState::default()
        }
    }

    #[test]
    fn plan_keeps_runs_of_stored_ids_and_small_gaps() {
        assert_eq!(plan([], 10), (vec![], 10));
        assert_eq!(plan(0..10, 10), (vec![], 0));
        assert_eq!(plan([0, 1, 5, 9], 10), (vec![], 0));
        assert_eq!(plan([0, 1, 6, 9], 12), (vec![(0, 2)], 6));
        assert_eq!(plan([0, 1, 6], 100), (vec![(0, 2), (6, 1)], 100));
        assert_eq!(plan([3], 7), (vec![], 3));
        assert_eq!(plan([3], 8), (vec![(3, 1)], 8));
    }

    #[test]
    fn ids_map_to_entries_after_the_directory() {
        let (runs, from) = plan([0, 1, 6, 20, 21, 22, 40, 41], 43);
        assert_eq!(
            (runs.as_slice(), from),
            (&[(0, 2), (6, 1), (20, 3)][..], 40)
        );
        let bytes = encode_directory(&runs);
        assert_eq!(bytes.len(), 64);
        let t = Tables {
            episodes: TableIndex::decode(&bytes, 3, from).unwrap(),
            ..Tables::default()
        };
        let s = state(from, 43);
        let held: Vec<u64> = t.ids(&s, Role::EpisodeTable).collect();
        assert_eq!(held, [0, 1, 6, 20, 21, 22, 40, 41, 42]);
        let mut down: Vec<u64> = t.ids(&s, Role::EpisodeTable).rev().collect();
        down.reverse();
        assert_eq!(down, held);
        for (i, &id) in held.iter().enumerate() {
            let off = t.entry_offset(&s, Role::EpisodeTable, id, 8);
            assert_eq!(off, Some(64 + i as u64 * 48 + 8), "id {id}");
        }
        for id in [2, 5, 7, 19, 23, 39, 43, u64::MAX] {
            assert!(!t.holds(&s, Role::EpisodeTable, id), "id {id}");
        }
        assert_eq!(t.len(&s, Role::EpisodeTable), Some(64 + 9 * 48));
        assert_eq!(t.entries(&s, Role::EpisodeTable), Some(9));
    }

    /// Random stored sets, sparse and dense, clustered and spread: every id maps to the
    /// entry a plain list of the held ids gives it, through the bucket index.
    #[test]
    fn every_id_finds_its_entry_or_none() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for case in 0..300 {
            let ids = 1 + next() % 3_000;
            let keep = 1 + next() % 64; // one id in `keep` stored, on average
            let clustered = case % 3 == 0;
            let stored: Vec<u64> = (0..ids)
                .filter(|&id| match clustered {
                    true => (id / 97) % keep == 0 && next() % 4 != 0,
                    false => next() % keep == 0,
                })
                .collect();
            let (runs, from) = plan(stored.iter().copied(), ids);
            let count = runs.len() as u64;
            let t = Tables {
                episodes: TableIndex::decode(&encode_directory(&runs), count, from).unwrap(),
                ..Tables::default()
            };
            let s = state(from, ids);
            let held: Vec<u64> = t.ids(&s, Role::EpisodeTable).collect();
            assert!(
                t.ids(&s, Role::EpisodeTable)
                    .rev()
                    .eq(held.iter().rev().copied())
            );
            assert!(stored.iter().all(|id| held.binary_search(id).is_ok()));
            assert!(held.len() as u64 <= stored.len() as u64 * (MAX_GAP + 1) + MAX_GAP);
            for id in 0..ids + 3 {
                let expect = held.binary_search(&id).ok().map(|i| i as u64);
                assert_eq!(
                    t.index(&s, Role::EpisodeTable, id),
                    expect,
                    "case {case} id {id}"
                );
            }
        }
    }

    #[test]
    fn damaged_or_disordered_directories_are_refused() {
        let bytes = encode_directory(&[(0, 2), (6, 1)]);
        assert!(TableIndex::decode(&bytes, 2, 7).is_some());
        // A run reaching into the tail.
        assert!(TableIndex::decode(&bytes, 2, 6).is_none());
        let mut bad = bytes.clone();
        bad[3] ^= 1;
        assert!(TableIndex::decode(&bad, 2, 100).is_none());
        for runs in [
            &[(6, 1), (0, 2)][..],
            &[(0, 2), (1, 3)],
            &[(0, 2), (2, 3)],
            &[(0, 0)],
            &[(u64::MAX, 2)],
        ] {
            let b = encode_directory(runs);
            assert!(
                TableIndex::decode(&b, runs.len() as u64, u64::MAX).is_none(),
                "{runs:?}"
            );
        }
        assert_eq!(directory_len(u64::MAX), None);
    }
}
