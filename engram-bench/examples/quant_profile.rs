//! Where a Q8 forward pass spends its time: one 128×128 matvec from blocks, per kernel,
//! beside the tensor lookup. `cargo run --release -p engram-bench --example quant_profile`

use std::time::Instant;

use engram_core::quant::{QuantKernel, QuantScheme, quantize};

fn main() {
    let w: Vec<f32> = (0..128 * 128)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let x: Vec<f32> = (0..128).map(|i| (i as f32).sin()).collect();
    let mut y = vec![0f32; 128];
    {
        let n = 200_000;
        let k = engram_core::similarity::Kernel::best();
        let rows = engram_core::similarity::Rows::dense(&w, 128);
        let t = Instant::now();
        for _ in 0..n {
            k.scores(
                engram_core::similarity::Metric::Dot,
                std::hint::black_box(&x),
                rows,
                &mut y,
            )
            .unwrap();
        }
        let ns = t.elapsed().as_nanos() as f64 / n as f64;
        println!(
            "f32 {k:?}: 128x128 matvec {ns:.0} ns ({:.2} ns per 32 weights)",
            ns / 512.0
        );
    }
    for scheme in [QuantScheme::Q8, QuantScheme::Q4, QuantScheme::F16] {
        let bytes = quantize(&w, &[128, 128], scheme, None).unwrap();
        let blocks = engram_core::quant::Blocks::view(&bytes, &[128, 128], scheme).unwrap();
        for k in QuantKernel::available() {
            let n = 200_000;
            let t = Instant::now();
            for _ in 0..n {
                blocks
                    .matvec_with(k, std::hint::black_box(&x), &mut y)
                    .unwrap();
            }
            let ns = t.elapsed().as_nanos() as f64 / n as f64;
            println!(
                "{scheme:?} {k:?}: 128x128 matvec {ns:.0} ns ({:.2} ns/block)",
                ns / 512.0
            );
        }
    }
}
