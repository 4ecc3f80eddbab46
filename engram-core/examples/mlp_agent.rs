//! A swarm agent's forward pass straight from the mapped pages: store a 64→128→128→16 MLP
//! per agent as Q8 blocks, then, from a read snapshot, run one agent's policy on an
//! observation without dequantizing a single weight into memory.
//!
//! `cargo run --release -p engram-core --example mlp_agent`

use engram_core::quant::QuantScheme;
use engram_core::{Engram, Network, Options, TensorInput};

const DIMS: [usize; 4] = [64, 128, 128, 16];

/// One layer: y = relu(W x + b) (no relu on the last).
fn forward(net: &Network<'_>, x: &[f32]) -> engram_core::Result<Vec<f32>> {
    let mut h = x.to_vec();
    for l in 0..3 {
        let w = net.tensor(&format!("w{l}"))?.expect("stored");
        let b = net.tensor(&format!("b{l}"))?.expect("stored");
        let mut y = vec![0f32; DIMS[l + 1]];
        w.matvec(&h, &mut y)?;
        let mut bias = vec![0f32; DIMS[l + 1]];
        b.dequantize_into(&mut bias)?;
        for (v, b) in y.iter_mut().zip(bias) {
            *v += b;
            if l < 2 {
                *v = v.max(0.0);
            }
        }
        h = y;
    }
    Ok(h)
}

fn main() -> engram_core::Result<()> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = Engram::open(
        dir.path(),
        Options {
            dimension: Some(64),
            ..Options::default()
        },
    )?;
    // Deterministic pseudo-random weights for 100 agents.
    let mut seed = 1u64;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
    };
    let mut tx = db.begin_write()?;
    for agent in 0..100u64 {
        let mut tensors = Vec::new();
        for l in 0..3 {
            tensors.push((format!("w{l}"), vec![DIMS[l + 1], DIMS[l]]));
            tensors.push((format!("b{l}"), vec![DIMS[l + 1]]));
        }
        let data: Vec<Vec<f32>> = tensors
            .iter()
            .map(|(_, s)| (0..s.iter().product::<usize>()).map(|_| next()).collect())
            .collect();
        let inputs: Vec<TensorInput<'_>> = tensors
            .iter()
            .zip(&data)
            .map(|((name, shape), data)| TensorInput {
                name,
                shape,
                data,
                importance: None,
            })
            .collect();
        tx.put_network(agent, "policy", &inputs, QuantScheme::Q8)?;
    }
    tx.commit()?;

    let snap = db.begin_read()?;
    let net = snap.network(42, "policy")?.expect("agent 42 has a policy");
    let observation: Vec<f32> = (0..64).map(|i| (i as f32 * 0.3).cos()).collect();
    let action = forward(&net, &observation)?;
    let best = (0..action.len())
        .max_by(|&a, &b| action[a].total_cmp(&action[b]))
        .unwrap_or(0);
    println!(
        "agent 42: {} bytes of Q8 weights read in place; action {best} (logits {:?}…)",
        net.bytes(),
        &action[..4]
    );
    Ok(())
}
