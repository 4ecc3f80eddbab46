//! Random episode get (embedding summed), page cache warm, beside the raw fixed-stride map
//! floor over the same file: what the lookup, checks and views cost.
use criterion::{Criterion, criterion_group, criterion_main};
use engram_core::{Engram, EpisodeInput, Options};
use std::hint::black_box;

fn episode_get(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("engram-bench-get-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let n = 50_000u64;
    {
        let db = Engram::open(&dir, Options::default()).unwrap();
        let mut tx = db.begin_write().unwrap();
        let v: Vec<f32> = (0..768).map(|i| i as f32 / 768.0).collect();
        for i in 0..n {
            tx.insert_episode(&EpisodeInput {
                agent: 0,
                timestamp: i as i64,
                embedding: &v,
                payload: b"p",
                key: None,
            })
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let db = Engram::open(&dir, Options::default()).unwrap();
    let snap = db.begin_read().unwrap();
    let mut rng = engram_fixtures::Rng::new(1);
    let mut group = c.benchmark_group("episode_get_50k_768");
    group.bench_function("engram", |b| {
        b.iter(|| {
            let ep = snap.episode(rng.next_u64() % n).unwrap().unwrap();
            black_box(ep.embedding().iter().fold(0f32, |a, x| a + x))
        })
    });
    let eps = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "eps"))
        .unwrap();
    let file = std::fs::File::open(eps).unwrap();
    // SAFETY: the benchmark's own database file; nothing writes it while mapped.
    let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
    group.bench_function("raw_map_floor", |b| {
        b.iter(|| {
            let at = (rng.next_u64() % n) as usize * 3_200;
            let bytes = &map[at..at + 3_072];
            black_box(bytes.chunks_exact(4).fold(0f32, |a, x| {
                a + f32::from_le_bytes([x[0], x[1], x[2], x[3]])
            }))
        })
    });
    group.finish();
    drop((snap, db));
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, episode_get);
criterion_main!(benches);
