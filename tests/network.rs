//! Network weights as quantized pages: round trips, atomic replacement under snapshots,
//! deletion and reclamation by compaction, read-only handles, corruption, bad input.

use engram_core::quant::QuantScheme;
use engram_core::{Engram, Error, Options, TensorInput};
use engram_fixtures::Rng;

fn open(dir: &std::path::Path) -> Engram {
    Engram::open(
        dir,
        Options {
            dimension: Some(8),
            ..Options::default()
        },
    )
    .unwrap()
}

struct Mlp {
    shapes: Vec<(String, Vec<usize>)>,
    weights: Vec<Vec<f32>>,
}

fn mlp(seed: u64) -> Mlp {
    let mut rng = Rng::new(seed);
    let dims = [64, 128, 128, 16];
    let mut shapes = Vec::new();
    let mut weights = Vec::new();
    for l in 0..3 {
        shapes.push((format!("w{l}"), vec![dims[l + 1], dims[l]]));
        weights.push(
            (0..dims[l] * dims[l + 1])
                .map(|_| rng.normal() as f32 * 0.1)
                .collect(),
        );
        shapes.push((format!("b{l}"), vec![dims[l + 1]]));
        weights.push(
            (0..dims[l + 1])
                .map(|_| rng.normal() as f32 * 0.01)
                .collect(),
        );
    }
    Mlp { shapes, weights }
}

impl Mlp {
    fn inputs(&self) -> Vec<TensorInput<'_>> {
        self.shapes
            .iter()
            .zip(&self.weights)
            .map(|((name, shape), data)| TensorInput {
                name,
                shape,
                data,
                importance: None,
            })
            .collect()
    }
}

fn max_rel_err(a: &[f32], b: &[f32]) -> f32 {
    let scale = a.iter().fold(0f32, |m, x| m.max(x.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[test]
fn networks_round_trip_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let nets: Vec<Mlp> = (0..20).map(mlp).collect();
    {
        let db = open(dir.path());
        let mut tx = db.begin_write().unwrap();
        for (agent, m) in nets.iter().enumerate() {
            let scheme = if agent % 2 == 0 {
                QuantScheme::Q8
            } else {
                QuantScheme::Q4
            };
            tx.put_network(agent as u64, "policy", &m.inputs(), scheme)
                .unwrap();
        }
        tx.commit().unwrap();
    }
    let db = open(dir.path());
    let snap = db.begin_read().unwrap();
    assert_eq!(snap.network_count(), 20);
    assert_eq!(snap.networks_of(3), vec!["policy".to_string()]);
    for (agent, m) in nets.iter().enumerate() {
        let net = snap.network(agent as u64, "policy").unwrap().unwrap();
        let tol = if agent % 2 == 0 { 0.01 } else { 0.08 };
        let tensors: Vec<_> = net.tensors().collect::<Result<_, _>>().unwrap();
        assert_eq!(tensors.len(), 6);
        for (t, ((name, shape), w)) in tensors.iter().zip(m.shapes.iter().zip(&m.weights)) {
            assert_eq!((t.name, t.shape), (name.as_str(), shape.as_slice()));
            let mut back = vec![0f32; w.len()];
            t.dequantize_into(&mut back).unwrap();
            assert!(max_rel_err(w, &back) <= tol, "agent {agent} {name}");
        }
        // The product from the blocks equals the product with the dequantized weights.
        let w0 = net.tensor("w0").unwrap().unwrap();
        let x: Vec<f32> = (0..64).map(|i| (i as f32 * 0.1).sin()).collect();
        let mut y = vec![0f32; 128];
        w0.matvec(&x, &mut y).unwrap();
        let mut dq = vec![0f32; 128 * 64];
        w0.dequantize_into(&mut dq).unwrap();
        for r in 0..128 {
            let want: f32 = (0..64).map(|c| dq[r * 64 + c] * x[c]).sum();
            assert!((want - y[r]).abs() <= 1e-4, "{want} vs {}", y[r]);
        }
    }
    assert!(snap.network(99, "policy").unwrap().is_none());
    assert!(snap.network(0, "other").unwrap().is_none());
}

#[test]
fn a_new_version_replaces_the_old_atomically_and_compaction_reclaims_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let (a, b) = (mlp(1), mlp(2));
    let mut tx = db.begin_write().unwrap();
    tx.put_network(7, "policy", &a.inputs(), QuantScheme::Q8)
        .unwrap();
    tx.put_network(7, "critic", &a.inputs(), QuantScheme::F16)
        .unwrap();
    tx.commit().unwrap();
    let before = db.begin_read().unwrap();
    let mut tx = db.begin_write().unwrap();
    tx.put_network(7, "policy", &b.inputs(), QuantScheme::Q8)
        .unwrap();
    // Not visible before commit, nor after a dropped transaction.
    assert_eq!(
        db.begin_read()
            .unwrap()
            .network(7, "policy")
            .unwrap()
            .unwrap()
            .version_txn(),
        before.txn()
    );
    tx.commit().unwrap();
    let after = db.begin_read().unwrap();
    let first = |s: &engram_core::ReadTxn| {
        let t = s.network(7, "policy").unwrap().unwrap();
        let w = t.tensor("w0").unwrap().unwrap();
        let mut out = vec![0f32; 128 * 64];
        w.dequantize_into(&mut out).unwrap();
        out[0]
    };
    assert!((first(&before) - a.weights[0][0]).abs() < 1e-3);
    assert!((first(&after) - b.weights[0][0]).abs() < 1e-3);
    let mut tx = db.begin_write().unwrap();
    tx.delete_network(7, "critic").unwrap();
    assert!(matches!(
        tx.delete_network(7, "critic"),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        tx.delete_network(8, "policy"),
        Err(Error::NotFound { .. })
    ));
    tx.commit().unwrap();
    let pages = |dir: &std::path::Path| -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".pages"))
            .map(|e| e.metadata().unwrap().len())
            .sum()
    };
    let grown = pages(dir.path());
    drop((before, after));
    db.compact().unwrap();
    let compacted = pages(dir.path());
    assert!(compacted * 2 < grown, "{compacted} of {grown}");
    let snap = db.begin_read().unwrap();
    assert_eq!(snap.networks(), vec![(7, "policy".to_string())]);
    let report = snap.verify().unwrap();
    assert_eq!(report.networks, 1);
    assert!(report.pages >= 7);
    assert!((first(&snap) - b.weights[0][0]).abs() < 1e-3);
    drop(snap);
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join("backup");
    db.backup(&copy).unwrap();
    drop(db);
    let db = open(dir.path());
    assert!((first(&db.begin_read().unwrap()) - b.weights[0][0]).abs() < 1e-3);
    let backup = open(&copy);
    assert!((first(&backup.begin_read().unwrap()) - b.weights[0][0]).abs() < 1e-3);
    assert_eq!(backup.begin_read().unwrap().verify().unwrap().networks, 1);
}

#[test]
fn read_only_handles_see_new_networks() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let ro = Engram::open(
        dir.path(),
        Options {
            read_only: true,
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!(ro.begin_read().unwrap().network_count(), 0);
    for agent in 0..3 {
        let mut tx = db.begin_write().unwrap();
        tx.put_network(agent, "policy", &mlp(agent).inputs(), QuantScheme::Q4)
            .unwrap();
        tx.commit().unwrap();
        let snap = ro.begin_read().unwrap();
        assert_eq!(snap.network_count(), agent as usize + 1);
        assert!(snap.network(agent, "policy").unwrap().is_some());
    }
}

#[test]
fn a_corrupted_page_is_an_error_not_weights() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path());
        let mut tx = db.begin_write().unwrap();
        tx.put_network(1, "policy", &mlp(1).inputs(), QuantScheme::Q8)
            .unwrap();
        tx.commit().unwrap();
    }
    let pages = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "pages"))
        .unwrap();
    let mut bytes = std::fs::read(&pages).unwrap();
    bytes[5000] ^= 0x10;
    std::fs::write(&pages, &bytes).unwrap();
    let db = open(dir.path());
    let err = db
        .begin_read()
        .unwrap()
        .network(1, "policy")
        .err()
        .expect("corruption detected");
    assert!(matches!(err, Error::Corruption { .. }), "{err}");
}

#[test]
fn bad_networks_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut tx = db.begin_write().unwrap();
    let w = [1.0f32, f32::NAN, 0.5, 0.25];
    let bad = [TensorInput {
        name: "w",
        shape: &[2, 2],
        data: &w,
        importance: None,
    }];
    assert!(matches!(
        tx.put_network(1, "p", &bad, QuantScheme::Q8),
        Err(Error::NonFinite { index: 1, .. })
    ));
    let short = [TensorInput {
        name: "w",
        shape: &[3, 2],
        data: &[1.0; 4],
        importance: None,
    }];
    assert!(matches!(
        tx.put_network(1, "p", &short, QuantScheme::Q8),
        Err(Error::InvalidArgument(_))
    ));
    let twice = [
        TensorInput {
            name: "w",
            shape: &[4],
            data: &[1.0; 4],
            importance: None,
        },
        TensorInput {
            name: "w",
            shape: &[4],
            data: &[1.0; 4],
            importance: None,
        },
    ];
    assert!(matches!(
        tx.put_network(1, "p", &twice, QuantScheme::Q8),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        tx.put_network(1, "", &[], QuantScheme::Q8),
        Err(Error::InvalidArgument(_))
    ));
    let mixed = [TensorInput {
        name: "w",
        shape: &[4],
        data: &[1.0; 4],
        importance: None,
    }];
    let scheme = QuantScheme::Mixed { f16: 0.5, q8: 0.5 };
    assert!(matches!(
        tx.put_network(1, "p", &mixed, scheme),
        Err(Error::InvalidArgument(_))
    ));
    tx.commit().unwrap();
    let snap = db.begin_read().unwrap();
    assert_eq!(snap.network_count(), 0);
}

/// A network read from one database is stored in another block for block: the same bytes,
/// the same weights, every scheme (mixed too); blocks viewed from raw bytes go the same way,
/// and a shape that is not its blocks' is refused.
#[test]
fn networks_copy_between_databases_block_for_block() {
    use engram_core::Tensor;
    use engram_core::quant::Blocks;
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (from, to) = (open(a.path()), open(b.path()));
    let m = mlp(5);
    let importance: Vec<Vec<f32>> = m
        .weights
        .iter()
        .map(|w| w.iter().map(|x| x.abs()).collect())
        .collect();
    let mut inputs = m.inputs();
    for (t, imp) in inputs.iter_mut().zip(&importance) {
        t.importance = Some(imp);
    }
    let mut tx = from.begin_write().unwrap();
    for (name, scheme) in [
        ("q8", QuantScheme::Q8),
        ("q4", QuantScheme::Q4),
        ("f16", QuantScheme::F16),
        (
            "mixed",
            QuantScheme::Mixed {
                f16: 0.25,
                q8: 0.25,
            },
        ),
    ] {
        tx.put_network(4, name, &inputs, scheme).unwrap();
    }
    tx.commit().unwrap();

    let src = from.begin_read().unwrap();
    let mut tx = to.begin_write().unwrap();
    for (agent, name) in src.networks() {
        let net = src.network(agent, &name).unwrap().unwrap();
        let tensors: Vec<Tensor<'_>> = net.tensors().collect::<Result<_, _>>().unwrap();
        tx.put_network_tensors(agent + 1, &name, &tensors).unwrap();
    }
    tx.commit().unwrap();
    let dst = to.begin_read().unwrap();
    assert_eq!(dst.network_count(), 4);
    for (_, name) in src.networks() {
        let (x, y) = (
            src.network(4, &name).unwrap().unwrap(),
            dst.network(5, &name).unwrap().unwrap(),
        );
        assert_eq!(x.bytes(), y.bytes(), "{name}");
        for (tx_, ty) in x.tensors().zip(y.tensors()) {
            let (tx_, ty) = (tx_.unwrap(), ty.unwrap());
            assert_eq!((tx_.name, tx_.shape), (ty.name, ty.shape));
            assert_eq!(
                tx_.blocks.encoded(),
                ty.blocks.encoded(),
                "{name}/{}",
                tx_.name
            );
            assert_eq!(tx_.blocks.scheme(), ty.blocks.scheme());
            let n = tx_.shape.iter().product();
            let (mut wx, mut wy) = (vec![0f32; n], vec![0f32; n]);
            tx_.dequantize_into(&mut wx).unwrap();
            ty.dequantize_into(&mut wy).unwrap();
            assert_eq!(wx, wy);
        }
    }
    // A mixed tensor's scheme reports the fractions its blocks hold.
    let w0 = src
        .network(4, "mixed")
        .unwrap()
        .unwrap()
        .tensor("w0")
        .unwrap()
        .unwrap();
    match w0.blocks.scheme() {
        QuantScheme::Mixed { f16, q8 } => {
            assert!(
                (f16 - 0.25).abs() < 0.01 && (q8 - 0.25).abs() < 0.01,
                "{f16} {q8}"
            )
        }
        s => panic!("{s:?}"),
    }

    // From raw bytes: viewed under its scheme, stored, read back the same.
    let raw = w0.blocks.encoded().to_vec();
    let viewed = Tensor {
        name: "w0",
        shape: w0.shape,
        blocks: Blocks::view(&raw, w0.shape, w0.blocks.scheme()).unwrap(),
    };
    let mut tx = to.begin_write().unwrap();
    tx.put_network_tensors(9, "raw", &[viewed]).unwrap();
    let wrong = Tensor {
        shape: &[64, 128],
        ..viewed
    };
    assert!(matches!(
        tx.put_network_tensors(9, "bad", &[wrong]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        tx.put_network_tensors(9, "twice", &[viewed, viewed]),
        Err(Error::InvalidArgument(_))
    ));
    tx.commit().unwrap();
    let snap = to.begin_read().unwrap();
    let back = snap
        .network(9, "raw")
        .unwrap()
        .unwrap()
        .tensor("w0")
        .unwrap()
        .unwrap();
    assert_eq!(back.blocks.encoded(), &raw[..]);
    assert!(snap.network(9, "bad").unwrap().is_none());
    snap.verify().unwrap();
}
