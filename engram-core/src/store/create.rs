//! A directory's life before its handle: the writer lock, creating a database (and
//! starting again after an interrupted creation), and upgrading older formats in place.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::store::compact;
use crate::store::db::{newest_commit_with, open_files, write_head};
use crate::store::file;
use crate::store::meta::{
    self, CommitLayout, FileNumbers, LOCK, MANIFEST, MANIFEST_TMP, Manifest, VersionState,
};
use crate::store::records::binding;
use crate::store::redo::{apply, derive_heads};
use crate::store::snapshot::DbInfo;

/// How long a writer open waits for the lock: a child process forked by another thread keeps
/// a copy of a just-closed lock descriptor until its exec (microseconds to milliseconds), so
/// a reopen right after a close can find the lock briefly held. A real second writer holds
/// it for longer and still gets `Locked`.
const LOCK_ATTEMPTS: u32 = 50;

/// Takes the writer lock; `Locked` if another handle (any process) holds it. `patient`
/// retries for about 50 ms first (see [`LOCK_ATTEMPTS`]).
pub(super) fn lock(dir: &Path, patient: bool) -> Result<File> {
    let path = dir.join(LOCK);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io("open", &path, e))?;
    let attempts = if patient { LOCK_ATTEMPTS } else { 1 };
    for attempt in 1..=attempts {
        match f.try_lock() {
            Ok(()) => return Ok(f),
            Err(TryLockError::WouldBlock) if attempt < attempts => {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(TryLockError::WouldBlock) => break,
            Err(TryLockError::Error(e)) => return Err(Error::io("lock", path, e)),
        }
    }
    Err(Error::Locked {
        path: dir.to_path_buf(),
    })
}

pub(super) fn not_empty(path: PathBuf) -> Error {
    Error::NotADatabase {
        path,
        reason: "directory is not empty and has no MANIFEST".into(),
    }
}

/// What [`create`] leaves in a directory whose MANIFEST it did not get to rename into place,
/// except the lock file: `None` if the directory holds anything else, a data file that is
/// not empty (creation writes them empty), or another file of creation's names with bytes
/// it would not write (it starts them with their magic; a crash may leave them empty or
/// zeroed). A person's own file that happens to be called `head` is never taken for ours.
pub(super) fn creation_leftovers(dir: &Path) -> Result<Option<Vec<PathBuf>>> {
    let data: Vec<String> = FileNumbers::default()
        .all()
        .iter()
        .map(|&(_, kind)| meta::file_name(1, kind))
        .collect();
    let mut leftovers = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Ok(None);
        };
        if name == LOCK {
            continue;
        }
        let path = entry.path();
        let len = entry
            .metadata()
            .map_err(|e| Error::io("stat", &path, e))?
            .len();
        let ours = match meta::creation_magic(name) {
            // Each is at most 512 bytes.
            Some(magic) if len <= 4096 => {
                let bytes = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
                bytes.starts_with(&magic) || bytes.iter().all(|&b| b == 0)
            }
            Some(_) => false,
            None => len == 0 && data.iter().any(|d| d == name),
        };
        if !ours {
            return Ok(None);
        }
        leftovers.push(path);
    }
    Ok(Some(leftovers))
}

/// Writes a new, empty database into `dir` (which holds at most our lock file).
pub(super) fn create(dir: &Path, manifest: &Manifest) -> Result<()> {
    let files = FileNumbers {
        episodes: 1,
        concepts: 1,
        episode_table: 1,
        concept_table: 1,
        bindings: 1,
        heap: 1,
        keys: 0,
        int8: u64::from(manifest.int8_mirror),
        pages: 1,
        networks: 1,
    };
    for (n, kind) in files.all() {
        if n != 0 {
            file::write_durable(&dir.join(meta::file_name(n, kind)), &[])?;
        }
    }
    let state = VersionState {
        files,
        ..Default::default()
    };
    install_commit(dir, &state, manifest)
}

/// Rewrites a directory of an older format (one [`meta::upgradable`] knows) as this format
/// in place. They differ in the version state's last words, 0 in every such database, and
/// in the binding records, which lose their created_txn word: the newest old commit's
/// records are rewritten into a new `.bnd`, which its state then names. That state is
/// recovered as usual (ops redone, heads re-derived, files synced), then committed again
/// at the next txn in this format, into the other slot, then the head and last the
/// MANIFEST (renamed into place). A crash before the rename leaves an old directory whose
/// newest old record is the one recovered (the new record never decodes as an old one),
/// so the next open upgrades again, and recovery removes the old `.bnd` once the new
/// commit names the other. Record for record, the two files answer the same reads.
pub(super) fn upgrade(info: &Arc<DbInfo>, layout: CommitLayout) -> Result<()> {
    let dir = &info.dir;
    let old = newest_commit_with(dir, layout)?;
    let (mut state, ops) = (old.state, old.ops);
    if layout.old_bindings && state.files.bindings != 0 {
        let number = state.files.next();
        rewrite_bindings(
            &dir.join(meta::file_name(state.files.bindings, "bnd")),
            &dir.join(meta::file_name(number, "bnd")),
            state.bindings,
        )?;
        file::sync_dir(dir)?;
        state.files.bindings = number;
    }
    let (handles, tables) = open_files(info, &state, true, None, None)?;
    apply(&handles, &tables, &state, &ops)?;
    derive_heads(&handles, &tables, &state)?;
    for h in handles.iter().flatten() {
        h.sync()?;
    }
    let next = VersionState {
        txn: state.txn + 1,
        // Every head is on disk now.
        heads_from: state.bindings,
        ..state
    };
    file::write_durable(
        &dir.join(meta::commit_file(1 - old.slot)),
        &meta::encode_commit(&next, &[]),
    )?;
    write_head(dir, &next)?;
    // The log starts empty (a file of an interrupted upgrade is empty too: no entry is
    // written before the MANIFEST's rename).
    file::write_durable(&dir.join(meta::WAL), &[])?;
    install_manifest(dir, &info.manifest)
}

/// Writes the first `count` binding records of `old`, a format 7 to 9 file, into a new
/// file `new` in this format, and syncs it. A file left at `new` by an interrupted upgrade
/// is replaced.
fn rewrite_bindings(old: &Path, new: &Path, count: u64) -> Result<()> {
    use std::os::unix::fs::FileExt;
    const PIECE: u64 = 4096;
    let src = File::open(old).map_err(|e| Error::io("open", old, e))?;
    match std::fs::remove_file(new) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::io("remove", new, e));
        }
        _ => {}
    }
    let mut dst = compact::Sink::new(new.to_path_buf(), "rewrite_bindings")?;
    let mut buf = vec![0u8; (PIECE * binding::FORMAT_9_SIZE) as usize];
    let mut out = Vec::with_capacity((PIECE * binding::SIZE) as usize);
    let mut at = 0;
    while at < count {
        let n = (count - at).min(PIECE);
        let bytes = &mut buf[..(n * binding::FORMAT_9_SIZE) as usize];
        let off = at * binding::FORMAT_9_SIZE;
        src.read_exact_at(bytes, off).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                Error::corrupt(old, off, "binding file shorter than its commit says")
            }
            _ => Error::io("read", old, e),
        })?;
        out.clear();
        for (i, r) in (at..).zip(bytes.chunks_exact(binding::FORMAT_9_SIZE as usize)) {
            let record = binding::from_format_9(r).ok_or_else(|| {
                Error::corrupt(old, i * binding::FORMAT_9_SIZE, "binding checksum mismatch")
            })?;
            out.extend_from_slice(&record);
        }
        dst.write(&out)?;
        at += n;
    }
    dst.finish()
}

/// Writes the manifest beside the directory's files and renames it into place, durably.
fn install_manifest(dir: &Path, manifest: &Manifest) -> Result<()> {
    let tmp = dir.join(MANIFEST_TMP);
    file::write_durable(&tmp, &manifest.encode())?;
    std::fs::rename(&tmp, dir.join(MANIFEST)).map_err(|e| Error::io("rename", &tmp, e))?;
    file::sync_dir(dir)
}

/// Writes commit records, head and (last, atomically) the manifest of a new directory.
pub(super) fn install_commit(dir: &Path, state: &VersionState, manifest: &Manifest) -> Result<()> {
    file::write_durable(
        &dir.join(meta::commit_file(state.txn)),
        &meta::encode_commit(state, &[]),
    )?;
    file::write_durable(&dir.join(meta::commit_file(state.txn + 1)), &[])?;
    file::write_durable(&dir.join(meta::WAL), &[])?;
    write_head(dir, state)?;
    install_manifest(dir, manifest)
}

pub(super) fn dir_is_empty_but(dir: &Path, allowed: &[&str]) -> Result<bool> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let name = entry.map_err(|e| Error::io("list", dir, e))?.file_name();
        if !allowed.iter().any(|a| name == *a) {
            return Ok(false);
        }
    }
    Ok(true)
}
