//! Commit cost under a sliding time-to-live window as ids accrue: every tick commits a batch
//! that lives `window` ticks, so each commit from then on reaps one batch while the stored
//! episodes stay constant and the ids ever assigned grow. Beside it, in the same run, the
//! baseline the engine must not fall behind: the application deleting the batch itself, by
//! id, in the same commit (no time to live). Prints the median commit time per tenth of the
//! run for both; flat lines mean a commit costs what it stores and deletes, not the ids
//! assigned before it. `pinned` episodes, spread over the run (one at the start of every
//! `ticks / pinned`-th commit), are kept forever, as an agent keeps a few facts among its
//! fleeting events: the compaction at the end must keep table bytes for the stored
//! episodes only, not for every id after the oldest of them.
//! `cargo run --release -p engram-bench --example ttl_window [ids] [batch] [window] [dim] [pinned]`
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use engram_core::{Clock, Engram, EpisodeInput, Options, Ttl};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Bytes of the directory's files, and of its episode table.
fn sizes(dir: &std::path::Path) -> (u64, u64) {
    let (mut all, mut table) = (0, 0);
    for e in std::fs::read_dir(dir).unwrap() {
        let (path, len) = (
            e.as_ref().unwrap().path(),
            e.unwrap().metadata().unwrap().len(),
        );
        all += len;
        if path.extension().is_some_and(|x| x == "etab") {
            table += len;
        }
    }
    (all, table)
}

/// Median commit µs per tenth of the run, with time to live (`ttl`) or explicit deletes, and
/// the directory's bytes (all files, episode table) after a compaction at the end.
fn run(
    ids: u64,
    batch: u64,
    window: i64,
    dim: usize,
    pinned: u64,
    ttl: bool,
) -> (Vec<f64>, (u64, u64)) {
    let dir = std::env::temp_dir().join(format!("engram-ttl-window-{ttl}"));
    let _ = std::fs::remove_dir_all(&dir);
    let time = Arc::new(AtomicI64::new(0));
    let clock = Clock::new({
        let time = time.clone();
        move || time.load(Ordering::Relaxed)
    });
    let opts = Options {
        dimension: Some(dim),
        clock,
        ..Options::default()
    };
    let db = Engram::open(&dir, opts).unwrap();
    let v: Vec<f32> = (0..dim).map(|i| 1.0 + i as f32 / dim as f32).collect();
    let ticks = ids / batch;
    let mut tenths = vec![Vec::new(); 10];
    let pin_every = ticks / pinned.max(1);
    let (mut kept, mut batches) = (0, VecDeque::new());
    for tick in 0..ticks {
        time.store(tick as i64, Ordering::Relaxed);
        let t = Instant::now();
        let mut tx = db.begin_write().unwrap();
        let ep = EpisodeInput {
            agent: 0,
            timestamp: tick as i64,
            embedding: &v,
            payload: b"event",
            key: None,
        };
        if pinned > 0 && tick % pin_every == 0 && kept < pinned {
            tx.insert_episode_with_ttl(&ep, Ttl::Never).unwrap();
            kept += 1;
        }
        let first = tx
            .insert_episode_with_ttl(&ep, if ttl { Ttl::After(window) } else { Ttl::Never })
            .unwrap();
        for _ in 1..batch {
            match ttl {
                true => tx.insert_episode_with_ttl(&ep, Ttl::After(window)),
                false => tx.insert_episode(&ep),
            }
            .unwrap();
        }
        batches.push_back(first);
        if !ttl && tick >= window as u64 {
            let gone = batches.pop_front().unwrap();
            for id in gone..gone + batch {
                tx.delete_episode(id).unwrap();
            }
        }
        tx.commit().unwrap();
        tenths[(tick * 10 / ticks) as usize].push(t.elapsed().as_secs_f64() * 1e6);
    }
    let snap = db.begin_read().unwrap();
    assert_eq!(
        snap.episode_count(),
        batch * window as u64 + kept,
        "the window holds"
    );
    drop(snap);
    db.compact().unwrap();
    let bytes = sizes(&dir);
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
    (tenths.into_iter().map(median).collect(), bytes)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut arg = |default: u64| args.next().map_or(default, |a| a.parse().unwrap());
    let (ids, batch, window, dim, pinned) =
        (arg(2_000_000), arg(1_000), arg(100), arg(16), arg(10));
    println!(
        "{ids} ids, {batch} per commit, window {window} commits ({} stored), {dim}-d, {pinned} kept forever",
        batch * window
    );
    let (with_ttl, bytes) = run(ids, batch, window as i64, dim as usize, pinned, true);
    let (deletes, _) = run(ids, batch, window as i64, dim as usize, pinned, false);
    println!(
        "{:>12} {:>16} {:>18}",
        "ids", "ttl commit µs", "delete commit µs"
    );
    for (i, (a, b)) in with_ttl.iter().zip(&deletes).enumerate() {
        println!("{:>12} {a:>16.0} {b:>18.0}", ids * (i as u64 + 1) / 10);
    }
    println!(
        "after compaction: {:.1} MB on disk, of which the episode table {:.1} MB (48 B per stored id)",
        bytes.0 as f64 / 1e6,
        bytes.1 as f64 / 1e6
    );
}
