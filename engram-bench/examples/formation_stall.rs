//! How long concept formation and consolidation keep a writer waiting. Loads `n` clustered
//! episodes (768-d, 100 clusters) and runs `Engram::form_concepts` (k = 100); then loads
//! `n / 2` more from the same clusters and runs `Engram::consolidate`. Each runs while a
//! writer thread records one event per `insert_episodes` call (`engram_bench::stall`). One
//! that holds the writer throughout shows a longest call as long as itself.
//! `cargo run --release -p engram-bench --example formation_stall [n] [runs]`
use engram_bench::stall::{self, beside_writer};
use engram_core::cluster::{Count, Params};
use engram_core::{ConsolidationParams, Engram, EpisodeInput, Filter, FormationParams, Options};

fn load(db: &Engram, rows: &[f32]) {
    for chunk in rows.chunks(768 * 1000) {
        let mut tx = db.begin_write().unwrap();
        for row in chunk.chunks_exact(768) {
            let input = EpisodeInput {
                agent: 1,
                timestamp: 0,
                embedding: row,
                payload: b"an event's payload",
                key: None,
            };
            tx.insert_episode(&input).unwrap();
        }
        tx.commit().unwrap();
    }
}

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().expect("a number"));
    let n = args.next().unwrap_or(100_000);
    let runs = args.next().unwrap_or(3);
    let dir = std::env::temp_dir().join("engram-formation-stall");
    let (m, _) = engram_fixtures::clustered(n + n / 2, 100, 768, 1.0, 3);
    let (first, later) = m.data.split_at(n * 768);
    println!(
        "{n} clustered episodes, k = 100, then {} more consolidated; one writer thread, one event per call",
        n / 2
    );
    println!("{}", stall::HEADER);
    let filter = Filter::default();
    for run in 0..runs {
        let _ = std::fs::remove_dir_all(&dir);
        let db = Engram::open(&dir, Options::default()).unwrap();
        load(&db, first);
        beside_writer(&db, "formation", run, || {
            let clustering = Params {
                count: Count::K(100),
                ..Params::default()
            };
            let params = FormationParams {
                filter: &filter,
                unbound_only: true,
                clustering,
                progress: None,
            };
            db.form_concepts(&params).unwrap();
        });
        load(&db, later);
        beside_writer(&db, "consolidate", run, || {
            let params = ConsolidationParams {
                min_similarity: 0.5,
                filter: Filter::default(),
            };
            db.consolidate(&params).unwrap();
        });
        drop(db);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
