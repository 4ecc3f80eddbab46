//! Passes over every node of a database whose files are not in the page cache: the ids
//! (`episode_ids`, the episode table alone) and every episode (`episodes()`, table and
//! slots). 2M episodes of 16-d by default, so the table (97.5 MB) is large next to what open
//! reads ahead of it (8 MiB). Each pass is timed on a fresh read-only handle (open included)
//! after the directory's files were dropped from the page cache.
//! `cargo run --release -p engram-bench --example cold_pass [episodes]`
use std::time::Instant;

use engram_bench::lookup::drop_from_page_cache;
use engram_core::{Engram, EpisodeInput, Options};

const DIM: usize = 16;
const BATCH: u64 = 100_000;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(2_000_000, |a| a.parse().expect("an episode count"));
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/engram-bench/cold-pass")
        .join(n.to_string());
    if !dir.exists() {
        let db = Engram::open(
            &dir,
            Options {
                dimension: Some(DIM),
                ..Options::default()
            },
        )
        .unwrap();
        for b in 0..n.div_ceil(BATCH) {
            let mut tx = db.begin_write().unwrap();
            for i in b * BATCH..((b + 1) * BATCH).min(n) {
                let v: Vec<f32> = (0..DIM as u64)
                    .map(|j| ((i * 31 + j) % 17) as f32 + 1.0)
                    .collect();
                let ep = EpisodeInput {
                    agent: b,
                    timestamp: i as i64,
                    embedding: &v,
                    payload: b"",
                    key: None,
                };
                tx.insert_episode(&ep).unwrap();
            }
            tx.commit().unwrap();
        }
    }
    let read_only = || Options {
        read_only: true,
        ..Options::default()
    };
    for run in 1..=3 {
        drop_from_page_cache(&dir).unwrap();
        let t = Instant::now();
        let db = Engram::open(&dir, read_only()).unwrap();
        let ids = db.begin_read().unwrap().episode_ids().unwrap().len();
        let ids_ms = t.elapsed().as_secs_f64() * 1e3;
        // A handle's maps keep their pages resident: close it before dropping them.
        drop(db);
        drop_from_page_cache(&dir).unwrap();
        let t = Instant::now();
        let db = Engram::open(&dir, read_only()).unwrap();
        let agent_3 = db
            .begin_read()
            .unwrap()
            .episodes()
            .filter(|e| e.as_ref().unwrap().agent() == 3)
            .count();
        let pass_ms = t.elapsed().as_secs_f64() * 1e3;
        drop(db);
        // Going down: the pass reversed, and what it replaces (the ids, then a read per id).
        drop_from_page_cache(&dir).unwrap();
        let t = Instant::now();
        let db = Engram::open(&dir, read_only()).unwrap();
        let snap = db.begin_read().unwrap();
        let down = snap
            .episodes()
            .rev()
            .filter(|e| e.as_ref().unwrap().agent() == 3)
            .count();
        let rev_ms = t.elapsed().as_secs_f64() * 1e3;
        drop((snap, db));
        drop_from_page_cache(&dir).unwrap();
        let t = Instant::now();
        let db = Engram::open(&dir, read_only()).unwrap();
        let snap = db.begin_read().unwrap();
        let by_id = snap.episode_ids().unwrap().into_iter().rev();
        let by_id = by_id
            .filter(|&id| snap.episode(id).unwrap().unwrap().agent() == 3)
            .count();
        let by_id_ms = t.elapsed().as_secs_f64() * 1e3;
        assert_eq!((down, by_id), (agent_3, agent_3));
        println!(
            "run {run}: episode_ids() of {ids}: {ids_ms:.0} ms; episodes() counting agent 3's {agent_3}: {pass_ms:.0} ms; reversed {rev_ms:.0} ms (episode_ids() reversed, then episode(id) each: {by_id_ms:.0} ms)"
        );
    }
}
