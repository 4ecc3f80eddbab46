//! AVX2 + FMA + F16C block kernels: weights widen to f32 eight at a time (i8 → i32 → f32,
//! or f16 → f32) and meet x in FMAs; each block's sum is scaled once.

use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::{BLOCK, BlockKind};

pub(super) fn available() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    })
}

pub(super) fn dequantize(kind: BlockKind, block: &[u8], out: &mut [f32; BLOCK]) {
    assert!(available() && block.len() >= kind.bytes());
    // SAFETY: the CPU has AVX2, FMA and F16C (asserted); the block holds kind.bytes() bytes
    // (asserted) and `out` 32 floats, which is all the loads and stores below touch.
    unsafe { dequantize_avx2(kind, block.as_ptr(), out.as_mut_ptr()) }
}

pub(super) fn row_dot(kind: BlockKind, blocks: &[u8], x: &[f32]) -> f32 {
    let n = blocks.len() / kind.bytes();
    assert!(available() && x.len() >= n * BLOCK);
    // SAFETY: CPU features asserted; reads n blocks of kind.bytes() (inside `blocks`) and
    // n × 32 floats of `x` (asserted).
    unsafe { row_dot_avx2(kind, blocks.as_ptr(), n, x.as_ptr()) }
}

/// Eight f32 weights from the 8 bytes (Q8) at `p`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn widen_i8(p: *const u8) -> __m256 {
    // SAFETY: the caller guarantees 8 readable bytes at p (unaligned load).
    unsafe { _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p.cast()))) }
}

/// The 32 Q4 codes at `p` (16 bytes) as two vectors of 16 signed bytes (q − 8): weights
/// 0..16 (low nibbles) and 16..32 (high nibbles).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn q4_codes(p: *const u8) -> (__m128i, __m128i) {
    // SAFETY: the caller guarantees 16 readable bytes at p (unaligned load).
    let v = unsafe { _mm_loadu_si128(p.cast()) };
    let mask = _mm_set1_epi8(0x0F);
    let eight = _mm_set1_epi8(8);
    let lo = _mm_sub_epi8(_mm_and_si128(v, mask), eight);
    let hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), mask), eight);
    (lo, hi)
}

#[inline]
#[target_feature(enable = "avx2")]
fn widen_lane(v: __m128i) -> (__m256, __m256) {
    (
        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)),
        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(v, 8))),
    )
}

#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn scale(p: *const u8) -> __m256 {
    // SAFETY: the caller guarantees 2 readable bytes at p.
    let bits = unsafe { p.cast::<u16>().read_unaligned() };
    _mm256_set1_ps(_mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(
        bits,
    )))))
}

/// The block's 32 weights, as four vectors of eight, unscaled for Q8/Q4 (scale separate).
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn weights(kind: BlockKind, p: *const u8) -> [__m256; 4] {
    // SAFETY (all arms): the caller guarantees kind.bytes() readable bytes at p. (No
    // closures here: a closure does not inherit the target features, and its calls to
    // these helpers would not inline.)
    unsafe {
        match kind {
            BlockKind::Q8 => [
                widen_i8(p.add(2)),
                widen_i8(p.add(10)),
                widen_i8(p.add(18)),
                widen_i8(p.add(26)),
            ],
            BlockKind::Q4 => {
                let (lo, hi) = q4_codes(p.add(2));
                let (a, b) = widen_lane(lo);
                let (c, d) = widen_lane(hi);
                [a, b, c, d]
            }
            BlockKind::F16 => [
                _mm256_cvtph_ps(_mm_loadu_si128(p.cast())),
                _mm256_cvtph_ps(_mm_loadu_si128(p.add(16).cast())),
                _mm256_cvtph_ps(_mm_loadu_si128(p.add(32).cast())),
                _mm256_cvtph_ps(_mm_loadu_si128(p.add(48).cast())),
            ],
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dequantize_avx2(kind: BlockKind, p: *const u8, out: *mut f32) {
    // SAFETY: the caller guarantees the block's bytes at p and 32 writable floats at out.
    unsafe {
        let w = weights(kind, p);
        let d = match kind {
            BlockKind::F16 => _mm256_set1_ps(1.0),
            _ => scale(p),
        };
        _mm256_storeu_ps(out, _mm256_mul_ps(d, w[0]));
        _mm256_storeu_ps(out.add(8), _mm256_mul_ps(d, w[1]));
        _mm256_storeu_ps(out.add(16), _mm256_mul_ps(d, w[2]));
        _mm256_storeu_ps(out.add(24), _mm256_mul_ps(d, w[3]));
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn row_dot_avx2(kind: BlockKind, p: *const u8, n: usize, x: *const f32) -> f32 {
    let mut sum = _mm256_setzero_ps();
    for b in 0..n {
        // SAFETY: block b lies at p + b·bytes, its floats at x + 32·b: both in range by the
        // caller's guarantee.
        unsafe {
            let blk = p.add(b * kind.bytes());
            let acc = block_dot(kind, blk, load_block(x.add(b * BLOCK)));
            sum = match kind {
                BlockKind::F16 => _mm256_add_ps(sum, acc),
                _ => _mm256_fmadd_ps(scale(blk), acc, sum),
            };
        }
    }
    hsum(sum)
}

/// The 32 floats at `xs` as four vectors.
#[inline]
#[target_feature(enable = "avx")]
unsafe fn load_block(xs: *const f32) -> [__m256; 4] {
    // SAFETY: the caller guarantees 32 readable floats at xs (unaligned loads).
    unsafe {
        [
            _mm256_loadu_ps(xs),
            _mm256_loadu_ps(xs.add(8)),
            _mm256_loadu_ps(xs.add(16)),
            _mm256_loadu_ps(xs.add(24)),
        ]
    }
}

/// The block's 32 (unscaled) weights times the 32 floats of `xs`, as eight partial sums;
/// a tree keeps the FMA chain two deep.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn block_dot(kind: BlockKind, blk: *const u8, xs: [__m256; 4]) -> __m256 {
    // SAFETY: the caller guarantees the block's bytes at blk.
    let w = unsafe { weights(kind, blk) };
    let lo = _mm256_fmadd_ps(w[1], xs[1], _mm256_mul_ps(w[0], xs[0]));
    let hi = _mm256_fmadd_ps(w[3], xs[3], _mm256_mul_ps(w[2], xs[2]));
    _mm256_add_ps(lo, hi)
}

#[inline]
#[target_feature(enable = "avx2")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
}

/// Four rows at a time: each block column's 32 floats of x are loaded once for the four
/// rows, and the four rows' scales convert together (a conversion and broadcast per block
/// would queue on the shuffle port that the i8 → i32 widening already keeps busy).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn matvec_avx2<const KIND: u8>(
    p: *const u8,
    rows: usize,
    bpr: usize,
    x: *const f32,
    y: *mut f32,
) {
    // One copy per block kind: the per-block `match` on the kind folds away.
    let kind = BlockKind::from_code(KIND).expect("a block kind");
    let (bytes, row_bytes) = (kind.bytes(), bpr * kind.bytes());
    let mut r = 0;
    while r + 4 <= rows {
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut scales = [1f32; 8];
        for b in 0..bpr {
            // SAFETY: rows r..r+4 and block b are in range (the caller's guarantee), as are
            // x's 32 floats of block b.
            unsafe {
                let xv = load_block(x.add(b * BLOCK));
                let blk = [0, 1, 2, 3].map(|i| p.add((r + i) * row_bytes + b * bytes));
                if kind != BlockKind::F16 {
                    let bits = [
                        blk[0].cast::<u16>().read_unaligned(),
                        blk[1].cast::<u16>().read_unaligned(),
                        blk[2].cast::<u16>().read_unaligned(),
                        blk[3].cast::<u16>().read_unaligned(),
                    ];
                    _mm_storeu_ps(
                        scales.as_mut_ptr(),
                        _mm_cvtph_ps(_mm_loadl_epi64(bits.as_ptr().cast())),
                    );
                }
                for i in 0..4 {
                    let d = block_dot(kind, blk[i], xv);
                    acc[i] = match kind {
                        BlockKind::F16 => _mm256_add_ps(acc[i], d),
                        _ => _mm256_fmadd_ps(_mm256_broadcast_ss(&scales[i]), d, acc[i]),
                    };
                }
            }
        }
        for (i, a) in acc.into_iter().enumerate() {
            // SAFETY: r + i < rows, the length of y (caller's guarantee).
            unsafe { *y.add(r + i) = hsum(a) };
        }
        r += 4;
    }
    for r in r..rows {
        // SAFETY: as above, for the last rows one at a time.
        unsafe { *y.add(r) = row_dot_avx2(kind, p.add(r * row_bytes), bpr, x) };
    }
}

/// `y[r] = row r · x` for `y.len()` rows of `bpr` blocks each, all of `kind`, packed in
/// `blocks`.
pub(super) fn matvec(kind: BlockKind, blocks: &[u8], bpr: usize, x: &[f32], y: &mut [f32]) {
    assert!(available() && blocks.len() >= y.len() * bpr * kind.bytes() && x.len() >= bpr * BLOCK);
    // SAFETY: CPU features and bounds asserted above: every row's blocks lie inside
    // `blocks`, each block's floats inside `x`, and y has one float per row.
    unsafe {
        let (p, rows, xp, yp) = (blocks.as_ptr(), y.len(), x.as_ptr(), y.as_mut_ptr());
        match kind {
            BlockKind::Q8 => matvec_avx2::<{ BlockKind::Q8 as u8 }>(p, rows, bpr, xp, yp),
            BlockKind::Q4 => matvec_avx2::<{ BlockKind::Q4 as u8 }>(p, rows, bpr, xp, yp),
            BlockKind::F16 => matvec_avx2::<{ BlockKind::F16 as u8 }>(p, rows, bpr, xp, yp),
        }
    }
}

/// Whether the CPU has AVX-512 VNNI with the BW and VL extensions (and AVX2, FMA, F16C).
pub(super) fn has_vnni() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        available()
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni")
    })
}

/// Eight rows' accumulators → one vector of their eight sums.
#[inline]
#[target_feature(enable = "avx2")]
fn reduce8(a: [__m256; 8]) -> __m256 {
    let u0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
    let u1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
    _mm256_add_ps(
        _mm256_permute2f128_ps(u0, u1, 0x20),
        _mm256_permute2f128_ps(u0, u1, 0x31),
    )
}

/// Eight f16 scales (the first two bytes of each block) as f32, times `dx`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn scales8(blk: &[*const u8; 8], dx: f32) -> [f32; 8] {
    // SAFETY: the caller guarantees two readable bytes at each pointer.
    let b = blk.map(|p| unsafe { p.cast::<i16>().read_unaligned() });
    let d = _mm256_cvtph_ps(_mm_set_epi16(
        b[7], b[6], b[5], b[4], b[3], b[2], b[1], b[0],
    ));
    let mut out = [0f32; 8];
    // SAFETY: `out` holds eight floats.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), _mm256_mul_ps(d, _mm256_set1_ps(dx))) };
    out
}

/// The integer dot of one Q8 block's codes with x's codes, as eight i32 lanes: `xa` = |x|,
/// the weights take x's signs (`vpsignb`), `vpmaddubsw` (no saturation: 2 · 127 · 127 <
/// 2^15) then `vpmaddwd` by ones.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn dot_avx2(blk: *const u8, xa: __m256i, xq: __m256i) -> __m256i {
    // SAFETY: the caller guarantees the block's 34 bytes at blk.
    let q = unsafe { _mm256_loadu_si256(blk.add(2).cast()) };
    let p16 = _mm256_maddubs_epi16(xa, _mm256_sign_epi8(q, xq));
    _mm256_madd_epi16(p16, _mm256_set1_epi16(1))
}

/// As [`dot_avx2`] with `vpdpbusd`: the weights negated under x's sign mask.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn dot_vnni(blk: *const u8, xa: __m256i, neg: __mmask32) -> __m256i {
    // SAFETY: the caller guarantees the block's 34 bytes at blk.
    let q = unsafe { _mm256_loadu_si256(blk.add(2).cast()) };
    let zero = _mm256_setzero_si256();
    _mm256_dpbusd_epi32(zero, xa, _mm256_mask_sub_epi8(q, neg, zero, q))
}

macro_rules! matvec_int8_body {
    ($p:expr, $rows:expr, $bpr:expr, $codes:expr, $scales:expr, $y:expr, $prep:ident, $dot:ident) => {{
        let row_bytes = $bpr * 34;
        let mut r = 0;
        while r < $rows {
            // Eight rows at a time (the last group repeats its last row: stores are clipped).
            let rows: [usize; 8] = std::array::from_fn(|i| (r + i).min($rows - 1));
            let mut acc = [_mm256_setzero_ps(); 8];
            for b in 0..$bpr {
                // SAFETY: block b of every row in `rows` and x's codes and scale of block b
                // are in range (the caller's guarantee).
                unsafe {
                    let (xa, sign) = $prep($codes.add(b * BLOCK));
                    let blk = rows.map(|row| $p.add(row * row_bytes + b * 34));
                    let s = scales8(&blk, *$scales.add(b));
                    for i in 0..8 {
                        let dot = _mm256_cvtepi32_ps($dot(blk[i], xa, sign));
                        acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(s[i]), dot, acc[i]);
                    }
                }
            }
            let mut sums = [0f32; 8];
            // SAFETY: `sums` holds eight floats.
            unsafe { _mm256_storeu_ps(sums.as_mut_ptr(), reduce8(acc)) };
            let n = ($rows - r).min(8);
            // SAFETY: rows r..r+n exist in y (the caller's guarantee).
            unsafe { std::ptr::copy_nonoverlapping(sums.as_ptr(), $y.add(r), n) };
            r += n;
        }
    }};
}

/// |x| and x's codes, for [`dot_avx2`].
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn prep_avx2(codes: *const i8) -> (__m256i, __m256i) {
    // SAFETY: the caller guarantees 32 readable codes.
    let xq = unsafe { _mm256_loadu_si256(codes.cast()) };
    (_mm256_abs_epi8(xq), xq)
}

/// |x| and the mask of x's negative codes, for [`dot_vnni`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn prep_vnni(codes: *const i8) -> (__m256i, __mmask32) {
    // SAFETY: the caller guarantees 32 readable codes.
    let xq = unsafe { _mm256_loadu_si256(codes.cast()) };
    (_mm256_abs_epi8(xq), _mm256_movepi8_mask(xq))
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn matvec_int8_avx2_impl(
    p: *const u8,
    rows: usize,
    bpr: usize,
    codes: *const i8,
    scales: *const f32,
    y: *mut f32,
) {
    matvec_int8_body!(p, rows, bpr, codes, scales, y, prep_avx2, dot_avx2)
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn matvec_int8_vnni_impl(
    p: *const u8,
    rows: usize,
    bpr: usize,
    codes: *const i8,
    scales: *const f32,
    y: *mut f32,
) {
    matvec_int8_body!(p, rows, bpr, codes, scales, y, prep_vnni, dot_vnni)
}

/// `y[r]` = Σ over row r's Q8 blocks of d_w · d_x · (integer dot), eight rows at a time,
/// with AVX-512 VNNI or (`vnni` false) AVX2.
pub(super) fn matvec_int8(
    vnni: bool,
    blocks: &[u8],
    bpr: usize,
    codes: &[i8],
    scales: &[f32],
    y: &mut [f32],
) {
    if y.is_empty() {
        return;
    }
    assert!(
        (if vnni { has_vnni() } else { available() })
            && blocks.len() >= y.len() * bpr * BlockKind::Q8.bytes()
            && codes.len() >= bpr * BLOCK
            && scales.len() >= bpr
    );
    let (p, rows, c, s, out) = (
        blocks.as_ptr(),
        y.len(),
        codes.as_ptr(),
        scales.as_ptr(),
        y.as_mut_ptr(),
    );
    // SAFETY: CPU features and bounds asserted: every row's bpr blocks lie in `blocks`, x has
    // bpr blocks of codes and scales, y one float per row.
    unsafe {
        match vnni {
            true => matvec_int8_vnni_impl(p, rows, bpr, c, s, out),
            false => matvec_int8_avx2_impl(p, rows, bpr, c, s, out),
        }
    }
}

/// Quantizes each block of 32 values of `x` (`x.len()` a multiple of 32) to int8 codes and
/// a scale max|x| / 127, rounding to nearest, ties to even (`vcvtps2dq` under the default
/// rounding mode), as [`super::Int8Input::quantize`]'s scalar loop does. Returns false,
/// writing nothing sensible, if some value is NaN or infinite.
pub(super) fn quantize_blocks(x: &[f32], codes: &mut [i8], scales: &mut [f32]) -> bool {
    let blocks = x.len() / BLOCK;
    assert!(
        available()
            && x.len() == blocks * BLOCK
            && codes.len() >= x.len()
            && scales.len() >= blocks
    );
    // SAFETY: AVX2 present; x holds `blocks` blocks, codes and scales room for them (asserted).
    unsafe { quantize_avx2(x.as_ptr(), blocks, codes.as_mut_ptr(), scales.as_mut_ptr()) }
}

#[target_feature(enable = "avx2")]
unsafe fn quantize_avx2(x: *const f32, blocks: usize, codes: *mut i8, scales: *mut f32) -> bool {
    let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let mut finite = _mm256_set1_ps(0.0);
    for b in 0..blocks {
        // SAFETY: block b's 32 floats and 32 codes and its scale are in range (the caller's).
        unsafe {
            let v = load_block(x.add(b * BLOCK));
            let a = v.map(|v| _mm256_and_ps(v, abs_mask));
            let m = _mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3]));
            // NaN and ±∞ fail `< ∞`; the mask stays all ones only while every value passes.
            let ok = a.map(|a| _mm256_cmp_ps::<_CMP_LT_OQ>(a, _mm256_set1_ps(f32::INFINITY)));
            finite = _mm256_or_ps(
                finite,
                _mm256_xor_ps(
                    _mm256_and_ps(_mm256_and_ps(ok[0], ok[1]), _mm256_and_ps(ok[2], ok[3])),
                    _mm256_castsi256_ps(_mm256_set1_epi32(-1)),
                ),
            );
            let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
            let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
            let max = _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)));
            let inv = _mm256_set1_ps(if max > 0.0 { 127.0 / max } else { 0.0 });
            let q = v.map(|v| _mm256_cvtps_epi32(_mm256_mul_ps(v, inv)));
            // i32 → i16 → i8 packs interleave the 128-bit lanes; one permute restores order.
            let p = _mm256_packs_epi16(
                _mm256_packs_epi32(q[0], q[1]),
                _mm256_packs_epi32(q[2], q[3]),
            );
            let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256(codes.add(b * BLOCK).cast(), p);
            *scales.add(b) = max / 127.0;
        }
    }
    _mm256_movemask_ps(finite) == 0
}
