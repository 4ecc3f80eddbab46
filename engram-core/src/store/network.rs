//! Swarm agents' network weights: quantized tensors packed into fixed-size pages (`.pages`,
//! read in place), and the catalog (`.nets`) from (agent, network) to byte ranges, tensor
//! shapes and schemes, and each page's checksum. The catalog also logs each agent's
//! default time to live for new episodes. `docs/format.md` gives every byte.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::quant::{self, Blocks, QuantScheme};
use crate::store::snapshot::{ReadTxn, Role, Version};
use crate::store::write::WriteTxn;

/// Bytes per page: the unit of checksums and of the pages file's growth.
pub const PAGE: usize = 4096;

const PAGES_RECORD: u8 = 1;
const PUT_RECORD: u8 = 2;
const DELETE_RECORD: u8 = 3;
const AGENT_TTL_RECORD: u8 = 4;

/// One tensor of a network to store.
#[derive(Clone, Copy, Debug)]
pub struct TensorInput<'a> {
    /// Name, unique within the network.
    pub name: &'a str,
    /// `[rows, cols]` for a matrix; the last dimension is the one blocks run along.
    pub shape: &'a [usize],
    /// The weights, row-major: the product of the shape long.
    pub data: &'a [f32],
    /// Per-weight importance, required by [`QuantScheme::Mixed`].
    pub importance: Option<&'a [f32]>,
}

/// One tensor as the catalog describes it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TensorMeta {
    name: Box<str>,
    shape: Box<[usize]>,
    scheme: u8,
    /// Byte range within the network's bytes.
    offset: u64,
    len: u64,
}

/// One stored network.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NetEntry {
    txn: u64,
    /// Byte range in the pages file.
    offset: u64,
    len: u64,
    tensors: Vec<TensorMeta>,
}

/// One agent's networks, by name.
type AgentNets = Vec<(Box<str>, Arc<NetEntry>)>;

/// The catalog as of one version: every live network and every page's crc32c.
#[derive(Clone, Debug, Default)]
pub(crate) struct NetCatalog {
    by_agent: HashMap<u64, AgentNets>,
    page_crcs: Vec<u32>,
    /// Catalog bytes this reflects.
    len: u64,
    networks: usize,
    /// Agents' default time to live for new episodes, in clock units.
    agent_ttls: HashMap<u64, i64>,
}

impl NetCatalog {
    /// The catalog after the records in `bytes` (the catalog file from `self.len` on).
    pub(crate) fn apply(&mut self, bytes: &[u8], path: &Path) -> Result<()> {
        let mut at = 0usize;
        while at < bytes.len() {
            let off = self.len + at as u64;
            let bad = |why: &str| Error::corrupt(path, off, format!("network catalog: {why}"));
            let head = bytes
                .get(at..at + 8)
                .ok_or_else(|| bad("truncated record header"))?;
            let len = u32::from_le_bytes(head[0..4].try_into().expect("4")) as usize;
            let crc = u32::from_le_bytes(head[4..8].try_into().expect("4"));
            let body = bytes
                .get(at + 8..at + 8 + len)
                .ok_or_else(|| bad("truncated record"))?;
            if crc32c::crc32c(body) != crc {
                return Err(bad("record checksum mismatch"));
            }
            self.apply_record(&mut Reader { b: body, at: 0 })
                .ok_or_else(|| bad("malformed record"))??;
            at += 8 + len;
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// `None` for a record that does not parse; `Some(Err)` for one that parses but does not
    /// fit the catalog.
    fn apply_record(&mut self, r: &mut Reader<'_>) -> Option<Result<()>> {
        match r.u8()? {
            PAGES_RECORD => {
                let first = r.u64()?;
                let count = r.u32()? as usize;
                if first != self.page_crcs.len() as u64 {
                    return None;
                }
                for _ in 0..count {
                    self.page_crcs.push(r.u32()?);
                }
            }
            PUT_RECORD => {
                let txn = r.u64()?;
                let agent = r.u64()?;
                let name = r.str()?;
                let (offset, len) = (r.u64()?, r.u64()?);
                let n = r.u32()? as usize;
                let mut tensors = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    let name = r.str()?;
                    let scheme = r.u8()?;
                    let rank = r.u8()? as usize;
                    let shape: Box<[usize]> = (0..rank)
                        .map(|_| r.u32().map(|d| d as usize))
                        .collect::<Option<_>>()?;
                    let (t_off, t_len) = (r.u64()?, r.u64()?);
                    if t_off.checked_add(t_len)? > len {
                        return None;
                    }
                    tensors.push(TensorMeta {
                        name,
                        shape,
                        scheme,
                        offset: t_off,
                        len: t_len,
                    });
                }
                let pages = offset.checked_add(len)?.div_ceil(PAGE as u64);
                if pages > self.page_crcs.len() as u64 {
                    return None;
                }
                let entry = Arc::new(NetEntry {
                    txn,
                    offset,
                    len,
                    tensors,
                });
                let list = self.by_agent.entry(agent).or_default();
                match list.iter_mut().find(|(n, _)| *n == name) {
                    Some(slot) => slot.1 = entry,
                    None => {
                        list.push((name, entry));
                        self.networks += 1;
                    }
                }
            }
            DELETE_RECORD => {
                let _txn = r.u64()?;
                let agent = r.u64()?;
                let name = r.str()?;
                let list = self.by_agent.get_mut(&agent)?;
                let i = list.iter().position(|(n, _)| *n == name)?;
                list.swap_remove(i);
                if list.is_empty() {
                    self.by_agent.remove(&agent);
                }
                self.networks -= 1;
            }
            AGENT_TTL_RECORD => {
                let _txn = r.u64()?;
                let agent = r.u64()?;
                let ttl = r.u64()? as i64;
                match ttl {
                    NO_TTL => self.agent_ttls.remove(&agent),
                    1.. => self.agent_ttls.insert(agent, ttl),
                    _ => return None,
                };
            }
            _ => return None,
        }
        (r.at == r.b.len()).then_some(Ok(()))
    }

    /// `agent`'s default time to live, if set.
    pub(crate) fn agent_ttl(&self, agent: u64) -> Option<i64> {
        self.agent_ttls.get(&agent).copied()
    }

    /// Every agent's default time to live, sorted by agent.
    pub(crate) fn agent_ttls(&self) -> Vec<(u64, i64)> {
        let mut all: Vec<(u64, i64)> = self.agent_ttls.iter().map(|(&a, &t)| (a, t)).collect();
        all.sort_unstable();
        all
    }

    fn get(&self, agent: u64, name: &str) -> Option<&Arc<NetEntry>> {
        self.by_agent
            .get(&agent)?
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, e)| e)
    }

    pub(crate) fn page_crc(&self, page: u64) -> u32 {
        self.page_crcs[page as usize]
    }

    pub(crate) fn pages(&self) -> u64 {
        self.page_crcs.len() as u64
    }

    /// Bytes of the live networks' weights: what compaction copies into fresh pages.
    pub(crate) fn live_bytes(&self) -> u64 {
        self.by_agent
            .values()
            .flatten()
            .fold(0, |sum, (_, e)| sum.saturating_add(e.len))
    }

    /// Every live network, by agent then name.
    fn all(&self) -> Vec<(u64, &str, &Arc<NetEntry>)> {
        let mut v: Vec<(u64, &str, &Arc<NetEntry>)> = self
            .by_agent
            .iter()
            .flat_map(|(&a, list)| list.iter().map(move |(n, e)| (a, &**n, e)))
            .collect();
        v.sort_unstable_by(|x, y| (x.0, x.1).cmp(&(y.0, y.1)));
        v
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4")))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8")))
    }
    fn str(&mut self) -> Option<Box<str>> {
        let n = self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))? as usize;
        std::str::from_utf8(self.take(n)?).ok().map(Box::from)
    }
}

/// A catalog record: length, crc32c, body.
fn frame(body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    out.extend_from_slice(body);
}

fn put_str(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_record(
    txn: u64,
    agent: u64,
    name: &str,
    offset: u64,
    e: &[TensorMeta],
    len: u64,
) -> Vec<u8> {
    let mut b = vec![PUT_RECORD];
    for w in [txn, agent] {
        b.extend_from_slice(&w.to_le_bytes());
    }
    put_str(name, &mut b);
    b.extend_from_slice(&offset.to_le_bytes());
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(&(e.len() as u32).to_le_bytes());
    for t in e {
        put_str(&t.name, &mut b);
        b.push(t.scheme);
        b.push(t.shape.len() as u8);
        for &d in t.shape.iter() {
            b.extend_from_slice(&(d as u32).to_le_bytes());
        }
        b.extend_from_slice(&t.offset.to_le_bytes());
        b.extend_from_slice(&t.len.to_le_bytes());
    }
    let mut out = Vec::with_capacity(b.len() + 8);
    frame(&b, &mut out);
    out
}

/// The agent-TTL record's value for "no default".
const NO_TTL: i64 = i64::MAX;

fn agent_ttl_record(txn: u64, agent: u64, ttl: Option<i64>) -> Vec<u8> {
    let mut b = vec![AGENT_TTL_RECORD];
    for w in [txn, agent, ttl.unwrap_or(NO_TTL) as u64] {
        b.extend_from_slice(&w.to_le_bytes());
    }
    let mut out = Vec::with_capacity(b.len() + 8);
    frame(&b, &mut out);
    out
}

fn pages_record(first: u64, crcs: &[u32]) -> Vec<u8> {
    let mut b = vec![PAGES_RECORD];
    b.extend_from_slice(&first.to_le_bytes());
    b.extend_from_slice(&(crcs.len() as u32).to_le_bytes());
    for c in crcs {
        b.extend_from_slice(&c.to_le_bytes());
    }
    let mut out = Vec::with_capacity(b.len() + 8);
    frame(&b, &mut out);
    out
}

/// A transaction's network changes, before commit: catalog records (in order) and the
/// checksums of the pages its bytes fill, kept as the bytes are appended.
#[derive(Default)]
pub(crate) struct NetWrites {
    records: Vec<u8>,
    /// (agent, name) → live after this transaction's changes so far?
    changed: HashMap<(u64, Box<str>), bool>,
    /// Agents' default TTLs set by this transaction (`None`: cleared).
    agent_ttls: HashMap<u64, Option<i64>>,
    /// crc32c of the page being filled, and its bytes so far.
    open_crc: u32,
    open_fill: usize,
    closed_crcs: Vec<u32>,
}

impl NetWrites {
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let n = (PAGE - self.open_fill).min(bytes.len());
            self.open_crc = crc32c::crc32c_append(self.open_crc, &bytes[..n]);
            self.open_fill += n;
            bytes = &bytes[n..];
            if self.open_fill == PAGE {
                self.closed_crcs.push(self.open_crc);
                (self.open_crc, self.open_fill) = (0, 0);
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.agent_ttls.is_empty()
    }

    /// Logs `agent`'s new default time to live.
    pub(crate) fn set_agent_ttl(&mut self, txn: u64, agent: u64, ttl: Option<i64>) {
        self.records.extend(agent_ttl_record(txn, agent, ttl));
        self.agent_ttls.insert(agent, ttl);
    }

    /// `agent`'s default TTL as this transaction left it, if it set one.
    pub(crate) fn agent_ttl(&self, agent: u64) -> Option<Option<i64>> {
        self.agent_ttls.get(&agent).copied()
    }

    /// Zero bytes that complete the last page, then the catalog records to append: the new
    /// pages' checksums first, so every put that follows finds its pages.
    pub(crate) fn finish(&mut self, first_page: u64) -> (Vec<u8>, Vec<u8>) {
        let pad = if self.open_fill == 0 {
            0
        } else {
            PAGE - self.open_fill
        };
        let zeros = vec![0u8; pad];
        self.feed(&zeros);
        let mut catalog = if self.closed_crcs.is_empty() {
            Vec::new()
        } else {
            pages_record(first_page, &self.closed_crcs)
        };
        catalog.append(&mut self.records);
        (zeros, catalog)
    }

    pub(crate) fn new_pages(&self) -> u64 {
        self.closed_crcs.len() as u64
    }
}

fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > u16::MAX as usize {
        return Err(Error::InvalidArgument(format!(
            "{what} name must be 1 to 65,535 bytes"
        )));
    }
    Ok(())
}

impl WriteTxn<'_> {
    /// Stores agent `agent`'s network `name` (replacing the one stored under that name, at
    /// commit, atomically): each tensor quantized under `scheme` and packed into pages.
    ///
    /// ```
    /// use engram_core::quant::QuantScheme;
    /// use engram_core::{Engram, Options, TensorInput};
    /// # fn main() -> engram_core::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = Engram::open(dir.path(), Options::default())?;
    /// let w = vec![0.5f32; 4 * 32];
    /// let mut tx = db.begin_write()?;
    /// tx.put_network(7, "policy", &[TensorInput { name: "w0", shape: &[4, 32], data: &w, importance: None }], QuantScheme::Q8)?;
    /// tx.commit()?;
    /// let snap = db.begin_read()?;
    /// let net = snap.network(7, "policy")?.expect("stored");
    /// let mut y = [0f32; 4];
    /// net.tensor("w0")?.expect("w0").matvec(&[1.0; 32], &mut y)?;
    /// assert!((y[0] - 16.0).abs() < 0.1);
    /// # Ok(()) }
    /// ```
    pub fn put_network(
        &mut self,
        agent: u64,
        name: &str,
        tensors: &[TensorInput<'_>],
        scheme: QuantScheme,
    ) -> Result<()> {
        let mut encoded = Vec::with_capacity(tensors.len());
        for t in tensors {
            check_tensor(t.name, t.shape)?;
            encoded.push(quant::quantize(t.data, t.shape, scheme, t.importance)?);
        }
        let tensors = tensors.iter().zip(&encoded);
        self.store_network(
            agent,
            name,
            tensors.map(|(t, enc)| (t.name, t.shape, scheme.code(), &enc[..])),
        )
    }

    /// [`WriteTxn::put_network`] of tensors already encoded, stored as they are: a network
    /// read from another database (`snap.network(..)?.tensors()`), or blocks viewed with
    /// [`Blocks::view`]. Each tensor's shape must be the one its blocks were viewed with.
    pub fn put_network_tensors(
        &mut self,
        agent: u64,
        name: &str,
        tensors: &[Tensor<'_>],
    ) -> Result<()> {
        for t in tensors {
            check_tensor(t.name, t.shape)?;
            if quant::rows_cols(t.shape)? != (t.blocks.rows(), t.blocks.cols()) {
                return Err(Error::InvalidArgument(format!(
                    "tensor {}: shape {:?} is not the {} x {} of its blocks",
                    t.name,
                    t.shape,
                    t.blocks.rows(),
                    t.blocks.cols()
                )));
            }
        }
        self.store_network(
            agent,
            name,
            tensors.iter().map(|t| {
                (
                    t.name,
                    t.shape,
                    t.blocks.scheme().code(),
                    t.blocks.encoded(),
                )
            }),
        )
    }

    /// Stores network `name` of agent `agent` from its tensors' (name, shape, scheme code,
    /// encoding), each checked by [`check_tensor`].
    fn store_network<'t>(
        &mut self,
        agent: u64,
        name: &str,
        tensors: impl Iterator<Item = (&'t str, &'t [usize], u8, &'t [u8])>,
    ) -> Result<()> {
        check_name("network", name)?;
        let mut metas: Vec<TensorMeta> = Vec::new();
        let mut bytes = Vec::new();
        for (tensor, shape, scheme, enc) in tensors {
            if metas.iter().any(|m| &*m.name == tensor) {
                return Err(Error::InvalidArgument(format!(
                    "tensor {tensor} given twice"
                )));
            }
            metas.push(TensorMeta {
                name: tensor.into(),
                shape: shape.into(),
                scheme,
                offset: bytes.len() as u64,
                len: enc.len() as u64,
            });
            bytes.extend_from_slice(enc);
        }
        let offset = self.pages_end();
        let record = put_record(self.txn(), agent, name, offset, &metas, bytes.len() as u64);
        self.append_pages(&bytes)?;
        let nets = self.net_writes();
        nets.feed(&bytes);
        nets.records.extend_from_slice(&record);
        nets.changed.insert((agent, name.into()), true);
        Ok(())
    }

    /// Deletes agent `agent`'s network `name` at commit; its pages are reclaimed by the
    /// next compaction. `NotFound` if no such network is live for this transaction.
    pub fn delete_network(&mut self, agent: u64, name: &str) -> Result<()> {
        let live = match self.net_writes_ref().changed.get(&(agent, Box::from(name))) {
            Some(&live) => live,
            None => self.base().nets.get(agent, name).is_some(),
        };
        if !live {
            return Err(Error::NotFound {
                kind: "network",
                id: agent,
            });
        }
        let mut b = vec![DELETE_RECORD];
        b.extend_from_slice(&self.txn().to_le_bytes());
        b.extend_from_slice(&agent.to_le_bytes());
        put_str(name, &mut b);
        let nets = self.net_writes();
        frame(&b, &mut nets.records);
        nets.changed.insert((agent, name.into()), false);
        Ok(())
    }
}

/// Refuses a tensor name or shape the catalog cannot record: it keeps the rank in a byte
/// and each dimension in 32 bits.
fn check_tensor(name: &str, shape: &[usize]) -> Result<()> {
    check_name("tensor", name)?;
    if shape.len() > u8::MAX as usize {
        return Err(Error::InvalidArgument(
            "a tensor has at most 255 dimensions".into(),
        ));
    }
    if shape.iter().any(|&d| d > u32::MAX as usize) {
        return Err(Error::InvalidArgument(
            "a tensor dimension is at most 4,294,967,295".into(),
        ));
    }
    Ok(())
}

/// A stored network, borrowed from the mapped pages (checksums verified).
pub struct Network<'s> {
    entry: &'s NetEntry,
    bytes: &'s [u8],
}

/// One tensor of a [`Network`]: its shape and its quantized blocks, read in place.
#[derive(Clone, Copy, Debug)]
pub struct Tensor<'s> {
    /// The tensor's name.
    pub name: &'s str,
    /// Its shape as stored.
    pub shape: &'s [usize],
    /// Its quantized blocks, read in place.
    pub blocks: Blocks<'s>,
}

impl<'s> Network<'s> {
    /// The commit that stored this version of the network.
    pub fn version_txn(&self) -> u64 {
        self.entry.txn
    }

    /// Bytes of quantized weights.
    pub fn bytes(&self) -> usize {
        self.bytes.len()
    }

    /// The tensors, in the order they were stored.
    pub fn tensors(&self) -> impl Iterator<Item = Result<Tensor<'s>>> + '_ {
        self.entry.tensors.iter().map(|t| self.view(t))
    }

    /// The tensor `name`, or `None`.
    pub fn tensor(&self, name: &str) -> Result<Option<Tensor<'s>>> {
        self.entry
            .tensors
            .iter()
            .find(|t| &*t.name == name)
            .map(|t| self.view(t))
            .transpose()
    }

    fn view(&self, t: &'s TensorMeta) -> Result<Tensor<'s>> {
        let bytes = &self.bytes[t.offset as usize..(t.offset + t.len) as usize];
        Ok(Tensor {
            name: &t.name,
            shape: &t.shape,
            blocks: Blocks::parse(bytes, &t.shape, t.scheme)?,
        })
    }
}

impl Tensor<'_> {
    /// The weights as f32 (`out.len()` = product of the shape).
    pub fn dequantize_into(&self, out: &mut [f32]) -> Result<()> {
        self.blocks.dequantize_into(out)
    }

    /// `y = W x` on the quantized blocks.
    pub fn matvec(&self, x: &[f32], y: &mut [f32]) -> Result<()> {
        self.blocks.matvec(x, y)
    }

    /// `y ≈ W x` with x quantized to int8, for Q8 tensors ([`crate::quant::Blocks::matvec_int8`]).
    pub fn matvec_int8(&self, x: &crate::quant::Int8Input, y: &mut [f32]) -> Result<()> {
        self.blocks.matvec_int8(x, y)
    }
}

impl Version {
    /// The bytes of a network, its pages' checksums verified (once per page per map).
    fn network_bytes(&self, e: &NetEntry) -> Result<&[u8]> {
        let map = &self.file(Role::Pages)?.map;
        let first = e.offset / PAGE as u64;
        let last = (e.offset + e.len).div_ceil(PAGE as u64);
        let verify = || {
            for page in first..last {
                if map.is_verified(page) {
                    continue;
                }
                let bytes = map.bytes(page * PAGE as u64, PAGE)?;
                if crc32c::crc32c(bytes) != self.nets.page_crcs[page as usize] {
                    return Err(Error::corrupt(
                        map.path(),
                        page * PAGE as u64,
                        "page checksum mismatch",
                    ));
                }
                map.mark_verified(page);
            }
            Ok(())
        };
        // Pages read before cost bit tests there, and are verified once per map here.
        map.read_range(first * PAGE as u64, (last - first) * PAGE as u64, verify)?;
        map.bytes(e.offset, e.len as usize)
    }
}

impl ReadTxn {
    /// Agent `agent`'s network `name` as of this snapshot, or `None`. Zero-copy: the tensors
    /// borrow the mapped pages. `Corruption` if a page fails its checksum.
    pub fn network(&self, agent: u64, name: &str) -> Result<Option<Network<'_>>> {
        let Some(entry) = self.v.nets.get(agent, name) else {
            return Ok(None);
        };
        let bytes = self.v.network_bytes(entry)?;
        Ok(Some(Network { entry, bytes }))
    }

    /// Names of agent `agent`'s networks, sorted.
    pub fn networks_of(&self, agent: u64) -> Vec<String> {
        let mut v: Vec<String> = self
            .v
            .nets
            .by_agent
            .get(&agent)
            .map(|l| l.iter().map(|(n, _)| n.to_string()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Every live (agent, network name), sorted.
    pub fn networks(&self) -> Vec<(u64, String)> {
        self.v
            .nets
            .all()
            .into_iter()
            .map(|(a, n, _)| (a, n.to_string()))
            .collect()
    }

    /// Bytes the networks' pages and catalog take in this snapshot (compaction drops the
    /// pages of replaced and deleted networks).
    pub fn network_storage(&self) -> u64 {
        self.v.state.pages * PAGE as u64 + self.v.state.catalog_len
    }

    /// Number of live networks.
    pub fn network_count(&self) -> usize {
        self.v.nets.networks
    }
}

/// Copies every live network of `v` into fresh pages and catalog bytes (compaction).
pub(crate) fn compacted(v: &Version) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut pages = Vec::new();
    let mut puts = Vec::new();
    for (agent, name, e) in v.nets.all() {
        let offset = pages.len() as u64;
        pages.extend_from_slice(v.network_bytes(e)?);
        puts.extend(put_record(e.txn, agent, name, offset, &e.tensors, e.len));
    }
    pages.resize(pages.len().next_multiple_of(PAGE), 0);
    let crcs: Vec<u32> = pages.chunks_exact(PAGE).map(crc32c::crc32c).collect();
    let mut catalog = if crcs.is_empty() {
        Vec::new()
    } else {
        pages_record(0, &crcs)
    };
    catalog.extend(puts);
    for (agent, ttl) in v.nets.agent_ttls() {
        catalog.extend(agent_ttl_record(v.state.txn, agent, Some(ttl)));
    }
    Ok((pages, catalog))
}
