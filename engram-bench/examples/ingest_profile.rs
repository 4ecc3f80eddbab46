//! Ingest loop alone, for profilers:
//! `cargo run --release -p engram-bench --example ingest_profile [N] [dual]`; with `dual`,
//! N/100 concepts are stored first and every episode is bound to one.
use engram_core::{ConceptInput, Engram, EpisodeInput, Options};
use std::time::Instant;

fn main() {
    let dir = std::env::temp_dir().join("engram-ingest-profile");
    let _ = std::fs::remove_dir_all(&dir);
    let db = Engram::open(&dir, Options::default()).unwrap();
    let v: Vec<f32> = (0..768).map(|i| i as f32 / 768.0).collect();
    let n: i64 = std::env::args()
        .nth(1)
        .map_or(100_000, |a| a.parse().unwrap());
    let concepts = match std::env::args().nth(2).as_deref() {
        Some("dual") => (n / 100).max(1),
        _ => 0,
    };
    let t = Instant::now();
    if concepts > 0 {
        let mut tx = db.begin_write().unwrap();
        for c in 0..concepts {
            let label = format!("concept-{c}");
            tx.insert_concept(&ConceptInput {
                centroid: &v,
                label: &label,
            })
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let mut in_commit = std::time::Duration::ZERO;
    for start in (0..n).step_by(1_000) {
        let mut tx = db.begin_write().unwrap();
        for id in start..start + 1_000 {
            let payload = (id as u64).to_le_bytes();
            let e = tx
                .insert_episode(&EpisodeInput {
                    agent: 7,
                    timestamp: id,
                    embedding: &v,
                    payload: &payload,
                    key: None,
                })
                .unwrap();
            if concepts > 0 {
                tx.bind(e, (id % concepts) as u64, 0.8).unwrap();
            }
        }
        let c = Instant::now();
        tx.commit().unwrap();
        in_commit += c.elapsed();
        if (start + 1_000) % 100_000 == 0 {
            eprintln!(
                "{:>8} episodes: {:.0}/s so far",
                start + 1_000,
                (start + 1_000) as f64 / t.elapsed().as_secs_f64()
            );
        }
    }
    let total = t.elapsed().as_secs_f64();
    let commit = in_commit.as_secs_f64();
    println!(
        "{:.0} episodes/s: {:.2} us each building the transaction, {:.2} us committing",
        n as f64 / total,
        (total - commit) / n as f64 * 1e6,
        commit / n as f64 * 1e6
    );
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}
