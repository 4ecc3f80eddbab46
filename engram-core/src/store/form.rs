//! Concept formation and consolidation: episodes read in place from a snapshot (the one a
//! write transaction started from, or, for [`Engram::form_concepts`], one taken before the
//! writer), clustered by `cluster`, written back as concept nodes and bindings.

use crate::cluster::{self, OnProgress, Points, UNASSIGNED, normalize_into};
use crate::error::{Error, Result};
use crate::store::db::Engram;
use crate::store::file::ReadAhead;
use crate::store::search::Filter;
use crate::store::snapshot::{ReadTxn, Role, Version};
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
        check_similarity(params)?;
        let base = self.base().clone();
        let skip = |id| -> Result<bool> {
            Ok(self.deleted_episode(id) || self.episode_fan_count(id)? > 0)
        };
        let fold = Fold::new(&base, params, self.now(), skip, |id| {
            self.touched_concept(id)
        })?;
        fold.write(self, |_, _| Ok(true), |_, _, _| Ok(true))
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

fn check_similarity(params: &ConsolidationParams) -> Result<()> {
    match (-1.0..=1.0).contains(&params.min_similarity) {
        true => Ok(()),
        false => Err(Error::InvalidArgument(format!(
            "min_similarity {} is not a cosine in [-1, 1]",
            params.min_similarity
        ))),
    }
}

/// A consolidation worked out on one version, not written yet: the unbound episodes, the
/// candidate concepts, and each episode's nearest concept.
struct Fold<'b> {
    points: Points<'b>,
    ids: Vec<(u64, u64)>,
    /// (id, slot of the version read, members, coherence) of each candidate concept.
    concepts: Vec<(u64, u64, u64, f32)>,
    /// Their unit centroids.
    centroids: Vec<f32>,
    /// Each point's nearest concept and cosine to it.
    nearest: (Vec<u32>, Vec<f32>),
    min_similarity: f32,
}

impl<'b> Fold<'b> {
    /// The episodes [`chosen`] gives, against the concepts of `base` that `skip_concept`
    /// does not leave out.
    fn new(
        base: &'b Version,
        params: &ConsolidationParams,
        now: i64,
        skip_episode: impl Fn(u64) -> Result<bool>,
        skip_concept: impl Fn(u64) -> bool,
    ) -> Result<Fold<'b>> {
        let d = base.info.manifest.dimension;
        let mut concepts = Vec::new();
        let mut centroids: Vec<f32> = Vec::new();
        let stride = base.info.concept_layout.stride as u64;
        let mut ahead = ReadAhead::new(&base.file(Role::Concepts)?.map, stride);
        for id in base.table_ids(Role::ConceptTable) {
            if skip_concept(id) {
                continue;
            }
            let Some(e) = base.concept_entry(id)? else {
                continue;
            };
            ahead.at(e.slot);
            let (slot, rec) = base.concept_version(id, e.slot)?;
            let c = crate::store::records::native_f32(&rec.centroid);
            let mut unit = vec![0f32; d];
            if normalize_into(c, &mut unit) == 0.0 {
                continue;
            }
            centroids.extend_from_slice(&unit);
            let (members, coherence) = (rec.members.to_native(), rec.coherence.to_native());
            concepts.push((id, slot, members, coherence));
        }
        let (points, ids) = chosen(base, &params.filter, now, skip_episode)?;
        let nearest = match concepts.is_empty() || points.is_empty() {
            true => (Vec::new(), Vec::new()),
            false => {
                let all: Vec<u32> = (0..points.len() as u32).collect();
                points.nearest(&all, &centroids)
            }
        };
        Ok(Fold {
            points,
            ids,
            concepts,
            centroids,
            nearest,
            min_similarity: params.min_similarity,
        })
    }

    /// Binds each episode close enough to its nearest concept, if `keep_episode` keeps it
    /// and `keep_concept` (given id and the slot read) the concept, and folds the episodes
    /// bound into their concept: centroid, member count and coherence, exactly.
    fn write(
        self,
        tx: &mut WriteTxn<'_>,
        keep_episode: impl Fn(&WriteTxn<'_>, u64) -> Result<bool>,
        keep_concept: impl Fn(&WriteTxn<'_>, u64, u64) -> Result<bool>,
    ) -> Result<ConsolidationReport> {
        let d = self.points.dim();
        let mut report = ConsolidationReport {
            pending: self.points.len(),
            ..Default::default()
        };
        let (labels, sims) = &self.nearest;
        let mut kept = Vec::with_capacity(self.concepts.len());
        for &(id, slot, _, _) in &self.concepts {
            kept.push(keep_concept(tx, id, slot)?);
        }
        let mut added = vec![0u64; self.concepts.len()];
        let mut sums = vec![0f32; self.concepts.len() * d];
        for (p, (&label, &sim)) in labels.iter().zip(sims).enumerate() {
            let (j, episode) = (label as usize, self.ids[p].0);
            if sim >= self.min_similarity && kept[j] && keep_episode(tx, episode)? {
                tx.bind(episode, self.concepts[j].0, sim)?;
                added[j] += 1;
                self.points.add_direction(p, &mut sums[j * d..(j + 1) * d]);
                report.bound += 1;
            }
        }
        for (j, &(id, _, members, coherence)) in self.concepts.iter().enumerate() {
            if added[j] == 0 || members == 0 {
                continue;
            }
            let scale = f64::from(coherence) * members as f64;
            let sum: Vec<f64> = (0..d)
                .map(|i| f64::from(self.centroids[j * d + i]) * scale + f64::from(sums[j * d + i]))
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
            tx.put_concept_version(id, &centroid, None, formed)?;
            report.concepts_updated += 1;
        }
        Ok(report)
    }
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

    /// [`WriteTxn::consolidate`] in a transaction of its own, committed, with the episodes
    /// assigned to concepts before it takes the writer (while other threads commit). Then
    /// it binds and folds the assignments still valid: an episode deleted or bound since is
    /// left out, and so are the episodes of a concept updated or deleted since (they stay
    /// unbound, for the next consolidation).
    pub fn consolidate(&self, params: &ConsolidationParams) -> Result<ConsolidationReport> {
        self.require_dual()?;
        self.check_can_write()?;
        check_similarity(params)?;
        self.consolidate_from(&self.begin_read()?, params)
    }

    /// [`Engram::consolidate`] of the episodes and concepts of `snap`, written in a
    /// transaction begun afterwards.
    fn consolidate_from(
        &self,
        snap: &ReadTxn,
        params: &ConsolidationParams,
    ) -> Result<ConsolidationReport> {
        let skip = |id| -> Result<bool> { Ok(snap.episode_fan_count(id)? > 0) };
        let fold = Fold::new(&snap.v, params, snap.now, skip, |_| false)?;
        let mut tx = self.begin_write()?;
        let report = fold.write(
            &mut tx,
            |tx, id| Ok(tx.episode_live(id)? && tx.episode_fan_count(id)? == 0),
            |tx, id, slot| Ok(tx.base().concept_entry(id)?.map(|e| e.slot) == Some(slot)),
        )?;
        tx.commit()?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use crate::cluster::{Count, Params};
    use crate::{ConsolidationParams, Engram, EpisodeInput, Filter, FormationParams, Options};

    /// Consolidation assigns on a snapshot and writes later: what the commits in between
    /// changed is left out, and a concept folds only the episodes it was given.
    #[test]
    fn a_consolidation_leaves_out_what_changed_since_its_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options {
            dimension: Some(2),
            ..Options::default()
        };
        let db = Engram::open(dir.path(), opts).unwrap();
        let insert = |rows: &[[f32; 2]]| -> Vec<u64> {
            let mut tx = db.begin_write().unwrap();
            let ids = rows
                .iter()
                .map(|v| {
                    let input = EpisodeInput {
                        agent: 1,
                        timestamp: 0,
                        embedding: v,
                        payload: b"",
                        key: None,
                    };
                    tx.insert_episode(&input).unwrap()
                })
                .collect();
            tx.commit().unwrap();
            ids
        };
        insert(&[[1.0, 0.05], [1.0, -0.05], [0.05, 1.0], [-0.05, 1.0]]);
        let clustering = Params {
            count: Count::K(2),
            min_size: 1,
            ..Params::default()
        };
        let filter = Filter::default();
        let formed = db
            .form_concepts(&FormationParams {
                filter: &filter,
                unbound_only: true,
                clustering,
                progress: None,
            })
            .unwrap();
        let snap = db.begin_read().unwrap();
        let is_east = |c: u64| snap.concept(c).unwrap().unwrap().centroid()[0] > 0.5;
        let (east, north) = match is_east(formed.concepts[0]) {
            true => (formed.concepts[0], formed.concepts[1]),
            false => (formed.concepts[1], formed.concepts[0]),
        };
        let pending = insert(&[[1.0, 0.1], [1.0, -0.1], [0.9, 0.0], [0.1, 1.0]]);

        let snap = db.begin_read().unwrap();
        let mut tx = db.begin_write().unwrap();
        tx.delete_episode(pending[0]).unwrap();
        tx.bind(pending[1], north, 0.2).unwrap();
        tx.update_concept(north, &[0.0, 1.0], Some("moved"))
            .unwrap();
        tx.commit().unwrap();

        let params = ConsolidationParams {
            min_similarity: 0.5,
            filter: Filter::default(),
        };
        let report = db.consolidate_from(&snap, &params).unwrap();
        // Four pending in the snapshot; written: the third only (the first was deleted and
        // the second bound meanwhile; the fourth's concept, north, was updated).
        assert_eq!(
            (report.pending, report.bound, report.concepts_updated),
            (4, 1, 1)
        );
        let now = db.begin_read().unwrap();
        now.verify().unwrap();
        assert_eq!(now.concept(east).unwrap().unwrap().members(), 3);
        assert_eq!(now.concept_fan_count(east).unwrap(), 3);
        assert_eq!(now.episode_fan_count(pending[1]).unwrap(), 1);
        assert_eq!(now.episode_fan_count(pending[3]).unwrap(), 0);
        assert_eq!(
            now.concept(north).unwrap().unwrap().label().unwrap(),
            "moved"
        );
    }
}
