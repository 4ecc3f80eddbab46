//! The write-ahead log: a small commit writes its appended bytes and redo ops into one
//! entry of one file and syncs that file alone, instead of syncing every data file it
//! wrote and then its commit record. A commit syncs the data files in place (a
//! **checkpoint**, the classic two-round commit) only when its entry would be large, would
//! not fit behind the last one, or the commit changes what the commit record alone may
//! change; recovery replays the entries that follow the newest commit record.
//!
//! Why: an `fdatasync` costs about one device flush per file, concurrent or not, so a
//! commit of one event that synced its slot, table, heap and record files paid four. The
//! log's bytes are overwritten in place once it has grown to its size, so its sync changes
//! no file metadata either.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::fault;
use crate::store::meta::{OP_LEN, Op, STATE_LEN, VersionState, WAL, WAL_MAGIC as MAGIC};
use crate::store::snapshot::{ROLES, Role};

/// Entries start at multiples of this: a new entry never shares a sector (or a page) with
/// an acknowledged one, so a torn write cannot damage a commit that was reported durable.
const ALIGN: u64 = 4096;
/// The log's size: an entry that would end past it is a checkpoint instead.
pub(crate) const CAPACITY: u64 = 4 << 20;
/// The largest entry: a commit appending more syncs it in place, where its bytes go anyway.
pub(crate) const ENTRY_MAX: u64 = 1 << 20;
/// The log grows by this much of zeros at a time, so that later entries overwrite
/// allocated blocks (syncing them commits no file-system metadata).
const GROW: u64 = 1 << 20;
/// magic, crc, body length, base txn.
const HEAD: usize = 24;

/// Bytes a commit appended to one data file, from byte `at` on.
pub(crate) struct Range<'a> {
    pub role: Role,
    pub at: u64,
    pub bytes: &'a [u8],
}

/// The bytes of an entry for the transaction of `state`, which follows the commit record
/// of txn `base`: the state after it, its ops and its appended ranges, zero-padded to
/// [`ALIGN`] (`docs/format.md`, "Write-ahead log").
pub(crate) fn encode(base: u64, state: &VersionState, ops: &[Op], ranges: &[Range<'_>]) -> Vec<u8> {
    let data: usize = ranges
        .iter()
        .map(|r| 24 + r.bytes.len().next_multiple_of(8))
        .sum();
    let body_len = 8 + STATE_LEN + 8 + ops.len() * OP_LEN + 8 + data;
    let mut b = Vec::with_capacity((16 + body_len).next_multiple_of(ALIGN as usize));
    b.extend_from_slice(&MAGIC);
    b.extend_from_slice(&[0; 4]); // crc, filled below
    b.extend_from_slice(&(body_len as u64).to_le_bytes());
    b.extend_from_slice(&base.to_le_bytes());
    state.encode(&mut b);
    b.extend_from_slice(&(ops.len() as u64).to_le_bytes());
    for op in ops {
        op.encode(&mut b);
    }
    b.extend_from_slice(&(ranges.len() as u64).to_le_bytes());
    for r in ranges {
        for w in [r.role as u64, r.at, r.bytes.len() as u64] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b.extend_from_slice(r.bytes);
        b.resize(b.len().next_multiple_of(8), 0);
    }
    let crc = crc32c::crc32c(&b[8..]);
    b[4..8].copy_from_slice(&crc.to_le_bytes());
    b.resize(b.len().next_multiple_of(ALIGN as usize), 0);
    b
}

/// One decoded entry, borrowing its ranges' bytes from the log.
pub(crate) struct Entry<'a> {
    pub base: u64,
    pub state: VersionState,
    pub ops: Vec<Op>,
    pub ranges: Vec<Range<'a>>,
    /// Bytes the entry takes in the log, padding included.
    pub len: u64,
}

/// The entry at the start of `b`; `None` for anything torn, stale-looking or damaged.
pub(crate) fn decode(b: &[u8]) -> Option<Entry<'_>> {
    if b.len() < HEAD || b[..4] != MAGIC {
        return None;
    }
    let body_len = usize::try_from(u64_at(b, 8)).ok()?;
    let end = 16usize.checked_add(body_len)?;
    if end > b.len() || body_len < 8 + STATE_LEN + 16 {
        return None;
    }
    if crc32c::crc32c(&b[8..end]) != u32::from_le_bytes(b[4..8].try_into().ok()?) {
        return None;
    }
    let base = u64_at(b, 16);
    let state = VersionState::decode(&b[HEAD..HEAD + STATE_LEN]);
    let mut at = HEAD + STATE_LEN;
    let n = usize::try_from(u64_at(b, at)).ok()?;
    at += 8;
    let ops_end = n.checked_mul(OP_LEN)?.checked_add(at)?;
    if ops_end + 8 > end {
        return None;
    }
    let ops = b[at..ops_end]
        .chunks_exact(OP_LEN)
        .map(Op::decode)
        .collect::<Option<Vec<_>>>()?;
    at = ops_end;
    let m = u64_at(b, at);
    at += 8;
    let mut ranges = Vec::new();
    for _ in 0..m {
        if at + 24 > end {
            return None;
        }
        let role = *ROLES.get(usize::try_from(u64_at(b, at)).ok()?)?;
        let off = u64_at(b, at + 8);
        let len = usize::try_from(u64_at(b, at + 16)).ok()?;
        at += 24;
        let stop = at.checked_add(len)?;
        if stop > end {
            return None;
        }
        ranges.push(Range {
            role,
            at: off,
            bytes: &b[at..stop],
        });
        at = stop.next_multiple_of(8);
    }
    if at != end {
        return None;
    }
    Some(Entry {
        base,
        state,
        ops,
        ranges,
        len: (end as u64).next_multiple_of(ALIGN),
    })
}

/// The entries that follow the commit record of txn `base` (`base + 1`, `base + 2`, ...,
/// each whole), and the offset where the next one goes. `Corruption`, not a silent loss
/// of acknowledged commits, when a valid entry further on, past one that is not, follows
/// `base` too (an acknowledged entry was damaged), or follows a newer record (entries are
/// written only once the record they follow is durable: that record was damaged).
pub(crate) fn entries<'a>(path: &Path, log: &'a [u8], base: u64) -> Result<(Vec<Entry<'a>>, u64)> {
    let mut found: Vec<Entry<'a>> = Vec::new();
    let mut pos = 0u64;
    while let Some(e) = log.get(pos as usize..).and_then(decode) {
        let next_txn = found.last().map_or(base, |e| e.state.txn) + 1;
        if e.base != base || e.state.txn != next_txn {
            break;
        }
        pos += e.len;
        found.push(e);
    }
    let last = found.last().map_or(base, |e| e.state.txn);
    let mut at = 0;
    while at < log.len() as u64 {
        if let Some(e) = decode(&log[at as usize..]) {
            if e.base > base {
                return Err(Error::corrupt(
                    path,
                    at,
                    format!(
                        "the newest commit record is txn {base}, but the write-ahead log holds txn {} following a record of txn {}: that record is damaged",
                        e.state.txn, e.base
                    ),
                ));
            }
            if at >= pos && e.base == base && e.state.txn > last {
                return Err(Error::corrupt(
                    path,
                    pos,
                    format!(
                        "write-ahead log entry damaged: txn {} follows it at byte {at}",
                        e.state.txn
                    ),
                ));
            }
        }
        at += ALIGN;
    }
    Ok((found, pos))
}

/// The writer's log: where the next entry goes and which commit record they follow.
pub(crate) struct Wal {
    file: File,
    path: PathBuf,
    /// Bytes the file holds: overwriting them changes no file-system metadata.
    len: u64,
    /// Where the next entry goes.
    pos: u64,
    /// The txn of the commit record the entries follow.
    base: u64,
}

impl Wal {
    /// Reads the log of `dir`: its first [`CAPACITY`] bytes, past which no entry is ever
    /// written (so a damaged, huge file costs no more).
    pub(crate) fn read(dir: &Path) -> Result<Vec<u8>> {
        use std::io::Read;
        let path = dir.join(WAL);
        let mut log = Vec::new();
        File::open(&path)
            .and_then(|f| f.take(CAPACITY).read_to_end(&mut log))
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    Error::corrupt(&path, 0, "write-ahead log is missing")
                }
                _ => Error::io("read", &path, e),
            })?;
        Ok(log)
    }

    /// The log of `dir` open for writing, its next entry at `pos` after the record of `base`.
    pub(crate) fn open(dir: &Path, base: u64, pos: u64) -> Result<Wal> {
        let path = dir.join(WAL);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat", &path, e))?
            .len();
        Ok(Wal {
            file,
            path,
            len,
            pos,
            base,
        })
    }

    /// Whether an entry of `len` bytes goes in the log (else its commit is a checkpoint).
    pub(crate) fn fits(&self, len: u64) -> bool {
        len <= ENTRY_MAX && self.pos + len <= CAPACITY
    }

    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    /// Whether entries follow the last commit record: a close then checkpoints.
    pub(crate) fn has_entries(&self) -> bool {
        self.pos > 0
    }

    /// Writes and syncs `entry` after the last one: the commit point of its transaction.
    /// Growing the file, it writes zeros up to the next [`GROW`] boundary with it.
    pub(crate) fn append(&mut self, entry: &[u8]) -> Result<()> {
        let end = self.pos + entry.len() as u64;
        let mut grown;
        let bytes = match end > self.len {
            true => {
                grown = entry.to_vec();
                let to = end.next_multiple_of(GROW).min(CAPACITY).max(end);
                grown.resize((to - self.pos) as usize, 0);
                &grown[..]
            }
            false => entry,
        };
        fault::write_all_at(&self.file, bytes, self.pos, "wal")
            .map_err(|e| Error::io("write", &self.path, e))?;
        fault::io(fault::IoOp::Sync, "wal")
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::io("fsync", &self.path, e))?;
        fault::synced(&self.path);
        self.len = self.len.max(self.pos + bytes.len() as u64);
        self.pos = end;
        Ok(())
    }

    /// After a commit record of txn `base`: the entries start again at the front.
    pub(crate) fn restart(&mut self, base: u64) {
        self.base = base;
        self.pos = 0;
    }

    /// Empties the file once a close has recorded every commit, so that the next open
    /// reads nothing (the next writer grows it again, a [`GROW`] at a time). Unsynced: if
    /// the truncation is lost, the entries left follow an older record and are ignored.
    pub(crate) fn clear(&mut self) -> Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        self.file
            .set_len(0)
            .map_err(|e| Error::io("truncate", &self.path, e))?;
        self.len = 0;
        self.pos = 0;
        Ok(())
    }
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(txn: u64) -> VersionState {
        VersionState {
            txn,
            heap_len: 40,
            ..Default::default()
        }
    }

    #[test]
    fn an_entry_round_trips_and_any_flipped_byte_is_refused() {
        let ops = [Op::EpisodeDeleted(2), Op::KeyInsert { hash: 5, id: 1 }];
        let heap = [7u8; 13];
        let table = [1u8; 48];
        let ranges = [
            Range {
                role: Role::Heap,
                at: 27,
                bytes: &heap,
            },
            Range {
                role: Role::EpisodeTable,
                at: 96,
                bytes: &table,
            },
        ];
        let b = encode(4, &state(5), &ops, &ranges);
        assert_eq!(b.len() as u64 % ALIGN, 0);
        let e = decode(&b).unwrap();
        assert_eq!((e.base, e.state, e.len), (4, state(5), ALIGN));
        assert_eq!(e.ops, ops.to_vec());
        let got: Vec<_> = e.ranges.iter().map(|r| (r.role, r.at, r.bytes)).collect();
        assert_eq!(
            got,
            [
                (Role::Heap, 27, &heap[..]),
                (Role::EpisodeTable, 96, &table[..])
            ]
        );
        let body = 16 + u64_at(&b, 8) as usize;
        for i in 0..body {
            let mut c = b.clone();
            c[i] ^= 0x21;
            assert!(decode(&c).is_none(), "flip at {i} accepted");
        }
        assert!(decode(&b[..body - 1]).is_none());
    }

    #[test]
    fn replay_stops_at_the_first_entry_out_of_sequence_and_reports_a_damaged_one() {
        let path = Path::new("wal");
        let entry = |base, txn| encode(base, &state(txn), &[], &[]);
        // Entries of base 3: txns 4 and 5, then a stale one of an older base.
        let mut log = [entry(3, 4), entry(3, 5), entry(1, 6)].concat();
        let (found, pos) = entries(path, &log, 3).unwrap();
        let txns: Vec<u64> = found.iter().map(|e| e.state.txn).collect();
        assert_eq!((txns, pos), (vec![4, 5], 2 * ALIGN));
        // An older record: its entries were overwritten by those of base 3, and base 3's
        // record must have been damaged.
        for older in [1, 2] {
            assert!(matches!(
                entries(path, &log, older),
                Err(Error::Corruption { .. })
            ));
        }
        // A newer record: every entry is stale.
        let (found, pos) = entries(path, &log, 7).unwrap();
        assert_eq!((found.len(), pos), (0, 0));
        drop(found);
        // Txn 5 damaged while txn 6 of the same base follows: an acknowledged loss.
        log.truncate(2 * ALIGN as usize);
        log.extend_from_slice(&entry(3, 6));
        log[ALIGN as usize + 40] ^= 1;
        assert!(matches!(
            entries(path, &log, 3),
            Err(Error::Corruption { .. })
        ));
        // The tail of an entry torn by a crash (never acknowledged) is not damage.
        log.truncate(2 * ALIGN as usize);
        let (found, pos) = entries(path, &log, 3).unwrap();
        assert_eq!((found.len(), pos), (1, ALIGN));
    }
}
