//! Repeated int8-mirror searches on one thread over the report's search database.
use engram_core::{Engram, Filter, Options};

fn main() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/engram-bench/search-db");
    let db = Engram::open(&dir, Options::default()).unwrap();
    let snap = db.begin_read().unwrap();
    let q: Vec<f32> = snap.episode(5).unwrap().unwrap().embedding().to_vec();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    pool.install(|| snap.search_int8(&q, 10, &Filter::default(), 100).unwrap());
    let t = std::time::Instant::now();
    for _ in 0..50 {
        pool.install(|| snap.search_int8(&q, 10, &Filter::default(), 100).unwrap());
    }
    println!("{:.2} ms/query", t.elapsed().as_secs_f64() * 1e3 / 50.0);
}
