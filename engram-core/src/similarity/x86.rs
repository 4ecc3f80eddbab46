//! AVX2+FMA and AVX-512 kernels. Each pass takes four rows and loads each chunk of the query
//! once for all four, so the query stays in registers while rows stream from memory.

use std::arch::x86_64::*;

use super::{Metric, Rows, finish};

pub(super) fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

pub(super) fn has_avx512() -> bool {
    is_x86_feature_detected!("avx512f")
}

const DOT: u8 = 0;
const COS: u8 = 1;
const L2: u8 = 2;

/// Runs a 4-row kernel over all rows; a last partial group repeats its final row.
fn by_fours(
    metric: Metric,
    query: &[f32],
    rows: Rows<'_>,
    out: &mut [f32],
    kernel: impl Fn(&[f32], [&[f32]; 4]) -> [(f32, f32); 4],
) {
    let q2 = if metric == Metric::Cosine {
        kernel(query, [query; 4])[0].0
    } else {
        0.0
    };
    for (g, chunk) in out.chunks_mut(4).enumerate() {
        let base = g * 4;
        let last = rows.len() - 1;
        let r = [0, 1, 2, 3].map(|j| rows.row((base + j).min(last)));
        let sums = kernel(query, r);
        for (o, (a, r2)) in chunk.iter_mut().zip(sums) {
            *o = match metric {
                Metric::L2 => finish(metric, 0.0, 0.0, 0.0, a),
                _ => finish(metric, a, r2, q2, 0.0),
            };
        }
    }
}

pub(super) fn scores_avx2(metric: Metric, query: &[f32], rows: Rows<'_>, out: &mut [f32]) {
    assert!(has_avx2());
    // SAFETY (all three): AVX2 and FMA are present (asserted above); the kernels only read
    // `query` and the four row slices within their lengths.
    match metric {
        Metric::Dot => by_fours(metric, query, rows, out, |q, r| unsafe {
            rows4_avx2::<DOT>(q, r)
        }),
        Metric::Cosine => by_fours(metric, query, rows, out, |q, r| unsafe {
            rows4_avx2::<COS>(q, r)
        }),
        Metric::L2 => by_fours(metric, query, rows, out, |q, r| unsafe {
            rows4_avx2::<L2>(q, r)
        }),
    }
}

pub(super) fn scores_avx512(metric: Metric, query: &[f32], rows: Rows<'_>, out: &mut [f32]) {
    assert!(has_avx512());
    // SAFETY (all three): AVX-512F is present (asserted above); the kernels only read `query`
    // and the four row slices within their lengths (masked loads for the tail).
    match metric {
        Metric::Dot => by_fours(metric, query, rows, out, |q, r| unsafe {
            rows4_avx512::<DOT>(q, r)
        }),
        Metric::Cosine => by_fours(metric, query, rows, out, |q, r| unsafe {
            rows4_avx512::<COS>(q, r)
        }),
        Metric::L2 => by_fours(metric, query, rows, out, |q, r| unsafe {
            rows4_avx512::<L2>(q, r)
        }),
    }
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum256(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps::<1>(v);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
    _mm_cvtss_f32(s)
}

/// For each row: (dot or squared distance, squared norm of the row when M == COS).
///
/// # Safety
/// The CPU must support AVX2 and FMA; every row must be at least `q.len()` long.
#[target_feature(enable = "avx2,fma")]
unsafe fn rows4_avx2<const M: u8>(q: &[f32], r: [&[f32]; 4]) -> [(f32, f32); 4] {
    let n = q.len();
    debug_assert!(r.iter().all(|r| r.len() >= n));
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut acc2 = [_mm256_setzero_ps(); 4]; // row norms (cosine) or a second chain (dot, L2)
    let mut i = 0;
    // SAFETY: every load reads 8 floats at offset i with i + 8 <= n <= each slice's length.
    unsafe {
        if M == COS {
            while i + 8 <= n {
                let qv = _mm256_loadu_ps(q.as_ptr().add(i));
                for j in 0..4 {
                    let rv = _mm256_loadu_ps(r[j].as_ptr().add(i));
                    acc[j] = _mm256_fmadd_ps(qv, rv, acc[j]);
                    acc2[j] = _mm256_fmadd_ps(rv, rv, acc2[j]);
                }
                i += 8;
            }
        } else {
            // Two chunks per step: eight independent FMA chains hide the FMA latency.
            while i + 16 <= n {
                let qa = _mm256_loadu_ps(q.as_ptr().add(i));
                let qb = _mm256_loadu_ps(q.as_ptr().add(i + 8));
                for j in 0..4 {
                    let ra = _mm256_loadu_ps(r[j].as_ptr().add(i));
                    let rb = _mm256_loadu_ps(r[j].as_ptr().add(i + 8));
                    if M == L2 {
                        let da = _mm256_sub_ps(qa, ra);
                        let db = _mm256_sub_ps(qb, rb);
                        acc[j] = _mm256_fmadd_ps(da, da, acc[j]);
                        acc2[j] = _mm256_fmadd_ps(db, db, acc2[j]);
                    } else {
                        acc[j] = _mm256_fmadd_ps(qa, ra, acc[j]);
                        acc2[j] = _mm256_fmadd_ps(qb, rb, acc2[j]);
                    }
                }
                i += 16;
            }
            while i + 8 <= n {
                let qv = _mm256_loadu_ps(q.as_ptr().add(i));
                for j in 0..4 {
                    let rv = _mm256_loadu_ps(r[j].as_ptr().add(i));
                    if M == L2 {
                        let d = _mm256_sub_ps(qv, rv);
                        acc[j] = _mm256_fmadd_ps(d, d, acc[j]);
                    } else {
                        acc[j] = _mm256_fmadd_ps(qv, rv, acc[j]);
                    }
                }
                i += 8;
            }
        }
    }
    let mut out = [(0f32, 0f32); 4];
    for j in 0..4 {
        let (mut a, mut b) = if M == COS {
            (hsum256(acc[j]), hsum256(acc2[j]))
        } else {
            (hsum256(_mm256_add_ps(acc[j], acc2[j])), 0.0)
        };
        for k in i..n {
            let (x, y) = (q[k], r[j][k]);
            match M {
                L2 => a += (x - y) * (x - y),
                COS => {
                    a += x * y;
                    b += y * y;
                }
                _ => a += x * y,
            }
        }
        out[j] = (a, b);
    }
    out
}

/// AVX-512 version of [`rows4_avx2`]: 16 lanes, masked loads for the tail.
///
/// # Safety
/// The CPU must support AVX-512F; every row must be at least `q.len()` long.
#[target_feature(enable = "avx512f")]
unsafe fn rows4_avx512<const M: u8>(q: &[f32], r: [&[f32]; 4]) -> [(f32, f32); 4] {
    let n = q.len();
    debug_assert!(r.iter().all(|r| r.len() >= n));
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut acc2 = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY: full loads read 16 floats at i with i + 16 <= n; the masked tail load touches
    // only lanes below n - i, which are inside every slice.
    unsafe {
        let step = |i: usize, mask: __mmask16, acc: &mut [__m512; 4], acc2: &mut [__m512; 4]| {
            let qv = _mm512_maskz_loadu_ps(mask, q.as_ptr().add(i));
            for j in 0..4 {
                let rv = _mm512_maskz_loadu_ps(mask, r[j].as_ptr().add(i));
                match M {
                    L2 => {
                        let d = _mm512_sub_ps(qv, rv);
                        acc[j] = _mm512_fmadd_ps(d, d, acc[j]);
                    }
                    COS => {
                        acc[j] = _mm512_fmadd_ps(qv, rv, acc[j]);
                        acc2[j] = _mm512_fmadd_ps(rv, rv, acc2[j]);
                    }
                    _ => acc[j] = _mm512_fmadd_ps(qv, rv, acc[j]),
                }
            }
        };
        if M == COS {
            while i + 16 <= n {
                step(i, 0xFFFF, &mut acc, &mut acc2);
                i += 16;
            }
        } else {
            while i + 32 <= n {
                step(i, 0xFFFF, &mut acc, &mut acc2);
                // second chain: swap roles so the two chunks accumulate independently
                step(i + 16, 0xFFFF, &mut acc2, &mut acc);
                i += 32;
            }
            while i + 16 <= n {
                step(i, 0xFFFF, &mut acc, &mut acc2);
                i += 16;
            }
        }
        if i < n {
            let mask: __mmask16 = (1u32 << (n - i)) as u16 - 1;
            step(i, mask, &mut acc, &mut acc2);
        }
    }
    [0, 1, 2, 3].map(|j| {
        if M == COS {
            (_mm512_reduce_add_ps(acc[j]), _mm512_reduce_add_ps(acc2[j]))
        } else {
            (_mm512_reduce_add_ps(_mm512_add_ps(acc[j], acc2[j])), 0.0)
        }
    })
}
