//! Threshold mode: the number of clusters follows from a minimum coherence.
//!
//! 1. Bisect: split the least coherent cluster in two (2-means) until every cluster reaches
//!    the coherence or is too small to split.
//! 2. Refine all clusters together with Lloyd iterations (bisection never moves a point
//!    across an earlier cut).
//! 3. Merge pairs of neighbouring clusters whose union still reaches the coherence (a split
//!    can cut a true cluster in two), then refine again; repeat while any merge happens.
//!
//! Coherence of a set of unit directions is |Σ x| / n, so the coherence of a union is known
//! from the two sums without touching a point.

use rayon::prelude::*;

use super::kmeans::{Run, lloyd, lloyd_from, normalize_into, sums};
use super::points::Points;
use super::{Ctl, Params, Phase, Progress, seed};
use crate::error::Result;

/// Lloyd iterations of one 2-way split: enough for two seeds to settle.
const SPLIT_ITERATIONS: usize = 10;
/// Merge-and-refine rounds at most.
const MERGE_ROUNDS: usize = 8;
/// Neighbours by centroid cosine that each cluster considers merging with.
const MERGE_NEIGHBOURS: usize = 4;

struct Part {
    members: Vec<u32>,
    coherence: f32,
    centroid: Vec<f32>,
}

fn part(points: &Points<'_>, members: Vec<u32>) -> Part {
    let zero = vec![0u32; members.len()];
    let (sum, size) = sums(points, &members, &zero, 1);
    let mut centroid = vec![0f32; points.dim()];
    let coherence = (normalize_into(&sum, &mut centroid) / size[0].max(1) as f64) as f32;
    Part {
        members,
        coherence,
        centroid,
    }
}

/// Labels of `all` and the number of clusters they use, plus the Lloyd iterations run.
pub(crate) fn by_threshold(
    points: &Points<'_>,
    all: &[u32],
    params: &Params,
    min_coherence: f32,
    ctl: &Ctl<'_>,
) -> Result<(Vec<u32>, usize, usize)> {
    let d = points.dim();
    let min_split = (2 * params.min_size).max(2);
    let mut open = vec![part(points, all.to_vec())];
    let mut done: Vec<Part> = Vec::new();
    let mut iterations = 0;
    // 1. Bisect, least coherent first (ties: the older part).
    while let Some(worst) =
        (0..open.len()).min_by(|&a, &b| open[a].coherence.total_cmp(&open[b].coherence))
    {
        let p = open.remove(worst);
        if p.coherence >= min_coherence {
            done.push(p);
            done.append(&mut open);
            break;
        }
        if p.members.len() < min_split {
            done.push(p);
            continue;
        }
        let salt = (done.len() + open.len()) as u64;
        let seeds = seed::kmeans_parallel(
            points,
            &p.members,
            2,
            params.seed ^ salt.rotate_left(32),
            ctl,
        )?;
        let run = lloyd(points, &p.members, seeds, SPLIT_ITERATIONS, &Ctl(None))?;
        iterations += run.iterations;
        let (left, right): (Vec<u32>, Vec<u32>) = {
            let mut sides = (Vec::new(), Vec::new());
            for (&m, &l) in p.members.iter().zip(&run.assignment.labels) {
                if l == 0 {
                    sides.0.push(m)
                } else {
                    sides.1.push(m)
                }
            }
            sides
        };
        if left.is_empty() || right.is_empty() {
            done.push(p); // no two directions to separate
            continue;
        }
        open.push(part(points, left));
        open.push(part(points, right));
        ctl.report(Progress {
            phase: Phase::Splitting,
            step: done.len() + open.len(),
            of: 0,
            clusters: done.len() + open.len(),
            objective: 0.0,
        })?;
    }
    let mut centroids: Vec<f32> = done
        .iter()
        .flat_map(|p| p.centroid.iter().copied())
        .collect();
    // 2 and 3. Refine, merge, refine.
    for round in 0.. {
        let run = lloyd(points, all, centroids, params.max_iterations, ctl)?;
        iterations += run.iterations;
        let k = run.centroids.len() / d;
        if round == MERGE_ROUNDS {
            return Ok((run.assignment.labels, k, iterations));
        }
        let (s, sizes) = sums(points, all, &run.assignment.labels, k);
        let Some(merged) = merge(&s, &sizes, &run.centroids, d, min_coherence) else {
            return Ok((run.assignment.labels, k, iterations));
        };
        ctl.report(Progress {
            phase: Phase::Merging,
            step: round + 1,
            of: MERGE_ROUNDS,
            clusters: merged.len() / d,
            objective: 0.0,
        })?;
        centroids = merged;
    }
    unreachable!("the loop returns")
}

/// Pairs of clusters (lower index first) where one is among the other's nearest centroids.
fn neighbour_pairs(centroids: &[f32], sizes: &[usize], d: usize) -> Vec<(usize, usize)> {
    let k = sizes.len();
    let Ok(unit) = Points::dense(centroids, d) else {
        return Vec::new();
    };
    let mut pairs: Vec<(usize, usize)> = (0..k)
        .into_par_iter()
        .filter(|&a| sizes[a] > 0)
        .flat_map_iter(|a| {
            let ca = &centroids[a * d..(a + 1) * d];
            let mut near: Vec<(f32, usize)> = (0..k)
                .filter(|&b| b != a && sizes[b] > 0)
                .map(|b| (unit.cosine(b, ca), b))
                .collect();
            near.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
            near.truncate(MERGE_NEIGHBOURS);
            near.into_iter().map(move |(_, b)| (a.min(b), a.max(b)))
        })
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    pairs
}

/// |a + b| of two rows of `sums`, in f64.
fn union_norm(sums: &[f32], d: usize, a: usize, b: usize) -> f64 {
    (0..d)
        .map(|i| f64::from(sums[a * d + i] + sums[b * d + i]).powi(2))
        .sum::<f64>()
        .sqrt()
}

fn row_norm(sums: &[f32], d: usize, j: usize) -> f64 {
    sums[j * d..(j + 1) * d]
        .iter()
        .map(|&x| f64::from(x).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// Greedy merges, most coherent union first, each cluster in at most one merge per round;
/// `None` if no union reaches `min_coherence`. Returns the new unit centroids.
fn merge(
    sums: &[f32],
    sizes: &[usize],
    centroids: &[f32],
    d: usize,
    min_coherence: f32,
) -> Option<Vec<f32>> {
    let k = sizes.len();
    let mut candidates: Vec<(f32, usize, usize)> = neighbour_pairs(centroids, sizes, d)
        .into_iter()
        .filter_map(|(a, b)| {
            let c = (union_norm(sums, d, a, b) / (sizes[a] + sizes[b]) as f64) as f32;
            (c >= min_coherence && c > 0.0).then_some((c, a, b))
        })
        .collect();
    if candidates.is_empty() {
        return None;
    }
    candidates.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    let mut taken = vec![false; k];
    let mut out = Vec::with_capacity(k * d);
    let mut c = vec![0f32; d];
    for &(_, a, b) in &candidates {
        if taken[a] || taken[b] {
            continue;
        }
        taken[a] = true;
        taken[b] = true;
        let s: Vec<f32> = (0..d).map(|i| sums[a * d + i] + sums[b * d + i]).collect();
        normalize_into(&s, &mut c);
        out.extend_from_slice(&c);
    }
    for j in (0..k).filter(|&j| !taken[j] && sizes[j] > 0) {
        out.extend_from_slice(&centroids[j * d..(j + 1) * d]);
    }
    Some(out)
}

/// Swap rounds at most in k mode.
const SWAP_ROUNDS: usize = 8;

/// k mode's repair of seeding misses: in high dimension k-means++ often puts two seeds in one
/// true cluster and none in another, and Lloyd keeps the two halves and the merged pair. A swap
/// merges the neighbouring pair that costs the objective least and splits the least coherent
/// cluster in two, when the split is predicted to gain more than the merge loses; it is kept
/// only if the objective after Lloyd iterations is higher.
pub(crate) fn swap(
    points: &Points<'_>,
    members: &[u32],
    mut run: Run,
    params: &Params,
    ctl: &Ctl<'_>,
) -> Result<Run> {
    let d = points.dim();
    let k = run.centroids.len() / d;
    if k < 3 {
        return Ok(run);
    }
    let objective = |labels: &[u32]| -> (f64, Vec<f32>, Vec<usize>) {
        let (s, sizes) = sums(points, members, labels, k);
        ((0..k).map(|j| row_norm(&s, d, j)).sum::<f64>(), s, sizes)
    };
    let (mut total, mut s, mut sizes) = objective(&run.assignment.labels);
    for round in 0..SWAP_ROUNDS {
        let norms: Vec<f64> = (0..k).map(|j| row_norm(&s, d, j)).collect();
        let Some((loss, a, b)) = neighbour_pairs(&run.centroids, &sizes, d)
            .into_iter()
            .map(|(a, b)| (norms[a] + norms[b] - union_norm(&s, d, a, b), a, b))
            .min_by(|x, y| x.0.total_cmp(&y.0))
        else {
            break;
        };
        let Some(w) = (0..k)
            .filter(|&j| j != a && j != b && sizes[j] >= 2)
            .min_by(|&x, &y| (norms[x] / sizes[x] as f64).total_cmp(&(norms[y] / sizes[y] as f64)))
        else {
            break;
        };
        let inside: Vec<u32> = members
            .iter()
            .zip(&run.assignment.labels)
            .filter(|&(_, &l)| l as usize == w)
            .map(|(&m, _)| m)
            .collect();
        let seeds = seed::kmeans_parallel(
            points,
            &inside,
            2,
            params.seed ^ ((round as u64 + 1) << 40),
            &Ctl(None),
        )?;
        let halves = lloyd(points, &inside, seeds, SPLIT_ITERATIONS, &Ctl(None))?;
        let (hs, hsizes) = sums(points, &inside, &halves.assignment.labels, 2);
        if hsizes.contains(&0) || row_norm(&hs, d, 0) + row_norm(&hs, d, 1) - norms[w] <= loss {
            break;
        }
        let mut centroids = run.centroids.clone();
        let merged: Vec<f32> = (0..d).map(|i| s[a * d + i] + s[b * d + i]).collect();
        normalize_into(&merged, &mut centroids[a * d..(a + 1) * d]);
        centroids[b * d..(b + 1) * d].copy_from_slice(&halves.centroids[..d]);
        centroids[w * d..(w + 1) * d].copy_from_slice(&halves.centroids[d..]);
        // Only a, b and w moved: the last assignment carries over for everyone else.
        let start = run
            .assignment
            .clone()
            .after_moving(points, members, &centroids, &[a, b, w]);
        let trial = lloyd_from(
            points,
            members,
            centroids,
            start,
            params.max_iterations,
            ctl,
        )?;
        let (t, ts, tsizes) = objective(&trial.assignment.labels);
        if t <= total {
            break;
        }
        run = Run {
            iterations: run.iterations + halves.iterations + trial.iterations,
            ..trial
        };
        (total, s, sizes) = (t, ts, tsizes);
    }
    Ok(run)
}
