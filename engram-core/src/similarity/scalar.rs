//! The reference kernels: one row at a time, f64 accumulation.

use super::{Metric, Rows};

pub(super) fn scores(metric: Metric, query: &[f32], rows: Rows<'_>, out: &mut [f32]) {
    let q2: f64 = query.iter().map(|x| f64::from(*x) * f64::from(*x)).sum();
    for (i, o) in out.iter_mut().enumerate() {
        let r = rows.row(i);
        let (mut dot, mut r2, mut l2) = (0f64, 0f64, 0f64);
        for (a, b) in query.iter().zip(r) {
            let (a, b) = (f64::from(*a), f64::from(*b));
            dot += a * b;
            r2 += b * b;
            l2 += (a - b) * (a - b);
        }
        *o = match metric {
            Metric::Dot => dot as f32,
            Metric::L2 => -(l2 as f32),
            Metric::Cosine => {
                let d = (q2 * r2).sqrt();
                if d > 0.0 { (dot / d) as f32 } else { 0.0 }
            }
        };
    }
}
