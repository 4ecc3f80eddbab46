//! Writing a version's live records into a fresh generation of files: compaction (into the
//! same directory) and backup (into another) share this path.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::file::{self, ReadAhead};
use crate::store::meta::{self, FileNumbers, VersionState};
use crate::store::records::{
    self, ArchivedBlob, Blob, ConceptRecord, EpisodeRecord, NONE, binding::Binding, table,
};
use crate::store::snapshot::{ReadTxn, Role, Version};
use crate::store::tables;

/// Bytes a [`Sink`] writes between starting their writeback.
const WRITEBACK_STEP: u64 = 8 << 20;

/// A new file written front to back through a buffer, then synced: compaction's and
/// backup's files, and the binding file an upgrade rewrites.
pub(crate) struct Sink {
    out: BufWriter<File>,
    path: PathBuf,
    len: u64,
    /// Bytes whose writeback was started: a long copy hands its bytes to the disk as it
    /// goes, so that its sync (and a commit's sync queued behind it) does not wait for
    /// hundreds of megabytes at the end.
    started: u64,
    /// Where injected faults say they fired.
    site: &'static str,
}

impl Sink {
    fn create(dir: &Path, number: u64, kind: &str) -> Result<Sink> {
        Sink::new(dir.join(meta::file_name(number, kind)), "compact")
    }

    /// Creates `path`, which must not exist yet.
    pub(crate) fn new(path: PathBuf, site: &'static str) -> Result<Sink> {
        let f = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io("create", &path, e))?;
        Ok(Sink {
            out: BufWriter::with_capacity(1 << 20, f),
            path,
            len: 0,
            started: 0,
            site,
        })
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<()> {
        crate::store::fault::io(crate::store::fault::IoOp::Write, self.site)
            .and_then(|()| self.out.write_all(bytes))
            .map_err(|e| Error::io("write", &self.path, e))?;
        self.len += bytes.len() as u64;
        if self.len - self.started >= WRITEBACK_STEP {
            self.out
                .flush()
                .map_err(|e| Error::io("write", &self.path, e))?;
            file::start_writeback(self.out.get_ref(), self.started, self.len - self.started);
            self.started = self.len;
        }
        Ok(())
    }

    /// Makes what was written so far durable, so that the [`Sink::finish`] to come has
    /// only what follows to sync.
    fn sync(&mut self) -> Result<()> {
        crate::store::fault::io(crate::store::fault::IoOp::Sync, self.site)
            .and_then(|()| self.out.flush())
            .and_then(|()| self.out.get_ref().sync_data())
            .map_err(|e| Error::io("fsync", &self.path, e))
    }

    pub(crate) fn finish(self) -> Result<()> {
        let f = self
            .out
            .into_inner()
            .map_err(|e| Error::io("write", &self.path, e.into_error()))?;
        crate::store::fault::io(crate::store::fault::IoOp::Sync, self.site)
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io("fsync", &self.path, e))?;
        crate::store::fault::synced(&self.path);
        Ok(())
    }
}

/// What compacting a snapshot's version would give back: the records no live node,
/// binding or network uses any more. See [`ReadTxn::reclaimable`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reclaimable {
    /// Episode slots of deleted and forgotten episodes.
    pub episodes: u64,
    /// Concept slots other than the newest version of each live concept: replaced
    /// versions and deleted concepts.
    pub concept_versions: u64,
    /// Binding records of removed bindings, and of bindings whose episode or concept is gone.
    pub bindings: u64,
    /// Bytes of the above in `.eps` (with `.i8` rows), `.con` and `.bnd`, plus the pages
    /// of replaced and deleted networks. Heap blobs, key cells and table entries are not
    /// counted: sizing them takes a scan.
    pub bytes: u64,
}

impl ReadTxn {
    /// What [`crate::Engram::compact`] would drop if run on this snapshot, from counts every
    /// commit keeps (no scan), so that a caller can decide when compacting is worth its
    /// cost. Episodes whose time to live ran out are counted once a commit has reaped them.
    pub fn reclaimable(&self) -> Reclaimable {
        let v = &self.v;
        let s = &v.state;
        let episodes = s.episode_slots.saturating_sub(s.live_episodes);
        let concept_versions = s.concept_slots.saturating_sub(s.live_concepts);
        let bindings = s.bindings.saturating_sub(s.live_bindings);
        let episode_bytes = v.info.episode_layout.stride as u64
            + match v.info.manifest.int8_mirror {
                true => v.info.int8_layout.stride as u64,
                false => 0,
            };
        let page = crate::store::network::PAGE as u64;
        let live_pages = v.nets.live_bytes().checked_next_multiple_of(page);
        let network_pages = s
            .pages
            .saturating_mul(page)
            .saturating_sub(live_pages.unwrap_or(u64::MAX));
        // Saturating: the counts come from disk, and a forged one must not panic here.
        let bytes = [
            (episodes, episode_bytes),
            (concept_versions, v.info.concept_layout.stride as u64),
            (bindings, records::binding::SIZE),
            (1, network_pages),
        ]
        .iter()
        .fold(0u64, |sum, &(n, each)| {
            sum.saturating_add(n.saturating_mul(each))
        });
        Reclaimable {
            episodes,
            concept_versions,
            bindings,
            bytes,
        }
    }
}

fn copy_blob(v: &Version, blob: &ArchivedBlob, heap: &mut Sink) -> Result<Blob> {
    let bytes = v.heap_bytes(blob)?;
    let pad = records::blob_padding(heap.len, bytes.len());
    if pad > 0 {
        heap.write(&[0; 64][..pad])?;
    }
    let out = Blob {
        off: heap.len,
        len: blob.len.to_native(),
        crc: blob.crc.to_native(),
    };
    heap.write(bytes)?;
    Ok(out)
}

/// Where a copy of a version's live records goes, and as of what.
#[derive(Clone, Copy)]
pub(crate) struct Target<'a> {
    pub dir: &'a Path,
    /// The number of the new files: one no commit names.
    pub number: u64,
    /// The transaction the copy's state is as of.
    pub txn: u64,
    /// The clock time: episodes expired by then are dropped with their bindings, like
    /// deleted ones.
    pub now: i64,
    /// Whether the copy has an int8 mirror file (whether the version has one or not).
    pub int8_mirror: bool,
}

/// Writes every record visible in `v` into `to`'s files and returns the state describing
/// them. Ids are preserved. If writing fails, every file of `to.number` is removed, so a
/// failed run (most often on a full disk) leaves no half-written copies holding space.
pub(crate) fn write_compacted(v: &Version, to: Target<'_>) -> Result<VersionState> {
    finish(copy_nodes(v, to)?, v, to)
}

/// Removes every data file numbered `number` in `dir` (best effort): for files no commit
/// names, written by a run that failed before its commit.
pub(crate) fn remove_files(dir: &Path, number: u64) {
    for (_, kind) in FileNumbers::default().all() {
        let _ = std::fs::remove_file(dir.join(meta::file_name(number, kind)));
    }
}

/// A node copied into the new files.
#[derive(Clone, Copy)]
struct CopiedNode {
    id: u64,
    /// Its slot in the version it was copied from: the same slot in a later version is the
    /// same record (records are never written over).
    from: u64,
    /// Its slot in the copy.
    to: u64,
    /// An episode's key hash, 0 for none.
    key_hash: u64,
}

/// The bulk of a compaction: the live episodes' and concepts' slots (embeddings, centroids
/// and their heap blobs) of one version, copied and synced, but no commit's tables, lists or
/// keys yet. [`Engram::compact`](crate::Engram::compact) makes it without the writer, and
/// [`finish`] completes it under the writer from the version current by then.
pub(crate) struct Copied {
    eps: Sink,
    cons: Sink,
    heap: Sink,
    int8: Option<Sink>,
    /// Ascending by id.
    episodes: Vec<CopiedNode>,
    concepts: Vec<CopiedNode>,
    /// The networks file, its catalog length and the pages file the copied networks are
    /// of: a later version with the same three has the same networks (both files only
    /// grow until a compaction renumbers them).
    networks_of: (u64, u64, u64),
    /// Pages and catalog bytes of the networks written.
    networks: (u64, u64),
    dir: PathBuf,
    number: u64,
}

impl Copied {
    /// Removes the copy's files, for a compaction that will not finish.
    pub(crate) fn discard(self) {
        let (dir, number) = (self.dir.clone(), self.number);
        drop(self);
        remove_files(&dir, number);
    }
}

/// Copies `v`'s live episodes and concepts into `to`'s files, syncs them, and writes its
/// networks; on failure removes every file of `to.number`.
pub(crate) fn copy_nodes(v: &Version, to: Target<'_>) -> Result<Copied> {
    let copied = copy_files(v, to);
    if copied.is_err() {
        remove_files(to.dir, to.number);
    }
    copied
}

fn copy_files(v: &Version, to: Target<'_>) -> Result<Copied> {
    let (dir, number) = (to.dir, to.number);
    let mut c = Copied {
        eps: Sink::create(dir, number, "eps")?,
        cons: Sink::create(dir, number, "con")?,
        heap: Sink::create(dir, number, "heap")?,
        int8: match to.int8_mirror {
            true => Some(Sink::create(dir, number, "i8")?),
            false => None,
        },
        episodes: Vec::new(),
        concepts: Vec::new(),
        networks_of: (
            v.state.files.networks,
            v.state.catalog_len,
            v.state.files.pages,
        ),
        networks: (0, 0),
        dir: dir.to_path_buf(),
        number,
    };
    c.catch_up(v, to.now)?;
    c.sync()?;
    c.networks = write_networks(v, dir, number)?;
    Ok(c)
}

impl Copied {
    /// Appends episode `id`'s record at `slot` of `v` (and its int8 row and blobs).
    fn copy_episode(
        &mut self,
        v: &Version,
        id: u64,
        slot: u64,
        buf: &mut Vec<u8>,
    ) -> Result<CopiedNode> {
        let layout = v.info.episode_layout;
        let rec = v.episode_at(slot)?;
        let payload = copy_blob(v, &rec.payload, &mut self.heap)?;
        let has_key = rec.key.len.to_native() > 0;
        let key = match has_key {
            true => copy_blob(v, &rec.key, &mut self.heap)?,
            false => Blob::default(),
        };
        let archive = records::serialize(&EpisodeRecord {
            embedding: records::native_f32(&rec.embedding),
            id,
            agent: rec.agent.to_native(),
            timestamp: rec.timestamp.to_native(),
            payload,
            key,
            key_hash: rec.key_hash.to_native(),
            norm: rec.norm.to_native(),
        });
        buf.clear();
        layout.push_slot(&archive, buf);
        let node = CopiedNode {
            id,
            from: slot,
            to: self.eps.len / layout.stride as u64,
            key_hash: if has_key { rec.key_hash.to_native() } else { 0 },
        };
        self.eps.write(buf)?;
        if let Some(sink) = &mut self.int8 {
            buf.clear();
            v.info.int8_layout.push_row(
                records::native_f32(&rec.embedding),
                rec.norm.to_native(),
                id,
                rec.agent.to_native(),
                rec.timestamp.to_native(),
                buf,
            );
            sink.write(buf)?;
        }
        Ok(node)
    }

    /// Appends the version of concept `id` that `v` sees, from its newest at `slot` (and its
    /// label), as the concept's only one.
    fn copy_concept(
        &mut self,
        v: &Version,
        id: u64,
        slot: u64,
        buf: &mut Vec<u8>,
    ) -> Result<CopiedNode> {
        let layout = v.info.concept_layout;
        // The slot of the version `v` sees: a later version's entry names the same slot
        // only if the concept was not updated since.
        let (slot, rec) = v.concept_version(id, slot)?;
        let label = copy_blob(v, &rec.label, &mut self.heap)?;
        let archive = records::serialize(&ConceptRecord {
            centroid: records::native_f32(&rec.centroid),
            id,
            created_txn: rec.created_txn.to_native(),
            prev_slot: NONE,
            label,
            members: rec.members.to_native(),
            coherence: rec.coherence.to_native(),
        });
        buf.clear();
        layout.push_slot(&archive, buf);
        let node = CopiedNode {
            id,
            from: slot,
            to: self.cons.len / layout.stride as u64,
            key_hash: 0,
        };
        self.cons.write(buf)?;
        Ok(node)
    }
}

impl Copied {
    /// Makes the slots and blobs copied so far durable, so that [`finish`] has only what
    /// it appends to sync.
    pub(crate) fn sync(&mut self) -> Result<()> {
        for sink in [&mut self.eps, &mut self.cons, &mut self.heap]
            .into_iter()
            .chain(self.int8.as_mut())
        {
            sink.sync()?;
        }
        Ok(())
    }

    /// Brings the copy to the live nodes of `v` at clock time `now`: appends those it does
    /// not hold as `v` has them (all of them, for the first copy; since then, those stored
    /// or concepts updated), and forgets those `v` no longer stores (their slots stay,
    /// dead). A compaction runs it again beside the writer, on the newest version, so that
    /// its run under the writer (in [`finish`]) has only the last commits' nodes to append.
    pub(crate) fn catch_up(&mut self, v: &Version, now: i64) -> Result<()> {
        let mut buf = Vec::new();
        // Ids ascend, and so do the slots copied: read ahead as a scan does.
        let stride = v.info.episode_layout.stride as u64;
        let mut ahead = ReadAhead::new(&v.file(Role::Episodes)?.map, stride);
        let copied = std::mem::take(&mut self.episodes);
        let live = |id| Ok(v.episode_entry(id, now)?.map(|e| e.slot));
        self.episodes = merge(copied, v.table_ids(Role::EpisodeTable), live, |id, slot| {
            ahead.at(slot);
            self.copy_episode(v, id, slot, &mut buf)
        })?;
        // A version committing beside an unlocked run may name a slot newer than `v` sees:
        // its copy then comes again, under the writer (a dead slot, no more).
        let stride = v.info.concept_layout.stride as u64;
        let mut ahead = ReadAhead::new(&v.file(Role::Concepts)?.map, stride);
        let copied = std::mem::take(&mut self.concepts);
        let live = |id| Ok(v.concept_entry(id)?.map(|e| e.slot));
        self.concepts = merge(copied, v.table_ids(Role::ConceptTable), live, |id, slot| {
            ahead.at(slot);
            self.copy_concept(v, id, slot, &mut buf)
        })?;
        Ok(())
    }
}

/// The nodes of `ids` (ascending) that `live` gives a slot, in order: each as `copied`
/// (ascending) holds it if it holds it from that slot, else as `copy` copies it.
fn merge(
    copied: Vec<CopiedNode>,
    ids: impl Iterator<Item = u64>,
    live: impl Fn(u64) -> Result<Option<u64>>,
    mut copy: impl FnMut(u64, u64) -> Result<CopiedNode>,
) -> Result<Vec<CopiedNode>> {
    let mut merged = Vec::with_capacity(copied.len());
    let mut copied = copied.into_iter().peekable();
    for id in ids {
        let Some(slot) = live(id)? else {
            continue;
        };
        while copied.next_if(|n| n.id < id).is_some() {}
        merged.push(match copied.next_if(|n| n.id == id && n.from == slot) {
            Some(n) => n,
            None => copy(id, slot)?,
        });
    }
    Ok(merged)
}

/// Writes `v`'s networks, packed, as the pages and catalog files numbered `number`; returns
/// their pages and the catalog's length.
fn write_networks(v: &Version, dir: &Path, number: u64) -> Result<(u64, u64)> {
    let (page_bytes, catalog) = crate::store::network::compacted(v)?;
    for (kind, bytes) in [("pages", &page_bytes), ("nets", &catalog)] {
        let mut f = Sink::create(dir, number, kind)?;
        f.write(bytes)?;
        f.finish()?;
    }
    let pages = (page_bytes.len() / crate::store::network::PAGE) as u64;
    Ok((pages, catalog.len() as u64))
}

/// Completes `copied` (made from `v` or an earlier version) into a copy of `v`'s live
/// records as of `to.txn` and returns its state. The nodes `v` stores in the slots they were
/// copied from are used as copied; the rest of `v`'s live nodes (stored, or replaced, since)
/// are appended; the copied ones `v` no longer stores stay as dead slots, for the next
/// compaction. The tables, binding lists and key index are written from `v`. On failure
/// removes every file of `to.number`.
pub(crate) fn finish(copied: Copied, v: &Version, to: Target<'_>) -> Result<VersionState> {
    let finished = finish_files(copied, v, to);
    if finished.is_err() {
        remove_files(to.dir, to.number);
    }
    finished
}

fn finish_files(mut c: Copied, v: &Version, to: Target<'_>) -> Result<VersionState> {
    let Target {
        dir,
        number,
        txn,
        now,
        int8_mirror: _,
    } = to;
    let s = v.state;
    c.catch_up(v, now)?;
    let mut bindings: Vec<(u64, Binding)> = Vec::new();
    let mut keys = Vec::new();

    // The new entries of the nodes still stored, ascending by id (memory follows what is
    // stored, not the ids ever assigned); `write_table` lays them out.
    let mut etab: Vec<(u64, table::Words)> = Vec::with_capacity(c.episodes.len());
    let mut next_expiry = table::NEVER;
    for node in &c.episodes {
        let id = node.id;
        if node.key_hash != 0 {
            keys.push((node.key_hash, id));
        }
        let expires_at = v.expires_at(id)?;
        next_expiry = next_expiry.min(expires_at);
        etab.push((
            id,
            table::Words {
                last_access: v.table_word(Role::EpisodeTable, id, table::LAST_ACCESS)? as i64,
                access_count: v.table_word(Role::EpisodeTable, id, table::ACCESS_COUNT)?,
                ..table::Words::new(node.to, NONE, expires_at)
            },
        ));
        bindings.extend(v.walk(v.entry(Role::EpisodeTable, id)?.bind_head, true)?);
    }
    let mut ctab: Vec<(u64, table::Words)> = c
        .concepts
        .iter()
        .map(|n| (n.id, table::Words::new(n.to, NONE, table::NEVER)))
        .collect();

    // Re-link the lists in the original append order so each stays newest first.
    bindings.sort_unstable_by_key(|(at, _)| *at);
    let mut bnd = Sink::create(dir, number, "bnd")?;
    let at = |t: &[(u64, table::Words)], id| t.binary_search_by_key(&id, |e| e.0).ok();
    for (i, (_, b)) in bindings.iter().enumerate() {
        // Walked from a stored episode, so only its concept can be missing.
        let (Some(e), Some(c)) = (at(&etab, b.episode), at(&ctab, b.concept)) else {
            return Err(Error::corrupt(
                &bnd.path,
                i as u64,
                "live binding to a dead concept",
            ));
        };
        let (ep, con) = (&mut etab[e].1, &mut ctab[c].1);
        let rec = Binding {
            next_by_episode: ep.bind_head,
            next_by_concept: con.bind_head,
            ..*b
        };
        ep.bind_head = i as u64;
        con.bind_head = i as u64;
        bnd.write(&rec.encode())?;
    }

    let (episode_table_from, episode_table_runs) =
        write_table(dir, number, "etab", &etab, s.episode_ids, txn)?;
    let (concept_table_from, concept_table_runs) =
        write_table(dir, number, "ctab", &ctab, s.concept_ids, txn)?;
    let key_cells = if keys.is_empty() {
        0
    } else {
        let cells = (keys.len() as u64 * 4).next_power_of_two().max(1024);
        let mut k = Sink::create(dir, number, "keys")?;
        k.write(&crate::store::keys::build(&keys, cells))?;
        k.finish()?;
        cells
    };
    if c.networks_of != (s.files.networks, s.catalog_len, s.files.pages) {
        for kind in ["pages", "nets"] {
            let path = dir.join(meta::file_name(number, kind));
            std::fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
        }
        c.networks = write_networks(v, dir, number)?;
    }
    let (pages, catalog_len) = c.networks;
    let state = VersionState {
        txn,
        episode_ids: s.episode_ids,
        episode_slots: c.eps.len / v.info.episode_layout.stride as u64,
        concept_ids: s.concept_ids,
        concept_slots: c.cons.len / v.info.concept_layout.stride as u64,
        bindings: bindings.len() as u64,
        heap_len: c.heap.len,
        key_cells,
        key_count: keys.len() as u64,
        live_episodes: etab.len() as u64,
        live_concepts: ctab.len() as u64,
        empty_concepts: ctab.iter().filter(|(_, e)| e.bind_head == NONE).count() as u64,
        live_bindings: bindings.len() as u64,
        // Every head is written into the fresh tables, which are synced before the commit.
        heads_from: bindings.len() as u64,
        pages,
        catalog_len,
        files: FileNumbers {
            episodes: number,
            concepts: number,
            episode_table: number,
            concept_table: number,
            bindings: number,
            heap: number,
            keys: if key_cells == 0 { 0 } else { number },
            int8: if c.int8.is_some() { number } else { 0 },
            pages: number,
            networks: number,
        },
        next_expiry,
        episode_table_from,
        concept_table_from,
        episode_table_runs,
        concept_table_runs,
    };
    for sink in [Some(c.eps), Some(c.cons), Some(c.heap), Some(bnd), c.int8]
        .into_iter()
        .flatten()
    {
        sink.finish()?;
    }
    file::sync_dir(dir)?;
    Ok(state)
}

/// Writes table `kind` holding `stored` (the entries of the nodes still stored, ascending
/// by id) out of `ids` assigned, laid out as [`tables::plan`] says, and returns its tail's
/// first id and its number of runs. The other ids of a run or the tail get the entry of a
/// node gone as of the compaction's txn `txn`.
fn write_table(
    dir: &Path,
    number: u64,
    kind: &str,
    stored: &[(u64, table::Words)],
    ids: u64,
    txn: u64,
) -> Result<(u64, u64)> {
    let (runs, from) = tables::plan(stored.iter().map(|e| e.0), ids);
    let gone = table::Words {
        deleted_txn: txn.max(1),
        ..table::Words::new(NONE, NONE, table::NEVER)
    };
    let mut t = Sink::create(dir, number, kind)?;
    t.write(&tables::encode_directory(&runs))?;
    let mut stored = stored.iter().peekable();
    for id in runs
        .iter()
        .flat_map(|&(first, n)| first..first + n)
        .chain(from..ids)
    {
        let e = match stored.next_if(|e| e.0 == id) {
            Some(&(_, e)) => e,
            None => gone,
        };
        t.write(&e.encode())?;
    }
    t.finish()?;
    Ok((from, runs.len() as u64))
}
