//! The write transaction: appends new records past the committed ends, keeps its in-place
//! changes as redo ops, and publishes them all at `commit()`.

use std::sync::Arc;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use crate::concept::{Changes, Node};
use crate::error::{Error, Result};
use crate::store::db::{Engram, Writer, WriterGuard, Written};
use crate::store::expiry::ExpiryQueue;
use crate::store::file::ReadAhead;
use crate::store::meta::{self, Op, VersionState};
use crate::store::network::{NetWrites, PAGE};
use crate::store::records::{
    self, Blob, ConceptRecord, EpisodeRecord, NONE, binding::Binding, table,
};
use crate::store::redo::{HeadMove, Redo};
use crate::store::snapshot::{ANY_TIME, DbInfo, FILES, Role, Version};
use crate::store::wal;

/// Binding records past `heads_from` before a commit advances it. Head stamps of the
/// records past it are synced only then (and on close), so most commits that bind committed
/// nodes sync no table they only stamped; recovery reads at most about this many records
/// (64 B each, 1 MiB) to re-derive their heads.
const HEADS_LAG: u64 = 16_384;

/// What to remember about one episode.
#[derive(Clone, Copy, Debug)]
pub struct EpisodeInput<'a> {
    /// Namespace of the agent that lived the episode.
    pub agent: u64,
    /// Caller-defined time (e.g. Unix microseconds); scans filter on it.
    pub timestamp: i64,
    /// The embedding: the database's dimension, finite values, a norm of at most 1e18 (so
    /// that similarities summed in f32 cannot overflow).
    pub embedding: &'a [f32],
    /// Any bytes (the caller's record of the event).
    pub payload: &'a [u8],
    /// Optional unique key: inserting an existing key returns the existing episode.
    pub key: Option<&'a [u8]>,
}

impl EpisodeInput<'_> {
    /// Everything an insert refuses, checked before it changes anything; returns the
    /// embedding's norm.
    pub(crate) fn check(&self, info: &DbInfo) -> Result<f32> {
        let norm = info.check_vector("embedding", self.embedding)?;
        if self.payload.len() > u32::MAX as usize {
            return Err(Error::InvalidArgument("payload larger than 4 GiB".into()));
        }
        if let Some(key) = self.key
            && (key.is_empty() || key.len() > u32::MAX as usize)
        {
            return Err(Error::InvalidArgument(
                "keys are 1 byte to 4 GiB long".into(),
            ));
        }
        Ok(norm)
    }
}

/// How long a new episode stays visible, in clock units ([`crate::Options::clock`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ttl {
    /// The agent's default ([`WriteTxn::set_agent_ttl`]), or forever if it has none.
    AgentDefault,
    /// Forever (until deleted).
    Never,
    /// Invisible from `now + duration` on, `now` being the transaction's clock time.
    After(i64),
    /// Invisible from this clock time on.
    At(i64),
}

impl Ttl {
    pub(crate) fn check(self) -> Result<()> {
        match self {
            Ttl::After(d) if d <= 0 => Err(Error::InvalidArgument(format!(
                "time to live {d} is not positive"
            ))),
            _ => Ok(()),
        }
    }
}

/// A new concept.
#[derive(Clone, Copy, Debug)]
pub struct ConceptInput<'a> {
    /// The centroid: the database's dimension, finite values, a norm of at most 1e18.
    pub centroid: &'a [f32],
    /// A label (any UTF-8).
    pub label: &'a str,
}

/// What a concept version records of its formation: how many episodes its centroid is the
/// normalized mean of, and their mean cosine to it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Formed {
    pub members: u64,
    pub coherence: f32,
}

impl Formed {
    /// A concept placed (or moved) by hand.
    pub const HAND: Formed = Formed {
        members: 0,
        coherence: 0.0,
    };
}

/// Bytes appended to one file past its committed end, flushed in large writes.
struct Appender {
    role: Role,
    start: u64,
    written: u64,
    buf: Vec<u8>,
}

/// Appends go to the kernel in pieces this large, each one's writeback started at once.
const FLUSH_AT: usize = 1 << 20;

impl Appender {
    fn new(role: Role, start: u64) -> Self {
        Appender {
            role,
            start,
            written: 0,
            buf: Vec::new(),
        }
    }

    fn end(&self) -> u64 {
        self.start + self.written + self.buf.len() as u64
    }

    fn flush(&mut self, w: &Writer) -> Result<()> {
        self.flush_hinted(w, true)
    }

    /// `hint`: start the range's writeback at once (a checkpoint syncs it soon); a logged
    /// commit's bytes are written back in larger pieces later (`Writer::commit`).
    fn flush_hinted(&mut self, w: &Writer, hint: bool) -> Result<()> {
        if !self.buf.is_empty() {
            let h = w.handle(self.role)?;
            let at = self.start + self.written;
            match hint {
                true => h.write_at(at, &self.buf)?,
                false => h.write_unhinted(at, &self.buf)?,
            }
            self.written += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    fn touched(&self) -> bool {
        self.written > 0 || !self.buf.is_empty()
    }

    /// Overwrites `bytes` at `rel` bytes past `start`, in what this transaction appended:
    /// still buffered, or already written past the committed end (where no reader looks).
    fn patch(&mut self, w: &Writer, rel: u64, bytes: &[u8]) -> Result<()> {
        match rel.checked_sub(self.written) {
            Some(at) => {
                let at = at as usize;
                self.buf[at..at + bytes.len()].copy_from_slice(bytes);
                Ok(())
            }
            None => w.handle(self.role)?.write_at(self.start + rel, bytes),
        }
    }
}

/// Everything a transaction appends past the committed ends.
struct Appenders {
    episodes: Appender,
    concepts: Appender,
    episode_table: Appender,
    concept_table: Appender,
    heap: Appender,
    /// Rows of the int8 mirror, when the database keeps one.
    int8: Option<Appender>,
    pages: Appender,
    networks: Appender,
}

impl Appenders {
    fn all(&self) -> impl Iterator<Item = &Appender> {
        [
            Some(&self.episodes),
            Some(&self.concepts),
            Some(&self.episode_table),
            Some(&self.concept_table),
            Some(&self.heap),
            self.int8.as_ref(),
            Some(&self.pages),
            Some(&self.networks),
        ]
        .into_iter()
        .flatten()
    }

    fn all_mut(&mut self) -> impl Iterator<Item = &mut Appender> {
        [
            Some(&mut self.episodes),
            Some(&mut self.concepts),
            Some(&mut self.episode_table),
            Some(&mut self.concept_table),
            Some(&mut self.heap),
            self.int8.as_mut(),
            Some(&mut self.pages),
            Some(&mut self.networks),
        ]
        .into_iter()
        .flatten()
    }
}

/// Per-node values a transaction changes (list heads, newest slots): nodes it created are
/// dense ids from `base` on and live in a vector; committed ones are hashed.
struct Heads {
    base: u64,
    created: Vec<u64>,
    committed: HashMap<u64, u64>,
}

impl Heads {
    /// `expected`: how many committed nodes the transaction will likely move (sized up
    /// front, as growing the map one rehash at a time was a fifth of `bind`'s cost).
    fn new(base: u64, expected: usize) -> Self {
        Heads {
            base,
            created: Vec::new(),
            committed: HashMap::with_capacity(expected),
        }
    }

    fn get(&self, id: u64) -> Option<u64> {
        match id.checked_sub(self.base) {
            Some(i) => self.created.get(i as usize).copied().filter(|&v| v != NONE),
            None => self.committed.get(&id).copied(),
        }
    }

    #[inline]
    fn set(&mut self, id: u64, value: u64) {
        match id.checked_sub(self.base) {
            Some(i) => {
                let i = i as usize;
                if self.created.len() <= i {
                    self.created.resize(i + 1, NONE);
                }
                self.created[i] = value;
            }
            None => {
                self.committed.insert(id, value);
            }
        }
    }

    /// Values of nodes this transaction created, by their index past `base`.
    fn created(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        (0..)
            .zip(self.created.iter().copied())
            .filter(|&(_, v)| v != NONE)
    }

    fn committed(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.committed.iter().map(|(&id, &v)| (id, v))
    }
}

/// The single write transaction. Nothing it does is visible to readers, or durable,
/// before [`WriteTxn::commit`] returns; dropping it discards everything.
pub struct WriteTxn<'db> {
    db: &'db Engram,
    w: WriterGuard<'db>,
    base: Arc<Version>,
    state: VersionState,
    out: Appenders,
    new_bindings: Vec<Binding>,
    deleted_episodes: HashSet<u64>,
    deleted_concepts: HashSet<u64>,
    deleted_bindings: HashSet<u64>,
    /// Binding-list heads of episodes and concepts, and newest slots of concepts.
    episode_heads: Heads,
    concept_bind_heads: Heads,
    concept_heads: Heads,
    concept_labels: HashMap<u64, Blob>,
    new_keys: HashMap<Vec<u8>, u64>,
    nets: NetWrites,
    /// The clock when the transaction began: what it sees as expired.
    now: i64,
    /// Episodes this transaction created with a time to live: (id, expires_at).
    new_expiring: Vec<(u64, i64)>,
    /// Of those, the ones created already expired (`Ttl::At` a past time).
    born_expired: HashSet<u64>,
}

impl<'db> WriteTxn<'db> {
    pub(crate) fn new(db: &'db Engram, w: WriterGuard<'db>, base: Arc<Version>) -> Self {
        let s = base.state;
        // Capped: one huge transaction must not make every later one allocate as much.
        let bound_concepts = w.bound_concepts.min(1 << 16);
        let ep_stride = base.info.episode_layout.stride as u64;
        let con_stride = base.info.concept_layout.stride as u64;
        // Published versions passed the open's consistency check: their tables' lengths exist.
        let table_end = |role| {
            base.tables
                .len(&s, role)
                .expect("consistent published state")
        };
        WriteTxn {
            db,
            w,
            state: VersionState {
                txn: s.txn + 1,
                ..s
            },
            out: Appenders {
                episodes: Appender::new(Role::Episodes, s.episode_slots * ep_stride),
                concepts: Appender::new(Role::Concepts, s.concept_slots * con_stride),
                episode_table: Appender::new(Role::EpisodeTable, table_end(Role::EpisodeTable)),
                concept_table: Appender::new(Role::ConceptTable, table_end(Role::ConceptTable)),
                heap: Appender::new(Role::Heap, s.heap_len),
                int8: base.info.manifest.int8_mirror.then(|| {
                    Appender::new(
                        Role::Int8,
                        s.episode_slots * base.info.int8_layout.stride as u64,
                    )
                }),
                pages: Appender::new(Role::Pages, s.pages * PAGE as u64),
                networks: Appender::new(Role::Networks, s.catalog_len),
            },
            nets: NetWrites::default(),
            base,
            new_bindings: Vec::new(),
            deleted_episodes: HashSet::new(),
            deleted_concepts: HashSet::new(),
            deleted_bindings: HashSet::new(),
            episode_heads: Heads::new(s.episode_ids, 0),
            concept_bind_heads: Heads::new(s.concept_ids, bound_concepts),
            concept_heads: Heads::new(s.concept_ids, 0),
            concept_labels: HashMap::new(),
            new_keys: HashMap::new(),
            now: db.clock.now(),
            new_expiring: Vec::new(),
            born_expired: HashSet::new(),
        }
    }

    fn push_blob(&mut self, bytes: &[u8]) -> Blob {
        let pad = records::blob_padding(self.out.heap.end(), bytes.len());
        self.out.heap.buf.resize(self.out.heap.buf.len() + pad, 0);
        let blob = Blob {
            off: self.out.heap.end(),
            len: bytes.len() as u32,
            crc: crc32c::crc32c(bytes),
        };
        self.out.heap.buf.extend_from_slice(bytes);
        blob
    }

    fn flush_if_large(&mut self) -> Result<()> {
        for a in self.out.all_mut() {
            if a.buf.len() >= FLUSH_AT {
                let r = a.flush(&self.w);
                if r.is_err() {
                    self.w.poisoned = true;
                }
                r?;
            }
        }
        Ok(())
    }

    /// Stores an episode and returns its id. With a key that is already live, returns the
    /// existing episode's id and stores nothing. The episode lives as long as its agent's
    /// default time to live says ([`Ttl::AgentDefault`]).
    pub fn insert_episode(&mut self, input: &EpisodeInput<'_>) -> Result<u64> {
        self.insert_episode_with_ttl(input, Ttl::AgentDefault)
    }

    /// [`WriteTxn::insert_episode`] with a chosen time to live. From its expiry on the
    /// episode is invisible to every snapshot whose clock has reached it; the first commit
    /// at or after that time deletes it with its bindings, and compaction reclaims it.
    ///
    /// ```
    /// use engram_core::{Engram, EpisodeInput, Options, Ttl};
    /// # fn main() -> engram_core::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = Engram::open(dir.path(), Options { dimension: Some(2), ..Options::default() })?;
    /// let mut tx = db.begin_write()?;
    /// let ep = EpisodeInput { agent: 1, timestamp: 0, embedding: &[1.0, 0.0], payload: b"", key: None };
    /// let kept = tx.insert_episode_with_ttl(&ep, Ttl::Never)?;
    /// let gone = tx.insert_episode_with_ttl(&ep, Ttl::At(0))?; // the clock is past 1970
    /// tx.commit()?;
    /// let snap = db.begin_read()?;
    /// assert!(snap.episode(kept)?.is_some());
    /// assert!(snap.episode(gone)?.is_none());
    /// # Ok(()) }
    /// ```
    pub fn insert_episode_with_ttl(&mut self, input: &EpisodeInput<'_>, ttl: Ttl) -> Result<u64> {
        let norm = input.check(&self.base.info)?;
        self.insert_checked(input, ttl, norm)
    }

    /// [`WriteTxn::insert_episode_with_ttl`] of an input [`EpisodeInput::check`] passed,
    /// which gave `norm`.
    pub(crate) fn insert_checked(
        &mut self,
        input: &EpisodeInput<'_>,
        ttl: Ttl,
        norm: f32,
    ) -> Result<u64> {
        let expires_at = self.expiry(input.agent, ttl)?;
        let mut key_blob = Blob::default();
        let mut key_hash = 0;
        if let Some(key) = input.key {
            if let Some(&id) = self.new_keys.get(key)
                && !self.born_expired.contains(&id)
            {
                return Ok(id);
            }
            if let Some(id) = self.base.find_key(key, self.now)?
                && !self.deleted_episodes.contains(&id)
            {
                return Ok(id);
            }
            key_blob = self.push_blob(key);
            key_hash = records::key_hash(key);
        }
        let payload = self.push_blob(input.payload);
        let id = self.state.episode_ids;
        let slot = self.state.episode_slots;
        let archive = records::serialize(&EpisodeRecord {
            embedding: input.embedding,
            id,
            agent: input.agent,
            timestamp: input.timestamp,
            payload,
            key: key_blob,
            key_hash,
            norm,
        });
        self.base
            .info
            .episode_layout
            .push_slot(&archive, &mut self.out.episodes.buf);
        self.out
            .episode_table
            .buf
            .extend_from_slice(&table::Words::new(slot, NONE, expires_at).encode());
        if expires_at != table::NEVER {
            self.new_expiring.push((id, expires_at));
            self.state.next_expiry = self.state.next_expiry.min(expires_at);
            if expires_at <= self.now {
                self.born_expired.insert(id);
            }
        }
        if let Some(int8) = &mut self.out.int8 {
            self.base.info.int8_layout.push_row(
                input.embedding,
                norm,
                id,
                input.agent,
                input.timestamp,
                &mut int8.buf,
            );
        }
        if let Some(key) = input.key {
            self.new_keys.insert(key.to_vec(), id);
        }
        self.state.episode_ids += 1;
        self.state.episode_slots += 1;
        self.state.live_episodes += 1;
        self.flush_if_large()?;
        Ok(id)
    }

    /// The `expires_at` word for a new episode of `agent`.
    fn expiry(&self, agent: u64, ttl: Ttl) -> Result<i64> {
        let ttl = match ttl {
            Ttl::AgentDefault => match self.nets.agent_ttl(agent) {
                Some(set) => set.map_or(Ttl::Never, Ttl::After),
                None => self
                    .base
                    .nets
                    .agent_ttl(agent)
                    .map_or(Ttl::Never, Ttl::After),
            },
            t => t,
        };
        ttl.check()?;
        // `ANY_TIME` (i64::MIN) must stay before every expiry.
        Ok(match ttl {
            Ttl::AgentDefault | Ttl::Never => table::NEVER,
            Ttl::After(d) => self.now.saturating_add(d).max(i64::MIN + 1),
            Ttl::At(t) => t.max(i64::MIN + 1),
        })
    }

    /// Sets the default time to live (clock units, positive) of `agent`'s episodes inserted
    /// from now on with [`Ttl::AgentDefault`]; `None` clears it. Episodes already stored
    /// keep their expiry. Persisted with the transaction.
    pub fn set_agent_ttl(&mut self, agent: u64, ttl: Option<i64>) -> Result<()> {
        if let Some(d) = ttl
            && !(1..i64::MAX).contains(&d)
        {
            return Err(Error::InvalidArgument(format!(
                "time to live {d} is not between 1 and {}",
                i64::MAX - 1
            )));
        }
        let txn = self.state.txn;
        self.nets.set_agent_ttl(txn, agent, ttl);
        Ok(())
    }

    /// Stores a concept and returns its id.
    pub fn insert_concept(&mut self, input: &ConceptInput<'_>) -> Result<u64> {
        self.base.info.check_vector("centroid", input.centroid)?;
        self.new_concept(input.centroid, input.label, Formed::HAND)
    }

    pub(crate) fn new_concept(
        &mut self,
        centroid: &[f32],
        label: &str,
        formed: Formed,
    ) -> Result<u64> {
        self.require_dual()?;
        check_label(label)?;
        let id = self.state.concept_ids;
        let label = self.push_blob(label.as_bytes());
        let slot = self.push_concept_version(id, centroid, label, NONE, formed);
        self.out
            .concept_table
            .buf
            .extend_from_slice(&table::Words::new(slot, NONE, table::NEVER).encode());
        self.concept_heads.set(id, slot);
        self.state.concept_ids += 1;
        self.state.live_concepts += 1;
        self.flush_if_large()?;
        Ok(id)
    }

    fn push_concept_version(
        &mut self,
        id: u64,
        centroid: &[f32],
        label: Blob,
        prev: u64,
        formed: Formed,
    ) -> u64 {
        let slot = self.state.concept_slots;
        let archive = records::serialize(&ConceptRecord {
            centroid,
            id,
            created_txn: self.state.txn,
            prev_slot: prev,
            label,
            members: formed.members,
            coherence: formed.coherence,
        });
        self.base
            .info
            .concept_layout
            .push_slot(&archive, &mut self.out.concepts.buf);
        self.state.concept_slots += 1;
        self.concept_labels.insert(id, label);
        slot
    }

    /// Replaces a concept's centroid, and its label when given. Readers of older
    /// snapshots keep seeing the old version. A hand-moved centroid no longer is the mean of
    /// formed members, so the new version counts none ([`Concept::members`] 0).
    ///
    /// [`Concept::members`]: crate::Concept::members
    pub fn update_concept(&mut self, id: u64, centroid: &[f32], label: Option<&str>) -> Result<()> {
        self.base.info.check_vector("centroid", centroid)?;
        self.put_concept_version(id, centroid, label, Formed::HAND)
    }

    /// Appends a new version of concept `id` (its label kept unless given).
    pub(crate) fn put_concept_version(
        &mut self,
        id: u64,
        centroid: &[f32],
        label: Option<&str>,
        formed: Formed,
    ) -> Result<()> {
        self.require_dual()?;
        let head = self.concept_head(id)?;
        if let Some(l) = label {
            check_label(l)?;
        }
        let label = match label {
            Some(l) => self.push_blob(l.as_bytes()),
            None => match self.concept_labels.get(&id) {
                Some(b) => *b,
                None => {
                    let rec = self.base.concept_at(id, head)?;
                    Blob {
                        off: rec.label.off.to_native(),
                        len: rec.label.len.to_native(),
                        crc: rec.label.crc.to_native(),
                    }
                }
            },
        };
        let slot = self.push_concept_version(id, centroid, label, head, formed);
        self.concept_heads.set(id, slot);
        self.flush_if_large()
    }

    /// The clock time the transaction began at: episodes expired by then are not live.
    pub(crate) fn now(&self) -> i64 {
        self.now
    }

    /// The commit this transaction will be.
    pub(crate) fn txn(&self) -> u64 {
        self.state.txn
    }

    /// Where the next network byte goes in the pages file.
    pub(crate) fn pages_end(&self) -> u64 {
        self.out.pages.end()
    }

    pub(crate) fn append_pages(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.pages.buf.extend_from_slice(bytes);
        self.flush_if_large()
    }

    pub(crate) fn net_writes(&mut self) -> &mut NetWrites {
        &mut self.nets
    }

    pub(crate) fn net_writes_ref(&self) -> &NetWrites {
        &self.nets
    }

    /// The snapshot this transaction started from.
    pub(crate) fn base(&self) -> &Arc<Version> {
        &self.base
    }

    pub(crate) fn deleted_episode(&self, id: u64) -> bool {
        self.deleted_episodes.contains(&id)
    }

    /// Whether this transaction deleted concept `id` or wrote a version of it.
    pub(crate) fn touched_concept(&self, id: u64) -> bool {
        self.deleted_concepts.contains(&id) || self.concept_heads.get(id).is_some()
    }

    pub(crate) fn require_dual(&self) -> Result<()> {
        self.db.require_dual()
    }

    pub(crate) fn episode_live(&self, id: u64) -> Result<bool> {
        if self.deleted_episodes.contains(&id) {
            return Ok(false);
        }
        if id < self.base.state.episode_ids {
            return Ok(self.base.episode_entry(id, self.now)?.is_some());
        }
        Ok(id < self.state.episode_ids && !self.born_expired.contains(&id))
    }

    fn concept_live(&self, id: u64) -> Result<bool> {
        if self.deleted_concepts.contains(&id) {
            return Ok(false);
        }
        if id < self.base.state.concept_ids {
            return Ok(self.base.concept_entry(id)?.is_some());
        }
        Ok(id < self.state.concept_ids)
    }

    fn require_episode(&self, id: u64) -> Result<()> {
        match self.episode_live(id)? {
            true => Ok(()),
            false => Err(Error::NotFound {
                kind: "episode",
                id,
            }),
        }
    }

    pub(crate) fn require_concept(&self, id: u64) -> Result<()> {
        match self.concept_live(id)? {
            true => Ok(()),
            false => Err(Error::NotFound {
                kind: "concept",
                id,
            }),
        }
    }

    /// Newest slot of a live concept, as this transaction sees it.
    fn concept_head(&self, id: u64) -> Result<u64> {
        self.require_concept(id)?;
        // Concepts created in this transaction are always in `concept_heads`.
        match self.concept_heads.get(id) {
            Some(s) => Ok(s),
            None => Ok(self.base.entry(Role::ConceptTable, id)?.slot),
        }
    }

    fn bind_head(&self, role: Role, id: u64) -> Result<u64> {
        let (heads, committed_ids) = match role {
            Role::EpisodeTable => (&self.episode_heads, self.base.state.episode_ids),
            _ => (&self.concept_bind_heads, self.base.state.concept_ids),
        };
        if let Some(h) = heads.get(id) {
            return Ok(h);
        }
        if id < committed_ids {
            return Ok(self.base.entry(role, id)?.bind_head);
        }
        Ok(NONE)
    }

    /// The binding-list head of a live concept as this transaction sees it (one read of a
    /// committed concept's table entry answers both); `NotFound` if it is not live.
    fn concept_bind_head(&self, id: u64) -> Result<u64> {
        let live = !self.deleted_concepts.contains(&id);
        if let Some(head) = self.concept_bind_heads.get(id).filter(|_| live) {
            return Ok(head);
        }
        let head = match id < self.base.state.concept_ids {
            true => self.base.concept_entry(id)?.map(|e| e.bind_head),
            false => (id < self.state.concept_ids).then_some(NONE),
        };
        match head.filter(|_| live) {
            Some(head) => Ok(head),
            None => Err(Error::NotFound {
                kind: "concept",
                id,
            }),
        }
    }

    fn binding(&self, index: u64) -> Result<Binding> {
        match index.checked_sub(self.base.state.bindings) {
            Some(i) => Ok(self.new_bindings[i as usize]),
            None => self.base.binding(index),
        }
    }

    /// Live bindings along one list as this transaction sees them.
    fn live_bindings(&self, head: u64, by_episode: bool) -> Result<Vec<(u64, Binding)>> {
        records::binding::walk(
            head,
            by_episode,
            self.base.file(Role::Bindings)?.map.path(),
            |at| self.binding(at),
            |at, _| self.binding_live(at),
        )
    }

    /// Whether the list from `head` holds a binding live as this transaction sees it. As in
    /// [`Version::any_live`], the newest binding usually answers alone, without reading
    /// (and checksumming) its record.
    fn any_live(&self, head: u64, by_episode: bool) -> Result<bool> {
        if head != NONE && self.binding_live(head)? {
            return Ok(true);
        }
        Ok(records::binding::find(
            head,
            by_episode,
            self.base.file(Role::Bindings)?.map.path(),
            |at| self.binding(at),
            |at, _| self.binding_live(at),
        )?
        .is_some())
    }

    fn binding_live(&self, at: u64) -> Result<bool> {
        let committed_dead =
            at < self.base.state.bindings && self.base.binding_deleted_txn(at)? != 0;
        let deleted_here = self.deleted_bindings.contains(&at);
        Ok(!committed_dead && !deleted_here)
    }

    /// Live concepts without a live binding once this transaction commits. Only concepts it
    /// created, deleted, bound or unbound can change, each decided by a look at its newest
    /// binding (a walk only when that one is dead), so the cost follows the transaction.
    fn empty_concepts_after(&self) -> Result<u64> {
        let committed = self.base.state.concept_ids;
        // (concept, its list head if this transaction moved it): committed concepts bound
        // here, then those only unbound or deleted (rarer), then the ones created here.
        let mut unbound = HashSet::new();
        for &at in &self.deleted_bindings {
            unbound.insert(self.binding(at)?.concept);
        }
        unbound.extend(&self.deleted_concepts);
        let mut empty = self.base.state.empty_concepts;
        // A committed concept bound here was live when bound (`bind` checks), so it stays
        // counted as it was unless it was empty before (none was, the usual case: concepts
        // are formed with their bindings) or this transaction deleted it or its new binding.
        let none_empty = empty == 0;
        let unchanged = |c: u64, head: u64| -> Result<bool> {
            Ok(none_empty && !self.deleted_concepts.contains(&c) && self.binding_live(head)?)
        };
        let mut touched = Vec::new();
        for (id, head) in self.concept_bind_heads.committed() {
            if !unchanged(id, head)? {
                touched.push((id, Some(head)));
            }
        }
        touched.extend(
            unbound
                .into_iter()
                .filter(|&c| c < committed && self.concept_bind_heads.get(c).is_none())
                .map(|c| (c, None)),
        );
        // In id order, table entries and newest bindings are read in file order.
        touched.sort_unstable_by_key(|&(id, _)| id);
        touched.extend(
            (committed..self.state.concept_ids).map(|c| (c, self.concept_bind_heads.get(c))),
        );
        for (c, moved) in touched {
            let entry = self.base.concept_entry(c)?;
            let was_empty = match entry {
                Some(e) => !self.base.any_live(e.bind_head, false)?,
                None => false,
            };
            let head = moved.or(entry.map(|e| e.bind_head)).unwrap_or(NONE);
            let is_empty = self.concept_live(c)? && !self.any_live(head, false)?;
            empty = (empty + u64::from(is_empty)).saturating_sub(u64::from(was_empty));
        }
        Ok(empty)
    }

    fn delete_binding(&mut self, index: u64) {
        if self.deleted_bindings.insert(index) {
            self.state.live_bindings -= 1;
        }
    }

    /// Binds an episode to a concept with a strength; binding an already bound pair
    /// replaces its strength.
    pub fn bind(&mut self, episode: u64, concept: u64, strength: f32) -> Result<()> {
        self.require_dual()?;
        if !strength.is_finite() {
            return Err(Error::NonFinite {
                what: "binding strength",
                index: 0,
                value: strength,
            });
        }
        self.require_episode(episode)?;
        let head_c = self.concept_bind_head(concept)?;
        let head_e = self.bind_head(Role::EpisodeTable, episode)?;
        // An episode without bindings (every new one) has no old binding to replace.
        if head_e != NONE
            && let Some((at, _)) = self
                .live_bindings(head_e, true)?
                .into_iter()
                .find(|(_, b)| b.concept == concept)
        {
            self.delete_binding(at);
        }
        let index = self.state.bindings;
        self.new_bindings.push(Binding {
            episode,
            concept,
            next_by_episode: head_e,
            next_by_concept: head_c,
            strength,
        });
        self.episode_heads.set(episode, index);
        self.concept_bind_heads.set(concept, index);
        self.state.bindings += 1;
        self.state.live_bindings += 1;
        Ok(())
    }

    /// Strengthens (or, with a negative `delta`, weakens) the binding of a pair by a finite
    /// `delta`, floored at 0, and returns the new strength; `NotFound` if they are not bound.
    /// Fan counts are unchanged; the strength cache sees the new value from this commit on.
    pub fn reinforce(&mut self, episode: u64, concept: u64, delta: f32) -> Result<f32> {
        self.require_dual()?;
        // A NaN delta would floor to 0 unnoticed (`max` drops NaN); an infinite one is no
        // amount either.
        Error::check_finite("reinforcement delta", &[delta])?;
        self.require_episode(episode)?;
        let head = self.bind_head(Role::EpisodeTable, episode)?;
        let Some((_, b)) = self
            .live_bindings(head, true)?
            .into_iter()
            .find(|(_, b)| b.concept == concept)
        else {
            return Err(Error::NotFound {
                kind: "binding",
                id: episode,
            });
        };
        let strength = (b.strength + delta).max(0.0);
        self.bind(episode, concept, strength)?;
        Ok(strength)
    }

    /// Deletes every live episode of `agent` with a timestamp before `before` (as committed
    /// when this transaction began), with their bindings, in this one transaction; returns
    /// how many. Their space is reclaimed by the next compaction.
    pub fn forget_where(&mut self, agent: u64, before: i64) -> Result<u64> {
        let base = self.base.clone();
        let rows = base.episode_rows()?;
        let filter = crate::store::search::Filter {
            agent: Some(agent),
            time: Some(i64::MIN..before),
        };
        let stride = base.info.episode_layout.stride as u64;
        let mut ahead = ReadAhead::new(&base.file(Role::Episodes)?.map, stride);
        let mut n = 0;
        for slot in 0..rows.len() as u64 {
            ahead.at(slot);
            if let Some(id) = base.live_slot(slot, &filter, self.now)?
                && !self.deleted_episodes.contains(&id)
            {
                self.delete_episode(id)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Removes the binding of a pair; `NotFound` if they are not bound.
    pub fn unbind(&mut self, episode: u64, concept: u64) -> Result<()> {
        self.require_dual()?;
        self.require_episode(episode)?;
        let head = self.bind_head(Role::EpisodeTable, episode)?;
        let found = self
            .live_bindings(head, true)?
            .into_iter()
            .find(|(_, b)| b.concept == concept);
        match found {
            Some((at, _)) => {
                self.delete_binding(at);
                Ok(())
            }
            None => Err(Error::NotFound {
                kind: "binding to concept",
                id: concept,
            }),
        }
    }

    /// Deletes an episode and its bindings.
    pub fn delete_episode(&mut self, id: u64) -> Result<()> {
        self.require_episode(id)?;
        self.remove_episode(id)
    }

    /// Deletes a stored episode, live or expired, and its bindings.
    fn remove_episode(&mut self, id: u64) -> Result<()> {
        let head = self.bind_head(Role::EpisodeTable, id)?;
        for (at, _) in self.live_bindings(head, true)? {
            self.delete_binding(at);
        }
        self.new_keys.retain(|_, v| *v != id);
        self.deleted_episodes.insert(id);
        self.state.live_episodes -= 1;
        Ok(())
    }

    /// Deletes a concept and its bindings.
    pub fn delete_concept(&mut self, id: u64) -> Result<()> {
        self.require_dual()?;
        self.require_concept(id)?;
        let head = self.bind_head(Role::ConceptTable, id)?;
        for (at, _) in self.live_bindings(head, false)? {
            self.delete_binding(at);
        }
        self.deleted_concepts.insert(id);
        self.state.live_concepts -= 1;
        Ok(())
    }

    /// Live bindings of an episode as this transaction sees them (its own changes included).
    pub fn episode_fan_count(&self, id: u64) -> Result<usize> {
        self.require_episode(id)?;
        Ok(self
            .live_bindings(self.bind_head(Role::EpisodeTable, id)?, true)?
            .len())
    }

    /// Live bindings of a concept as this transaction sees them.
    pub fn concept_fan_count(&self, id: u64) -> Result<usize> {
        self.require_concept(id)?;
        Ok(self
            .live_bindings(self.bind_head(Role::ConceptTable, id)?, false)?
            .len())
    }

    /// What this transaction changes in the handle's caches and fan-count index. Nodes it
    /// created are in no cache (no snapshot has seen them), so only committed ones count.
    fn changes(&self) -> Result<Changes> {
        let (eps, cons) = (self.base.state.episode_ids, self.base.state.concept_ids);
        let mut c = Changes::default();
        if self.db.caches.is_empty() {
            // Nothing cached or indexed (an ingest nobody has read from yet), and nothing can
            // be filled until this commit is published (it was announced): nothing to do.
            return Ok(c);
        }
        let mut touched = |b: &Binding, delta: i64| {
            if b.episode < eps {
                *c.fans.entry((Node::Episode, b.episode)).or_insert(0) += delta;
            }
            if b.concept < cons {
                *c.fans.entry((Node::Concept, b.concept)).or_insert(0) += delta;
            }
        };
        let mut pairs = Vec::new();
        for b in &self.new_bindings {
            touched(b, 1);
            pairs.push((b.episode, b.concept));
        }
        for &at in &self.deleted_bindings {
            let b = self.binding(at)?;
            touched(&b, -1);
            pairs.push((b.episode, b.concept));
        }
        pairs.retain(|&(e, c)| e < eps && c < cons);
        c.pairs = pairs;
        c.concepts = self.concept_heads.committed().map(|(id, _)| id).collect();
        c.concepts.extend(self.deleted_concepts.iter().copied());
        c.deleted = self
            .deleted_episodes
            .iter()
            .map(|&id| (Node::Episode, id))
            .collect();
        c.deleted
            .extend(self.deleted_concepts.iter().map(|&id| (Node::Concept, id)));
        Ok(c)
    }

    /// Writes the list heads and newest slots of nodes created in this transaction into
    /// their appended table entries: only nodes that were already committed need redo ops.
    fn patch_new_entries(&mut self) -> Result<()> {
        let at = |i: u64, field: u64| i * table::ENTRY + field;
        for (i, head) in self.episode_heads.created() {
            let off = at(i, table::BIND_HEAD);
            self.out
                .episode_table
                .patch(&self.w, off, &head.to_le_bytes())?;
        }
        for (i, head) in self.concept_bind_heads.created() {
            let off = at(i, table::BIND_HEAD);
            self.out
                .concept_table
                .patch(&self.w, off, &head.to_le_bytes())?;
        }
        for (i, slot) in self.concept_heads.created() {
            let off = at(i, table::SLOT);
            self.out
                .concept_table
                .patch(&self.w, off, &slot.to_le_bytes())?;
        }
        Ok(())
    }

    /// List heads this transaction moved for nodes committed before it, stamped after the
    /// commit point. Not logged: recovery re-derives them from the binding records.
    fn moved_heads(&self) -> Vec<HeadMove> {
        let episodes = self.episode_heads.committed().map(|(id, record)| HeadMove {
            role: Role::EpisodeTable,
            id,
            record,
        });
        let concepts = self
            .concept_bind_heads
            .committed()
            .map(|(id, record)| HeadMove {
                role: Role::ConceptTable,
                id,
                record,
            });
        episodes.chain(concepts).collect()
    }

    fn redo_ops(&self) -> Vec<Op> {
        let mut ops: Vec<Op> = Vec::new();
        ops.extend(
            self.deleted_episodes
                .iter()
                .map(|&id| Op::EpisodeDeleted(id)),
        );
        ops.extend(
            self.deleted_concepts
                .iter()
                .map(|&id| Op::ConceptDeleted(id)),
        );
        ops.extend(self.deleted_bindings.iter().map(|&r| Op::BindingDeleted(r)));
        ops.extend(
            self.concept_heads
                .committed()
                .map(|(id, slot)| Op::ConceptHead { id, slot }),
        );
        ops
    }

    /// Makes every change durable and visible, atomically. When this returns `Ok`, the
    /// transaction survives a crash or power loss. On `Err` the handle refuses further
    /// writes until reopened, and reopening shows the transaction either whole or not at
    /// all: absent if the error came before its commit record was written, possibly present
    /// if writing or syncing that record itself failed (the disk may have taken it).
    pub fn commit(mut self) -> Result<()> {
        let result = self.commit_inner();
        if result.is_err() {
            self.w.poisoned = true;
        }
        result
    }

    /// Deletes every stored episode whose time to live ended by `now`, and lowers
    /// `next_expiry` to the earliest expiry left. Run only when the clock has reached
    /// `next_expiry`; costs the episodes it deletes (the writer's [`ExpiryQueue`]), plus one
    /// pass over the episode table the first time in a writer's life.
    fn reap_expired(&mut self, now: i64) -> Result<u64> {
        if self.w.expiring.is_none() {
            self.w.expiring = Some(ExpiryQueue::scan(&self.base)?);
        }
        let queue = self.w.expiring.as_mut().expect("built above");
        let stored = |id| still_stored(&self.base, &self.deleted_episodes, id);
        let mut expired = Vec::new();
        while let Some((_, id)) = queue.pop_due(now) {
            if stored(id)? {
                expired.push(id);
            }
        }
        let mut next = queue.next(stored)?;
        for &(id, at) in &self.new_expiring {
            if self.deleted_episodes.contains(&id) {
                continue;
            }
            match at <= now {
                true => expired.push(id),
                false => next = next.min(at),
            }
        }
        for &id in &expired {
            self.remove_episode(id)?;
        }
        self.state.next_expiry = next;
        Ok(expired.len() as u64)
    }

    /// Sheds the writer's queue of deleted episodes' entries once they could be the
    /// majority (before the commit point: reading the table can fail).
    fn sweep_expiring(&mut self) -> Result<()> {
        let Some(queue) = self.w.expiring.as_mut() else {
            return Ok(());
        };
        queue.sweep(self.state.live_episodes, |id| {
            still_stored(&self.base, &self.deleted_episodes, id)
        })
    }

    /// After the commit: the writer's queue takes the episodes it stored with a time to live.
    fn queue_expiring(&mut self) {
        if let Some(queue) = self.w.expiring.as_mut() {
            for &(id, at) in &self.new_expiring {
                if !self.deleted_episodes.contains(&id) {
                    queue.push(id, at);
                }
            }
        }
    }

    /// Redo ops persisting the accesses recalls recorded since the last commit (absolute
    /// values: the newest access time and the total count), for episodes still stored.
    fn access_ops(&self, pending: &[(u64, (i64, u64))]) -> Result<Vec<Op>> {
        let mut ops = Vec::with_capacity(pending.len() * 2);
        for &(id, (at, n)) in pending {
            if !still_stored(&self.base, &self.deleted_episodes, id)? {
                continue;
            }
            let word = |f| self.base.table_word(Role::EpisodeTable, id, f);
            let last = (word(table::LAST_ACCESS)? as i64).max(at);
            let count = word(table::ACCESS_COUNT)?.saturating_add(n);
            ops.push(Op::EpisodeAccessedAt { id, at: last });
            ops.push(Op::EpisodeAccessCount { id, count });
        }
        Ok(ops)
    }

    fn commit_inner(&mut self) -> Result<()> {
        // From here on no reader fills the caches from an older snapshot.
        self.db.caches.announce(self.state.txn);
        let now = self.db.clock.now();
        if now >= self.state.next_expiry {
            self.reap_expired(now)?;
        }
        self.sweep_expiring()?;
        self.state.empty_concepts = self.empty_concepts_after()?;
        self.patch_new_entries()?;
        let mut ops = self.redo_ops();
        ops.extend(self.access_ops(&self.db.access.take())?);
        let changes = self.changes()?;
        let heads = self.moved_heads();
        if !self.nets.is_empty() {
            // Complete the last page, then log the new pages' checksums and the changes.
            let (zeros, catalog) = self.nets.finish(self.base.state.pages);
            self.out.pages.buf.extend_from_slice(&zeros);
            self.state.pages = self.base.state.pages + self.nets.new_pages();
            self.out.networks.buf.extend_from_slice(&catalog);
            self.state.catalog_len = self.out.networks.end();
        }
        self.state.heap_len = self.out.heap.end();
        let live_keys: Vec<(u64, u64)> = self
            .new_keys
            .iter()
            .map(|(k, &id)| (records::key_hash(k), id))
            .collect();
        let mut retired = None;
        if !live_keys.is_empty() {
            let needed = self.state.key_count + live_keys.len() as u64;
            if needed * 2 > self.state.key_cells {
                retired = self.rebuild_keys(&live_keys)?;
            } else {
                ops.extend(
                    live_keys
                        .iter()
                        .map(|&(hash, id)| Op::KeyInsert { hash, id }),
                );
                self.state.key_count = needed;
            }
        }
        if self.state.bindings - self.state.heads_from > HEADS_LAG {
            // A checkpoint: the head stamps of every older binding are synced before this
            // commit's record, so recovery need not re-derive them.
            self.state.heads_from = self.base.state.bindings;
        }
        let entry = self.log_entry(&ops);
        let mut written = Written {
            files: [false; FILES],
            bindings: None,
        };
        if !self.new_bindings.is_empty() {
            let at = self.base.state.bindings * records::binding::SIZE;
            let records = std::mem::take(&mut self.new_bindings);
            match &entry {
                // Logged: the records are in the entry, their file is synced later (and
                // written back with the others', see `flush_hinted`).
                Some((_, bytes)) => {
                    self.w.handle(Role::Bindings)?.write_unhinted(at, bytes)?;
                    written.files[Role::Bindings as usize] = true;
                }
                // Read above; from here on the records belong to the job that stores them.
                None => written.bindings = Some(self.w.start_bindings(at, records)?),
            }
        }
        for a in self.out.all_mut() {
            a.flush_hinted(&self.w, entry.is_none())?;
            written.files[a.role as usize] |= a.touched();
        }
        self.w.bound_concepts = self.concept_bind_heads.committed.len();
        let redo = Redo {
            ops: &ops,
            heads: &heads,
        };
        self.w.commit(
            self.db,
            &self.state,
            redo,
            written,
            entry.as_ref().map(|(e, _)| &e[..]),
            retired,
            &changes,
        )?;
        self.queue_expiring();
        Ok(())
    }

    /// The write-ahead log entry of this commit, if it goes in the log (`store::wal`):
    /// everything it appended is still buffered and small, it moves no list-head
    /// checkpoint and names the same files as its base. With it, the new binding records
    /// as their file stores them.
    fn log_entry(&self, ops: &[Op]) -> Option<(Vec<u8>, Vec<u8>)> {
        let appended: u64 = self.out.all().map(|a| a.buf.len() as u64).sum::<u64>()
            + self.new_bindings.len() as u64 * records::binding::SIZE;
        let small = appended + (ops.len() * meta::OP_LEN) as u64 <= wal::ENTRY_MAX;
        let logged = small
            && self.out.all().all(|a| a.written == 0)
            && self.state.heads_from == self.base.state.heads_from
            && self.state.files == self.base.state.files;
        if !logged {
            return None;
        }
        let bindings = encode_bindings(&self.new_bindings);
        let mut ranges: Vec<wal::Range<'_>> = self
            .out
            .all()
            .filter(|a| !a.buf.is_empty())
            .map(|a| wal::Range {
                role: a.role,
                at: a.start,
                bytes: &a.buf,
            })
            .collect();
        if !bindings.is_empty() {
            ranges.push(wal::Range {
                role: Role::Bindings,
                at: self.base.state.bindings * records::binding::SIZE,
                bytes: &bindings,
            });
        }
        let entry = wal::encode(self.w.wal_base(), &self.state, ops, &ranges);
        self.w
            .wal_fits(entry.len() as u64)
            .then_some((entry, bindings))
    }

    /// Writes a fresh, larger key index holding every live key plus the new ones.
    fn rebuild_keys(&mut self, new: &[(u64, u64)]) -> Result<Option<u64>> {
        let mut entries: Vec<(u64, u64)> = Vec::new();
        if self.state.key_cells > 0 {
            let map = &self.base.file(Role::Keys)?.map;
            for cell in 0..self.state.key_cells {
                let hash = map
                    .atomic_u64(cell * 16)?
                    .load(std::sync::atomic::Ordering::Acquire);
                let id = map
                    .atomic_u64(cell * 16 + 8)?
                    .load(std::sync::atomic::Ordering::Acquire);
                if hash != 0 && self.episode_live(id)? {
                    entries.push((hash, id));
                }
            }
        }
        entries.extend_from_slice(new);
        let cells = (entries.len() as u64 * 4).next_power_of_two().max(1024);
        let number = self.w.next_file_number();
        let old = self.state.files.keys;
        self.w
            .create_keys_file(number, &crate::store::keys::build(&entries, cells))?;
        self.state.files.keys = number;
        self.state.key_cells = cells;
        self.state.key_count = entries.len() as u64;
        Ok((old != 0).then_some(old))
    }
}

/// Whether committed episode `id` is stored in `base` (expired or not) and not deleted by
/// the transaction (`deleted`).
fn still_stored(base: &Version, deleted: &HashSet<u64>, id: u64) -> Result<bool> {
    Ok(!deleted.contains(&id) && base.episode_entry(id, ANY_TIME)?.is_some())
}

/// A heap blob's length is a u32: a longer label would be stored cut and read back as corrupt.
fn check_label(label: &str) -> Result<()> {
    match label.len() > u32::MAX as usize {
        true => Err(Error::InvalidArgument("label larger than 4 GiB".into())),
        false => Ok(()),
    }
}

/// Binding records as their file stores them.
pub(crate) fn encode_bindings(records: &[Binding]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(records.len() * records::binding::SIZE as usize);
    for b in records {
        bytes.extend_from_slice(&b.encode());
    }
    bytes
}
