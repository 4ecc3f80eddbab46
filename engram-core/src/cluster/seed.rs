//! Seeding: k-means|| (Bahmani et al., 2012) on a pool of points, reduced to k centres by
//! weighted k-means++, and the deterministic randomness both use.

use super::points::Points;
use super::{Ctl, Phase, Progress};
use crate::error::Result;

/// Purposes of random draws, so that draws for one never repeat another's.
pub(crate) const SAMPLE: u64 = 1;
const POOL: u64 = 2;
const FIRST: u64 = 3;
const ROUND: u64 = 16; // + round number
const REDUCE: u64 = 4;

/// Points per cluster in the seeding pool: enough that every cluster of a few percent of the
/// data is represented; the pool bounds seeding at a few Lloyd iterations' cost.
const POOL_PER_CLUSTER: usize = 16;
/// k-means|| rounds, each sampling about `k` candidates (Bahmani et al. find 5 rounds of
/// 0.5k to 2k enough for seeds as good as k-means++; at 0.5k a cluster of 1/k of the pool
/// went without a candidate in about one run in ten, in our tests).
const ROUNDS: u64 = 5;

/// A uniform number in [0, 1) for draw `i` of `purpose` under `seed`.
pub(crate) fn uniform(seed: u64, purpose: u64, i: u64) -> f64 {
    let mut z =
        seed ^ purpose.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03);
    for _ in 0..2 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
    }
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// `m` of `members` drawn uniformly without replacement (those with the smallest draws), in
/// their original order.
pub(crate) fn sample(members: &[u32], m: usize, seed: u64, purpose: u64) -> Vec<u32> {
    if m >= members.len() {
        return members.to_vec();
    }
    let mut keyed: Vec<(u64, u32)> = members
        .iter()
        .map(|&p| {
            (
                (uniform(seed, purpose, u64::from(p)) * (1u64 << 53) as f64) as u64,
                p,
            )
        })
        .collect();
    keyed.select_nth_unstable(m);
    let mut picked: Vec<u32> = keyed[..m].iter().map(|&(_, p)| p).collect();
    picked.sort_unstable();
    picked
}

/// `k` unit centroids for the points `members` (`k <= members.len()`).
pub(crate) fn kmeans_parallel(
    points: &Points<'_>,
    members: &[u32],
    k: usize,
    seed: u64,
    ctl: &Ctl<'_>,
) -> Result<Vec<f32>> {
    let d = points.dim();
    let pool = sample(
        members,
        POOL_PER_CLUSTER.saturating_mul(k).max(2 * k),
        seed,
        POOL,
    );
    let direction = |p: u32| -> Vec<f32> {
        let s = points.inv_norm(p as usize);
        points.row(p as usize).iter().map(|x| x * s).collect()
    };
    // Candidates, as positions in the pool; each pool point's best cosine to one of them.
    let first = (uniform(seed, FIRST, 0) * pool.len() as f64) as usize;
    let mut candidates = vec![first];
    let (mut nearest, mut best) = points.nearest(&pool, &direction(pool[first]));
    let oversample = k as f64;
    for round in 0..ROUNDS {
        let cost: f64 = best.iter().map(|&s| f64::from(1.0 - s).max(0.0)).sum();
        if cost <= 0.0 {
            break;
        }
        let fresh: Vec<usize> = (0..pool.len())
            .filter(|&i| {
                let p = oversample * f64::from(1.0 - best[i]).max(0.0) / cost;
                uniform(seed, ROUND + round, i as u64) < p
            })
            .collect();
        if fresh.is_empty() {
            continue;
        }
        let rows: Vec<f32> = fresh.iter().flat_map(|&i| direction(pool[i])).collect();
        let (near, sims) = points.nearest(&pool, &rows);
        for i in 0..pool.len() {
            if sims[i] > best[i] {
                best[i] = sims[i];
                nearest[i] = (candidates.len() + near[i] as usize) as u32;
            }
        }
        candidates.extend_from_slice(&fresh);
        ctl.report(Progress {
            phase: Phase::Seeding,
            step: round as usize + 1,
            of: ROUNDS as usize,
            clusters: candidates.len(),
            objective: 0.0,
        })?;
    }
    // Weight each candidate by the pool points nearest to it, then reduce to k.
    let mut weight = vec![0f64; candidates.len()];
    for &c in &nearest {
        weight[c as usize] += 1.0;
    }
    let mut rows: Vec<f32> = candidates
        .iter()
        .flat_map(|&i| direction(pool[i]))
        .collect();
    if candidates.len() < k {
        // Too few candidates (few distinct directions): top up with pool points in order.
        let taken: std::collections::HashSet<usize> = candidates.iter().copied().collect();
        for i in (0..pool.len())
            .filter(|i| !taken.contains(i))
            .take(k - candidates.len())
        {
            rows.extend(direction(pool[i]));
            weight.push(1.0);
        }
    }
    Ok(weighted_plus_plus(&rows, d, &weight, k, seed))
}

/// Greedy k-means++ over weighted unit rows: each step draws `2 + ln k` candidates with
/// probability ∝ weight × (1 − cosine to the nearest centre so far) and keeps the one that
/// lowers the total weighted gap most (as scikit-learn does). Plain k-means++ is not enough
/// in high dimension on the sphere: two members of one cluster are about as far apart as a
/// member and its centre, so a second seed in a covered cluster scores half as likely as a
/// seed in an uncovered one, and Lloyd cannot undo the resulting merge.
fn weighted_plus_plus(rows: &[f32], d: usize, weight: &[f64], k: usize, seed: u64) -> Vec<f32> {
    let m = weight.len();
    let row = |i: usize| &rows[i * d..(i + 1) * d];
    let all: Vec<u32> = (0..m as u32).collect();
    let unit = Points::dense(rows, d).expect("candidate rows are finite unit vectors");
    let trials = 2 + (k as f64).ln().floor() as usize;
    let mut chosen = vec![false; m];
    let mut out = Vec::with_capacity(k * d);
    let mut gap = vec![2.0f64; m]; // 1 − best cosine to a chosen centre (2: none yet)
    for t in 0..k.min(m) {
        let mass: Vec<f64> = (0..m)
            .map(|i| if chosen[i] { 0.0 } else { weight[i] * gap[i] })
            .collect();
        let total: f64 = mass.iter().sum();
        let mut picks: Vec<usize> = (0..if t == 0 { 1 } else { trials })
            .filter_map(|r| draw(&mass, total, uniform(seed, REDUCE, (t * trials + r) as u64)))
            .collect();
        picks.dedup();
        if picks.is_empty() {
            picks.push(
                (0..m)
                    .find(|&i| !chosen[i])
                    .expect("t < m leaves a row unchosen"),
            );
        }
        // The total weighted gap after adding each pick (one GEMM for all picks).
        let trial_rows: Vec<f32> = picks.iter().flat_map(|&p| row(p).iter().copied()).collect();
        let cos = unit.cosines(&all, &trial_rows);
        let np = picks.len();
        let cost = |j: usize| -> f64 {
            (0..m)
                .map(|i| weight[i] * gap[i].min(f64::from(1.0 - cos[i * np + j])))
                .sum()
        };
        let (j, _) = (0..np)
            .map(|j| (j, cost(j)))
            .fold((0, f64::INFINITY), |b, c| if c.1 < b.1 { c } else { b });
        chosen[picks[j]] = true;
        out.extend_from_slice(row(picks[j]));
        for (i, g) in gap.iter_mut().enumerate() {
            *g = g.min(f64::from(1.0 - cos[i * np + j]));
        }
    }
    out
}

/// The index whose share of `mass` covers `r` in [0, 1), or `None` when all mass is zero.
fn draw(mass: &[f64], total: f64, r: f64) -> Option<usize> {
    if total <= 0.0 {
        return None;
    }
    let mut r = r * total;
    let mut pick = None;
    for (i, &w) in mass.iter().enumerate() {
        if w > 0.0 {
            pick = Some(i);
            if r < w {
                break;
            }
            r -= w;
        }
    }
    pick
}
