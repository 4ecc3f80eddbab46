//! Dot products of many queries with many rows at once (`out[q * n + i] = query q · row i`):
//! the core of batched exact search and of k-means assignment. Each loaded row serves many
//! queries, so this runs at the FMA units' speed rather than memory's.
//!
//! [`BatchKernel::Scalar`] accumulates in f64 and is the oracle in tests;
//! [`BatchKernel::MatrixMultiply`] is the `matrixmultiply` crate's packed GEMM (portable,
//! with its own AVX2 and AVX-512 paths); [`BatchKernel::Avx512`] is ours: 4 queries × 4 rows
//! per pass read in place, no packing (measured in docs/benchmarks.md).

use std::sync::OnceLock;

use super::Rows;
use crate::error::{Error, Result};

/// An implementation of [`BatchKernel::dots`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BatchKernel {
    /// One pair at a time, f64 accumulation: the reference.
    Scalar,
    /// `matrixmultiply::sgemm`: packs both operands into cache-sized panels.
    MatrixMultiply,
    /// x86-64 AVX-512F: 16 accumulators for 4 queries × 4 rows, operands read in place.
    Avx512,
}

impl BatchKernel {
    /// Kernels this CPU (and build) can run.
    pub fn available() -> Vec<BatchKernel> {
        [
            BatchKernel::Scalar,
            BatchKernel::MatrixMultiply,
            BatchKernel::Avx512,
        ]
        .into_iter()
        .filter(|k| k.runs_here())
        .collect()
    }

    /// The fastest available kernel, chosen once per process.
    pub fn best() -> BatchKernel {
        static BEST: OnceLock<BatchKernel> = OnceLock::new();
        *BEST.get_or_init(|| {
            if BatchKernel::Avx512.runs_here() {
                BatchKernel::Avx512
            } else {
                BatchKernel::MatrixMultiply
            }
        })
    }

    fn runs_here(self) -> bool {
        match self {
            BatchKernel::Scalar | BatchKernel::MatrixMultiply => true,
            #[cfg(target_arch = "x86_64")]
            BatchKernel::Avx512 => super::x86::has_avx512(),
            #[cfg(not(target_arch = "x86_64"))]
            BatchKernel::Avx512 => false,
        }
    }

    /// `out[q * rows.len() + i] = queries.row(q) · rows.row(i)`. A kernel this CPU cannot
    /// run falls back to the scalar reference.
    ///
    /// Errors: `DimensionMismatch` if the two row sets differ in `dim`, `InvalidArgument`
    /// if `out.len() != queries.len() * rows.len()`.
    pub fn dots(self, queries: Rows<'_>, rows: Rows<'_>, out: &mut [f32]) -> Result<()> {
        super::same_length(rows.dim(), queries.dim())?;
        let pairs = queries.len().checked_mul(rows.len());
        if pairs != Some(out.len()) {
            return Err(Error::InvalidArgument(format!(
                "{} outputs for {} queries × {} rows",
                out.len(),
                queries.len(),
                rows.len()
            )));
        }
        self.dots_checked(queries, rows, out);
        Ok(())
    }

    /// [`BatchKernel::dots`] for callers that built the shapes themselves.
    pub(crate) fn dots_checked(self, queries: Rows<'_>, rows: Rows<'_>, out: &mut [f32]) {
        debug_assert!(queries.dim() == rows.dim() && out.len() == queries.len() * rows.len());
        if out.is_empty() {
            return;
        }
        let kernel = if self.runs_here() {
            self
        } else {
            BatchKernel::Scalar
        };
        match kernel {
            BatchKernel::Scalar => scalar(queries, rows, out),
            BatchKernel::MatrixMultiply => sgemm(queries, rows, out),
            #[cfg(target_arch = "x86_64")]
            BatchKernel::Avx512 => super::x86::dots_avx512(queries, rows, out),
            #[cfg(not(target_arch = "x86_64"))]
            BatchKernel::Avx512 => scalar(queries, rows, out),
        }
    }
}

fn scalar(queries: Rows<'_>, rows: Rows<'_>, out: &mut [f32]) {
    let n = rows.len();
    for (qi, o) in out.chunks_exact_mut(n).enumerate() {
        let q = queries.row(qi);
        for (i, o) in o.iter_mut().enumerate() {
            let s: f64 = q
                .iter()
                .zip(rows.row(i))
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            *o = s as f32;
        }
    }
}

fn sgemm(queries: Rows<'_>, rows: Rows<'_>, out: &mut [f32]) {
    let (m, n, dim) = (queries.len(), rows.len(), rows.dim());
    // A is the queries (row stride `queries.stride()`), B's column j is row j (column stride
    // `rows.stride()`); C is `out` with row stride n.
    // SAFETY: A and B lie inside the (len-1)*stride + dim floats `Rows` guarantees; `out`
    // holds m×n floats (checked by the caller) and is a distinct &mut aliasing neither.
    unsafe {
        matrixmultiply::sgemm(
            m,
            dim,
            n,
            1.0,
            queries.floats().as_ptr(),
            queries.stride() as isize,
            1,
            rows.floats().as_ptr(),
            1,
            rows.stride() as isize,
            0.0,
            out.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Vectors of `dim` floats packed one after another from a 64-byte boundary: with `dim` a
/// multiple of 16 every vector starts on a cache line, so no SIMD load of one splits two
/// lines (the AVX-512 batch kernel ran at 198 vs 153 GFLOP/s at 768-d, aligned vs not).
pub(crate) struct Aligned {
    buf: Vec<f32>,
    start: usize,
    len: usize,
    dim: usize,
}

impl Aligned {
    pub(crate) fn pack<'a>(vectors: impl ExactSizeIterator<Item = &'a [f32]>, dim: usize) -> Self {
        let len = vectors.len() * dim;
        let mut buf = vec![0f32; len + 16];
        let start = buf.as_ptr().align_offset(64).min(16);
        for (dst, v) in buf[start..start + len]
            .chunks_exact_mut(dim.max(1))
            .zip(vectors)
        {
            dst.copy_from_slice(v);
        }
        Aligned {
            buf,
            start,
            len,
            dim,
        }
    }

    pub(crate) fn rows(&self) -> Rows<'_> {
        Rows::dense(&self.buf[self.start..self.start + self.len], self.dim)
    }
}
