//! Quantized weight blocks: encoding (Q8, Q4, F16 and a per-block mixed scheme), and the
//! kernels that read them in place — dequantization and the matrix–vector product — with a
//! scalar reference, AVX2 (+FMA, F16C) on x86-64 and simd128 on wasm32. Beside the exact
//! product, [`Blocks::matvec_int8`] multiplies Q8 blocks by activations quantized to int8
//! ([`Int8Input`]) in integers (AVX-512 VNNI or AVX2 on x86-64), as GGUF runtimes do.
//!
//! A tensor of shape `[d0, …, dn]` is `rows = d0 × … × d(n-1)` rows of `cols = dn` weights;
//! each row is cut into blocks of [`BLOCK`] weights (the last one zero-padded), so no block
//! spans two rows. `docs/format.md` gives every block layout byte by byte.

mod scalar;
#[cfg(target_arch = "wasm32")]
mod wasm;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::sync::OnceLock;

use crate::error::{Error, Result};

/// Weights per block.
pub const BLOCK: usize = 32;

/// How a tensor's blocks are encoded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum QuantScheme {
    /// 34-byte blocks: f16 scale d, 32 × i8 q; w = d·q (GGUF Q8_0's layout).
    Q8,
    /// 18-byte blocks: f16 scale d, 16 bytes of nibbles; w = d·(q − 8) (GGUF Q4_0's layout).
    Q4,
    /// 64-byte blocks: 32 × f16.
    F16,
    /// Each block F16, Q8 or Q4 by its importance (the mean of the caller's per-weight
    /// scores): the most important `f16` fraction of blocks in F16, the next `q8` fraction
    /// in Q8, the rest in Q4. A tag byte per block precedes the blocks.
    Mixed {
        /// Fraction of blocks in F16.
        f16: f32,
        /// Fraction of blocks in Q8.
        q8: f32,
    },
}

/// One block's encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum BlockKind {
    /// 34-byte blocks: f16 scale, 32 × i8.
    Q8 = 1,
    /// 18-byte blocks: f16 scale, 32 nibbles.
    Q4 = 2,
    /// 64-byte blocks: 32 × f16.
    F16 = 3,
}

impl BlockKind {
    /// Bytes of one block.
    pub const fn bytes(self) -> usize {
        match self {
            BlockKind::Q8 => 2 + BLOCK,
            BlockKind::Q4 => 2 + BLOCK / 2,
            BlockKind::F16 => 2 * BLOCK,
        }
    }

    /// The largest weight magnitude the block can hold: its f16 scale (or value) tops out
    /// at 65,504.
    pub fn largest(self) -> f32 {
        let f16_max = half::f16::MAX.to_f32();
        match self {
            BlockKind::Q8 => f16_max * 127.0,
            BlockKind::Q4 => f16_max * 7.0,
            BlockKind::F16 => f16_max,
        }
    }

    pub(crate) const fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(BlockKind::Q8),
            2 => Some(BlockKind::Q4),
            3 => Some(BlockKind::F16),
            _ => None,
        }
    }
}

impl QuantScheme {
    /// The code stored in the catalog (`docs/format.md`).
    pub(crate) fn code(self) -> u8 {
        match self {
            QuantScheme::Q8 => 1,
            QuantScheme::Q4 => 2,
            QuantScheme::F16 => 3,
            QuantScheme::Mixed { .. } => 4,
        }
    }
}

/// Rows and columns of a shape; errors on an empty or overflowing shape.
pub fn rows_cols(shape: &[usize]) -> Result<(usize, usize)> {
    let (&cols, outer) = shape
        .split_last()
        .ok_or_else(|| Error::InvalidArgument("a tensor needs at least one dimension".into()))?;
    let rows = outer
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|r| r.checked_mul(cols).is_some_and(|n| n <= u32::MAX as usize))
        .ok_or_else(|| Error::InvalidArgument(format!("shape {shape:?} is too large")))?;
    if cols == 0 || rows == 0 {
        return Err(Error::InvalidArgument(format!(
            "shape {shape:?} has no weights"
        )));
    }
    Ok((rows, cols))
}

/// Blocks per row of `cols` weights.
pub fn blocks_per_row(cols: usize) -> usize {
    cols.div_ceil(BLOCK)
}

/// Encodes `data` (`rows × cols`, row-major) under `scheme`. `importance` (one score per
/// weight, finite) is required by [`QuantScheme::Mixed`] and ignored otherwise.
///
/// ```
/// use engram_core::quant::{quantize, Blocks, QuantScheme};
/// # fn main() -> engram_core::Result<()> {
/// let w: Vec<f32> = (0..64).map(|i| (i as f32 - 32.0) / 10.0).collect();
/// let bytes = quantize(&w, &[2, 32], QuantScheme::Q8, None)?;
/// assert_eq!(bytes.len(), 2 * 34); // two 34-byte blocks: 26.6 % of the f32 bytes
/// let blocks = Blocks::view(&bytes, &[2, 32], QuantScheme::Q8)?;
/// let mut y = [0f32; 2];
/// blocks.matvec(&[1.0; 32], &mut y)?; // row sums, straight from the blocks
/// assert!((y[0] - w[..32].iter().sum::<f32>()).abs() < 0.1);
/// # Ok(()) }
/// ```
pub fn quantize(
    data: &[f32],
    shape: &[usize],
    scheme: QuantScheme,
    importance: Option<&[f32]>,
) -> Result<Vec<u8>> {
    let (rows, cols) = rows_cols(shape)?;
    if data.len() != rows * cols {
        return Err(Error::InvalidArgument(format!(
            "shape {shape:?} needs {} weights, got {}",
            rows * cols,
            data.len()
        )));
    }
    Error::check_finite("weights", data)?;
    let bpr = blocks_per_row(cols);
    let nblocks = rows * bpr;
    let kinds: Vec<BlockKind> = match scheme {
        QuantScheme::Q8 => vec![BlockKind::Q8; nblocks],
        QuantScheme::Q4 => vec![BlockKind::Q4; nblocks],
        QuantScheme::F16 => vec![BlockKind::F16; nblocks],
        QuantScheme::Mixed { f16, q8 } => {
            let imp = importance.ok_or_else(|| {
                Error::InvalidArgument("the mixed scheme needs per-weight importance".into())
            })?;
            if imp.len() != data.len() {
                return Err(Error::InvalidArgument(format!(
                    "{} importance scores for {} weights",
                    imp.len(),
                    data.len()
                )));
            }
            Error::check_finite("importance", imp)?;
            if !(f16 >= 0.0 && q8 >= 0.0 && f16 + q8 <= 1.0) {
                return Err(Error::InvalidArgument(format!(
                    "mixed fractions f16 {f16} + q8 {q8} must lie in [0, 1]"
                )));
            }
            mixed_kinds(imp, rows, cols, f16, q8)
        }
    };
    let mut out = Vec::new();
    if matches!(scheme, QuantScheme::Mixed { .. }) {
        out.extend(kinds.iter().map(|&k| k as u8));
    }
    let mut block = [0f32; BLOCK];
    for r in 0..rows {
        let row = &data[r * cols..(r + 1) * cols];
        for b in 0..bpr {
            let part = &row[b * BLOCK..((b + 1) * BLOCK).min(cols)];
            block.fill(0.0);
            block[..part.len()].copy_from_slice(part);
            let kind = kinds[r * bpr + b];
            let max = block.iter().fold(0f32, |m, x| m.max(x.abs()));
            if max > kind.largest() {
                return Err(Error::InvalidArgument(format!(
                    "a weight of magnitude {max} in row {r} does not fit {kind:?} blocks (at most {})",
                    kind.largest()
                )));
            }
            encode_block(kind, &block, &mut out);
        }
    }
    Ok(out)
}

/// Block kinds by importance rank: ties broken by block index so the choice is stable.
fn mixed_kinds(imp: &[f32], rows: usize, cols: usize, f16: f32, q8: f32) -> Vec<BlockKind> {
    let bpr = blocks_per_row(cols);
    let score: Vec<f64> = (0..rows * bpr)
        .map(|i| {
            let (r, b) = (i / bpr, i % bpr);
            let part = &imp[r * cols + b * BLOCK..r * cols + ((b + 1) * BLOCK).min(cols)];
            part.iter().map(|&x| f64::from(x)).sum::<f64>() / part.len() as f64
        })
        .collect();
    let mut order: Vec<usize> = (0..score.len()).collect();
    order.sort_by(|&a, &b| score[b].total_cmp(&score[a]).then(a.cmp(&b)));
    let n = score.len() as f64;
    let (n16, n8) = (
        (n * f64::from(f16)).round() as usize,
        (n * f64::from(q8)).round() as usize,
    );
    let mut kinds = vec![BlockKind::Q4; score.len()];
    for (rank, &i) in order.iter().enumerate() {
        kinds[i] = if rank < n16 {
            BlockKind::F16
        } else if rank < n16 + n8 {
            BlockKind::Q8
        } else {
            BlockKind::Q4
        };
    }
    kinds
}

/// The smallest f16 scale `d` with `d · levels >= max` (so no weight rounds past the range).
fn scale_for(max: f32, levels: f32) -> half::f16 {
    let mut d = half::f16::from_f32(max / levels);
    while d.to_f32() * levels < max {
        d = half::f16::from_bits(d.to_bits() + 1);
    }
    d
}

fn encode_block(kind: BlockKind, w: &[f32; BLOCK], out: &mut Vec<u8>) {
    let max = w.iter().fold(0f32, |m, x| m.max(x.abs()));
    match kind {
        BlockKind::Q8 => {
            let d = scale_for(max, 127.0);
            out.extend_from_slice(&d.to_bits().to_le_bytes());
            let inv = if d.to_f32() > 0.0 {
                1.0 / d.to_f32()
            } else {
                0.0
            };
            out.extend(
                w.iter()
                    .map(|x| (x * inv).round().clamp(-127.0, 127.0) as i8 as u8),
            );
        }
        BlockKind::Q4 => {
            let d = scale_for(max, 7.0);
            out.extend_from_slice(&d.to_bits().to_le_bytes());
            let inv = if d.to_f32() > 0.0 {
                1.0 / d.to_f32()
            } else {
                0.0
            };
            let q = |x: f32| ((x * inv).round().clamp(-7.0, 7.0) as i32 + 8) as u8;
            out.extend((0..BLOCK / 2).map(|j| q(w[j]) | (q(w[j + BLOCK / 2]) << 4)));
        }
        BlockKind::F16 => {
            for x in w {
                out.extend_from_slice(&half::f16::from_f32(*x).to_bits().to_le_bytes());
            }
        }
    }
}

/// Encoded blocks of one tensor, borrowed (from a mapped page, or anywhere).
#[derive(Clone, Copy, Debug)]
pub struct Blocks<'a> {
    rows: usize,
    cols: usize,
    /// One kind for all blocks, or (mixed) the tag bytes.
    kinds: Kinds<'a>,
    data: &'a [u8],
    /// The whole encoding: for a mixed tensor, the tags and then `data`.
    encoded: &'a [u8],
}

#[derive(Clone, Copy, Debug)]
enum Kinds<'a> {
    Uniform(BlockKind),
    Tagged(&'a [u8]),
}

impl<'a> Blocks<'a> {
    /// Views the output of [`quantize`] for a `shape` tensor under `scheme`, checking sizes.
    pub fn view(bytes: &'a [u8], shape: &[usize], scheme: QuantScheme) -> Result<Self> {
        Self::parse(bytes, shape, scheme.code())
    }

    /// Views `bytes` as the encoding of a `shape` tensor under the scheme with `code`,
    /// checking that every size and tag adds up.
    pub(crate) fn parse(bytes: &'a [u8], shape: &[usize], code: u8) -> Result<Self> {
        let (rows, cols) = rows_cols(shape)?;
        let n = rows * blocks_per_row(cols);
        let bad = |why: String| Error::InvalidArgument(why);
        let (kinds, data) = match code {
            4 => {
                let (tags, data) = bytes
                    .split_at_checked(n)
                    .ok_or_else(|| bad("mixed tensor shorter than its tags".into()))?;
                let mut need = 0usize;
                for &t in tags {
                    need += BlockKind::from_code(t)
                        .ok_or_else(|| bad(format!("unknown block tag {t}")))?
                        .bytes();
                }
                if need != data.len() {
                    return Err(bad(format!(
                        "mixed blocks take {need} bytes, stored {}",
                        data.len()
                    )));
                }
                (Kinds::Tagged(tags), data)
            }
            c => {
                let kind =
                    BlockKind::from_code(c).ok_or_else(|| bad(format!("unknown scheme {c}")))?;
                if n * kind.bytes() != bytes.len() {
                    return Err(bad(format!(
                        "{n} blocks of {:?} take {} bytes, stored {}",
                        kind,
                        n * kind.bytes(),
                        bytes.len()
                    )));
                }
                (Kinds::Uniform(kind), bytes)
            }
        };
        Ok(Blocks {
            rows,
            cols,
            kinds,
            data,
            encoded: bytes,
        })
    }

    /// The encoding as [`quantize`] wrote it: what [`Blocks::view`] takes back.
    pub fn encoded(&self) -> &'a [u8] {
        self.encoded
    }

    /// The scheme the blocks are in; for a mixed tensor, the fractions its blocks hold.
    pub fn scheme(&self) -> QuantScheme {
        match self.kinds {
            Kinds::Uniform(BlockKind::Q8) => QuantScheme::Q8,
            Kinds::Uniform(BlockKind::Q4) => QuantScheme::Q4,
            Kinds::Uniform(BlockKind::F16) => QuantScheme::F16,
            Kinds::Tagged(tags) => {
                let share = |k: BlockKind| {
                    let n = tags.iter().filter(|&&t| t == k as u8).count();
                    n as f32 / tags.len().max(1) as f32
                };
                QuantScheme::Mixed {
                    f16: share(BlockKind::F16),
                    q8: share(BlockKind::Q8),
                }
            }
        }
    }

    /// Rows of the tensor.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Weights per row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Each block's kind, in row order (one kind throughout unless the scheme is mixed).
    pub fn kinds(&self) -> impl Iterator<Item = BlockKind> + '_ {
        self.each().map(|(kind, _)| kind)
    }

    /// Each block's kind and bytes, in row order.
    fn each(&self) -> impl Iterator<Item = (BlockKind, &'a [u8])> + '_ {
        let n = self.rows * blocks_per_row(self.cols);
        let mut at = 0;
        (0..n).map(move |i| {
            let kind = match self.kinds {
                Kinds::Uniform(k) => k,
                Kinds::Tagged(t) => BlockKind::from_code(t[i]).expect("tags checked at parse"),
            };
            let b = &self.data[at..at + kind.bytes()];
            at += kind.bytes();
            (kind, b)
        })
    }

    /// Writes the `rows × cols` weights to `out`.
    pub fn dequantize_into(&self, out: &mut [f32]) -> Result<()> {
        if out.len() != self.rows * self.cols {
            return Err(Error::InvalidArgument(format!(
                "output holds {} floats, tensor has {}",
                out.len(),
                self.rows * self.cols
            )));
        }
        let (bpr, k) = (blocks_per_row(self.cols), QuantKernel::best());
        let mut tmp = [0f32; BLOCK];
        for (i, (kind, b)) in self.each().enumerate() {
            let (r, c) = (i / bpr, (i % bpr) * BLOCK);
            let n = BLOCK.min(self.cols - c);
            let dst = &mut out[r * self.cols + c..r * self.cols + c + n];
            if n == BLOCK {
                k.dequantize(kind, b, dst.try_into().expect("32"));
            } else {
                k.dequantize(kind, b, &mut tmp);
                dst.copy_from_slice(&tmp[..n]);
            }
        }
        Ok(())
    }

    /// `y = W x` straight from the blocks (`x.len() == cols`, `y.len() == rows`); equals
    /// dequantizing then multiplying, to float rounding.
    pub fn matvec(&self, x: &[f32], y: &mut [f32]) -> Result<()> {
        self.matvec_with(QuantKernel::best(), x, y)
    }

    /// [`Blocks::matvec`] with a chosen kernel (tests and benchmarks compare them).
    pub fn matvec_with(&self, kernel: QuantKernel, x: &[f32], y: &mut [f32]) -> Result<()> {
        if x.len() != self.cols || y.len() != self.rows {
            return Err(Error::InvalidArgument(format!(
                "matvec of a {}x{} tensor with x of {} and y of {}",
                self.rows,
                self.cols,
                x.len(),
                y.len()
            )));
        }
        let bpr = blocks_per_row(self.cols);
        // A row whose last block is padded meets zeros in x there, whatever the block holds.
        let mut padded;
        let xp: &[f32] = if self.cols.is_multiple_of(BLOCK) {
            x
        } else {
            padded = vec![0f32; bpr * BLOCK];
            padded[..x.len()].copy_from_slice(x);
            &padded
        };
        match self.kinds {
            Kinds::Uniform(kind) => kernel.matvec(kind, self.data, bpr, xp, y),
            Kinds::Tagged(_) => {
                y.fill(0.0);
                for (i, (kind, b)) in self.each().enumerate() {
                    let c = (i % bpr) * BLOCK;
                    y[i / bpr] += kernel.row_dot(kind, b, &xp[c..c + BLOCK]);
                }
            }
        }
        Ok(())
    }
}

impl Blocks<'_> {
    /// `y ≈ W x` for Q8 blocks with `x` quantized to int8 ([`Int8Input`]): each block's
    /// 32 products are summed exactly in integers and scaled once by the weights' and x's
    /// scales. Differs from [`Blocks::matvec`] only by x's rounding (at most half a step of
    /// its block per value); `InvalidArgument` for other schemes or wrong lengths.
    pub fn matvec_int8(&self, x: &Int8Input, y: &mut [f32]) -> Result<()> {
        self.matvec_int8_with(Int8Kernel::best(), x, y)
    }

    /// [`Blocks::matvec_int8`] with a chosen kernel (one this CPU lacks runs the scalar one).
    pub fn matvec_int8_with(&self, kernel: Int8Kernel, x: &Int8Input, y: &mut [f32]) -> Result<()> {
        if !matches!(self.kinds, Kinds::Uniform(BlockKind::Q8)) {
            return Err(Error::InvalidArgument(
                "int8 activations multiply Q8 blocks only; use matvec".into(),
            ));
        }
        if x.len() != self.cols || y.len() != self.rows {
            return Err(Error::InvalidArgument(format!(
                "matvec of a {}x{} tensor with x of {} and y of {}",
                self.rows,
                self.cols,
                x.len(),
                y.len()
            )));
        }
        let bpr = blocks_per_row(self.cols);
        match kernel {
            #[cfg(target_arch = "x86_64")]
            k @ (Int8Kernel::Avx512Vnni | Int8Kernel::Avx2) if k.runs_here() => x86::matvec_int8(
                k == Int8Kernel::Avx512Vnni,
                self.data,
                bpr,
                &x.codes,
                &x.scales,
                y,
            ),
            _ => scalar::matvec_int8(self.data, bpr, &x.codes, &x.scales, y),
        }
        Ok(())
    }
}

/// Activations quantized for [`Blocks::matvec_int8`]: per block of [`BLOCK`] values an f32
/// scale `d = max|x| / 127` and int8 codes `round(x / d)` (Q8_0's rule, applied to x; ties
/// to even), the last block zero-padded. Each value is off by at most half its block's
/// step. Keep one and reuse it: [`Int8Input::quantize`] allocates only when a longer input
/// arrives.
#[derive(Clone, Debug, Default)]
pub struct Int8Input {
    codes: Vec<i8>,
    scales: Vec<f32>,
    len: usize,
}

impl Int8Input {
    /// An empty input.
    pub fn new() -> Self {
        Self::default()
    }

    /// Quantizes `x` (finite values; `Error::NonFinite` otherwise), replacing what this held.
    pub fn quantize(&mut self, x: &[f32]) -> Result<()> {
        let blocks = blocks_per_row(x.len());
        self.codes.clear();
        self.codes.resize(blocks * BLOCK, 0);
        self.scales.clear();
        self.scales.resize(blocks, 0.0);
        self.len = 0;
        #[cfg(target_arch = "x86_64")]
        let done = if x86::available() {
            let whole = x.len() / BLOCK * BLOCK;
            if !x86::quantize_blocks(&x[..whole], &mut self.codes, &mut self.scales) {
                Error::check_finite("activation", x)?;
            }
            whole
        } else {
            0
        };
        #[cfg(not(target_arch = "x86_64"))]
        let done = 0;
        Error::check_finite("activation", &x[done..])?;
        for ((xs, codes), d) in x[done..]
            .chunks(BLOCK)
            .zip(self.codes[done..].chunks_exact_mut(BLOCK))
            .zip(&mut self.scales[done / BLOCK..])
        {
            let max = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
            let inv = if max > 0.0 { 127.0 / max } else { 0.0 };
            for (c, &v) in codes.iter_mut().zip(xs) {
                // |v · inv| ≤ 127 by the choice of the scale; ties to even, as vcvtps2dq.
                *c = (v * inv).round_ties_even() as i8;
            }
            *d = max / 127.0;
        }
        self.len = x.len();
        Ok(())
    }

    /// Values quantized (before padding).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been quantized.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The values the codes stand for (`d · code`), for tests and error reports.
    pub fn dequantized(&self) -> Vec<f32> {
        self.codes
            .chunks_exact(BLOCK)
            .zip(&self.scales)
            .flat_map(|(c, &d)| c.iter().map(move |&q| d * f32::from(q)))
            .take(self.len)
            .collect()
    }
}

/// An implementation of [`Blocks::matvec_int8`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int8Kernel {
    /// Plain loops, integer dot per block: the reference.
    Scalar,
    /// AVX2: `vpmaddubsw` on |x| and the weights with x's signs, then `vpmaddwd`.
    Avx2,
    /// AVX-512 VNNI (`vpdpbusd`, 256-bit), eight rows at a time.
    Avx512Vnni,
}

impl Int8Kernel {
    /// The fastest kernel this CPU runs.
    pub fn best() -> Int8Kernel {
        [Int8Kernel::Avx512Vnni, Int8Kernel::Avx2]
            .into_iter()
            .find(|k| k.runs_here())
            .unwrap_or(Int8Kernel::Scalar)
    }

    /// Kernels this CPU runs.
    pub fn available() -> Vec<Int8Kernel> {
        [Int8Kernel::Scalar, Int8Kernel::Avx2, Int8Kernel::Avx512Vnni]
            .into_iter()
            .filter(|k| k.runs_here())
            .collect()
    }

    /// Whether this CPU runs the kernel (feature checks cached by the x86 module).
    fn runs_here(self) -> bool {
        match self {
            Int8Kernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Avx2 => x86::available(),
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Avx512Vnni => x86::has_vnni(),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }
}

/// An implementation of the block kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantKernel {
    /// Plain loops: the reference.
    Scalar,
    /// AVX2 + FMA + F16C.
    Avx2,
    /// wasm32 simd128 (f16 blocks convert in scalar code: simd128 has no f16).
    Simd128,
}

impl QuantKernel {
    /// The fastest kernel this CPU runs, chosen once.
    pub fn best() -> QuantKernel {
        static BEST: OnceLock<QuantKernel> = OnceLock::new();
        *BEST.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            if x86::available() {
                return QuantKernel::Avx2;
            }
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            return QuantKernel::Simd128;
            #[allow(unreachable_code)]
            QuantKernel::Scalar
        })
    }

    /// Kernels this CPU (and build) runs.
    pub fn available() -> Vec<QuantKernel> {
        let mut v = vec![QuantKernel::Scalar];
        if QuantKernel::best() != QuantKernel::Scalar {
            v.push(QuantKernel::best());
        }
        v
    }

    fn usable(self) -> QuantKernel {
        if self == QuantKernel::Scalar || self == QuantKernel::best() {
            self
        } else {
            QuantKernel::Scalar
        }
    }

    fn dequantize(self, kind: BlockKind, block: &[u8], out: &mut [f32; BLOCK]) {
        match self.usable() {
            #[cfg(target_arch = "x86_64")]
            QuantKernel::Avx2 => x86::dequantize(kind, block, out),
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            QuantKernel::Simd128 => wasm::dequantize(kind, block, out),
            _ => scalar::dequantize(kind, block, out),
        }
    }

    /// `y[r]` = row r of the `y.len()` rows of `bpr` blocks of `kind` in `blocks`, · `x`.
    fn matvec(self, kind: BlockKind, blocks: &[u8], bpr: usize, x: &[f32], y: &mut [f32]) {
        match self.usable() {
            #[cfg(target_arch = "x86_64")]
            QuantKernel::Avx2 => x86::matvec(kind, blocks, bpr, x, y),
            _ => {
                let row_bytes = bpr * kind.bytes();
                for (r, out) in y.iter_mut().enumerate() {
                    *out = self.row_dot(kind, &blocks[r * row_bytes..(r + 1) * row_bytes], x);
                }
            }
        }
    }

    /// Σ over the blocks in `blocks` (all of `kind`, consecutive along one row) of the
    /// block's weights · the matching 32 floats of `x`.
    fn row_dot(self, kind: BlockKind, blocks: &[u8], x: &[f32]) -> f32 {
        match self.usable() {
            #[cfg(target_arch = "x86_64")]
            QuantKernel::Avx2 => x86::row_dot(kind, blocks, x),
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            QuantKernel::Simd128 => wasm::row_dot(kind, blocks, x),
            _ => scalar::row_dot(kind, blocks, x),
        }
    }
}

#[cfg(test)]
mod tests;
