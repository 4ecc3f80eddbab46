//! Similarity kernels: cosine, dot and squared L2 between f32 vectors, one pair at a time or
//! one query against many rows laid out at a fixed stride (the store's slots, read in place).
//!
//! Every kernel has a scalar reference ([`Kernel::Scalar`], accumulating in f64), which is the
//! oracle in tests. SIMD paths: AVX2+FMA and AVX-512 on x86-64, simd128 on wasm32, and the
//! `simsimd` crate (pairs only) where a C compiler is available. [`Kernel::best`] picks the
//! fastest available path once per process (measured in `docs/benchmarks.md`). Many queries
//! against many rows at once (batched search, k-means) go through [`BatchKernel`].
//!
//! Conventions: cosine of a zero vector with anything is 0 (not NaN); scores rank higher-is-
//! better, so [`Metric::L2`] scores are negated squared distances.

mod batch;
pub mod int8;
mod scalar;
#[cfg(target_arch = "wasm32")]
mod wasm;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::sync::OnceLock;

use crate::error::{Error, Result};
pub use crate::metric::Metric;
pub(crate) use batch::Aligned;
pub use batch::BatchKernel;

/// Rows of `dim` floats, row `i` starting at `data[i * stride]`.
#[derive(Clone, Copy, Debug)]
pub struct Rows<'a> {
    data: &'a [f32],
    dim: usize,
    stride: usize,
    len: usize,
}

impl<'a> Rows<'a> {
    /// `len` rows of `dim` floats, `stride` floats apart, in `data`. `None` if they don't fit.
    pub fn new(data: &'a [f32], dim: usize, stride: usize, len: usize) -> Option<Self> {
        let need = match len {
            0 => 0,
            n => (n - 1).checked_mul(stride)?.checked_add(dim)?,
        };
        (stride >= dim && data.len() >= need).then_some(Rows {
            data,
            dim,
            stride,
            len,
        })
    }

    /// Densely packed rows.
    pub fn dense(data: &'a [f32], dim: usize) -> Self {
        let len = data.len().checked_div(dim).unwrap_or(0);
        Rows {
            data,
            dim,
            stride: dim,
            len,
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Floats per row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Floats from the start of one row to the start of the next.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &'a [f32] {
        &self.data[i * self.stride..i * self.stride + self.dim]
    }

    /// The floats the rows lie in; row `i` starts at `i * stride`.
    pub fn floats(&self) -> &'a [f32] {
        self.data
    }

    /// Rows `start..end`.
    pub fn slice(&self, start: usize, end: usize) -> Rows<'a> {
        assert!(start <= end && end <= self.len);
        let data = if start == end {
            &self.data[..0]
        } else {
            &self.data[start * self.stride..]
        };
        Rows {
            data,
            dim: self.dim,
            stride: self.stride,
            len: end - start,
        }
    }
}

/// An implementation of the kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Plain loops accumulating in f64: the reference every other kernel is tested against.
    Scalar,
    /// x86-64 AVX2 + FMA: four rows per pass sharing each query load when the rows fit in
    /// cache, one row at a time (one sequential stream) when they stream from memory.
    Avx2,
    /// x86-64 AVX-512F, one row per pass with four accumulator chains and masked tails.
    Avx512,
    /// wasm32 simd128, four rows per pass.
    Simd128,
    /// The `simsimd` crate's dispatched kernels (one call per row).
    SimSimd,
}

impl Kernel {
    /// Kernels this CPU (and build) can run.
    pub fn available() -> Vec<Kernel> {
        Self::detected().to_vec()
    }

    /// Detected once per process: the per-call path only reads this.
    fn detected() -> &'static [Kernel] {
        static AVAILABLE: OnceLock<Vec<Kernel>> = OnceLock::new();
        AVAILABLE.get_or_init(Self::detect)
    }

    fn detect() -> Vec<Kernel> {
        let mut k = vec![Kernel::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            if x86::has_avx2() {
                k.push(Kernel::Avx2);
            }
            if x86::has_avx512() {
                k.push(Kernel::Avx512);
            }
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        k.push(Kernel::Simd128);
        #[cfg(not(target_arch = "wasm32"))]
        k.push(Kernel::SimSimd);
        k
    }

    /// The fastest kernel for one query against many rows, chosen once. On x86-64: AVX-512
    /// where present, else AVX2; both beat simsimd's f32 paths on batches, cached and
    /// streaming (docs/benchmarks.md).
    pub fn best() -> Kernel {
        static BEST: OnceLock<Kernel> = OnceLock::new();
        *BEST.get_or_init(|| {
            let avail = Kernel::detected();
            [Kernel::Avx512, Kernel::Avx2, Kernel::Simd128]
                .into_iter()
                .find(|k| avail.contains(k))
                .unwrap_or(Kernel::Scalar)
        })
    }

    /// The fastest kernel for single pairs: simsimd where built (one call computes all the
    /// sums a pair needs), else [`Kernel::best`]. Measured in docs/benchmarks.md.
    pub fn best_pair() -> Kernel {
        if Kernel::detected().contains(&Kernel::SimSimd) {
            Kernel::SimSimd
        } else {
            Kernel::best()
        }
    }

    fn usable(self) -> Kernel {
        if Kernel::detected().contains(&self) {
            self
        } else {
            Kernel::Scalar
        }
    }

    /// Scores of `query` against every row, written to `out`.
    ///
    /// Errors: `DimensionMismatch` if `query.len() != rows.dim()`, `InvalidArgument` if
    /// `out.len() != rows.len()`.
    pub fn scores(
        self,
        metric: Metric,
        query: &[f32],
        rows: Rows<'_>,
        out: &mut [f32],
    ) -> Result<()> {
        same_length(rows.dim(), query.len())?;
        if out.len() != rows.len() {
            return Err(Error::InvalidArgument(format!(
                "{} outputs for {} rows",
                out.len(),
                rows.len()
            )));
        }
        self.scores_checked(metric, query, rows, out);
        Ok(())
    }

    /// [`Kernel::scores`] for callers whose lengths agree by construction.
    pub(crate) fn scores_checked(
        self,
        metric: Metric,
        query: &[f32],
        rows: Rows<'_>,
        out: &mut [f32],
    ) {
        debug_assert!(query.len() == rows.dim() && out.len() == rows.len());
        match self.usable() {
            Kernel::Scalar => scalar::scores(metric, query, rows, out),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => x86::scores_avx2(metric, query, rows, out),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => x86::scores_avx512(metric, query, rows, out),
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Kernel::Simd128 => wasm::scores(metric, query, rows, out),
            #[cfg(not(target_arch = "wasm32"))]
            Kernel::SimSimd => {
                for (i, o) in out.iter_mut().enumerate() {
                    *o = simsimd_score(metric, query, rows.row(i));
                }
            }
            #[allow(unreachable_patterns)] // kernels of other targets
            _ => scalar::scores(metric, query, rows, out),
        }
    }

    /// Score of one pair. Errors: `DimensionMismatch` if the lengths differ.
    pub fn score(self, metric: Metric, a: &[f32], b: &[f32]) -> Result<f32> {
        same_length(a.len(), b.len())?;
        Ok(self.score_checked(metric, a, b))
    }

    /// [`Kernel::score`] for callers whose lengths agree by construction.
    pub(crate) fn score_checked(self, metric: Metric, a: &[f32], b: &[f32]) -> f32 {
        debug_assert_eq!(a.len(), b.len());
        #[cfg(not(target_arch = "wasm32"))]
        if self == Kernel::SimSimd {
            return simsimd_score(metric, a, b);
        }
        if b.is_empty() {
            return 0.0;
        }
        let mut out = [0f32];
        self.scores_checked(metric, a, Rows::dense(b, b.len()), &mut out);
        out[0]
    }
}

/// `DimensionMismatch` unless the two lengths agree.
pub(super) fn same_length(expected: usize, found: usize) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(Error::DimensionMismatch { expected, found })
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn simsimd_score(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    use simsimd::SpatialSimilarity;
    match metric {
        Metric::Dot => <f32 as SpatialSimilarity>::dot(a, b).unwrap_or(0.0) as f32,
        Metric::L2 => -(<f32 as SpatialSimilarity>::l2sq(a, b).unwrap_or(0.0) as f32),
        Metric::Cosine => {
            // simsimd answers "distance 0" for two zero vectors; our convention is 0 similarity.
            let d = <f32 as SpatialSimilarity>::cos(a, b).unwrap_or(1.0);
            if d == 0.0 && a.iter().all(|x| *x == 0.0) {
                0.0
            } else {
                (1.0 - d) as f32
            }
        }
    }
}

/// Dot product with the fastest pair kernel (`DimensionMismatch` if the lengths differ).
pub fn dot(a: &[f32], b: &[f32]) -> Result<f32> {
    Kernel::best_pair().score(Metric::Dot, a, b)
}

/// Cosine similarity with the fastest pair kernel (0 if either vector is zero;
/// `DimensionMismatch` if the lengths differ).
pub fn cosine(a: &[f32], b: &[f32]) -> Result<f32> {
    Kernel::best_pair().score(Metric::Cosine, a, b)
}

/// Squared Euclidean distance with the fastest pair kernel (`DimensionMismatch` if the
/// lengths differ).
pub fn l2sq(a: &[f32], b: &[f32]) -> Result<f32> {
    Ok(-Kernel::best_pair().score(Metric::L2, a, b)?)
}

/// The score from the sums a kernel gathered: `sum` is the dot product (dot, cosine) or the
/// squared distance (L2); the squared norms are needed for cosine only.
#[inline]
#[cfg(any(target_arch = "x86_64", target_arch = "wasm32"))] // the SIMD kernels' epilogue
pub(crate) fn finish(metric: Metric, sum: f32, row_norm2: f32, query_norm2: f32) -> f32 {
    match metric {
        Metric::Dot => sum,
        Metric::L2 => -sum,
        // Product of the roots: the product of the squares overflows (or underflows) f32 for
        // magnitudes whose cosine is perfectly representable.
        Metric::Cosine => cosine_of(sum, query_norm2.sqrt(), row_norm2.sqrt()),
    }
}

/// The score from a dot product and both norms (stored norms, int8 scans).
#[inline]
#[cfg_attr(not(unix), allow(dead_code))] // its callers are in the store, which is unix-only
pub(crate) fn from_dot(metric: Metric, dot: f32, query_norm: f32, row_norm: f32) -> f32 {
    match metric {
        Metric::Dot => dot,
        Metric::L2 => -(query_norm * query_norm + row_norm * row_norm - 2.0 * dot),
        Metric::Cosine => cosine_of(dot, query_norm, row_norm),
    }
}

/// Cosine from a dot product and norms; 0 when either vector is zero.
#[inline]
fn cosine_of(dot: f32, a_norm: f32, b_norm: f32) -> f32 {
    let denom = a_norm * b_norm;
    if denom > 0.0 { dot / denom } else { 0.0 }
}

#[cfg(test)]
mod tests;
