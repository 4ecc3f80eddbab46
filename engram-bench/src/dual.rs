//! Dual memory against the episodes-only engine on the same episodes, in one run: ingest,
//! episode lookup and similarity recall, and what the concepts, bindings, caches and
//! fan-count index cost on disk and in memory.

use std::path::Path;
use std::time::Instant;

use engram_bench::lookup::{self, BoxError};
use engram_core::{ConceptInput, Engram, EpisodeInput, Filter, Options};
use engram_fixtures::{Matrix, Rng};
use serde_json::{Map, Value, json};

use super::{COMMIT, median, record, settle, sum_f32, warm};

/// Episodes per concept: the concepts an agent's clustering would form.
const PER_CONCEPT: usize = 100;
const RUNS: usize = 4;

fn options(dual: bool) -> Options {
    Options {
        episodes_only: !dual,
        ..Options::default()
    }
}

/// Ingests `n` episodes in commits of [`COMMIT`]; the dual engine also stores `n / 100`
/// concepts (first) and binds every episode to one of them, as an agent recording events
/// against what it already knows would. Returns episodes per second.
/// With `bind` false the dual engine ingests exactly what the episodes-only one does.
fn ingest(dir: &Path, real: &Matrix, n: usize, dual: bool, bind: bool) -> Result<f64, BoxError> {
    let _ = std::fs::remove_dir_all(dir);
    settle();
    let db = Engram::open(dir, options(dual))?;
    let concepts = (n / PER_CONCEPT).max(1);
    let bind = dual && bind;
    let t = Instant::now();
    if bind {
        let mut tx = db.begin_write()?;
        for c in 0..concepts {
            tx.insert_concept(&ConceptInput {
                centroid: real.row(c % real.rows),
                label: &format!("concept-{c}"),
            })?;
        }
        tx.commit()?;
    }
    for start in (0..n).step_by(COMMIT) {
        let mut tx = db.begin_write()?;
        for id in start..(start + COMMIT).min(n) {
            let (v, payload) = record(real, id);
            let e = tx.insert_episode(&EpisodeInput {
                agent: 7,
                timestamp: id as i64,
                embedding: &v,
                payload: &payload,
                key: None,
            })?;
            if bind {
                tx.bind(e, (id % concepts) as u64, 0.8)?;
            }
        }
        tx.commit()?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

/// Mean nanoseconds per random episode get (embedding and payload read).
fn lookups(db: &Engram, n: usize) -> Result<f64, BoxError> {
    let snap = db.begin_read()?;
    let mut rng = Rng::new(9);
    let ids: Vec<u64> = (0..400_000).map(|_| rng.next_u64() % n as u64).collect();
    let f = |id: u64| {
        let ep = snap.episode(id).expect("get").expect("exists");
        sum_f32(ep.embedding()) + ep.payload().expect("payload").len() as f32
    };
    std::hint::black_box(ids.iter().map(|&id| f(id)).sum::<f32>());
    let t = Instant::now();
    std::hint::black_box(ids.iter().map(|&id| f(id)).sum::<f32>());
    Ok(t.elapsed().as_nanos() as f64 / ids.len() as f64)
}

/// Mean milliseconds per exact top-10 search over all episodes.
fn recall(db: &Engram, real: &Matrix) -> Result<f64, BoxError> {
    let snap = db.begin_read()?;
    let filter = Filter::default();
    snap.search(real.row(0), 10, &filter)?;
    let queries = 100;
    let t = Instant::now();
    for q in 0..queries {
        std::hint::black_box(snap.search(real.row(q * 97 % real.rows), 10, &filter)?);
    }
    Ok(t.elapsed().as_secs_f64() * 1e3 / queries as f64)
}

fn dir_bytes(dir: &Path) -> Result<u64, BoxError> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        total += e?.metadata()?.len();
    }
    Ok(total)
}

/// Bytes the engine holds in memory once every structure it keeps has been used: its files'
/// pages in the page cache (what its maps touch) plus its caches and fan-count index.
fn resident(dir: &Path, db: &Engram, real: &Matrix, dual: bool) -> Result<u64, BoxError> {
    lookup::drop_from_page_cache(dir)?;
    let snap = db.begin_read()?;
    for id in snap.episode_ids()? {
        std::hint::black_box(sum_f32(snap.episode(id)?.expect("live").embedding()));
    }
    recall(db, real)?;
    if dual {
        for id in snap.concept_ids()? {
            std::hint::black_box(snap.lookup_concept(id)?);
            std::hint::black_box(snap.concept_fan_count(id)?);
        }
        for id in snap.episode_ids()? {
            std::hint::black_box(snap.episode_fan_count(id)?);
        }
    }
    let s = db.stats();
    // A dashmap entry: key, count, commit stamp and the table's own overhead, about 40 bytes.
    let heap = s.cache_bytes + s.fan_index_entries * 40;
    Ok(lookup::resident_pages(dir)? * 4096 + heap)
}

pub fn dual_job(
    dir: &Path,
    real: &Matrix,
    n: usize,
    report: &mut Map<String, Value>,
) -> Result<(), BoxError> {
    println!(
        "\ndual memory vs episodes-only, {n} episodes (dual: + {} concepts, one binding per episode)",
        n / PER_CONCEPT
    );
    let dirs = [dir.join("dual-single"), dir.join("dual-dual")];
    let (mut ing, mut get, mut rec) = ([vec![], vec![]], [vec![], vec![]], [vec![], vec![]]);
    let mut same = [vec![], vec![]];
    // Interleaved, each engine first in half the runs, so drift of the machine and any
    // advantage of going first or second hit both alike.
    let order = |run: usize| {
        if run.is_multiple_of(2) {
            [0, 1]
        } else {
            [1, 0]
        }
    };
    for run in 0..RUNS {
        for k in order(run) {
            same[k].push(ingest(&dirs[k], real, n, k == 1, false)?);
        }
    }
    for run in 0..RUNS {
        for k in order(run) {
            ing[k].push(ingest(&dirs[k], real, n, k == 1, true)?);
        }
    }
    // The same page cache state for both: freshly written pages (the last ingest's) and
    // pages read back from the disk scan at measurably different speeds.
    for d in &dirs {
        lookup::drop_from_page_cache(d)?;
        warm(d).map_err(|e| e.to_string())?;
    }
    for run in 0..RUNS {
        for k in order(run) {
            let db = Engram::open(&dirs[k], options(k == 1))?;
            get[k].push(lookups(&db, n)?);
            rec[k].push(recall(&db, real)?);
        }
    }
    let mut disk = [0; 2];
    let mut mem = [0; 2];
    for (k, dual) in [false, true].into_iter().enumerate() {
        disk[k] = dir_bytes(&dirs[k])?;
        let db = Engram::open(&dirs[k], options(dual))?;
        mem[k] = resident(&dirs[k], &db, real, dual)?;
    }
    let med = |v: &Vec<f64>| median(v.clone());
    let (i0, i1) = (med(&ing[0]), med(&ing[1]));
    let (s0, s1) = (med(&same[0]), med(&same[1]));
    let same_reg = (s0 - s1) / s0 * 100.0;
    let (g0, g1) = (med(&get[0]), med(&get[1]));
    let (r0, r1) = (med(&rec[0]), med(&rec[1]));
    let pct = |worse: f64, base: f64| (worse - base) / base * 100.0;
    let ingest_reg = (i0 - i1) / i0 * 100.0; // throughput: (single - dual) / single
    let lookup_reg = pct(g1, g0);
    let recall_reg = pct(r1, r0);
    let disk_over = pct(disk[1] as f64, disk[0] as f64);
    let mem_over = pct(mem[1] as f64, mem[0] as f64);
    println!(
        "  {:<28} {:>16} {:>16} {:>12}",
        "", "episodes-only", "dual", "dual cost"
    );
    println!(
        "  {:<28} {:>16.0} {:>16.0} {:>11.2} %",
        "ingest, episodes only", s0, s1, same_reg
    );
    println!(
        "  {:<28} {:>16.0} {:>16.0} {:>11.2} %",
        "ingest, dual binds each", i0, i1, ingest_reg
    );
    println!(
        "  {:<28} {:>16.0} {:>16.0} {:>11.2} %",
        "episode get (ns, mean)", g0, g1, lookup_reg
    );
    println!(
        "  {:<28} {:>16.2} {:>16.2} {:>11.2} %",
        "top-10 recall (ms/query)", r0, r1, recall_reg
    );
    println!(
        "  {:<28} {:>16.1} {:>16.1} {:>11.2} %",
        "disk (MB)",
        disk[0] as f64 / 1e6,
        disk[1] as f64 / 1e6,
        disk_over
    );
    println!(
        "  {:<28} {:>16.1} {:>16.1} {:>11.2} %",
        "resident (MB)",
        mem[0] as f64 / 1e6,
        mem[1] as f64 / 1e6,
        mem_over
    );
    report.insert(
        "dual_vs_single".into(),
        json!({
            "episodes": n,
            "concepts": n / PER_CONCEPT,
            "runs": RUNS,
            "ingest_per_s": { "single": i0, "dual": i1, "runs_single": ing[0], "runs_dual": ing[1] },
            "lookup_ns": { "single": g0, "dual": g1, "runs_single": get[0], "runs_dual": get[1] },
            "recall_ms": { "single": r0, "dual": r1, "runs_single": rec[0], "runs_dual": rec[1] },
            "disk_bytes": { "single": disk[0], "dual": disk[1] },
            "resident_bytes": { "single": mem[0], "dual": mem[1] },
            "ingest_same_workload_per_s": { "single": s0, "dual": s1, "runs_single": same[0], "runs_dual": same[1] },
            "ingest_regression_pct": ingest_reg,
            "ingest_same_workload_regression_pct": same_reg,
            "lookup_regression_pct": lookup_reg,
            "recall_regression_pct": recall_reg,
            "disk_overhead_pct": disk_over,
            "resident_overhead_pct": mem_over,
        }),
    );
    for d in &dirs {
        let _ = std::fs::remove_dir_all(d);
    }
    Ok(())
}
