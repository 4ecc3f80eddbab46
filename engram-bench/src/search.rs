//! Similarity kernels and exact search: every kernel beside the scalar reference and the
//! machine's own memory bandwidth, and the store's search beside faiss, in one run.

use std::path::Path;
use std::time::Instant;

use engram_core::similarity::{BatchKernel, Kernel, Rows};
use engram_core::{Engram, EpisodeInput, Filter, Metric, Options};
use engram_fixtures::{Matrix, Rng, clustered, write_npy_f32};
use rayon::prelude::*;
use serde_json::{Value, json};

use super::{BoxError, median, python_json};

const DIM: usize = 768;

/// Seconds per call of `f`, median of `reps` after one warm-up call.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn random_rows(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n * DIM).map(|_| rng.uniform() as f32 - 0.5).collect()
}

/// A sum with 64 independent accumulators: its adds run far faster than memory delivers
/// (an 8-accumulator loop at baseline SSE2 tops out near memory speed and under-reads it).
fn stream_sum(v: &[f32]) -> f32 {
    let mut acc = [0f32; 64];
    for c in v.chunks_exact(64) {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum()
}

/// Read bandwidth of a plain streaming sum over `data` (8 accumulators), on `threads` cores.
fn stream_bandwidth(data: &[f32], threads: usize) -> Result<f64, BoxError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let secs = pool.install(|| {
        time(5, || {
            let s: f32 = data.par_chunks(1 << 16).map(stream_sum).sum();
            std::hint::black_box(s);
        })
    });
    Ok(data.len() as f64 * 4.0 / secs)
}

pub(super) fn kernels_job(report: &mut serde_json::Map<String, Value>) -> Result<(), BoxError> {
    println!("\nsimilarity kernels, 768-d f32, one query against many rows (1 thread)");
    let small_n = 1_000;
    let big_n = 200_000;
    let small = random_rows(small_n, 1);
    let big = random_rows(big_n, 2);
    let query = random_rows(1, 3);
    let bw1 = stream_bandwidth(&big, 1)?;
    let bw_all = stream_bandwidth(&big, rayon::current_num_threads())?;
    println!(
        "  memory read bandwidth (streaming sum over {:.0} MB): {:.1} GB/s on 1 core, {:.1} GB/s on {}",
        big.len() as f64 * 4e-6,
        bw1 / 1e9,
        bw_all / 1e9,
        rayon::current_num_threads()
    );
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let mut table = serde_json::Map::new();
    let mut scalar_ns = [0f64; 2];
    for metric in [Metric::Dot, Metric::Cosine] {
        for kernel in Kernel::available() {
            let mut row = serde_json::Map::new();
            for (name, data, n) in [("cached_1k", &small, small_n), ("memory_200k", &big, big_n)] {
                let rows = Rows::dense(data, DIM);
                let mut out = vec![0f32; n];
                let reps = if kernel == Kernel::Scalar { 3 } else { 9 };
                let secs = one.install(|| {
                    time(reps, || {
                        kernel
                            .scores(metric, &query, rows, &mut out)
                            .expect("shapes built above");
                    })
                });
                let ns = secs * 1e9 / n as f64;
                let gbs = n as f64 * DIM as f64 * 4.0 / secs / 1e9;
                row.insert(format!("{name}_ns_per_pair"), json!(ns));
                row.insert(format!("{name}_gb_s"), json!(gbs));
                if kernel == Kernel::Scalar {
                    scalar_ns[usize::from(name == "memory_200k")] = ns;
                }
                let speedup = scalar_ns[usize::from(name == "memory_200k")] / ns;
                println!(
                    "  {metric:?} {kernel:<8?} {name:<12} {ns:8.1} ns/pair {gbs:6.1} GB/s  {speedup:5.1}x scalar{}",
                    if name == "memory_200k" {
                        format!("  {:3.0} % of bandwidth", 100.0 * gbs * 1e9 / bw1)
                    } else {
                        String::new()
                    }
                );
            }
            table.insert(
                format!("{metric:?}_{kernel:?}").to_lowercase(),
                Value::Object(row),
            );
        }
    }
    let best_kernel = Kernel::best();
    let key = |m: &str, k: Kernel, f: &str| {
        table[&format!("{m}_{k:?}").to_lowercase()][f]
            .as_f64()
            .unwrap_or(0.0)
    };
    let speedup = key("cosine", Kernel::Scalar, "cached_1k_ns_per_pair")
        / key("cosine", best_kernel, "cached_1k_ns_per_pair");
    let fraction = key("cosine", best_kernel, "memory_200k_gb_s") * 1e9 / bw1;
    println!(
        "  dispatch picks {best_kernel:?}: {speedup:.1}x scalar (cached), {:.0} % of 1-core bandwidth (memory-bound)",
        100.0 * fraction
    );
    let batch = batch_kernels(&one)?;
    report.insert(
        "similarity".into(),
        json!({
            "batch": batch,
            "kernels": table,
            "bandwidth_1core_gb_s": bw1 / 1e9,
            "bandwidth_all_gb_s": bw_all / 1e9,
            "best_kernel": format!("{best_kernel:?}"),
            "speedup_vs_scalar": speedup,
            "bandwidth_fraction": fraction,
        }),
    );
    Ok(())
}

/// Many queries against many rows (`BatchKernel::dots`, the core of batched search and of
/// k-means): 1,000 queries × 1,024 rows × 768 on one thread, each kernel in GFLOP/s beside
/// this core's FMA peak. Operands start on cache lines, as the store's slots and the packed
/// queries of `search_batch` do.
fn batch_kernels(one: &rayon::ThreadPool) -> Result<Value, BoxError> {
    let (m, n) = (1_000, 1_024);
    let q = random_rows(m + 1, 4);
    let r = random_rows(n + 1, 5);
    let (qa, ra) = (q.as_ptr().align_offset(64), r.as_ptr().align_offset(64));
    let queries = Rows::dense(&q[qa..qa + m * DIM], DIM);
    let rows = Rows::dense(&r[ra..ra + n * DIM], DIM);
    let peak = fma_peak();
    println!(
        "  batch: {m} queries x {n} rows (1 thread); FMA peak of this core {:.0} GFLOP/s",
        peak / 1e9
    );
    let mut out = vec![0f32; m * n];
    let mut table = serde_json::Map::new();
    for kernel in BatchKernel::available() {
        // The f64 reference is ~50x slower: a tenth of the queries.
        let m = if kernel == BatchKernel::Scalar {
            m / 10
        } else {
            m
        };
        let queries = queries.slice(0, m);
        let out = &mut out[..m * n];
        let reps = if kernel == BatchKernel::Scalar { 1 } else { 7 };
        let secs = one.install(|| {
            time(reps, || {
                kernel.dots(queries, rows, out).expect("shapes built above");
            })
        });
        let flops = 2.0 * (m * n * DIM) as f64 / secs;
        let ns = secs * 1e9 / (m * n) as f64;
        println!(
            "  batch {:<15} {ns:6.2} ns/pair {:7.1} GFLOP/s{}",
            format!("{kernel:?}"),
            flops / 1e9,
            if peak > 0.0 {
                format!(" {:4.0} % of peak", 100.0 * flops / peak)
            } else {
                String::new()
            }
        );
        table.insert(
            format!("{kernel:?}").to_lowercase(),
            json!({ "ns_per_pair": ns, "gflops": flops / 1e9 }),
        );
    }
    let best = BatchKernel::best();
    let gflops = |k: BatchKernel| table[&format!("{k:?}").to_lowercase()]["gflops"].as_f64();
    let vs_crate = gflops(best).zip(gflops(BatchKernel::MatrixMultiply));
    if let Some((b, mm)) = vs_crate {
        println!(
            "  batch dispatch picks {best:?}: {:.2}x matrixmultiply",
            b / mm
        );
    }
    Ok(json!({
        "kernels": table,
        "best": format!("{best:?}"),
        "fma_peak_gflops": peak / 1e9,
        "speedup_vs_matrixmultiply": vs_crate.map(|(b, mm)| b / mm),
    }))
}

/// FLOP/s of independent fused multiply-adds in registers on one core: the ceiling for
/// the batch kernels (AVX-512 where present, else AVX2+FMA, else 0).
fn fma_peak() -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        const CHAINS: usize = 12;
        let iters = 20_000_000u64;
        if is_x86_feature_detected!("avx512f") {
            #[target_feature(enable = "avx512f")]
            fn run(iters: u64) -> f32 {
                let mut a = [_mm512_set1_ps(1.0); CHAINS];
                let (m, c) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
                for _ in 0..iters {
                    for x in a.iter_mut() {
                        *x = _mm512_fmadd_ps(*x, m, c);
                    }
                }
                a.iter().map(|v| _mm512_reduce_add_ps(*v)).sum()
            }
            // SAFETY: AVX-512F is present (checked just above).
            let secs = time(3, || {
                std::hint::black_box(unsafe { run(iters) });
            });
            return (iters * CHAINS as u64 * 32) as f64 / secs;
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            #[target_feature(enable = "avx2,fma")]
            fn run(iters: u64) -> f32 {
                let mut a = [_mm256_set1_ps(1.0); CHAINS];
                let (m, c) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
                for _ in 0..iters {
                    for x in a.iter_mut() {
                        *x = _mm256_fmadd_ps(*x, m, c);
                    }
                }
                let mut s = [0f32; 8];
                let sum = a
                    .iter()
                    .fold(_mm256_setzero_ps(), |s, v| _mm256_add_ps(s, *v));
                // SAFETY: `s` holds the eight floats stored.
                unsafe { _mm256_storeu_ps(s.as_mut_ptr(), sum) };
                s.iter().sum()
            }
            // SAFETY: AVX2 and FMA are present (checked just above).
            let secs = time(3, || {
                std::hint::black_box(unsafe { run(iters) });
            });
            return (iters * CHAINS as u64 * 16) as f64 / secs;
        }
    }
    0.0
}

fn build_db(dir: &Path, data: &Matrix) -> Result<Engram, BoxError> {
    let _ = std::fs::remove_dir_all(dir);
    let db = Engram::open(
        dir,
        Options {
            int8_mirror: Some(true),
            ..Options::default()
        },
    )?;
    for start in (0..data.rows).step_by(10_000) {
        let mut tx = db.begin_write()?;
        for i in start..(start + 10_000).min(data.rows) {
            tx.insert_episode(&EpisodeInput {
                agent: 0,
                timestamp: i as i64,
                embedding: data.row(i),
                payload: b"",
                key: None,
            })?;
        }
        tx.commit()?;
    }
    Ok(db)
}

pub(super) fn search_job(
    dir: &Path,
    report: &mut serde_json::Map<String, Value>,
) -> Result<(), BoxError> {
    let n = 100_000;
    println!("\nexact search, {n} x 768 clustered unit vectors (cosine), top-10");
    let (data, _) = clustered(n, 1_000, DIM, 0.8, 21);
    let (queries, _) = clustered(1_000, 1_000, DIM, 0.8, 22);
    let db = build_db(&dir.join("search-db"), &data)?;
    let snap = db.begin_read()?;
    let filter = Filter::default();
    let all = rayon::current_num_threads();
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let first = Instant::now();
    snap.search(queries.row(0), 10, &filter)?;
    let first_ms = first.elapsed().as_secs_f64() * 1e3;
    let single = |pool: Option<&rayon::ThreadPool>| -> Result<f64, BoxError> {
        let mut t = Vec::new();
        for i in 0..30 {
            let s = Instant::now();
            match pool {
                Some(p) => p.install(|| snap.search(queries.row(i), 10, &filter))?,
                None => snap.search(queries.row(i), 10, &filter)?,
            };
            t.push(s.elapsed().as_secs_f64() * 1e3);
        }
        Ok(median(t))
    };
    let ms_1t = single(Some(&one))?;
    let ms_all = single(None)?;
    let qrefs: Vec<&[f32]> = (0..queries.rows).map(|i| queries.row(i)).collect();
    let batch = |pool: Option<&rayon::ThreadPool>| -> Result<(f64, Vec<Vec<u64>>), BoxError> {
        let mut t = Vec::new();
        let mut ids = Vec::new();
        for _ in 0..3 {
            let s = Instant::now();
            let r = match pool {
                Some(p) => p.install(|| snap.search_batch(&qrefs, 10, &filter))?,
                None => snap.search_batch(&qrefs, 10, &filter)?,
            };
            t.push(s.elapsed().as_secs_f64());
            ids = r.iter().map(|h| h.iter().map(|x| x.id).collect()).collect();
        }
        Ok((qrefs.len() as f64 / median(t), ids))
    };
    let (qps_1t, batch_ids) = batch(Some(&one))?;
    let (qps_all, _) = batch(None)?;
    // The int8 mirror: codes scanned, 100 candidates rescored in f32.
    snap.search_int8(queries.row(0), 10, &filter, 100)?; // first pass verifies row checksums
    let mut t8 = Vec::new();
    for i in 0..30 {
        let s = Instant::now();
        one.install(|| snap.search_int8(queries.row(i), 10, &filter, 100))?;
        t8.push(s.elapsed().as_secs_f64() * 1e3);
    }
    let int8_ms_1t = median(t8);
    drop(snap);
    drop(db);
    let (cold_ms, cold_floor_ms) = cold_first_query(&dir.join("search-db"), queries.row(0))?;
    let (recall, recall_set, truth_recall) = int8_recall(dir)?;
    println!("  first query (verifies every slot's checksum once): {first_ms:.1} ms");
    println!(
        "  first query of a fresh handle, page cache emptied: {cold_ms:.0} ms (median of 3); floor: reading the slot file front to back, {cold_floor_ms:.0} ms"
    );
    println!(
        "  int8 mirror, one query on 1 thread: {int8_ms_1t:.2} ms ({:.2}x faster than the f32 scan); recall@10 vs exact f32 on {recall_set}: {recall:.4}",
        ms_1t / int8_ms_1t
    );
    if let Some(t) = truth_recall {
        println!("  exact f32 search vs the fixture's float64 ground truth: recall@10 {t:.4}");
    }
    println!("  one query:  {ms_1t:.2} ms on 1 thread, {ms_all:.2} ms on {all}");
    println!("  1,000-query batch: {qps_1t:.0} q/s on 1 thread, {qps_all:.0} q/s on {all}");
    let mut search = json!({
        "top10_100k_ms_1t": ms_1t,
        "top10_100k_ms_all": ms_all,
        "first_query_ms": first_ms,
        "cold_first_query_ms": cold_ms,
        "cold_slot_file_read_ms": cold_floor_ms,
        "batch_qps_1t": qps_1t,
        "batch_qps_all": qps_all,
        "threads_all": all,
        "int8_top10_100k_ms_1t": int8_ms_1t,
        "int8_speedup_vs_f32_1t": ms_1t / int8_ms_1t,
        "int8_recall_at_10": recall,
        "int8_recall_set": recall_set,
        "f32_recall_vs_truth": truth_recall,
    });
    match faiss(dir, &data, &queries) {
        Ok(f) => {
            let g = |k: &str| f[k].as_f64().unwrap_or(f64::NAN);
            let agree = f["ids"].as_array().map_or(0.0, |rows| {
                let same: usize = rows
                    .iter()
                    .zip(&batch_ids)
                    .map(|(r, ours)| {
                        r.as_array().map_or(0, |r| {
                            r.iter()
                                .filter(|x| ours.contains(&x.as_u64().unwrap_or(u64::MAX)))
                                .count()
                        })
                    })
                    .sum();
                same as f64 / (rows.len() * 10) as f64
            });
            println!(
                "  faiss {} IndexFlatIP: one query {:.2} ms (1t) / {:.2} ms ({all}t); batch {:.0} q/s (1t) / {:.0} q/s ({all}t); top-10 agreement with engram {:.3}",
                f["faiss_version"],
                g("top10_ms_1t"),
                g("top10_ms_all"),
                g("batch_qps_1t"),
                g("batch_qps_all"),
                agree
            );
            println!(
                "  engram vs faiss: one query {:.2}x (1t) {:.2}x ({all}t) faster; batch {:.2}x (1t) {:.2}x ({all}t)",
                g("top10_ms_1t") / ms_1t,
                g("top10_ms_all") / ms_all,
                qps_1t / g("batch_qps_1t"),
                qps_all / g("batch_qps_all")
            );
            search["faiss"] = f.clone();
            search["faiss_top10_agreement"] = json!(agree);
            search["top10_vs_faiss_1t"] = json!(g("top10_ms_1t") / ms_1t);
            search["batch_qps_vs_faiss"] = json!(qps_1t / g("batch_qps_1t"));
            search["batch_qps_vs_faiss_all"] = json!(qps_all / g("batch_qps_all"));
        }
        Err(e) => println!("  faiss not run ({e}); `pip install faiss-cpu numpy` to compare"),
    }
    report.insert("search".into(), search);
    Ok(())
}

/// The first search of a handle opened after the database's files left the page cache
/// (open included), and the floor: reading its slot file front to back, also cold. Medians
/// of 3 in ms.
fn cold_first_query(db: &Path, query: &[f32]) -> Result<(f64, f64), BoxError> {
    use std::io::Read;
    let slots = std::fs::read_dir(db)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "eps"))
        .ok_or("no .eps file")?;
    let evict = |d: &Path| engram_bench::lookup::drop_from_page_cache(d).map_err(|e| e.to_string());
    let (mut query_ms, mut read_ms) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        evict(db)?;
        let t = Instant::now();
        let handle = Engram::open(db, Options::default())?;
        handle.begin_read()?.search(query, 10, &Filter::default())?;
        query_ms.push(t.elapsed().as_secs_f64() * 1e3);
        drop(handle);
        evict(db)?;
        let t = Instant::now();
        let mut f = std::fs::File::open(&slots)?;
        let mut buf = vec![0u8; 8 << 20];
        while f.read(&mut buf)? > 0 {}
        read_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok((median(query_ms), median(read_ms)))
}

/// recall@10 of `search_int8` against exact f32 search on real sentence embeddings: the full
/// 10k fixture beside the repository when present (`../shared`), else the shipped sample.
/// Also, on the full fixture, exact search against its float64 ground truth.
fn int8_recall(dir: &Path) -> Result<(f64, String, Option<f64>), BoxError> {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/real-mpnet");
    let (src, name) = if shared.join("vectors.npy").exists() {
        (shared, "real-mpnet (10k, ../shared)")
    } else {
        (
            engram_fixtures::real_sample_dir(),
            "real-mpnet-sample (4k, shipped)",
        )
    };
    let data = engram_fixtures::read_npy_f32(&src.join("vectors.npy"))?;
    let queries = engram_fixtures::read_npy_f32(&src.join("queries.npy"))?;
    let db = build_db(&dir.join("recall-db"), &data)?;
    let snap = db.begin_read()?;
    let truth: Option<Vec<Vec<u64>>> = std::fs::read_to_string(src.join("truth_top10.tsv"))
        .ok()
        .map(|t| {
            t.lines()
                .map(|l| {
                    l.split('\t')
                        .nth(1)
                        .unwrap_or("")
                        .split(',')
                        .filter_map(|x| x.parse().ok())
                        .collect()
                })
                .collect()
        });
    let (mut hit, mut truth_hit, mut total) = (0usize, 0usize, 0usize);
    for qi in 0..queries.rows {
        let q = queries.row(qi);
        let exact: Vec<u64> = snap
            .search(q, 10, &Filter::default())?
            .iter()
            .map(|h| h.id)
            .collect();
        let approx = snap.search_int8(q, 10, &Filter::default(), 100)?;
        hit += approx.iter().filter(|h| exact.contains(&h.id)).count();
        if let Some(t) = truth.as_ref().and_then(|t| t.get(qi)) {
            truth_hit += exact.iter().filter(|id| t.contains(id)).count();
        }
        total += exact.len();
    }
    let truth_recall = truth.map(|_| truth_hit as f64 / total as f64);
    Ok((hit as f64 / total as f64, name.to_string(), truth_recall))
}

/// Runs `faiss_flat.py` on the same vectors; its JSON line.
fn faiss(dir: &Path, data: &Matrix, queries: &Matrix) -> Result<Value, BoxError> {
    let (d, q) = (dir.join("search-data.npy"), dir.join("search-queries.npy"));
    write_npy_f32(&d, data)?;
    write_npy_f32(&q, queries)?;
    let out = python_json("faiss_flat.py", &[d.as_os_str(), q.as_os_str()]);
    let _ = (std::fs::remove_file(&d), std::fs::remove_file(&q));
    out
}
