//! The small fixed-layout files: the manifest (settings fixed at creation), the commit
//! records (the redo log of one transaction each) and the published head.

use std::path::Path;

use crate::error::{Error, Result};

pub(crate) const MANIFEST: &str = "MANIFEST";
/// The MANIFEST as written and synced before it is renamed into place.
pub(crate) const MANIFEST_TMP: &str = "MANIFEST.tmp";
pub(crate) const LOCK: &str = "LOCK";
pub(crate) const HEAD: &str = "head";
/// The write-ahead log (`store::wal`), and what its entries start with.
pub(crate) const WAL: &str = "wal";
pub(crate) const WAL_MAGIC: [u8; 4] = *b"EGWL";
/// The on-disk format this build reads and writes (`docs/format.md`).
pub const FORMAT_VERSION: u32 = 11;

/// What tells a format's commit records apart: their magic and the bytes of their version
/// state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CommitLayout {
    magic: u32,
    state_len: usize,
    /// The format's binding records are 64 bytes (formats 7 to 9): the upgrade rewrites them.
    pub(crate) old_bindings: bool,
}

/// This format's commit records: the magic is `EG` and the format version (u16).
pub(crate) const COMMIT: CommitLayout = {
    let v = (FORMAT_VERSION as u16).to_le_bytes();
    CommitLayout {
        magic: u32::from_le_bytes([b'E', b'G', v[0], v[1]]),
        state_len: STATE_LEN,
        old_bindings: false,
    }
};

/// The commit records of an older format a writer upgrades in place on open, if it does.
/// Formats 7 to 9 share the magic `EGCR`; formats 7 and 8 lack this format's last state
/// words, all 0 in such a database (format 7 the tables' first ids and runs, format 8
/// their runs). All three store 64-byte binding records, which the upgrade rewrites.
/// Format 10's records are this format's under the magic `EG 0A 00`; it had no write-ahead
/// log.
pub(crate) fn upgradable(version: u32) -> Option<CommitLayout> {
    let old = |words: usize| CommitLayout {
        magic: u32::from_le_bytes(*b"EGCR"),
        state_len: words * 8,
        old_bindings: true,
    };
    match version {
        7 => Some(old(27)),
        8 => Some(old(29)),
        9 => Some(old(31)),
        10 => Some(CommitLayout {
            magic: u32::from_le_bytes([b'E', b'G', 10, 0]),
            state_len: STATE_LEN,
            old_bindings: false,
        }),
        _ => None,
    }
}
const MANIFEST_MAGIC: &[u8; 8] = b"ENGRAMDB";
const MANIFEST_LEN: usize = 512;
pub(crate) const MAX_MODEL_LEN: usize = 256;
const HEAD_MAGIC: u32 = u32::from_le_bytes(*b"EGHD");
pub(crate) const HEAD_SLOT: u64 = 256;

pub use crate::metric::Metric;

/// The settings a database is created with and keeps for life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Floats per embedding.
    pub dimension: usize,
    /// The similarity searches rank by.
    pub metric: Metric,
    /// Name of the embedding model, if the creator gave one.
    pub model: Option<String>,
    /// Keep an int8 copy of every embedding for fast approximate scans (`search_int8`).
    pub int8_mirror: bool,
}

const FLAG_INT8_MIRROR: u32 = 1;

impl Manifest {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; MANIFEST_LEN];
        b[0..8].copy_from_slice(MANIFEST_MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(self.dimension as u32).to_le_bytes());
        b[16..20].copy_from_slice(&self.metric.code().to_le_bytes());
        let model = self.model.as_deref().unwrap_or("").as_bytes();
        b[20..24].copy_from_slice(&(model.len() as u32).to_le_bytes());
        b[24..24 + model.len()].copy_from_slice(model);
        let flags = if self.int8_mirror {
            FLAG_INT8_MIRROR
        } else {
            0
        };
        b[MANIFEST_LEN - 8..MANIFEST_LEN - 4].copy_from_slice(&flags.to_le_bytes());
        let crc = crc32c::crc32c(&b[..MANIFEST_LEN - 4]);
        b[MANIFEST_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// The manifest and the format version it states (this build's, or
    /// one [`upgradable`] knows).
    pub(crate) fn decode(dir: &Path, b: &[u8]) -> Result<(Self, u32)> {
        let not_ours = |reason: &str| Error::NotADatabase {
            path: dir.to_path_buf(),
            reason: reason.to_string(),
        };
        if b.len() < 12 || &b[0..8] != MANIFEST_MAGIC {
            return Err(not_ours("MANIFEST has no engram magic"));
        }
        let version = u32_at(b, 8);
        if version != FORMAT_VERSION && upgradable(version).is_none() {
            return Err(Error::FormatVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if b.len() != MANIFEST_LEN {
            return Err(Error::corrupt(
                dir.join(MANIFEST),
                0,
                format!("MANIFEST is {} bytes, expected {MANIFEST_LEN}", b.len()),
            ));
        }
        if crc32c::crc32c(&b[..MANIFEST_LEN - 4]) != u32_at(b, MANIFEST_LEN - 4) {
            return Err(Error::corrupt(
                dir.join(MANIFEST),
                (MANIFEST_LEN - 4) as u64,
                "MANIFEST checksum mismatch",
            ));
        }
        let metric = Metric::from_code(u32_at(b, 16))
            .ok_or_else(|| Error::corrupt(dir.join(MANIFEST), 16, "unknown metric code"))?;
        let model_len = u32_at(b, 20) as usize;
        if model_len > MAX_MODEL_LEN {
            return Err(Error::corrupt(
                dir.join(MANIFEST),
                20,
                "model name too long",
            ));
        }
        let model = std::str::from_utf8(&b[24..24 + model_len])
            .map_err(|_| Error::corrupt(dir.join(MANIFEST), 24, "model name is not UTF-8"))?;
        let flags = u32_at(b, MANIFEST_LEN - 8);
        if flags & !FLAG_INT8_MIRROR != 0 {
            return Err(Error::corrupt(
                dir.join(MANIFEST),
                (MANIFEST_LEN - 8) as u64,
                format!("unknown flags {flags:#x}"),
            ));
        }
        let manifest = Manifest {
            dimension: u32_at(b, 12) as usize,
            metric,
            model: (!model.is_empty()).then(|| model.to_string()),
            int8_mirror: flags & FLAG_INT8_MIRROR != 0,
        };
        Ok((manifest, version))
    }
}

/// Which generation of each data file a version uses (files are `{number:06}.{kind}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct FileNumbers {
    pub episodes: u64,
    pub concepts: u64,
    pub episode_table: u64,
    pub concept_table: u64,
    pub bindings: u64,
    pub heap: u64,
    /// 0 when no episode has a key yet.
    pub keys: u64,
    /// 0 unless the database keeps an int8 mirror of the embeddings.
    pub int8: u64,
    pub pages: u64,
    pub networks: u64,
}

impl FileNumbers {
    /// A number no file of these uses yet.
    pub(crate) fn next(&self) -> u64 {
        self.all().iter().map(|f| f.0).max().unwrap_or(0) + 1
    }

    pub(crate) fn all(&self) -> [(u64, &'static str); crate::store::snapshot::FILES] {
        [
            (self.episodes, "eps"),
            (self.concepts, "con"),
            (self.episode_table, "etab"),
            (self.concept_table, "ctab"),
            (self.bindings, "bnd"),
            (self.heap, "heap"),
            (self.keys, "keys"),
            (self.int8, "i8"),
            (self.pages, "pages"),
            (self.networks, "nets"),
        ]
    }
}

pub(crate) fn file_name(number: u64, kind: &str) -> String {
    format!("{number:06}.{kind}")
}

/// Whether `name` is what [`file_name`] makes (any number, one of our kinds): recovery
/// removes such files when no commit names them, and nothing else a user left beside them.
pub(crate) fn is_data_file(name: &str) -> bool {
    name.split_once('.').is_some_and(|(number, kind)| {
        number.len() >= 6
            && number.bytes().all(|b| b.is_ascii_digit())
            && FileNumbers::default().all().iter().any(|&(_, k)| k == kind)
    })
}

/// Everything a snapshot needs to know about one committed version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct VersionState {
    pub txn: u64,
    pub episode_ids: u64,
    pub episode_slots: u64,
    pub concept_ids: u64,
    pub concept_slots: u64,
    pub bindings: u64,
    pub heap_len: u64,
    pub key_cells: u64,
    pub key_count: u64,
    pub live_episodes: u64,
    pub live_concepts: u64,
    pub live_bindings: u64,
    /// Pages of network weights, and bytes of the network catalog.
    pub pages: u64,
    pub catalog_len: u64,
    pub files: FileNumbers,
    /// No live episode expires before this clock time (`i64::MAX`: none expires). A lower
    /// bound, not exact: deleting the episode that set it leaves it in place until the next
    /// reap or compaction recomputes it. Readers whose clock is below it skip expiry checks.
    pub next_expiry: i64,
    /// Live concepts with no live binding (fan count 0): kept by every commit, recounted by
    /// compaction, so `stats()` reports them without a scan.
    pub empty_concepts: u64,
    /// Binding records from this index on may have moved list heads (table `bind_head`
    /// words) whose stamps are not on disk yet: recovery re-derives those heads from the
    /// records. Heads moved by older records are durable.
    pub heads_from: u64,
    /// The first episode id the episode table holds an entry for: compaction drops the
    /// entries of a leading run of ids it no longer stores (those ids are gone for good),
    /// so a database that forgets its oldest episodes keeps no table bytes for them.
    pub episode_table_from: u64,
    /// The same for concepts.
    pub concept_table_from: u64,
    /// Runs of older ids the episode table still holds entries for, listed in the
    /// directory at the start of its file (format version 9; see `store::tables`).
    pub episode_table_runs: u64,
    /// The same for concepts.
    pub concept_table_runs: u64,
}

impl Default for VersionState {
    fn default() -> Self {
        VersionState {
            txn: 0,
            episode_ids: 0,
            episode_slots: 0,
            concept_ids: 0,
            concept_slots: 0,
            bindings: 0,
            heap_len: 0,
            key_cells: 0,
            key_count: 0,
            live_episodes: 0,
            live_concepts: 0,
            live_bindings: 0,
            pages: 0,
            catalog_len: 0,
            files: FileNumbers::default(),
            next_expiry: i64::MAX,
            empty_concepts: 0,
            heads_from: 0,
            episode_table_from: 0,
            concept_table_from: 0,
            episode_table_runs: 0,
            concept_table_runs: 0,
        }
    }
}

pub(crate) const STATE_LEN: usize = 31 * 8;

impl VersionState {
    fn words(&self) -> [u64; 31] {
        let f = &self.files;
        [
            self.txn,
            self.episode_ids,
            self.episode_slots,
            self.concept_ids,
            self.concept_slots,
            self.bindings,
            self.heap_len,
            self.key_cells,
            self.key_count,
            self.live_episodes,
            self.live_concepts,
            self.live_bindings,
            f.episodes,
            f.concepts,
            f.episode_table,
            f.concept_table,
            f.bindings,
            f.heap,
            f.keys,
            f.int8,
            self.pages,
            self.catalog_len,
            f.pages,
            f.networks,
            self.next_expiry as u64,
            self.empty_concepts,
            self.heads_from,
            self.episode_table_from,
            self.concept_table_from,
            self.episode_table_runs,
            self.concept_table_runs,
        ]
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        for w in self.words() {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }

    /// Decodes `b`, whose words past its end (those older formats lack) read as 0.
    pub(crate) fn decode(b: &[u8]) -> Self {
        let w = |i: usize| {
            if (i + 1) * 8 <= b.len() {
                u64_at(b, i * 8)
            } else {
                0
            }
        };
        VersionState {
            txn: w(0),
            episode_ids: w(1),
            episode_slots: w(2),
            concept_ids: w(3),
            concept_slots: w(4),
            bindings: w(5),
            heap_len: w(6),
            key_cells: w(7),
            key_count: w(8),
            live_episodes: w(9),
            live_concepts: w(10),
            live_bindings: w(11),
            pages: w(20),
            catalog_len: w(21),
            files: FileNumbers {
                episodes: w(12),
                concepts: w(13),
                episode_table: w(14),
                concept_table: w(15),
                bindings: w(16),
                heap: w(17),
                keys: w(18),
                int8: w(19),
                pages: w(22),
                networks: w(23),
            },
            next_expiry: w(24) as i64,
            empty_concepts: w(25),
            heads_from: w(26),
            episode_table_from: w(27),
            concept_table_from: w(28),
            episode_table_runs: w(29),
            concept_table_runs: w(30),
        }
    }
}

/// An in-place change made after the commit point, logged so recovery can redo it.
/// Every op is idempotent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    EpisodeDeleted(u64),
    ConceptHead {
        id: u64,
        slot: u64,
    },
    ConceptDeleted(u64),
    BindingDeleted(u64),
    KeyInsert {
        hash: u64,
        id: u64,
    },
    /// Absolute values, so redoing them twice is harmless.
    EpisodeAccessedAt {
        id: u64,
        at: i64,
    },
    EpisodeAccessCount {
        id: u64,
        count: u64,
    },
}

pub(crate) const OP_LEN: usize = 24;

impl Op {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let (k, a, b) = match *self {
            Op::EpisodeDeleted(id) => (1, id, 0),
            Op::ConceptHead { id, slot } => (3, id, slot),
            Op::ConceptDeleted(id) => (4, id, 0),
            Op::BindingDeleted(r) => (6, r, 0),
            Op::KeyInsert { hash, id } => (7, hash, id),
            Op::EpisodeAccessedAt { id, at } => (8, id, at as u64),
            Op::EpisodeAccessCount { id, count } => (9, id, count),
        };
        for w in [k, a, b] {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }

    pub(crate) fn decode(b: &[u8]) -> Option<Self> {
        let (k, a, c) = (u64_at(b, 0), u64_at(b, 8), u64_at(b, 16));
        Some(match k {
            1 => Op::EpisodeDeleted(a),
            3 => Op::ConceptHead { id: a, slot: c },
            4 => Op::ConceptDeleted(a),
            6 => Op::BindingDeleted(a),
            7 => Op::KeyInsert { hash: a, id: c },
            8 => Op::EpisodeAccessedAt {
                id: a,
                at: c as i64,
            },
            9 => Op::EpisodeAccessCount { id: a, count: c },
            _ => return None,
        })
    }
}

/// `commit.0` / `commit.1`: each commit record goes into the file the newest one is not in.
pub(crate) fn commit_file(slot: u64) -> String {
    format!("commit.{}", slot % 2)
}

/// What the files a creation writes beside the data files (`MANIFEST.tmp`, `head`, the
/// commit records) begin with, by name; `None` for any other name.
pub(crate) fn creation_magic(name: &str) -> Option<Vec<u8>> {
    match name {
        MANIFEST_TMP => Some(MANIFEST_MAGIC.to_vec()),
        HEAD => Some(HEAD_MAGIC.to_le_bytes().to_vec()),
        WAL => Some(WAL_MAGIC.to_vec()),
        _ if (0..2).any(|txn| commit_file(txn) == name) => {
            Some(COMMIT.magic.to_le_bytes().to_vec())
        }
        _ => None,
    }
}

/// A commit record: the state after the transaction and the in-place ops to redo.
pub(crate) fn encode_commit(state: &VersionState, ops: &[Op]) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 + STATE_LEN + 8 + ops.len() * OP_LEN);
    b.extend_from_slice(&COMMIT.magic.to_le_bytes());
    b.extend_from_slice(&[0; 4]); // crc, filled below
    let body_len = STATE_LEN + 8 + ops.len() * OP_LEN;
    b.extend_from_slice(&(body_len as u64).to_le_bytes());
    state.encode(&mut b);
    b.extend_from_slice(&(ops.len() as u64).to_le_bytes());
    for op in ops {
        op.encode(&mut b);
    }
    let crc = crc32c::crc32c(&b[8..]);
    b[4..8].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Decodes a commit record of `layout` ([`COMMIT`], or an older format's); `None` for
/// anything torn, foreign or damaged. A record of one format never decodes as another's:
/// from format 10 on the magic names the format, and the op areas of formats 7, 8 and 9
/// differ by 16 or 32 bytes, not a whole number of ops.
pub(crate) fn decode_commit(b: &[u8], layout: CommitLayout) -> Option<(VersionState, Vec<Op>)> {
    let state_len = layout.state_len;
    if b.len() < 16 + state_len + 8 || u32_at(b, 0) != layout.magic {
        return None;
    }
    let body_len = usize::try_from(u64_at(b, 8)).ok()?;
    let end = 16usize.checked_add(body_len)?;
    if end > b.len() || body_len < state_len + 8 {
        return None;
    }
    if crc32c::crc32c(&b[8..end]) != u32_at(b, 4) {
        return None;
    }
    let state = VersionState::decode(&b[16..16 + state_len]);
    let n = usize::try_from(u64_at(b, 16 + state_len)).ok()?;
    let ops_start = 16 + state_len + 8;
    if n.checked_mul(OP_LEN)? != end - ops_start {
        return None;
    }
    let ops = b[ops_start..end]
        .chunks_exact(OP_LEN)
        .map(Op::decode)
        .collect::<Option<Vec<_>>>()?;
    Some((state, ops))
}

/// One head slot (`head` holds two, txn T in slot T % 2).
pub(crate) fn encode_head(state: &VersionState) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEAD_SLOT as usize);
    b.extend_from_slice(&HEAD_MAGIC.to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    state.encode(&mut b);
    let crc = crc32c::crc32c(&b[8..]);
    b[4..8].copy_from_slice(&crc.to_le_bytes());
    b
}

/// The newest valid head slot.
pub(crate) fn decode_head(b: &[u8]) -> Option<VersionState> {
    (0..2)
        .filter_map(|i| {
            let s = b.get(i * HEAD_SLOT as usize..(i * HEAD_SLOT as usize) + 8 + STATE_LEN)?;
            (u32_at(s, 0) == HEAD_MAGIC && crc32c::crc32c(&s[8..]) == u32_at(s, 4))
                .then(|| VersionState::decode(&s[8..]))
        })
        .max_by_key(|s| s.txn)
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_record_round_trips_and_rejects_any_flipped_byte() {
        let state = VersionState {
            txn: 9,
            episode_ids: 3,
            ..Default::default()
        };
        let ops = [
            Op::EpisodeDeleted(2),
            Op::KeyInsert { hash: 5, id: 1 },
            Op::EpisodeAccessedAt { id: 1, at: -7 },
            Op::EpisodeAccessCount { id: 1, count: 3 },
        ];
        let b = encode_commit(&state, &ops);
        assert_eq!(decode_commit(&b, COMMIT), Some((state, ops.to_vec())));
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x40;
            assert_eq!(decode_commit(&c, COMMIT), None, "flip at {i} accepted");
        }
        assert_eq!(decode_commit(&b[..b.len() - 1], COMMIT), None);
        // Format 9's state is as long as this one's: only the magic tells the records apart.
        let mut old = b.clone();
        old[..4].copy_from_slice(b"EGCR");
        let format_9 = upgradable(9).unwrap();
        assert_eq!(decode_commit(&old, format_9), Some((state, ops.to_vec())));
        assert_eq!(decode_commit(&old, COMMIT), None);
        for v in [7, 8, 9] {
            assert_eq!(
                decode_commit(&b, upgradable(v).unwrap()),
                None,
                "format {v}"
            );
        }
        assert_eq!(&b[..4], b"EG\x0b\x00");
        // Format 10's records differ in the magic alone.
        let mut format_10 = b.clone();
        format_10[2] = 10;
        assert_eq!(
            decode_commit(&format_10, upgradable(10).unwrap()),
            Some((state, ops.to_vec()))
        );
        assert_eq!(decode_commit(&format_10, COMMIT), None);
    }
}
