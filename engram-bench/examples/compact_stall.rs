//! How long a compaction keeps a writer waiting. Loads `n` episodes (768-d, 1,000 per
//! commit), deletes every other one, then compacts while a writer thread records one event
//! per `insert_episodes` call, as an agent does (`engram_bench::stall`). A compaction holding
//! the writer throughout shows a longest call as long as the compaction itself.
//! `cargo run --release -p engram-bench --example compact_stall [n] [runs]`
use engram_bench::stall;
use engram_core::{Engram, EpisodeInput, Options};

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<u64>().expect("a number"));
    let n = args.next().unwrap_or(200_000);
    let runs = args.next().unwrap_or(3) as usize;
    let dir = std::env::temp_dir().join("engram-compact-stall");
    println!("{n} episodes, every other one deleted; one writer thread, one event per call");
    println!("{}", stall::HEADER);
    for run in 0..runs {
        let _ = std::fs::remove_dir_all(&dir);
        let db = Engram::open(&dir, Options::default()).unwrap();
        let mut v = vec![0f32; 768];
        for start in (0..n).step_by(1000) {
            let mut tx = db.begin_write().unwrap();
            for i in start..(start + 1000).min(n) {
                v[(i % 768) as usize] = 1.0 + i as f32;
                let input = EpisodeInput {
                    agent: 1,
                    timestamp: i as i64,
                    embedding: &v,
                    payload: b"an event's payload",
                    key: None,
                };
                tx.insert_episode(&input).unwrap();
            }
            tx.commit().unwrap();
        }
        let mut tx = db.begin_write().unwrap();
        for id in (0..n).step_by(2) {
            tx.delete_episode(id).unwrap();
        }
        tx.commit().unwrap();
        stall::beside_writer(&db, "compaction", run, || db.compact().unwrap());
        drop(db);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
