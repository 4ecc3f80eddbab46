//! Concept lookups alone, for profilers: `concept_profile [cached|mapped] [zipf|uniform]`.
//! Builds 100,000 concepts under target/engram-bench/concepts-profile on first use.
use engram_bench::lookup;
use engram_fixtures::{Access, id_stream, read_npy_f32, real_sample_dir};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).map_or("cached", String::as_str);
    let access = match args.get(2).map(String::as_str) {
        Some("uniform") => Access::Uniform,
        _ => Access::Zipf,
    };
    let n = 100_000;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/engram-bench/concepts-profile");
    if !dir.exists() {
        let real = read_npy_f32(&real_sample_dir().join("vectors.npy")).unwrap();
        lookup::build_concepts(&dir, n, &real).unwrap();
    }
    let db = lookup::open(&dir, if path == "cached" { n } else { 0 }).unwrap();
    let snap = db.begin_read().unwrap();
    let ids = id_stream(n, 1 << 20, access, 3);
    let f = |id| match path {
        "cached" => lookup::cached(&snap, id),
        _ => lookup::mapped(&snap, id),
    };
    let mut sink: f32 = ids.iter().map(|&id| f(id)).sum();
    let t = std::time::Instant::now();
    for _ in 0..4 {
        sink += ids.iter().map(|&id| f(id)).sum::<f32>();
    }
    println!(
        "{path} {access:?}: {:.0} ns/lookup (mean) {sink}",
        t.elapsed().as_nanos() as f64 / (4 * ids.len()) as f64
    );
}
