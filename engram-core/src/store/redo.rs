//! Redo of a commit's in-place changes: the ops a commit record lists (deletion stamps,
//! concept heads, access words, key cells), applied after its commit point and again by
//! recovery, and the list heads recovery re-derives from the binding records.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::store::file::{self, FileHandle};
use crate::store::meta::{self, Op, VersionState};
use crate::store::records::{self, binding, table};
use crate::store::snapshot::{FILES, Role};
use crate::store::tables::Tables;

/// What a commit changes in place after its commit point.
pub(crate) struct Redo<'a> {
    /// Logged in the commit record and redone by recovery.
    pub ops: &'a [Op],
    /// Not logged: recovery re-derives them from the binding records past `heads_from`.
    pub heads: &'a [HeadMove],
}

/// A node's binding list now starts at `record`.
pub(crate) struct HeadMove {
    /// `EpisodeTable` or `ConceptTable`.
    pub role: Role,
    pub id: u64,
    pub record: u64,
}

/// 8-byte stores into the data files through the writer's shared maps, and which files
/// they touched.
struct Stamps<'a> {
    handles: &'a [Option<Arc<FileHandle>>; FILES],
    /// The map each role was last stamped through: one lookup per file, not per store.
    maps: [Option<Arc<file::Mapping>>; FILES],
    touched: [bool; FILES],
}

impl<'a> Stamps<'a> {
    fn new(handles: &'a [Option<Arc<FileHandle>>; FILES]) -> Self {
        Stamps {
            handles,
            maps: Default::default(),
            touched: [false; FILES],
        }
    }

    fn word(&mut self, role: Role, off: u64) -> Result<&AtomicU64> {
        let h = self.handles[role as usize]
            .as_ref()
            .ok_or_else(|| Error::corrupt(PathBuf::new(), off, format!("no {role:?} file")))?;
        let cached = &mut self.maps[role as usize];
        if cached.as_ref().is_none_or(|m| m.len() < off + 8) {
            *cached = Some(h.covering(off + 8)?);
        }
        cached.as_ref().expect("set above").atomic_u64(off)
    }

    fn store(&mut self, role: Role, off: u64, value: u64) -> Result<()> {
        self.word(role, off)?.store(value, Ordering::Release);
        self.touched[role as usize] = true;
        Ok(())
    }
}

/// Byte offset of `field` of node `id`'s entry in `state`'s table for `role`; a node the
/// table does not hold is a damaged commit record (or a bug), never a write elsewhere.
fn entry_offset(
    tables: &Tables,
    state: &VersionState,
    role: Role,
    id: u64,
    field: u64,
) -> Result<u64> {
    tables.entry_offset(state, role, id, field).ok_or_else(|| {
        Error::corrupt(
            PathBuf::from(meta::commit_file(state.txn)),
            0,
            format!("{role:?} holds no entry for id {id}"),
        )
    })
}

/// Redoes a commit's in-place changes; every op is idempotent. Returns the files touched.
pub(super) fn apply(
    handles: &[Option<Arc<FileHandle>>; FILES],
    tables: &Tables,
    state: &VersionState,
    ops: &[Op],
) -> Result<[bool; FILES]> {
    let mut stamps = Stamps::new(handles);
    let txn = state.txn;
    let entry_offset = |role, id, field| entry_offset(tables, state, role, id, field);
    if let Some(op) = ops.iter().find(|op| !op_in_range(op, tables, state)) {
        return Err(Error::corrupt(
            PathBuf::from(meta::commit_file(txn)),
            0,
            format!("commit record names a record it does not hold: {op:?}"),
        ));
    }
    for op in ops {
        let (role, off, value) = match *op {
            Op::EpisodeDeleted(id) => (
                Role::EpisodeTable,
                entry_offset(Role::EpisodeTable, id, table::DELETED_TXN)?,
                txn,
            ),
            Op::ConceptHead { id, slot } => (
                Role::ConceptTable,
                entry_offset(Role::ConceptTable, id, table::SLOT)?,
                slot,
            ),
            Op::ConceptDeleted(id) => (
                Role::ConceptTable,
                entry_offset(Role::ConceptTable, id, table::DELETED_TXN)?,
                txn,
            ),
            Op::BindingDeleted(r) => (
                Role::Bindings,
                r * binding::SIZE + binding::DELETED_TXN,
                txn,
            ),
            Op::EpisodeAccessedAt { id, at } => (
                Role::EpisodeTable,
                entry_offset(Role::EpisodeTable, id, table::LAST_ACCESS)?,
                at as u64,
            ),
            Op::EpisodeAccessCount { id, count } => (
                Role::EpisodeTable,
                entry_offset(Role::EpisodeTable, id, table::ACCESS_COUNT)?,
                count,
            ),
            Op::KeyInsert { hash, id } => {
                let h = handles[Role::Keys as usize]
                    .as_ref()
                    .ok_or_else(|| Error::corrupt(PathBuf::new(), 0, "no key index file"))?;
                let cells = state.key_cells;
                let map = h.covering(cells * 16)?;
                let mut cell = hash & (cells - 1);
                for _ in 0..cells {
                    let h = map.atomic_u64(cell * 16)?;
                    let cur = h.load(Ordering::Acquire);
                    if cur == 0 {
                        map.atomic_u64(cell * 16 + 8)?.store(id, Ordering::Relaxed);
                        h.store(hash, Ordering::Release);
                        break;
                    }
                    if cur == hash && map.atomic_u64(cell * 16 + 8)?.load(Ordering::Acquire) == id {
                        break;
                    }
                    cell = (cell + 1) & (cells - 1);
                }
                stamps.touched[Role::Keys as usize] = true;
                continue;
            }
        };
        stamps.store(role, off, value)?;
    }
    Ok(stamps.touched)
}

/// Whether op `op` of the commit of `state` names only records that state holds.
fn op_in_range(op: &Op, t: &Tables, s: &VersionState) -> bool {
    match *op {
        Op::EpisodeDeleted(id)
        | Op::EpisodeAccessedAt { id, .. }
        | Op::EpisodeAccessCount { id, .. } => t.holds(s, Role::EpisodeTable, id),
        Op::ConceptHead { id, slot } => {
            t.holds(s, Role::ConceptTable, id) && slot < s.concept_slots
        }
        Op::ConceptDeleted(id) => t.holds(s, Role::ConceptTable, id),
        Op::BindingDeleted(r) => r < s.bindings,
        Op::KeyInsert { .. } => s.key_cells > 0,
    }
}

/// Stamps the list heads a commit's binding records moved, after its commit point (they
/// are not logged: recovery re-derives them). Returns the files touched.
pub(super) fn stamp_heads(
    handles: &[Option<Arc<FileHandle>>; FILES],
    tables: &Tables,
    state: &VersionState,
    heads: &[HeadMove],
) -> Result<[bool; FILES]> {
    let mut stamps = Stamps::new(handles);
    for h in heads {
        let off = entry_offset(tables, state, h.role, h.id, table::BIND_HEAD)?;
        stamps.store(h.role, off, h.record)?;
    }
    Ok(stamps.touched)
}

/// Re-stamps the list heads moved by binding records `heads_from..bindings` of `state`:
/// the records are durable (synced with their commits), their head stamps perhaps not.
/// A head only ever moves to a newer record, so whatever the disk kept (old or new word;
/// a torn page keeps whole sectors) is at most the true head, which is the newest record
/// of the node: raising each word to every record that names it (newest first, so older
/// ones find it raised) restores it without a map of the nodes. Returns the files changed.
pub(super) fn derive_heads(
    handles: &[Option<Arc<FileHandle>>; FILES],
    tables: &Tables,
    state: &VersionState,
) -> Result<[bool; FILES]> {
    let mut stamps = Stamps::new(handles);
    if state.heads_from == state.bindings {
        return Ok(stamps.touched);
    }
    let bnd = handles[Role::Bindings as usize]
        .as_ref()
        .ok_or_else(|| Error::corrupt(PathBuf::new(), 0, "no bindings file"))?
        .covering(state.bindings * binding::SIZE)?;
    for at in (state.heads_from..state.bindings).rev() {
        let b = binding::Binding::read(&bnd, at)?;
        for (role, id) in [
            (Role::EpisodeTable, b.episode),
            (Role::ConceptTable, b.concept),
        ] {
            let off = tables
                .entry_offset(state, role, id, table::BIND_HEAD)
                .ok_or_else(|| {
                    Error::corrupt(
                        bnd.path(),
                        at * binding::SIZE,
                        "binding names a node the committed tables do not hold",
                    )
                })?;
            let head = stamps.word(role, off)?.load(Ordering::Acquire);
            if head == records::NONE || head < at {
                stamps.store(role, off, at)?;
            }
        }
    }
    Ok(stamps.touched)
}
