//! Lloyd iterations of spherical k-means and the centroid sums they share.

use rayon::prelude::*;

use super::points::Points;
use super::{Clustering, Ctl, Phase, Progress, UNASSIGNED};
use crate::error::Result;

/// The state after Lloyd iterations: centroids, and each member's nearest one with the
/// bounds a run from centroids that differ in a few rows starts from
/// (`Assignment::after_moving`).
pub(crate) struct Run {
    pub centroids: Vec<f32>,
    pub assignment: Assignment,
    pub iterations: usize,
}

/// Each member's label and Hamerly bounds for given centroids: a lower bound on its cosine
/// to its own centroid, an upper bound on its cosine to any other.
#[derive(Clone)]
pub(crate) struct Assignment {
    pub labels: Vec<u32>,
    lower: Vec<f64>,
    upper: Vec<f64>,
}

impl Assignment {
    /// Every member scored against every centroid.
    pub(crate) fn full(points: &Points<'_>, members: &[u32], centroids: &[f32]) -> Self {
        let (labels, own, second) = points.nearest2(members, centroids);
        Assignment {
            labels,
            lower: own.iter().map(|&s| f64::from(s)).collect(),
            upper: second.iter().map(|&s| f64::from(s)).collect(),
        }
    }

    /// This assignment carried to `centroids`, which differ from the ones it was made for
    /// only in the rows `changed`: every member is scored against those rows alone, and only
    /// the members of a changed centroid, or whose bounds now cross, against all of them.
    pub(crate) fn after_moving(
        mut self,
        points: &Points<'_>,
        members: &[u32],
        centroids: &[f32],
        changed: &[usize],
    ) -> Self {
        let d = points.dim();
        let rows: Vec<f32> = changed
            .iter()
            .flat_map(|&j| centroids[j * d..(j + 1) * d].iter().copied())
            .collect();
        let moved = points.cosines(members, &rows);
        let mut doubtful = Vec::new();
        for (i, cos) in moved.chunks_exact(changed.len()).enumerate() {
            let nearest_moved = cos.iter().fold(f32::NEG_INFINITY, |m, &c| m.max(c));
            self.upper[i] = self.upper[i].max(f64::from(nearest_moved));
            if changed.contains(&(self.labels[i] as usize))
                || self.lower[i] <= self.upper[i] + KEEP_MARGIN
            {
                doubtful.push(i);
            }
        }
        self.rescore(points, members, centroids, &doubtful);
        self
    }

    /// Members `which` (indices into `members`) scored against every centroid.
    fn rescore(
        &mut self,
        points: &Points<'_>,
        members: &[u32],
        centroids: &[f32],
        which: &[usize],
    ) {
        if which.is_empty() {
            return;
        }
        let who: Vec<u32> = which.iter().map(|&i| members[i]).collect();
        let (labels, own, second) = points.nearest2(&who, centroids);
        for (m, &i) in which.iter().enumerate() {
            self.labels[i] = labels[m];
            (self.lower[i], self.upper[i]) = (f64::from(own[m]), f64::from(second[m]));
        }
    }
}

/// How far apart a point's bounds must stay for it to keep its label: covers the f32
/// rounding of the cosines they start from (each within ~5e-5 at 768-d), so a kept label is
/// exactly the one full rescoring would pick.
const KEEP_MARGIN: f64 = 2e-4;

/// Lloyd iterations from `centroids` (k unit rows) over the points `members`, until no
/// assignment changes or `max_iterations` updates have run. Returned labels are the nearest
/// of the returned centroids.
///
/// After the first assignment a point is rescored against every centroid only when it
/// might change cluster (Hamerly's bounds, for cosines). Each point keeps a lower bound on
/// its cosine to its own centroid and an upper bound on its cosine to any other; a unit
/// centroid that moves by δ changes a unit point's cosine by at most δ, so each update lowers
/// the first by its own centroid's move and raises the second by the largest other move. A
/// point whose bounds stay `KEEP_MARGIN` apart keeps its label without any work; one whose
/// bounds cross is checked against its exact own cosine, then rescored if still in doubt. The
/// labels are the ones full rescoring gives (tested against it).
pub(crate) fn lloyd(
    points: &Points<'_>,
    members: &[u32],
    centroids: Vec<f32>,
    max_iterations: usize,
    ctl: &Ctl<'_>,
) -> Result<Run> {
    let start = Assignment::full(points, members, &centroids);
    lloyd_from(points, members, centroids, start, max_iterations, ctl)
}

/// [`lloyd`] from an assignment already made for `centroids`.
pub(crate) fn lloyd_from(
    points: &Points<'_>,
    members: &[u32],
    mut centroids: Vec<f32>,
    mut assignment: Assignment,
    max_iterations: usize,
    ctl: &Ctl<'_>,
) -> Result<Run> {
    let (d, k, n) = (points.dim(), centroids.len() / points.dim(), members.len());
    let mut previous: Option<Vec<u32>> = None;
    for iteration in 0.. {
        if iteration == max_iterations || previous.as_ref() == Some(&assignment.labels) {
            return Ok(Run {
                centroids,
                assignment,
                iterations: iteration,
            });
        }
        let labels = &assignment.labels;
        let (sums, sizes) = sums(points, members, labels, k);
        // The mean cosine of the points to their centroids: Σ_j (Σ of cluster j's
        // directions) · centroid j, over n.
        let objective = sums
            .chunks_exact(d)
            .zip(centroids.chunks_exact(d))
            .map(|(s, c)| {
                s.iter()
                    .zip(c)
                    .map(|(x, y)| f64::from(*x) * f64::from(*y))
                    .sum::<f64>()
            })
            .sum::<f64>()
            / n as f64;
        let before = centroids.clone();
        for (j, (c, s)) in centroids
            .chunks_exact_mut(d)
            .zip(sums.chunks_exact(d))
            .enumerate()
        {
            if sizes[j] > 0 {
                normalize_into(s, c);
            }
        }
        if sizes.contains(&0) {
            let sims = points.own_cosines(members, labels, &before);
            reseed_empty(points, members, labels, &sims, &sizes, &mut centroids);
        }
        ctl.report(Progress {
            phase: Phase::Iterating,
            step: iteration + 1,
            of: max_iterations,
            clusters: k,
            objective,
        })?;
        let moved: Vec<f64> = before
            .chunks_exact(d)
            .zip(centroids.chunks_exact(d))
            .map(|(a, b)| {
                a.iter()
                    .zip(b)
                    .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .collect();
        // The largest move, and the largest of the others for the points of that centroid.
        let farthest = (0..k)
            .max_by(|&a, &b| moved[a].total_cmp(&moved[b]))
            .unwrap_or(0);
        let most = moved[farthest];
        let next = (0..k)
            .filter(|&j| j != farthest)
            .map(|j| moved[j])
            .fold(0f64, f64::max);
        let Assignment {
            labels,
            lower,
            upper,
        } = &mut assignment;
        let mut doubtful = Vec::new();
        for (i, &l) in labels.iter().enumerate() {
            let l = l as usize;
            lower[i] -= moved[l];
            upper[i] += if l == farthest { next } else { most };
            if lower[i] <= upper[i] + KEEP_MARGIN {
                doubtful.push(i);
            }
        }
        previous = Some(labels.clone());
        // Few in doubt (late iterations): their exact own cosine clears most of them. Many
        // (early iterations, overlapping data): rescoring them all costs less than both.
        if doubtful.len() * 2 < n {
            let who: Vec<u32> = doubtful.iter().map(|&i| members[i]).collect();
            let their: Vec<u32> = doubtful.iter().map(|&i| labels[i]).collect();
            let own = points.own_cosines(&who, &their, &centroids);
            doubtful = doubtful
                .into_iter()
                .zip(own)
                .filter_map(|(i, o)| {
                    lower[i] = f64::from(o);
                    (lower[i] <= upper[i] + KEEP_MARGIN).then_some(i)
                })
                .collect();
        }
        assignment.rescore(points, members, &centroids, &doubtful);
    }
    unreachable!("the loop returns")
}

/// Per cluster: the sum of its members' directions (k×d) and its size. Each cluster sums its
/// members in their order, so the floats do not depend on the thread count. Tasks own
/// contiguous ranges of clusters of about equal membership and each streams the points in
/// member order, taking its own: one forward pass over memory per task (walking cluster by
/// cluster instead jumped across the whole matrix once per cluster and took 3–4× longer).
pub(crate) fn sums(
    points: &Points<'_>,
    members: &[u32],
    labels: &[u32],
    k: usize,
) -> (Vec<f32>, Vec<usize>) {
    let d = points.dim();
    let mut sizes = vec![0usize; k];
    for &l in labels.iter().filter(|&&l| l != UNASSIGNED) {
        sizes[l as usize] += 1;
    }
    // Cut the clusters into ranges of about members/tasks points each.
    let tasks = rayon::current_num_threads().min(k).max(1);
    let assigned: usize = sizes.iter().sum();
    let mut cuts = vec![0usize];
    let mut seen = 0;
    for (j, &size) in sizes.iter().enumerate() {
        seen += size;
        if seen * tasks >= assigned * cuts.len() && j + 1 < k {
            cuts.push(j + 1);
        }
    }
    cuts.push(k);
    cuts.dedup();
    let mut sums = vec![0f32; k * d];
    let mut parts = Vec::with_capacity(cuts.len() - 1);
    let mut rest = &mut sums[..];
    for w in cuts.windows(2) {
        let (part, tail) = rest.split_at_mut((w[1] - w[0]) * d);
        parts.push((w[0]..w[1], part));
        rest = tail;
    }
    parts.into_par_iter().for_each(|(clusters, acc)| {
        for (&m, &l) in members.iter().zip(labels) {
            let l = l as usize;
            if clusters.contains(&l) {
                let j = l - clusters.start;
                points.add_direction(m as usize, &mut acc[j * d..(j + 1) * d]);
            }
        }
    });
    (sums, sizes)
}

/// `out = v / |v|` (norm in f64); returns |v|.
pub(crate) fn normalize_into(v: &[f32], out: &mut [f32]) -> f64 {
    let norm = v
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        for (o, &x) in out.iter_mut().zip(v) {
            *o = (f64::from(x) / norm) as f32;
        }
    }
    norm
}

/// Gives each empty cluster the direction of the point least similar to its own centroid,
/// taken from a cluster that keeps at least one member (faiss splits a large cluster
/// instead; a far point is a cheaper signal of an under-served region).
fn reseed_empty(
    points: &Points<'_>,
    members: &[u32],
    labels: &[u32],
    sims: &[f32],
    sizes: &[usize],
    centroids: &mut [f32],
) {
    let d = points.dim();
    let empty: Vec<usize> = (0..sizes.len()).filter(|&j| sizes[j] == 0).collect();
    if empty.is_empty() {
        return;
    }
    let mut left = sizes.to_vec();
    let mut far: Vec<usize> = (0..members.len()).collect();
    far.sort_by(|&a, &b| sims[a].total_cmp(&sims[b]).then(a.cmp(&b)));
    let mut far = far.into_iter();
    for j in empty {
        let Some(p) = far.by_ref().find(|&p| left[labels[p] as usize] > 1) else {
            return; // fewer distinct points than clusters: the rest stay empty
        };
        left[labels[p] as usize] -= 1;
        normalize_into(
            points.row(members[p] as usize),
            &mut centroids[j * d..(j + 1) * d],
        );
    }
}

/// The final clusters of `labels` (over `members`, `k` of them): centroids are the normalized
/// means of their members, coherence |Σ directions| / size, and each member's similarity is
/// its cosine to that centroid. Clusters smaller than `min_size`, less coherent than
/// `min_coherence`, or whose directions sum to zero are dropped (their members unassigned)
/// and the rest renumbered in order.
pub(crate) fn finish(
    points: &Points<'_>,
    members: &[u32],
    labels: &[u32],
    k: usize,
    min_size: usize,
    min_coherence: f32,
    iterations: usize,
) -> Clustering {
    let d = points.dim();
    let (sums, sizes) = sums(points, members, labels, k);
    let mut renumber = vec![UNASSIGNED; k];
    let mut out = Clustering {
        centroids: Vec::new(),
        sizes: Vec::new(),
        coherence: Vec::new(),
        labels: vec![UNASSIGNED; members.len()],
        similarity: vec![0.0; members.len()],
        iterations,
    };
    let mut c = vec![0f32; d];
    for j in 0..k {
        if sizes[j] == 0 {
            continue;
        }
        let norm = normalize_into(&sums[j * d..(j + 1) * d], &mut c);
        let coherence = (norm / sizes[j] as f64) as f32;
        // Members whose directions cancel out have no direction to stand for.
        if norm == 0.0 || sizes[j] < min_size || coherence < min_coherence {
            continue;
        }
        renumber[j] = out.sizes.len() as u32;
        out.centroids.extend_from_slice(&c);
        out.sizes.push(sizes[j]);
        out.coherence.push(coherence);
    }
    let centroids = &out.centroids;
    out.labels
        .par_iter_mut()
        .zip(out.similarity.par_iter_mut())
        .enumerate()
        .for_each(|(p, (label, sim))| {
            let Some(&old) = labels.get(p) else { return };
            if old == UNASSIGNED || renumber[old as usize] == UNASSIGNED {
                return;
            }
            let j = renumber[old as usize] as usize;
            *label = j as u32;
            *sim = points.cosine(members[p] as usize, &centroids[j * d..(j + 1) * d]);
        });
    out
}
