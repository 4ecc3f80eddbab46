//! Repeated single-query top-10 searches on one thread over the report's search database
//! (run the report first): `search_profile` for the f32 scan, `search_profile int8` for the
//! int8 mirror with 100 candidates rescored, `search_profile avx2` (or `scalar`, `avx512`,
//! `simsimd`) for the f32 scan with that kernel.
use engram_core::similarity::Kernel;
use engram_core::{Engram, Filter, Options};

fn main() {
    let arg = std::env::args().nth(1).unwrap_or_default();
    let int8 = arg == "int8";
    let kernel = Kernel::available()
        .into_iter()
        .find(|k| format!("{k:?}").eq_ignore_ascii_case(&arg))
        .unwrap_or(Kernel::best());
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/engram-bench/search-db");
    let db = Engram::open(&dir, Options::default()).unwrap();
    let snap = db.begin_read().unwrap();
    let q: Vec<f32> = snap.episode(5).unwrap().unwrap().embedding().to_vec();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let search = || match int8 {
        true => snap.search_int8(&q, 10, &Filter::default(), 100).unwrap(),
        false => snap
            .search_with(kernel, &q, 10, &Filter::default())
            .unwrap(),
    };
    pool.install(search);
    let t = std::time::Instant::now();
    for _ in 0..50 {
        pool.install(search);
    }
    println!("{:.2} ms/query", t.elapsed().as_secs_f64() * 1e3 / 50.0);
}
