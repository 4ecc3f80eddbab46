//! The database handle: opening a directory (creation and upgrades are in `create`),
//! recovery, the commit pipeline, publishing versions, compaction and backup.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Mutex, MutexGuard, RwLock};

use crate::concept::{Caches, Changes, Stats};
use crate::error::{Error, Result};
use crate::store::access::AccessLog;
use crate::store::clock::Clock;
use crate::store::compact;
use crate::store::create::{
    create, creation_leftovers, dir_is_empty_but, install_commit, lock, not_empty, upgrade,
};
use crate::store::expiry::ExpiryQueue;
use crate::store::file::{self, FileHandle};
use crate::store::group::GroupQueue;
use crate::store::meta::{
    self, CommitLayout, FileNumbers, HEAD, HEAD_SLOT, MANIFEST, MANIFEST_TMP, Manifest, Metric, Op,
    VersionState,
};
use crate::store::network;
use crate::store::records::{Int8Layout, SlotLayout, binding, table};
use crate::store::redo::{Redo, apply, derive_heads, stamp_heads};
use crate::store::snapshot::{DbInfo, FILES, FileView, ROLES, ReadTxn, Role, Version};
use crate::store::tables::{TableIndex, Tables};
use crate::store::wal::{self, Wal};
use crate::store::write::{WriteTxn, encode_bindings};

/// How to open a database directory.
#[derive(Clone, Debug)]
pub struct Options {
    /// Embedding dimension: required to match an existing database; 768 when creating if unset.
    pub dimension: Option<usize>,
    /// Metric: must match an existing database when set; cosine when creating if unset.
    pub metric: Option<Metric>,
    /// Name of the embedding model: must match an existing database when set.
    pub model: Option<String>,
    /// Create the directory and database if missing (ignored when `read_only`).
    pub create_if_missing: bool,
    /// Open without the writer lock; many read-only handles may run beside one writer.
    pub read_only: bool,
    /// Keep an int8 copy of every embedding for fast approximate scans: fixed at creation
    /// (off unless set); must match an existing database when set.
    pub int8_mirror: Option<bool>,
    /// Decoded concepts kept by [`ReadTxn::lookup_concept`]'s LRU (0 disables it). Memory
    /// follows the entries held, not this bound.
    pub concept_cache_entries: usize,
    /// (episode, concept) binding strengths kept by [`ReadTxn::binding_strength`]'s LRU.
    pub strength_cache_entries: usize,
    /// Episodes-only engine: concept and binding writes are refused and the concept cache,
    /// strength cache and fan-count index are not kept (reads of existing concepts still
    /// work, uncached). The dual-memory benchmark's baseline.
    pub episodes_only: bool,
    /// The time episodes expire by and accesses are stamped with, in timestamp units
    /// (Unix microseconds unless set).
    pub clock: Clock,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dimension: None,
            metric: None,
            model: None,
            create_if_missing: true,
            read_only: false,
            int8_mirror: None,
            concept_cache_entries: DEFAULT_CONCEPT_CACHE_ENTRIES,
            strength_cache_entries: DEFAULT_STRENGTH_CACHE_ENTRIES,
            episodes_only: false,
            clock: Clock::default(),
        }
    }
}

/// Default embedding dimension for new databases.
pub const DEFAULT_DIMENSION: usize = 768;

/// Default concept cache size: 8,192 concepts (about 26 MiB of centroids at 768-d).
pub const DEFAULT_CONCEPT_CACHE_ENTRIES: usize = 8192;

/// Default binding-strength cache size (about 64 bytes each).
pub const DEFAULT_STRENGTH_CACHE_ENTRIES: usize = 65_536;

/// An open engram database directory.
pub struct Engram {
    pub(crate) info: Arc<DbInfo>,
    current: RwLock<Arc<Version>>,
    writer: Option<WriterLock>,
    read_only_handles: Mutex<HashMap<String, Arc<FileHandle>>>,
    /// A read-only handle's `head`, kept open: every snapshot reads it.
    head: Option<file::WatchedFile>,
    /// Set by a read-only open that found no writer alive and could not recover (no write
    /// access): the head's txn then, and the newest commit record's state, read in its
    /// place until the head moves. That head may name commits only the write-ahead log
    /// holds, whose bytes a power loss could have taken from the data files.
    stale_head: Option<(u64, VersionState)>,
    pub(crate) caches: Arc<Caches>,
    pub(crate) episodes_only: bool,
    pub(crate) clock: Clock,
    /// Accesses recorded by recalls, persisted by the next commit.
    pub(crate) access: Arc<AccessLog>,
    /// Episode inserts waiting to share a commit ([`Engram::insert_episodes`]).
    pub(crate) group: GroupQueue,
    _lock: Option<File>,
}

/// The handle's writer mutex, which knows the thread holding it: a thread asking for it again
/// (a second `begin_write`, or `compact` with its own transaction open) would wait on itself
/// forever, and gets `WriteInProgress` instead.
pub(crate) struct WriterLock {
    mutex: Mutex<Writer>,
    /// [`thread_token`] of the holder, 0 when none.
    holder: AtomicUsize,
    /// Held for a whole compaction, which holds `mutex` only at its end.
    compacting: Mutex<()>,
    /// The writer's [`Writer::numbers`], which a compaction takes its number from before
    /// it holds `mutex`.
    numbers: Arc<AtomicU64>,
}

/// A token unique to the calling thread among live threads: the address of a thread-local.
fn thread_token() -> usize {
    thread_local!(static TOKEN: u8 = const { 0 });
    TOKEN.with(|t| std::ptr::from_ref(t) as usize)
}

impl WriterLock {
    fn new(writer: Writer) -> Self {
        WriterLock {
            numbers: writer.numbers.clone(),
            mutex: Mutex::new(writer),
            holder: AtomicUsize::new(0),
            compacting: Mutex::new(()),
        }
    }

    /// `Err(WriteInProgress)` if this thread holds the writer.
    fn check_not_held(&self) -> Result<()> {
        // Only this thread stores its own token, so a relaxed load sees it if it is there.
        match self.holder.load(Ordering::Relaxed) == thread_token() {
            true => Err(Error::WriteInProgress),
            false => Ok(()),
        }
    }

    /// Waits for the writer, unless this thread holds it already.
    fn lock(&self) -> Result<WriterGuard<'_>> {
        self.check_not_held()?;
        let me = thread_token();
        let guard = self.mutex.lock();
        self.holder.store(me, Ordering::Relaxed);
        Ok(WriterGuard {
            guard,
            holder: &self.holder,
        })
    }
}

/// A file number above those of the files `next` is [`FileNumbers::next`] of, and above
/// every number handed out from `numbers` before.
fn take_file_number(numbers: &AtomicU64, next: u64) -> u64 {
    let take = |given: u64| given.max(next.saturating_sub(1)) + 1;
    let given = numbers
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |given| {
            Some(take(given))
        })
        .expect("the update always stores");
    take(given)
}

/// The held writer; clears the holder before the mutex is released.
pub(crate) struct WriterGuard<'a> {
    guard: MutexGuard<'a, Writer>,
    holder: &'a AtomicUsize,
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        self.holder.store(0, Ordering::Relaxed);
    }
}

impl std::ops::Deref for WriterGuard<'_> {
    type Target = Writer;
    fn deref(&self) -> &Writer {
        &self.guard
    }
}

impl std::ops::DerefMut for WriterGuard<'_> {
    fn deref_mut(&mut self) -> &mut Writer {
        &mut self.guard
    }
}

/// The writer's side of the handle: the data files open for writing.
pub(crate) struct Writer {
    dir: PathBuf,
    handles: [Option<Arc<FileHandle>>; FILES],
    files: FileNumbers,
    /// Files with writes not yet synced (in-place stamps of the last commit).
    dirty: [bool; FILES],
    /// Files holding list-head stamps not yet synced: the last commit's `heads_from` lets
    /// recovery re-derive them, so they wait for the next checkpoint (or close).
    lazy: [bool; FILES],
    pub(crate) poisoned: bool,
    syncers: Syncers,
    /// Committed concepts the last commit bound: the next transaction's expected count.
    pub(crate) bound_concepts: usize,
    /// Stored episodes with a time to live, built by the first reap.
    pub(crate) expiring: Option<ExpiryQueue>,
    /// The directories of the node tables open for writing.
    tables: Tables,
    /// Where small commits' entries go (`store::wal`).
    wal: Wal,
    /// Bytes logged since the data files' writeback was last started.
    logged: u64,
    /// The commit file (0 or 1) holding the newest commit record: the next checkpoint
    /// writes the other, so the record the log's entries follow is never overwritten
    /// before a newer one is durable.
    slot: u64,
    /// The highest file number handed out by this writer: each is handed out once, to a
    /// commit or to a compaction running beside the commits.
    numbers: Arc<AtomicU64>,
}

impl Writer {
    pub(crate) fn handle(&self, role: Role) -> Result<&Arc<FileHandle>> {
        self.handles[role as usize]
            .as_ref()
            .ok_or_else(|| Error::corrupt(&self.dir, 0, format!("no {role:?} file is open")))
    }

    pub(crate) fn next_file_number(&self) -> u64 {
        take_file_number(&self.numbers, self.files.next())
    }

    pub(crate) fn create_keys_file(&mut self, number: u64, bytes: &[u8]) -> Result<()> {
        let path = self.dir.join(meta::file_name(number, "keys"));
        let handle = FileHandle::open(&path, true, true)?;
        handle.write_at(0, bytes)?;
        handle.sync()?;
        file::sync_dir(&self.dir)?;
        self.handles[Role::Keys as usize] = Some(handle);
        Ok(())
    }

    pub(crate) fn wal_base(&self) -> u64 {
        self.wal.base()
    }

    pub(crate) fn wal_fits(&self, len: u64) -> bool {
        self.wal.fits(len)
    }

    /// Steps of a commit after its records are written past the committed ends: with
    /// `entry`, its write-ahead log entry is the commit point; without, a checkpoint.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn commit(
        &mut self,
        db: &Engram,
        state: &VersionState,
        redo: Redo<'_>,
        written: Written,
        entry: Option<&[u8]>,
        retired_keys: Option<u64>,
        changes: &Changes,
    ) -> Result<()> {
        match entry {
            // One write and one sync of one file. The data files keep this commit's bytes
            // unsynced until the next checkpoint: recovery rewrites them from the log.
            Some(entry) => {
                self.wal.append(entry)?;
                for (dirty, written) in self.dirty.iter_mut().zip(written.files) {
                    *dirty |= written;
                }
                self.logged += entry.len() as u64;
                if self.logged >= LOGGED_WRITEBACK {
                    // Written back a piece at a time, so the checkpoint's syncs find little
                    // left to write; not per commit, whose small writebacks (blocks to
                    // allocate) would delay its own sync.
                    for role in ROLES.into_iter().filter(|&r| self.dirty[r as usize]) {
                        self.handle(role)?.start_writeback(0, 0);
                    }
                    self.logged = 0;
                }
            }
            None => self.checkpoint(db, state, redo.ops, written)?,
        }
        // Stamp in place and publish; ops are synced by the next checkpoint or on close
        // (and redone from the log or the record until then), head moves by the next
        // list-head checkpoint or on close.
        let touched = apply(&self.handles, &self.tables, state, redo.ops)?;
        for (dirty, touched) in self.dirty.iter_mut().zip(touched) {
            *dirty |= touched;
        }
        let touched = stamp_heads(&self.handles, &self.tables, state, redo.heads)?;
        for (lazy, touched) in self.lazy.iter_mut().zip(touched) {
            *lazy |= touched;
        }
        self.files = state.files;
        db.caches.apply(state.txn, changes);
        db.publish(self, *state)?;
        if let Some(n) = retired_keys {
            // The old index is unreachable from the durable commit; readers keep their maps.
            let _ = std::fs::remove_file(self.dir.join(meta::file_name(n, "keys")));
        }
        Ok(())
    }

    /// The classic commit: everything written since the last commit record reaches the
    /// disk first (the files synced concurrently), then the record, into the other commit
    /// file: the commit point. The log's entries start again behind it.
    fn checkpoint(
        &mut self,
        db: &Engram,
        state: &VersionState,
        ops: &[Op],
        written: Written,
    ) -> Result<()> {
        // 1. New records, the stamps and log-committed bytes since the last record, and the
        //    head stamps made since the last list-head checkpoint if this commit advances
        //    `heads_from`... (The published version is the last commit: this writer alone
        //    publishes.)
        let heads = state.heads_from > db.current.read().state.heads_from;
        let mut to_sync = Vec::new();
        for role in ROLES {
            let i = role as usize;
            // The binding records' job syncs their file after writing them, which covers
            // the earlier unsynced writes in it too.
            if role == Role::Bindings && written.bindings.is_some() {
                continue;
            }
            if written.files[i] || self.dirty[i] || (heads && self.lazy[i]) {
                to_sync.push(self.handle(role)?.clone());
            }
        }
        self.syncers.sync_all(&to_sync, written.bindings)?;
        self.dirty = [false; FILES];
        if heads {
            self.lazy = [false; FILES];
        }
        // 2. ...then the commit record.
        self.write_record(state, ops)
    }

    /// Writes and syncs the commit record of `state` into the commit file the newest
    /// record is not in; the log's entries then follow it.
    fn write_record(&mut self, state: &VersionState, ops: &[Op]) -> Result<()> {
        let slot = 1 - self.slot;
        let record = meta::encode_commit(state, ops);
        file::write_durable(&self.dir.join(meta::commit_file(slot)), &record)?;
        self.slot = slot;
        self.wal.restart(state.txn);
        Ok(())
    }

    /// Encodes, writes and syncs a commit's new binding records (at byte `at` of their
    /// file) on a helper thread while this one flushes the other files; [`Writer::commit`]
    /// waits for it before the commit record.
    pub(crate) fn start_bindings(
        &mut self,
        at: u64,
        records: Vec<binding::Binding>,
    ) -> Result<Pending> {
        let file = self.handle(Role::Bindings)?.clone();
        Ok(self.syncers.start(Box::new(move || {
            file.write_synced(at, &encode_bindings(&records))
        })))
    }

    /// On close (and after a read-only opener's recovery): syncs every unsynced write and,
    /// if commits since the last record live only in the log, records `state` (the last
    /// commit) as a checkpoint; then empties the log, so the next open reads nothing.
    fn close(&mut self, state: &VersionState) -> Result<()> {
        for role in ROLES {
            let i = role as usize;
            if self.dirty[i] || self.lazy[i] {
                self.handle(role)?.sync()?;
                self.dirty[i] = false;
                self.lazy[i] = false;
            }
        }
        if self.wal.has_entries() {
            self.write_record(state, &[])?;
        }
        self.wal.clear()
    }
}

/// Logged bytes after which the data files' writeback is started (an eighth of the log).
const LOGGED_WRITEBACK: u64 = wal::CAPACITY / 8;

/// What a commit appended past the committed ends.
pub(crate) struct Written {
    /// Files written through the writer's appenders.
    pub files: [bool; FILES],
    /// The job writing the new binding records, if there are any.
    pub bindings: Option<Pending>,
}

/// A job for a helper thread and where to report its result.
type Job = (
    Box<dyn FnOnce() -> Result<()> + Send>,
    crossbeam_channel::Sender<Result<()>>,
);

/// Threads that `fdatasync` a commit's files concurrently (the device queues them together)
/// and write the binding records while the writer flushes the rest, kept for the writer's
/// life: spawning a thread per file per commit cost ~25 µs each.
pub(crate) struct Syncers {
    jobs: Option<crossbeam_channel::Sender<Job>>,
    receiver: crossbeam_channel::Receiver<Job>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// A job started on a helper: its result, or where it will arrive.
pub(crate) enum Pending {
    Done(Result<()>),
    Running(crossbeam_channel::Receiver<Result<()>>),
}

impl Pending {
    fn wait(self) -> Result<()> {
        match self {
            Pending::Done(r) => r,
            Pending::Running(r) => r
                .recv()
                .unwrap_or_else(|_| Err(Error::InvalidArgument("fsync thread stopped".into()))),
        }
    }
}

impl Syncers {
    fn new() -> Self {
        let (jobs, receiver) = crossbeam_channel::unbounded();
        Syncers {
            jobs: Some(jobs),
            receiver,
            threads: Vec::new(),
        }
    }

    /// Starts helpers until there are `n` (fewer if the system refuses more).
    fn spawn_up_to(&mut self, n: usize) {
        while self.threads.len() < n {
            let receiver = self.receiver.clone();
            let spawned = std::thread::Builder::new()
                .name("engram-fsync".into())
                .spawn(move || {
                    for (job, reply) in receiver {
                        let _ = reply.send(job());
                    }
                });
            match spawned {
                Ok(t) => self.threads.push(t),
                // Fewer helpers: jobs queue, or run on the caller, still correct.
                Err(_) => break,
            }
        }
    }

    /// Runs `job` on a helper, or here if there is none.
    fn start(&mut self, job: Box<dyn FnOnce() -> Result<()> + Send>) -> Pending {
        self.spawn_up_to(1);
        if self.threads.is_empty() {
            return Pending::Done(job());
        }
        let jobs = self.jobs.as_ref().expect("alive until drop");
        let (reply, result) = crossbeam_channel::bounded(1);
        match jobs.send((job, reply)) {
            Ok(()) => Pending::Running(result),
            Err(e) => Pending::Done((e.into_inner().0)()),
        }
    }

    /// Syncs every file, the first on this thread, the others on helpers, and waits for
    /// `started` (a job already running on one of them) too.
    fn sync_all(&mut self, files: &[Arc<FileHandle>], started: Option<Pending>) -> Result<()> {
        let mut pending: Vec<Pending> = started.into_iter().collect();
        if let Some((first, rest)) = files.split_first() {
            self.spawn_up_to(rest.len() + pending.len());
            pending.extend(rest.iter().map(|f| {
                let f = f.clone();
                self.start(Box::new(move || f.sync()))
            }));
            let here = first.sync();
            pending.push(Pending::Done(here));
        }
        // Every job is waited for, even after a failure: none outlives the commit.
        pending
            .into_iter()
            .map(Pending::wait)
            .fold(Ok(()), Result::and)
    }
}

impl Drop for Syncers {
    fn drop(&mut self) {
        self.jobs = None; // the helpers' loops end when the channel closes
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Bytes each file must hold for `state` to be readable (`None`: past any file there can
/// be, which only a damaged commit record can say).
fn committed_len(info: &DbInfo, tables: &Tables, state: &VersionState, role: Role) -> Option<u64> {
    match role {
        Role::Episodes => state
            .episode_slots
            .checked_mul(info.episode_layout.stride as u64),
        Role::Concepts => state
            .concept_slots
            .checked_mul(info.concept_layout.stride as u64),
        Role::EpisodeTable | Role::ConceptTable => tables.len(state, role),
        Role::Bindings => state.bindings.checked_mul(binding::SIZE),
        Role::Heap => Some(state.heap_len),
        Role::Keys => state.key_cells.checked_mul(16),
        Role::Int8 => state
            .episode_slots
            .checked_mul(info.int8_layout.stride as u64),
        Role::Pages => state.pages.checked_mul(network::PAGE as u64),
        Role::Networks => Some(state.catalog_len),
    }
}

/// Whether the counts of a (checksummed, so written by us or forged) state agree with each
/// other: a state that fails this is refused before any length or op is computed from it.
fn consistent(info: &DbInfo, state: &VersionState) -> bool {
    let f = &state.files;
    // Every file but the optional two must be named.
    f.all()
        .iter()
        .all(|&(n, kind)| n != 0 || kind == "keys" || kind == "i8")
        && (f.int8 != 0) == info.manifest.int8_mirror
        && (f.keys != 0) == (state.key_cells != 0)
        && (state.key_cells == 0 || state.key_cells.is_power_of_two())
        && state.key_count <= state.key_cells
        && state.live_episodes <= state.episode_ids
        && state.episode_slots <= state.episode_ids
        && state.live_concepts <= state.concept_ids
        && state.empty_concepts <= state.live_concepts
        && state.live_bindings <= state.bindings
        && state.heads_from <= state.bindings
        && state.episode_table_from <= state.episode_ids
        && state.concept_table_from <= state.concept_ids
        // Every run holds at least one id below the tail.
        && state.episode_table_runs <= state.episode_table_from
        && state.concept_table_runs <= state.concept_table_from
}

fn caches_for(opts: &Options, txn: u64) -> Caches {
    Caches::new(
        txn,
        opts.concept_cache_entries,
        opts.strength_cache_entries,
        !opts.episodes_only,
    )
}

fn info_for(dir: &Path, manifest: Manifest) -> Arc<DbInfo> {
    Arc::new(DbInfo {
        dir: dir.to_path_buf(),
        episode_layout: SlotLayout::episode(manifest.dimension),
        concept_layout: SlotLayout::concept(manifest.dimension),
        int8_layout: Int8Layout::new(manifest.dimension),
        manifest,
    })
}

/// Opens the files of `state`, reads the node tables' directories (or takes those of
/// `known`, a version reading the same table files), and checks the files hold the
/// committed lengths.
pub(super) fn open_files(
    info: &DbInfo,
    state: &VersionState,
    writable: bool,
    cache: Option<&HashMap<String, Arc<FileHandle>>>,
    known: Option<&Version>,
) -> Result<([Option<Arc<FileHandle>>; FILES], Tables)> {
    let mut handles: [Option<Arc<FileHandle>>; FILES] = Default::default();
    let mut tables = Tables::default();
    for (role, (number, kind)) in ROLES.into_iter().zip(state.files.all()) {
        if number == 0 {
            continue;
        }
        let name = meta::file_name(number, kind);
        let impossible = || {
            Error::corrupt(
                info.dir.join(&name),
                0,
                "commit record states impossible sizes",
            )
        };
        if !consistent(info, state) {
            return Err(impossible());
        }
        let handle = match cache.and_then(|c| c.get(&name)) {
            Some(h) => h.clone(),
            None => FileHandle::open(&info.dir.join(&name), writable, false)?,
        };
        if let Some(t) = tables.of_mut(role) {
            // A table file's directory never changes: a version reading the same file has it.
            let (runs, from) = Tables::directory(state, role);
            let same = |v: &&Version| {
                v.state.files.all()[role as usize].0 == number
                    && Tables::directory(&v.state, role) == (runs, from)
            };
            *t = match known.filter(same) {
                Some(v) => v.tables.of(role).clone(),
                None => TableIndex::read(&handle, runs, from)?,
            };
        }
        let needed = committed_len(info, &tables, state, role).ok_or_else(impossible)?;
        let map = handle.covering(needed)?;
        if matches!(role, Role::EpisodeTable | Role::ConceptTable) {
            // Every lookup by id reads its node's 48-byte entry, so the table is fetched in
            // the background (up to `READ_AHEAD`: submitting more made open wait) and a cold
            // lookup costs one read (its record) instead of two.
            map.advise_will_need(needed.min(table::READ_AHEAD));
        }
        handles[role as usize] = Some(handle);
    }
    Ok((handles, tables))
}

/// The version of `state` over `handles`; its network catalog extends `prev`'s when both
/// read the same catalog file (only the new records are parsed), else is read whole.
fn version(
    info: &Arc<DbInfo>,
    state: VersionState,
    handles: &[Option<Arc<FileHandle>>; FILES],
    tables: Tables,
    prev: Option<&Version>,
) -> Result<Version> {
    let files = handles.clone().map(|h| h.map(FileView::new));
    let nets = match prev {
        Some(p)
            if p.state.files.networks == state.files.networks
                && p.state.catalog_len == state.catalog_len =>
        {
            p.nets.clone()
        }
        _ => {
            let (mut cat, from) = match prev {
                Some(p)
                    if p.state.files.networks == state.files.networks
                        && p.state.catalog_len < state.catalog_len =>
                {
                    ((*p.nets).clone(), p.state.catalog_len)
                }
                _ => (network::NetCatalog::default(), 0),
            };
            if let Some(view) = &files[Role::Networks as usize] {
                let bytes = view.map.bytes(from, (state.catalog_len - from) as usize)?;
                cat.apply(bytes, view.map.path())?;
            }
            if cat.pages() != state.pages {
                let path = info.dir.join(meta::file_name(state.files.networks, "nets"));
                return Err(Error::corrupt(path, 0, "catalog and pages disagree"));
            }
            Arc::new(cat)
        }
    };
    Ok(Version {
        info: info.clone(),
        state,
        files,
        tables,
        nets,
    })
}

fn newest_commit(dir: &Path) -> Result<Record> {
    newest_commit_with(dir, meta::COMMIT)
}

/// A decoded commit record and the commit file (0 or 1) it was read from.
pub(super) struct Record {
    pub state: VersionState,
    pub ops: Vec<Op>,
    pub slot: u64,
}

/// The newest commit record of `layout`. Both commit files exist from the creation on (and
/// in a backup): a missing one is damage, not a crash state, and falling back to the other
/// record would lose the commits it holds, and then the files only they name.
pub(super) fn newest_commit_with(dir: &Path, layout: CommitLayout) -> Result<Record> {
    let mut best: Option<Record> = None;
    for slot in 0..2 {
        let path = dir.join(meta::commit_file(slot));
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::corrupt(path, 0, "commit record file is missing"));
            }
            Err(e) => return Err(Error::io("read", path, e)),
        };
        if let Some((state, ops)) = meta::decode_commit(&bytes, layout)
            && best.as_ref().is_none_or(|b| state.txn > b.state.txn)
        {
            best = Some(Record { state, ops, slot });
        }
    }
    best.ok_or_else(|| Error::corrupt(dir.join("commit.0"), 0, "no valid commit record"))
}

/// Writes the bytes the log's `entries` appended back into the files of `record` (whose
/// lengths `handles` hold), checking that each entry appends exactly at the ends the one
/// before left and names the same files. Returns the files written.
fn rewrite_logged(
    info: &DbInfo,
    record: &VersionState,
    entries: &[wal::Entry<'_>],
    (handles, tables): &([Option<Arc<FileHandle>>; FILES], Tables),
) -> Result<[bool; FILES]> {
    let log = info.dir.join(meta::WAL);
    let mut written = [false; FILES];
    let mut prev = *record;
    for e in entries {
        let damaged = |what: &str| {
            Error::corrupt(
                &log,
                0,
                format!("write-ahead log entry of txn {}: {what}", e.state.txn),
            )
        };
        if e.state.files != record.files || !consistent(info, &e.state) {
            return Err(damaged("states impossible files or sizes"));
        }
        for role in ROLES {
            if handles[role as usize].is_none() {
                // No such file (no key index yet, no int8 mirror): nothing may append to it.
                if e.ranges.iter().any(|r| r.role == role) {
                    return Err(damaged("appends to a file the database lacks"));
                }
                continue;
            }
            let from = committed_len(info, tables, &prev, role);
            let to = committed_len(info, tables, &e.state, role);
            let mut appended = e.ranges.iter().filter(|r| r.role == role);
            match (appended.next(), appended.next()) {
                (None, None) if from == to => {}
                (Some(r), None)
                    if Some(r.at) == from && r.at.checked_add(r.bytes.len() as u64) == to =>
                {
                    let h = handles[role as usize].as_ref().expect("checked above");
                    // No writeback hint per range: thousands of small ones made replaying a
                    // full log take 17-35 ms instead of 5-8.
                    h.write_unhinted(r.at, r.bytes)?;
                    written[role as usize] = true;
                }
                _ => return Err(damaged(&format!("{role:?} appends do not match its sizes"))),
            }
        }
        prev = e.state;
    }
    Ok(written)
}

/// Brings the files to the newest commit and removes files no commit refers to: the newest
/// commit record's ops are redone, then the write-ahead log's entries that follow it are
/// replayed (their appends rewritten, their ops redone). Needs the writer lock.
fn recover(info: &Arc<DbInfo>) -> Result<(Writer, VersionState)> {
    let dir = &info.dir;
    let record = newest_commit(dir)?;
    let log = Wal::read(dir)?;
    let (entries, next_entry) = wal::entries(&dir.join(meta::WAL), &log, record.state.txn)?;
    let missing = |e| match e {
        Error::Io { path, source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            Error::corrupt(path, 0, "data file named by the last commit is missing")
        }
        e => e,
    };
    // Every file is opened for writing before any is changed: a reader refused write access
    // gets that refusal before recovery touched anything.
    let wal = Wal::open(dir, record.state.txn, next_entry)?;
    let opened = open_files(info, &record.state, true, None, None).map_err(missing)?;
    let rewritten = rewrite_logged(info, &record.state, &entries, &opened)?;
    let state = entries.last().map_or(record.state, |e| e.state);
    let (handles, tables) = match entries.is_empty() {
        true => opened,
        false => open_files(info, &state, true, None, None)?,
    };
    // Redone stamps and rewritten bytes are synced like any commit's: by the next
    // checkpoint, on close, or (for a read-only opener that recovered) before it lets go
    // of the lock. Re-derived heads wait for the next list-head checkpoint like any head
    // stamp.
    let mut dirty = apply(&handles, &tables, &record.state, &record.ops)?;
    for e in &entries {
        let touched = apply(&handles, &tables, &e.state, &e.ops)?;
        for (d, t) in dirty.iter_mut().zip(touched) {
            *d |= t;
        }
    }
    for (d, w) in dirty.iter_mut().zip(rewritten) {
        *d |= w;
    }
    let lazy = derive_heads(&handles, &tables, &state)?;
    let live: Vec<String> = state
        .files
        .all()
        .iter()
        .filter(|(n, _)| *n != 0)
        .map(|(n, k)| meta::file_name(*n, k))
        .collect();
    let mut removed = false;
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if (meta::is_data_file(&name) && !live.contains(&name)) || name == MANIFEST_TMP {
            std::fs::remove_file(entry.path()).map_err(|e| Error::io("remove", entry.path(), e))?;
            removed = true;
        }
    }
    if removed {
        file::sync_dir(dir)?;
    }
    write_head(dir, &state)?;
    let writer = Writer {
        dir: dir.clone(),
        handles,
        files: state.files,
        dirty,
        lazy,
        poisoned: false,
        syncers: Syncers::new(),
        bound_concepts: 0,
        expiring: None,
        tables,
        wal,
        logged: 0,
        slot: record.slot,
        numbers: Arc::default(),
    };
    Ok((writer, state))
}

pub(super) fn write_head(dir: &Path, state: &VersionState) -> Result<()> {
    file::write_unsynced(
        &dir.join(HEAD),
        (state.txn % 2) * HEAD_SLOT,
        &meta::encode_head(state),
    )
}

/// The manifest and the format version it states.
fn read_manifest(dir: &Path) -> Result<Option<(Manifest, u32)>> {
    match std::fs::read(dir.join(MANIFEST)) {
        Ok(b) => Manifest::decode(dir, &b).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", dir.join(MANIFEST), e)),
    }
}

fn check_settings(manifest: &Manifest, opts: &Options) -> Result<()> {
    if let Some(d) = opts.dimension
        && d != manifest.dimension
    {
        return Err(Error::DimensionMismatch {
            expected: manifest.dimension,
            found: d,
        });
    }
    if let Some(m) = &opts.model
        && manifest.model.as_ref() != Some(m)
    {
        return Err(Error::ModelMismatch {
            expected: manifest.model.clone().unwrap_or_default(),
            found: m.clone(),
        });
    }
    if let Some(m) = opts.int8_mirror
        && m != manifest.int8_mirror
    {
        return Err(Error::InvalidArgument(format!(
            "int8 mirror mismatch: database has {}, got {m}",
            manifest.int8_mirror
        )));
    }
    if let Some(m) = opts.metric
        && m != manifest.metric
    {
        return Err(Error::InvalidArgument(format!(
            "metric mismatch: database has {:?}, got {m:?}",
            manifest.metric
        )));
    }
    Ok(())
}

/// Whether an I/O error says this process may not write the file, as opposed to a failure.
fn no_write_access(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
    )
}

/// Refuses settings a new database cannot be created with.
fn check_new_manifest(m: &Manifest) -> Result<()> {
    if m.dimension == 0 || m.dimension > 1 << 16 {
        return Err(Error::InvalidArgument(format!(
            "dimension {} outside 1..=65536",
            m.dimension
        )));
    }
    if m.model
        .as_ref()
        .is_some_and(|s| s.len() > meta::MAX_MODEL_LEN)
    {
        return Err(Error::InvalidArgument("model name over 256 bytes".into()));
    }
    Ok(())
}

impl Engram {
    /// Opens (or creates) the database in directory `path`.
    pub fn open(path: impl AsRef<Path>, opts: Options) -> Result<Engram> {
        let dir = path.as_ref().to_path_buf();
        if opts.read_only {
            return Self::open_read_only(dir, &opts);
        }
        if !dir.exists() {
            if !opts.create_if_missing {
                return Err(Error::NotADatabase {
                    path: dir,
                    reason: "directory does not exist".into(),
                });
            }
            std::fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        }
        if !dir.is_dir() {
            return Err(Error::NotADatabase {
                path: dir,
                reason: "not a directory".into(),
            });
        }
        // Refuse foreign directories before touching them (no stray LOCK file in them).
        if read_manifest(&dir)?.is_none() {
            if creation_leftovers(&dir)?.is_none() {
                return Err(not_empty(dir));
            }
            if !opts.create_if_missing {
                return Err(Error::NotADatabase {
                    path: dir,
                    reason: "no MANIFEST".into(),
                });
            }
        }
        // One lock, held from creation through recovery for the handle's life: releasing it
        // in between would let a child forked by another thread (holding a copy of the
        // descriptor until its exec) make our own re-lock fail.
        let guard = lock(&dir, true)?;
        let (manifest, format) = match read_manifest(&dir)? {
            Some(m) => m,
            None => {
                let m = Manifest {
                    dimension: opts.dimension.unwrap_or(DEFAULT_DIMENSION),
                    metric: opts.metric.unwrap_or_default(),
                    model: opts.model.clone(),
                    int8_mirror: opts.int8_mirror.unwrap_or(false),
                };
                check_new_manifest(&m)?;
                // A creation that failed or crashed before its MANIFEST's rename left only
                // files of its own, none with data: start it again. Checked again under the
                // lock, so that a creation in progress elsewhere is never touched.
                for path in creation_leftovers(&dir)?.ok_or_else(|| not_empty(dir.clone()))? {
                    std::fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
                }
                create(&dir, &m)?;
                (m, meta::FORMAT_VERSION)
            }
        };
        check_settings(&manifest, &opts)?;
        let info = info_for(&dir, manifest);
        if let Some(layout) = meta::upgradable(format) {
            upgrade(&info, layout)?;
        }
        let (writer, state) = recover(&info)?;
        let v = version(&info, state, &writer.handles, writer.tables.clone(), None)?;
        Ok(Engram {
            info,
            current: RwLock::new(Arc::new(v)),
            writer: Some(WriterLock::new(writer)),
            read_only_handles: Mutex::new(HashMap::new()),
            head: None,
            stale_head: None,
            caches: Arc::new(caches_for(&opts, state.txn)),
            episodes_only: opts.episodes_only,
            clock: opts.clock.clone(),
            access: Arc::default(),
            group: GroupQueue::default(),
            _lock: Some(guard),
        })
    }

    fn open_read_only(dir: PathBuf, opts: &Options) -> Result<Engram> {
        let (manifest, format) = read_manifest(&dir)?.ok_or_else(|| Error::NotADatabase {
            path: dir.clone(),
            reason: "no MANIFEST".into(),
        })?;
        check_settings(&manifest, opts)?;
        let info = info_for(&dir, manifest);
        // With no writer alive, finish any interrupted commit first (as SQLite does), and
        // upgrade an older format; beside a writer of that format, refuse it. Files this
        // user may read but not write (another user's, an archive's) are read as beside a
        // live writer: as the last writer published them, which the next writer's open
        // completes. Recovery opens every file before it changes any, so a refusal to open
        // one for writing comes before anything was changed.
        let mut stale_head = None;
        match lock(&dir, false) {
            Ok(_guard) => {
                let recovered = meta::upgradable(format)
                    .map_or(Ok(()), |layout| upgrade(&info, layout))
                    .and_then(|()| recover(&info))
                    .and_then(|(mut writer, state)| writer.close(&state));
                match recovered {
                    Err(Error::Io { source, .. })
                        if no_write_access(&source) && format == meta::FORMAT_VERSION =>
                    {
                        let durable = newest_commit(&dir)?.state;
                        let head = std::fs::read(dir.join(HEAD)).ok();
                        if let Some(head) = head.as_deref().and_then(meta::decode_head)
                            && head.txn > durable.txn
                        {
                            stale_head = Some((head.txn, durable));
                        }
                    }
                    r => r?,
                }
            }
            Err(_) if format != meta::FORMAT_VERSION => {
                return Err(Error::FormatVersion {
                    found: format,
                    supported: meta::FORMAT_VERSION,
                });
            }
            Err(_) => {}
        }
        let db = Engram {
            current: RwLock::new(Arc::new(Version {
                info: info.clone(),
                state: VersionState::default(),
                files: Default::default(),
                tables: Tables::default(),
                nets: Default::default(),
            })),
            info,
            writer: None,
            read_only_handles: Mutex::new(HashMap::new()),
            head: Some(file::WatchedFile::open(&dir.join(HEAD))?),
            stale_head,
            caches: Arc::new(caches_for(opts, 0)),
            episodes_only: opts.episodes_only,
            clock: opts.clock.clone(),
            access: Arc::default(),
            group: GroupQueue::default(),
            _lock: None,
        };
        db.refresh()?;
        Ok(db)
    }

    /// Read-only handles: adopt the newest version the writer has published.
    fn refresh(&self) -> Result<Arc<Version>> {
        let mut last_err = None;
        let Some(head) = &self.head else {
            // A writer's handle publishes every version itself.
            return Ok(self.current.read().clone());
        };
        for _ in 0..16 {
            let mut bytes = [0u8; 2 * HEAD_SLOT as usize];
            let n = head.read(&mut bytes)?;
            let state = meta::decode_head(&bytes[..n])
                .ok_or_else(|| Error::corrupt(self.info.dir.join(HEAD), 0, "no valid head slot"))?;
            let state = match self.stale_head {
                Some((txn, durable)) if txn == state.txn => durable,
                _ => state,
            };
            let cur = self.current.read().clone();
            if cur.files.iter().any(Option::is_some) && cur.state.txn == state.txn {
                return Ok(cur);
            }
            let mut cache = self.read_only_handles.lock();
            let known = cur.files.iter().any(Option::is_some).then_some(&*cur);
            match open_files(&self.info, &state, false, Some(&cache), known) {
                Ok((handles, tables)) => {
                    cache.clear();
                    for h in handles.iter().flatten() {
                        let name = h.path().file_name().unwrap_or_default();
                        cache.insert(name.to_string_lossy().into_owned(), h.clone());
                    }
                    let prev = self.current.read().clone();
                    let prev = prev.files.iter().any(Option::is_some).then_some(&*prev);
                    let v = Arc::new(version(&self.info, state, &handles, tables, prev)?);
                    self.caches.reset(state.txn);
                    *self.current.write() = v.clone();
                    return Ok(v);
                }
                // Compaction retired a file between reading the head and opening it.
                Err(e @ Error::Io { .. }) => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.expect("loop ran"))
    }

    fn publish(&self, w: &Writer, state: VersionState) -> Result<()> {
        let prev = self.current.read().clone();
        let v = version(&self.info, state, &w.handles, w.tables.clone(), Some(&prev))?;
        *self.current.write() = Arc::new(v);
        // Other processes read the head; it is rebuilt by recovery, so a failed write here
        // only delays what they see and is not an error of the (already durable) commit.
        let _ = write_head(&w.dir, &state);
        Ok(())
    }

    /// A snapshot of the last commit. Never blocks on the writer.
    pub fn begin_read(&self) -> Result<ReadTxn> {
        let v = match self.writer {
            Some(_) => self.current.read().clone(),
            None => self.refresh()?,
        };
        Ok(ReadTxn {
            v,
            caches: self.caches.clone(),
            now: self.clock.now(),
            access: self.writer.as_ref().map(|_| self.access.clone()),
        })
    }

    /// Commits the accesses recalls have recorded since the last commit (any write
    /// transaction's commit persists them too); `Error::ReadOnly` on a read-only handle.
    pub fn persist_accesses(&self) -> Result<()> {
        self.begin_write()?.commit()
    }

    /// Counters of the concept cache and the sizes of the newest version.
    pub fn stats(&self) -> Stats {
        let state = self.current.read().state;
        Stats {
            episodes: state.live_episodes,
            concepts: state.live_concepts,
            bindings: state.live_bindings,
            empty_concepts: state.empty_concepts,
            pending_accesses: self.access.pending(),
            dropped_accesses: self.access.dropped(),
            ..self.caches.stats()
        }
    }

    /// `InvalidArgument` on an episodes-only handle, whose concept and binding writes are off.
    pub(crate) fn require_dual(&self) -> Result<()> {
        match self.episodes_only {
            true => Err(Error::InvalidArgument(
                "this handle was opened episodes-only: concepts and bindings are off".into(),
            )),
            false => Ok(()),
        }
    }

    /// `Ok` if this thread could wait for the write transaction: the handle writes and this
    /// thread does not hold it.
    pub(crate) fn check_can_write(&self) -> Result<()> {
        self.writer
            .as_ref()
            .ok_or(Error::ReadOnly)?
            .check_not_held()
    }

    /// Starts the write transaction, waiting for the one in progress on this handle.
    pub fn begin_write(&self) -> Result<WriteTxn<'_>> {
        let w = self.writer.as_ref().ok_or(Error::ReadOnly)?.lock()?;
        if w.poisoned {
            return Err(Error::Poisoned);
        }
        let base = self.current.read().clone();
        Ok(WriteTxn::new(self, w, base))
    }

    /// The settings fixed at creation.
    pub fn manifest(&self) -> &Manifest {
        &self.info.manifest
    }

    /// The database directory.
    pub fn dir(&self) -> &Path {
        &self.info.dir
    }

    /// Rewrites the data files with only live records and retires the old ones. Snapshots
    /// taken before keep reading the old files (unlinked, still mapped) safely.
    ///
    /// Writers wait only for the end of it: the live episodes and concepts (the bulk of the
    /// bytes) are copied from a snapshot while commits go on, and the writer is then held
    /// to append what those commits stored, write the tables, binding lists and key index
    /// of the version current by then, and commit. One compaction runs at a time.
    pub fn compact(&self) -> Result<()> {
        let writer = self.writer.as_ref().ok_or(Error::ReadOnly)?;
        // It would copy, then wait on this thread's own transaction forever.
        writer.check_not_held()?;
        let _one = writer.compacting.lock();
        // A poisoned handle refuses at once, if a transaction does not hold the writer now
        // (it would otherwise find out after the copy).
        if writer.mutex.try_lock().is_some_and(|w| w.poisoned) {
            return Err(Error::Poisoned);
        }
        let v = self.current.read().clone();
        let target = |v: &Version, number| compact::Target {
            dir: &self.info.dir,
            number,
            txn: v.state.txn + 1,
            now: self.clock.now(),
            int8_mirror: self.info.manifest.int8_mirror,
        };
        let number = take_file_number(&writer.numbers, v.state.files.next());
        let mut copied = compact::copy_nodes(&v, target(&v, number))?;
        drop(v);
        // What was committed during the copy, appended beside the writer too: the run
        // under it then has only the last commits' nodes to append.
        let newer = self.current.read().clone();
        if let Err(e) = copied
            .catch_up(&newer, self.clock.now())
            .and_then(|()| copied.sync())
        {
            copied.discard();
            return Err(e);
        }
        drop(newer);
        crate::store::fault::compaction_copied();
        let locked = writer.lock().and_then(|w| match w.poisoned {
            true => Err(Error::Poisoned),
            false => Ok(w),
        });
        let mut w = match locked {
            Ok(w) => w,
            Err(e) => {
                copied.discard();
                return Err(e);
            }
        };
        let v = self.current.read().clone();
        let result = self.compact_locked(&mut w, copied, &v, target(&v, number));
        // Writers go on now. Then, unless a snapshot still reads them, the old files' maps
        // go with `v`, and the kernel frees the unlinked files' pages and blocks (~0.3 s per
        // GB here) on this thread, not under the writer.
        drop(w);
        drop(v);
        result
    }

    fn compact_locked(
        &self,
        w: &mut Writer,
        copied: compact::Copied,
        v: &Version,
        to: compact::Target<'_>,
    ) -> Result<()> {
        // Until the record, nothing the handle or the directory's commits name has changed:
        // a failure (a full disk, most often) leaves the handle as it was, and the copy is
        // removed. From the record on, only a reopen knows which commit is the durable one.
        let state = compact::finish(copied, v, to)?;
        let (handles, tables) =
            open_files(&self.info, &state, true, None, None).inspect_err(|_| {
                compact::remove_files(&self.info.dir, to.number);
            })?;
        let installed = self.install_compaction(w, state, handles, tables, v);
        if installed.is_err() {
            w.poisoned = true;
        }
        installed
    }

    /// Commits a compaction's `state` (its files written, synced and opened) and retires
    /// the files of `v` it replaces.
    fn install_compaction(
        &self,
        w: &mut Writer,
        state: VersionState,
        handles: [Option<Arc<FileHandle>>; FILES],
        tables: Tables,
        v: &Version,
    ) -> Result<()> {
        w.write_record(&state, &[])?;
        let old = w.files;
        w.handles = handles;
        w.tables = tables;
        w.files = state.files;
        w.dirty = [false; FILES];
        w.lazy = [false; FILES];
        if (state.live_episodes, state.live_bindings)
            != (v.state.live_episodes, v.state.live_bindings)
        {
            // Expired episodes were dropped with their bindings: fan counts and strengths
            // cached for the old version are stale.
            self.caches.reset(state.txn);
        }
        self.publish(w, state)?;
        for (n, kind) in old.all() {
            if n != 0 {
                let _ = std::fs::remove_file(self.info.dir.join(meta::file_name(n, kind)));
            }
        }
        file::sync_dir(&self.info.dir)
    }

    /// Writes a consistent, openable copy of the last commit into `dest` (a new or empty
    /// directory) while writers carry on.
    pub fn backup(&self, dest: impl AsRef<Path>) -> Result<()> {
        self.backup_as(dest, &self.info.manifest)
    }

    /// [`Engram::backup`] into a database created with other settings: another metric,
    /// model name or int8 mirror (added or dropped). Everything else is kept as it is:
    /// ids, episodes with their keys, expiries and recorded accesses, concepts, bindings,
    /// networks and agents' times to live. The dimension cannot change (`InvalidArgument`).
    ///
    /// ```
    /// use engram_core::{Engram, Manifest, Options};
    /// # fn main() -> engram_core::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let (src, dest) = (dir.path().join("memory"), dir.path().join("memory-int8"));
    /// let db = Engram::open(&src, Options::default())?;
    /// db.backup_as(&dest, &Manifest { int8_mirror: true, ..db.manifest().clone() })?;
    /// assert!(Engram::open(&dest, Options::default())?.manifest().int8_mirror);
    /// # Ok(()) }
    /// ```
    pub fn backup_as(&self, dest: impl AsRef<Path>, manifest: &Manifest) -> Result<()> {
        if manifest.dimension != self.info.manifest.dimension {
            return Err(Error::InvalidArgument(format!(
                "a copy keeps the dimension ({}), got {}",
                self.info.manifest.dimension, manifest.dimension
            )));
        }
        check_new_manifest(manifest)?;
        let dest = dest.as_ref();
        std::fs::create_dir_all(dest).map_err(|e| Error::io("create directory", dest, e))?;
        if !dir_is_empty_but(dest, &[])? {
            return Err(Error::InvalidArgument(format!(
                "backup destination {} is not empty",
                dest.display()
            )));
        }
        let snap = self.begin_read()?;
        let to = compact::Target {
            dir: dest,
            number: 1,
            txn: snap.v.state.txn,
            now: snap.now,
            int8_mirror: manifest.int8_mirror,
        };
        let state = compact::write_compacted(&snap.v, to)?;
        file::sync_dir(dest)
            .and_then(|()| install_commit(dest, &state, manifest))
            .inspect_err(|_| {
                // The destination was empty: what is in it now is this failed copy's.
                compact::remove_files(dest, 1);
                let commits = [state.txn, state.txn + 1].map(meta::commit_file);
                for name in commits.iter().map(String::as_str).chain([
                    meta::WAL,
                    HEAD,
                    MANIFEST_TMP,
                    MANIFEST,
                ]) {
                    let _ = std::fs::remove_file(dest.join(name));
                }
            })
    }
}

impl Drop for Engram {
    fn drop(&mut self) {
        if let Some(w) = &self.writer {
            // No transaction can be open: it would borrow the handle.
            let mut w = w.mutex.lock();
            if !w.poisoned {
                // Best effort: recovery redoes these stamps and replays the log if this fails.
                let _ = w.close(&self.current.read().state);
            }
        }
    }
}
