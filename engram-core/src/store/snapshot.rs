//! Read snapshots: one committed version and the maps it reads, with the visibility rules
//! of the in-place stamps (a stamp written by txn T is invisible to snapshots older than T).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::concept::{Caches, ConceptState, Node};
use crate::error::{Error, Result};
use crate::metric::check_norm;
use crate::store::access::AccessLog;
use crate::store::file::{FileHandle, Mapping, ReadAhead};
use crate::store::meta::{Manifest, VersionState};
use crate::store::records::{
    self, ArchivedConceptRecord, ArchivedEpisodeRecord, Int8Layout, NONE, SlotLayout,
    binding::Binding, table,
};
use crate::store::tables::Tables;

/// The data files of one version, in [`Role`] order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Episodes = 0,
    Concepts = 1,
    EpisodeTable = 2,
    ConceptTable = 3,
    Bindings = 4,
    Heap = 5,
    Keys = 6,
    Int8 = 7,
    Pages = 8,
    Networks = 9,
}

/// Number of data-file roles.
pub(crate) const FILES: usize = 10;

pub(crate) const ROLES: [Role; FILES] = [
    Role::Episodes,
    Role::Concepts,
    Role::EpisodeTable,
    Role::ConceptTable,
    Role::Bindings,
    Role::Heap,
    Role::Keys,
    Role::Int8,
    Role::Pages,
    Role::Networks,
];

/// What never changes for an open database.
pub(crate) struct DbInfo {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub episode_layout: SlotLayout,
    pub concept_layout: SlotLayout,
    pub int8_layout: Int8Layout,
}

impl DbInfo {
    /// `Err` unless `v` has the database's dimension, only finite values and a norm of at most
    /// [`crate::metric::MAX_NORM`]; returns its norm (accumulated in f64).
    pub(crate) fn check_vector(&self, what: &'static str, v: &[f32]) -> Result<f32> {
        let dim = self.manifest.dimension;
        if v.len() != dim {
            return Err(Error::DimensionMismatch {
                expected: dim,
                found: v.len(),
            });
        }
        Error::check_finite(what, v)?;
        let squared = crate::store::records::squared_norm(v);
        check_norm(&what, squared)?;
        Ok(squared.sqrt() as f32)
    }
}

/// A file as one version sees it: the map taken when the version was published, and the
/// handle to catch up through when a list pointer leads to a newer record past that map.
#[derive(Clone)]
pub(crate) struct FileView {
    pub map: Arc<Mapping>,
    pub handle: Arc<FileHandle>,
}

impl FileView {
    pub(crate) fn new(handle: Arc<FileHandle>) -> Self {
        FileView {
            map: handle.current(),
            handle,
        }
    }

    fn with<T>(&self, end: u64, f: impl FnOnce(&Mapping) -> Result<T>) -> Result<T> {
        if end <= self.map.len() {
            f(&self.map)
        } else {
            f(&*self.handle.covering(end)?)
        }
    }
}

/// One committed version of the database.
pub(crate) struct Version {
    pub info: Arc<DbInfo>,
    pub state: VersionState,
    pub files: [Option<FileView>; FILES],
    /// Where the node tables hold each id's entry.
    pub tables: Tables,
    /// The network catalog as of this version (shared until a commit changes it).
    pub nets: Arc<crate::store::network::NetCatalog>,
}

/// A node-table entry as read atomically.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    pub slot: u64,
    pub deleted_txn: u64,
    pub bind_head: u64,
}

impl Version {
    pub(crate) fn file(&self, role: Role) -> Result<&FileView> {
        self.files[role as usize].as_ref().ok_or_else(|| {
            Error::corrupt(
                self.info.dir.clone(),
                0,
                format!("version {} has no {role:?} file", self.state.txn),
            )
        })
    }

    fn map(&self, role: Role) -> Result<&Mapping> {
        Ok(&self.file(role)?.map)
    }

    /// Byte offset of `field` of node `id`'s entry in `role`'s table, if it holds one.
    pub(crate) fn entry_offset(&self, role: Role, id: u64, field: u64) -> Option<u64> {
        self.tables.entry_offset(&self.state, role, id, field)
    }

    /// The ids `role`'s table holds entries for, ascending (or, reversed, descending). Every
    /// caller reads their entries in this order, which is the file's (or its reverse): the
    /// table is read ahead as a scan, in the direction the pass goes.
    pub(crate) fn table_ids(&self, role: Role) -> impl DoubleEndedIterator<Item = u64> + '_ {
        TableIds {
            ids: self.tables.ids(&self.state, role),
            v: self,
            role,
            map: self.map(role).ok(),
            taken: [0; 2],
        }
    }

    /// Node `id`'s entry; that of a node compaction dropped (no slot, no bindings) for an id
    /// the table no longer holds.
    pub(crate) fn entry(&self, role: Role, id: u64) -> Result<Entry> {
        let Some(base) = self.entry_offset(role, id, 0) else {
            return Ok(Entry {
                slot: NONE,
                deleted_txn: 0,
                bind_head: NONE,
            });
        };
        let map = self.map(role)?;
        let word = |f| -> Result<u64> { Ok(map.atomic_u64(base + f)?.load(Ordering::Acquire)) };
        Ok(Entry {
            slot: word(table::SLOT)?,
            deleted_txn: word(table::DELETED_TXN)?,
            bind_head: word(table::BIND_HEAD)?,
        })
    }

    fn stamped(&self, txn: u64) -> bool {
        txn != 0 && txn <= self.state.txn
    }

    /// One word of a table entry, as the newest applied commit left it.
    pub(crate) fn table_word(&self, role: Role, id: u64, field: u64) -> Result<u64> {
        let map = self.map(role)?;
        let off = self
            .entry_offset(role, id, field)
            .ok_or_else(|| Error::corrupt(map.path(), 0, format!("no table entry for id {id}")))?;
        Ok(map.atomic_u64(off)?.load(Ordering::Acquire))
    }

    /// The live entry of episode `id` in this version, if any, at clock time `now`: an
    /// episode whose `expires_at` is at or before `now` is not live. [`ANY_TIME`] ignores
    /// expiry (structure checks, and writers' bookkeeping of what is stored).
    pub(crate) fn episode_entry(&self, id: u64, now: i64) -> Result<Option<Entry>> {
        if id >= self.state.episode_ids {
            return Ok(None);
        }
        let e = self.entry(Role::EpisodeTable, id)?;
        if self.stamped(e.deleted_txn) || e.slot == NONE {
            return Ok(None);
        }
        // `next_expiry` bounds every live episode's expiry from below: until the clock
        // reaches it, no entry's own word needs reading.
        if now >= self.state.next_expiry && self.expires_at(id)? <= now {
            return Ok(None);
        }
        Ok(Some(e))
    }

    /// When episode `id` expires (`table::NEVER` for never).
    pub(crate) fn expires_at(&self, id: u64) -> Result<i64> {
        Ok(self.table_word(Role::EpisodeTable, id, table::EXPIRES_AT)? as i64)
    }

    pub(crate) fn concept_entry(&self, id: u64) -> Result<Option<Entry>> {
        if id >= self.state.concept_ids {
            return Ok(None);
        }
        let e = self.entry(Role::ConceptTable, id)?;
        Ok((!self.stamped(e.deleted_txn) && e.slot != NONE).then_some(e))
    }

    pub(crate) fn episode_at(&self, slot: u64) -> Result<&ArchivedEpisodeRecord<'static>> {
        let map = self.map(Role::Episodes)?;
        if slot >= self.state.episode_slots {
            return Err(Error::corrupt(
                map.path(),
                slot,
                "episode slot past the committed end",
            ));
        }
        let layout = &self.info.episode_layout;
        let archive = layout.archive(map, slot)?;
        records::episode_view(map, slot * layout.stride as u64, archive)
    }

    /// The version of concept `id` visible here: walk back from the newest version.
    pub(crate) fn concept_at(&self, id: u64, slot: u64) -> Result<&ArchivedConceptRecord<'static>> {
        Ok(self.concept_version(id, slot)?.1)
    }

    /// [`Version::concept_at`], with the slot of the version found.
    pub(crate) fn concept_version(
        &self,
        id: u64,
        mut slot: u64,
    ) -> Result<(u64, &ArchivedConceptRecord<'static>)> {
        let layout = self.info.concept_layout;
        let file = self.file(Role::Concepts)?;
        loop {
            if slot < self.state.concept_slots {
                let archive = layout.archive(&file.map, slot)?;
                let rec = records::concept_view(&file.map, slot * layout.stride as u64, archive)?; // slot < committed: no overflow
                if rec.created_txn.to_native() <= self.state.txn {
                    return Ok((slot, check_id(rec, id, &file.map, slot)?));
                }
                slot = next_older(rec.prev_slot.to_native(), slot, &file.map)?;
                continue;
            }
            // A version newer than this snapshot: read its back pointer through a fresh map.
            let off = slot.saturating_mul(layout.stride as u64);
            slot = file.with(off.saturating_add(layout.stride as u64), |map| {
                let rec = records::concept_view(map, off, layout.archive(map, slot)?)?;
                next_older(rec.prev_slot.to_native(), slot, map)
            })?;
        }
    }

    pub(crate) fn binding(&self, index: u64) -> Result<Binding> {
        let file = self.file(Role::Bindings)?;
        let off = index.saturating_mul(records::binding::SIZE);
        file.with(off.saturating_add(records::binding::SIZE), |map| {
            Binding::read(map, index)
        })
    }

    pub(crate) fn binding_deleted_txn(&self, index: u64) -> Result<u64> {
        let file = self.file(Role::Bindings)?;
        let off = index
            .saturating_mul(records::binding::SIZE)
            .saturating_add(records::binding::DELETED_TXN);
        file.with(off.saturating_add(8), |map| {
            Ok(map.atomic_u64(off)?.load(Ordering::Acquire))
        })
    }

    /// Live bindings reachable from `head` along one of the two lists, newest first.
    pub(crate) fn walk(&self, head: u64, by_episode: bool) -> Result<Vec<(u64, Binding)>> {
        records::binding::walk(
            head,
            by_episode,
            self.file(Role::Bindings)?.map.path(),
            |at| self.binding(at),
            |at, _| self.binding_live(at),
        )
    }

    /// Whether the list from `head` holds a binding live in this version.
    pub(crate) fn any_live(&self, head: u64, by_episode: bool) -> Result<bool> {
        // The newest binding is usually live, and records are appended in commit order, so
        // one stamp word answers without reading (and checksumming) the record.
        if head < self.state.bindings && !self.stamped(self.binding_deleted_txn(head)?) {
            return Ok(true);
        }
        Ok(self.find_live(head, by_episode, |_| true)?.is_some())
    }

    /// The newest binding along one list that is live in this version and `matches`;
    /// reads no record past it.
    pub(crate) fn find_live(
        &self,
        head: u64,
        by_episode: bool,
        matches: impl Fn(&Binding) -> bool,
    ) -> Result<Option<(u64, Binding)>> {
        records::binding::find(
            head,
            by_episode,
            self.file(Role::Bindings)?.map.path(),
            |at| self.binding(at),
            |at, b| Ok(matches(b) && self.binding_live(at)?),
        )
    }

    /// Records are appended in commit order, so this version's are those below its count.
    fn binding_live(&self, at: u64) -> Result<bool> {
        Ok(at < self.state.bindings && !self.stamped(self.binding_deleted_txn(at)?))
    }

    pub(crate) fn heap_bytes(&self, blob: &records::ArchivedBlob) -> Result<&[u8]> {
        let map = self.map(Role::Heap)?;
        let (off, len) = (blob.off.to_native(), blob.len.to_native());
        if off
            .checked_add(u64::from(len))
            .is_none_or(|end| end > self.state.heap_len)
        {
            return Err(Error::corrupt(
                map.path(),
                off,
                "heap reference past the committed end",
            ));
        }
        let bytes = map.bytes(off, len as usize)?;
        if map.read_range(off, u64::from(len), || crc32c::crc32c(bytes)) != blob.crc.to_native() {
            return Err(Error::corrupt(
                map.path(),
                off,
                "heap blob checksum mismatch",
            ));
        }
        Ok(bytes)
    }

    /// Episode id stored under a key hash whose key bytes equal `key`, live in this version.
    pub(crate) fn find_key(&self, key: &[u8], now: i64) -> Result<Option<u64>> {
        if self.state.key_cells == 0 {
            return Ok(None);
        }
        let map = self.map(Role::Keys)?;
        let hash = records::key_hash(key);
        let mask = self.state.key_cells - 1;
        let mut cell = hash & mask;
        for _ in 0..self.state.key_cells {
            let h = map.atomic_u64(cell * 16)?.load(Ordering::Acquire);
            if h == 0 {
                return Ok(None);
            }
            if h == hash {
                let id = map.atomic_u64(cell * 16 + 8)?.load(Ordering::Acquire);
                if let Some(e) = self.episode_entry(id, now)? {
                    let rec = self.episode_at(e.slot)?;
                    if self.heap_bytes(&rec.key)? == key && rec.key.len.to_native() > 0 {
                        return Ok(Some(id));
                    }
                }
            }
            cell = (cell + 1) & mask;
        }
        Ok(None)
    }
}

fn check_id<'a>(
    rec: &'a ArchivedConceptRecord<'static>,
    id: u64,
    map: &Mapping,
    slot: u64,
) -> Result<&'a ArchivedConceptRecord<'static>> {
    if rec.id.to_native() == id {
        Ok(rec)
    } else {
        Err(Error::corrupt(
            map.path(),
            slot,
            "concept slot holds another id",
        ))
    }
}

fn next_older(prev: u64, slot: u64, map: &Mapping) -> Result<u64> {
    if prev == NONE || prev >= slot {
        return Err(Error::corrupt(
            map.path(),
            slot,
            "concept version chain ends before the snapshot",
        ));
    }
    Ok(prev)
}

/// Bytes of a record prefetched ahead of a random read.
const PREFETCH: u64 = 1024;

/// Binding records a strength lookup reads before its pair is worth caching: a walk this
/// short costs no more than a cache hit, and its pairs would crowd out deeper ones
/// (`examples/strength_lookup`).
const WALKED_UNCACHED: usize = 4;

/// A clock time before every expiry: reading at it ignores time to live.
pub(crate) const ANY_TIME: i64 = i64::MIN;

/// A stable, read-only view of the database as of one commit. Cheap to create, `Send` and
/// `Sync`; many may live at once. Readers never block the writer nor each other.
#[derive(Clone)]
pub struct ReadTxn {
    pub(crate) v: Arc<Version>,
    pub(crate) caches: Arc<Caches>,
    /// The snapshot's clock time, read when it began: episodes expired by then are invisible.
    pub(crate) now: i64,
    /// Where recalls record accesses for the next write transaction (`None` read-only).
    pub(crate) access: Option<Arc<AccessLog>>,
}

/// An episode borrowed from the mapped file: nothing is copied.
pub struct Episode<'s> {
    rec: &'s ArchivedEpisodeRecord<'static>,
    v: &'s Version,
}

/// A concept (the version visible to the snapshot) borrowed from the mapped file.
pub struct Concept<'s> {
    rec: &'s ArchivedConceptRecord<'static>,
    v: &'s Version,
}

/// One episode↔concept binding.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BindingInfo {
    /// The bound episode.
    pub episode: u64,
    /// The concept it is bound to.
    pub concept: u64,
    /// The binding's strength.
    pub strength: f32,
}

impl Episode<'_> {
    /// The episode's id.
    pub fn id(&self) -> u64 {
        self.rec.id.to_native()
    }
    /// The agent that lived it.
    pub fn agent(&self) -> u64 {
        self.rec.agent.to_native()
    }
    /// Its caller-defined time.
    pub fn timestamp(&self) -> i64 {
        self.rec.timestamp.to_native()
    }
    /// The embedding, straight from the map.
    pub fn embedding(&self) -> &[f32] {
        records::native_f32(&self.rec.embedding)
    }
    /// The payload bytes, checksum verified.
    pub fn payload(&self) -> Result<&[u8]> {
        self.v.heap_bytes(&self.rec.payload)
    }
    /// The unique key the episode was inserted with, if any.
    pub fn key(&self) -> Result<Option<&[u8]>> {
        if self.rec.key.len.to_native() == 0 {
            return Ok(None);
        }
        self.v.heap_bytes(&self.rec.key).map(Some)
    }
    /// The clock time from which the episode is invisible, if it has a time to live.
    pub fn expires_at(&self) -> Result<Option<i64>> {
        let at = self.v.expires_at(self.id())?;
        Ok((at != table::NEVER).then_some(at))
    }
    /// The clock time of the newest access a recall recorded and a commit persisted, if
    /// any. Access statistics are not versioned: every snapshot reads the newest committed.
    pub fn last_access(&self) -> Result<Option<i64>> {
        let at = self
            .v
            .table_word(Role::EpisodeTable, self.id(), table::LAST_ACCESS)? as i64;
        Ok((at != table::NEVER_ACCESSED).then_some(at))
    }
    /// Accesses recorded by recalls and persisted by commits (not versioned, as above).
    pub fn access_count(&self) -> Result<u64> {
        self.v
            .table_word(Role::EpisodeTable, self.id(), table::ACCESS_COUNT)
    }
}

impl Concept<'_> {
    /// The concept's id.
    pub fn id(&self) -> u64 {
        self.rec.id.to_native()
    }
    /// The centroid, straight from the map.
    pub fn centroid(&self) -> &[f32] {
        records::native_f32(&self.rec.centroid)
    }
    /// The label, checksum verified.
    pub fn label(&self) -> Result<&str> {
        let bytes = self.v.heap_bytes(&self.rec.label)?;
        std::str::from_utf8(bytes).map_err(|_| {
            Error::corrupt(
                self.v.info.dir.join("heap"),
                self.rec.label.off.to_native(),
                "label is not UTF-8",
            )
        })
    }
    /// The transaction that wrote this version of the concept.
    pub fn version_txn(&self) -> u64 {
        self.rec.created_txn.to_native()
    }
    /// How many episodes the centroid is the normalized mean of, as of this version
    /// (formation and consolidation keep it; 0 for a concept placed or moved by hand).
    pub fn members(&self) -> u64 {
        self.rec.members.to_native()
    }
    /// Mean cosine similarity of those members to the centroid (0 when `members` is 0).
    pub fn coherence(&self) -> f32 {
        self.rec.coherence.to_native()
    }
}

impl ReadTxn {
    /// The commit this snapshot sees.
    pub fn txn(&self) -> u64 {
        self.v.state.txn
    }

    /// The snapshot's clock time ([`crate::Options::clock`], read when it began): the
    /// snapshot hides every episode whose time to live ended at or before it.
    pub fn now(&self) -> i64 {
        self.now
    }

    /// The default time to live of `agent`'s new episodes, if one is set.
    pub fn agent_ttl(&self, agent: u64) -> Option<i64> {
        self.v.nets.agent_ttl(agent)
    }

    /// Every agent with a default time to live, and that time to live, by agent.
    pub fn agent_ttls(&self) -> Vec<(u64, i64)> {
        self.v.nets.agent_ttls()
    }

    /// Floats per embedding.
    pub fn dimension(&self) -> usize {
        self.v.info.manifest.dimension
    }

    /// The database directory.
    pub fn dir(&self) -> &Path {
        &self.v.info.dir
    }

    /// The episode `id`, or `None` if it does not exist in this snapshot.
    pub fn episode(&self, id: u64) -> Result<Option<Episode<'_>>> {
        self.read_episode(id, true)
    }

    /// [`ReadTxn::episode`]; `alone` for a point read, which has a slot's pages read at once
    /// when the map is cold. A pass reads ahead itself, and would only pay the timing.
    fn read_episode(&self, id: u64, alone: bool) -> Result<Option<Episode<'_>>> {
        // Until compaction drops records an episode's slot is its id: start fetching the slot
        // while the table entry is read, so the two cache misses overlap. The first 1 KiB is
        // enough to overlap them; the hardware prefetcher streams the rest (measured: a
        // whole-slot prefetch fills the core's miss buffers and stalls).
        let stride = self.v.info.episode_layout.stride as u64;
        let eps = &self.v.file(Role::Episodes)?.map;
        if id < self.v.state.episode_slots {
            eps.prefetch(id * stride, PREFETCH.min(stride));
        }
        let Some(e) = self.v.episode_entry(id, self.now)? else {
            return Ok(None);
        };
        if e.slot != id {
            eps.prefetch(e.slot.saturating_mul(stride), PREFETCH.min(stride));
        }
        // Most slots straddle two pages: on a cold map, have both read at once.
        let rec = match alone && !eps.is_verified(e.slot) {
            false => self.v.episode_at(e.slot)?,
            true => eps.read_range(e.slot.saturating_mul(stride), stride, || {
                self.v.episode_at(e.slot)
            })?,
        };
        if rec.id.to_native() != id {
            let path = self.v.file(Role::Episodes)?.map.path().to_path_buf();
            return Err(Error::corrupt(
                path,
                e.slot,
                "episode slot holds another id",
            ));
        }
        Ok(Some(Episode { rec, v: &self.v }))
    }

    /// Every live episode, ascending by id, read ahead as a scan: the way to visit them all,
    /// where [`ReadTxn::episode`] per id would read a cold file one page at a time. Reversed
    /// (`.rev()`) it goes down from the newest, read ahead downwards: the last episodes
    /// recorded (ids are given in insertion order) cost what they read, not a pass over all.
    ///
    /// ```
    /// # use engram_core::{Engram, EpisodeInput, Options};
    /// # fn main() -> engram_core::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = Engram::open(dir.path(), Options { dimension: Some(2), ..Options::default() })?;
    /// # let mut tx = db.begin_write()?;
    /// # for t in 0..3 { tx.insert_episode(&EpisodeInput { agent: 7, timestamp: t, embedding: &[1.0, 0.0], payload: b"", key: None })?; }
    /// # tx.commit()?;
    /// let snap = db.begin_read()?;
    /// let mut latest = i64::MIN;
    /// for ep in snap.episodes() {
    ///     latest = latest.max(ep?.timestamp());
    /// }
    /// assert_eq!(latest, 2);
    /// // The two newest of agent 7, newest first.
    /// let agent_7 = engram_core::Filter { agent: Some(7), time: None };
    /// let newest: Vec<u64> = snap.episodes().rev()
    ///     .filter(|e| e.as_ref().map_or(true, |e| agent_7.accepts(e)))
    ///     .take(2)
    ///     .map(|e| e.map(|e| e.id()))
    ///     .collect::<engram_core::Result<_>>()?;
    /// assert_eq!(newest, [2, 1]);
    /// # Ok(()) }
    /// ```
    pub fn episodes(&self) -> impl DoubleEndedIterator<Item = Result<Episode<'_>>> + '_ {
        let stride = self.v.info.episode_layout.stride as u64;
        self.pass(
            (Role::EpisodeTable, Role::Episodes, stride),
            |id| Ok(self.v.episode_entry(id, self.now)?.map(|e| e.slot)),
            |id| self.read_episode(id, false),
        )
    }

    /// Every live concept (its version in this snapshot), ascending by id (descending,
    /// reversed), its slot file read ahead: the pass [`ReadTxn::episodes`] is for episodes.
    pub fn concepts(&self) -> impl DoubleEndedIterator<Item = Result<Concept<'_>>> + '_ {
        let stride = self.v.info.concept_layout.stride as u64;
        self.pass(
            (Role::ConceptTable, Role::Concepts, stride),
            |id| Ok(self.v.concept_entry(id)?.map(|e| e.slot)),
            |id| self.concept(id),
        )
    }

    /// The nodes of a (table, slot file, stride) that `live_slot` finds live, each read by
    /// `read`, ascending by id (descending, reversed), the slot file read ahead from each
    /// live one's slot in the direction the slots go.
    fn pass<'s, T: 's>(
        &'s self,
        (table, slots, stride): (Role, Role, u64),
        live_slot: impl Fn(u64) -> Result<Option<u64>> + 's,
        read: impl Fn(u64) -> Result<Option<T>> + 's,
    ) -> impl DoubleEndedIterator<Item = Result<T>> + 's {
        // Without the slot file every `read` reports it.
        let mut ahead = self.v.map(slots).ok().map(|m| ReadAhead::new(m, stride));
        self.v.table_ids(table).filter_map(move |id| {
            match live_slot(id) {
                Ok(Some(slot)) => ahead.iter_mut().for_each(|a| a.at(slot)),
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            }
            read(id).transpose()
        })
    }

    /// The episode inserted with `key`, if live in this snapshot.
    pub fn episode_by_key(&self, key: &[u8]) -> Result<Option<Episode<'_>>> {
        match self.v.find_key(key, self.now)? {
            Some(id) => self.episode(id),
            None => Ok(None),
        }
    }

    /// The concept `id` as of this snapshot, borrowed from the mapped file (no cache).
    pub fn concept(&self, id: u64) -> Result<Option<Concept<'_>>> {
        // As for episodes: until a concept is updated its slot is its id, so the slot's page
        // is fetched while the table entry is read.
        let stride = self.v.info.concept_layout.stride as u64;
        let cons = &self.v.file(Role::Concepts)?.map;
        if id < self.v.state.concept_slots {
            cons.prefetch(id * stride, PREFETCH.min(stride));
            // An entry past the table's read-ahead part may be on disk, and so may a record
            // this map has not checked yet: its read starts now, beside the entry's.
            let entry_at = self.v.entry_offset(Role::ConceptTable, id, 0);
            if entry_at.is_some_and(|at| at >= table::READ_AHEAD) && !cons.is_verified(id) {
                cons.start_reading(id * stride, stride);
            }
        }
        let Some(e) = self.v.concept_entry(id)? else {
            return Ok(None);
        };
        let rec = self.v.concept_at(id, e.slot)?;
        Ok(Some(Concept { rec, v: &self.v }))
    }

    /// The concept `id` as of this snapshot, decoded (centroid and label copied out of the
    /// map) and shared through the handle's concept cache: a hit costs no file access.
    pub fn lookup_concept(&self, id: u64) -> Result<Option<ConceptState>> {
        let txn = self.v.state.txn;
        if let Some(hit) = self.caches.concept(id, txn) {
            return Ok(Some(hit));
        }
        let Some(c) = self.concept(id)? else {
            return Ok(None);
        };
        let state = ConceptState::new(id, c.version_txn(), c.centroid(), c.label()?);
        self.caches.fill_concept(&state, txn);
        Ok(Some(state))
    }

    /// The strength of the binding of `episode` to `concept`, or `None` if they are not
    /// bound in this snapshot. Hot pairs are answered from the handle's strength cache.
    pub fn binding_strength(&self, episode: u64, concept: u64) -> Result<Option<f32>> {
        let txn = self.v.state.txn;
        self.check_not_expired(episode)?;
        if let Some(s) = self.caches.strength((episode, concept), txn) {
            return Ok(Some(s));
        }
        let e = self.visible_episode(episode)?;
        let read = std::cell::Cell::new(0);
        let found = self.v.find_live(e.bind_head, true, |b| {
            read.set(read.get() + 1);
            b.concept == concept
        })?;
        Ok(found.map(|(_, b)| {
            if read.get() > WALKED_UNCACHED {
                self.caches
                    .fill_strength((episode, concept), b.strength, txn);
            }
            b.strength
        }))
    }

    /// Live bindings of a concept, newest first; bindings to episodes expired at the
    /// snapshot's clock are left out. Unknown concept: `Error::NotFound`.
    pub fn bindings_of_concept(&self, concept: u64) -> Result<Vec<BindingInfo>> {
        let Some(e) = self.v.concept_entry(concept)? else {
            return Err(Error::NotFound {
                kind: "concept",
                id: concept,
            });
        };
        let mut out = Vec::new();
        for b in self.v.walk(e.bind_head, false)? {
            if self.now < self.v.state.next_expiry || self.v.expires_at(b.1.episode)? > self.now {
                out.push(info(b));
            }
        }
        Ok(out)
    }

    /// Live bindings of an episode, newest first. Unknown episode: `Error::NotFound`.
    pub fn bindings_of_episode(&self, episode: u64) -> Result<Vec<BindingInfo>> {
        let e = self.visible_episode(episode)?;
        Ok(self
            .v
            .walk(e.bind_head, true)?
            .into_iter()
            .map(info)
            .collect())
    }

    /// Number of live bindings of a concept (its fan count): one probe of the fan-count
    /// index, or a walk of its bindings the first time (or for an older snapshot). Counts
    /// are of committed bindings: one to an episode whose time to live has ended counts
    /// until the next commit reaps that episode.
    pub fn concept_fan_count(&self, concept: u64) -> Result<usize> {
        self.fan_count(Node::Concept, concept)
    }

    /// Number of live bindings of an episode (its fan count).
    pub fn episode_fan_count(&self, episode: u64) -> Result<usize> {
        self.check_not_expired(episode)?;
        self.fan_count(Node::Episode, episode)
    }

    /// Episode `id`'s entry if this snapshot sees it, else `NotFound`.
    fn visible_episode(&self, id: u64) -> Result<Entry> {
        // A match, not `ok_or`: the error is built (and dropped) only when it is returned.
        match self.v.episode_entry(id, self.now)? {
            Some(e) => Ok(e),
            None => Err(Error::NotFound {
                kind: "episode",
                id,
            }),
        }
    }

    /// `NotFound` for an episode whose time to live has run out, checked before answering
    /// from a cache that knows nothing of expiry (free until something can have expired).
    fn check_not_expired(&self, id: u64) -> Result<()> {
        if self.now >= self.v.state.next_expiry {
            self.visible_episode(id)?;
        }
        Ok(())
    }

    fn fan_count(&self, node: Node, id: u64) -> Result<usize> {
        let txn = self.v.state.txn;
        if let Some(n) = self.caches.fan(node, id, txn) {
            return Ok(n as usize);
        }
        let (entry, kind) = match node {
            Node::Episode => (self.v.episode_entry(id, self.now)?, "episode"),
            Node::Concept => (self.v.concept_entry(id)?, "concept"),
        };
        let Some(e) = entry else {
            return Err(Error::NotFound { kind, id });
        };
        let n = self.v.walk(e.bind_head, node == Node::Episode)?.len();
        self.caches.fill_fan(node, id, n as u64, txn);
        Ok(n)
    }

    /// Live episodes in this snapshot.
    pub fn episode_count(&self) -> u64 {
        self.v.state.live_episodes
    }

    /// Live concepts in this snapshot.
    pub fn concept_count(&self) -> u64 {
        self.v.state.live_concepts
    }

    /// Live bindings in this snapshot.
    pub fn binding_count(&self) -> u64 {
        self.v.state.live_bindings
    }

    /// Live concepts with no live binding in this snapshot (the length of
    /// [`Self::empty_concepts`], read from the commit record).
    pub fn empty_concept_count(&self) -> u64 {
        self.v.state.empty_concepts
    }

    /// Ids of all live episodes, ascending (reads the episode table once).
    pub fn episode_ids(&self) -> Result<Vec<u64>> {
        // The count sizes the vector only up to a bound: it comes from a file.
        let mut ids = Vec::with_capacity(self.v.state.live_episodes.min(1 << 20) as usize);
        for id in self.v.table_ids(Role::EpisodeTable) {
            if self.v.episode_entry(id, self.now)?.is_some() {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// Ids of all live concepts, ascending.
    pub fn concept_ids(&self) -> Result<Vec<u64>> {
        let mut ids = Vec::new();
        for id in self.v.table_ids(Role::ConceptTable) {
            if self.v.concept_entry(id)?.is_some() {
                ids.push(id);
            }
        }
        Ok(ids)
    }
}

fn info((_, b): (u64, Binding)) -> BindingInfo {
    BindingInfo {
        episode: b.episode,
        concept: b.concept,
        strength: b.strength,
    }
}

/// [`Version::table_ids`]: a table's ids, its entries read ahead (or behind) every
/// [`TableIds::EVERY`] ids taken from either end.
struct TableIds<'v, I> {
    ids: I,
    v: &'v Version,
    role: Role,
    map: Option<&'v Mapping>,
    /// Ids taken from the front and from the back.
    taken: [u64; 2],
}

impl<I> TableIds<'_, I> {
    const EVERY: u64 = 256;

    fn visit(&mut self, id: u64, descending: bool) -> u64 {
        let taken = &mut self.taken[usize::from(descending)];
        if taken.is_multiple_of(Self::EVERY)
            && let Some(map) = self.map
            && let Some(off) = self.v.entry_offset(self.role, id, 0)
        {
            let len = Self::EVERY * table::ENTRY;
            match descending {
                // The entries up to this one's end.
                true => map.scan_behind(off.saturating_sub(len - table::ENTRY), len),
                false => map.scan_ahead(off, len),
            }
        }
        *taken += 1;
        id
    }
}

impl<I: DoubleEndedIterator<Item = u64>> Iterator for TableIds<'_, I> {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        let id = self.ids.next()?;
        Some(self.visit(id, false))
    }
}

impl<I: DoubleEndedIterator<Item = u64>> DoubleEndedIterator for TableIds<'_, I> {
    fn next_back(&mut self) -> Option<u64> {
        let id = self.ids.next_back()?;
        Some(self.visit(id, true))
    }
}
