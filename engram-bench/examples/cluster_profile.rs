//! One spherical k-means run as the report's "blobs k=100" cases:
//! `cluster_profile [SEED [THREADS [POINTS_PER_CENTROID]]]` (the report uses seed 1234; one
//! thread and every point by default).
use engram_core::cluster::{self, Count, Params, Points};

fn main() {
    let arg = |i: usize| std::env::args().nth(i).map(|s| s.parse::<u64>().unwrap());
    let seed = arg(1).unwrap_or(1234);
    let threads = arg(2).unwrap_or(1) as usize;
    let (blobs, _) = engram_fixtures::clustered(100_000, 100, 768, 1.0, 7);
    let points = Points::dense(&blobs.data, 768).unwrap();
    let params = Params {
        count: Count::K(100),
        min_size: 1,
        max_iterations: 20,
        seed,
        max_points_per_cluster: arg(3).map(|n| n as usize),
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let t = std::time::Instant::now();
    let c = pool
        .install(|| cluster::cluster(&points, &params, None))
        .unwrap();
    println!(
        "{:.3} s, {} iterations",
        t.elapsed().as_secs_f64(),
        c.iterations
    );
}
