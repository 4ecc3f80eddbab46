//! Every similarity kernel side by side, 768-d: one pair, one query against 1,000 rows, and
//! (batch kernels) 64 queries against 256 rows.
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use engram_core::Metric;
use engram_core::similarity::{BatchKernel, Kernel, Rows};
use std::hint::black_box;

fn kernels(c: &mut Criterion) {
    let dim = 768;
    let mut rng = engram_fixtures::Rng::new(9);
    let rows: Vec<f32> = (0..1_000 * dim)
        .map(|_| rng.uniform() as f32 - 0.5)
        .collect();
    let q: Vec<f32> = (0..dim).map(|_| rng.uniform() as f32 - 0.5).collect();
    for metric in [Metric::Cosine, Metric::Dot] {
        let mut pair = c.benchmark_group(format!("{metric:?}/pair_768"));
        for k in Kernel::available() {
            pair.bench_function(format!("{k:?}"), |b| {
                b.iter(|| {
                    k.score(metric, black_box(&q), black_box(&rows[..dim]))
                        .unwrap()
                })
            });
        }
        pair.finish();
        let mut batch = c.benchmark_group(format!("{metric:?}/batch_1k_768"));
        batch.throughput(Throughput::Bytes((rows.len() * 4) as u64));
        let mut out = vec![0f32; 1_000];
        for k in Kernel::available() {
            batch.bench_function(format!("{k:?}"), |b| {
                b.iter(|| {
                    k.scores(metric, black_box(&q), Rows::dense(&rows, dim), &mut out)
                        .unwrap()
                })
            });
        }
        batch.finish();
    }
    // Many queries × many rows, both starting on cache lines as in `search_batch`.
    let (m, n) = (64, 256);
    let at = rows.as_ptr().align_offset(64);
    let queries = Rows::dense(&rows[at..at + m * dim], dim);
    let block = Rows::dense(&rows[at + m * dim..at + (m + n) * dim], dim);
    let mut out = vec![0f32; m * n];
    let mut group = c.benchmark_group("dots/64x256_768");
    group.throughput(Throughput::Elements((2 * m * n * dim) as u64)); // FLOPs
    for k in BatchKernel::available() {
        group.bench_function(format!("{k:?}"), |b| {
            b.iter(|| {
                k.dots(black_box(queries), black_box(block), &mut out)
                    .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
