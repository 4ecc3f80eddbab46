//! Concept formation: engram's spherical k-means beside faiss's on the same vectors, same k,
//! iterations and threads, in one run; threshold mode; formation through the database; the
//! k-means objective on real sentence embeddings.

use std::path::Path;
use std::time::Instant;

use engram_core::cluster::{self, Clustering, Count, Params, Points, adjusted_rand_index};
use engram_core::{Filter, FormationParams};
use engram_fixtures::{Matrix, Rng, clustered, write_npy_f32};
use serde_json::{Value, json};

use super::{BoxError, cores, episodes_db, python_json};

const N: usize = 100_000;
const DIM: usize = 768;
const ITERATIONS: usize = 20;
const SEED: u64 = 1234;

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool")
}

/// Unit vectors of i.i.d. normal coordinates: no cluster structure at all.
fn random_unit(n: usize, seed: u64) -> Matrix {
    let mut rng = Rng::new(seed);
    let mut data = vec![0f32; n * DIM];
    for row in data.chunks_exact_mut(DIM) {
        row.iter_mut().for_each(|x| *x = rng.normal() as f32);
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        row.iter_mut().for_each(|x| *x /= norm);
    }
    Matrix {
        rows: n,
        dim: DIM,
        data,
    }
}

/// The spherical k-means objective of any centroids, scored one way for both sides: the mean
/// over all points of the cosine to the most similar centroid.
fn objective(points: &Points<'_>, centroids: &[f32]) -> f64 {
    let dim = points.dim();
    let unit: Vec<f32> = centroids
        .chunks_exact(dim)
        .flat_map(|c| {
            let n = c
                .iter()
                .map(|x| x * x)
                .sum::<f32>()
                .sqrt()
                .max(f32::MIN_POSITIVE);
            c.iter().map(move |x| x / n)
        })
        .collect();
    let sims = cluster::nearest_similarities(points, &unit);
    sims.iter().map(|&s| f64::from(s)).sum::<f64>() / sims.len() as f64
}

fn k_params(k: usize, sample: Option<usize>) -> Params {
    Params {
        count: Count::K(k),
        min_size: 1,
        max_iterations: ITERATIONS,
        seed: SEED,
        max_points_per_cluster: sample,
    }
}

fn ours(
    points: &Points<'_>,
    params: &Params,
    threads: usize,
) -> Result<(f64, Clustering), BoxError> {
    let t = Instant::now();
    let c = pool(threads).install(|| cluster::cluster(points, params, None))?;
    Ok((t.elapsed().as_secs_f64(), c))
}

/// faiss's `Kmeans(spherical=True)` on the same vectors: (train seconds, centroids).
fn faiss(
    dir: &Path,
    data: &Path,
    k: usize,
    threads: usize,
    max_points: usize,
) -> Result<(f64, Vec<f32>, String), BoxError> {
    let out_path = dir.join("faiss-centroids.npy");
    let numbers = [k, ITERATIONS, threads, max_points, SEED as usize].map(|v| v.to_string());
    let mut args = vec![data.as_os_str()];
    args.extend(numbers.iter().map(|n| std::ffi::OsStr::new(n.as_str())));
    args.push(out_path.as_os_str());
    let v = python_json("faiss_kmeans.py", &args)?;
    let centroids = engram_fixtures::read_npy_f32(&out_path)?.data;
    let _ = std::fs::remove_file(&out_path);
    Ok((
        v["seconds"].as_f64().unwrap_or(f64::NAN),
        centroids,
        v["faiss_version"].as_str().unwrap_or("?").to_string(),
    ))
}

struct Case<'a> {
    name: &'a str,
    data: &'a Matrix,
    npy: &'a Path,
    k: usize,
    threads: usize,
    /// Training points per centroid (faiss's default 256), or all.
    sample: Option<usize>,
}

pub fn cluster_job(
    dir: &Path,
    real: &Matrix,
    report: &mut serde_json::Map<String, Value>,
) -> Result<(), BoxError> {
    let all = cores();
    println!("\n== concept formation: spherical k-means, {N} x {DIM}, {ITERATIONS} iterations ==");
    let (blobs, truth) = clustered(N, 100, DIM, 1.0, 7);
    let random = random_unit(N, 8);
    let (blobs_npy, random_npy, real_npy) = (
        dir.join("cluster-blobs.npy"),
        dir.join("cluster-random.npy"),
        dir.join("cluster-real.npy"),
    );
    write_npy_f32(&blobs_npy, &blobs)?;
    write_npy_f32(&random_npy, &random)?;
    write_npy_f32(&real_npy, real)?;
    let mut cases = vec![];
    for threads in [1, all] {
        cases.push(Case {
            name: "blobs k=100",
            data: &blobs,
            npy: &blobs_npy,
            k: 100,
            threads,
            sample: None,
        });
    }
    cases.push(Case {
        name: "blobs k=100 sampled 256/c",
        data: &blobs,
        npy: &blobs_npy,
        k: 100,
        threads: all,
        sample: Some(256),
    });
    for threads in [1, all] {
        cases.push(Case {
            name: "random k=100",
            data: &random,
            npy: &random_npy,
            k: 100,
            threads,
            sample: None,
        });
    }
    for threads in [1, all] {
        cases.push(Case {
            name: "blobs k=1000",
            data: &blobs,
            npy: &blobs_npy,
            k: 1000,
            threads,
            sample: None,
        });
    }
    cases.push(Case {
        name: "real-mpnet 10k k=100",
        data: real,
        npy: &real_npy,
        k: 100,
        threads: all,
        sample: None,
    });

    let mut out = serde_json::Map::new();
    let mut faiss_version = None;
    println!(
        "  {:<28} {:>3}  {:>9} {:>9} {:>7}  {:>9} {:>9}  {:>6}",
        "case", "thr", "engram s", "faiss s", "speedup", "engram obj", "faiss obj", "iters"
    );
    for case in &cases {
        let points = Points::dense(&case.data.data, DIM)?;
        let params = k_params(case.k, case.sample);
        let (secs, c) = ours(&points, &params, case.threads)?;
        let obj = objective(&points, &c.centroids);
        let f = faiss(
            dir,
            case.npy,
            case.k,
            case.threads,
            case.sample.unwrap_or(case.data.rows),
        );
        let (f_secs, f_obj) = match &f {
            Ok((s, cen, v)) => {
                faiss_version = Some(v.clone());
                (Some(*s), Some(objective(&points, cen)))
            }
            Err(e) => {
                println!("  faiss not run ({e}); `pip install faiss-cpu numpy` to compare");
                (None, None)
            }
        };
        println!(
            "  {:<28} {:>3}  {:>9.3} {:>9} {:>7}  {:>9.5} {:>9}  {:>6}",
            case.name,
            case.threads,
            secs,
            f_secs.map_or("-".into(), |s| format!("{s:.3}")),
            f_secs.map_or("-".into(), |s| format!("{:.2}x", s / secs)),
            obj,
            f_obj.map_or("-".into(), |o| format!("{o:.5}")),
            c.iterations,
        );
        let mut row = json!({ "seconds": secs, "objective": obj, "iterations": c.iterations, "threads": case.threads });
        if let (Some(s), Some(o)) = (f_secs, f_obj) {
            row["faiss_seconds"] = json!(s);
            row["faiss_objective"] = json!(o);
        }
        if case.name == "blobs k=100" {
            row["ari"] = json!(adjusted_rand_index(&c.labels, &truth));
        }
        out.insert(format!("{} {}t", case.name, case.threads), row);
    }

    // Threshold mode: how many concepts, how fast.
    let points = Points::dense(&blobs.data, DIM)?;
    let threshold = Params {
        count: Count::Threshold { min_coherence: 0.6 },
        min_size: 10,
        max_iterations: ITERATIONS,
        seed: SEED,
        max_points_per_cluster: None,
    };
    for threads in [1, all] {
        let (secs, c) = ours(&points, &threshold, threads)?;
        let ari = adjusted_rand_index(&c.labels, &truth);
        println!(
            "  threshold 0.6 (truth: 100 blobs, coherence 0.707) {threads}t: {secs:.3} s, {} concepts, ARI {ari:.4}, {} iterations",
            c.len(),
            c.iterations
        );
        out.insert(
            format!("threshold {threads}t"),
            json!({ "seconds": secs, "concepts": c.len(), "ari": ari, "iterations": c.iterations }),
        );
    }

    // Through the database: episodes read from the mapped slots, concepts and bindings
    // written and committed.
    let db_dir = dir.join("cluster-db");
    let db = episodes_db(&db_dir, DIM, blobs.data.chunks_exact(DIM))?;
    let filter = Filter::default();
    let t = Instant::now();
    let r = pool(all).install(|| {
        db.form_concepts(&FormationParams {
            filter: &filter,
            unbound_only: false,
            clustering: k_params(100, None),
            progress: None,
        })
    })?;
    let form_s = t.elapsed().as_secs_f64();
    println!(
        "  form_concepts through the database, k=100, {all}t: {form_s:.3} s ({} concepts, {} bindings written and committed)",
        r.concepts.len(),
        r.bound
    );
    drop(db);
    let _ = std::fs::remove_dir_all(&db_dir);
    for p in [&blobs_npy, &random_npy, &real_npy] {
        let _ = std::fs::remove_file(p);
    }

    let get = |name: &str, field: &str| {
        out.get(name)
            .and_then(|r| r.get(field))
            .cloned()
            .unwrap_or(Value::Null)
    };
    report.insert(
        "cluster.kmeans_100k_k100_s".into(),
        get("blobs k=100 1t", "seconds"),
    );
    report.insert(
        "cluster.kmeans_100k_k100_all_s".into(),
        get(&format!("blobs k=100 {all}t"), "seconds"),
    );
    report.insert(
        "cluster.faiss_100k_k100_s".into(),
        get("blobs k=100 1t", "faiss_seconds"),
    );
    report.insert(
        "cluster.faiss_100k_k100_all_s".into(),
        get(&format!("blobs k=100 {all}t"), "faiss_seconds"),
    );
    report.insert(
        "cluster.kmeans_100k_k1000_s".into(),
        get("blobs k=1000 1t", "seconds"),
    );
    report.insert(
        "cluster.kmeans_100k_k1000_all_s".into(),
        get(&format!("blobs k=1000 {all}t"), "seconds"),
    );
    report.insert(
        "cluster.faiss_100k_k1000_s".into(),
        get("blobs k=1000 1t", "faiss_seconds"),
    );
    report.insert(
        "cluster.faiss_100k_k1000_all_s".into(),
        get(&format!("blobs k=1000 {all}t"), "faiss_seconds"),
    );
    report.insert("cluster.ari_synthetic".into(), get("blobs k=100 1t", "ari"));
    report.insert("cluster.form_concepts_100k_k100_s".into(), json!(form_s));
    report.insert("cluster.faiss_version".into(), json!(faiss_version));
    report.insert("cluster.cases".into(), Value::Object(out));
    Ok(())
}
