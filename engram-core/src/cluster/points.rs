//! The vectors a clustering runs on, read in place, and the batch kernel call that scores a
//! block of them against every centroid.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::metric::check_norm;
use crate::similarity::{Aligned, BatchKernel, Kernel, Metric, Rows};

/// Vectors of `dim` floats at given offsets in one slice (a dense matrix, or the store's
/// mapped slots), each with the inverse of its L2 norm: clustering is on directions, so a
/// point enters sums as `row * inv_norm` and its cosine to a unit centroid is `dot * inv_norm`.
#[derive(Clone, Debug)]
pub struct Points<'a> {
    data: &'a [f32],
    dim: usize,
    offsets: Vec<usize>,
    inv_norms: Vec<f32>,
}

impl<'a> Points<'a> {
    /// The rows of a dense row-major matrix. Errors on a ragged length, a non-finite value, a
    /// zero row (which has no direction to cluster) or a row longer than 1e18 (whose f32
    /// similarity sums would overflow).
    pub fn dense(data: &'a [f32], dim: usize) -> Result<Self> {
        if dim == 0 || !data.len().is_multiple_of(dim) {
            return Err(Error::InvalidArgument(format!(
                "{} floats do not make rows of {dim}",
                data.len()
            )));
        }
        let mut points = Points {
            data,
            dim,
            offsets: Vec::with_capacity(data.len() / dim),
            inv_norms: Vec::with_capacity(data.len() / dim),
        };
        for (i, row) in data.chunks_exact(dim).enumerate() {
            if let Some(j) = row.iter().position(|x| !x.is_finite()) {
                return Err(Error::NonFinite {
                    what: "point",
                    index: i * dim + j,
                    value: row[j],
                });
            }
            let norm = row
                .iter()
                .map(|&x| f64::from(x) * f64::from(x))
                .sum::<f64>();
            if norm == 0.0 {
                return Err(Error::InvalidArgument(format!(
                    "point {i} is the zero vector"
                )));
            }
            check_norm(&format_args!("point {i}"), norm)?;
            points.offsets.push(i * dim);
            points.inv_norms.push((1.0 / norm.sqrt()) as f32);
        }
        Ok(points)
    }

    /// No points yet, over `data`; [`Points::push`] adds rows already validated by the
    /// caller (the store keeps finite embeddings and their norms; zero norms are left out).
    #[cfg_attr(not(unix), allow(dead_code))] // the store is unix-only
    pub(crate) fn over(data: &'a [f32], dim: usize) -> Self {
        Points {
            data,
            dim,
            offsets: Vec::new(),
            inv_norms: Vec::new(),
        }
    }

    #[cfg_attr(not(unix), allow(dead_code))]
    pub(crate) fn push(&mut self, offset: usize, norm: f32) {
        debug_assert!(offset + self.dim <= self.data.len() && norm > 0.0);
        self.offsets.push(offset);
        self.inv_norms.push(1.0 / norm);
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Whether there are no points.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Floats per point.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Point `i`, borrowed from the underlying slice.
    pub fn row(&self, i: usize) -> &'a [f32] {
        &self.data[self.offsets[i]..self.offsets[i] + self.dim]
    }

    pub(crate) fn inv_norm(&self, i: usize) -> f32 {
        self.inv_norms[i]
    }

    /// Cosine of point `i` to the unit vector `c`.
    pub(crate) fn cosine(&self, i: usize, c: &[f32]) -> f32 {
        dot(self.row(i), c) * self.inv_norms[i]
    }

    /// Adds point `i`'s direction into `acc`.
    pub(crate) fn add_direction(&self, i: usize, acc: &mut [f32]) {
        let s = self.inv_norms[i];
        for (a, x) in acc.iter_mut().zip(self.row(i)) {
            *a += x * s;
        }
    }

    /// For each point of `members`, the index and cosine of its most similar row of
    /// `centroids` (unit vectors, `dim` floats each; the first on ties). Blocks of points are
    /// fixed, not per thread, so the answer does not depend on the number of threads.
    pub(crate) fn nearest(&self, members: &[u32], centroids: &[f32]) -> (Vec<u32>, Vec<f32>) {
        let (labels, sims, _) = self.nearest2(members, centroids);
        (labels, sims)
    }

    /// [`Points::nearest`], plus each point's cosine to its second most similar centroid
    /// (−∞ with one centroid).
    pub(crate) fn nearest2(
        &self,
        members: &[u32],
        centroids: &[f32],
    ) -> (Vec<u32>, Vec<f32>, Vec<f32>) {
        let k = centroids.len() / self.dim;
        assert!(k > 0 && k <= u32::MAX as usize);
        let mut labels = vec![0u32; members.len()];
        let mut sims = vec![0f32; members.len()];
        let mut seconds = vec![0f32; members.len()];
        let centroids = Aligned::pack(centroids.chunks_exact(self.dim), self.dim);
        let centroids = centroids.rows();
        labels
            .par_chunks_mut(BLOCK)
            .zip(sims.par_chunks_mut(BLOCK))
            .zip(seconds.par_chunks_mut(BLOCK))
            .zip(members.par_chunks(BLOCK))
            .for_each_init(
                || (Vec::new(), Vec::new()),
                |(gathered, scores), (((labels, sims), seconds), block)| {
                    scores.resize(block.len() * k, 0.0);
                    self.dots(block, centroids, gathered, scores);
                    for (r, row) in scores.chunks_exact(k).enumerate() {
                        let (mut best, mut at, mut second) = (row[0], 0, f32::NEG_INFINITY);
                        for (j, &s) in row.iter().enumerate().skip(1) {
                            if s > best {
                                (second, best, at) = (best, s, j);
                            } else if s > second {
                                second = s;
                            }
                        }
                        let inv = self.inv_norms[block[r] as usize];
                        labels[r] = at as u32;
                        sims[r] = best * inv;
                        seconds[r] = second * inv;
                    }
                },
            );
        (labels, sims, seconds)
    }

    /// Cosine of each point of `members` to its own centroid `labels[i]` of `centroids`
    /// (unit rows), in fixed blocks.
    pub(crate) fn own_cosines(
        &self,
        members: &[u32],
        labels: &[u32],
        centroids: &[f32],
    ) -> Vec<f32> {
        let d = self.dim;
        let kernel = Kernel::best();
        let mut out = vec![0f32; members.len()];
        out.par_chunks_mut(BLOCK)
            .zip(members.par_chunks(BLOCK).zip(labels.par_chunks(BLOCK)))
            .for_each(|(out, (block, labels))| {
                for ((o, &m), &l) in out.iter_mut().zip(block).zip(labels) {
                    let c = &centroids[l as usize * d..(l as usize + 1) * d];
                    let dot = kernel.score_checked(Metric::Dot, self.row(m as usize), c);
                    *o = dot * self.inv_norms[m as usize];
                }
            });
        out
    }

    /// Cosines of every point of `members` to every unit row of `rows`: `members.len() × t`,
    /// row-major.
    pub(crate) fn cosines(&self, members: &[u32], rows: &[f32]) -> Vec<f32> {
        let t = rows.len() / self.dim;
        let mut out = vec![0f32; members.len() * t];
        if t == 0 {
            return out;
        }
        let rows = Aligned::pack(rows.chunks_exact(self.dim), self.dim);
        let rows = rows.rows();
        out.par_chunks_mut(BLOCK * t)
            .zip(members.par_chunks(BLOCK))
            .for_each_init(Vec::new, |gathered, (out, block)| {
                self.dots(block, rows, gathered, out);
                for (r, row) in out.chunks_exact_mut(t).enumerate() {
                    let s = self.inv_norms[block[r] as usize];
                    row.iter_mut().for_each(|x| *x *= s);
                }
            });
        out
    }

    /// `scores[r * k + j] = row(block[r]) · centroids[j]`, by the batch kernel reading the
    /// rows in place when they lie at one stride (slots of the store, a dense matrix), else
    /// from a packed copy.
    fn dots(
        &self,
        block: &[u32],
        centroids: Rows<'_>,
        gathered: &mut Vec<f32>,
        scores: &mut [f32],
    ) {
        let (m, d) = (block.len(), self.dim);
        debug_assert_eq!(scores.len(), m * centroids.len());
        let first = self.offsets[block[0] as usize];
        let stride = match block {
            [_] => d,
            [_, second, ..] => self.offsets[*second as usize].wrapping_sub(first),
            [] => return,
        };
        let strided = stride >= d
            && block.windows(2).all(|w| {
                self.offsets[w[1] as usize].wrapping_sub(self.offsets[w[0] as usize]) == stride
            });
        let (a, rsa) = if strided {
            (&self.data[first..first + (m - 1) * stride + d], stride)
        } else {
            gathered.clear();
            for &i in block {
                gathered.extend_from_slice(self.row(i as usize));
            }
            (&gathered[..], d)
        };
        let points = Rows::new(a, d, rsa, m).expect("m rows of d floats at stride rsa fit `a`");
        BatchKernel::best().dots_checked(points, centroids, scores);
    }
}

/// Points per batch-kernel call: 512 rows of 3 KB leave blocks for every core (measured
/// alike from 256 to 4,096 with a packing GEMM).
const BLOCK: usize = 512;

/// Dot product in f32 with eight independent sums (auto-vectorized).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}
