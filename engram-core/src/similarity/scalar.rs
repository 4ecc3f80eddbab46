//! The reference kernels: one row at a time, f64 accumulation, only the sums the metric needs.

use super::{Metric, Rows};

fn sum(a: &[f32], b: &[f32], f: impl Fn(f64, f64) -> f64) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f(f64::from(*x), f64::from(*y)))
        .sum()
}

pub(super) fn scores(metric: Metric, query: &[f32], rows: Rows<'_>, out: &mut [f32]) {
    let q2 = sum(query, query, |x, _| x * x);
    for (i, o) in out.iter_mut().enumerate() {
        let r = rows.row(i);
        *o = match metric {
            Metric::Dot => sum(query, r, |x, y| x * y) as f32,
            Metric::L2 => -(sum(query, r, |x, y| (x - y) * (x - y)) as f32),
            Metric::Cosine => {
                let d = (q2 * sum(r, r, |x, _| x * x)).sqrt();
                if d > 0.0 {
                    (sum(query, r, |x, y| x * y) / d) as f32
                } else {
                    0.0
                }
            }
        };
    }
}
