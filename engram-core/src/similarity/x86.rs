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
            *o = finish(metric, a, r2, q2);
        }
    }
}

/// Above this many bytes of rows, scores stream from memory and one row at a time wins (a
/// single sequential stream the prefetcher saturates); below it, rows sit in cache and four
/// rows per pass win by sharing query loads. Measured in docs/benchmarks.md.
const STREAMING_BYTES: usize = 1 << 20;

fn streaming(rows: &Rows<'_>) -> bool {
    rows.len() * rows.stride() * 4 > STREAMING_BYTES
}

/// Runs a one-row kernel over every row.
fn one_by_one(
    metric: Metric,
    query: &[f32],
    rows: Rows<'_>,
    out: &mut [f32],
    kernel: impl Fn(&[f32], &[f32]) -> (f32, f32),
) {
    let q2 = if metric == Metric::Cosine {
        kernel(query, query).0
    } else {
        0.0
    };
    for (i, o) in out.iter_mut().enumerate() {
        let (a, r2) = kernel(query, rows.row(i));
        *o = finish(metric, a, r2, q2);
    }
}

type Row1 = unsafe fn(&[f32], &[f32]) -> (f32, f32);
type Rows4 = unsafe fn(&[f32], [&[f32]; 4]) -> [(f32, f32); 4];

pub(super) fn scores_avx2(metric: Metric, query: &[f32], rows: Rows<'_>, out: &mut [f32]) {
    assert!(has_avx2());
    let (one, four): (Row1, Rows4) = match metric {
        Metric::Dot => (row1_avx2::<DOT>, rows4_avx2::<DOT>),
        Metric::Cosine => (row1_avx2::<COS>, rows4_avx2::<COS>),
        Metric::L2 => (row1_avx2::<L2>, rows4_avx2::<L2>),
    };
    // Fewer than four rows: the 4-row kernel would repeat a row; one at a time is exact work.
    if streaming(&rows) || rows.len() < 4 {
        // SAFETY: AVX2 and FMA are present (asserted above); `one` reads `q` and a row of at
        // least its length (`Rows` hands out `dim`-long rows, `dim == query.len()`).
        one_by_one(metric, query, rows, out, |q, r| unsafe { one(q, r) });
    } else {
        // SAFETY: as above, for the four rows `by_fours` passes.
        by_fours(metric, query, rows, out, |q, r| unsafe { four(q, r) });
    }
}

pub(super) fn scores_avx512(metric: Metric, query: &[f32], rows: Rows<'_>, out: &mut [f32]) {
    assert!(has_avx512());
    let one: Row1 = match metric {
        Metric::Dot => row1_avx512::<DOT>,
        Metric::Cosine => row1_avx512::<COS>,
        Metric::L2 => row1_avx512::<L2>,
    };
    // SAFETY: AVX-512F is present (asserted above); `one` reads `q` and a row of at least its
    // length (masked loads for the tail).
    one_by_one(metric, query, rows, out, |q, r| unsafe { one(q, r) });
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

/// One row, four independent accumulator chains (dot/L2), or two dot + two norm chains
/// (cosine): one sequential stream, which the hardware prefetcher keeps at full bandwidth.
///
/// # Safety
/// The CPU must support AVX2 and FMA; `r` must be at least `q.len()` long.
#[target_feature(enable = "avx2,fma")]
unsafe fn row1_avx2<const M: u8>(q: &[f32], r: &[f32]) -> (f32, f32) {
    let n = q.len();
    debug_assert!(r.len() >= n);
    let (qp, rp) = (q.as_ptr(), r.as_ptr());
    let z = _mm256_setzero_ps();
    let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
    let mut i = 0;
    // SAFETY: each load reads 8 floats at an offset below i + 32 <= n (or i + 8 <= n in the
    // second loop), inside both slices.
    unsafe {
        while i + 32 <= n {
            let (q0, q1) = (_mm256_loadu_ps(qp.add(i)), _mm256_loadu_ps(qp.add(i + 8)));
            let (q2, q3) = (
                _mm256_loadu_ps(qp.add(i + 16)),
                _mm256_loadu_ps(qp.add(i + 24)),
            );
            let (r0, r1) = (_mm256_loadu_ps(rp.add(i)), _mm256_loadu_ps(rp.add(i + 8)));
            let (r2, r3) = (
                _mm256_loadu_ps(rp.add(i + 16)),
                _mm256_loadu_ps(rp.add(i + 24)),
            );
            match M {
                L2 => {
                    let (d0, d1) = (_mm256_sub_ps(q0, r0), _mm256_sub_ps(q1, r1));
                    let (d2, d3) = (_mm256_sub_ps(q2, r2), _mm256_sub_ps(q3, r3));
                    a0 = _mm256_fmadd_ps(d0, d0, a0);
                    a1 = _mm256_fmadd_ps(d1, d1, a1);
                    a2 = _mm256_fmadd_ps(d2, d2, a2);
                    a3 = _mm256_fmadd_ps(d3, d3, a3);
                }
                COS => {
                    a0 = _mm256_fmadd_ps(q0, r0, a0);
                    a1 = _mm256_fmadd_ps(q1, r1, a1);
                    a0 = _mm256_fmadd_ps(q2, r2, a0);
                    a1 = _mm256_fmadd_ps(q3, r3, a1);
                    a2 = _mm256_fmadd_ps(r0, r0, a2);
                    a3 = _mm256_fmadd_ps(r1, r1, a3);
                    a2 = _mm256_fmadd_ps(r2, r2, a2);
                    a3 = _mm256_fmadd_ps(r3, r3, a3);
                }
                _ => {
                    a0 = _mm256_fmadd_ps(q0, r0, a0);
                    a1 = _mm256_fmadd_ps(q1, r1, a1);
                    a2 = _mm256_fmadd_ps(q2, r2, a2);
                    a3 = _mm256_fmadd_ps(q3, r3, a3);
                }
            }
            i += 32;
        }
        while i + 8 <= n {
            let (qv, rv) = (_mm256_loadu_ps(qp.add(i)), _mm256_loadu_ps(rp.add(i)));
            match M {
                L2 => {
                    let d = _mm256_sub_ps(qv, rv);
                    a0 = _mm256_fmadd_ps(d, d, a0);
                }
                COS => {
                    a0 = _mm256_fmadd_ps(qv, rv, a0);
                    a2 = _mm256_fmadd_ps(rv, rv, a2);
                }
                _ => a0 = _mm256_fmadd_ps(qv, rv, a0),
            }
            i += 8;
        }
    }
    let (mut a, mut b) = if M == COS {
        (
            hsum256(_mm256_add_ps(a0, a1)),
            hsum256(_mm256_add_ps(a2, a3)),
        )
    } else {
        (
            hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3))),
            0.0,
        )
    };
    for k in i..n {
        let (x, y) = (q[k], r[k]);
        match M {
            L2 => a += (x - y) * (x - y),
            COS => {
                a += x * y;
                b += y * y;
            }
            _ => a += x * y,
        }
    }
    (a, b)
}

/// AVX-512 version of [`row1_avx2`], with a masked tail.
///
/// # Safety
/// The CPU must support AVX-512F; `r` must be at least `q.len()` long.
#[target_feature(enable = "avx512f")]
unsafe fn row1_avx512<const M: u8>(q: &[f32], r: &[f32]) -> (f32, f32) {
    let n = q.len();
    debug_assert!(r.len() >= n);
    let (qp, rp) = (q.as_ptr(), r.as_ptr());
    let z = _mm512_setzero_ps();
    let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
    // A row that does not start on a cache line would split every 64-byte load across two
    // lines (1 in 2 rows of 3,104-byte slots, every row of a malloc'd matrix): its first
    // floats, up to the next line, go through one masked load, and the rest load whole lines.
    let head = ((64 - (rp as usize & 63)) & 63) / 4;
    let mut i = head.min(n);
    // SAFETY: the masked loads touch only lanes below `i` (at most n); full loads read 16
    // floats below i + 64 <= n (or i + 16 <= n); the tail's masked load only lanes below
    // n - i. All inside both slices.
    unsafe {
        if i > 0 {
            masked_step::<M>(((1u32 << i) - 1) as u16, qp, rp, &mut a0, &mut a2);
        }
        while i + 64 <= n {
            let (q0, q1) = (_mm512_loadu_ps(qp.add(i)), _mm512_loadu_ps(qp.add(i + 16)));
            let (q2, q3) = (
                _mm512_loadu_ps(qp.add(i + 32)),
                _mm512_loadu_ps(qp.add(i + 48)),
            );
            let (r0, r1) = (_mm512_loadu_ps(rp.add(i)), _mm512_loadu_ps(rp.add(i + 16)));
            let (r2, r3) = (
                _mm512_loadu_ps(rp.add(i + 32)),
                _mm512_loadu_ps(rp.add(i + 48)),
            );
            match M {
                L2 => {
                    let (d0, d1) = (_mm512_sub_ps(q0, r0), _mm512_sub_ps(q1, r1));
                    let (d2, d3) = (_mm512_sub_ps(q2, r2), _mm512_sub_ps(q3, r3));
                    a0 = _mm512_fmadd_ps(d0, d0, a0);
                    a1 = _mm512_fmadd_ps(d1, d1, a1);
                    a2 = _mm512_fmadd_ps(d2, d2, a2);
                    a3 = _mm512_fmadd_ps(d3, d3, a3);
                }
                COS => {
                    a0 = _mm512_fmadd_ps(q0, r0, a0);
                    a1 = _mm512_fmadd_ps(q1, r1, a1);
                    a0 = _mm512_fmadd_ps(q2, r2, a0);
                    a1 = _mm512_fmadd_ps(q3, r3, a1);
                    a2 = _mm512_fmadd_ps(r0, r0, a2);
                    a3 = _mm512_fmadd_ps(r1, r1, a3);
                    a2 = _mm512_fmadd_ps(r2, r2, a2);
                    a3 = _mm512_fmadd_ps(r3, r3, a3);
                }
                _ => {
                    a0 = _mm512_fmadd_ps(q0, r0, a0);
                    a1 = _mm512_fmadd_ps(q1, r1, a1);
                    a2 = _mm512_fmadd_ps(q2, r2, a2);
                    a3 = _mm512_fmadd_ps(q3, r3, a3);
                }
            }
            i += 64;
        }
        while i < n {
            let mask: __mmask16 = if i + 16 <= n {
                0xFFFF
            } else {
                ((1u32 << (n - i)) - 1) as u16
            };
            masked_step::<M>(mask, qp.add(i), rp.add(i), &mut a0, &mut a2);
            i += 16;
        }
    }
    if M == COS {
        (
            _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)),
            _mm512_reduce_add_ps(_mm512_add_ps(a2, a3)),
        )
    } else {
        (
            _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3))),
            0.0,
        )
    }
}

/// Accumulates the lanes of `mask` of one 16-float step of [`row1_avx512`] into `a0`
/// (and `a2`, the row's squares, for cosine).
///
/// # Safety
/// The CPU must support AVX-512F; the lanes of `mask` at `q` and `r` must be readable.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn masked_step<const M: u8>(
    mask: __mmask16,
    q: *const f32,
    r: *const f32,
    a0: &mut __m512,
    a2: &mut __m512,
) {
    // SAFETY: the caller vouches for the masked lanes; masked-off lanes are not read.
    let (qv, rv) = unsafe {
        (
            _mm512_maskz_loadu_ps(mask, q),
            _mm512_maskz_loadu_ps(mask, r),
        )
    };
    match M {
        L2 => {
            let d = _mm512_sub_ps(qv, rv);
            *a0 = _mm512_fmadd_ps(d, d, *a0);
        }
        COS => {
            *a0 = _mm512_fmadd_ps(qv, rv, *a0);
            *a2 = _mm512_fmadd_ps(rv, rv, *a2);
        }
        _ => *a0 = _mm512_fmadd_ps(qv, rv, *a0),
    }
}

/// Queries per block kept in L2 (64 × 3 KB at 768-d) while rows pass by four at a time.
const QUERY_BLOCK: usize = 64;

/// `out[q * n + i] = queries.row(q) · rows.row(i)` by 4×4 tiles: four rows stay in L1
/// while a block of queries streams from L2 against them. Edge tiles repeat their last query
/// or row and drop those sums.
pub(super) fn dots_avx512(queries: Rows<'_>, rows: Rows<'_>, out: &mut [f32]) {
    assert!(has_avx512());
    let (m, n) = (queries.len(), rows.len());
    assert!(m > 0 && n > 0 && out.len() == m * n && queries.dim() == rows.dim());
    for q0 in (0..m).step_by(QUERY_BLOCK) {
        let q_end = (q0 + QUERY_BLOCK).min(m);
        for r0 in (0..n).step_by(4) {
            let r = [0, 1, 2, 3].map(|j| rows.row((r0 + j).min(n - 1)));
            for t in (q0..q_end).step_by(4) {
                let q = [0, 1, 2, 3].map(|i| queries.row((t + i).min(m - 1)));
                let tile = Tile {
                    first: t * n + r0,
                    n,
                    queries: (m - t).min(4),
                    rows: (n - r0).min(4),
                };
                // SAFETY: AVX-512F is present (asserted above); the eight slices are rows of
                // `Rows` sets with the same `dim`; `tile` addresses sums of real queries and
                // rows only, so out[first + i * n + j] lies below m * n = out.len().
                unsafe { tile4x4(q, r, out, tile) };
            }
        }
    }
}

/// Where a 4×4 tile's sums go: `out[first + i * n + j]` for i < queries, j < rows.
struct Tile {
    first: usize,
    n: usize,
    queries: usize,
    rows: usize,
}

/// `q[i] · r[j]` for the tile's queries and rows into `out`, sixteen accumulator chains over
/// the whole length.
///
/// # Safety
/// The CPU must support AVX-512F; all eight slices must have the same length;
/// `tile.first + (tile.queries - 1) * tile.n + tile.rows <= out.len()`.
#[target_feature(enable = "avx512f")]
unsafe fn tile4x4(q: [&[f32]; 4], r: [&[f32]; 4], out: &mut [f32], tile: Tile) {
    let dim = q[0].len();
    debug_assert!(q.iter().chain(&r).all(|s| s.len() == dim));
    debug_assert!(tile.first + (tile.queries - 1) * tile.n + tile.rows <= out.len());
    let qp = q.map(|s| s.as_ptr());
    let rp = r.map(|s| s.as_ptr());
    let mut acc = [_mm512_setzero_ps(); 16];
    let mut rv = [_mm512_setzero_ps(); 4];
    let mut k = 0;
    // SAFETY: each masked load touches only lanes below dim - k, inside every slice; each
    // masked store writes tile.rows floats at first + i * n, inside `out` (the contract).
    unsafe {
        while k < dim {
            let mask: __mmask16 = if k + 16 <= dim {
                0xFFFF
            } else {
                ((1u32 << (dim - k)) - 1) as u16
            };
            for j in 0..4 {
                rv[j] = _mm512_maskz_loadu_ps(mask, rp[j].add(k));
            }
            for i in 0..4 {
                let qv = _mm512_maskz_loadu_ps(mask, qp[i].add(k));
                for j in 0..4 {
                    acc[4 * i + j] = _mm512_fmadd_ps(qv, rv[j], acc[4 * i + j]);
                }
            }
            k += 16;
        }
        // Lane 4i + j holds q[i] · r[j]: move lanes 4i.. to the bottom, store `rows` of them.
        let sums = reduce16(acc);
        let keep = ((1u32 << tile.rows) - 1) as __mmask16;
        let iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        for i in 0..tile.queries {
            let lanes = _mm512_add_epi32(iota, _mm512_set1_epi32(4 * i as i32));
            let row = _mm512_permutexvar_ps(lanes, sums);
            let at = out.as_mut_ptr().add(tile.first + i * tile.n);
            _mm512_mask_storeu_ps(at, keep, row);
        }
    }
}

/// Lane `i` of the result = the sum of the lanes of `v[i]`: a transposing tree (45
/// shuffles and adds for sixteen sums instead of sixteen separate reductions).
#[inline]
#[target_feature(enable = "avx512f")]
fn reduce16(v: [__m512; 16]) -> __m512 {
    // Per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3] for each pair (a, b).
    let mut s = [_mm512_setzero_ps(); 8];
    for p in 0..8 {
        let (a, b) = (v[2 * p], v[2 * p + 1]);
        s[p] = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    }
    // Per 128-bit lane: partial sums of four consecutive vectors, in order.
    let mut t = [_mm512_setzero_ps(); 4];
    for p in 0..4 {
        let (x, y) = (_mm512_castps_pd(s[2 * p]), _mm512_castps_pd(s[2 * p + 1]));
        t[p] = _mm512_add_ps(
            _mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
            _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)),
        );
    }
    // Fold the four 128-bit lanes: 0x88 takes lanes (0, 2) of each input, 0xDD (1, 3).
    let w0 = fold_lanes(t[0], t[1]);
    let w1 = fold_lanes(t[2], t[3]);
    fold_lanes(w0, w1)
}

/// `[x0+x1, x2+x3, y0+y1, y2+y3]` over 128-bit lanes.
#[inline]
#[target_feature(enable = "avx512f")]
fn fold_lanes(x: __m512, y: __m512) -> __m512 {
    _mm512_add_ps(
        _mm512_shuffle_f32x4::<0x88>(x, y),
        _mm512_shuffle_f32x4::<0xDD>(x, y),
    )
}
