//! Concept search on 100,000 concepts (768-d, one in ten updated, so their newest versions
//! lie at the end of the file): the first `search_concepts` of a fresh read-only handle after
//! the files left the page cache (open included), then the same search warm (mean of 10).
//! Medians of 5, ms. `cargo run --release -p engram-bench --example cold_concepts`
use std::time::Instant;

use engram_bench::lookup::drop_from_page_cache;
use engram_core::{ConceptInput, Engram, Options};

fn main() {
    let dir = &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/engram-bench/cold-concepts");
    if !dir.exists() {
        let db = Engram::open(dir, Options::default()).unwrap();
        let mut tx = db.begin_write().unwrap();
        for i in 0..100_000u64 {
            let v: Vec<f32> = (0..768u64)
                .map(|j| ((i * 31 + j * 7) % 101) as f32 / 101.0 - 0.5)
                .collect();
            tx.insert_concept(&ConceptInput {
                centroid: &v,
                label: "c",
            })
            .unwrap();
        }
        tx.commit().unwrap();
        // Update every 10th: their newest versions sit at the end of the file.
        let mut tx = db.begin_write().unwrap();
        for i in (0..100_000u64).step_by(10) {
            let v: Vec<f32> = (0..768u64)
                .map(|j| ((i * 37 + j * 3) % 89) as f32 / 89.0 - 0.5)
                .collect();
            tx.update_concept(i, &v, None).unwrap();
        }
        tx.commit().unwrap();
    }
    let q: Vec<f32> = (0..768).map(|j| (j % 13) as f32 - 6.0).collect();
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        drop_from_page_cache(dir).unwrap();
        let t = Instant::now();
        let db = Engram::open(
            dir,
            Options {
                read_only: true,
                ..Default::default()
            },
        )
        .unwrap();
        let s = db.begin_read().unwrap();
        s.search_concepts(&q, 10).unwrap();
        cold.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        for _ in 0..10 {
            s.search_concepts(&q, 10).unwrap();
        }
        warm.push(t.elapsed().as_secs_f64() * 1e2);
    }
    cold.sort_by(f64::total_cmp);
    warm.sort_by(f64::total_cmp);
    println!(
        "100k concepts (10k updated): cold first search_concepts {:.0} ms; warm {:.2} ms",
        cold[2], warm[2]
    );
}
