//! Does the binding-strength cache earn its place? `binding_strength(episode, concept)` with
//! the cache (its default 65,536 entries) and without it (0 entries: every call walks the
//! episode's binding list), on the same database and the same stream of pairs, Zipf(1.0)
//! and uniform over the bound pairs, after an untimed pass over the same stream.
//! `cargo run --release -p engram-bench --example strength_lookup [episodes] [per_episode]`
use engram_bench::lookup::time_each;
use engram_core::{ConceptInput, DEFAULT_STRENGTH_CACHE_ENTRIES, Engram, EpisodeInput, Options};
use engram_fixtures::{Access, Rng, id_stream};

const DIM: usize = 64;
const CONCEPTS: u64 = 2_000;
const LOOKUPS: usize = 1_000_000;

fn options(strength_cache_entries: usize) -> Options {
    Options {
        dimension: Some(DIM),
        strength_cache_entries,
        ..Options::default()
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let episodes: u64 = args.next().map_or(200_000, |a| a.parse().unwrap());
    let per_episode: u64 = args.next().map_or(4, |a| a.parse().unwrap());
    let dir = std::env::temp_dir().join("engram-strength-lookup");
    let _ = std::fs::remove_dir_all(&dir);
    let db = Engram::open(&dir, options(0)).unwrap();
    let mut rng = Rng::new(5);
    let v: Vec<f32> = (0..DIM).map(|i| i as f32 + 1.0).collect();
    let mut tx = db.begin_write().unwrap();
    for c in 0..CONCEPTS {
        tx.insert_concept(&ConceptInput {
            centroid: &v,
            label: &format!("c{c}"),
        })
        .unwrap();
    }
    tx.commit().unwrap();
    // pairs[p]: the p-th binding made, (episode, concept); an episode's bindings are distinct.
    let mut pairs = Vec::with_capacity((episodes * per_episode) as usize);
    for start in (0..episodes).step_by(10_000) {
        let mut tx = db.begin_write().unwrap();
        for i in start..(start + 10_000).min(episodes) {
            let e = tx
                .insert_episode(&EpisodeInput {
                    agent: 0,
                    timestamp: i as i64,
                    embedding: &v,
                    payload: b"p",
                    key: None,
                })
                .unwrap();
            let first = rng.next_u64() % CONCEPTS;
            for k in 0..per_episode {
                let c = (first + k * 7) % CONCEPTS;
                tx.bind(e, c, (k + 1) as f32 / 8.0).unwrap();
                pairs.push((e, c));
            }
        }
        tx.commit().unwrap();
    }
    drop(db);
    println!(
        "{episodes} episodes, {per_episode} bindings each, {CONCEPTS} concepts; {LOOKUPS} lookups per case (ns)"
    );
    println!(
        "{:<28} {:>7} {:>7} {:>7} {:>7} {:>8}",
        "case", "mean", "p50", "p99", "p99.9", "hits"
    );
    for access in [Access::Zipf, Access::Uniform] {
        let stream: Vec<u64> = id_stream(pairs.len(), LOOKUPS, access, 9);
        for (name, entries) in [
            ("cache (default size)", DEFAULT_STRENGTH_CACHE_ENTRIES),
            ("no cache: list walk", 0),
        ] {
            let db = Engram::open(&dir, options(entries)).unwrap();
            let snap = db.begin_read().unwrap();
            let strength = |p: u64| {
                let (e, c) = pairs[p as usize];
                snap.binding_strength(e, c).unwrap().expect("bound")
            };
            for &p in &stream {
                std::hint::black_box(strength(p));
            }
            let before = db.stats().strength_hits;
            let h = time_each(&stream, strength);
            let hits = db.stats().strength_hits - before;
            println!(
                "{:<28} {:>7.0} {:>7} {:>7} {:>7} {:>7.1}%",
                format!(
                    "{}/{name}",
                    if access == Access::Zipf {
                        "zipf"
                    } else {
                        "uniform"
                    }
                ),
                h.mean(),
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                100.0 * hits as f64 / LOOKUPS as f64
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
