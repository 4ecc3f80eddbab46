//! The smallest useful program: create a database, store episodes and a concept, commit,
//! read them back zero-copy, search.
//!
//! `cargo run --release -p engram-core --example quickstart`

use engram_core::{ConceptInput, Engram, EpisodeInput, Filter, Options};

fn main() -> engram_core::Result<()> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = Engram::open(
        dir.path().join("memory"),
        Options {
            dimension: Some(4),
            ..Options::default()
        },
    )?;

    let mut tx = db.begin_write()?;
    let tide = tx.insert_episode(&EpisodeInput {
        agent: 7,
        timestamp: 1_700_000_000,
        embedding: &[0.9, 0.1, 0.0, 0.0],
        payload: b"user asked about tides",
        key: None,
    })?;
    let moon = tx.insert_episode(&EpisodeInput {
        agent: 7,
        timestamp: 1_700_000_060,
        embedding: &[0.8, 0.3, 0.1, 0.0],
        payload: b"user asked why the moon moves the sea",
        key: None,
    })?;
    let ocean = tx.insert_concept(&ConceptInput {
        centroid: &[0.85, 0.2, 0.05, 0.0],
        label: "the sea",
    })?;
    tx.bind(tide, ocean, 0.95)?;
    tx.bind(moon, ocean, 0.90)?;
    tx.commit()?; // durable when it returns

    let snap = db.begin_read()?;
    let ep = snap.episode(tide)?.expect("committed");
    println!(
        "episode {tide}: {:?} {:?}",
        std::str::from_utf8(ep.payload()?),
        ep.embedding()
    );
    println!(
        "concept {ocean} has {} bindings",
        snap.concept_fan_count(ocean)?
    );
    for hit in snap.search(&[1.0, 0.2, 0.0, 0.0], 2, &Filter::default())? {
        println!("search hit: episode {} score {:.3}", hit.id, hit.score);
    }
    Ok(())
}
