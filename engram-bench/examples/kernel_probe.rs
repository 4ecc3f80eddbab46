//! ns/pair of each kernel, dot and cosine, 768-d, 1k rows (cached) and 200k rows (memory).
use engram_core::Metric;
use engram_core::similarity::{Kernel, Rows};

fn main() {
    let dim = 768;
    let mut rng = engram_fixtures::Rng::new(1);
    let big: Vec<f32> = (0..200_000 * dim).map(|_| rng.uniform() as f32).collect();
    let q: Vec<f32> = (0..dim).map(|_| rng.uniform() as f32).collect();
    for metric in [Metric::Dot, Metric::Cosine] {
        for k in Kernel::available()
            .into_iter()
            .filter(|k| *k != Kernel::Scalar)
        {
            for n in [1_000usize, 200_000] {
                let rows = Rows::dense(&big[..n * dim], dim);
                let mut out = vec![0f32; n];
                let reps = (2_000_000 / n).max(3);
                k.scores(metric, &q, rows, &mut out).unwrap();
                let t = std::time::Instant::now();
                for _ in 0..reps {
                    k.scores(metric, &q, rows, &mut out).unwrap();
                }
                let ns = t.elapsed().as_nanos() as f64 / (reps * n) as f64;
                println!("{metric:?} {k:?} {n}: {ns:.1} ns/pair");
            }
        }
    }
}
