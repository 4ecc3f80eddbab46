//! One spherical k-means run on one thread, as the report's "blobs k=100" case:
//! `cluster_profile [SEED]` (the report uses seed 1234).
use engram_core::cluster::{self, Count, Params, Points};

fn main() {
    let seed = std::env::args().nth(1).map_or(1234, |s| s.parse().unwrap());
    let (blobs, _) = engram_fixtures::clustered(100_000, 100, 768, 1.0, 7);
    let points = Points::dense(&blobs.data, 768).unwrap();
    let params = Params {
        count: Count::K(100),
        min_size: 1,
        max_iterations: 20,
        seed,
        max_points_per_cluster: None,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
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
