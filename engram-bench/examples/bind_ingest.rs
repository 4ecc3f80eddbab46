//! Where binding ingest's extra time goes: the episodes-only engine and the dual engine
//! binding every episode (to one of N/100 committed concepts) ingest the same episodes,
//! 1,000 per commit, in turn (each goes first in alternate commits, as in the dual job), with
//! building the transaction and committing it timed apart. Prints per-run totals and the
//! median over commits of the dual engine's extra time per episode.
//! `cargo run --release -p engram-bench --example bind_ingest [N] [runs]`
use engram_core::{ConceptInput, Engram, EpisodeInput, Options};
use std::time::Instant;

const COMMIT: u64 = 1_000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map_or(100_000, |a| a.parse().unwrap());
    let runs: usize = args.next().map_or(3, |a| a.parse().unwrap());
    let v: Vec<f32> = (0..768)
        .map(|i| ((i * 7919) % 768) as f32 / 768.0)
        .collect();
    let concepts = (n / 100).max(1);
    for run in 0..runs {
        let dirs = [0, 1].map(|k| std::env::temp_dir().join(format!("engram-bind-ingest-{k}")));
        for d in &dirs {
            let _ = std::fs::remove_dir_all(d);
        }
        let dbs = [0, 1].map(|k| {
            let opts = Options {
                episodes_only: k == 0,
                ..Options::default()
            };
            Engram::open(&dirs[k], opts).unwrap()
        });
        let mut tx = dbs[1].begin_write().unwrap();
        for c in 0..concepts {
            tx.insert_concept(&ConceptInput {
                centroid: &v,
                label: &format!("concept-{c}"),
            })
            .unwrap();
        }
        tx.commit().unwrap();
        // Per engine, per commit: [build, commit] in µs per episode.
        let mut per: [[Vec<f64>; 2]; 2] = Default::default();
        for (i, start) in (0..n).step_by(COMMIT as usize).enumerate() {
            let order = if (i + run) % 2 == 0 { [0, 1] } else { [1, 0] };
            let len = ((start + COMMIT).min(n) - start) as f64;
            for k in order {
                let t = Instant::now();
                let mut tx = dbs[k].begin_write().unwrap();
                for id in start..(start + COMMIT).min(n) {
                    let payload = [id as u8; 64];
                    let e = tx
                        .insert_episode(&EpisodeInput {
                            agent: 7,
                            timestamp: id as i64,
                            embedding: &v,
                            payload: &payload,
                            key: None,
                        })
                        .unwrap();
                    if k == 1 {
                        tx.bind(e, id % concepts, 0.8).unwrap();
                    }
                }
                let c = Instant::now();
                tx.commit().unwrap();
                per[k][0].push((c - t).as_secs_f64() * 1e6 / len);
                per[k][1].push(c.elapsed().as_secs_f64() * 1e6 / len);
            }
        }
        let total = |k: usize| -> f64 { per[k].iter().flatten().sum::<f64>() };
        let extra = |j: usize| {
            median(
                (0..per[0][j].len())
                    .map(|i| per[1][j][i] - per[0][j][i])
                    .collect(),
            )
        };
        println!(
            "run {run}: µs/episode single {:.3} (build {:.3} + commit {:.3}), dual {:.3} ({:.3} + {:.3}); \
             dual's extra, median over commits: build {:+.3}, commit {:+.3}; total {:+.2} %",
            total(0) / per[0][0].len() as f64,
            median(per[0][0].clone()),
            median(per[0][1].clone()),
            total(1) / per[1][0].len() as f64,
            median(per[1][0].clone()),
            median(per[1][1].clone()),
            extra(0),
            extra(1),
            (total(1) / total(0) - 1.0) * 100.0
        );
        drop(dbs);
        for d in &dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
