//! Dual memory against the episodes-only engine on the same episodes, in one run: ingest,
//! episode lookup and similarity recall, and what the concepts, bindings, caches and
//! fan-count index cost on disk and in memory.
//!
//! The two engines run side by side, interleaved commit by commit (and lookup batch by
//! lookup batch), each going first in turn: this box's disk and CPU drift by more than
//! the differences measured here over the seconds a whole ingest takes, and interleaving
//! puts both engines under the same drift.

use std::path::Path;
use std::time::{Duration, Instant};

use engram_bench::lookup::{self, BoxError, read_fully};
use engram_core::{ConceptInput, Engram, Filter, Options};
use engram_fixtures::{Matrix, Rng};
use serde_json::{Map, Value, json};

use super::{COMMIT, dir_bytes, insert_padded, insert_record, median, settle, warm};

/// Episodes per concept: the concepts an agent's clustering would form.
const PER_CONCEPT: usize = 100;
/// Interleaved ingests of both engines (fresh directories each), per workload: five, as
/// three left the same engine's bytes floor anywhere from 0.2 to 7.9 %.
const RUNS: usize = 5;
/// Interleaved rounds of lookups and searches.
const ROUNDS: usize = 16;

fn options(dual: bool) -> Options {
    Options {
        episodes_only: !dual,
        ..Options::default()
    }
}

/// What the second engine ingests beside the episodes-only one.
#[derive(Clone, Copy, PartialEq)]
enum Workload {
    /// The dual engine, exactly the same episodes.
    Same,
    /// The dual engine, binding every episode to one of `n / 100` concepts it stores first.
    Bind,
    /// Another episodes-only engine, each payload a binding record longer: its bytes
    /// through the same write path, the floor of what binding can cost.
    Padded,
}

const BINDING_BYTES: usize = engram_core::BINDING_RECORD_BYTES as usize;

/// Which engine goes first in step `i`.
fn order(i: usize) -> [usize; 2] {
    if i.is_multiple_of(2) { [0, 1] } else { [1, 0] }
}

/// One interleaved ingest of both engines.
struct Ingest {
    /// Episodes per second of each engine over its own commits.
    rates: [f64; 2],
    /// Share of the second engine's time spent storing the concepts ([`Workload::Bind`]).
    concepts_share: f64,
    /// Per commit, the second engine's extra time over the first's commit next to it, in
    /// percent: its median shrugs off the bursts this box's disk has.
    commit_extra: Vec<f64>,
}

/// Ingests the same `n` episodes into the episodes-only engine (`dirs[0]`) and a second one
/// (`dirs[1]`, see [`Workload`]), commit by commit in turn. Binding every episode is what an
/// agent recording events against what it already knows does.
fn ingest(
    dirs: &[&Path; 2],
    real: &Matrix,
    n: usize,
    workload: Workload,
) -> Result<Ingest, BoxError> {
    let bind = workload == Workload::Bind;
    for d in dirs {
        let _ = std::fs::remove_dir_all(d);
    }
    settle();
    let dbs = [
        Engram::open(dirs[0], options(false))?,
        Engram::open(dirs[1], options(workload != Workload::Padded))?,
    ];
    let concepts = (n / PER_CONCEPT).max(1);
    let mut spent = [Duration::ZERO; 2];
    if bind {
        let t = Instant::now();
        let mut tx = dbs[1].begin_write()?;
        for c in 0..concepts {
            tx.insert_concept(&ConceptInput {
                centroid: real.row(c % real.rows),
                label: &format!("concept-{c}"),
            })?;
        }
        tx.commit()?;
        spent[1] += t.elapsed();
    }
    let storing_concepts = spent[1];
    let mut commit_extra = Vec::new();
    for (i, start) in (0..n).step_by(COMMIT).enumerate() {
        let mut took = [Duration::ZERO; 2];
        for k in order(i) {
            let t = Instant::now();
            let mut tx = dbs[k].begin_write()?;
            for id in start..(start + COMMIT).min(n) {
                if workload == Workload::Padded && k == 1 {
                    insert_padded(&mut tx, real, id, BINDING_BYTES)?;
                    continue;
                }
                let e = insert_record(&mut tx, real, id)?;
                if bind && k == 1 {
                    tx.bind(e, (id % concepts) as u64, 0.8)?;
                }
            }
            tx.commit()?;
            took[k] = t.elapsed();
            spent[k] += took[k];
        }
        let [a, b] = took.map(|d| d.as_secs_f64());
        commit_extra.push(pct_slower_time(a, b));
    }
    Ok(Ingest {
        rates: spent.map(|d| n as f64 / d.as_secs_f64()),
        concepts_share: storing_concepts.as_secs_f64() / spent[1].as_secs_f64(),
        commit_extra,
    })
}

/// Nanoseconds per random episode get (embedding and payload read) and milliseconds per
/// exact top-10 search, every engine in interleaved rounds (each goes first in turn).
/// Returns per-round figures: `[gets, searches][engine][round]`.
fn reads(dbs: &[Engram], real: &Matrix, n: usize) -> Result<[Vec<Vec<f64>>; 2], BoxError> {
    let snaps = dbs
        .iter()
        .map(Engram::begin_read)
        .collect::<Result<Vec<_>, _>>()?;
    let mut rng = Rng::new(9);
    let ids: Vec<u64> = (0..50_000).map(|_| rng.next_u64() % n as u64).collect();
    let get = |k: usize| -> f64 {
        let snap = &snaps[k];
        let t = Instant::now();
        let s: f32 = ids
            .iter()
            .map(|&id| {
                let ep = snap.episode(id).expect("get").expect("exists");
                read_fully(ep.embedding()) + ep.payload().expect("payload").len() as f32
            })
            .sum();
        std::hint::black_box(s);
        t.elapsed().as_nanos() as f64 / ids.len() as f64
    };
    let filter = Filter::default();
    let search = |k: usize, round: usize| -> Result<f64, BoxError> {
        let t = Instant::now();
        for q in 0..8 {
            let query = real.row((round * 8 + q) * 97 % real.rows);
            std::hint::black_box(snaps[k].search(query, 10, &filter)?);
        }
        Ok(t.elapsed().as_secs_f64() * 1e3 / 8.0)
    };
    let m = dbs.len();
    for k in 0..m {
        get(k); // warm-up: maps populated, checksums verified
        search(k, 0)?;
    }
    let mut out = [vec![Vec::new(); m], vec![Vec::new(); m]];
    for round in 0..ROUNDS {
        for k in (0..m).map(|i| (i + round) % m) {
            out[0][k].push(get(k));
            out[1][k].push(search(k, round)?);
        }
    }
    Ok(out)
}

/// Bytes the engine holds in memory once every structure it keeps has been used: its files'
/// pages in the page cache (what its maps touch) plus its caches and fan-count index.
fn resident(dir: &Path, dual: bool, real: &Matrix) -> Result<u64, BoxError> {
    lookup::drop_from_page_cache(dir)?;
    let db = Engram::open(dir, options(dual))?;
    let snap = db.begin_read()?;
    for id in snap.episode_ids()? {
        std::hint::black_box(read_fully(snap.episode(id)?.expect("live").embedding()));
    }
    snap.search(real.row(0), 10, &Filter::default())?;
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

fn pct_slower_rate(single: f64, dual: f64) -> f64 {
    (single - dual) / single * 100.0
}

fn pct_slower_time(single: f64, dual: f64) -> f64 {
    (dual - single) / single * 100.0
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
    let (d0, d1) = (dir.join("dual-single"), dir.join("dual-dual"));
    let dirs = [d0.as_path(), d1.as_path()];
    // Per run: [episodes-only, other] episodes/s, per workload.
    let runs = |workload| -> Result<Vec<Ingest>, BoxError> {
        (0..RUNS)
            .map(|_| ingest(&dirs, real, n, workload))
            .collect()
    };
    let same_runs = runs(Workload::Same)?;
    let padded_runs = runs(Workload::Padded)?;
    // Last: the directories the reads below compare are these two.
    let bound_runs = runs(Workload::Bind)?;
    let rates = |r: &[Ingest]| r.iter().map(|i| i.rates).collect::<Vec<_>>();
    let (same, padded, bound) = (rates(&same_runs), rates(&padded_runs), rates(&bound_runs));
    let per_commit = |r: &[Ingest]| median(r.iter().flat_map(|i| i.commit_extra.clone()).collect());
    let commit_extra = [&same_runs, &padded_runs, &bound_runs].map(|r| per_commit(r));
    let concepts_share = median(
        bound_runs
            .iter()
            .map(|i| i.concepts_share * 100.0)
            .collect(),
    );
    // A control: a file-by-file copy of the episodes-only database, read in the same rounds.
    // Its difference from the original is this machine's resolution for the read costs.
    let copy = dir.join("dual-single-copy");
    copy_dir(dirs[0], &copy)?;
    let all = [dirs[0], dirs[1], copy.as_path()];
    // The same page cache state for all: freshly written pages and pages read back from
    // the disk scan at measurably different speeds.
    for d in all {
        lookup::drop_from_page_cache(d)?;
        warm(d).map_err(|e| e.to_string())?;
    }
    let dbs = [
        Engram::open(dirs[0], options(false))?,
        Engram::open(dirs[1], options(true))?,
        Engram::open(&copy, options(false))?,
    ];
    let [gets, searches] = reads(&dbs, real, n)?;
    drop(dbs);
    let _ = std::fs::remove_dir_all(&copy);
    let disk = [dir_bytes(dirs[0])?, dir_bytes(dirs[1])?];
    let mem = [
        resident(dirs[0], false, real)?,
        resident(dirs[1], true, real)?,
    ];

    let regress =
        |runs: &Vec<[f64; 2]>| median(runs.iter().map(|r| pct_slower_rate(r[0], r[1])).collect());
    let rate = |runs: &Vec<[f64; 2]>, k: usize| median(runs.iter().map(|r| r[k]).collect());
    let same_reg = regress(&same);
    let ingest_reg = regress(&bound);
    let bytes_floor = regress(&padded);
    // Median over rounds of engine `b`'s extra time over engine `a`'s, in percent.
    let per_round = |v: &[Vec<f64>], a: usize, b: usize| -> f64 {
        median(
            (0..v[a].len())
                .map(|i| pct_slower_time(v[a][i], v[b][i]))
                .collect(),
        )
    };
    let lookup_reg = per_round(&gets, 0, 1);
    let recall_reg = per_round(&searches, 0, 1);
    let (lookup_aa, recall_aa) = (per_round(&gets, 0, 2), per_round(&searches, 0, 2));
    let (g0, g1) = (median(gets[0].clone()), median(gets[1].clone()));
    let (r0, r1) = (median(searches[0].clone()), median(searches[1].clone()));
    let disk_over = pct_slower_time(disk[0] as f64, disk[1] as f64);
    let mem_over = pct_slower_time(mem[0] as f64, mem[1] as f64);
    println!(
        "  {:<30} {:>14} {:>14} {:>11} {:>12}",
        "", "episodes-only", "dual", "dual cost", "per commit"
    );
    let line = |name: &str, a: f64, b: f64, cost: f64| {
        println!("  {name:<30} {a:>14.2} {b:>14.2} {cost:>9.2} %")
    };
    let ingest_line = |name: &str, runs: &Vec<[f64; 2]>, cost: f64, commit: f64| {
        let (a, b) = (rate(runs, 0), rate(runs, 1));
        println!("  {name:<30} {a:>14.2} {b:>14.2} {cost:>9.2} % {commit:>10.2} %")
    };
    ingest_line(
        "ingest, same episodes (ep/s)",
        &same,
        same_reg,
        commit_extra[0],
    );
    ingest_line(
        "ingest, dual binds (ep/s)",
        &bound,
        ingest_reg,
        commit_extra[2],
    );
    println!(
        "  {:<30} {:>14} {:>14} {concepts_share:>9.2} % of dual's time",
        "  of which storing concepts", "", ""
    );
    ingest_line(
        &format!("  floor: +{BINDING_BYTES} B payload (ep/s)"),
        &padded,
        bytes_floor,
        commit_extra[1],
    );
    line("episode get (ns)", g0, g1, lookup_reg);
    line("top-10 search (ms/query)", r0, r1, recall_reg);
    println!(
        "  {:<30} {:>14} {:>14} {lookup_aa:>9.2} % get, {recall_aa:.2} % search",
        "control: episodes-only copy", "", ""
    );
    line(
        "disk (MB)",
        disk[0] as f64 / 1e6,
        disk[1] as f64 / 1e6,
        disk_over,
    );
    line(
        "resident (MB)",
        mem[0] as f64 / 1e6,
        mem[1] as f64 / 1e6,
        mem_over,
    );
    println!(
        "  (medians of {RUNS} interleaved ingests and {ROUNDS} interleaved read rounds; cost = median of per-run differences; per commit = median over every commit of the extra time over the other engine's commit next to it)"
    );
    report.insert(
        "dual_vs_single".into(),
        json!({
            "episodes": n,
            "concepts": n / PER_CONCEPT,
            "ingest_runs": { "same_workload": same, "with_bindings": bound, "padded_payload": padded },
            "lookup_ns_rounds": gets,
            "recall_ms_rounds": searches,
            "disk_bytes": { "single": disk[0], "dual": disk[1] },
            "resident_bytes": { "single": mem[0], "dual": mem[1] },
            "ingest_regression_pct": ingest_reg,
            "ingest_same_workload_regression_pct": same_reg,
            "ingest_binding_bytes_floor_pct": bytes_floor,
            "ingest_per_commit_pct": {
                "same_workload": commit_extra[0],
                "binding_bytes_floor": commit_extra[1],
                "with_bindings": commit_extra[2],
            },
            "ingest_concepts_share_pct": concepts_share,
            "lookup_regression_pct": lookup_reg,
            "recall_regression_pct": recall_reg,
            "control_copy_lookup_pct": lookup_aa,
            "control_copy_recall_pct": recall_aa,
            "disk_overhead_pct": disk_over,
            "resident_overhead_pct": mem_over,
        }),
    );
    for d in dirs {
        let _ = std::fs::remove_dir_all(d);
    }
    Ok(())
}

/// Copies the files of database directory `from` into a fresh `to`.
fn copy_dir(from: &Path, to: &Path) -> Result<(), BoxError> {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}
