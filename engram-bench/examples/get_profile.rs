//! Random episode gets alone, for profilers; run the report first so
//! `target/engram-bench/open-100000` exists.
use engram_core::{Engram, Options};
use engram_fixtures::Rng;

fn main() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/engram-bench/open-100000");
    let db = Engram::open(&dir, Options::default()).unwrap();
    let snap = db.begin_read().unwrap();
    let n = snap.episode_count();
    let mut rng = Rng::new(1);
    let mut sink = 0f32;
    let t = std::time::Instant::now();
    let iters = 3_000_000;
    for _ in 0..iters {
        let ep = snap.episode(rng.next_u64() % n).unwrap().unwrap();
        sink += ep
            .embedding()
            .chunks_exact(8)
            .fold([0f32; 8], |mut a, c| {
                a.iter_mut().zip(c).for_each(|(a, x)| *a += x);
                a
            })
            .iter()
            .sum::<f32>();
    }
    println!(
        "{:.0} ns/get (mean, embedding summed) {sink}",
        t.elapsed().as_nanos() as f64 / iters as f64
    );
}
