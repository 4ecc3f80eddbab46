use proptest::prelude::*;

use super::*;

fn gaussian(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = engram_fixtures::Rng::new(seed);
    (0..n).map(|_| rng.normal() as f32).collect()
}

fn dequant(bytes: &[u8], shape: &[usize], scheme: QuantScheme) -> Vec<f32> {
    let b = Blocks::parse(bytes, shape, scheme.code()).unwrap();
    let mut out = vec![0f32; b.rows() * b.cols()];
    b.dequantize_into(&mut out).unwrap();
    out
}

fn rel_rmse(a: &[f32], b: &[f32]) -> f64 {
    let err: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let sig: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum();
    (err / sig).sqrt()
}

/// The scale of each block of a row-major `rows × cols` tensor, as encoded.
fn block_scales(bytes: &[u8], kind: BlockKind, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let b = &bytes[i * kind.bytes()..];
            half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Every weight is within half a quantization step of its block, plus float rounding:
    /// `q = round(w × fl(1/d))` and `q × d` each round in f32, which with |q| ≤ 127 can
    /// move the result by up to ~127 × 3 ulps of a step (a seed once found 5e-6 of a step).
    #[test]
    fn error_within_half_a_step(
        rows in 1usize..5,
        cols in 1usize..100,
        magnitude in -20i32..20,
        seed in any::<u64>(),
    ) {
        let m = 2f32.powi(magnitude);
        let w: Vec<f32> = gaussian(rows * cols, seed).iter().map(|x| x * m).collect();
        let shape = [rows, cols];
        let bpr = blocks_per_row(cols);
        let max = w.iter().fold(0f32, |a, x| a.max(x.abs()));
        for (scheme, kind) in [(QuantScheme::Q8, BlockKind::Q8), (QuantScheme::Q4, BlockKind::Q4)] {
            let Ok(bytes) = quantize(&w, &shape, scheme, None) else {
                prop_assert!(max > kind.largest(), "{scheme:?} refused {max}");
                continue;
            };
            let back = dequant(&bytes, &shape, scheme);
            let scales = block_scales(&bytes, kind, rows * bpr);
            for (i, (a, b)) in w.iter().zip(&back).enumerate() {
                let (r, c) = (i / cols, i % cols);
                let step = scales[r * bpr + c / BLOCK];
                let rounding = step * 127.0 * 3.0 * f32::EPSILON;
                prop_assert!((a - b).abs() <= step * 0.5 + rounding + f32::MIN_POSITIVE,
                    "{scheme:?}: {a} -> {b}, step {step}");
            }
        }
        let Ok(bytes) = quantize(&w, &shape, QuantScheme::F16, None) else {
            prop_assert!(max > BlockKind::F16.largest());
            return Ok(());
        };
        for (a, b) in w.iter().zip(dequant(&bytes, &shape, QuantScheme::F16)) {
            // Normal f16 range: half an ulp is 2^-11 relative.
            if a.abs() > 6.2e-5 && a.abs() < 65000.0 {
                prop_assert!((a - b).abs() <= a.abs() * 2f32.powi(-11) * (1.0 + 1e-6));
            }
        }
    }
}

#[test]
fn gaussian_weights_relative_rmse() {
    let w = gaussian(128 * 128, 42);
    let shape = [128, 128];
    let q8 = rel_rmse(
        &w,
        &dequant(
            &quantize(&w, &shape, QuantScheme::Q8, None).unwrap(),
            &shape,
            QuantScheme::Q8,
        ),
    );
    let q4 = rel_rmse(
        &w,
        &dequant(
            &quantize(&w, &shape, QuantScheme::Q4, None).unwrap(),
            &shape,
            QuantScheme::Q4,
        ),
    );
    let f16 = rel_rmse(
        &w,
        &dequant(
            &quantize(&w, &shape, QuantScheme::F16, None).unwrap(),
            &shape,
            QuantScheme::F16,
        ),
    );
    eprintln!("relative RMSE on N(0,1) weights: Q8 {q8:.5}, Q4 {q4:.5}, F16 {f16:.6}");
    // Q8_0's layout (32 weights, f16 scale = max/127, no clipping) gives 0.535 % on Gaussian
    // weights (the max of 32 |N(0,1)| averages 2.35, a step of 0.0185); issue #6's 0.5 % goal
    // needs a finer layout, beyond its 27 % size budget (docs/benchmarks.md).
    assert!(q8 <= 0.0055, "Q8 {q8}");
    assert!(q4 <= 0.10, "Q4 {q4}");
    assert!(f16 <= 0.0005, "F16 {f16}");
}

#[test]
fn matvec_equals_dequantize_then_multiply() {
    for (rows, cols) in [(1, 1), (16, 64), (48, 70), (128, 128)] {
        let imp: Vec<f32> = gaussian(rows * cols, 3).iter().map(|x| x.abs()).collect();
        let w = gaussian(rows * cols, rows as u64);
        let x = gaussian(cols, 9);
        let shape = [rows, cols];
        for scheme in [
            QuantScheme::Q8,
            QuantScheme::Q4,
            QuantScheme::F16,
            QuantScheme::Mixed { f16: 0.2, q8: 0.3 },
        ] {
            let bytes = quantize(&w, &shape, scheme, Some(&imp)).unwrap();
            let b = Blocks::parse(&bytes, &shape, scheme.code()).unwrap();
            let dq = dequant(&bytes, &shape, scheme);
            let want: Vec<f64> = (0..rows)
                .map(|r| {
                    (0..cols)
                        .map(|c| f64::from(dq[r * cols + c]) * f64::from(x[c]))
                        .sum()
                })
                .collect();
            let bound: Vec<f64> = (0..rows)
                .map(|r| {
                    (0..cols)
                        .map(|c| f64::from((dq[r * cols + c] * x[c]).abs()))
                        .sum()
                })
                .collect();
            for k in QuantKernel::available() {
                let mut y = vec![0f32; rows];
                b.matvec_with(k, &x, &mut y).unwrap();
                for r in 0..rows {
                    let tol = bound[r] * 1e-5 + 1e-6;
                    assert!(
                        (f64::from(y[r]) - want[r]).abs() <= tol,
                        "{k:?} {scheme:?} {rows}x{cols} row {r}: {} vs {}",
                        y[r],
                        want[r]
                    );
                }
            }
        }
    }
}

#[test]
fn kernels_dequantize_alike() {
    let w = gaussian(8 * 96, 5);
    for scheme in [QuantScheme::Q8, QuantScheme::Q4, QuantScheme::F16] {
        let bytes = quantize(&w, &[8, 96], scheme, None).unwrap();
        let Kinds::Uniform(kind) = Blocks::parse(&bytes, &[8, 96], scheme.code())
            .unwrap()
            .kinds
        else {
            unreachable!()
        };
        for block in bytes.chunks_exact(kind.bytes()) {
            let mut want = [0f32; BLOCK];
            QuantKernel::Scalar.dequantize(kind, block, &mut want);
            for k in QuantKernel::available() {
                let mut got = [0f32; BLOCK];
                k.dequantize(kind, block, &mut got);
                assert_eq!(got, want, "{k:?} {kind:?}");
            }
        }
    }
}

#[test]
fn mixed_scheme_spends_bits_on_important_blocks() {
    let w = gaussian(4 * 64, 7); // 8 blocks
    let mut imp = vec![0f32; 4 * 64];
    imp[..32].fill(9.0); // block 0: most important
    imp[32..64].fill(5.0); // block 1: next
    let bytes = quantize(
        &w,
        &[4, 64],
        QuantScheme::Mixed {
            f16: 0.125,
            q8: 0.125,
        },
        Some(&imp),
    )
    .unwrap();
    assert_eq!(&bytes[..8], &[3, 1, 2, 2, 2, 2, 2, 2]);
    assert_eq!(bytes.len(), 8 + 64 + 34 + 6 * 18);
    let back = dequant(
        &bytes,
        &[4, 64],
        QuantScheme::Mixed {
            f16: 0.125,
            q8: 0.125,
        },
    );
    let err = |r: std::ops::Range<usize>| rel_rmse(&w[r.clone()], &back[r]);
    assert!(err(0..32) < err(32..64) && err(32..64) < err(64..256));
}

#[test]
fn bad_input_is_an_error() {
    assert!(quantize(&[1.0, f32::NAN], &[2], QuantScheme::Q8, None).is_err());
    assert!(quantize(&[1.0; 6], &[2, 2], QuantScheme::Q8, None).is_err());
    assert!(quantize(&[1.0; 4], &[], QuantScheme::Q8, None).is_err());
    assert!(
        quantize(
            &[1.0; 4],
            &[4],
            QuantScheme::Mixed { f16: 0.5, q8: 0.1 },
            None
        )
        .is_err()
    );
    assert!(
        quantize(
            &[1.0; 4],
            &[4],
            QuantScheme::Mixed { f16: 0.9, q8: 0.9 },
            Some(&[1.0; 4])
        )
        .is_err()
    );
    let bytes = quantize(&[1.0; 40], &[40], QuantScheme::Q8, None).unwrap();
    assert!(Blocks::parse(&bytes[..bytes.len() - 1], &[40], 1).is_err());
    assert!(Blocks::parse(&bytes, &[40], 9).is_err());
    let mut mixed = quantize(
        &[1.0; 40],
        &[40],
        QuantScheme::Mixed { f16: 0.0, q8: 0.0 },
        Some(&[0.0; 40]),
    )
    .unwrap();
    mixed[0] = 7;
    assert!(Blocks::parse(&mixed, &[40], 4).is_err());
    let b = Blocks::parse(&bytes, &[40], 1).unwrap();
    assert!(b.matvec(&[0.0; 39], &mut [0.0]).is_err());
    assert!(b.dequantize_into(&mut [0.0; 41]).is_err());
}

#[test]
fn this_targets_simd_path_is_built_and_under_test() {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    assert_eq!(QuantKernel::best(), QuantKernel::Simd128);
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
    {
        assert_eq!(QuantKernel::best(), QuantKernel::Avx2);
    }
    assert!(QuantKernel::available().len() >= 2 || QuantKernel::best() == QuantKernel::Scalar);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// Arbitrary bytes under an arbitrary shape and scheme: a view is refused or works; no
    /// input panics (the catalog's shapes and the pages' bytes come from disk).
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        shape in proptest::collection::vec(0usize..70, 0..3),
        code in 0u8..6,
    ) {
        if let Ok(b) = Blocks::parse(&bytes, &shape, code) {
            let mut out = vec![0f32; b.rows() * b.cols()];
            b.dequantize_into(&mut out).unwrap();
            let x = vec![1.0f32; b.cols()];
            let mut y = vec![0f32; b.rows()];
            for k in QuantKernel::available() {
                b.matvec_with(k, &x, &mut y).unwrap();
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// Blocks of the right size with arbitrary contents (NaN or infinite f16 scales, any
    /// tag): dequantizing and multiplying never panic, and agree with the scalar kernel.
    #[test]
    fn arbitrary_block_contents_never_panic(
        rows in 1usize..5,
        cols in 1usize..80,
        code in 1u8..5,
        seed in any::<u64>(),
    ) {
        let mut rng = engram_fixtures::Rng::new(seed);
        let n = rows * blocks_per_row(cols);
        let mut bytes = Vec::new();
        if code == 4 {
            let tags: Vec<u8> = (0..n).map(|_| 1 + (rng.next_u64() % 3) as u8).collect();
            for &t in &tags {
                let k = BlockKind::from_code(t).unwrap();
                bytes.extend((0..k.bytes()).map(|_| rng.next_u64() as u8));
            }
            let mut all = tags;
            all.extend(bytes);
            bytes = all;
        } else {
            let k = BlockKind::from_code(code).unwrap();
            bytes.extend((0..n * k.bytes()).map(|_| rng.next_u64() as u8));
        }
        let b = Blocks::parse(&bytes, &[rows, cols], code).unwrap();
        let mut out = vec![0f32; rows * cols];
        b.dequantize_into(&mut out).unwrap();
        let x = vec![0.5f32; cols];
        let (mut y, mut want) = (vec![0f32; rows], vec![0f32; rows]);
        b.matvec_with(QuantKernel::Scalar, &x, &mut want).unwrap();
        b.matvec_with(QuantKernel::best(), &x, &mut y).unwrap();
        for (a, w) in y.iter().zip(&want) {
            prop_assert!(a.is_nan() == w.is_nan() || w.is_infinite() || a.is_infinite());
        }
    }
}

/// The int8-activation product equals the exact product of the same blocks with x replaced
/// by its quantized values (every kernel, to float rounding), and x's quantization stays
/// within half a step of its block.
#[test]
fn int8_matvec_equals_the_exact_product_of_quantized_x() {
    for (rows, cols) in [(1, 1), (7, 33), (16, 64), (48, 70), (128, 128), (9, 256)] {
        let w = gaussian(rows * cols, rows as u64 + 1);
        let mut x = gaussian(cols, cols as u64);
        x[0] = 0.0;
        if cols > 2 {
            x[2] = -x[1] * 1e6; // a block with one huge value: the rest round to 0
        }
        let shape = [rows, cols];
        let bytes = quantize(&w, &shape, QuantScheme::Q8, None).unwrap();
        let b = Blocks::view(&bytes, &shape, QuantScheme::Q8).unwrap();
        let mut q = Int8Input::new();
        q.quantize(&x).unwrap();
        let xq = q.dequantized();
        assert_eq!(xq.len(), cols);
        // Whole blocks take the SIMD path where there is one, the tail the scalar loop:
        // both give the reference codes.
        for (i, block) in x.chunks(BLOCK).enumerate() {
            let max = block.iter().fold(0f32, |m, v| m.max(v.abs()));
            let inv = if max > 0.0 { 127.0 / max } else { 0.0 };
            for (j, v) in block.iter().enumerate() {
                let want = f32::from((v * inv).round_ties_even() as i8) * (max / 127.0);
                assert_eq!(xq[i * BLOCK + j], want, "x[{}] = {v}", i * BLOCK + j);
            }
        }
        for (c, (a, v)) in xq.iter().zip(&x).enumerate() {
            let block = &x[c / BLOCK * BLOCK..((c / BLOCK + 1) * BLOCK).min(cols)];
            let step = block.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            assert!(
                (a - v).abs() <= step * 0.5 * (1.0 + 1e-5),
                "x[{c}] {v} → {a}"
            );
        }
        let dq = dequant(&bytes, &shape, QuantScheme::Q8);
        let want: Vec<f64> = (0..rows)
            .map(|r| {
                (0..cols)
                    .map(|c| f64::from(dq[r * cols + c]) * f64::from(xq[c]))
                    .sum()
            })
            .collect();
        let bound: Vec<f64> = (0..rows)
            .map(|r| {
                (0..cols)
                    .map(|c| f64::from((dq[r * cols + c] * xq[c]).abs()))
                    .sum()
            })
            .collect();
        for k in Int8Kernel::available() {
            let mut y = vec![f32::NAN; rows];
            b.matvec_int8_with(k, &q, &mut y).unwrap();
            for r in 0..rows {
                assert!(
                    (f64::from(y[r]) - want[r]).abs() <= bound[r] * 1e-5 + 1e-6,
                    "{k:?} {rows}x{cols} row {r}: {} vs {}",
                    y[r],
                    want[r]
                );
            }
        }
    }
}

#[test]
fn int8_matvec_refuses_what_it_cannot_multiply() {
    let w = gaussian(4 * 40, 1);
    let mut q = Int8Input::new();
    assert!(matches!(
        q.quantize(&[1.0, f32::NAN]),
        Err(Error::NonFinite { index: 1, .. })
    ));
    let mut x = gaussian(64, 3);
    x[40] = f32::NEG_INFINITY;
    assert!(matches!(
        q.quantize(&x),
        Err(Error::NonFinite { index: 40, .. })
    ));
    q.quantize(&gaussian(40, 2)).unwrap();
    for scheme in [QuantScheme::Q4, QuantScheme::F16] {
        let bytes = quantize(&w, &[4, 40], scheme, None).unwrap();
        let b = Blocks::view(&bytes, &[4, 40], scheme).unwrap();
        assert!(matches!(
            b.matvec_int8(&q, &mut [0.0; 4]),
            Err(Error::InvalidArgument(_))
        ));
    }
    let bytes = quantize(&w, &[4, 40], QuantScheme::Q8, None).unwrap();
    let b = Blocks::view(&bytes, &[4, 40], QuantScheme::Q8).unwrap();
    assert!(b.matvec_int8(&q, &mut [0.0; 3]).is_err());
    q.quantize(&gaussian(39, 2)).unwrap();
    assert!(b.matvec_int8(&q, &mut [0.0; 4]).is_err());
    // Quantizing again reuses the buffers and forgets the old values.
    q.quantize(&[0.0; 40]).unwrap();
    let mut y = [1.0; 4];
    b.matvec_int8(&q, &mut y).unwrap();
    assert_eq!(y, [0.0; 4]);
}
