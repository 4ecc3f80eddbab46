//! Cost of `bind` inside a write transaction: 1,000 inserts with and without a bind each,
//! alternating, transactions dropped (no I/O beyond the appenders' buffers).
use engram_core::{ConceptInput, Engram, EpisodeInput, Options};
use std::time::Instant;

fn main() {
    let dir = std::env::temp_dir().join("engram-bind-cost");
    let _ = std::fs::remove_dir_all(&dir);
    let db = Engram::open(&dir, Options::default()).unwrap();
    let v: Vec<f32> = (0..768).map(|i| i as f32 / 768.0).collect();
    let mut tx = db.begin_write().unwrap();
    for c in 0..1000 {
        tx.insert_concept(&ConceptInput {
            centroid: &v,
            label: &format!("c{c}"),
        })
        .unwrap();
    }
    tx.commit().unwrap();
    let mut t = [Vec::new(), Vec::new()];
    for round in 0..200 {
        let bind = round % 2 == 1;
        let mut tx = db.begin_write().unwrap();
        let s = Instant::now();
        for id in 0..1000u64 {
            let e = tx
                .insert_episode(&EpisodeInput {
                    agent: 7,
                    timestamp: 0,
                    embedding: &v,
                    payload: b"p",
                    key: None,
                })
                .unwrap();
            if bind {
                tx.bind(e, id % 1000, 0.8).unwrap();
            }
        }
        t[bind as usize].push(s.elapsed().as_nanos() as f64 / 1000.0);
        drop(tx);
    }
    for v in &mut t {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "insert {:.0} ns, insert+bind {:.0} ns (medians)",
        t[0][50], t[1][50]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
