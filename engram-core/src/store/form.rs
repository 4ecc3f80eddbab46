//! Concept formation and consolidation: episodes read in place from a snapshot (the one a
//! write transaction started from, or, for [`Engram::form_concepts`], one taken before the
//! writer), clustered by `cluster`, written back as concept nodes and bindings.

use crate::cluster::{self, OnProgress, Points, UNASSIGNED, normalize_into};
use crate::error::{Error, Result};
use crate::store::db::Engram;
use crate::store::file::ReadAhead;
use crate::store::search::Filter;
use crate::store::snapshot::{Role, Version};
use crate::store::write::{Formed, WriteTxn};

/// What [`WriteTxn::form_concepts`] clusters, and how.
#[derive(Clone, Copy)]
pub struct FormationParams<'a> {
    /// Only episodes passing this filter (agent, time window).
    pub filter: &'a Filter,
    /// Only episodes bound to no concept yet.
    pub unbound_only: bool,
    /// The clustering to run (k or threshold, iterations, seed, sampling).
    pub clustering: cluster::Params,
    /// Called between steps; returning `Break` cancels the formation before anything is
    /// written (the call returns [`Error::Cancelled`]; the transaction stays usable).
    pub progress: Option<OnProgress<'a>>,
}

/// What a formation did.
#[derive(Clone, Debug, PartialEq)]
pub struct FormationReport {
    /// The new concepts, largest first is not promised: in cluster order.
    pub concepts: Vec<u64>,
    /// Episodes clustered.
    pub episodes: usize,
    /// Of those, bound to a new concept (the rest were in clusters too small or incoherent).
    pub bound: usize,
    /// Lloyd iterations run.
    pub iterations: usize,
    /// Mean cosine of the bound episodes to their concept's centroid.
    pub objective: f64,
}

/// What [`WriteTxn::consolidate`] binds.
#[derive(Clone, Debug, PartialEq)]
pub struct ConsolidationParams {
    /// An unbound episode joins its most similar concept if their cosine is at least this.
    pub min_similarity: f32,
    /// Only unbound episodes passing this filter are considered.
    pub filter: Filter,
}

/// What a consolidation did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConsolidationReport {
    /// Unbound episodes considered.
    pub pending: usize,
    /// Of those, bound to a concept (the rest wait for the next formation).
    pub bound: usize,
    /// Concepts whose centroid, member count and coherence moved.
    pub concepts_updated: usize,
}

/// Longest concept label taken from a member's payload, in characters.
const LABEL_CHARS: usize = 80;

impl WriteTxn<'_> {
    /// Clusters the chosen episodes into new concepts and binds each clustered episode to its
    /// concept with its cosine to the centroid as strength. It reads the episodes committed
    /// when this transaction began (not ones inserted in it, nor ones it deleted); existing
    /// concepts and bindings are left as they are. Each concept's label is the payload of its
    /// most central member when that is UTF-8 text (first 80 characters), else empty.
    ///
    /// Runs on the current rayon pool (`ThreadPool::install` chooses the threads); the same
    /// seed gives the same concepts at any thread count.
    pub fn form_concepts(&mut self, params: &FormationParams<'_>) -> Result<FormationReport> {
        self.require_dual()?;
        let base = self.base().clone();
        let unbound_only = params.unbound_only;
        let skip = |id| -> Result<bool> {
            Ok(self.deleted_episode(id) || (unbound_only && self.episode_fan_count(id)? > 0))
        };
        let plan = Plan::new(&base, params, self.now(), skip)?;
        plan.write(self, |_, _| Ok(true))
    }

    /// Binds every unbound episode (committed when this transaction began, passing the
    /// filter) to its most similar concept when their cosine reaches `min_similarity`, and
    /// folds it into that concept: centroid, member count and coherence are updated exactly
    /// from the members' direction sum (|Σ| = coherence × members for a formed concept).
    /// Concepts placed by hand (members 0) take bindings but do not move. Episodes below the
    /// threshold stay unbound for the next formation. Concepts created or changed in this
    /// transaction are not candidates.
    ///
    /// ```
    /// use engram_core::cluster::{Count, Params};
    /// use engram_core::{ConsolidationParams, Engram, EpisodeInput, Filter, FormationParams, Options};
    /// # fn main() -> engram_core::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = Engram::open(dir.path(), Options { dimension: Some(2), ..Options::default() })?;
    /// let add = |v: [f32; 2]| -> engram_core::Result<()> {
    ///     let mut tx = db.begin_write()?;
    ///     tx.insert_episode(&EpisodeInput { agent: 1, timestamp: 0, embedding: &v, payload: b"", key: None })?;
    ///     tx.commit()
    /// };
    /// add([1.0, 0.0])?;
    /// add([0.9, 0.1])?;
    /// let clustering = Params { count: Count::K(1), min_size: 1, ..Params::default() };
    /// let formed = db.form_concepts(&FormationParams { filter: &Filter::default(), unbound_only: true, clustering, progress: None })?;
    /// add([0.95, 0.05])?; // a new, similar episode
    /// let r = db.consolidate(&ConsolidationParams { min_similarity: 0.9, filter: Filter::default() })?;
    /// assert_eq!((r.pending, r.bound, r.concepts_updated), (1, 1, 1));
    /// assert_eq!(db.begin_read()?.concept(formed.concepts[0])?.unwrap().members(), 3);
    /// # Ok(()) }
    /// ```
    pub fn consolidate(&mut self, params: &ConsolidationParams) -> Result<ConsolidationReport> {
        self.require_dual()?;
        if !(-1.0..=1.0).contains(&params.min_similarity) {
            return Err(Error::InvalidArgument(format!(
                "min_similarity {} is not a cosine in [-1, 1]",
                params.min_similarity
            )));
        }
        let base = self.base().clone();
        let d = base.info.manifest.dimension;
        // Candidate concepts: unit centroids of those committed and untouched here.
        let mut concepts: Vec<(u64, u64, f32)> = Vec::new(); // id, members, coherence
        let mut centroids: Vec<f32> = Vec::new();
        let stride = base.info.concept_layout.stride as u64;
        let mut ahead = ReadAhead::new(&base.file(Role::Concepts)?.map, stride);
        for id in base.table_ids(Role::ConceptTable) {
            if self.touched_concept(id) {
                continue;
            }
            let Some(e) = base.concept_entry(id)? else {
                continue;
            };
            ahead.at(e.slot);
            let rec = base.concept_at(id, e.slot)?;
            let c = crate::store::records::native_f32(&rec.centroid);
            let mut unit = vec![0f32; d];
            if normalize_into(c, &mut unit) == 0.0 {
                continue;
            }
            centroids.extend_from_slice(&unit);
            concepts.push((id, rec.members.to_native(), rec.coherence.to_native()));
        }
        let skip = |id| -> Result<bool> {
            Ok(self.deleted_episode(id) || self.episode_fan_count(id)? > 0)
        };
        let (points, ids) = chosen(&base, &params.filter, self.now(), skip)?;
        let mut report = ConsolidationReport {
            pending: points.len(),
            ..Default::default()
        };
        if concepts.is_empty() || points.is_empty() {
            return Ok(report);
        }
        let all: Vec<u32> = (0..points.len() as u32).collect();
        let (labels, sims) = points.nearest(&all, &centroids);
        let mut added = vec![0u64; concepts.len()];
        let mut sums = vec![0f32; concepts.len() * d];
        for p in 0..points.len() {
            if sims[p] >= params.min_similarity {
                let j = labels[p] as usize;
                self.bind(ids[p].0, concepts[j].0, sims[p])?;
                added[j] += 1;
                points.add_direction(p, &mut sums[j * d..(j + 1) * d]);
                report.bound += 1;
            }
        }
        for (j, &(id, members, coherence)) in concepts.iter().enumerate() {
            if added[j] == 0 || members == 0 {
                continue;
            }
            let scale = f64::from(coherence) * members as f64;
            let sum: Vec<f64> = (0..d)
                .map(|i| f64::from(centroids[j * d + i]) * scale + f64::from(sums[j * d + i]))
                .collect();
            let norm = sum.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm == 0.0 {
                continue;
            }
            let centroid: Vec<f32> = sum.iter().map(|&x| (x / norm) as f32).collect();
            let members = members + added[j];
            let formed = Formed {
                members,
                coherence: (norm / members as f64) as f32,
            };
            self.put_concept_version(id, &centroid, None, formed)?;
            report.concepts_updated += 1;
        }
        Ok(report)
    }
}

/// The episodes of `base` live at clock time `now`, passing `filter`, that `skip` does not
/// leave out, as points read in place from their slots, with their (id, slot). Zero
/// embeddings, which have no direction, are left out.
fn chosen<'b>(
    base: &'b Version,
    filter: &Filter,
    now: i64,
    skip: impl Fn(u64) -> Result<bool>,
) -> Result<(Points<'b>, Vec<(u64, u64)>)> {
    let rows = base.episode_rows()?;
    let stride = base.info.episode_layout.stride as u64;
    let mut ahead = ReadAhead::new(&base.file(Role::Episodes)?.map, stride);
    let mut points = Points::over(rows.floats(), rows.dim());
    let mut ids = Vec::new();
    for slot in 0..rows.len() as u64 {
        ahead.at(slot);
        let Some(id) = base.live_slot(slot, filter, now)? else {
            continue;
        };
        if skip(id)? {
            continue;
        }
        let norm = base.stored_norm(slot)?;
        if norm > 0.0 {
            points.push(slot as usize * rows.stride(), norm);
            ids.push((id, slot));
        }
    }
    Ok((points, ids))
}

/// A formation clustered from one version, not written yet: the concepts, and for each
/// clustered episode its concept and strength.
struct Plan {
    /// Centroid, label and coherence of each concept.
    concepts: Vec<(Vec<f32>, String, f32)>,
    /// (episode, index into `concepts`, strength), in point order.
    bindings: Vec<(u64, usize, f32)>,
    episodes: usize,
    iterations: usize,
    objective: f64,
}

impl Plan {
    /// Clusters the episodes of `base` that [`chosen`] gives, as `params` says.
    fn new(
        base: &Version,
        params: &FormationParams<'_>,
        now: i64,
        skip: impl Fn(u64) -> Result<bool>,
    ) -> Result<Plan> {
        let (points, ids) = chosen(base, params.filter, now, skip)?;
        let clusters = cluster::cluster(&points, &params.clustering, params.progress)?;
        let d = points.dim();
        let mut central = vec![(f32::NEG_INFINITY, 0u64); clusters.len()];
        for (p, (&label, &sim)) in clusters.labels.iter().zip(&clusters.similarity).enumerate() {
            if label != UNASSIGNED && sim > central[label as usize].0 {
                central[label as usize] = (sim, ids[p].1);
            }
        }
        let mut concepts = Vec::with_capacity(clusters.len());
        for (j, &(_, slot)) in central.iter().enumerate() {
            let payload = base.heap_bytes(&base.episode_at(slot)?.payload)?;
            let label: String = std::str::from_utf8(payload)
                .map(|s| s.chars().take(LABEL_CHARS).collect())
                .unwrap_or_default();
            let centroid = clusters.centroids[j * d..(j + 1) * d].to_vec();
            concepts.push((centroid, label, clusters.coherence[j]));
        }
        let bindings = clusters
            .labels
            .iter()
            .zip(&clusters.similarity)
            .enumerate()
            .filter(|(_, (label, _))| **label != UNASSIGNED)
            .map(|(p, (&label, &sim))| (ids[p].0, label as usize, sim))
            .collect();
        Ok(Plan {
            concepts,
            bindings,
            episodes: points.len(),
            iterations: clusters.iterations,
            objective: clusters.objective(),
        })
    }

    /// Writes the plan into `tx`: the bindings `keep` (given the transaction and the
    /// episode) keeps, and the concepts left with a member, each with its kept members as
    /// its count.
    fn write(
        self,
        tx: &mut WriteTxn<'_>,
        keep: impl Fn(&WriteTxn<'_>, u64) -> Result<bool>,
    ) -> Result<FormationReport> {
        let mut kept = Vec::with_capacity(self.bindings.len());
        let mut members = vec![0u64; self.concepts.len()];
        for &(episode, j, sim) in &self.bindings {
            if keep(tx, episode)? {
                kept.push((episode, j, sim));
                members[j] += 1;
            }
        }
        let mut concepts = Vec::with_capacity(self.concepts.len());
        let mut ids = vec![0u64; self.concepts.len()];
        for (j, (centroid, label, coherence)) in self.concepts.iter().enumerate() {
            if members[j] > 0 {
                let formed = Formed {
                    members: members[j],
                    coherence: *coherence,
                };
                ids[j] = tx.new_concept(centroid, label, formed)?;
                concepts.push(ids[j]);
            }
        }
        for &(episode, j, sim) in &kept {
            tx.bind(episode, ids[j], sim)?;
        }
        Ok(FormationReport {
            concepts,
            episodes: self.episodes,
            bound: kept.len(),
            iterations: self.iterations,
            objective: self.objective,
        })
    }
}

impl Engram {
    /// [`WriteTxn::form_concepts`] in a transaction of its own, committed, with the
    /// clustering done before it takes the writer: it clusters the episodes of the last
    /// commit while other threads go on committing, then writes the concepts and bindings.
    /// Episodes those commits deleted (or, with `unbound_only`, bound) are left out, and a
    /// concept counts the members it was given; one left with none is not created.
    ///
    /// ```
    /// use engram_core::cluster::{Count, Params};
    /// use engram_core::{Engram, EpisodeInput, Filter, FormationParams, Options};
    /// # fn main() -> engram_core::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = Engram::open(dir.path(), Options { dimension: Some(2), ..Options::default() })?;
    /// let mut tx = db.begin_write()?;
    /// for (i, v) in [[1.0, 0.1], [0.9, 0.0], [0.0, 1.0], [0.1, 0.9]].iter().enumerate() {
    ///     let ep = EpisodeInput { agent: 1, timestamp: i as i64, embedding: v, payload: b"", key: None };
    ///     tx.insert_episode(&ep)?;
    /// }
    /// tx.commit()?;
    /// let report = db.form_concepts(&FormationParams {
    ///     filter: &Filter::default(),
    ///     unbound_only: true,
    ///     clustering: Params { count: Count::Threshold { min_coherence: 0.9 }, ..Params::default() },
    ///     progress: None,
    /// })?;
    /// assert_eq!(report.concepts.len(), 2); // the two directions, two episodes each
    /// let snap = db.begin_read()?;
    /// assert_eq!(snap.concept_fan_count(report.concepts[0])?, 2);
    /// assert_eq!(snap.concept(report.concepts[0])?.unwrap().members(), 2);
    /// # Ok(()) }
    /// ```
    pub fn form_concepts(&self, params: &FormationParams<'_>) -> Result<FormationReport> {
        self.require_dual()?;
        self.check_can_write()?;
        let snap = self.begin_read()?;
        let unbound_only = params.unbound_only;
        let skip = |id| -> Result<bool> { Ok(unbound_only && snap.episode_fan_count(id)? > 0) };
        let plan = Plan::new(&snap.v, params, snap.now, skip)?;
        drop(snap);
        let mut tx = self.begin_write()?;
        // Commits made while it clustered may have deleted (or, with `unbound_only`, bound)
        // some of its episodes: those are left out.
        let report = plan.write(&mut tx, |tx, id| {
            Ok(tx.episode_live(id)? && !(unbound_only && tx.episode_fan_count(id)? > 0))
        })?;
        tx.commit()?;
        Ok(report)
    }

    /// [`WriteTxn::consolidate`] in a transaction of its own, committed.
    pub fn consolidate(&self, params: &ConsolidationParams) -> Result<ConsolidationReport> {
        let mut tx = self.begin_write()?;
        let report = tx.consolidate(params)?;
        tx.commit()?;
        Ok(report)
    }
}
