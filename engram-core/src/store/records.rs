//! Record formats: the rkyv node archives in fixed-stride slots, the node-table entries and
//! the binding records. `docs/format.md` gives every byte.

use rkyv::rancor;
use rkyv::rend::f32_le;
use rkyv::util::AlignedVec;
use rkyv::with::InlineAsBox;
use rkyv::{Archive, Serialize};

use crate::error::{Error, Result};
use crate::store::file::Mapping;

#[cfg(not(target_endian = "little"))]
compile_error!(
    "engram maps little-endian f32 embeddings as native floats; big-endian hosts are unsupported"
);

/// "No such slot / record" in every 8-byte pointer field.
pub(crate) const NONE: u64 = u64::MAX;

/// A byte range in the heap file with the crc32c of its bytes.
#[derive(Archive, Serialize, Clone, Copy, Default, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub(crate) struct Blob {
    pub off: u64,
    pub len: u32,
    pub crc: u32,
}

/// Zero bytes to put before a blob of `len` bytes appended at heap offset `off`, so that it
/// spans no more cache lines than its length needs: random payload reads of 16-byte blobs
/// that straddled a line one time in four ran 1.5–2.5 % slower (one more miss each).
pub(crate) fn blob_padding(off: u64, len: usize) -> usize {
    const LINE: u64 = 64;
    let (into, len) = (off % LINE, len as u64);
    match (into + len).div_ceil(LINE) > len.div_ceil(LINE) {
        true => (LINE - into) as usize,
        false => 0,
    }
}

/// An episode as archived in its slot. The embedding is the only out-of-line data, so rkyv
/// places it at offset 0 of the archive, which is the 64-byte aligned start of the slot.
#[derive(Archive, Serialize)]
pub(crate) struct EpisodeRecord<'a> {
    #[rkyv(with = InlineAsBox)]
    pub embedding: &'a [f32],
    pub id: u64,
    pub agent: u64,
    pub timestamp: i64,
    pub payload: Blob,
    pub key: Blob,
    pub key_hash: u64,
    /// L2 norm of the embedding (computed in f64 at insert): cosine scans need only dots.
    pub norm: f32,
}

/// One version of a concept. Updates append a new version whose `prev_slot` points back,
/// so a snapshot follows the chain to the newest version with `created_txn <= snapshot`.
#[derive(Archive, Serialize)]
pub(crate) struct ConceptRecord<'a> {
    #[rkyv(with = InlineAsBox)]
    pub centroid: &'a [f32],
    pub id: u64,
    pub created_txn: u64,
    pub prev_slot: u64,
    pub label: Blob,
    /// Episodes whose normalized mean the centroid is (0: placed by hand, not formed).
    pub members: u64,
    /// Mean cosine of those members to the centroid (0 when `members` is 0).
    pub coherence: f32,
}

/// Where records sit in a slot file: archive, then its crc32c, padded to a 64-byte stride.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SlotLayout {
    pub archive_len: usize,
    pub stride: usize,
    /// Offsets in the slot of the fields scans read without decoding the archive: the id,
    /// and for episodes the agent and timestamp (all little-endian 8-byte words).
    pub id_off: usize,
    pub agent_off: usize,
    pub time_off: usize,
    /// Offset of the f32 norm (episodes; for concepts it repeats `id_off` and is unused).
    pub norm_off: usize,
}

impl SlotLayout {
    fn from_archive(
        bytes: &[u8],
        data_ptr: *const f32,
        fields: [*const u8; 4],
        stride: usize,
    ) -> Self {
        debug_assert_eq!(data_ptr.cast::<u8>(), bytes.as_ptr());
        let off = |p: *const u8| p as usize - bytes.as_ptr() as usize;
        SlotLayout {
            archive_len: bytes.len(),
            stride,
            id_off: off(fields[0]),
            agent_off: off(fields[1]),
            time_off: off(fields[2]),
            norm_off: off(fields[3]),
        }
    }

    /// The little-endian word at `field` of a slot's (verified) archive.
    pub(crate) fn word(&self, archive: &[u8], field: usize) -> u64 {
        u64::from_le_bytes(archive[field..field + 8].try_into().expect("8 bytes"))
    }

    pub(crate) fn episode(dim: usize) -> Self {
        let zeros = vec![0.0f32; dim];
        let rec = EpisodeRecord {
            embedding: &zeros,
            id: 0,
            agent: 0,
            timestamp: 0,
            payload: Blob::default(),
            key: Blob::default(),
            key_hash: 0,
            norm: 0.0,
        };
        let bytes = serialize(&rec);
        let a = rkyv::access::<ArchivedEpisodeRecord, rancor::Error>(&bytes)
            .expect("a freshly serialized record validates");
        let fields = [
            (&raw const a.id).cast(),
            (&raw const a.agent).cast(),
            (&raw const a.timestamp).cast(),
            (&raw const a.norm).cast(),
        ];
        let stride = (bytes.len() + 4).next_multiple_of(64);
        Self::from_archive(&bytes, a.embedding.as_ptr().cast(), fields, stride)
    }

    pub(crate) fn concept(dim: usize) -> Self {
        let zeros = vec![0.0f32; dim];
        let rec = ConceptRecord {
            centroid: &zeros,
            id: 0,
            created_txn: 0,
            prev_slot: 0,
            label: Blob::default(),
            members: 0,
            coherence: 0.0,
        };
        let bytes = serialize(&rec);
        let a = rkyv::access::<ArchivedConceptRecord, rancor::Error>(&bytes)
            .expect("a freshly serialized record validates");
        let id = (&raw const a.id).cast();
        let stride = page_aligned_stride(bytes.len() + 4);
        Self::from_archive(&bytes, a.centroid.as_ptr().cast(), [id, id, id, id], stride)
    }

    /// Appends one slot (archive, crc32c, zero padding) to `out`.
    pub(crate) fn push_slot(&self, archive: &[u8], out: &mut Vec<u8>) {
        debug_assert_eq!(archive.len(), self.archive_len);
        out.extend_from_slice(archive);
        out.extend_from_slice(&crc32c::crc32c(archive).to_le_bytes());
        out.resize(out.len() + self.stride - self.archive_len - 4, 0);
    }

    /// The archive bytes of slot `index`, its checksum checked now whatever this map
    /// remembers (for `verify`).
    pub(crate) fn archive_rechecked<'m>(&self, map: &'m Mapping, index: u64) -> Result<&'m [u8]> {
        let off = index.saturating_mul(self.stride as u64);
        let slot = map.bytes(off, self.archive_len + 4)?;
        let (archive, crc) = slot.split_at(self.archive_len);
        if crc32c::crc32c(archive) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(Error::corrupt(map.path(), off, "slot checksum mismatch"));
        }
        Ok(archive)
    }

    /// The archive bytes of slot `index`, checksum verified on the first read of the slot
    /// through this map (committed slots never change under a map).
    pub(crate) fn archive<'m>(&self, map: &'m Mapping, index: u64) -> Result<&'m [u8]> {
        let off = index.saturating_mul(self.stride as u64);
        let slot = map.bytes(off, self.archive_len + 4)?;
        let (archive, crc) = slot.split_at(self.archive_len);
        if map.is_verified(index) {
            return Ok(archive);
        }
        let stored = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
        if crc32c::crc32c(archive) != stored {
            return Err(Error::corrupt(map.path(), off, "slot checksum mismatch"));
        }
        map.mark_verified(index);
        Ok(archive)
    }
}

/// A stride at which no slot straddles a 4 KiB page: a power of two up to a page, whole
/// pages beyond. Concepts are read one at a time by id, and a record that straddles two
/// pages costs a second TLB miss when warm and a second page fault when cold (measured in
/// `docs/benchmarks.md`); episodes are mostly scanned, so they stay densely packed.
fn page_aligned_stride(bytes: usize) -> usize {
    if bytes <= PAGE {
        bytes.next_power_of_two().max(64)
    } else {
        bytes.next_multiple_of(PAGE)
    }
}

/// The page size the concept layout aligns to (the smallest of the hosts we support).
const PAGE: usize = 4096;

pub(crate) fn serialize<T>(value: &T) -> AlignedVec
where
    T: for<'a> rkyv::Serialize<
            rkyv::api::high::HighSerializer<
                AlignedVec,
                rkyv::ser::allocator::ArenaHandle<'a>,
                rancor::Error,
            >,
        >,
{
    rkyv::to_bytes::<rancor::Error>(value).expect("serializing into memory cannot fail")
}

/// Structure-checks (bytecheck) an episode archive whose checksum already matched.
pub(crate) fn episode_view<'m>(
    map: &'m Mapping,
    off: u64,
    archive: &'m [u8],
) -> Result<&'m ArchivedEpisodeRecord<'static>> {
    let rec = rkyv::access::<ArchivedEpisodeRecord, rancor::Error>(archive)
        .map_err(|e| Error::corrupt(map.path(), off, format!("invalid episode archive: {e}")))?;
    vector_in_place::<ArchivedEpisodeRecord>(map, off, archive, &rec.embedding)?;
    Ok(rec)
}

pub(crate) fn concept_view<'m>(
    map: &'m Mapping,
    off: u64,
    archive: &'m [u8],
) -> Result<&'m ArchivedConceptRecord<'static>> {
    let rec = rkyv::access::<ArchivedConceptRecord, rancor::Error>(archive)
        .map_err(|e| Error::corrupt(map.path(), off, format!("invalid concept archive: {e}")))?;
    vector_in_place::<ArchivedConceptRecord>(map, off, archive, &rec.centroid)?;
    Ok(rec)
}

/// Checks that an archive's vector is where every writer puts it and scans read it: `dim`
/// floats from offset 0, then the root `Root` at the next multiple of its alignment (after
/// 4 padding bytes when `dim` is odd), ending the archive. bytecheck only proves the
/// pointer lands in bounds; a damaged (checksum-consistent) record could point elsewhere or
/// be short.
fn vector_in_place<Root>(map: &Mapping, off: u64, archive: &[u8], vector: &[f32_le]) -> Result<()> {
    let root = std::mem::size_of::<Root>();
    let in_place = std::ptr::eq(vector.as_ptr().cast::<u8>(), archive.as_ptr())
        && vector
            .len()
            .checked_mul(4)
            .map(|n| n.next_multiple_of(std::mem::align_of::<Root>()))
            .and_then(|n| n.checked_add(root))
            == Some(archive.len());
    match in_place {
        true => Ok(()),
        false => Err(Error::corrupt(
            map.path(),
            off,
            "archived vector not in place",
        )),
    }
}

/// Little-endian archived floats as native floats.
pub(crate) fn native_f32(values: &[f32_le]) -> &[f32] {
    // SAFETY: `f32_le` is `repr(C, align(4))` over one `f32` holding the little-endian bits,
    // which on this (little-endian, see compile_error above) host are the native bits; size
    // and alignment are equal, so the slice reinterprets in place.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<f32>(), values.len()) }
}

/// Rows of the int8 mirror (`.i8`), one per episode slot at the same index: `dim` codes, the
/// f32 scale, the f32 norm of the original embedding, the episode's id, agent and timestamp
/// (so a scan never touches the f32 slots), the crc32c of all that, zero padding to a 64-byte
/// stride (codes start 64-byte aligned).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Int8Layout {
    pub dim: usize,
    pub stride: usize,
}

/// An int8 row as read from the map.
pub(crate) struct Int8Row<'m> {
    pub codes: &'m [i8],
    pub scale: f32,
    pub norm: f32,
    pub id: u64,
    pub agent: u64,
    pub timestamp: i64,
}

/// Bytes after the codes: scale, norm, id, agent, timestamp.
const INT8_FIELDS: usize = 4 + 4 + 8 + 8 + 8;

impl Int8Layout {
    pub(crate) fn new(dim: usize) -> Self {
        Int8Layout {
            dim,
            stride: (dim + INT8_FIELDS + 4).next_multiple_of(64),
        }
    }

    /// Appends the row of embedding `v` (of L2 norm `norm`, as its episode record holds it)
    /// of episode (`id`, `agent`, `timestamp`) to `out`.
    pub(crate) fn push_row(
        &self,
        v: &[f32],
        norm: f32,
        id: u64,
        agent: u64,
        timestamp: i64,
        out: &mut Vec<u8>,
    ) {
        let start = out.len();
        out.resize(start + self.dim, 0);
        let codes: &mut [i8] = bytemuck::cast_slice_mut(&mut out[start..]);
        let scale = crate::similarity::int8::quantize_checked(v, codes);
        out.extend_from_slice(&scale.to_le_bytes());
        out.extend_from_slice(&norm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&agent.to_le_bytes());
        out.extend_from_slice(&timestamp.to_le_bytes());
        let crc = crc32c::crc32c(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
        out.resize(start + self.stride, 0);
    }

    /// Checks row `index`'s checksum now, whatever this map remembers (for `verify`).
    pub(crate) fn recheck(&self, map: &Mapping, index: u64) -> Result<()> {
        let off = index.saturating_mul(self.stride as u64);
        let b = map.bytes(off, self.dim + INT8_FIELDS + 4)?;
        let (body, crc) = b.split_at(self.dim + INT8_FIELDS);
        if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(Error::corrupt(
                map.path(),
                off,
                "int8 row checksum mismatch",
            ));
        }
        Ok(())
    }

    /// Row `index`, its checksum verified on the first read through this map.
    pub(crate) fn row<'m>(&self, map: &'m Mapping, index: u64) -> Result<Int8Row<'m>> {
        let off = index.saturating_mul(self.stride as u64);
        let b = map.bytes(off, self.dim + INT8_FIELDS + 4)?;
        let (body, crc) = b.split_at(self.dim + INT8_FIELDS);
        if !map.is_verified(index) {
            if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
                return Err(Error::corrupt(
                    map.path(),
                    off,
                    "int8 row checksum mismatch",
                ));
            }
            map.mark_verified(index);
        }
        let f = |i: usize| f32::from_le_bytes(body[i..i + 4].try_into().expect("4 bytes"));
        let w = |i: usize| u64::from_le_bytes(body[i..i + 8].try_into().expect("8 bytes"));
        let d = self.dim;
        Ok(Int8Row {
            codes: bytemuck::cast_slice(&body[..d]),
            scale: f(d),
            norm: f(d + 4),
            id: w(d + 8),
            agent: w(d + 16),
            timestamp: w(d + 24) as i64,
        })
    }
}

/// Node tables (`.etab`, `.ctab`): one 48-byte entry per id ever assigned.
pub(crate) mod table {
    pub(crate) const ENTRY: u64 = 48;
    /// Slot of the node's record (newest version for concepts); `NONE` once compacted away.
    pub(crate) const SLOT: u64 = 0;
    /// Txn that deleted the node, 0 while live.
    pub(crate) const DELETED_TXN: u64 = 8;
    /// Newest binding record of the node, `NONE` for none.
    pub(crate) const BIND_HEAD: u64 = 16;
    /// Clock time from which the episode is invisible (i64; `NEVER` for none and concepts).
    pub(crate) const EXPIRES_AT: u64 = 24;
    /// Clock time of the newest recorded access (i64; `NEVER_ACCESSED` for none).
    pub(crate) const LAST_ACCESS: u64 = 32;
    /// Recorded accesses.
    pub(crate) const ACCESS_COUNT: u64 = 40;

    /// Bytes of each node table read ahead at open (174,762 entries): past them a cold
    /// lookup finds its entry on disk, so it starts its record's read first (48 MiB, a
    /// million nodes, took open 45 ms to submit).
    pub(crate) const READ_AHEAD: u64 = 8 << 20;

    /// `expires_at` of a node that never expires.
    pub(crate) const NEVER: i64 = i64::MAX;
    /// `last_access` of a node no recall has recorded.
    pub(crate) const NEVER_ACCESSED: i64 = i64::MIN;

    /// A table entry's words, in file order.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) struct Words {
        pub slot: u64,
        pub deleted_txn: u64,
        pub bind_head: u64,
        pub expires_at: i64,
        pub last_access: i64,
        pub access_count: u64,
    }

    impl Words {
        /// A new live node's entry.
        pub(crate) fn new(slot: u64, bind_head: u64, expires_at: i64) -> Self {
            Words {
                slot,
                deleted_txn: 0,
                bind_head,
                expires_at,
                last_access: NEVER_ACCESSED,
                access_count: 0,
            }
        }

        pub(crate) fn encode(&self) -> [u8; ENTRY as usize] {
            let mut e = [0u8; ENTRY as usize];
            let words = [
                self.slot,
                self.deleted_txn,
                self.bind_head,
                self.expires_at as u64,
                self.last_access as u64,
                self.access_count,
            ];
            for (chunk, w) in e.chunks_exact_mut(8).zip(words) {
                chunk.copy_from_slice(&w.to_le_bytes());
            }
            e
        }
    }
}

/// Binding records (`.bnd`): 48 bytes each, immutable but for the `deleted_txn` word. A
/// record's transaction is not stored: records are appended in commit order, so a
/// snapshot sees exactly those below its `bindings` count.
pub(crate) mod binding {
    use super::*;

    pub(crate) const SIZE: u64 = 48;
    pub(crate) const DELETED_TXN: u64 = 40;
    const CHECKED: usize = 36;
    /// Bytes of a record of formats 7 to 9, which [`from_format_9`] rewrites.
    pub(crate) const FORMAT_9_SIZE: u64 = 64;

    /// A format 7 to 9 record (episode, concept, created_txn, the two next records, strength,
    /// crc32c of bytes 0..44, deleted_txn at 48) in this format, or `None` if its checksum
    /// fails.
    pub(crate) fn from_format_9(old: &[u8]) -> Option<[u8; SIZE as usize]> {
        if old.len() != FORMAT_9_SIZE as usize
            || crc32c::crc32c(&old[..44]).to_le_bytes() != old[44..48]
        {
            return None;
        }
        let u = |i: usize| u64::from_le_bytes(old[i..i + 8].try_into().expect("8 bytes"));
        let mut b = Binding {
            episode: u(0),
            concept: u(8),
            next_by_episode: u(24),
            next_by_concept: u(32),
            strength: f32::from_le_bytes(old[40..44].try_into().expect("4 bytes")),
        }
        .encode();
        b[DELETED_TXN as usize..].copy_from_slice(&old[48..56]);
        Some(b)
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    pub(crate) struct Binding {
        pub episode: u64,
        pub concept: u64,
        pub next_by_episode: u64,
        pub next_by_concept: u64,
        pub strength: f32,
    }

    /// Follows one list of bindings (by episode or by concept) from `head`, newest first,
    /// keeping the records `keep` accepts; `read` fetches a record. Pointers must strictly
    /// descend, so a damaged list ends in `Corruption` (in `file`), never in a cycle.
    pub(crate) fn walk(
        head: u64,
        by_episode: bool,
        file: &std::path::Path,
        read: impl Fn(u64) -> Result<Binding>,
        keep: impl Fn(u64, &Binding) -> Result<bool>,
    ) -> Result<Vec<(u64, Binding)>> {
        let mut out = Vec::new();
        follow(head, by_episode, file, read, |at, b| {
            if keep(at, &b)? {
                out.push((at, b));
            }
            Ok(true)
        })?;
        Ok(out)
    }

    /// The first record of the list from `head` (newest first) that `keep` accepts; stops
    /// there.
    pub(crate) fn find(
        head: u64,
        by_episode: bool,
        file: &std::path::Path,
        read: impl Fn(u64) -> Result<Binding>,
        keep: impl Fn(u64, &Binding) -> Result<bool>,
    ) -> Result<Option<(u64, Binding)>> {
        let mut found = None;
        follow(head, by_episode, file, read, |at, b| {
            if keep(at, &b)? {
                found = Some((at, b));
            }
            Ok(found.is_none())
        })?;
        Ok(found)
    }

    /// Calls `visit` on each record of the list while it returns true.
    fn follow(
        head: u64,
        by_episode: bool,
        file: &std::path::Path,
        read: impl Fn(u64) -> Result<Binding>,
        mut visit: impl FnMut(u64, Binding) -> Result<bool>,
    ) -> Result<()> {
        let mut at = head;
        while at != NONE {
            let b = read(at)?;
            let next = if by_episode {
                b.next_by_episode
            } else {
                b.next_by_concept
            };
            if !visit(at, b)? {
                return Ok(());
            }
            if next != NONE && next >= at {
                return Err(Error::corrupt(
                    file,
                    at.saturating_mul(SIZE),
                    "binding list does not descend",
                ));
            }
            at = next;
        }
        Ok(())
    }

    impl Binding {
        pub(crate) fn encode(&self) -> [u8; SIZE as usize] {
            let mut b = [0u8; SIZE as usize];
            b[0..8].copy_from_slice(&self.episode.to_le_bytes());
            b[8..16].copy_from_slice(&self.concept.to_le_bytes());
            b[16..24].copy_from_slice(&self.next_by_episode.to_le_bytes());
            b[24..32].copy_from_slice(&self.next_by_concept.to_le_bytes());
            b[32..36].copy_from_slice(&self.strength.to_le_bytes());
            let crc = crc32c::crc32c(&b[..CHECKED]);
            b[36..40].copy_from_slice(&crc.to_le_bytes());
            b
        }

        /// Reads and checks the immutable part of record `index`.
        pub(crate) fn read(map: &Mapping, index: u64) -> Result<Binding> {
            let off = index.saturating_mul(SIZE);
            let b = map.bytes(off, DELETED_TXN as usize)?;
            let u = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
            let crc = u32::from_le_bytes(b[36..40].try_into().expect("4 bytes"));
            if crc32c::crc32c(&b[..CHECKED]) != crc {
                return Err(Error::corrupt(map.path(), off, "binding checksum mismatch"));
            }
            Ok(Binding {
                episode: u(0),
                concept: u(8),
                next_by_episode: u(16),
                next_by_concept: u(24),
                strength: f32::from_le_bytes(b[32..36].try_into().expect("4 bytes")),
            })
        }
    }
}

/// L2 norm, accumulated in f64 (exact to f32 rounding) over 8 independent lanes, so it
/// vectorizes instead of running one 768-long chain of dependent adds per insert.
pub(crate) fn norm(v: &[f32]) -> f32 {
    squared_norm(v).sqrt() as f32
}

/// [`norm`] squared, in f64.
pub(crate) fn squared_norm(v: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = v.chunks_exact(8);
    let tail: f64 = chunks
        .remainder()
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum();
    for c in chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += f64::from(*x) * f64::from(*x);
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Stable 64-bit hash of a user key; never 0, which marks an empty key-index cell.
pub(crate) fn key_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_blobs_span_the_fewest_cache_lines() {
        for off in 0..200u64 {
            for len in 0..200usize {
                let pad = blob_padding(off, len) as u64;
                assert!(pad < 64);
                let start = off + pad;
                let lines = |s: u64| (s % 64 + len as u64).div_ceil(64);
                assert_eq!(
                    lines(start),
                    (len as u64).div_ceil(64),
                    "off {off} len {len}"
                );
                // Padding only where it saves a line.
                assert!(pad == 0 || lines(off) > lines(start), "off {off} len {len}");
            }
        }
    }

    #[test]
    fn norms_match_a_plain_f64_sum() {
        for n in [0usize, 1, 7, 8, 9, 768, 771] {
            let v: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
            let want = v
                .iter()
                .map(|x| f64::from(*x) * f64::from(*x))
                .sum::<f64>()
                .sqrt() as f32;
            assert!((norm(&v) - want).abs() <= want * 1e-7, "{n}");
        }
    }

    /// Pins the documented byte layout (docs/format.md) of the episode and concept archives.
    #[test]
    fn archive_layout_matches_the_format_spec() {
        let v = [1.0f32, 2.0];
        let ep = serialize(&EpisodeRecord {
            embedding: &v,
            id: 0x11,
            agent: 0x22,
            timestamp: 0x33,
            payload: Blob {
                off: 0x44,
                len: 0x55,
                crc: 0x66,
            },
            key: Blob {
                off: 0x77,
                len: 0x88,
                crc: 0x99,
            },
            key_hash: 0xAA,
            norm: 2.5,
        });
        let u64_at = |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        let u32_at = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        assert_eq!(ep.len(), 8 + 80);
        assert_eq!(
            &ep[0..8],
            [1.0f32.to_le_bytes(), 2.0f32.to_le_bytes()].concat()
        );
        let r = 8; // root follows the floats
        assert_eq!(u32_at(&ep, r) as i32, -(r as i32)); // relative pointer back to offset 0
        assert_eq!(u32_at(&ep, r + 4), 2); // element count
        let fields = [
            (r + 8, 0x11),
            (r + 16, 0x22),
            (r + 24, 0x33),
            (r + 32, 0x44),
            (r + 48, 0x77),
            (r + 64, 0xAA),
        ];
        for (at, want) in fields {
            assert_eq!(u64_at(&ep, at), want, "u64 at {at}");
        }
        assert_eq!((u32_at(&ep, r + 40), u32_at(&ep, r + 44)), (0x55, 0x66));
        assert_eq!((u32_at(&ep, r + 56), u32_at(&ep, r + 60)), (0x88, 0x99));
        assert_eq!(f32::from_bits(u32_at(&ep, r + 72)), 2.5);
        let l = SlotLayout::episode(768);
        assert_eq!((l.archive_len, l.stride), (3072 + 80, 3200));
        assert_eq!(
            (l.id_off, l.agent_off, l.time_off, l.norm_off),
            (3072 + 8, 3072 + 16, 3072 + 24, 3072 + 72)
        );
        let con = serialize(&ConceptRecord {
            centroid: &v,
            id: 0x11,
            created_txn: 0x22,
            prev_slot: 0x33,
            label: Blob {
                off: 0x44,
                len: 0x55,
                crc: 0x66,
            },
            members: 0x77,
            coherence: 0.75,
        });
        assert_eq!(con.len(), 8 + 64);
        for (at, want) in [
            (r + 8, 0x11),
            (r + 16, 0x22),
            (r + 24, 0x33),
            (r + 32, 0x44),
            (r + 48, 0x77),
        ] {
            assert_eq!(u64_at(&con, at), want, "u64 at {at}");
        }
        assert_eq!((u32_at(&con, r + 40), u32_at(&con, r + 44)), (0x55, 0x66));
        assert_eq!(f32::from_bits(u32_at(&con, r + 56)), 0.75);
        assert_eq!(u32_at(&con, r + 60), 0); // padding to the root's 8-byte alignment
        let c = SlotLayout::concept(768);
        assert_eq!((c.archive_len, c.stride), (3072 + 64, 4096));
        for dim in [1, 16, 100, 128, 384, 768, 1000, 1024, 1536, 3072, 4096] {
            let c = SlotLayout::concept(dim);
            assert!(
                c.stride >= c.archive_len + 4 && c.stride.is_multiple_of(64),
                "{dim}"
            );
            for slot in 0..64 {
                let (start, end) = (slot * c.stride, slot * c.stride + c.archive_len + 4);
                assert!(
                    start / PAGE == (end - 1) / PAGE || start % PAGE == 0,
                    "{dim}"
                );
            }
        }
    }

    #[test]
    fn binding_records_match_the_format_spec_and_convert_from_format_9() {
        let u64_at = |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        let u32_at = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        let b = binding::Binding {
            episode: 0x11,
            concept: 0x22,
            next_by_episode: 0x33,
            next_by_concept: NONE,
            strength: 0.25,
        };
        let new = b.encode();
        for (at, want) in [(0, 0x11), (8, 0x22), (16, 0x33), (24, NONE), (40, 0)] {
            assert_eq!(u64_at(&new, at), want, "u64 at {at}");
        }
        assert_eq!(f32::from_bits(u32_at(&new, 32)), 0.25);
        assert_eq!(u32_at(&new, 36), crc32c::crc32c(&new[..36]));
        let mut old = [0u8; 64];
        for (at, w) in [
            (0, 0x11),
            (8, 0x22),
            (16, 7),
            (24, 0x33),
            (32, NONE),
            (48, 9),
        ] {
            old[at..at + 8].copy_from_slice(&u64::to_le_bytes(w));
        }
        old[40..44].copy_from_slice(&0.25f32.to_le_bytes());
        let crc = crc32c::crc32c(&old[..44]);
        old[44..48].copy_from_slice(&crc.to_le_bytes());
        let converted = binding::from_format_9(&old).expect("a valid old record");
        assert_eq!(converted[..40], new[..40]);
        assert_eq!(u64_at(&converted, 40), 9, "deleted_txn kept");
        for i in 0..48 {
            let mut bad = old;
            bad[i] ^= 1;
            assert_eq!(binding::from_format_9(&bad), None, "flip at {i} accepted");
        }
        assert_eq!(binding::from_format_9(&old[..63]), None);
    }
}
