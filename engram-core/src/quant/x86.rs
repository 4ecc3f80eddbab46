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
    // SAFETY (all arms): the caller guarantees kind.bytes() readable bytes at p.
    unsafe {
        match kind {
            BlockKind::Q8 => [0, 8, 16, 24].map(|o| widen_i8(p.add(2 + o))),
            BlockKind::Q4 => {
                let (lo, hi) = q4_codes(p.add(2));
                let (a, b) = widen_lane(lo);
                let (c, d) = widen_lane(hi);
                [a, b, c, d]
            }
            BlockKind::F16 => {
                [0, 8, 16, 24].map(|o| _mm256_cvtph_ps(_mm_loadu_si128(p.add(2 * o).cast())))
            }
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
        for (i, v) in w.into_iter().enumerate() {
            _mm256_storeu_ps(out.add(8 * i), _mm256_mul_ps(d, v));
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn row_dot_avx2(kind: BlockKind, p: *const u8, n: usize, x: *const f32) -> f32 {
    let mut total = _mm256_setzero_ps();
    for b in 0..n {
        // SAFETY: block b lies at p + b·bytes, its floats at x + 32·b: both in range by the
        // caller's guarantee.
        unsafe {
            let blk = p.add(b * kind.bytes());
            let xs = x.add(b * BLOCK);
            let w = weights(kind, blk);
            let mut acc = _mm256_mul_ps(w[0], _mm256_loadu_ps(xs));
            acc = _mm256_fmadd_ps(w[1], _mm256_loadu_ps(xs.add(8)), acc);
            acc = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(xs.add(16)), acc);
            acc = _mm256_fmadd_ps(w[3], _mm256_loadu_ps(xs.add(24)), acc);
            total = match kind {
                BlockKind::F16 => _mm256_add_ps(total, acc),
                _ => _mm256_fmadd_ps(scale(blk), acc, total),
            };
        }
    }
    let s = _mm_add_ps(
        _mm256_castps256_ps128(total),
        _mm256_extractf128_ps(total, 1),
    );
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
}
