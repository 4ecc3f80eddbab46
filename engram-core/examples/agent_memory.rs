//! An agent's memory loop: it lives episodes (here: the shipped real sentence embeddings,
//! arriving in two halves), forms concepts from the first half, consolidates the second half
//! into them, and answers a cue by recalling through concepts beside a direct search.
//!
//! `cargo run --release -p engram-core --example agent_memory`

use engram_core::cluster::{Count, Params};
use engram_core::{ConsolidationParams, Engram, EpisodeInput, Filter, FormationParams, Options};

fn main() -> engram_core::Result<()> {
    let sample =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/real-mpnet-sample");
    let vectors =
        engram_fixtures::read_npy_f32(&sample.join("vectors.npy")).expect("the shipped fixture");
    let texts: Vec<String> = std::fs::read_to_string(sample.join("texts.tsv"))
        .expect("the shipped texts")
        .lines()
        .map(|l| l.split_once('\t').map_or(l, |(_, t)| t).to_string())
        .collect();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = Engram::open(dir.path(), Options::default())?; // 768-d, cosine

    let live = |db: &Engram, rows: std::ops::Range<usize>| -> engram_core::Result<()> {
        let mut tx = db.begin_write()?;
        for i in rows {
            tx.insert_episode(&EpisodeInput {
                agent: 1,
                timestamp: i as i64,
                embedding: vectors.row(i),
                payload: texts[i].as_bytes(),
                key: None,
            })?;
        }
        tx.commit()
    };

    // Day one: 2,000 episodes, then concepts formed from them.
    live(&db, 0..2_000)?;
    let formed = db.form_concepts(&FormationParams {
        filter: &Filter::default(),
        unbound_only: true,
        clustering: Params {
            count: Count::K(40),
            ..Params::default()
        },
        progress: None,
    })?;
    println!(
        "formed {} concepts from {} episodes (mean cosine to centroid {:.3})",
        formed.concepts.len(),
        formed.episodes,
        formed.objective
    );

    // Day two: 2,000 more; those close to a concept join it, the rest wait.
    live(&db, 2_000..4_000)?;
    let c = db.consolidate(&ConsolidationParams {
        min_similarity: 0.45,
        filter: Filter::default(),
    })?;
    println!(
        "consolidated: {} of {} new episodes joined {} concepts",
        c.bound, c.pending, c.concepts_updated
    );

    // A cue: recall through concepts beside direct search.
    let short = |id: u64| texts[id as usize].chars().take(60).collect::<String>();
    let snap = db.begin_read()?;
    let cue = vectors.row(3_001);
    println!("cue: {}", texts[3_001]);
    for hit in snap.search(cue, 3, &Filter::default())? {
        println!(
            "  direct   {:.3}  {}",
            hit.score,
            &texts[hit.id as usize][..60.min(texts[hit.id as usize].len())]
        );
    }
    for r in snap.recall_via_concepts(cue, 3, 3)? {
        let label = snap
            .concept(r.concept)?
            .map(|c| c.label().unwrap_or("").chars().take(40).collect::<String>());
        println!(
            "  concepts {:.3}  {}  (via concept {} \"{}…\")",
            r.score,
            short(r.episode),
            r.concept,
            label.unwrap_or_default()
        );
    }
    Ok(())
}
