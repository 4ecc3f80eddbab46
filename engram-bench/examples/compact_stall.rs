//! How long a compaction keeps a writer waiting. Loads `n` episodes (768-d, 1,000 per
//! commit), deletes every other one, then compacts while a writer thread records one event
//! per `insert_episodes` call, as an agent does. Prints the compaction's time beside the
//! writer's call latencies during it and before it (the baseline: the same writer with no
//! compaction running). A compaction holding the writer throughout shows a longest call as
//! long as the compaction itself.
//! `cargo run --release -p engram-bench --example compact_stall [n] [runs]`
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use engram_core::{Engram, EpisodeInput, Options};

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3
}

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<u64>().expect("a number"));
    let n = args.next().unwrap_or(200_000);
    let runs = args.next().unwrap_or(3);
    let dir = std::env::temp_dir().join("engram-compact-stall");
    println!("{n} episodes, every other one deleted; one writer thread, one event per call");
    println!(
        "run  compaction ms   calls during   p50 / p99 / max ms during   p50 / p99 / max ms before"
    );
    for run in 0..runs {
        let _ = std::fs::remove_dir_all(&dir);
        let db = Engram::open(&dir, Options::default()).unwrap();
        let mut v = vec![0f32; 768];
        for start in (0..n).step_by(1000) {
            let mut tx = db.begin_write().unwrap();
            for i in start..(start + 1000).min(n) {
                v[(i % 768) as usize] = 1.0 + i as f32;
                let input = EpisodeInput {
                    agent: 1,
                    timestamp: i as i64,
                    embedding: &v,
                    payload: b"an event's payload",
                    key: None,
                };
                tx.insert_episode(&input).unwrap();
            }
            tx.commit().unwrap();
        }
        let mut tx = db.begin_write().unwrap();
        for id in (0..n).step_by(2) {
            tx.delete_episode(id).unwrap();
        }
        tx.commit().unwrap();
        let (stop, compacting) = (AtomicBool::new(false), AtomicBool::new(false));
        let (compaction, during, before) = std::thread::scope(|s| {
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
                    let ran = compacting.load(Ordering::Acquire);
                    let t = Instant::now();
                    db.insert_episodes(&[input]).unwrap();
                    let took = t.elapsed();
                    match ran || compacting.load(Ordering::Acquire) {
                        true => during.push(took),
                        false => before.push(took),
                    }
                }
                (during, before)
            });
            std::thread::sleep(Duration::from_millis(500));
            compacting.store(true, Ordering::Release);
            let t = Instant::now();
            db.compact().unwrap();
            let took = t.elapsed();
            compacting.store(false, Ordering::Release);
            stop.store(true, Ordering::Release);
            let (mut during, mut before) = writer.join().unwrap();
            during.sort();
            before.sort();
            (took, during, before)
        });
        println!(
            "{:>3}  {:>13.0}   {:>12}   {:>7.2} / {:.2} / {:.1}   {:>10.2} / {:.2} / {:.1}",
            run + 1,
            compaction.as_secs_f64() * 1e3,
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
