//! The cost of taking a snapshot: `begin_read` on the writer's handle and on a read-only
//! handle of the same directory (which reads the `head` the writer publishes, to adopt the
//! newest commit). Median of 5 rounds of 100,000 calls, in ns per call.
//! `cargo run --release -p engram-bench --example begin_read`
use std::time::Instant;

use engram_core::{Engram, EpisodeInput, Options};

fn main() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/engram-bench/begin-read");
    let _ = std::fs::remove_dir_all(&dir);
    let opts = Options {
        dimension: Some(8),
        ..Options::default()
    };
    let writer = Engram::open(&dir, opts.clone()).unwrap();
    let mut tx = writer.begin_write().unwrap();
    let ep = EpisodeInput {
        agent: 0,
        timestamp: 0,
        embedding: &[1.0; 8],
        payload: b"",
        key: None,
    };
    tx.insert_episode(&ep).unwrap();
    tx.commit().unwrap();
    let reader = Engram::open(
        &dir,
        Options {
            read_only: true,
            ..opts
        },
    )
    .unwrap();
    for (name, db) in [("writer's handle", &writer), ("read-only handle", &reader)] {
        let mut rounds = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..100_000 {
                std::hint::black_box(db.begin_read().unwrap());
            }
            rounds.push(t.elapsed().as_nanos() as f64 / 100_000.0);
        }
        rounds.sort_by(f64::total_cmp);
        println!("begin_read, {name}: {:.0} ns", rounds[2]);
    }
}
