//! How long maintenance work keeps a writer waiting: the `compact_stall` and
//! `formation_stall` examples run a compaction, a formation or a consolidation beside a
//! thread recording one event per `insert_episodes` call, as an agent does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use engram_core::{Engram, EpisodeInput};

/// The header of the lines [`beside_writer`] prints.
pub const HEADER: &str = "run  what             ms   calls during   p50 / p99 / max ms during   p50 / p99 / max ms before";

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3
}

/// Runs `work` after half a second of a writer thread recording events into `db`, and
/// prints its time and the writer's call latencies during it and, the baseline, before it.
/// Work that holds the writer throughout shows a longest call as long as itself.
pub fn beside_writer(db: &Engram, what: &str, run: usize, work: impl FnOnce()) {
    let (stop, working) = (AtomicBool::new(false), AtomicBool::new(false));
    let (took, during, before) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let (mut during, mut before) = (Vec::new(), Vec::new());
            let mut v = vec![0.5f32; db.manifest().dimension];
            while !stop.load(Ordering::Acquire) {
                v[0] += 1.0;
                let input = EpisodeInput {
                    agent: u64::MAX,
                    timestamp: 0,
                    embedding: &v,
                    payload: b"x",
                    key: None,
                };
                let ran = working.load(Ordering::Acquire);
                let t = Instant::now();
                db.insert_episodes(&[input]).expect("insert_episodes");
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
        let (mut during, mut before) = writer.join().expect("writer thread");
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
