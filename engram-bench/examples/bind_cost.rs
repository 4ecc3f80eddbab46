//! Cost of `bind` alone: each round inserts 1,000 episodes (untimed), binds each to one of
//! 1,000 committed concepts (timed) and commits (untimed), as an ingest that binds does.
//! `cargo run --release -p engram-bench --example bind_cost [rounds]`
use engram_core::{ConceptInput, Engram, EpisodeInput, Options};
use std::time::Instant;

fn main() {
    let rounds: usize = std::env::args().nth(1).map_or(200, |a| a.parse().unwrap());
    let dir = std::env::temp_dir().join("engram-bind-cost");
    let _ = std::fs::remove_dir_all(&dir);
    let db = Engram::open(&dir, Options::default()).unwrap();
    let v: Vec<f32> = (0..768).map(|i| i as f32 / 768.0).collect();
    let mut tx = db.begin_write().unwrap();
    for c in 0..1000 {
        tx.insert_concept(&ConceptInput {
            centroid: &v,
            label: &format!("c{c}"),
        })
        .unwrap();
    }
    tx.commit().unwrap();
    let mut per_bind = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let mut tx = db.begin_write().unwrap();
        let ids: Vec<u64> = (0..1000)
            .map(|i| {
                tx.insert_episode(&EpisodeInput {
                    agent: 7,
                    timestamp: i,
                    embedding: &v,
                    payload: b"p",
                    key: None,
                })
                .unwrap()
            })
            .collect();
        let s = Instant::now();
        for (i, &e) in ids.iter().enumerate() {
            tx.bind(e, i as u64, 0.8).unwrap();
        }
        per_bind.push(s.elapsed().as_nanos() as f64 / ids.len() as f64);
        tx.commit().unwrap();
    }
    per_bind.sort_by(f64::total_cmp);
    println!(
        "bind: {:.1} ns (median of {rounds} rounds of 1,000; p10 {:.1}, p90 {:.1})",
        per_bind[rounds / 2],
        per_bind[rounds / 10],
        per_bind[rounds * 9 / 10]
    );
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}
