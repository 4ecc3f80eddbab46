//! wasm32 simd128 kernels: four rows per pass, 4 lanes (simd128 has no fused multiply-add).

use core::arch::wasm32::*;

use super::{Metric, Rows, finish};

pub(super) fn scores(metric: Metric, query: &[f32], rows: Rows<'_>, out: &mut [f32]) {
    let q2 = if metric == Metric::Cosine {
        rows4(metric, query, [query; 4])[0].0
    } else {
        0.0
    };
    let last = rows.len().saturating_sub(1); // unused when there are no rows
    for (g, chunk) in out.chunks_mut(4).enumerate() {
        let r = [0, 1, 2, 3].map(|j| rows.row((g * 4 + j).min(last)));
        for (o, (a, r2)) in chunk.iter_mut().zip(rows4(metric, query, r)) {
            *o = finish(metric, a, r2, q2);
        }
    }
}

fn hsum(v: v128) -> f32 {
    f32x4_extract_lane::<0>(v)
        + f32x4_extract_lane::<1>(v)
        + f32x4_extract_lane::<2>(v)
        + f32x4_extract_lane::<3>(v)
}

fn rows4(metric: Metric, q: &[f32], r: [&[f32]; 4]) -> [(f32, f32); 4] {
    let n = q.len();
    let mut acc = [f32x4_splat(0.0); 4];
    let mut nrm = [f32x4_splat(0.0); 4];
    let mut i = 0;
    while i + 4 <= n {
        // SAFETY: reads 4 floats at offset i, i + 4 <= n <= every slice's length; v128_load
        // has no alignment requirement.
        let qv = unsafe { v128_load(q.as_ptr().add(i).cast()) };
        for j in 0..4 {
            // SAFETY: as above, for row j.
            let rv = unsafe { v128_load(r[j].as_ptr().add(i).cast()) };
            match metric {
                Metric::L2 => {
                    let d = f32x4_sub(qv, rv);
                    acc[j] = f32x4_add(acc[j], f32x4_mul(d, d));
                }
                Metric::Cosine => {
                    acc[j] = f32x4_add(acc[j], f32x4_mul(qv, rv));
                    nrm[j] = f32x4_add(nrm[j], f32x4_mul(rv, rv));
                }
                Metric::Dot => acc[j] = f32x4_add(acc[j], f32x4_mul(qv, rv)),
            }
        }
        i += 4;
    }
    [0, 1, 2, 3].map(|j| {
        let (mut a, mut b) = (hsum(acc[j]), hsum(nrm[j]));
        for k in i..n {
            let (x, y) = (q[k], r[j][k]);
            match metric {
                Metric::L2 => a += (x - y) * (x - y),
                _ => {
                    a += x * y;
                    b += y * y;
                }
            }
        }
        (a, b)
    })
}
