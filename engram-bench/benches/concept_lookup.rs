//! Concept lookup by id (centroid read fully) over 100,000 concepts under Zipf(1.0) access:
//! a cache hit beside the warm mapped record (cache disabled) it has to beat.
use criterion::{Criterion, criterion_group, criterion_main};
use engram_bench::lookup;
use engram_fixtures::{Access, id_stream, read_npy_f32, real_sample_dir};
use std::hint::black_box;

fn concept_lookup(c: &mut Criterion) {
    let n = 100_000;
    let dir = std::env::temp_dir().join(format!("engram-bench-concepts-{}", std::process::id()));
    let real = read_npy_f32(&real_sample_dir().join("vectors.npy")).unwrap();
    lookup::build_concepts(&dir, n, &real).unwrap();
    let ids = id_stream(n, 1 << 16, Access::Zipf, 5);
    let mut group = c.benchmark_group("concept_lookup_100k_zipf");
    {
        let db = lookup::open(&dir, n).unwrap();
        let snap = db.begin_read().unwrap();
        let mut i = 0;
        group.bench_function("cached", |b| {
            b.iter(|| {
                i = (i + 1) % ids.len();
                black_box(lookup::cached(&snap, ids[i]))
            })
        });
    }
    {
        let db = lookup::open(&dir, 0).unwrap();
        let snap = db.begin_read().unwrap();
        let mut i = 0;
        group.bench_function("warm_mapped", |b| {
            b.iter(|| {
                i = (i + 1) % ids.len();
                black_box(lookup::mapped(&snap, ids[i]))
            })
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, concept_lookup);
criterion_main!(benches);
