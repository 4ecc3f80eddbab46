//! How long concept formation keeps a writer waiting. Loads `n` clustered episodes (768-d,
//! 100 clusters), then runs `Engram::form_concepts` (k = 100) while a writer thread records
//! one event per `insert_episodes` call. Prints the formation's time beside the writer's
//! call latencies during it and before it (the baseline: the same writer, no formation).
//! A formation holding the writer throughout shows a longest call as long as itself.
//! `cargo run --release -p engram-bench --example formation_stall [n] [runs]`
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use engram_core::cluster::{Count, Params};
use engram_core::{Engram, EpisodeInput, Filter, FormationParams, Options};

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3
}

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().expect("a number"));
    let n = args.next().unwrap_or(100_000);
    let runs = args.next().unwrap_or(3);
    let dir = std::env::temp_dir().join("engram-formation-stall");
    let (m, _) = engram_fixtures::clustered(n, 100, 768, 1.0, 3);
    println!("{n} clustered episodes, k = 100; one writer thread, one event per call");
    println!(
        "run  formation ms   calls during   p50 / p99 / max ms during   p50 / p99 / max ms before"
    );
    for run in 0..runs {
        let _ = std::fs::remove_dir_all(&dir);
        let db = Engram::open(&dir, Options::default()).unwrap();
        for (c, rows) in m.data.chunks(768 * 1000).enumerate() {
            let mut tx = db.begin_write().unwrap();
            for (i, row) in rows.chunks_exact(768).enumerate() {
                let input = EpisodeInput {
                    agent: 1,
                    timestamp: (c * 1000 + i) as i64,
                    embedding: row,
                    payload: b"an event's payload",
                    key: None,
                };
                tx.insert_episode(&input).unwrap();
            }
            tx.commit().unwrap();
        }
        let (stop, forming) = (AtomicBool::new(false), AtomicBool::new(false));
        let (formation, during, before) = std::thread::scope(|s| {
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
                    let ran = forming.load(Ordering::Acquire);
                    let t = Instant::now();
                    db.insert_episodes(&[input]).unwrap();
                    let took = t.elapsed();
                    match ran || forming.load(Ordering::Acquire) {
                        true => during.push(took),
                        false => before.push(took),
                    }
                }
                (during, before)
            });
            std::thread::sleep(Duration::from_millis(500));
            forming.store(true, Ordering::Release);
            let t = Instant::now();
            let filter = Filter::default();
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
            let took = t.elapsed();
            forming.store(false, Ordering::Release);
            stop.store(true, Ordering::Release);
            let (mut during, mut before) = writer.join().unwrap();
            during.sort();
            before.sort();
            (took, during, before)
        });
        println!(
            "{:>3}  {:>12.0}   {:>12}   {:>7.2} / {:.2} / {:.1}   {:>10.2} / {:.2} / {:.1}",
            run + 1,
            formation.as_secs_f64() * 1e3,
            during.len(),
            pct(&during, 0.5),
            pct(&during, 0.99),
            pct(&during, 1.0),
            pct(&before, 0.5),
            pct(&before, 0.99),
            pct(&before, 1.0),
        );
        drop(db);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
