//! How long concept formation and consolidation keep a writer waiting. Loads `n` clustered
//! episodes (768-d, 100 clusters) and runs `Engram::form_concepts` (k = 100); then loads
//! `n / 2` more from the same clusters and runs `Engram::consolidate`. Each runs while a
//! writer thread records one event per `insert_episodes` call. Prints each one's time beside
//! the writer's call latencies during it and before it (the baseline: the same writer, with
//! neither running). One that holds the writer throughout shows a longest call as long as
//! itself. `cargo run --release -p engram-bench --example formation_stall [n] [runs]`
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use engram_core::cluster::{Count, Params};
use engram_core::{ConsolidationParams, Engram, EpisodeInput, Filter, FormationParams, Options};

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3
}

fn load(db: &Engram, rows: &[f32]) {
    for chunk in rows.chunks(768 * 1000) {
        let mut tx = db.begin_write().unwrap();
        for row in chunk.chunks_exact(768) {
            let input = EpisodeInput {
                agent: 1,
                timestamp: 0,
                embedding: row,
                payload: b"an event's payload",
                key: None,
            };
            tx.insert_episode(&input).unwrap();
        }
        tx.commit().unwrap();
    }
}

/// Runs `work` after half a second of a writer thread recording events, and prints its time
/// and the writer's call latencies during it and before it.
fn beside_writer(db: &Engram, what: &str, run: usize, work: impl FnOnce()) {
    let (stop, working) = (AtomicBool::new(false), AtomicBool::new(false));
    let (took, during, before) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let (mut during, mut before) = (Vec::new(), Vec::new());
            let mut v = vec![0.5f32; 768];
            while !stop.load(Ordering::Acquire) {
                v[0] += 1.0;
                let input = EpisodeInput {
                    agent: 2,
                    timestamp: 0,
                    embedding: &v,
                    payload: b"x",
                    key: None,
                };
                let ran = working.load(Ordering::Acquire);
                let t = Instant::now();
                db.insert_episodes(&[input]).unwrap();
                let took = t.elapsed();
                match ran || working.load(Ordering::Acquire) {
                    true => during.push(took),
                    false => before.push(took),
                }
            }
            (during, before)
        });
        std::thread::sleep(Duration::from_millis(500));
        working.store(true, Ordering::Release);
        let t = Instant::now();
        work();
        let took = t.elapsed();
        working.store(false, Ordering::Release);
        stop.store(true, Ordering::Release);
        let (mut during, mut before) = writer.join().unwrap();
        during.sort();
        before.sort();
        (took, during, before)
    });
    println!(
        "{:>3}  {what:<12} {:>8.0}   {:>12}   {:>7.2} / {:.2} / {:.1}   {:>10.2} / {:.2} / {:.1}",
        run + 1,
        took.as_secs_f64() * 1e3,
        during.len(),
        pct(&during, 0.5),
        pct(&during, 0.99),
        pct(&during, 1.0),
        pct(&before, 0.5),
        pct(&before, 0.99),
        pct(&before, 1.0),
    );
}

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().expect("a number"));
    let n = args.next().unwrap_or(100_000);
    let runs = args.next().unwrap_or(3);
    let dir = std::env::temp_dir().join("engram-formation-stall");
    let (m, _) = engram_fixtures::clustered(n + n / 2, 100, 768, 1.0, 3);
    let (first, later) = m.data.split_at(n * 768);
    println!(
        "{n} clustered episodes, k = 100, then {} more consolidated; one writer thread, one event per call",
        n / 2
    );
    println!(
        "run  what          ms   calls during   p50 / p99 / max ms during   p50 / p99 / max ms before"
    );
    let filter = Filter::default();
    for run in 0..runs {
        let _ = std::fs::remove_dir_all(&dir);
        let db = Engram::open(&dir, Options::default()).unwrap();
        load(&db, first);
        beside_writer(&db, "formation", run, || {
            let clustering = Params {
                count: Count::K(100),
                ..Params::default()
            };
            let params = FormationParams {
                filter: &filter,
                unbound_only: true,
                clustering,
                progress: None,
            };
            db.form_concepts(&params).unwrap();
        });
        load(&db, later);
        beside_writer(&db, "consolidate", run, || {
            let params = ConsolidationParams {
                min_similarity: 0.5,
                filter: Filter::default(),
            };
            db.consolidate(&params).unwrap();
        });
        drop(db);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
