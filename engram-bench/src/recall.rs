//! Recall dynamics: spreading activation (2 hops, fan effect on and off) beside direct exact
//! top-k in one run, on 100k labelled episodes with 1k formed concepts; precision@10 of
//! same-cluster episodes for direct search, recall through concepts and spreading.

use std::path::Path;
use std::time::Instant;

use engram_core::cluster::{Count, Params};
use engram_core::{Cue, Filter, FormationParams, RecallParams};
use engram_fixtures::clustered;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use super::{BoxError, episodes_db};

const EPISODES: usize = 100_000;
const CONCEPTS: usize = 1_000;
const DIM: usize = 768;
const QUERIES: usize = 300;

pub fn recall_job(dir: &Path, report: &mut serde_json::Map<String, Value>) -> Result<(), BoxError> {
    println!(
        "\n== recall: {EPISODES} labelled episodes (1,000 clusters, spread 2.0), {CONCEPTS} formed concepts, {QUERIES} held-out cues =="
    );
    // The generator's labels are the truth; queries are further points of the same clusters,
    // not stored.
    let (m, labels) = clustered(EPISODES + QUERIES, CONCEPTS, DIM, 2.0, 17);
    let db_dir = dir.join("recall-db");
    let db = episodes_db(&db_dir, DIM, (0..EPISODES).map(|i| m.row(i)))?;
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
    let spread = |alpha: f32| RecallParams {
        k: 10,
        seed_episodes: 10,
        seed_concepts: 4,
        hops: 2,
        fan_alpha: alpha,
        ..RecallParams::default()
    };
    // Each cue runs all four ways back to back, in an order rotating by cue, so the noise of
    // the exact seed search (which dominates all but the concept route) hits them alike.
    let hist = || Histogram::<u64>::new_with_bounds(1, 100_000_000_000, 3).expect("bounds");
    let mut h = [hist(), hist(), hist(), hist()]; // direct, concepts, spread α = 1, α = 0
    let mut ids: [Vec<Vec<u64>>; 4] = Default::default();
    for (i, q) in queries.iter().enumerate() {
        let cue = Cue {
            embedding: q,
            filter: Filter::default(),
        };
        for step in 0..4 {
            let way = (step + i) % 4;
            let t = Instant::now();
            let found: Vec<u64> = match way {
                0 => snap.search(q, 10, &filter)?.iter().map(|h| h.id).collect(),
                1 => snap
                    .recall_via_concepts(q, 4, 10)?
                    .iter()
                    .map(|r| r.episode)
                    .collect(),
                2 => snap
                    .recall(&cue, &spread(1.0))?
                    .iter()
                    .map(|a| a.episode)
                    .collect(),
                _ => snap
                    .recall(&cue, &spread(0.0))?
                    .iter()
                    .map(|a| a.episode)
                    .collect(),
            };
            h[way].record(t.elapsed().as_nanos().max(1) as u64)?;
            ids[way].push(found);
        }
    }
    let p99 = |h: &Histogram<u64>| h.value_at_quantile(0.99) as f64 / 1e3;
    let p50 = |h: &Histogram<u64>| h.value_at_quantile(0.5) as f64 / 1e3;
    let [direct, concepts, h_fan, h_plain] = &h;
    let (fan_p99, plain_p99) = (p99(h_fan), p99(h_plain));
    let fan_cost = 100.0 * (fan_p99 / plain_p99 - 1.0);
    let [direct_ids, concept_ids, fan_ids, _] = &ids;

    let (pd, pc, ps) = (
        precision(direct_ids),
        precision(concept_ids),
        precision(fan_ids),
    );
    println!(
        "  {:<44} {:>10} {:>10} {:>14}",
        "", "p50 µs", "p99 µs", "precision@10"
    );
    let line = |name: &str, h: &Histogram<u64>, p: Option<f64>| {
        let p = p.map_or(String::new(), |p| format!("{p:.3}"));
        println!("  {name:<44} {:>10.1} {:>10.1} {p:>14}", p50(h), p99(h));
    };
    line("direct exact top-10 (search)", direct, Some(pd));
    line("through the 4 nearest concepts", concepts, Some(pc));
    line("spreading, 2 hops, fan effect α = 1", h_fan, Some(ps));
    line("spreading, 2 hops, α = 0", h_plain, None);
    println!(
        "  spreading p99 = {:.2}x direct top-k; the fan effect costs {fan_cost:+.1} % of p99 (all four ways back to back on each cue)",
        fan_p99 / p99(direct)
    );
    let direct_p99 = p99(direct);
    drop(snap);
    drop(db);
    let _ = std::fs::remove_dir_all(&db_dir);
    report.insert("recall.direct_p99_us".into(), json!(direct_p99));
    report.insert("recall.spread_p99_us".into(), json!(fan_p99));
    report.insert("recall.spread_alpha0_p99_us".into(), json!(plain_p99));
    report.insert("recall.fan_effect_cost_pct".into(), json!(fan_cost));
    report.insert(
        "recall.precision_at_10".into(),
        json!({ "direct": pd, "concepts": pc, "spread": ps }),
    );
    Ok(())
}
