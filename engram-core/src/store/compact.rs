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

/// A new file written front to back through a buffer, then synced: compaction's and
/// backup's files, and the binding file an upgrade rewrites.
pub(crate) struct Sink {
    out: BufWriter<File>,
    path: PathBuf,
    len: u64,
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
            site,
        })
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<()> {
        crate::store::fault::io(crate::store::fault::IoOp::Write, self.site)
            .and_then(|()| self.out.write_all(bytes))
            .map_err(|e| Error::io("write", &self.path, e))?;
        self.len += bytes.len() as u64;
        Ok(())
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
    let written = write_files(v, to);
    if written.is_err() {
        remove_files(to.dir, to.number);
    }
    written
}

/// Removes every data file numbered `number` in `dir` (best effort): for files no commit
/// names, written by a run that failed before its commit.
pub(crate) fn remove_files(dir: &Path, number: u64) {
    for (_, kind) in FileNumbers::default().all() {
        let _ = std::fs::remove_file(dir.join(meta::file_name(number, kind)));
    }
}

fn write_files(v: &Version, to: Target<'_>) -> Result<VersionState> {
    let Target {
        dir,
        number,
        txn,
        now,
        int8_mirror,
    } = to;
    let s = v.state;
    let ep_layout = v.info.episode_layout;
    let con_layout = v.info.concept_layout;
    let mut eps = Sink::create(dir, number, "eps")?;
    let mut cons = Sink::create(dir, number, "con")?;
    let mut heap = Sink::create(dir, number, "heap")?;
    let mut int8 = match int8_mirror {
        true => Some(Sink::create(dir, number, "i8")?),
        false => None,
    };
    let mut slot_buf = Vec::with_capacity(ep_layout.stride.max(con_layout.stride));
    let mut bindings: Vec<(u64, Binding)> = Vec::new();
    let mut keys = Vec::new();

    // The new entries of the nodes still stored, ascending by id (memory follows what is
    // stored, not the ids ever assigned); `write_table` lays them out.
    let mut etab: Vec<(u64, table::Words)> =
        Vec::with_capacity(s.live_episodes.min(1 << 20) as usize);
    let mut next_expiry = table::NEVER;
    // Ids ascend, and so do their slots: read ahead as a scan does.
    let mut ahead = ReadAhead::new(&v.file(Role::Episodes)?.map, ep_layout.stride as u64);
    for id in v.table_ids(Role::EpisodeTable) {
        // Deleted before, or expired now: either way gone from this version on.
        let Some(e) = v.episode_entry(id, now)? else {
            continue;
        };
        let expires_at = v.expires_at(id)?;
        next_expiry = next_expiry.min(expires_at);
        ahead.at(e.slot);
        let rec = v.episode_at(e.slot)?;
        let payload = copy_blob(v, &rec.payload, &mut heap)?;
        let key = if rec.key.len.to_native() > 0 {
            keys.push((rec.key_hash.to_native(), id));
            copy_blob(v, &rec.key, &mut heap)?
        } else {
            Blob::default()
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
        slot_buf.clear();
        ep_layout.push_slot(&archive, &mut slot_buf);
        etab.push((
            id,
            table::Words {
                last_access: v.table_word(Role::EpisodeTable, id, table::LAST_ACCESS)? as i64,
                access_count: v.table_word(Role::EpisodeTable, id, table::ACCESS_COUNT)?,
                ..table::Words::new(eps.len / ep_layout.stride as u64, NONE, expires_at)
            },
        ));
        eps.write(&slot_buf)?;
        if let Some(sink) = &mut int8 {
            slot_buf.clear();
            v.info.int8_layout.push_row(
                records::native_f32(&rec.embedding),
                rec.norm.to_native(),
                id,
                rec.agent.to_native(),
                rec.timestamp.to_native(),
                &mut slot_buf,
            );
            sink.write(&slot_buf)?;
        }
        bindings.extend(v.walk(e.bind_head, true)?);
    }

    let mut ctab: Vec<(u64, table::Words)> =
        Vec::with_capacity(s.live_concepts.min(1 << 20) as usize);
    let mut ahead = ReadAhead::new(&v.file(Role::Concepts)?.map, con_layout.stride as u64);
    for id in v.table_ids(Role::ConceptTable) {
        let Some(e) = v.concept_entry(id)? else {
            continue;
        };
        ahead.at(e.slot);
        let rec = v.concept_at(id, e.slot)?;
        let label = copy_blob(v, &rec.label, &mut heap)?;
        let archive = records::serialize(&ConceptRecord {
            centroid: records::native_f32(&rec.centroid),
            id,
            created_txn: rec.created_txn.to_native(),
            prev_slot: NONE,
            label,
            members: rec.members.to_native(),
            coherence: rec.coherence.to_native(),
        });
        slot_buf.clear();
        con_layout.push_slot(&archive, &mut slot_buf);
        ctab.push((
            id,
            table::Words::new(cons.len / con_layout.stride as u64, NONE, table::NEVER),
        ));
        cons.write(&slot_buf)?;
    }

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
    let (page_bytes, catalog) = crate::store::network::compacted(v)?;
    for (kind, bytes) in [("pages", &page_bytes), ("nets", &catalog)] {
        let mut f = Sink::create(dir, number, kind)?;
        f.write(bytes)?;
        f.finish()?;
    }
    let state = VersionState {
        txn,
        episode_ids: s.episode_ids,
        episode_slots: eps.len / ep_layout.stride as u64,
        concept_ids: s.concept_ids,
        concept_slots: cons.len / con_layout.stride as u64,
        bindings: bindings.len() as u64,
        heap_len: heap.len,
        key_cells,
        key_count: keys.len() as u64,
        live_episodes: etab.len() as u64,
        live_concepts: s.live_concepts,
        empty_concepts: ctab.iter().filter(|(_, e)| e.bind_head == NONE).count() as u64,
        live_bindings: bindings.len() as u64,
        // Every head is written into the fresh tables, which are synced before the commit.
        heads_from: bindings.len() as u64,
        pages: (page_bytes.len() / crate::store::network::PAGE) as u64,
        catalog_len: catalog.len() as u64,
        files: FileNumbers {
            episodes: number,
            concepts: number,
            episode_table: number,
            concept_table: number,
            bindings: number,
            heap: number,
            keys: if key_cells == 0 { 0 } else { number },
            int8: if int8.is_some() { number } else { 0 },
            pages: number,
            networks: number,
        },
        next_expiry,
        episode_table_from,
        concept_table_from,
        episode_table_runs,
        concept_table_runs,
    };
    for sink in [Some(eps), Some(cons), Some(heap), Some(bnd), int8]
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
