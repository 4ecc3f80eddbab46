//! Every available kernel against the scalar reference.

use std::fmt::Debug;

use proptest::prelude::*;

use super::*;

const METRICS: [Metric; 3] = [Metric::Dot, Metric::Cosine, Metric::L2];

/// Checks `got` against the f64 reference with bounds that hold under cancellation.
fn check(metric: Metric, q: &[f32], rows: Rows<'_>, got: &[f32], want: &[f32], k: impl Debug) {
    for i in 0..rows.len() {
        let r = rows.row(i);
        let mag: f64 = q.iter().zip(r).map(|(a, b)| f64::from(*a * *b).abs()).sum();
        let (g, w) = (f64::from(got[i]), f64::from(want[i]));
        let tol = match metric {
            Metric::Dot => 1e-5 * mag + 1e-30,
            Metric::L2 => 1e-5 * w.abs() + 1e-30,
            Metric::Cosine => 1e-5,
        };
        assert!(
            (g - w).abs() <= tol,
            "{k:?} {metric:?} row {i}: got {g}, want {w} (tol {tol})"
        );
    }
}

fn all_kernels_agree(q: &[f32], data: &[f32], dim: usize, stride: usize) {
    let n = if data.len() < dim {
        0
    } else {
        (data.len() - dim) / stride + 1
    };
    let rows = Rows::new(data, dim, stride, n).unwrap();
    for metric in METRICS {
        let mut want = vec![0f32; n];
        Kernel::Scalar.scores(metric, q, rows, &mut want).unwrap();
        for k in Kernel::available() {
            let mut got = vec![f32::NAN; n];
            k.scores(metric, q, rows, &mut got).unwrap();
            check(metric, q, rows, &got, &want, k);
            for i in 0..n {
                let pair = k.score(metric, q, rows.row(i)).unwrap();
                check(metric, q, rows.slice(i, i + 1), &[pair], &want[i..=i], k);
            }
        }
    }
}

fn vectors(scale: f32) -> impl Strategy<Value = (Vec<f32>, Vec<f32>, usize, usize)> {
    (1usize..200, 0usize..7, 0usize..9).prop_flat_map(move |(dim, pad, rows)| {
        let stride = dim + pad;
        let len = if rows == 0 {
            0
        } else {
            (rows - 1) * stride + dim
        };
        (
            proptest::collection::vec(-1f32..1.0, dim)
                .prop_map(move |v| v.into_iter().map(|x| x * scale).collect()),
            proptest::collection::vec(-1f32..1.0, len)
                .prop_map(move |v| v.into_iter().map(|x| x * scale).collect()),
            Just(dim),
            Just(stride),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn kernels_match_the_reference_on_random_input((q, data, dim, stride) in vectors(1.0)) {
        all_kernels_agree(&q, &data, dim, stride);
    }

    #[test]
    fn kernels_match_the_reference_at_huge_magnitudes((q, data, dim, stride) in vectors(1e15)) {
        all_kernels_agree(&q, &data, dim, stride);
    }

    #[test]
    fn kernels_match_the_reference_at_tiny_magnitudes((q, data, dim, stride) in vectors(1e-15)) {
        all_kernels_agree(&q, &data, dim, stride);
    }
}

/// Rows starting at each of the 16 float offsets in a cache line (the AVX-512 kernel loads
/// a row's first floats up to a line boundary apart), at lengths shorter and longer than
/// that head.
#[test]
fn kernels_agree_at_every_offset_of_a_row_in_its_cache_line() {
    for dim in [1, 3, 15, 16, 17, 64, 79, 768] {
        let buf: Vec<f32> = (0..dim + 16).map(|i| (i % 13) as f32 - 6.0).collect();
        let q: Vec<f32> = (0..dim).map(|i| (i % 7) as f32 * 0.5 - 1.0).collect();
        for offset in 0..16 {
            all_kernels_agree(&q, &buf[offset..offset + dim], dim, dim);
        }
    }
}

#[test]
fn cosine_with_a_zero_vector_is_zero_for_every_kernel() {
    for dim in [1, 7, 8, 16, 33, 768] {
        let zero = vec![0f32; dim];
        let one: Vec<f32> = (0..dim).map(|i| i as f32 + 1.0).collect();
        for k in Kernel::available() {
            assert_eq!(
                k.score(Metric::Cosine, &zero, &one).unwrap(),
                0.0,
                "{k:?} {dim}"
            );
            assert_eq!(
                k.score(Metric::Cosine, &one, &zero).unwrap(),
                0.0,
                "{k:?} {dim}"
            );
            assert_eq!(
                k.score(Metric::Cosine, &zero, &zero).unwrap(),
                0.0,
                "{k:?} {dim}"
            );
            let self_cos = k.score(Metric::Cosine, &one, &one).unwrap();
            assert!((self_cos - 1.0).abs() < 1e-6, "{k:?} {dim}: {self_cos}");
        }
    }
}

#[test]
fn adversarial_cancellation_stays_within_the_bound() {
    // Large terms that cancel exactly: the result is small, the bound scales with Σ|ab|.
    let dim = 768;
    let q: Vec<f32> = (0..dim)
        .map(|i| if i % 2 == 0 { 1e6 } else { -1e6 })
        .collect();
    let r: Vec<f32> = (0..dim).map(|i| 1.0 + (i % 3) as f32 * 1e-3).collect();
    all_kernels_agree(&q, &r, dim, dim);
}

#[test]
fn rows_reject_layouts_that_do_not_fit() {
    let data = vec![0f32; 10];
    assert!(Rows::new(&data, 4, 6, 2).is_some()); // rows at 0 and 6, 6 + 4 = 10
    assert!(Rows::new(&data, 4, 6, 3).is_none());
    assert!(
        Rows::new(&data, 4, 3, 1).is_none(),
        "stride shorter than a row"
    );
    assert_eq!(Rows::dense(&data, 5).len(), 2);
}

#[test]
fn this_targets_simd_path_is_built_and_under_test() {
    let avail = Kernel::available();
    if cfg!(target_arch = "wasm32") {
        assert!(
            avail.contains(&Kernel::Simd128),
            "wasm tests must build with +simd128: {avail:?}"
        );
    }
    if cfg!(target_arch = "x86_64") && is_x86_feature_detected_avx2() {
        assert!(avail.contains(&Kernel::Avx2), "{avail:?}");
    }
}

#[cfg(target_arch = "x86_64")]
fn is_x86_feature_detected_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

#[cfg(not(target_arch = "x86_64"))]
fn is_x86_feature_detected_avx2() -> bool {
    false
}

/// Deterministic values in [-1, 1] (xorshift), for inputs too large for proptest.
fn noise(seed: u64) -> impl FnMut() -> f32 {
    let mut x = seed;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % 2001) as f32 / 1000.0 - 1.0
    }
}

#[test]
fn streaming_sized_row_sets_match_the_reference() {
    // Over 1 MiB of rows: the x86 kernels take their one-row-at-a-time path.
    for (dim, stride) in [(771, 800), (768, 768), (37, 40)] {
        let n = (2 << 20) / (stride * 4) + 3;
        let mut next = noise(0x9E37_79B9);
        let data: Vec<f32> = (0..(n - 1) * stride + dim).map(|_| next()).collect();
        let q: Vec<f32> = (0..dim).map(|_| next()).collect();
        all_kernels_agree(&q, &data, dim, stride);
    }
}

/// Every batch kernel against the f64 reference, pair by pair, with the dot bound of `check`.
fn batch_kernels_agree(queries: Rows<'_>, rows: Rows<'_>) {
    let (m, n) = (queries.len(), rows.len());
    let mut want = vec![0f32; m * n];
    BatchKernel::Scalar.dots(queries, rows, &mut want).unwrap();
    for k in BatchKernel::available() {
        let mut got = vec![f32::NAN; m * n];
        k.dots(queries, rows, &mut got).unwrap();
        for q in 0..m {
            let at = q * n..(q + 1) * n;
            check(
                Metric::Dot,
                queries.row(q),
                rows,
                &got[at.clone()],
                &want[at],
                k,
            );
        }
    }
}

fn batch_input() -> impl Strategy<Value = (Vec<f32>, Vec<f32>, usize, usize, usize)> {
    (1usize..90, 0usize..5, 0usize..11, 0usize..13).prop_flat_map(|(dim, pad, m, n)| {
        let stride = dim + pad;
        let len = if n == 0 { 0 } else { (n - 1) * stride + dim };
        (
            proptest::collection::vec(-1f32..1.0, m * dim),
            proptest::collection::vec(-1f32..1.0, len),
            Just(dim),
            Just(stride),
            Just(n),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn batch_kernels_match_the_reference((q, r, dim, stride, n) in batch_input()) {
        let queries = Rows::dense(&q, dim);
        let rows = Rows::new(&r, dim, stride, n).unwrap();
        batch_kernels_agree(queries, rows);
    }
}

#[test]
fn batch_kernels_match_the_reference_past_a_query_block() {
    // More queries than one L2 block, rows not a multiple of the tile, 768-d and a ragged dim.
    for (dim, stride, m, n) in [(768, 800, 131, 10), (45, 48, 70, 7)] {
        let mut next = noise(0x2545_F491);
        let q: Vec<f32> = (0..m * dim).map(|_| next()).collect();
        let r: Vec<f32> = (0..(n - 1) * stride + dim).map(|_| next()).collect();
        batch_kernels_agree(Rows::dense(&q, dim), Rows::new(&r, dim, stride, n).unwrap());
    }
}

#[test]
fn batch_kernels_refuse_mismatched_shapes() {
    let a = [1f32; 12];
    let (q3, r4) = (Rows::dense(&a[..6], 3), Rows::dense(&a[..8], 4));
    let mut out = vec![0f32; 4];
    for k in BatchKernel::available() {
        assert!(matches!(
            k.dots(q3, r4, &mut out),
            Err(crate::Error::DimensionMismatch {
                expected: 4,
                found: 3
            })
        ));
        let r3 = Rows::dense(&a[..9], 3);
        assert!(matches!(
            k.dots(q3, r3, &mut out),
            Err(crate::Error::InvalidArgument(_))
        ));
        let mut six = vec![0f32; 6];
        k.dots(q3, r3, &mut six).unwrap();
        assert!(six.iter().all(|&x| x == 3.0), "{k:?}: {six:?}");
    }
}

#[test]
fn kernels_refuse_mismatched_lengths() {
    let (a, b) = ([1f32; 4], [1f32; 3]);
    for k in Kernel::available() {
        for metric in METRICS {
            assert!(matches!(
                k.score(metric, &a, &b),
                Err(crate::Error::DimensionMismatch {
                    expected: 4,
                    found: 3
                })
            ));
            let mut one = [0f32];
            assert!(k.scores(metric, &b, Rows::dense(&a, 4), &mut one).is_err());
            assert!(
                k.scores(metric, &a, Rows::dense(&a, 4), &mut [0f32; 2])
                    .is_err()
            );
        }
    }
    assert!(dot(&a, &b).is_err() && cosine(&a, &b).is_err() && l2sq(&a, &b).is_err());
    assert_eq!(dot(&a, &a).unwrap(), 4.0);
}
