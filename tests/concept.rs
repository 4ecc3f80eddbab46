//! The concept cache, the strength cache and the fan-count index: coherence with snapshots
//! under a concurrent writer, read-only handles, counters, and the episodes-only engine.

use std::sync::atomic::{AtomicBool, Ordering};

use engram_core::{ConceptInput, Engram, EpisodeInput, Error, Options};

const DIM: usize = 16;

fn opts(cache: usize) -> Options {
    Options {
        dimension: Some(DIM),
        concept_cache_entries: cache,
        ..Options::default()
    }
}

fn vector(x: f32) -> Vec<f32> {
    (0..DIM).map(|i| x + i as f32).collect()
}

fn episode(v: &[f32]) -> EpisodeInput<'_> {
    EpisodeInput {
        agent: 1,
        timestamp: 0,
        embedding: v,
        payload: b"",
        key: None,
    }
}

#[test]
fn lookups_count_hits_misses_and_evictions() {
    let dir = tempfile::tempdir().unwrap();
    let db = Engram::open(dir.path(), opts(64)).unwrap();
    let mut tx = db.begin_write().unwrap();
    for i in 0..100 {
        let label = format!("c{i}");
        tx.insert_concept(&ConceptInput {
            centroid: &vector(i as f32),
            label: &label,
        })
        .unwrap();
    }
    tx.commit().unwrap();
    let snap = db.begin_read().unwrap();
    for id in 0..64 {
        let c = snap.lookup_concept(id).unwrap().unwrap();
        assert_eq!((c.id(), c.label()), (id, format!("c{id}").as_str()));
        assert_eq!(c.centroid(), vector(id as f32).as_slice());
    }
    for id in 0..64 {
        snap.lookup_concept(id).unwrap().unwrap();
    }
    let s = db.stats();
    assert_eq!((s.lookups, s.hits, s.misses, s.evictions), (128, 64, 64, 0));
    assert_eq!((s.cache_entries, s.cache_capacity), (64, 64));
    assert!(s.cache_bytes >= 64 * DIM as u64 * 4, "{s:?}");
    assert_eq!(s.hit_ratio, 0.5);
    assert_eq!((s.concepts, s.episodes, s.bindings), (100, 0, 0));
    // Asked for once each, the newcomers are rarer than the cached concepts (asked for
    // twice): the full cache turns them away.
    for id in 64..100 {
        snap.lookup_concept(id).unwrap().unwrap();
    }
    let s = db.stats();
    assert_eq!((s.evictions, s.rejections, s.cache_entries), (0, 36, 64));
    // Asked for three times, they become more popular and displace the old ones.
    for _ in 0..3 {
        for id in 64..100 {
            snap.lookup_concept(id).unwrap().unwrap();
        }
    }
    let s = db.stats();
    assert_eq!((s.evictions, s.cache_entries), (36, 64));
    assert!(snap.lookup_concept(99).is_ok());
    let hits = db.stats().hits;
    snap.lookup_concept(99).unwrap();
    assert_eq!(db.stats().hits, hits + 1);
    assert!(snap.lookup_concept(100).unwrap().is_none());
}

#[test]
fn cache_disabled_still_answers() {
    let dir = tempfile::tempdir().unwrap();
    let db = Engram::open(dir.path(), opts(0)).unwrap();
    let mut tx = db.begin_write().unwrap();
    let c = tx
        .insert_concept(&ConceptInput {
            centroid: &vector(1.0),
            label: "x",
        })
        .unwrap();
    tx.commit().unwrap();
    let snap = db.begin_read().unwrap();
    for _ in 0..3 {
        assert_eq!(
            snap.lookup_concept(c).unwrap().unwrap().centroid(),
            vector(1.0)
        );
    }
    let s = db.stats();
    assert_eq!((s.hits, s.cache_entries, s.cache_capacity), (0, 0, 0));
}

/// Readers check every cached answer against the mapped file of their own snapshot while
/// the writer keeps updating centroids and rebinding: the coherence rule under a real race.
#[test]
fn cached_answers_match_the_snapshot_under_a_concurrent_writer() {
    const CONCEPTS: u64 = 8;
    const EPISODES: u64 = 32;
    // Every episode is also bound to these, after its binding under test, so that binding
    // sits deep enough in the episode's list for the strength cache to keep it.
    const FILLERS: u64 = 4;
    let dir = tempfile::tempdir().unwrap();
    let db = Engram::open(dir.path(), opts(4)).unwrap();
    let mut tx = db.begin_write().unwrap();
    for i in 0..CONCEPTS + FILLERS {
        tx.insert_concept(&ConceptInput {
            centroid: &vector(i as f32),
            label: "v0",
        })
        .unwrap();
    }
    let bind_fillers = |tx: &mut engram_core::WriteTxn, e: u64| {
        for f in CONCEPTS..CONCEPTS + FILLERS {
            tx.bind(e, f, 1.0).unwrap();
        }
    };
    for i in 0..EPISODES {
        let e = tx.insert_episode(&episode(&vector(i as f32))).unwrap();
        tx.bind(e, i % CONCEPTS, 0.5).unwrap();
        bind_fillers(&mut tx, e);
    }
    tx.commit().unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (db, stop) = (&db, &stop);
            s.spawn(move || {
                let mut checked = 0u64;
                while !stop.load(Ordering::Relaxed) || checked < 1000 {
                    let snap = db.begin_read().unwrap();
                    for k in 0..CONCEPTS {
                        let id = (k + t + checked) % CONCEPTS;
                        let cached = snap.lookup_concept(id).unwrap().unwrap();
                        let mapped = snap.concept(id).unwrap().unwrap();
                        assert_eq!(cached.centroid(), mapped.centroid(), "txn {}", snap.txn());
                        assert_eq!(cached.label(), mapped.label().unwrap());
                        let fan = snap.bindings_of_concept(id).unwrap();
                        assert_eq!(snap.concept_fan_count(id).unwrap(), fan.len());
                        for b in fan {
                            assert_eq!(
                                snap.binding_strength(b.episode, id).unwrap(),
                                Some(b.strength)
                            );
                            assert_eq!(
                                snap.episode_fan_count(b.episode).unwrap(),
                                1 + FILLERS as usize
                            );
                        }
                        checked += 1;
                    }
                }
            });
        }
        for round in 1..=200u64 {
            let mut tx = db.begin_write().unwrap();
            let id = round % CONCEPTS;
            tx.update_concept(id, &vector(round as f32), Some(&format!("v{round}")))
                .unwrap();
            let e = round % EPISODES;
            tx.unbind(e, e % CONCEPTS).unwrap();
            let strength = round as f32 / 200.0;
            tx.bind(e, (e + round) % CONCEPTS, strength).unwrap();
            // Move it back so every episode keeps exactly one binding under test, below its
            // fillers again.
            tx.unbind(e, (e + round) % CONCEPTS).unwrap();
            tx.bind(e, e % CONCEPTS, strength).unwrap();
            bind_fillers(&mut tx, e);
            tx.commit().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(db.stats().strength_hits > 0, "{:?}", db.stats());
}

#[test]
fn read_only_handles_drop_their_caches_when_the_writer_commits() {
    let dir = tempfile::tempdir().unwrap();
    let db = Engram::open(dir.path(), opts(16)).unwrap();
    let mut tx = db.begin_write().unwrap();
    let c = tx
        .insert_concept(&ConceptInput {
            centroid: &vector(1.0),
            label: "old",
        })
        .unwrap();
    let e = tx.insert_episode(&episode(&vector(0.0))).unwrap();
    tx.bind(e, c, 0.25).unwrap();
    // Bound after it, so the strength cache keeps the pair under test (a deep one).
    for i in 0..4 {
        let f = tx
            .insert_concept(&ConceptInput {
                centroid: &vector(i as f32),
                label: "filler",
            })
            .unwrap();
        tx.bind(e, f, 1.0).unwrap();
    }
    tx.commit().unwrap();
    let ro = Engram::open(
        dir.path(),
        Options {
            read_only: true,
            ..opts(16)
        },
    )
    .unwrap();
    let old = ro.begin_read().unwrap();
    assert_eq!(old.lookup_concept(c).unwrap().unwrap().label(), "old");
    assert_eq!(old.concept_fan_count(c).unwrap(), 1);
    assert_eq!(old.binding_strength(e, c).unwrap(), Some(0.25));
    assert_eq!(old.binding_strength(e, c).unwrap(), Some(0.25));
    assert_eq!(ro.stats().strength_hits, 1, "a deep pair is cached");
    let mut tx = db.begin_write().unwrap();
    tx.update_concept(c, &vector(2.0), Some("new")).unwrap();
    tx.bind(e, c, 0.75).unwrap();
    let e2 = tx.insert_episode(&episode(&vector(0.0))).unwrap();
    tx.bind(e2, c, 1.0).unwrap();
    tx.commit().unwrap();
    let new = ro.begin_read().unwrap();
    let got = new.lookup_concept(c).unwrap().unwrap();
    assert_eq!(
        (got.label(), got.centroid()),
        ("new", vector(2.0).as_slice())
    );
    assert_eq!(new.concept_fan_count(c).unwrap(), 2);
    let hits = ro.stats().strength_hits;
    assert_eq!(new.binding_strength(e, c).unwrap(), Some(0.75));
    // The old snapshot still answers for its own commit.
    assert_eq!(old.lookup_concept(c).unwrap().unwrap().label(), "old");
    assert_eq!(old.concept_fan_count(c).unwrap(), 1);
    assert_eq!(old.binding_strength(e, c).unwrap(), Some(0.25));
    assert_eq!(
        ro.stats().strength_hits,
        hits,
        "the commit dropped the handle's cache: no snapshot hit"
    );
}

#[test]
fn episodes_only_handles_refuse_concepts_and_keep_no_caches() {
    let dir = tempfile::tempdir().unwrap();
    let db = Engram::open(
        dir.path(),
        Options {
            episodes_only: true,
            ..opts(16)
        },
    )
    .unwrap();
    let mut tx = db.begin_write().unwrap();
    let e = tx.insert_episode(&episode(&vector(0.0))).unwrap();
    let refused = tx.insert_concept(&ConceptInput {
        centroid: &vector(1.0),
        label: "x",
    });
    assert!(
        matches!(refused, Err(Error::InvalidArgument(_))),
        "{refused:?}"
    );
    assert!(matches!(tx.bind(e, 0, 1.0), Err(Error::InvalidArgument(_))));
    tx.commit().unwrap();
    let snap = db.begin_read().unwrap();
    assert_eq!(snap.episode_fan_count(e).unwrap(), 0);
    let s = db.stats();
    assert_eq!(
        (s.cache_capacity, s.fan_index_entries, s.episodes),
        (0, 0, 1)
    );
}

/// A transaction large enough that its table entries are flushed to the file before commit:
/// the list heads and newest slots of the nodes it created are patched there, not lost.
#[test]
fn heads_of_nodes_created_by_a_large_transaction_survive_its_flushes() {
    const N: u64 = 50_000; // 50,000 × 24-byte entries: over the 1 MiB flush threshold
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        dimension: Some(2),
        ..Options::default()
    };
    {
        let db = Engram::open(dir.path(), opts.clone()).unwrap();
        let mut tx = db.begin_write().unwrap();
        let hub = tx
            .insert_concept(&ConceptInput {
                centroid: &[1.0, 0.0],
                label: "hub",
            })
            .unwrap();
        for i in 0..N {
            let e = tx
                .insert_episode(&EpisodeInput {
                    agent: 0,
                    timestamp: i as i64,
                    embedding: &[0.0, 1.0],
                    payload: b"",
                    key: None,
                })
                .unwrap();
            tx.bind(e, hub, 0.5).unwrap();
            let c = tx
                .insert_concept(&ConceptInput {
                    centroid: &[i as f32, 1.0],
                    label: "leaf",
                })
                .unwrap();
            tx.bind(e, c, 0.25).unwrap();
        }
        // The first leaf's entry was flushed long ago; update it now.
        tx.update_concept(1, &[-1.0, -1.0], Some("first")).unwrap();
        tx.commit().unwrap();
    }
    let db = Engram::open(dir.path(), opts).unwrap();
    let snap = db.begin_read().unwrap();
    assert_eq!(snap.concept_fan_count(0).unwrap(), N as usize);
    for e in [0, 1, N / 2, N - 1] {
        assert_eq!(snap.episode_fan_count(e).unwrap(), 2, "episode {e}");
        assert_eq!(snap.binding_strength(e, 0).unwrap(), Some(0.5));
        assert_eq!(snap.binding_strength(e, e + 1).unwrap(), Some(0.25));
        assert_eq!(snap.concept_fan_count(e + 1).unwrap(), 1);
    }
    let first = snap.lookup_concept(1).unwrap().unwrap();
    assert_eq!(
        (first.centroid(), first.label()),
        (&[-1.0f32, -1.0][..], "first")
    );
    assert_eq!(
        snap.concept(N).unwrap().unwrap().centroid(),
        &[(N - 1) as f32, 1.0]
    );
}
