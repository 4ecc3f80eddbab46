//! Random sequences of insert/update/delete/bind/commit/abort/reopen/compact checked
//! against a plain in-memory model after every step that publishes.

use std::collections::BTreeMap;

use engram_core::{ConceptInput, Engram, EpisodeInput, Options, ReadTxn};
use proptest::prelude::*;

const DIM: usize = 8;

#[derive(Clone, Debug)]
enum Step {
    Insert { seed: u8, key: Option<u8> },
    Concept { seed: u8 },
    Update { pick: u8, seed: u8, relabel: bool },
    Bind { e: u8, c: u8, strength: u8 },
    Unbind { e: u8, c: u8 },
    DeleteEpisode { pick: u8 },
    DeleteConcept { pick: u8 },
    Commit,
    Abort,
    Reopen,
    Compact,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (any::<u8>(), proptest::option::of(0u8..12)).prop_map(|(seed, key)| Step::Insert { seed, key }),
        2 => any::<u8>().prop_map(|seed| Step::Concept { seed }),
        1 => (any::<u8>(), any::<u8>(), any::<bool>()).prop_map(|(pick, seed, relabel)| Step::Update { pick, seed, relabel }),
        5 => (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(e, c, strength)| Step::Bind { e, c, strength }),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(e, c)| Step::Unbind { e, c }),
        2 => any::<u8>().prop_map(|pick| Step::DeleteEpisode { pick }),
        1 => any::<u8>().prop_map(|pick| Step::DeleteConcept { pick }),
        3 => Just(Step::Commit),
        1 => Just(Step::Abort),
        1 => Just(Step::Reopen),
        1 => Just(Step::Compact),
    ]
}

#[derive(Clone, Default, Debug)]
struct Model {
    episodes: BTreeMap<u64, (u8, Option<u8>)>,
    concepts: BTreeMap<u64, (u8, String)>,
    bindings: BTreeMap<(u64, u64), f32>,
    next_episode: u64,
    next_concept: u64,
}

fn vector(seed: u8) -> Vec<f32> {
    (0..DIM)
        .map(|i| f32::from(seed) + i as f32 * 0.25)
        .collect()
}

fn pick(map_keys: Vec<u64>, p: u8) -> Option<u64> {
    (!map_keys.is_empty()).then(|| map_keys[p as usize % map_keys.len()])
}

fn check(db: &Engram, m: &Model) {
    check_snapshot(&db.begin_read().unwrap(), m);
}

/// Everything a snapshot answers, through the caches and the fan-count index and around
/// them, equals the model.
fn check_snapshot(snap: &ReadTxn, m: &Model) {
    assert_eq!(
        snap.episode_ids().unwrap(),
        m.episodes.keys().copied().collect::<Vec<_>>()
    );
    assert_eq!(
        snap.concept_ids().unwrap(),
        m.concepts.keys().copied().collect::<Vec<_>>()
    );
    assert_eq!(snap.episode_count(), m.episodes.len() as u64);
    assert_eq!(snap.binding_count(), m.bindings.len() as u64);
    for (&id, &(seed, key)) in &m.episodes {
        let ep = snap.episode(id).unwrap().unwrap();
        assert_eq!(ep.embedding(), vector(seed).as_slice());
        assert_eq!(ep.payload().unwrap(), &[seed]);
        if let Some(k) = key {
            assert_eq!(snap.episode_by_key(&[k]).unwrap().unwrap().id(), id);
        }
        let mut got: Vec<(u64, f32)> = snap
            .bindings_of_episode(id)
            .unwrap()
            .iter()
            .map(|b| (b.concept, b.strength))
            .collect();
        got.sort_by_key(|x| x.0);
        let want: Vec<(u64, f32)> = m
            .bindings
            .iter()
            .filter(|((e, _), _)| *e == id)
            .map(|((_, c), s)| (*c, *s))
            .collect();
        assert_eq!(got, want, "bindings of episode {id}");
        for _ in 0..2 {
            // The first count may fill the index, the second reads it.
            assert_eq!(
                snap.episode_fan_count(id).unwrap(),
                want.len(),
                "fan of {id}"
            );
        }
        for (c, strength) in want {
            for _ in 0..2 {
                assert_eq!(snap.binding_strength(id, c).unwrap(), Some(strength));
            }
        }
        for &c in m.concepts.keys() {
            if !m.bindings.contains_key(&(id, c)) {
                assert_eq!(snap.binding_strength(id, c).unwrap(), None);
            }
        }
    }
    for (&id, (seed, label)) in &m.concepts {
        let c = snap.concept(id).unwrap().unwrap();
        assert_eq!(c.centroid(), vector(*seed).as_slice());
        assert_eq!(c.label().unwrap(), label);
        let fan = m.bindings.keys().filter(|(_, c)| *c == id).count();
        for _ in 0..2 {
            assert_eq!(
                snap.concept_fan_count(id).unwrap(),
                fan,
                "fan of concept {id}"
            );
            let cached = snap.lookup_concept(id).unwrap().unwrap();
            assert_eq!(cached.centroid(), vector(*seed).as_slice());
            assert_eq!(cached.label(), label);
        }
    }
    let next = m.next_concept;
    assert!(snap.lookup_concept(next).unwrap().is_none());
    assert!(snap.concept_fan_count(next).is_err());
    for k in 0..12u8 {
        let owner = m
            .episodes
            .iter()
            .find(|(_, v)| v.1 == Some(k))
            .map(|(id, _)| *id);
        assert_eq!(snap.episode_by_key(&[k]).unwrap().map(|e| e.id()), owner);
    }
}

fn run(steps: Vec<Step>) {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        dimension: Some(DIM),
        concept_cache_entries: 3, // small enough to evict
        strength_cache_entries: 5,
        ..Options::default()
    };
    let mut db = Some(Engram::open(dir.path(), opts.clone()).unwrap());
    let mut committed = Model::default();
    let mut pending = committed.clone();
    let mut tx = None;
    for s in steps {
        let d = db.as_ref().unwrap();
        let needs_tx = !matches!(s, Step::Commit | Step::Abort | Step::Reopen | Step::Compact);
        if needs_tx && tx.is_none() {
            tx = Some(d.begin_write().unwrap());
        }
        match s {
            Step::Insert { seed, key } => {
                let t = tx.as_mut().unwrap();
                let k = key.map(|k| [k]);
                let id = t
                    .insert_episode(&EpisodeInput {
                        agent: 1,
                        timestamp: 0,
                        embedding: &vector(seed),
                        payload: &[seed],
                        key: k.as_ref().map(|k| &k[..]),
                    })
                    .unwrap();
                let existing =
                    key.and_then(|k| pending.episodes.iter().find(|(_, v)| v.1 == Some(k)));
                match existing {
                    Some((&eid, _)) => assert_eq!(id, eid, "idempotent key"),
                    None => {
                        assert_eq!(id, pending.next_episode);
                        pending.next_episode += 1;
                        pending.episodes.insert(id, (seed, key));
                    }
                }
            }
            Step::Concept { seed } => {
                let label = format!("c{seed}");
                let id = tx
                    .as_mut()
                    .unwrap()
                    .insert_concept(&ConceptInput {
                        centroid: &vector(seed),
                        label: &label,
                    })
                    .unwrap();
                assert_eq!(id, pending.next_concept);
                pending.next_concept += 1;
                pending.concepts.insert(id, (seed, label));
            }
            Step::Update {
                pick: p,
                seed,
                relabel,
            } => {
                if let Some(c) = pick(pending.concepts.keys().copied().collect(), p) {
                    let label = format!("u{seed}");
                    tx.as_mut()
                        .unwrap()
                        .update_concept(c, &vector(seed), relabel.then_some(label.as_str()))
                        .unwrap();
                    let entry = pending.concepts.get_mut(&c).unwrap();
                    entry.0 = seed;
                    if relabel {
                        entry.1 = label;
                    }
                }
            }
            Step::Bind { e, c, strength } => {
                let (Some(e), Some(c)) = (
                    pick(pending.episodes.keys().copied().collect(), e),
                    pick(pending.concepts.keys().copied().collect(), c),
                ) else {
                    continue;
                };
                let s = f32::from(strength) / 255.0;
                tx.as_mut().unwrap().bind(e, c, s).unwrap();
                pending.bindings.insert((e, c), s);
            }
            Step::Unbind { e, c } => {
                let (Some(e), Some(c)) = (
                    pick(pending.episodes.keys().copied().collect(), e),
                    pick(pending.concepts.keys().copied().collect(), c),
                ) else {
                    continue;
                };
                let r = tx.as_mut().unwrap().unbind(e, c);
                assert_eq!(r.is_ok(), pending.bindings.remove(&(e, c)).is_some());
            }
            Step::DeleteEpisode { pick: p } => {
                if let Some(e) = pick(pending.episodes.keys().copied().collect(), p) {
                    tx.as_mut().unwrap().delete_episode(e).unwrap();
                    pending.episodes.remove(&e);
                    pending.bindings.retain(|(be, _), _| *be != e);
                }
            }
            Step::DeleteConcept { pick: p } => {
                if let Some(c) = pick(pending.concepts.keys().copied().collect(), p) {
                    tx.as_mut().unwrap().delete_concept(c).unwrap();
                    pending.concepts.remove(&c);
                    pending.bindings.retain(|(_, bc), _| *bc != c);
                }
            }
            Step::Commit => {
                if let Some(t) = tx.take() {
                    // A snapshot of the previous commit, warmed before and read after this
                    // one: what the commit changes in the caches must not leak into it.
                    let before = d.begin_read().unwrap();
                    check_snapshot(&before, &committed);
                    t.commit().unwrap();
                    check(d, &pending);
                    check_snapshot(&before, &committed);
                    committed = pending.clone();
                }
                check(d, &committed);
            }
            Step::Abort => {
                tx = None;
                pending = committed.clone();
                check(d, &committed);
            }
            Step::Reopen => {
                tx = None;
                pending = committed.clone();
                drop(db.take()); // release the writer lock before reopening
                db = Some(Engram::open(dir.path(), opts.clone()).unwrap());
                check(db.as_ref().unwrap(), &committed);
            }
            Step::Compact => {
                tx = None;
                pending = committed.clone();
                d.compact().unwrap();
                check(d, &committed);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn store_matches_an_in_memory_model(steps in proptest::collection::vec(step(), 1..120)) {
        run(steps);
    }
}
