//! Episode gets of ids held in node-table runs, against the same number held in a dense
//! table, at the runs' worst: one id in five kept, so after compaction each kept id is a
//! run of its own (a gap of four is past `MAX_GAP`). Both databases hold the same episodes'
//! bytes; only the table's layout differs. Random gets of kept ids, page cache warm.
//! `cargo run --release -p engram-bench --example table_runs [kept]`
use std::time::Instant;

use engram_core::{Engram, EpisodeInput, Options};

const DIM: usize = 64;

/// A compacted database keeping `kept` episodes: ids 0.. (dense), or every fifth id.
fn build(dir: &std::path::Path, kept: u64, sparse: bool) -> (Engram, Vec<u64>) {
    let _ = std::fs::remove_dir_all(dir);
    let opts = Options {
        dimension: Some(DIM),
        ..Options::default()
    };
    let db = Engram::open(dir, opts).unwrap();
    let v: Vec<f32> = (0..DIM).map(|i| 1.0 + i as f32).collect();
    let total = if sparse { kept * 5 } else { kept };
    let mut tx = db.begin_write().unwrap();
    for _ in 0..total {
        let ep = EpisodeInput {
            agent: 0,
            timestamp: 0,
            embedding: &v,
            payload: b"p",
            key: None,
        };
        tx.insert_episode(&ep).unwrap();
    }
    tx.commit().unwrap();
    let mut tx = db.begin_write().unwrap();
    let ids: Vec<u64> = (0..total).filter(|id| !sparse || id % 5 == 0).collect();
    for id in (0..total).filter(|id| sparse && id % 5 != 0) {
        tx.delete_episode(id).unwrap();
    }
    tx.commit().unwrap();
    db.compact().unwrap();
    (db, ids)
}

fn table_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "etab"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

fn main() {
    let kept: u64 = std::env::args()
        .nth(1)
        .map_or(20_000, |a| a.parse().unwrap());
    let dir = std::env::temp_dir().join("engram-table-runs");
    for round in 1..=3 {
        for sparse in [false, true] {
            let (db, ids) = build(&dir, kept, sparse);
            let snap = db.begin_read().unwrap();
            let mut x = 88_172_645_463_325_252u64;
            let order: Vec<u64> = (0..1_000_000)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    ids[(x % ids.len() as u64) as usize]
                })
                .collect();
            let mut sum = 0f32;
            let mut get = |id| sum += snap.episode(id).unwrap().unwrap().embedding()[0];
            order[..100_000].iter().for_each(|&id| get(id));
            let t = Instant::now();
            order.iter().for_each(|&id| get(id));
            let ns = t.elapsed().as_nanos() as f64 / order.len() as f64;
            println!(
                "round {round} {}: {} kept, table {} bytes, get {ns:.1} ns mean",
                if sparse { "runs " } else { "dense" },
                ids.len(),
                table_bytes(&dir),
            );
            std::hint::black_box(sum);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
