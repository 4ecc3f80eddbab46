//! 1,000-query batch search on one thread over the report's search database.
use engram_core::{Engram, Filter, Options};

fn main() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/engram-bench/search-db");
    let db = Engram::open(&dir, Options::default()).unwrap();
    let snap = db.begin_read().unwrap();
    let qs: Vec<Vec<f32>> = (0..1000)
        .map(|i| snap.episode(i * 97).unwrap().unwrap().embedding().to_vec())
        .collect();
    let refs: Vec<&[f32]> = qs.iter().map(|q| q.as_slice()).collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let first = pool.install(|| snap.search_batch(&refs, 10, &Filter::default()).unwrap());
    assert_eq!(first[3][0].id, 3 * 97, "a query finds itself first");
    let t = std::time::Instant::now();
    pool.install(|| snap.search_batch(&refs, 10, &Filter::default()).unwrap());
    println!("{:.0} q/s (1 thread)", 1000.0 / t.elapsed().as_secs_f64());
}
