//! Exact search over a snapshot: every live episode (or concept) scored against the query by
//! the SIMD kernels, straight from the mapped slots, top-k kept per rayon task and merged.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::ops::Range;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::metric::Metric;
use crate::similarity::{Aligned, BatchKernel, Kernel, Rows, from_dot};
use crate::store::file::ReadAhead;
use crate::store::snapshot::{Episode, ReadTxn, Role, Version};

/// Which episodes a search considers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this agent's episodes.
    pub agent: Option<u64>,
    /// Only episodes with a timestamp in this range.
    pub time: Option<Range<i64>>,
}

impl Filter {
    /// Whether `episode` passes: for passes of your own, such as the newest episodes of an
    /// agent (`snap.episodes().rev()`, see [`ReadTxn::episodes`]).
    pub fn accepts(&self, episode: &Episode<'_>) -> bool {
        self.agent.is_none_or(|a| a == episode.agent())
            && self
                .time
                .as_ref()
                .is_none_or(|t| t.contains(&episode.timestamp()))
    }
}

/// A search result: a node id and its score (higher is more similar; for L2 the negated
/// squared distance).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hit {
    /// Episode (or concept) id.
    pub id: u64,
    /// Similarity to the query under the database's metric.
    pub score: f32,
}

/// An episode recalled through a concept.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Recalled {
    /// The episode recalled.
    pub episode: u64,
    /// The concept it was reached through (the best-scoring one, if several).
    pub concept: u64,
    /// similarity(query, episode) × binding strength.
    pub score: f32,
    /// similarity(query, episode).
    pub similarity: f32,
    /// Strength of the binding it was reached through.
    pub strength: f32,
}

/// Slots per rayon task: 1,024 × 3.2 KB = 3.2 MB of embeddings, large enough to amortize
/// the task, small enough to balance two to sixteen cores. A batch search scores every
/// query against one chunk while it sits in L3.
const CHUNK: usize = 1_024;

/// Int8 rows per rayon task: 4,096 rows of 832 B, about the f32 chunk's 3.2 MB.
const INT8_CHUNK: usize = 4_096;

/// How many int8 rows ahead the scan prefetches: 5.1 ms per 100k-row query without, 3.0 ms
/// at 2 rows, 2.7–2.8 ms from 4 to 12 (AVX-512 VNNI kernel, docs/benchmarks.md).
const INT8_AHEAD: u64 = 6;

#[derive(PartialEq)]
struct Ranked(f32, u64);

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    /// Better = higher score, then smaller id (so results are deterministic).
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(other.1.cmp(&self.1))
    }
}

/// The k best hits seen so far (a min-heap of the current top).
struct TopK {
    k: usize,
    heap: BinaryHeap<Reverse<Ranked>>,
    /// Lowest score that can still enter: -inf until full, then the worst kept.
    floor: f32,
}

impl TopK {
    fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
            floor: f32::NEG_INFINITY,
        }
    }

    /// Whether a hit with `score` could enter (ties may, by id).
    #[inline]
    fn admits(&self, score: f32) -> bool {
        score >= self.floor
    }

    #[inline]
    fn push(&mut self, id: u64, score: f32) {
        if self.heap.len() < self.k {
            self.heap.push(Reverse(Ranked(score, id)));
        } else if let Some(worst) = self.heap.peek()
            && Ranked(score, id) > worst.0
        {
            self.heap.pop();
            self.heap.push(Reverse(Ranked(score, id)));
        }
        if self.heap.len() == self.k {
            self.floor = self.heap.peek().map_or(f32::NEG_INFINITY, |w| w.0.0);
        }
    }

    fn merge(mut self, other: TopK) -> TopK {
        for Reverse(Ranked(s, id)) in other.heap {
            self.push(id, s);
        }
        self
    }

    fn into_sorted(self) -> Vec<Hit> {
        let mut v: Vec<Ranked> = self.heap.into_iter().map(|r| r.0).collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v.into_iter()
            .map(|Ranked(score, id)| Hit { id, score })
            .collect()
    }
}

impl Version {
    /// The committed episode slots as strided rows of floats, read in place.
    pub(crate) fn episode_rows(&self) -> Result<Rows<'_>> {
        let layout = self.info.episode_layout;
        let n = self.state.episode_slots as usize;
        let dim = self.info.manifest.dimension;
        if n == 0 {
            return Ok(Rows::dense(&[], dim));
        }
        let map = &self.file(Role::Episodes)?.map;
        let bytes = map.bytes(0, n * layout.stride)?;
        let floats: &[f32] = bytemuck::try_cast_slice(bytes)
            .map_err(|e| Error::corrupt(map.path(), 0, format!("slot region misaligned: {e}")))?;
        Rows::new(floats, dim, layout.stride / 4, n)
            .ok_or_else(|| Error::corrupt(map.path(), 0, "slot rows do not fit the file"))
    }

    /// The stored norm of the embedding in slot `slot`, whose checksum the caller has had
    /// verified (`verify_slots` or `live_slot`).
    pub(crate) fn stored_norm(&self, slot: u64) -> Result<f32> {
        let layout = self.info.episode_layout;
        let off = slot * layout.stride as u64 + layout.norm_off as u64;
        let bytes = self.file(Role::Episodes)?.map.bytes(off, 4)?;
        Ok(f32::from_le_bytes(bytes.try_into().expect("4 bytes")))
    }

    /// Verifies the checksums of the slots in `range` not yet verified through this map, so
    /// no score is taken from a damaged record (a no-op after a slot's first scan).
    fn verify_slots(&self, range: Range<u64>) -> Result<()> {
        let map = &self.file(Role::Episodes)?.map;
        for slot in range {
            if !map.is_verified(slot) {
                self.info.episode_layout.archive(map, slot)?;
            }
        }
        Ok(())
    }

    /// For slot `slot`: its episode id if that episode is live here, passes `filter`, and
    /// this slot is its record. Verifies the slot's checksum on its first read via this map.
    pub(crate) fn live_slot(&self, slot: u64, filter: &Filter, now: i64) -> Result<Option<u64>> {
        let layout = self.info.episode_layout;
        let archive = layout.archive(&self.file(Role::Episodes)?.map, slot)?;
        let id = layout.word(archive, layout.id_off);
        if filter
            .agent
            .is_some_and(|a| a != layout.word(archive, layout.agent_off))
        {
            return Ok(None);
        }
        if let Some(t) = &filter.time
            && !t.contains(&(layout.word(archive, layout.time_off) as i64))
        {
            return Ok(None);
        }
        Ok(match self.episode_entry(id, now)? {
            Some(e) if e.slot == slot => Some(id),
            _ => None,
        })
    }
}

impl ReadTxn {
    /// Exact top-`k` episodes by the database's metric, best first, using every core of the
    /// current rayon pool (run it inside `ThreadPool::install` to choose the threads).
    ///
    /// ```
    /// use engram_core::{Engram, EpisodeInput, Filter, Options};
    /// # fn main() -> engram_core::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = Engram::open(dir.path(), Options { dimension: Some(2), ..Options::default() })?;
    /// let mut tx = db.begin_write()?;
    /// for (i, v) in [[1.0, 0.0], [0.7, 0.7], [0.0, 1.0]].iter().enumerate() {
    ///     tx.insert_episode(&EpisodeInput { agent: i as u64 % 2, timestamp: i as i64, embedding: v, payload: b"", key: None })?;
    /// }
    /// tx.commit()?;
    /// let snap = db.begin_read()?;
    /// let hits = snap.search(&[1.0, 0.1], 2, &Filter::default())?;
    /// assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), [0, 1]);
    /// let agent1 = Filter { agent: Some(1), time: None };
    /// assert_eq!(snap.search(&[1.0, 0.1], 2, &agent1)?[0].id, 1);
    /// # Ok(()) }
    /// ```
    pub fn search(&self, query: &[f32], k: usize, filter: &Filter) -> Result<Vec<Hit>> {
        self.search_with(Kernel::best(), query, k, filter)
    }

    /// [`ReadTxn::search`] with a chosen kernel (benchmarks compare them).
    pub fn search_with(
        &self,
        kernel: Kernel,
        query: &[f32],
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<Hit>> {
        let v = &self.v;
        let q_norm = v.info.check_vector("query", query)?;
        if k == 0 {
            return Ok(Vec::new());
        }
        let metric = v.info.manifest.metric;
        let rows = v.episode_rows()?;
        let chunks = rows.len().div_ceil(CHUNK);
        let eps = &v.file(Role::Episodes)?.map;
        let stride = v.info.episode_layout.stride as u64;
        // The heap lives per rayon job across its chunks: its floor keeps rising, so only
        // ~k·ln(n/k) rows pay for a liveness check (a random table read) instead of ~5 k
        // per chunk.
        let top = (0..chunks)
            .into_par_iter()
            .try_fold(
                || TopK::new(k),
                |mut top, c| -> Result<TopK> {
                    let (start, end) = (c * CHUNK, ((c + 1) * CHUNK).min(rows.len()));
                    eps.scan_ahead(start as u64 * stride, (end - start) as u64 * stride);
                    let mut scores = vec![0f32; end - start];
                    v.verify_slots(start as u64..end as u64)?;
                    if metric == Metric::Cosine {
                        // Stored norms: the scan needs only dot products.
                        kernel.scores_checked(
                            Metric::Dot,
                            query,
                            rows.slice(start, end),
                            &mut scores,
                        );
                        for (i, d) in scores.iter_mut().enumerate() {
                            *d = from_dot(metric, *d, q_norm, v.stored_norm((start + i) as u64)?);
                        }
                    } else {
                        kernel.scores_checked(metric, query, rows.slice(start, end), &mut scores);
                    }
                    for (i, score) in scores.into_iter().enumerate() {
                        // Liveness and filters are read only for scores that could make the top k.
                        if top.admits(score)
                            && let Some(id) = v.live_slot((start + i) as u64, filter, self.now)?
                        {
                            top.push(id, score);
                        }
                    }
                    Ok(top)
                },
            )
            .try_reduce(|| TopK::new(k), |a, b| Ok(a.merge(b)))?;
        Ok(top.into_sorted())
    }

    /// Approximate top-`k` through the int8 mirror: the codes (a quarter of the f32 bytes)
    /// are scanned for the best `candidates` (at least `k`), which are then rescored exactly
    /// in f32. Needs a database created with `Options { int8_mirror: Some(true), .. }`.
    pub fn search_int8(
        &self,
        query: &[f32],
        k: usize,
        filter: &Filter,
        candidates: usize,
    ) -> Result<Vec<Hit>> {
        let v = &self.v;
        let q_norm = v.info.check_vector("query", query)?;
        if !v.info.manifest.int8_mirror {
            return Err(Error::InvalidArgument(
                "this database keeps no int8 mirror (create it with Options { int8_mirror: Some(true), .. }, or copy it into one with Engram::backup_as)".into(),
            ));
        }
        if k == 0 {
            return Ok(Vec::new());
        }
        let metric = v.info.manifest.metric;
        let layout = v.info.int8_layout;
        let map = &v.file(Role::Int8)?.map;
        let mut q8 = vec![0i8; query.len()];
        let q_scale = crate::similarity::int8::quantize_checked(query, &mut q8);
        let n = v.state.episode_slots as usize;
        let pool = candidates.max(k);
        let q8 = crate::similarity::int8::Query::new(&q8);
        // The candidate heap lives per rayon job, across its chunks: its floor keeps rising.
        let shortlist = (0..n.div_ceil(INT8_CHUNK))
            .into_par_iter()
            .try_fold(
                || TopK::new(pool),
                |mut top, c| -> Result<TopK> {
                    let end = ((c + 1) * INT8_CHUNK).min(n) as u64;
                    let stride = layout.stride as u64;
                    map.scan_ahead((c * INT8_CHUNK) as u64 * stride, INT8_CHUNK as u64 * stride);
                    for slot in (c * INT8_CHUNK) as u64..end {
                        // Rows are small and scoring them takes longer than their bytes take to
                        // stream: fetch a few rows ahead (measured faster here, unlike f32 scans).
                        if slot + INT8_AHEAD < end {
                            map.prefetch(
                                (slot + INT8_AHEAD) * layout.stride as u64,
                                layout.stride as u64,
                            );
                        }
                        let row = layout.row(map, slot)?;
                        let dot = q8.dot(row.codes)? as f32 * q_scale * row.scale;
                        let score = from_dot(metric, dot, q_norm, row.norm);
                        // Filter and liveness from the row itself: the f32 slots stay untouched.
                        if top.admits(score)
                            && filter.agent.is_none_or(|a| a == row.agent)
                            && filter
                                .time
                                .as_ref()
                                .is_none_or(|t| t.contains(&row.timestamp))
                            && v.episode_entry(row.id, self.now)?
                                .is_some_and(|e| e.slot == slot)
                        {
                            top.push(row.id, score);
                        }
                    }
                    Ok(top)
                },
            )
            .try_reduce(|| TopK::new(pool), |a, b| Ok(a.merge(b)))?;
        let kernel = Kernel::best_pair(); // pair-at-a-time rescoring
        let mut top = TopK::new(k);
        for hit in shortlist.into_sorted() {
            if let Some(ep) = self.episode(hit.id)? {
                top.push(hit.id, kernel.score(metric, query, ep.embedding())?);
            }
        }
        Ok(top.into_sorted())
    }

    /// Exact top-`k` for each of many queries at once. Rows are taken in blocks that stay in
    /// cache while every query is scored against them (one GEMM per block), so each row is
    /// read from memory once per batch instead of once per query.
    pub fn search_batch(
        &self,
        queries: &[&[f32]],
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<Vec<Hit>>> {
        let v = &self.v;
        for q in queries {
            v.info.check_vector("query", q)?;
        }
        if k == 0 || queries.is_empty() {
            return Ok(vec![Vec::new(); queries.len()]);
        }
        let metric = v.info.manifest.metric;
        let dim = v.info.manifest.dimension;
        let rows = v.episode_rows()?;
        let packed = Aligned::pack(queries.iter().copied(), dim);
        let packed = packed.rows();
        // Per query: 1/norm for cosine, the squared norm for L2.
        let q_term: Vec<f32> = queries
            .iter()
            .map(|q| {
                let n = crate::store::records::norm(q);
                match metric {
                    Metric::Cosine if n > 0.0 => 1.0 / n,
                    Metric::L2 => n * n,
                    _ => 0.0,
                }
            })
            .collect();
        let kernel = BatchKernel::best();
        let eps = &v.file(Role::Episodes)?.map;
        let stride = v.info.episode_layout.stride as u64;
        let fresh = || -> Vec<TopK> { (0..queries.len()).map(|_| TopK::new(k)).collect() };
        // Heaps live per rayon job across its chunks (not per chunk), so each query's floor
        // rises once per job and few rows past the first chunk reach the heap.
        let tops = (0..rows.len().div_ceil(CHUNK))
            .into_par_iter()
            .try_fold(fresh, |mut tops, c| -> Result<Vec<TopK>> {
                let (start, end) = (c * CHUNK, ((c + 1) * CHUNK).min(rows.len()));
                eps.scan_ahead(start as u64 * stride, (end - start) as u64 * stride);
                let block = rows.slice(start, end);
                let n = block.len();
                let mut products = vec![0f32; queries.len() * n];
                kernel.dots_checked(packed, block, &mut products);
                // Per row, once: liveness, and what turns a dot product into a score
                // (1/norm for cosine, the squared norm for L2).
                let mut live = Vec::with_capacity(n);
                let mut row_term = Vec::with_capacity(n);
                for i in 0..n {
                    let slot = (start + i) as u64;
                    live.push(v.live_slot(slot, filter, self.now)?);
                    let norm = v.stored_norm(slot)?;
                    row_term.push(match metric {
                        Metric::Cosine if norm > 0.0 => 1.0 / norm,
                        Metric::Cosine => 0.0,
                        Metric::L2 => norm * norm,
                        Metric::Dot => 1.0,
                    });
                }
                for ((top, scores), qt) in tops
                    .iter_mut()
                    .zip(products.chunks_exact_mut(n))
                    .zip(&q_term)
                {
                    to_scores(metric, scores, *qt, &row_term);
                    for (c, group) in scores.chunks(16).enumerate() {
                        // Vectorized test of 16 scores; the heap sees only groups that could enter.
                        let floor = top.floor;
                        if group.iter().map(|s| u32::from(*s >= floor)).sum::<u32>() == 0 {
                            continue;
                        }
                        for (j, score) in group.iter().enumerate() {
                            if top.admits(*score)
                                && let Some(id) = live[c * 16 + j]
                            {
                                top.push(id, *score);
                            }
                        }
                    }
                }
                Ok(tops)
            })
            .try_reduce(fresh, |a, b| {
                Ok(a.into_iter().zip(b).map(|(x, y)| x.merge(y)).collect())
            })?;
        Ok(tops.into_iter().map(TopK::into_sorted).collect())
    }

    /// Exact top-`k` concepts (their visible versions) by the database's metric.
    pub fn search_concepts(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        let v = &self.v;
        v.info.check_vector("query", query)?;
        if k == 0 {
            return Ok(Vec::new());
        }
        let metric = v.info.manifest.metric;
        let kernel = Kernel::best_pair(); // pair-at-a-time scoring
        let ids: Vec<u64> = v.table_ids(Role::ConceptTable).collect();
        let cons = &v.file(Role::Concepts)?.map;
        let stride = v.info.concept_layout.stride as u64;
        let top = ids
            .par_chunks(CHUNK)
            .map(|chunk| -> Result<TopK> {
                let mut top = TopK::new(k);
                let mut ahead = ReadAhead::new(cons, stride);
                for &id in chunk {
                    if let Some(e) = v.concept_entry(id)? {
                        ahead.at(e.slot);
                        let rec = v.concept_at(id, e.slot)?;
                        let centroid = crate::store::records::native_f32(&rec.centroid);
                        top.push(id, kernel.score(metric, query, centroid)?);
                    }
                }
                Ok(top)
            })
            .try_reduce(|| TopK::new(k), |a, b| Ok(a.merge(b)))?;
        Ok(top.into_sorted())
    }

    /// Dual-memory recall: the `concepts` nearest concepts, then their bound episodes ranked by
    /// similarity(query, episode) × binding strength, best `k`, each with the concept it came
    /// through.
    pub fn recall_via_concepts(
        &self,
        query: &[f32],
        concepts: usize,
        k: usize,
    ) -> Result<Vec<Recalled>> {
        let v = &self.v;
        let metric = v.info.manifest.metric;
        let kernel = Kernel::best_pair(); // pair-at-a-time scoring
        let mut best: HashMap<u64, Recalled> = HashMap::new();
        for hit in self.search_concepts(query, concepts)? {
            let Some(e) = v.concept_entry(hit.id)? else {
                continue;
            };
            for (_, b) in v.walk(e.bind_head, false)? {
                if best.contains_key(&b.episode) && best[&b.episode].strength >= b.strength {
                    continue; // the same episode scores no better through a weaker binding
                }
                let Some(ep) = self.episode(b.episode)? else {
                    continue;
                };
                let similarity = kernel.score(metric, query, ep.embedding())?;
                let r = Recalled {
                    episode: b.episode,
                    concept: hit.id,
                    score: similarity * b.strength,
                    similarity,
                    strength: b.strength,
                };
                let keep = best.get(&b.episode).is_none_or(|old| r.score > old.score);
                if keep {
                    best.insert(b.episode, r);
                }
            }
        }
        let mut out: Vec<Recalled> = best.into_values().collect();
        out.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.episode.cmp(&b.episode)));
        out.truncate(k);
        Ok(out)
    }
}

/// Dot products of one query with a block of rows turned into its scores in place:
/// `q_term` and `row_term` are 1/norm (cosine) or the squared norm (L2).
fn to_scores(metric: Metric, dots: &mut [f32], q_term: f32, row_term: &[f32]) {
    match metric {
        Metric::Dot => {}
        Metric::Cosine => dots
            .iter_mut()
            .zip(row_term)
            .for_each(|(d, r)| *d *= q_term * r),
        Metric::L2 => dots
            .iter_mut()
            .zip(row_term)
            .for_each(|(d, r)| *d = -(q_term + r - 2.0 * *d)),
    }
}
