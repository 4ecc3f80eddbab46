//! Reading one large payload whose pages are not in the page cache: the first
//! `payload()` of a fresh read-only handle (open included) after the directory's files left
//! the page cache, against reading the same bytes cold with `pread`. Medians of 5, ms.
//! `cargo run --release -p engram-bench --example cold_payload [MiB]`
use std::os::unix::fs::FileExt;
use std::time::Instant;

use engram_bench::lookup::drop_from_page_cache;
use engram_core::{Engram, EpisodeInput, Options};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .map_or(16, |a| a.parse().expect("a size in MiB"));
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/engram-bench/cold-payload");
    let _ = std::fs::remove_dir_all(&dir);
    let payload: Vec<u8> = (0..mib << 20).map(|i| (i * 7 % 251) as u8).collect();
    {
        let db = Engram::open(
            &dir,
            Options {
                dimension: Some(8),
                ..Options::default()
            },
        )
        .unwrap();
        let mut tx = db.begin_write().unwrap();
        let ep = EpisodeInput {
            agent: 0,
            timestamp: 0,
            embedding: &[1.0; 8],
            payload: &payload,
            key: None,
        };
        tx.insert_episode(&ep).unwrap();
        tx.commit().unwrap();
    }
    let heap = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "heap"))
        .unwrap();
    let (mut engram, mut pread) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        drop_from_page_cache(&dir).unwrap();
        let t = Instant::now();
        let db = Engram::open(
            &dir,
            Options {
                read_only: true,
                ..Options::default()
            },
        )
        .unwrap();
        let snap = db.begin_read().unwrap();
        let n = snap.episode(0).unwrap().unwrap().payload().unwrap().len();
        assert_eq!(n, payload.len());
        engram.push(t.elapsed().as_secs_f64() * 1e3);
        drop(snap);
        drop(db);
        drop_from_page_cache(&dir).unwrap();
        let t = Instant::now();
        let f = std::fs::File::open(&heap).unwrap();
        let mut buf = vec![0u8; payload.len()];
        f.read_exact_at(&mut buf, 0).unwrap();
        pread.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "{mib} MiB payload, cold: payload() {:.1} ms; one pread of the same bytes {:.1} ms",
        median(engram),
        median(pread)
    );
}
