//! Concept formation: spherical k-means (cosine) over the directions of vectors read in
//! place, on every core of the current rayon pool, in O(n + k·d) memory beyond the points.
//!
//! Two modes (`docs/clustering.md` gives the design and its measurements):
//! - [`Count::K`]: k-means|| seeding, then Lloyd iterations whose assignment step is one
//!   blocked GEMM of 512 points against all centroids;
//! - [`Count::Threshold`]: bisecting splits of the least coherent cluster until every cluster
//!   reaches the coherence, Lloyd refinement, merges of pairs whose union stays coherent, and
//!   clusters smaller than the minimum size or below the coherence left unassigned.
//!
//! Deterministic: every random choice hashes (seed, purpose, index), and every parallel step
//! works on fixed blocks and sums in point order, so one seed gives the same clusters at any
//! thread count.

mod kmeans;
mod points;
mod seed;
mod split;

use std::ops::ControlFlow;

use crate::error::{Error, Result};

#[cfg_attr(not(unix), allow(unused_imports))] // its other user is the store
pub(crate) use kmeans::normalize_into;
pub use points::Points;

/// How many clusters to form.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Count {
    /// Exactly `k` (fewer only if there are fewer distinct points).
    K(usize),
    /// As many as it takes for every cluster to reach this coherence (mean cosine of its
    /// members to its centroid).
    Threshold {
        /// The coherence every kept cluster reaches.
        min_coherence: f32,
    },
}

/// What a clustering run does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    /// How many clusters: a fixed k or a coherence threshold.
    pub count: Count,
    /// Clusters with fewer members are not kept; their points stay unassigned.
    pub min_size: usize,
    /// Lloyd iterations at most (each is one assignment and one centroid update); a run stops
    /// early when no assignment changes.
    pub max_iterations: usize,
    /// Seed of every random choice (same seed, same clusters).
    pub seed: u64,
    /// Train on a uniform sample of at most this many points per cluster, then assign every
    /// point once (faiss's `max_points_per_centroid`, 256 by default there); `None` trains
    /// on all points.
    pub max_points_per_cluster: Option<usize>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            count: Count::Threshold { min_coherence: 0.6 },
            min_size: 2,
            max_iterations: 20,
            seed: 0x5eed,
            max_points_per_cluster: None,
        }
    }
}

/// The clusters found: unit centroids, and each point's cluster and cosine to its centroid.
#[derive(Clone, Debug)]
pub struct Clustering {
    /// `len() * dim` floats; cluster `j` is `centroids[j * dim..][..dim]`, the normalized
    /// mean of its members' directions.
    pub centroids: Vec<f32>,
    /// Members per cluster.
    pub sizes: Vec<usize>,
    /// Mean cosine of each cluster's members to its centroid (|Σ directions| / size).
    pub coherence: Vec<f32>,
    /// Each point's cluster, or [`UNASSIGNED`].
    pub labels: Vec<u32>,
    /// Each point's cosine to its cluster's centroid (0 if unassigned).
    pub similarity: Vec<f32>,
    /// Lloyd iterations run (all phases).
    pub iterations: usize,
}

/// The label of a point left out of every cluster.
pub const UNASSIGNED: u32 = u32::MAX;

impl Clustering {
    /// Number of clusters.
    pub fn len(&self) -> usize {
        self.sizes.len()
    }

    /// Whether no cluster formed.
    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }

    /// Mean cosine of the assigned points to their centroids: the spherical k-means objective.
    pub fn objective(&self) -> f64 {
        let assigned = self.sizes.iter().sum::<usize>();
        let total: f64 = self.similarity.iter().map(|&s| f64::from(s)).sum();
        if assigned == 0 {
            0.0
        } else {
            total / assigned as f64
        }
    }
}

/// Where a long run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// k-means|| and k-means++ choosing the initial centroids.
    Seeding,
    /// Threshold mode: splitting the least coherent cluster.
    Splitting,
    /// Lloyd iterations: assignment and centroid update.
    Iterating,
    /// Threshold mode: merging clusters whose union stays coherent.
    Merging,
}

/// A progress report: `step` of `of` in `phase` (for Splitting, `of` is 0: unknown).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    /// The phase the run is in.
    pub phase: Phase,
    /// Steps done in this phase.
    pub step: usize,
    /// Steps this phase will take at most (0: not known in advance).
    pub of: usize,
    /// Clusters at this point.
    pub clusters: usize,
    /// Mean cosine of points to their centroids after the step (Iterating), else 0.
    pub objective: f64,
}

/// Called between steps; `ControlFlow::Break` stops the run with [`Error::Cancelled`].
pub type OnProgress<'a> = &'a (dyn Fn(&Progress) -> ControlFlow<()> + Sync);

pub(crate) struct Ctl<'a>(pub Option<OnProgress<'a>>);

impl Ctl<'_> {
    pub(crate) fn report(&self, p: Progress) -> Result<()> {
        match self.0.map(|f| f(&p)) {
            Some(ControlFlow::Break(())) => Err(Error::Cancelled),
            _ => Ok(()),
        }
    }
}

/// Clusters `points` as `params` say, on the current rayon pool.
///
/// ```
/// use engram_core::cluster::{cluster, Count, Params, Points};
/// # fn main() -> engram_core::Result<()> {
/// // Two directions, three points each.
/// let data = [1.0, 0.0, 0.9, 0.1, 0.95, 0.05, 0.0, 1.0, 0.1, 0.9, 0.05, 0.95];
/// let points = Points::dense(&data, 2)?;
/// let c = cluster(&points, &Params { count: Count::K(2), min_size: 1, ..Params::default() }, None)?;
/// assert_eq!(c.len(), 2);
/// assert_eq!(c.labels[0], c.labels[2]);
/// assert_ne!(c.labels[0], c.labels[3]);
/// assert!(c.coherence.iter().all(|&h| h > 0.99));
/// # Ok(()) }
/// ```
pub fn cluster(
    points: &Points<'_>,
    params: &Params,
    progress: Option<OnProgress<'_>>,
) -> Result<Clustering> {
    let ctl = Ctl(progress);
    if params.max_iterations == 0
        || params.min_size == 0
        || params.max_points_per_cluster == Some(0)
    {
        return Err(Error::InvalidArgument(
            "max_iterations, min_size and max_points_per_cluster must be at least 1".into(),
        ));
    }
    let n = points.len();
    if n > u32::MAX as usize - 1 {
        return Err(Error::InvalidArgument("more than 2^32 - 2 points".into()));
    }
    let all: Vec<u32> = (0..n as u32).collect();
    if n == 0 {
        return Ok(kmeans::finish(
            points,
            &all,
            &[],
            0,
            params.min_size,
            0.0,
            0,
        ));
    }
    let (labels, k, iterations, min_coherence) = match params.count {
        Count::K(k) => {
            if k == 0 {
                return Err(Error::InvalidArgument("k must be at least 1".into()));
            }
            let k = k.min(n);
            let train = match params.max_points_per_cluster {
                Some(p) if p.saturating_mul(k) < n => {
                    seed::sample(&all, p * k, params.seed, seed::SAMPLE)
                }
                _ => all.clone(),
            };
            let seeds = seed::kmeans_parallel(points, &train, k, params.seed, &ctl)?;
            let run = kmeans::lloyd(points, &train, seeds, params.max_iterations, &ctl)?;
            let run = split::swap(points, &train, run, params, &ctl)?;
            let labels = if train.len() == n {
                run.assignment.labels
            } else {
                points.nearest(&all, &run.centroids).0
            };
            (labels, k, run.iterations, 0.0)
        }
        Count::Threshold { min_coherence } => {
            if !(min_coherence.is_finite() && (-1.0..=1.0).contains(&min_coherence)) {
                return Err(Error::InvalidArgument(format!(
                    "min_coherence {min_coherence} is not a cosine in [-1, 1]"
                )));
            }
            let (labels, k, iterations) =
                split::by_threshold(points, &all, params, min_coherence, &ctl)?;
            (labels, k, iterations, min_coherence)
        }
    };
    Ok(kmeans::finish(
        points,
        &all,
        &labels,
        k,
        params.min_size,
        min_coherence,
        iterations,
    ))
}

/// Each point's cosine to its most similar row of `centroids` (unit vectors, `dim` floats
/// each): the k-means objective of any set of centroids is their mean.
pub fn nearest_similarities(points: &Points<'_>, centroids: &[f32]) -> Vec<f32> {
    if centroids.len() < points.dim() {
        return vec![0.0; points.len()];
    }
    let all: Vec<u32> = (0..points.len() as u32).collect();
    points
        .nearest(
            &all,
            &centroids[..centroids.len() / points.dim() * points.dim()],
        )
        .1
}

/// Adjusted Rand index of two labelings of the same points (1 = identical partitions, about
/// 0 = chance). [`UNASSIGNED`] counts as one more cluster.
pub fn adjusted_rand_index(a: &[u32], b: &[u32]) -> f64 {
    assert_eq!(a.len(), b.len(), "labelings of the same points");
    let mut pairs: std::collections::HashMap<(u32, u32), u64> = Default::default();
    let mut rows: std::collections::HashMap<u32, u64> = Default::default();
    let mut cols: std::collections::HashMap<u32, u64> = Default::default();
    for (&x, &y) in a.iter().zip(b) {
        *pairs.entry((x, y)).or_default() += 1;
        *rows.entry(x).or_default() += 1;
        *cols.entry(y).or_default() += 1;
    }
    let c2 = |n: u64| (n * n.saturating_sub(1) / 2) as f64;
    let index: f64 = pairs.values().map(|&n| c2(n)).sum();
    let (sa, sb): (f64, f64) = (
        rows.values().map(|&n| c2(n)).sum(),
        cols.values().map(|&n| c2(n)).sum(),
    );
    let expected = sa * sb / c2(a.len() as u64).max(1.0);
    let max = (sa + sb) / 2.0;
    if max == expected {
        1.0
    } else {
        (index - expected) / (max - expected)
    }
}

#[cfg(test)]
mod tests;
