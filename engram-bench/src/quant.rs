//! Swarm networks: 10,000 agents each holding a 64→128→128→16 MLP, stored as Q8 and as Q4
//! pages; bytes against f32, fetch latency, the forward pass from Q8 pages beside the same
//! pass in f32 (an AVX2 matvec of the same loop structure), and opening the database.
//! The Q8 pass runs two ways: the exact product, and with activations quantized to int8.

use std::path::Path;
use std::time::Instant;

use engram_bench::lookup::time_each;
use engram_core::quant::{Int8Input, QuantScheme};
use engram_core::{Engram, Network, Options, ReadTxn, Tensor, TensorInput};
use engram_fixtures::{Access, Rng, id_stream};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use super::{BoxError, median};

const AGENTS: u64 = 10_000;
const DIMS: [usize; 4] = [64, 128, 128, 16];
const CALLS: usize = 200_000;

/// A tensor: name, shape, f32 weights.
type F32Tensor = (String, Vec<usize>, Vec<f32>);

/// One agent's tensors: three layers and their biases.
fn agent_weights(agent: u64) -> Vec<F32Tensor> {
    let mut rng = Rng::new(agent.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 7);
    let mut out = Vec::new();
    for l in 0..3 {
        let scale = (2.0 / DIMS[l] as f64).sqrt(); // He initialisation
        let w = (0..DIMS[l] * DIMS[l + 1])
            .map(|_| (rng.normal() * scale) as f32)
            .collect();
        out.push((format!("w{l}"), vec![DIMS[l + 1], DIMS[l]], w));
        let b = (0..DIMS[l + 1])
            .map(|_| (rng.normal() * 0.01) as f32)
            .collect();
        out.push((format!("b{l}"), vec![DIMS[l + 1]], b));
    }
    out
}

fn build(dir: &Path, scheme: QuantScheme) -> Result<f64, BoxError> {
    let _ = std::fs::remove_dir_all(dir);
    let db = Engram::open(
        dir,
        Options {
            dimension: Some(64),
            ..Options::default()
        },
    )?;
    let t = Instant::now();
    for chunk in 0..AGENTS / 1_000 {
        let mut tx = db.begin_write()?;
        for agent in chunk * 1_000..(chunk + 1) * 1_000 {
            let w = agent_weights(agent);
            let inputs: Vec<TensorInput<'_>> = w
                .iter()
                .map(|(name, shape, data)| TensorInput {
                    name,
                    shape,
                    data,
                    importance: None,
                })
                .collect();
            tx.put_network(agent, "policy", &inputs, scheme)?;
        }
        tx.commit()?;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// An agent's three layers as views into its pages: weights and biases, resolved once per
/// fetched network (what an agent runtime keeps while it acts).
struct Layers<'a>(Vec<(Tensor<'a>, Tensor<'a>)>);

impl<'a> Layers<'a> {
    fn of(net: &Network<'a>) -> Self {
        Layers(
            (0..3)
                .map(|l| {
                    let get = |name: &str| net.tensor(name).expect("ok").expect("stored");
                    (get(["w0", "w1", "w2"][l]), get(["b0", "b1", "b2"][l]))
                })
                .collect(),
        )
    }
}

/// The MLP from the pages: y = relu(W x + b) per layer (no relu on the last), the weights'
/// blocks multiplied in place — exactly, or (`xq` given) with each layer's input quantized
/// to int8 once and the Q8 blocks multiplied in integers, as GGUF runtimes do.
fn forward_q8(
    layers: &Layers<'_>,
    x: &[f32],
    mut xq: Option<&mut Int8Input>,
    out: &mut [f32; 16],
) -> f32 {
    let (mut input, mut y, mut bias) = ([0f32; 128], [0f32; 128], [0f32; 128]);
    input[..64].copy_from_slice(x);
    for (l, (w, b)) in layers.0.iter().enumerate() {
        let (rows, cols) = (DIMS[l + 1], DIMS[l]);
        match xq.as_deref_mut() {
            Some(q) => {
                q.quantize(&input[..cols]).expect("finite");
                w.matvec_int8(q, &mut y[..rows]).expect("shapes");
            }
            None => w.matvec(&input[..cols], &mut y[..rows]).expect("shapes"),
        }
        b.dequantize_into(&mut bias[..rows]).expect("shapes");
        for (v, b) in y[..rows].iter_mut().zip(&bias) {
            *v += b;
            if l < 2 {
                *v = v.max(0.0);
            }
        }
        input[..rows].copy_from_slice(&y[..rows]);
    }
    out.copy_from_slice(&input[..16]);
    out[0]
}

/// `y = W x` in f32, eight rows at a time sharing each load of x and summed by one
/// transposing reduction (the loop structure of the int8 kernel, so the comparison is of
/// the weights' format, not of the loop).
fn matvec_f32(w: &[f32], cols: usize, x: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && cols.is_multiple_of(8)
    {
        // SAFETY: AVX2 and FMA are present; w holds y.len() rows of `cols` floats and x
        // `cols` floats (asserted), and cols is a multiple of 8.
        assert!(w.len() >= y.len() * cols && x.len() >= cols);
        unsafe { matvec_f32_avx2(w, cols, x, y) };
        return;
    }
    for (r, out) in y.iter_mut().enumerate() {
        *out = w[r * cols..(r + 1) * cols]
            .iter()
            .zip(x)
            .map(|(a, b)| a * b)
            .sum();
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn matvec_f32_avx2(w: &[f32], cols: usize, x: &[f32], y: &mut [f32]) {
    use std::arch::x86_64::*;
    let rows = y.len();
    let mut r = 0;
    while r < rows {
        // The last group repeats its last row; only real rows are stored.
        let group: [usize; 8] = std::array::from_fn(|i| (r + i).min(rows - 1));
        let mut acc = [_mm256_setzero_ps(); 8];
        for c in (0..cols).step_by(8) {
            // SAFETY: c + 8 <= cols and every row of `group` exists (the caller's guarantee).
            unsafe {
                let xv = _mm256_loadu_ps(x.as_ptr().add(c));
                for (a, &row) in acc.iter_mut().zip(&group) {
                    let wv = _mm256_loadu_ps(w.as_ptr().add(row * cols + c));
                    *a = _mm256_fmadd_ps(wv, xv, *a);
                }
            }
        }
        let h = |a: __m256, b: __m256| _mm256_hadd_ps(a, b);
        let u0 = h(h(acc[0], acc[1]), h(acc[2], acc[3]));
        let u1 = h(h(acc[4], acc[5]), h(acc[6], acc[7]));
        let sums = _mm256_add_ps(
            _mm256_permute2f128_ps(u0, u1, 0x20),
            _mm256_permute2f128_ps(u0, u1, 0x31),
        );
        let mut out = [0f32; 8];
        // SAFETY: `out` holds eight floats.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sums) };
        let n = (rows - r).min(8);
        y[r..r + n].copy_from_slice(&out[..n]);
        r += n;
    }
}

/// The same MLP in f32.
fn forward_f32(w: &[F32Tensor], x: &[f32], out: &mut [f32; 16]) -> f32 {
    let mut input = [0f32; 128];
    input[..64].copy_from_slice(x);
    let mut y = [0f32; 128];
    for l in 0..3 {
        let (rows, cols) = (DIMS[l + 1], DIMS[l]);
        matvec_f32(&w[2 * l].2, cols, &input[..cols], &mut y[..rows]);
        for (v, b) in y[..rows].iter_mut().zip(&w[2 * l + 1].2) {
            *v += b;
            if l < 2 {
                *v = v.max(0.0);
            }
        }
        input[..rows].copy_from_slice(&y[..rows]);
    }
    out.copy_from_slice(&input[..16]);
    out[0]
}

fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1e3
}

pub fn quant_job(dir: &Path, report: &mut serde_json::Map<String, Value>) -> Result<(), BoxError> {
    println!(
        "\n== swarm networks: {AGENTS} agents x MLP 64-128-128-16 (26,624 weights + 272 biases) =="
    );
    let weights_per_agent: usize = agent_weights(0).iter().map(|t| t.2.len()).sum();
    let f32_bytes = AGENTS as f64 * weights_per_agent as f64 * 4.0;
    let mut out = serde_json::Map::new();
    let q8_dir = dir.join("swarm-q8");
    for (name, scheme) in [
        ("q8", QuantScheme::Q8),
        ("q4", QuantScheme::Q4),
        ("f16", QuantScheme::F16),
    ] {
        let d = dir.join(format!("swarm-{name}"));
        let secs = build(&d, scheme)?;
        let bytes = Engram::open(&d, Options::default())?
            .begin_read()?
            .network_storage();
        let files = network_file_bytes(&d)?;
        let ratio = bytes as f64 / f32_bytes;
        println!(
            "  {name:>3}: {:.1} MB of pages + catalog = {:.1} % of f32 ({:.1} MB); stored in {secs:.2} s (files {:.1} MB with preallocated growth)",
            bytes as f64 / 1e6,
            100.0 * ratio,
            f32_bytes / 1e6,
            files as f64 / 1e6
        );
        report.insert(format!("quant.{name}_bytes_ratio"), json!(ratio));
        out.insert(format!("{name}_bytes"), json!(bytes));
        if name != "q8" {
            let _ = std::fs::remove_dir_all(&d);
        }
    }

    // Open: the 10,000-agent database, catalog parsed, ready for reads.
    let mut opens = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let db = Engram::open(&q8_dir, Options::default())?;
        let snap = db.begin_read()?;
        assert_eq!(snap.network_count(), AGENTS as usize);
        opens.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let open_ms = median(opens);
    println!(
        "  open the {AGENTS}-agent database (writer handle, catalog loaded): {open_ms:.2} ms (median of 7)"
    );

    let db = Engram::open(&q8_dir, Options::default())?;
    let ids = id_stream(AGENTS as usize, CALLS, Access::Uniform, 11);
    // Warm: every page read (and checksummed) once.
    let snap = db.begin_read()?;
    for a in 0..AGENTS {
        snap.network(a, "policy")?.expect("stored");
    }
    let fetch = time_each(&ids, |a| {
        let snap: ReadTxn = db.begin_read().expect("snapshot");
        let net = snap.network(a, "policy").expect("ok").expect("stored");
        net.bytes() as f32
    });
    println!(
        "  fetch one agent's network, hot (begin_read + network(), uniform agents): p50 {:.2} µs, p99 {:.2} µs, p99.9 {:.2} µs",
        us(&fetch, 0.5),
        us(&fetch, 0.99),
        us(&fetch, 0.999)
    );

    let x: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
    let (mut o, mut of) = ([0f32; 16], [0f32; 16]);
    let hot_agent = 4_242u64;
    let net = snap.network(hot_agent, "policy")?.expect("stored");
    let layers = Layers::of(&net);
    let w_hot = agent_weights(hot_agent);
    // Agreement of the two passes (quantization error, not kernel error).
    forward_q8(&layers, &x, None, &mut o);
    forward_f32(&w_hot, &x, &mut of);
    let err = o
        .iter()
        .zip(&of)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let mut xq = Int8Input::new();
    let mut oi = [0f32; 16];
    forward_q8(&layers, &x, Some(&mut xq), &mut oi);
    let err_int8 = oi
        .iter()
        .zip(&of)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let same = vec![hot_agent; CALLS / 4];
    let q8_hot = time_each(&same, |_| forward_q8(&layers, &x, None, &mut o));
    let int8_hot = time_each(&same, |_| forward_q8(&layers, &x, Some(&mut xq), &mut oi));
    let f32_hot = time_each(&same, |_| forward_f32(&w_hot, &x, &mut of));
    // Across the swarm: a different agent every call (weights mostly not in cache).
    let all_f32: Vec<Vec<F32Tensor>> = (0..AGENTS).map(agent_weights).collect();
    let q8_swarm = time_each(&ids, |a| {
        let net = snap.network(a, "policy").expect("ok").expect("stored");
        forward_q8(&Layers::of(&net), &x, None, &mut o)
    });
    let int8_swarm = time_each(&ids, |a| {
        let net = snap.network(a, "policy").expect("ok").expect("stored");
        forward_q8(&Layers::of(&net), &x, Some(&mut xq), &mut oi)
    });
    let f32_swarm = time_each(&ids, |a| forward_f32(&all_f32[a as usize], &x, &mut of));
    drop(all_f32);
    println!(
        "  forward pass, p50 / p99 µs:   Q8 pages, exact   Q8 pages, int8 x    f32 (AVX2, 8-row matvec)"
    );
    for (name, q, i, f) in [
        ("one agent, hot in cache", &q8_hot, &int8_hot, &f32_hot),
        (
            "a random agent each call",
            &q8_swarm,
            &int8_swarm,
            &f32_swarm,
        ),
    ] {
        println!(
            "    {name:<28} {:>5.2} / {:>5.2}     {:>5.2} / {:>5.2}      {:>5.2} / {:>5.2}",
            us(q, 0.5),
            us(q, 0.99),
            us(i, 0.5),
            us(i, 0.99),
            us(f, 0.5),
            us(f, 0.99)
        );
    }
    println!(
        "    int8 kernel: {:?}",
        engram_core::quant::Int8Kernel::best()
    );
    println!(
        "    largest output difference vs f32: Q8 exact {err:.4}, Q8 with int8 x {err_int8:.4}"
    );
    drop(snap);
    drop(db);
    let _ = std::fs::remove_dir_all(&q8_dir);

    report.insert("quant.fetch_p99_us".into(), json!(us(&fetch, 0.99)));
    // The fast path from Q8 pages (int8 activations, as the int8 anchor); the exact
    // product beside it.
    report.insert("quant.forward_q8_us".into(), json!(us(&int8_hot, 0.5)));
    report.insert("quant.forward_q8_exact_us".into(), json!(us(&q8_hot, 0.5)));
    report.insert("quant.forward_f32_us".into(), json!(us(&f32_hot, 0.5)));
    report.insert(
        "quant.forward_q8_swarm_us".into(),
        json!(us(&q8_swarm, 0.5)),
    );
    report.insert(
        "quant.forward_f32_swarm_us".into(),
        json!(us(&f32_swarm, 0.5)),
    );
    report.insert("quant.open_ms".into(), json!(open_ms));
    out.insert("fetch_p50_us".into(), json!(us(&fetch, 0.5)));
    out.insert("forward_q8_p99_us".into(), json!(us(&q8_hot, 0.99)));
    out.insert("forward_f32_p99_us".into(), json!(us(&f32_hot, 0.99)));
    out.insert("forward_max_abs_diff".into(), json!(err));
    out.insert("forward_int8_max_abs_diff".into(), json!(err_int8));
    out.insert("forward_q8_int8_p99_us".into(), json!(us(&int8_hot, 0.99)));
    out.insert(
        "forward_q8_int8_swarm_us".into(),
        json!(us(&int8_swarm, 0.5)),
    );
    out.insert(
        "int8_kernel".into(),
        json!(format!("{:?}", engram_core::quant::Int8Kernel::best())),
    );
    report.insert("quant.detail".into(), Value::Object(out));
    Ok(())
}

/// Lengths of the network files (pages and catalog) in `dir`, preallocated tails included.
fn network_file_bytes(dir: &Path) -> Result<u64, BoxError> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".pages") || name.ends_with(".nets") {
            total += e.metadata()?.len();
        }
    }
    Ok(total)
}
