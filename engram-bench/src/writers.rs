//! Durable writes from many threads at once: each thread records one event (a 3,104-byte
//! record) per call and waits until it is durable, as swarm agents recording what happens
//! do. Engram committing each event in its own transaction and through
//! `Engram::insert_episodes` (group commit), beside redb and LMDB each committing a
//! transaction per event (both serialize writers and fsync at every commit), in one run.

use std::path::Path;
use std::time::{Duration, Instant};

use engram_core::{Engram, EpisodeInput, Options};
use engram_fixtures::Matrix;
use serde_json::{Map, Value, json};

use super::{BoxError, REDB_TABLE, insert_record, lmdb_env, median, record, settle, value_bytes};

const THREADS: [usize; 3] = [1, 4, 16];
/// How long each engine is timed per thread count and run.
const WINDOW: Duration = Duration::from_millis(400);
const RUNS: usize = 5;
const ENGINES: [&str; 4] = [
    "engram, txn per event",
    "engram insert_episodes",
    "redb",
    "LMDB",
];

/// Events per second and each call's latency (µs), sorted.
struct Run {
    rate: f64,
    lat: Vec<f64>,
}

/// Runs `threads` threads calling `event(thread, seq)` until the window ends.
fn timed(
    threads: usize,
    event: impl Fn(usize, usize) -> Result<(), BoxError> + Sync,
) -> Result<Run, BoxError> {
    let start = Instant::now();
    let per_thread: Vec<Result<Vec<f64>, String>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let event = &event;
                s.spawn(move || {
                    let mut lat = Vec::new();
                    while start.elapsed() < WINDOW {
                        let t0 = Instant::now();
                        event(t, lat.len()).map_err(|e| e.to_string())?;
                        lat.push(t0.elapsed().as_secs_f64() * 1e6);
                    }
                    Ok(lat)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut lat = Vec::new();
    for l in per_thread {
        lat.extend(l?);
    }
    lat.sort_by(f64::total_cmp);
    Ok(Run {
        rate: lat.len() as f64 / elapsed,
        lat,
    })
}

/// One engine at one thread count, in a fresh database.
fn run_engine(dir: &Path, engine: usize, threads: usize, real: &Matrix) -> Result<Run, BoxError> {
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_file(dir.with_extension("redb"));
    settle();
    // Each thread writes ids of its own: thread t's n-th event is id n * 64 + t.
    let id = |t: usize, n: usize| n * 64 + t;
    match engine {
        0 | 1 => {
            let db = Engram::open(dir, Options::default())?;
            timed(threads, |t, n| {
                let id = id(t, n);
                if engine == 0 {
                    let mut tx = db.begin_write()?;
                    insert_record(&mut tx, real, id)?;
                    tx.commit()?;
                } else {
                    let (v, payload) = record(real, id);
                    db.insert_episodes(&[EpisodeInput {
                        agent: 7,
                        timestamp: id as i64,
                        embedding: &v,
                        payload: &payload,
                        key: None,
                    }])?;
                }
                Ok(())
            })
        }
        2 => {
            let db = redb::Database::create(dir.with_extension("redb"))?;
            timed(threads, |t, n| {
                let id = id(t, n);
                let w = db.begin_write()?; // waits for the writer; fsync at commit
                w.open_table(REDB_TABLE)?
                    .insert(id as u64, value_bytes(real, id).as_slice())?;
                w.commit()?;
                Ok(())
            })
        }
        _ => {
            let (env, db) = lmdb_env(dir, 1 << 20)?;
            timed(threads, |t, n| {
                let id = id(t, n);
                let mut w = env.write_txn()?; // waits for the writer; fsync at commit
                db.put(&mut w, &(id as u64), &value_bytes(real, id))?;
                w.commit()?;
                Ok(())
            })
        }
    }
}

fn pct(lat: &[f64], q: f64) -> f64 {
    lat[((lat.len() - 1) as f64 * q).round() as usize]
}

pub fn writers_job(
    dir: &Path,
    real: &Matrix,
    report: &mut Map<String, Value>,
) -> Result<(), BoxError> {
    println!(
        "
concurrent durable writes: threads each recording one 3,104 B event per call, waiting until it is durable\n  (events/s over {} ms per engine; medians of {RUNS} interleaved runs; latency per call)",
        WINDOW.as_millis()
    );
    let mut out = Map::new();
    for threads in THREADS {
        // [engine][run]
        let mut runs: Vec<Vec<Run>> = (0..ENGINES.len()).map(|_| Vec::new()).collect();
        for r in 0..RUNS {
            for k in 0..ENGINES.len() {
                let engine = (k + r) % ENGINES.len();
                let path = dir.join(format!("writers-{engine}"));
                runs[engine].push(run_engine(&path, engine, threads, real)?);
                let _ = std::fs::remove_dir_all(&path);
                let _ = std::fs::remove_file(path.with_extension("redb"));
            }
        }
        let rate = |e: usize| median(runs[e].iter().map(|r| r.rate).collect());
        let at = |e: usize, q: f64| median(runs[e].iter().map(|r| pct(&r.lat, q)).collect());
        let mut row = Map::new();
        for (e, name) in ENGINES.iter().enumerate() {
            println!(
                "  {threads:>2} threads  {name:<23} {:>8.0} events/s   p50 {:>7.0} µs   p99 {:>7.0} µs{}",
                rate(e),
                at(e, 0.5),
                at(e, 0.99),
                match e {
                    1 => format!("   ({:.2}x engram txn per event)", rate(1) / rate(0)),
                    _ => String::new(),
                }
            );
            row.insert(
                ["engram_txn", "engram_insert_episodes", "redb", "lmdb"][e].into(),
                json!({ "events_per_s": rate(e), "p50_us": at(e, 0.5), "p99_us": at(e, 0.99) }),
            );
        }
        out.insert(format!("threads_{threads}"), Value::Object(row));
    }
    report.insert("concurrent_writes".into(), Value::Object(out));
    Ok(())
}
