//! Resource soak: a million mixed operations (inserts, binds, reads, searches, updates,
//! deletes, network puts, commits, compactions, snapshots opened and dropped) against one
//! database, sampling resident memory and open file descriptors as it goes.

use std::path::Path;
use std::time::Instant;

use engram_core::quant::QuantScheme;
use engram_core::{ConceptInput, Engram, EpisodeInput, Filter, Options, TensorInput};
use engram_fixtures::Rng;
use serde_json::{Value, json};

use super::BoxError;

/// Operations by default; `ENGRAM_SOAK_OPS` sets another count.
const OPS: u64 = 1_000_000;
const DIM: usize = 64;

/// Resident memory in bytes from /proc/self/status: (anonymous — the heap, caches and
/// indexes —, file-backed — mapped database pages the kernel may drop at will).
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("RssAnon:"), field("RssFile:") + field("RssShmem:"))
}

/// Live episodes the workload keeps around: past this, inserts become deletes, so the
/// database reaches a steady size and growth in memory would be a leak.
const STEADY: usize = 60_000;

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}

pub fn soak_job(dir: &Path, report: &mut serde_json::Map<String, Value>) -> Result<(), BoxError> {
    let ops: u64 = std::env::var("ENGRAM_SOAK_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(OPS);
    let sample_every = (ops / 20).max(1);
    println!("\n== resource soak: {ops} mixed operations, {DIM}-d ==");
    super::heap::start();
    let db_dir = dir.join("soak-db");
    let _ = std::fs::remove_dir_all(&db_dir);
    let db = Engram::open(
        &db_dir,
        Options {
            dimension: Some(DIM),
            ..Options::default()
        },
    )?;
    let mut rng = Rng::new(99);
    let mut live: Vec<u64> = Vec::new();
    let mut concepts: Vec<u64> = Vec::new();
    let mut curve = Vec::new();
    let t = Instant::now();
    let mut op = 0u64;
    let (mut compactions, mut commits) = (0u64, 0u64);
    let weights = vec![0.25f32; 32 * 32];
    while op < ops {
        // One transaction of 100 to 400 operations, then reads between transactions.
        let mut tx = db.begin_write()?;
        let n = 100 + rng.next_u64() % 300;
        let mut deleted = Vec::new();
        for _ in 0..n {
            let v: Vec<f32> = (0..DIM).map(|_| rng.uniform() as f32 - 0.5).collect();
            let grow = live.len() < STEADY;
            match rng.next_u64() % 10 {
                0..=4 if grow => live.push(tx.insert_episode(&EpisodeInput {
                    agent: rng.next_u64() % 8,
                    timestamp: op as i64,
                    embedding: &v,
                    payload: b"soak",
                    key: None,
                })?),
                0..=5 if live.len() > 10 => {
                    let i = (rng.next_u64() % live.len() as u64) as usize;
                    let id = live.swap_remove(i);
                    tx.delete_episode(id)?;
                    deleted.push(id);
                }
                6 if concepts.len() >= STEADY / 10 => {
                    let i = (rng.next_u64() % concepts.len() as u64) as usize;
                    tx.delete_concept(concepts.swap_remove(i))?;
                }
                6 => concepts.push(tx.insert_concept(&ConceptInput {
                    centroid: &v,
                    label: "soak",
                })?),
                7 if !concepts.is_empty() && !live.is_empty() => {
                    let e = live[(rng.next_u64() % live.len() as u64) as usize];
                    let c = concepts[(rng.next_u64() % concepts.len() as u64) as usize];
                    tx.bind(e, c, rng.uniform() as f32)?;
                }
                8 if !concepts.is_empty() => {
                    let c = concepts[(rng.next_u64() % concepts.len() as u64) as usize];
                    tx.update_concept(c, &v, None)?;
                }
                _ => {
                    let agent = rng.next_u64() % 64;
                    tx.put_network(
                        agent,
                        "policy",
                        &[TensorInput {
                            name: "w",
                            shape: &[32, 32],
                            data: &weights,
                            importance: None,
                        }],
                        QuantScheme::Q8,
                    )?;
                }
            }
            op += 1;
        }
        tx.commit()?;
        commits += 1;
        // Reads on a fresh snapshot: gets, a search, concept lookups, a network.
        let snap = db.begin_read()?;
        for _ in 0..50 {
            if !live.is_empty() {
                let id = live[(rng.next_u64() % live.len() as u64) as usize];
                std::hint::black_box(snap.episode(id)?.map(|e| e.embedding()[0]));
            }
            if !concepts.is_empty() {
                let c = concepts[(rng.next_u64() % concepts.len() as u64) as usize];
                std::hint::black_box(snap.lookup_concept(c)?);
            }
            op += 2;
        }
        if commits.is_multiple_of(20) {
            let q: Vec<f32> = (0..DIM).map(|_| rng.uniform() as f32).collect();
            std::hint::black_box(snap.search(&q, 10, &Filter::default())?);
            std::hint::black_box(
                snap.network(rng.next_u64() % 64, "policy")?
                    .map(|n| n.bytes()),
            );
        }
        drop(snap);
        if commits.is_multiple_of(200) {
            db.compact()?;
            compactions += 1;
        }
        if op / sample_every > curve.len() as u64 {
            let (anon, file) = rss();
            curve.push(json!({ "ops": op, "rss_anon_mb": anon as f64 / 1e6, "heap_live_mb": super::heap::live() as f64 / 1e6, "rss_file_mb": file as f64 / 1e6, "open_fds": open_fds(), "live_episodes": live.len(), "files_mb": super::dir_bytes(&db_dir)? as f64 / 1e6 }));
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!("  {op} operations in {secs:.1} s: {commits} commits, {compactions} compactions");
    println!(
        "  {:>9} {:>12} {:>12} {:>12} {:>5} {:>9} {:>9}",
        "ops", "RSS anon MB", "heap live MB", "RSS file MB", "fds", "live eps", "files MB"
    );
    let f = |p: &Value, k: &str| p[k].as_f64().unwrap_or(0.0);
    for p in &curve {
        println!(
            "  {:>9} {:>12.1} {:>12.1} {:>12.1} {:>5} {:>9} {:>9.1}",
            p["ops"],
            f(p, "rss_anon_mb"),
            f(p, "heap_live_mb"),
            f(p, "rss_file_mb"),
            p["open_fds"],
            p["live_episodes"],
            f(p, "files_mb")
        );
    }
    drop(db);
    let _ = std::fs::remove_dir_all(&db_dir);
    report.insert("soak.curve".into(), Value::Array(curve));
    report.insert("soak.seconds".into(), json!(secs));
    Ok(())
}
