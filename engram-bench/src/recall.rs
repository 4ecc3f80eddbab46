//! Recall dynamics: spreading activation (2 hops, fan effect on and off) beside direct exact
//! top-k in one run, on 100k labelled episodes with 1k formed concepts; precision@10 of
//! same-cluster episodes for direct search, recall through concepts and spreading.

use std::path::Path;
use std::time::Instant;

use engram_core::cluster::{Count, Params};
use engram_core::{Cue, Engram, EpisodeInput, Filter, FormationParams, Options, RecallParams};
use engram_fixtures::clustered;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use super::BoxError;

const EPISODES: usize = 100_000;
const CONCEPTS: usize = 1_000;
const DIM: usize = 768;
const QUERIES: usize = 300;

fn timed(
    queries: &[Vec<f32>],
    mut f: impl FnMut(&[f32]) -> Vec<u64>,
) -> (Histogram<u64>, Vec<Vec<u64>>) {
    let mut h = Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid bounds");
    let mut all = Vec::new();
    for q in queries {
        let t = Instant::now();
        let ids = f(q);
        h.record(t.elapsed().as_nanos().max(1) as u64)
            .expect("in range");
        all.push(ids);
    }
    (h, all)
}

pub fn recall_job(dir: &Path, report: &mut serde_json::Map<String, Value>) -> Result<(), BoxError> {
    println!(
        "\n== recall: {EPISODES} labelled episodes (1,000 clusters, spread 2.0), {CONCEPTS} formed concepts, {QUERIES} held-out cues =="
    );
    // The generator's labels are the truth; queries are further points of the same clusters,
    // not stored.
    let (m, labels) = clustered(EPISODES + QUERIES, CONCEPTS, DIM, 2.0, 17);
    let db_dir = dir.join("recall-db");
    let _ = std::fs::remove_dir_all(&db_dir);
    let db = Engram::open(
        &db_dir,
        Options {
            dimension: Some(DIM),
            ..Options::default()
        },
    )?;
    let mut tx = db.begin_write()?;
    for i in 0..EPISODES {
        tx.insert_episode(&EpisodeInput {
            agent: 1,
            timestamp: i as i64,
            embedding: m.row(i),
            payload: b"",
            key: None,
        })?;
    }
    tx.commit()?;
    let t = Instant::now();
    let formed = db.form_concepts(&FormationParams {
        filter: &Filter::default(),
        unbound_only: false,
        clustering: Params {
            count: Count::K(CONCEPTS),
            min_size: 1,
            ..Params::default()
        },
        progress: None,
    })?;
    println!(
        "  formed {} concepts in {:.1} s",
        formed.concepts.len(),
        t.elapsed().as_secs_f64()
    );
    let snap = db.begin_read()?;
    let queries: Vec<Vec<f32>> = (EPISODES..EPISODES + QUERIES)
        .map(|i| m.row(i).to_vec())
        .collect();
    let truth: Vec<u32> = labels[EPISODES..].to_vec();
    let precision = |results: &[Vec<u64>]| -> f64 {
        let hits: usize = results
            .iter()
            .zip(&truth)
            .map(|(ids, &l)| {
                ids.iter()
                    .take(10)
                    .filter(|&&e| labels[e as usize] == l)
                    .count()
            })
            .sum();
        hits as f64 / (10 * results.len()) as f64
    };
    let filter = Filter::default();
    // Warm: every slot checksummed once, pages resident.
    snap.search(&queries[0], 10, &filter)?;
    let (direct, direct_ids) = timed(&queries, |q| {
        snap.search(q, 10, &filter)
            .expect("search")
            .iter()
            .map(|h| h.id)
            .collect()
    });
    let (concepts, concept_ids) = timed(&queries, |q| {
        snap.recall_via_concepts(q, 4, 10)
            .expect("recall")
            .iter()
            .map(|r| r.episode)
            .collect()
    });
    let spread = |alpha: f32| RecallParams {
        k: 10,
        seed_episodes: 10,
        seed_concepts: 4,
        hops: 2,
        fan_alpha: alpha,
        ..RecallParams::default()
    };
    let mut spread_runs = Vec::new();
    // Alternate α = 1 and α = 0 three times so drift hits both alike; keep each one's median run.
    for _ in 0..3 {
        for alpha in [1.0f32, 0.0] {
            let (h, ids) = timed(&queries, |q| {
                let cue = Cue {
                    embedding: q,
                    filter: Filter::default(),
                };
                snap.recall(&cue, &spread(alpha))
                    .expect("recall")
                    .iter()
                    .map(|a| a.episode)
                    .collect()
            });
            spread_runs.push((alpha, h, ids));
        }
    }
    let p99 = |h: &Histogram<u64>| h.value_at_quantile(0.99) as f64 / 1e3;
    let median_p99 = |alpha: f32| {
        let mut v: Vec<f64> = spread_runs
            .iter()
            .filter(|r| r.0 == alpha)
            .map(|r| p99(&r.1))
            .collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (fan_p99, plain_p99) = (median_p99(1.0), median_p99(0.0));
    let fan_ids = &spread_runs[0].2;
    let fan_cost = 100.0 * (fan_p99 / plain_p99 - 1.0);
    let (pd, pc, ps) = (
        precision(&direct_ids),
        precision(&concept_ids),
        precision(fan_ids),
    );
    println!(
        "  {:<44} {:>10} {:>10} {:>14}",
        "", "p50 µs", "p99 µs", "precision@10"
    );
    println!(
        "  {:<44} {:>10.1} {:>10.1} {:>14.3}",
        "direct exact top-10 (search)",
        direct.value_at_quantile(0.5) as f64 / 1e3,
        p99(&direct),
        pd
    );
    println!(
        "  {:<44} {:>10.1} {:>10.1} {:>14.3}",
        "through the 4 nearest concepts",
        concepts.value_at_quantile(0.5) as f64 / 1e3,
        p99(&concepts),
        pc
    );
    println!(
        "  {:<44} {:>10} {:>10.1} {:>14.3}",
        "spreading, 2 hops, fan effect α = 1", "", fan_p99, ps
    );
    println!(
        "  {:<44} {:>10} {:>10.1} {:>14}",
        "spreading, 2 hops, α = 0", "", plain_p99, ""
    );
    println!(
        "  spreading p99 = {:.2}x direct top-k; fan effect costs {fan_cost:+.1} % of p99 (medians of 3 alternating runs)",
        fan_p99 / p99(&direct)
    );
    drop(snap);
    drop(db);
    let _ = std::fs::remove_dir_all(&db_dir);
    report.insert("recall.direct_p99_us".into(), json!(p99(&direct)));
    report.insert("recall.spread_p99_us".into(), json!(fan_p99));
    report.insert("recall.spread_alpha0_p99_us".into(), json!(plain_p99));
    report.insert("recall.fan_effect_cost_pct".into(), json!(fan_cost));
    report.insert(
        "recall.precision_at_10".into(),
        json!({ "direct": pd, "concepts": pc, "spread": ps }),
    );
    Ok(())
}
