//! The concept lookup latency report: lookups by id reading the centroid fully, for a cache
//! hit, a warm map (cache disabled, page cache hot) and a cold one (pages dropped), at
//! several database sizes, uniform and Zipf(1.0) access, one thread and all cores.

use std::path::Path;
use std::time::Instant;

use engram_bench::lookup::{self, BoxError};
use engram_core::Stats;
use engram_fixtures::{Access, Matrix, id_stream};
use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};

use super::{cores, dir_bytes, median, warm};

/// Timed lookups per case on one thread (split across threads for the all-core cases).
const SAMPLES: usize = 200_000;
/// Cold lookups per case: each one's record is read from the disk.
const COLD_SAMPLES: usize = 2_000;
/// Lookups through the 10 % cache: half to fill it, half measured.
const HIT_SAMPLES: usize = 2_000_000;

/// Quantiles at which a case's latency CDF is recorded.
const CDF_POINTS: [f64; 24] = [
    0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98,
    0.99, 0.995, 0.998, 0.999, 0.9995, 0.9999, 1.0,
];

fn row(name: &str, h: &Histogram<u64>, per_s: f64) -> Value {
    println!(
        "  {name:<34} {:>8} {:>8} {:>8} {:>9} {:>9} {:>12.0}",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        per_s
    );
    json!({
        "p50_ns": h.value_at_quantile(0.5),
        "p90_ns": h.value_at_quantile(0.9),
        "p99_ns": h.value_at_quantile(0.99),
        "p999_ns": h.value_at_quantile(0.999),
        "max_ns": h.max(),
        "samples": h.len(),
        "lookups_per_s": per_s,
        // (fraction, ns) points of the latency CDF, for the plot.
        "cdf": CDF_POINTS.iter().map(|&q| json!([q, h.value_at_quantile(q)])).collect::<Vec<_>>(),
    })
}

fn access_name(a: Access) -> &'static str {
    match a {
        Access::Uniform => "uniform",
        Access::Zipf => "zipf",
    }
}

/// The first `k` distinct ids of a stream, in order: each one's first touch.
fn first_touches(ids: &[u64], k: usize) -> Vec<u64> {
    let mut seen = std::collections::HashSet::new();
    ids.iter()
        .copied()
        .filter(|id| seen.insert(*id))
        .take(k)
        .collect()
}

pub fn concept_job(
    dir: &Path,
    sizes: &[usize],
    real: &Matrix,
    report: &mut Map<String, Value>,
) -> Result<(), BoxError> {
    let all = cores();
    let mut by_size = Map::new();
    let mut headline = Map::new();
    println!(
        "\nconcept lookup by id, centroid read fully (ns; 768-d; {all} cores; one run; medians of runs in docs/benchmarks.md)"
    );
    for &n in sizes {
        let db_dir = dir.join(format!("concepts-{n}"));
        let t = Instant::now();
        lookup::build_concepts(&db_dir, n, real)?;
        println!(
            "\n{n} concepts ({:.1} GB) built in {:.1} s",
            dir_bytes(&db_dir)? as f64 / 1e9,
            t.elapsed().as_secs_f64()
        );
        println!(
            "  {:<34} {:>8} {:>8} {:>8} {:>9} {:>9} {:>12}",
            "case", "p50", "p90", "p99", "p99.9", "max", "lookups/s"
        );
        warm(&db_dir).map_err(|e| e.to_string())?;
        let mut size = Map::new();
        for access in [Access::Zipf, Access::Uniform] {
            let ids = id_stream(n, SAMPLES, access, 11);
            let mut cases = Map::new();
            for threads in [1, all] {
                let t_name = if threads == 1 { "1t" } else { "all" };
                // Cached: an LRU as large as the database, filled by the untimed pass.
                let db = lookup::open(&db_dir, n)?;
                let snap = db.begin_read()?;
                let (h, secs) =
                    lookup::time_threads(&ids, threads, true, |id| lookup::cached(&snap, id));
                let s = db.stats();
                let timed_hits = s.hits;
                if timed_hits < SAMPLES as u64 * 9 / 10 {
                    return Err(format!("cached case missed: {s:?}").into());
                }
                let name = format!("{}/{t_name}/cached", access_name(access));
                cases.insert(
                    format!("cached_{t_name}"),
                    row(&name, &h, ids.len() as f64 / secs),
                );
                drop((snap, db));
                if threads == 1 {
                    for (huge, key, pages) in [
                        (false, "cached_heap_floor_1t", "4 KiB pages"),
                        (true, "cached_heap_floor_huge_1t", "huge pages"),
                    ] {
                        let (h, secs) = lookup::heap_floor(&ids, n, real, huge)?;
                        let per_s = ids.len() as f64 / secs;
                        let name = format!(
                            "{}/1t/cached floor: heap array, {pages}",
                            access_name(access)
                        );
                        cases.insert(key.into(), row(&name, &h, per_s));
                    }
                }
                // Warm: no cache, pages resident and mapped by the untimed pass.
                let db = lookup::open(&db_dir, 0)?;
                let snap = db.begin_read()?;
                let (h, secs) =
                    lookup::time_threads(&ids, threads, true, |id| lookup::mapped(&snap, id));
                let name = format!("{}/{t_name}/warm (no cache)", access_name(access));
                cases.insert(
                    format!("warm_{t_name}"),
                    row(&name, &h, ids.len() as f64 / secs),
                );
                if threads == 1 {
                    let t = Instant::now();
                    let h = lookup::warm_map_floor(&db_dir, &ids, real.dim)?;
                    let per_s = ids.len() as f64 / t.elapsed().as_secs_f64() * 2.0;
                    let name = format!("{}/1t/warm floor: raw map read", access_name(access));
                    cases.insert("warm_map_floor_1t".into(), row(&name, &h, per_s));
                }
            }
            // A cache of 10 % of the concepts, as deployed: hit ratio and the mixed latency,
            // after a warm-up long enough to fill it.
            let db = lookup::open(&db_dir, n / 10)?;
            let snap = db.begin_read()?;
            let long = id_stream(n, HIT_SAMPLES, access, 13);
            let (warm_up, timed) = long.split_at(long.len() / 2);
            warm_up.iter().for_each(|&id| {
                std::hint::black_box(lookup::cached(&snap, id));
            });
            let before = db.stats();
            let t = Instant::now();
            let h = lookup::time_each(timed, |id| lookup::cached(&snap, id));
            let per_s = timed.len() as f64 / t.elapsed().as_secs_f64();
            let ratio = hit_ratio(&before, &db.stats());
            let ideal = ideal_hit_ratio(timed, n / 10);
            let name = format!(
                "{}/1t/cache 10 % ({:.1} % hits, ideal {:.1} %)",
                access_name(access),
                ratio * 100.0,
                ideal * 100.0
            );
            let mut v = row(&name, &h, per_s);
            v["hit_ratio"] = json!(ratio);
            v["ideal_hit_ratio"] = json!(ideal);
            if access == Access::Zipf {
                // The limit of `ideal` for an endless stream: H(n/10) / H(n).
                let h = |m: usize| (1..=m).map(|r| 1.0 / r as f64).sum::<f64>();
                v["zipf_bound"] = json!(h(n / 10) / h(n));
            }
            cases.insert("cache10_1t".into(), v);
            drop((snap, db));
            // Throughput scaling of the warm path, without per-call clocks.
            let db = lookup::open(&db_dir, 0)?;
            let snap = db.begin_read()?;
            let f = |id| lookup::mapped(&snap, id);
            lookup::throughput(&ids, all, f);
            // Medians of five alternating passes: one pass is a fraction of a second, and a
            // shared machine's hiccup in one of them would decide the ratio.
            let (mut ones, mut manys) = (Vec::new(), Vec::new());
            for _ in 0..5 {
                ones.push(lookup::throughput(&ids, 1, f));
                manys.push(lookup::throughput(&ids, all, f));
            }
            let (one, many) = (median(ones), median(manys));
            println!(
                "  {:<34} 1 thread {one:.0}/s, {all} threads {many:.0}/s: {:.2}x",
                format!("{}/warm scaling", access_name(access)),
                many / one
            );
            cases.insert(
                "warm_scaling".into(),
                json!({ "threads": all, "one_per_s": one, "all_per_s": many, "speedup": many / one }),
            );
            drop((snap, db));
            // Cold: the database's pages dropped, then a fresh handle opened (as a new
            // process would); each timed lookup is the first touch of its concept.
            let cold_ids = first_touches(&ids, COLD_SAMPLES);
            for threads in [1, all] {
                let t_name = if threads == 1 { "1t" } else { "all" };
                lookup::drop_from_page_cache(&db_dir)?;
                let resident = lookup::resident_pages(&db_dir)?;
                let db = lookup::open(&db_dir, 0)?;
                let snap = db.begin_read()?;
                let (h, secs) =
                    lookup::time_threads(&cold_ids, threads, false, |id| lookup::mapped(&snap, id));
                let name = format!(
                    "{}/{t_name}/cold ({resident} pages left)",
                    access_name(access)
                );
                let mut v = row(&name, &h, cold_ids.len() as f64 / secs);
                v["resident_pages_after_drop"] = json!(resident);
                cases.insert(format!("cold_{t_name}"), v);
            }
            let t = Instant::now();
            let h = lookup::cold_pread_floor(&db_dir, &cold_ids)?;
            let per_s = cold_ids.len() as f64 / t.elapsed().as_secs_f64();
            let name = format!("{}/1t/cold floor: one pread", access_name(access));
            cases.insert("cold_pread_floor_1t".into(), row(&name, &h, per_s));
            warm(&db_dir).map_err(|e| e.to_string())?;
            if n == 100_000 && access == Access::Zipf {
                for case in ["cached", "warm", "cold"] {
                    let c = &cases[&format!("{case}_1t")];
                    headline.insert(
                        case.into(),
                        json!({ "p50_ns": c["p50_ns"], "p99_ns": c["p99_ns"], "p999_ns": c["p999_ns"] }),
                    );
                }
                // What each case would cost with no engine at all, same ids, same run.
                let mut floors = Map::new();
                for (name, key) in [
                    ("cached_heap", "cached_heap_floor_1t"),
                    ("cached_heap_huge", "cached_heap_floor_huge_1t"),
                    ("warm_map", "warm_map_floor_1t"),
                    ("cold_pread", "cold_pread_floor_1t"),
                ] {
                    let c = &cases[key];
                    floors.insert(
                        name.into(),
                        json!({ "p50_ns": c["p50_ns"], "p99_ns": c["p99_ns"], "p999_ns": c["p999_ns"] }),
                    );
                }
                headline.insert("floors".into(), Value::Object(floors));
                headline.insert(
                    "zipf_hit_ratio".into(),
                    cases["cache10_1t"]["hit_ratio"].clone(),
                );
                headline.insert(
                    "zipf_ideal_hit_ratio".into(),
                    cases["cache10_1t"]["ideal_hit_ratio"].clone(),
                );
                headline.insert(
                    "zipf_hit_ratio_bound".into(),
                    cases["cache10_1t"]["zipf_bound"].clone(),
                );
                headline.insert(
                    "warm_scaling".into(),
                    cases["warm_scaling"]["speedup"].clone(),
                );
            }
            size.insert(access_name(access).into(), Value::Object(cases));
        }
        by_size.insert(n.to_string(), Value::Object(size));
        let _ = std::fs::remove_dir_all(&db_dir);
    }
    headline.insert("sizes".into(), Value::Object(by_size));
    report.insert("concept_lookup".into(), Value::Object(headline));
    Ok(())
}

fn hit_ratio(before: &Stats, after: &Stats) -> f64 {
    let hits = after.hits - before.hits;
    let lookups = after.lookups - before.lookups;
    hits as f64 / lookups.max(1) as f64
}

/// The hit ratio of a clairvoyant cache of `capacity` entries holding the ids the stream
/// asks for most (first requests of those ids still miss): no policy does better.
fn ideal_hit_ratio(ids: &[u64], capacity: usize) -> f64 {
    let mut counts = std::collections::HashMap::<u64, u64>::new();
    ids.iter()
        .for_each(|&id| *counts.entry(id).or_insert(0) += 1);
    let mut c: Vec<u64> = counts.into_values().collect();
    c.sort_unstable_by(|a, b| b.cmp(a));
    let hits: u64 = c.iter().take(capacity).map(|k| k - 1).sum();
    hits as f64 / ids.len() as f64
}
