//! Ingest loop alone, for profilers: `cargo run --release -p engram-bench --example ingest_profile`.
use engram_core::{Engram, EpisodeInput, Options};
use std::time::Instant;

fn main() {
    let dir = std::env::temp_dir().join("engram-ingest-profile");
    let _ = std::fs::remove_dir_all(&dir);
    let db = Engram::open(&dir, Options::default()).unwrap();
    let v: Vec<f32> = (0..768).map(|i| i as f32 / 768.0).collect();
    let n: i64 = std::env::args()
        .nth(1)
        .map_or(100_000, |a| a.parse().unwrap());
    let t = Instant::now();
    for start in (0..n).step_by(1_000) {
        let mut tx = db.begin_write().unwrap();
        for id in start..start + 1_000 {
            let payload = (id as u64).to_le_bytes();
            tx.insert_episode(&EpisodeInput {
                agent: 7,
                timestamp: id,
                embedding: &v,
                payload: &payload,
                key: None,
            })
            .unwrap();
        }
        tx.commit().unwrap();
        if (start + 1_000) % 100_000 == 0 {
            eprintln!(
                "{:>8} episodes: {:.0}/s so far",
                start + 1_000,
                (start + 1_000) as f64 / t.elapsed().as_secs_f64()
            );
        }
    }
    println!("{:.0} episodes/s", n as f64 / t.elapsed().as_secs_f64());
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}
