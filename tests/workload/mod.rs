//! The transactional workload the fault-injection and power-loss tests interrupt, and the
//! check of what a reopen finds.

use std::path::Path;

use engram_core::quant::QuantScheme;
use engram_core::{ConceptInput, Engram, EpisodeInput, Options, TensorInput};

pub const DIM: usize = 16;
pub const PER_BATCH: u64 = 20;

pub fn opts() -> Options {
    Options {
        dimension: Some(DIM),
        ..Options::default()
    }
}

pub fn key(batch: u64, i: u64) -> String {
    format!("b{batch}-{i}")
}

/// One transaction: episodes with keys, a concept bound to all of them (and the previous
/// batch's concept too, with one of its episodes bound to the new one), a network version
/// (all weights = the batch number), and the delete of an episode two batches back; a
/// compaction after every third.
pub fn batch(db: &Engram, b: u64) -> engram_core::Result<()> {
    let mut tx = db.begin_write()?;
    let c = tx.insert_concept(&ConceptInput {
        centroid: &[b as f32 + 1.0; DIM],
        label: "c",
    })?;
    for i in 0..PER_BATCH {
        let v: Vec<f32> = (0..DIM).map(|d| (b * 100 + i + d as u64) as f32).collect();
        let k = key(b, i);
        let e = tx.insert_episode(&EpisodeInput {
            agent: b,
            timestamp: i as i64,
            embedding: &v,
            payload: k.as_bytes(),
            key: Some(k.as_bytes()),
        })?;
        tx.bind(e, c, 0.5)?;
        if c > 0 {
            // Committed nodes' list heads move too (stamps re-derived by recovery).
            tx.bind(e, c - 1, 0.25)?;
        }
    }
    if b >= 1
        && let Some(id) = db
            .begin_read()?
            .episode_by_key(key(b - 1, 1).as_bytes())?
            .map(|e| e.id())
    {
        tx.bind(id, c, 0.75)?;
    }
    let w = [b as f32; 64];
    let tensor = TensorInput {
        name: "w",
        shape: &[2, 32],
        data: &w,
        importance: None,
    };
    tx.put_network(1, "policy", &[tensor], QuantScheme::F16)?;
    if b >= 2
        && let Some(id) = db
            .begin_read()?
            .episode_by_key(key(b - 2, 0).as_bytes())?
            .map(|e| e.id())
    {
        tx.delete_episode(id)?;
    }
    tx.commit()?;
    if b % 3 == 2 {
        db.compact()?;
    }
    Ok(())
}

/// Opens `dir` and returns how many batches it holds, checking that each is whole (and the
/// next absent), that the network is the newest batch's, and that the database verifies.
pub fn complete_batches(dir: &Path) -> u64 {
    let db = Engram::open(dir, opts()).expect("reopen");
    let snap = db.begin_read().unwrap();
    snap.verify().expect("the database verifies");
    let mut n = 0;
    while snap.episode_by_key(key(n, 1).as_bytes()).unwrap().is_some() {
        for i in 1..PER_BATCH {
            let ep = snap.episode_by_key(key(n, i).as_bytes()).unwrap();
            assert!(ep.is_some(), "batch {n} partial");
        }
        n += 1;
    }
    for i in 0..PER_BATCH {
        let ep = snap.episode_by_key(key(n, i).as_bytes()).unwrap();
        assert!(ep.is_none(), "batch {n} partly visible");
    }
    if n > 0 {
        let net = snap
            .network(1, "policy")
            .unwrap()
            .expect("the newest batch's network");
        let mut w = [0f32; 64];
        net.tensor("w")
            .unwrap()
            .unwrap()
            .dequantize_into(&mut w)
            .unwrap();
        assert!(
            w.iter().all(|&x| x == (n - 1) as f32),
            "network of batch {}, found {}",
            n - 1,
            w[0]
        );
    }
    n
}
