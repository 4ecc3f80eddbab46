//! Round trips, snapshots, updates and deletes, bad input: the store as a user drives it.

#[path = "harness/formats.rs"]
mod formats;

use engram_core::{
    ConceptInput, Cue, Engram, EpisodeInput, Error, Filter, FormationParams, Manifest, Metric,
    Options, RecallParams, Reclaimable, TensorInput, cluster, quant::QuantScheme,
};

const DIM: usize = 16;

fn opts() -> Options {
    Options {
        dimension: Some(DIM),
        ..Options::default()
    }
}

fn vector(seed: u64) -> Vec<f32> {
    (0..DIM)
        .map(|i| ((seed * 31 + i as u64 * 7) % 97) as f32 / 97.0 - 0.5)
        .collect()
}

fn episode<'a>(v: &'a [f32], payload: &'a [u8], key: Option<&'a [u8]>) -> EpisodeInput<'a> {
    EpisodeInput {
        agent: 7,
        timestamp: 1_700_000_000,
        embedding: v,
        payload,
        key,
    }
}

/// Forms `k` concepts from the episodes bound to none.
fn form_unbound(db: &Engram, k: usize) {
    let clustering = cluster::Params {
        count: cluster::Count::K(k),
        ..Default::default()
    };
    db.form_concepts(&FormationParams {
        filter: &Filter::default(),
        unbound_only: true,
        clustering,
        progress: None,
    })
    .unwrap();
}

#[test]
fn committed_data_round_trips_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let (e, c);
    {
        let db = Engram::open(&path, opts()).unwrap();
        let mut tx = db.begin_write().unwrap();
        let v = vector(1);
        e = tx.insert_episode(&episode(&v, b"tides", None)).unwrap();
        c = tx
            .insert_concept(&ConceptInput {
                centroid: &vector(2),
                label: "sea",
            })
            .unwrap();
        tx.bind(e, c, 0.83).unwrap();
        tx.commit().unwrap();
    }
    let db = Engram::open(&path, opts()).unwrap();
    let snap = db.begin_read().unwrap();
    let ep = snap.episode(e).unwrap().unwrap();
    assert_eq!(ep.embedding(), vector(1).as_slice());
    assert_eq!(ep.payload().unwrap(), b"tides");
    assert_eq!((ep.agent(), ep.timestamp()), (7, 1_700_000_000));
    let con = snap.concept(c).unwrap().unwrap();
    assert_eq!(con.centroid(), vector(2).as_slice());
    assert_eq!(con.label().unwrap(), "sea");
    let b = snap.bindings_of_episode(e).unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!((b[0].concept, b[0].strength), (c, 0.83));
    assert_eq!(snap.bindings_of_concept(c).unwrap()[0].episode, e);
    assert_eq!(snap.concept_fan_count(c).unwrap(), 1);
}

/// A pass reversed visits what it visits forward, backwards, and taken from both ends at
/// once, each item once.
fn same_both_ways<T: PartialEq + std::fmt::Debug, I: DoubleEndedIterator<Item = T>>(
    forward: &[T],
    pass: impl Fn() -> I,
) {
    let mut down: Vec<T> = pass().rev().collect();
    down.reverse();
    assert_eq!(down, forward);
    let (mut front, mut back, mut pass) = (Vec::new(), Vec::new(), pass());
    for step in 0.. {
        let next = match step % 3 {
            0 => pass.next_back().map(|t| back.push(t)),
            _ => pass.next().map(|t| front.push(t)),
        };
        if next.is_none() {
            break;
        }
    }
    front.extend(back.into_iter().rev());
    assert_eq!(front, forward);
}

/// `episodes()` visits exactly the live episodes `episode(id)` finds, in id order, through
/// deletes, an expired time to live, a compaction that moves slots, and reopen.
#[test]
fn episodes_iterates_what_episode_finds() {
    use engram_core::{Clock, Ttl};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let now = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(100));
    let clock = {
        let now = now.clone();
        Clock::new(move || now.load(std::sync::atomic::Ordering::Relaxed))
    };
    let opts = || Options {
        clock: clock.clone(),
        ..opts()
    };
    let listed = |db: &Engram| {
        let snap = db.begin_read().unwrap();
        let all: Vec<(u64, Vec<f32>, Vec<u8>)> = snap
            .episodes()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.id(),
                    e.embedding().to_vec(),
                    e.payload().unwrap().to_vec(),
                )
            })
            .collect();
        let one_by_one: Vec<_> = snap
            .episode_ids()
            .unwrap()
            .into_iter()
            .map(|id| {
                let e = snap.episode(id).unwrap().unwrap();
                (id, e.embedding().to_vec(), e.payload().unwrap().to_vec())
            })
            .collect();
        assert_eq!(all, one_by_one);
        let read = |e: engram_core::Result<engram_core::Episode>| {
            let e = e.unwrap();
            (
                e.id(),
                e.embedding().to_vec(),
                e.payload().unwrap().to_vec(),
            )
        };
        same_both_ways(&all, || snap.episodes().map(read));
        all.into_iter().map(|(id, ..)| id).collect::<Vec<u64>>()
    };
    let db = Engram::open(&path, opts()).unwrap();
    assert!(listed(&db).is_empty());
    let mut tx = db.begin_write().unwrap();
    for i in 0..600u64 {
        let v = vector(i);
        let payload = i.to_le_bytes();
        let ttl = match i % 7 {
            0 => Ttl::At(150),
            _ => Ttl::Never,
        };
        tx.insert_episode_with_ttl(&episode(&v, &payload, None), ttl)
            .unwrap();
    }
    tx.commit().unwrap();
    let mut tx = db.begin_write().unwrap();
    for id in (0..600).filter(|i| i % 5 == 0) {
        tx.delete_episode(id).unwrap();
    }
    tx.commit().unwrap();
    let live = |expired: bool| -> Vec<u64> {
        (0..600)
            .filter(|i| i % 5 != 0 && !(expired && i % 7 == 0))
            .collect()
    };
    assert_eq!(listed(&db), live(false));
    now.store(200, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(listed(&db), live(true));
    db.compact().unwrap();
    assert_eq!(listed(&db), live(true));
    drop(db);
    assert_eq!(listed(&Engram::open(&path, opts()).unwrap()), live(true));
}

/// `concepts()` visits exactly the live concepts `concept(id)` finds, each at the version
/// this snapshot sees, through updates, deletes and compaction.
#[test]
fn concepts_iterates_what_concept_finds() {
    let dir = tempfile::tempdir().unwrap();
    let db = Engram::open(dir.path(), opts()).unwrap();
    let listed = |snap: &engram_core::ReadTxn| {
        let all: Vec<(u64, u64, String)> = snap
            .concepts()
            .map(|c| {
                let c = c.unwrap();
                (c.id(), c.version_txn(), c.label().unwrap().to_string())
            })
            .collect();
        let one_by_one: Vec<_> = snap
            .concept_ids()
            .unwrap()
            .into_iter()
            .map(|id| {
                let c = snap.concept(id).unwrap().unwrap();
                (id, c.version_txn(), c.label().unwrap().to_string())
            })
            .collect();
        assert_eq!(all, one_by_one);
        let read = |c: engram_core::Result<engram_core::Concept>| {
            let c = c.unwrap();
            (c.id(), c.version_txn(), c.label().unwrap().to_string())
        };
        same_both_ways(&all, || snap.concepts().map(read));
        all
    };
    let mut tx = db.begin_write().unwrap();
    for i in 0..300 {
        let label = format!("c{i}");
        tx.insert_concept(&ConceptInput {
            centroid: &vector(i),
            label: &label,
        })
        .unwrap();
    }
    tx.commit().unwrap();
    let before = db.begin_read().unwrap();
    let mut tx = db.begin_write().unwrap();
    for id in (0..300).filter(|i| i % 3 == 0) {
        tx.update_concept(id, &vector(id + 1), Some("moved"))
            .unwrap();
    }
    for id in (0..300).filter(|i| i % 3 == 1) {
        tx.delete_concept(id).unwrap();
    }
    tx.commit().unwrap();
    let old = listed(&before);
    assert_eq!(old.len(), 300);
    assert!(
        old.iter()
            .all(|(_, txn, l)| *txn == 1 && l.starts_with('c'))
    );
    let now = listed(&db.begin_read().unwrap());
    assert_eq!(now.len(), 200);
    assert!(now.iter().all(|(id, txn, l)| match id % 3 {
        0 => (*txn, l.as_str()) == (2, "moved"),
        _ => *txn == 1 && *l == format!("c{id}"),
    }));
    db.compact().unwrap();
    assert_eq!(listed(&db.begin_read().unwrap()), now);
}

#[test]
fn embeddings_are_borrowed_from_the_map_and_aligned() {
    let dir = tempfile::tempdir().unwrap();
    let db = Engram::open(dir.path(), opts()).unwrap();
    let mut tx = db.begin_write().unwrap();
    for i in 0..10 {
        tx.insert_episode(&episode(&vector(i), b"", None)).unwrap();
    }
    tx.commit().unwrap();
    let snap = db.begin_read().unwrap();
    let a = snap.episode(3).unwrap().unwrap().embedding().as_ptr() as usize;
    let b = snap.episode(4).unwrap().unwrap().embedding().as_ptr() as usize;
    assert_eq!(a % 64, 0, "slots are 64-byte aligned");
    assert_eq!((b - a) % 64, 0, "fixed stride, a multiple of 64 bytes");
    assert_eq!(b - a, 192, "64 B of floats + 72 B of fields + crc, padded");
}

#[test]
fn uncommitted_writes_are_invisible_and_dropped_transactions_vanish() {
    let dir = tempfile::tempdir().unwrap();
    let db = Engram::open(dir.path(), opts()).unwrap();
    {
        let mut tx = db.begin_write().unwrap();
        tx.insert_episode(&episode(&vector(1), b"gone", None))
            .unwrap();
        assert_eq!(db.begin_read().unwrap().episode_count(), 0);
    } // dropped: aborted
    let mut tx = db.begin_write().unwrap();
    let id = tx
        .insert_episode(&episode(&vector(2), b"kept", None))
        .unwrap();
    tx.commit().unwrap();
    assert_eq!(id, 0, "ids of an aborted transaction are reused");
    let snap = db.begin_read().unwrap();
    assert_eq!(
        snap.episode(0).unwrap().unwrap().payload().unwrap(),
        b"kept"
    );
    assert_eq!(snap.episode_count(), 1);
}

#[test]
fn snapshots_keep_their_version_through_updates_deletes_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let db = Engram::open(dir.path(), opts()).unwrap();
    let mut tx = db.begin_write().unwrap();
    let e = tx
        .insert_episode(&episode(&vector(1), b"one", None))
        .unwrap();
    let c = tx
        .insert_concept(&ConceptInput {
            centroid: &vector(10),
            label: "old",
        })
        .unwrap();
    tx.bind(e, c, 0.5).unwrap();
    tx.commit().unwrap();
    let old = db.begin_read().unwrap();

    let mut tx = db.begin_write().unwrap();
    tx.update_concept(c, &vector(11), Some("new")).unwrap();
    tx.bind(e, c, 0.9).unwrap(); // replaces the strength
    tx.commit().unwrap();
    let mid = db.begin_read().unwrap();

    let mut tx = db.begin_write().unwrap();
    tx.delete_episode(e).unwrap();
    tx.commit().unwrap();
    db.compact().unwrap();
    let new = db.begin_read().unwrap();

    assert_eq!(old.concept(c).unwrap().unwrap().label().unwrap(), "old");
    assert_eq!(
        old.concept(c).unwrap().unwrap().centroid(),
        vector(10).as_slice()
    );
    assert_eq!(old.bindings_of_concept(c).unwrap()[0].strength, 0.5);
    assert_eq!(old.episode(e).unwrap().unwrap().payload().unwrap(), b"one");
    assert_eq!(mid.concept(c).unwrap().unwrap().label().unwrap(), "new");
    assert_eq!(mid.bindings_of_concept(c).unwrap().len(), 1);
    assert_eq!(mid.bindings_of_concept(c).unwrap()[0].strength, 0.9);
    assert!(new.episode(e).unwrap().is_none());
    assert_eq!(new.concept_fan_count(c).unwrap(), 0);
    assert_eq!(new.concept(c).unwrap().unwrap().label().unwrap(), "new");
    drop(db);
    let db = Engram::open(dir.path(), opts()).unwrap();
    let snap = db.begin_read().unwrap();
    assert!(snap.episode(e).unwrap().is_none());
    assert_eq!(
        snap.concept(c).unwrap().unwrap().centroid(),
        vector(11).as_slice()
    );
}

#[test]
fn compaction_reclaims_disk_space() {
    let dir = tempfile::tempdir().unwrap();
    let db = Engram::open(dir.path(), opts()).unwrap();
    let mut tx = db.begin_write().unwrap();
    for i in 0..20_000 {
        tx.insert_episode(&episode(&vector(i), &[7u8; 200], None))
            .unwrap();
    }
    tx.commit().unwrap();
    let mut tx = db.begin_write().unwrap();
    for i in 0..19_000 {
        tx.delete_episode(i).unwrap();
    }
    tx.commit().unwrap();
    let size = |p: &std::path::Path| -> u64 {
        std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().blocks() * 512)
            .sum()
    };
    use std::os::unix::fs::MetadataExt;
    let before = size(dir.path());
    db.compact().unwrap();
    let after = size(dir.path());
    assert!(
        after * 4 < before,
        "compaction kept {after} of {before} bytes"
    );
    let snap = db.begin_read().unwrap();
    assert_eq!(snap.episode_count(), 1_000);
    assert_eq!(
        snap.episode(19_500).unwrap().unwrap().embedding(),
        vector(19_500).as_slice()
    );
}

#[test]
fn reclaimable_counts_what_compaction_drops() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        int8_mirror: Some(true),
        ..opts()
    };
    let db = Engram::open(dir.path(), opts).unwrap();
    let weights: Vec<f32> = (0..3_000).map(|i| (i % 13) as f32 - 6.0).collect();
    let policy = [TensorInput {
        name: "w",
        shape: &[3_000],
        data: &weights,
        importance: None,
    }];
    let mut tx = db.begin_write().unwrap();
    let eps: Vec<u64> = (0..10)
        .map(|i| tx.insert_episode(&episode(&vector(i), b"p", None)).unwrap())
        .collect();
    let concept = |tx: &mut engram_core::WriteTxn<'_>, seed| {
        tx.insert_concept(&ConceptInput {
            centroid: &vector(seed),
            label: "c",
        })
        .unwrap()
    };
    let (a, b) = (concept(&mut tx, 100), concept(&mut tx, 101));
    for &e in &eps {
        tx.bind(e, a, 1.0).unwrap();
    }
    for &e in &eps[..3] {
        tx.bind(e, b, 0.5).unwrap();
    }
    tx.put_network(1, "policy", &policy, QuantScheme::Q8)
        .unwrap();
    tx.commit().unwrap();
    assert_eq!(
        db.begin_read().unwrap().reclaimable(),
        Reclaimable::default()
    );

    let mut tx = db.begin_write().unwrap();
    tx.update_concept(a, &vector(102), None).unwrap(); // its first version is garbage
    tx.unbind(eps[0], b).unwrap();
    tx.delete_episode(eps[9]).unwrap(); // with its binding to a
    tx.delete_concept(b).unwrap(); // with its two bindings left
    tx.put_network(1, "policy", &policy, QuantScheme::Q8)
        .unwrap(); // replaces the first version's pages
    tx.commit().unwrap();
    let snap = db.begin_read().unwrap();
    let r = snap.reclaimable();
    assert_eq!((r.episodes, r.concept_versions, r.bindings), (1, 2, 4));
    let net_bytes = snap.network(1, "policy").unwrap().unwrap().bytes() as u64;
    drop(snap);

    db.compact().unwrap();
    assert_eq!(
        db.begin_read().unwrap().reclaimable(),
        Reclaimable::default()
    );
    // Compacted files hold exactly the live records: their lengths give each record's size.
    let len = |ext: &str| -> u64 {
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == ext))
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum()
    };
    let (live_eps, live_concepts, live_bindings) = (9, 1, 9);
    let expected = (len("eps") + len("i8")) / live_eps * r.episodes
        + len("con") / live_concepts * r.concept_versions
        + len("bnd") / live_bindings * r.bindings
        + net_bytes.next_multiple_of(engram_core::PAGE as u64);
    assert_eq!(r.bytes, expected);
}

/// Every dimension reads back what it wrote. At an odd dimension the archive's root sits
/// after 4 padding bytes (it is 8-byte aligned); reads once took that for corruption.
#[test]
fn odd_and_even_dimensions_round_trip_through_every_path() {
    for dim in [1, 2, 3, 7, 17, 767] {
        for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
            let dir = tempfile::tempdir().unwrap();
            let opts = Options {
                dimension: Some(dim),
                metric: Some(metric),
                int8_mirror: Some(true),
                ..Options::default()
            };
            let v = |seed: u64| -> Vec<f32> {
                (0..dim as u64)
                    .map(|i| ((seed * 31 + i * 7) % 97) as f32 / 97.0 - 0.3)
                    .collect()
            };
            let db = Engram::open(dir.path(), opts.clone()).unwrap();
            let mut tx = db.begin_write().unwrap();
            for i in 0..40 {
                tx.insert_episode(&episode(&v(i % 4), b"payload", None))
                    .unwrap();
            }
            let c = tx
                .insert_concept(&ConceptInput {
                    centroid: &v(0),
                    label: "zero",
                })
                .unwrap();
            tx.bind(0, c, 0.5).unwrap();
            tx.commit().unwrap();
            form_unbound(&db, 2);
            let mut tx = db.begin_write().unwrap();
            tx.delete_episode(39).unwrap();
            tx.update_concept(c, &v(1), None).unwrap();
            tx.commit().unwrap();
            db.compact().unwrap();
            let copy = dir.path().join("copy");
            db.backup(&copy).unwrap();
            drop(db);

            for path in [dir.path(), copy.as_path()] {
                let db = Engram::open(path, opts.clone()).unwrap();
                let snap = db.begin_read().unwrap();
                snap.verify().unwrap();
                let what = format!("dim {dim}, {metric:?}, {}", path.display());
                assert_eq!(
                    snap.episode(5).unwrap().unwrap().embedding(),
                    v(1),
                    "{what}"
                );
                assert_eq!(snap.concept(c).unwrap().unwrap().centroid(), v(1), "{what}");
                assert_eq!(snap.lookup_concept(c).unwrap().unwrap().centroid(), v(1));
                let hits = snap.search(&v(2), 3, &Filter::default()).unwrap();
                assert_eq!(hits.len(), 3, "{what}");
                if metric == Metric::L2 {
                    // The ten exact copies of the query are the nearest (at dim 1, cosine
                    // and dot rank by sign and size, not by sameness).
                    assert!(hits.iter().all(|h| h.id % 4 == 2), "{what}: {hits:?}");
                }
                let int8 = snap.search_int8(&v(2), 3, &Filter::default(), 20).unwrap();
                assert_eq!(int8.len(), 3, "{what}");
                assert!(snap.search_concepts(&v(2), 3).unwrap().len() >= 2);
                let cue = Cue {
                    embedding: &v(0),
                    filter: Filter::default(),
                };
                assert!(
                    !snap
                        .recall(&cue, &RecallParams::default())
                        .unwrap()
                        .is_empty()
                );
            }
        }
    }
}

#[test]
fn keys_make_inserts_idempotent_and_survive_growth_delete_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let db = Engram::open(dir.path(), opts()).unwrap();
    let mut ids = Vec::new();
    for round in 0..3 {
        let mut tx = db.begin_write().unwrap();
        for i in 0..1_500u64 {
            let key = format!("k{}", round * 1_500 + i);
            let id = tx
                .insert_episode(&episode(&vector(i), b"p", Some(key.as_bytes())))
                .unwrap();
            assert_eq!(
                tx.insert_episode(&episode(&vector(i), b"p", Some(key.as_bytes())))
                    .unwrap(),
                id,
                "same key in one transaction"
            );
            ids.push(id);
        }
        tx.commit().unwrap();
    }
    let mut tx = db.begin_write().unwrap();
    assert_eq!(
        tx.insert_episode(&episode(&vector(0), b"p", Some(b"k42")))
            .unwrap(),
        ids[42]
    );
    tx.delete_episode(ids[42]).unwrap();
    let fresh = tx
        .insert_episode(&episode(&vector(0), b"q", Some(b"k42")))
        .unwrap();
    assert_ne!(fresh, ids[42], "a deleted key can be used again");
    tx.commit().unwrap();
    db.compact().unwrap();
    drop(db);
    let db = Engram::open(dir.path(), opts()).unwrap();
    let snap = db.begin_read().unwrap();
    assert_eq!(snap.episode_by_key(b"k42").unwrap().unwrap().id(), fresh);
    assert_eq!(
        snap.episode_by_key(b"k4000").unwrap().unwrap().id(),
        ids[4000]
    );
    assert!(snap.episode_by_key(b"nope").unwrap().is_none());
    assert_eq!(
        snap.episode(ids[7]).unwrap().unwrap().key().unwrap(),
        Some(&b"k7"[..])
    );
}

/// Vectors so long that their dot products would overflow the f32 sums of the kernels are
/// refused where they come in, so no score is ever infinite or NaN. The longest accepted ones
/// still search and form concepts with finite scores, under every metric.
#[test]
fn vectors_too_long_for_f32_sums_are_refused() {
    let too_long = [f32::MAX; 16];
    let longest: Vec<f32> = (0..16).map(|d| if d < 4 { 4.9e17 } else { 0.0 }).collect();
    for metric in [Metric::Cosine, Metric::Dot, Metric::L2] {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            metric: Some(metric),
            ..opts()
        };
        let db = Engram::open(dir.path(), options).unwrap();
        let mut tx = db.begin_write().unwrap();
        let refused = |r: Result<u64, Error>| match r {
            Err(Error::InvalidArgument(m)) => assert!(m.contains("norm"), "{m}"),
            other => panic!("{metric:?}: {other:?}"),
        };
        refused(tx.insert_episode(&episode(&too_long, b"", None)));
        refused(tx.insert_concept(&ConceptInput {
            centroid: &too_long,
            label: "x",
        }));
        for seed in 0..40 {
            tx.insert_episode(&episode(&vector(seed), b"", None))
                .unwrap();
        }
        let far = tx.insert_episode(&episode(&longest, b"", None)).unwrap();
        let opposite: Vec<f32> = longest.iter().map(|x| -x).collect();
        tx.insert_episode(&episode(&opposite, b"", None)).unwrap();
        tx.commit().unwrap();
        let snap = db.begin_read().unwrap();
        for r in [
            snap.search(&too_long, 3, &Filter::default()).map(|_| ()),
            snap.search_concepts(&too_long, 3).map(|_| ()),
            snap.search_batch(&[&vector(1), &too_long], 3, &Filter::default())
                .map(|_| ()),
            snap.recall(
                &Cue {
                    embedding: &too_long,
                    filter: Filter::default(),
                },
                &RecallParams::default(),
            )
            .map(|_| ()),
        ] {
            assert!(
                matches!(r, Err(Error::InvalidArgument(_))),
                "{metric:?}: {r:?}"
            );
        }
        let hits = snap.search(&longest, 42, &Filter::default()).unwrap();
        assert_eq!(hits.len(), 42, "{metric:?}");
        assert!(
            hits.iter().all(|h| h.score.is_finite()),
            "{metric:?}: {hits:?}"
        );
        assert_eq!(hits[0].id, far, "{metric:?}");
        drop(snap);
        db.form_concepts(&FormationParams {
            filter: &Filter::default(),
            unbound_only: false,
            clustering: cluster::Params::default(),
            progress: None,
        })
        .unwrap();
        db.begin_read().unwrap().verify().unwrap();
    }
}

#[test]
fn bad_input_gets_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = Engram::open(dir.path(), opts()).unwrap();
    let mut tx = db.begin_write().unwrap();
    let err = tx
        .insert_episode(&episode(&[1.0; 3], b"", None))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::DimensionMismatch {
                expected: 16,
                found: 3
            }
        ),
        "{err}"
    );
    let mut nan = vector(1);
    nan[5] = f32::NAN;
    let err = tx.insert_episode(&episode(&nan, b"", None)).unwrap_err();
    assert!(matches!(err, Error::NonFinite { index: 5, .. }), "{err}");
    let mut inf = vector(1);
    inf[0] = f32::INFINITY;
    assert!(matches!(
        tx.insert_concept(&ConceptInput {
            centroid: &inf,
            label: "x"
        }),
        Err(Error::NonFinite { .. })
    ));
    assert!(matches!(
        tx.bind(5, 0, 1.0),
        Err(Error::NotFound {
            kind: "episode",
            id: 5
        })
    ));
    let e = tx.insert_episode(&episode(&vector(1), b"", None)).unwrap();
    assert!(matches!(
        tx.bind(e, 9, 1.0),
        Err(Error::NotFound {
            kind: "concept",
            ..
        })
    ));
    assert!(matches!(tx.delete_episode(99), Err(Error::NotFound { .. })));
    assert!(matches!(
        tx.update_concept(3, &vector(1), None),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        tx.insert_episode(&episode(&vector(1), b"", Some(b""))),
        Err(Error::InvalidArgument(_))
    ));
    let c = tx
        .insert_concept(&ConceptInput {
            centroid: &vector(1),
            label: "c",
        })
        .unwrap();
    assert!(matches!(
        tx.bind(e, c, f32::NAN),
        Err(Error::NonFinite { .. })
    ));
    assert!(matches!(tx.unbind(e, c), Err(Error::NotFound { .. })));
    tx.commit().unwrap();
    let snap = db.begin_read().unwrap();
    assert!(snap.episode(12345).unwrap().is_none());
    assert!(matches!(
        snap.bindings_of_concept(77),
        Err(Error::NotFound { .. })
    ));
    // A second writer, in this process.
    assert!(matches!(
        Engram::open(dir.path(), opts()),
        Err(Error::Locked { .. })
    ));
    drop(db);
    // Wrong dimension or model on reopen, both values named.
    let err = Engram::open(
        dir.path(),
        Options {
            dimension: Some(768),
            ..opts()
        },
    )
    .err()
    .unwrap();
    assert!(
        err.to_string().contains("16") && err.to_string().contains("768"),
        "{err}"
    );
    let err = Engram::open(
        dir.path(),
        Options {
            model: Some("all-mpnet-base-v2".into()),
            ..opts()
        },
    )
    .err()
    .unwrap();
    assert!(matches!(err, Error::ModelMismatch { .. }), "{err}");
}

#[test]
fn foreign_directories_and_newer_formats_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    assert!(matches!(
        Engram::open(dir.path(), opts()),
        Err(Error::NotADatabase { .. })
    ));

    let file = dir.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    assert!(matches!(
        Engram::open(&file, opts()),
        Err(Error::NotADatabase { .. })
    ));

    let db_dir = dir.path().join("db");
    drop(Engram::open(&db_dir, opts()).unwrap());
    let manifest = db_dir.join("MANIFEST");
    let mut bytes = std::fs::read(&manifest).unwrap();
    bytes[8] = 99; // format version
    std::fs::write(&manifest, &bytes).unwrap();
    let err = Engram::open(&db_dir, opts()).err().unwrap();
    assert!(
        matches!(
            err,
            Error::FormatVersion {
                found: 99,
                supported: engram_core::FORMAT_VERSION
            }
        ),
        "{err}"
    );

    let ro = Options {
        read_only: true,
        ..opts()
    };
    assert!(matches!(
        Engram::open(dir.path().join("missing"), ro),
        Err(Error::NotADatabase { .. })
    ));
}

#[test]
fn read_only_handles_see_commits_and_refuse_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = Engram::open(dir.path(), opts()).unwrap();
    let ro = Engram::open(
        dir.path(),
        Options {
            read_only: true,
            ..opts()
        },
    )
    .unwrap();
    assert!(matches!(ro.begin_write(), Err(Error::ReadOnly)));
    assert_eq!(ro.begin_read().unwrap().episode_count(), 0);
    let mut tx = db.begin_write().unwrap();
    tx.insert_episode(&episode(&vector(3), b"x", None)).unwrap();
    tx.commit().unwrap();
    let snap = ro.begin_read().unwrap();
    assert_eq!(snap.episode_count(), 1);
    assert_eq!(
        snap.episode(0).unwrap().unwrap().embedding(),
        vector(3).as_slice()
    );
    db.compact().unwrap();
    let mut tx = db.begin_write().unwrap();
    tx.insert_episode(&episode(&vector(4), b"y", None)).unwrap();
    tx.commit().unwrap();
    let snap2 = ro.begin_read().unwrap();
    assert_eq!(snap2.episode_count(), 2);
    assert_eq!(snap.episode(0).unwrap().unwrap().payload().unwrap(), b"x");
}

/// A read-only handle keeps the `head` open; when the name comes to point at another file
/// (removed, then written anew by the writer's next commit), it follows the new one.
/// A read-only open needs no write access: files this user may only read (another user's,
/// an archive's) open, and read as their last writer published them. Before, an open that
/// could take the lock tried to open every file for writing to recover, and failed.
#[test]
fn a_read_only_open_needs_no_write_access() {
    if let Ok(dir) = std::env::var("ENGRAM_READER_CHILD") {
        return read_without_write_access(std::path::Path::new(&dir));
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    // Beside it, the same database as a `kill -9` of its writer leaves it (copied with the
    // handle open): the commit is in the write-ahead log only, the head names it.
    let killed = tmp.path().join("killed");
    {
        let db = Engram::open(&dir, opts()).unwrap();
        let mut tx = db.begin_write().unwrap();
        for i in 0..20 {
            tx.insert_episode(&episode(&vector(i), b"p", None)).unwrap();
        }
        tx.commit().unwrap();
        formats::copy_dir(&dir, &killed);
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path, m| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    for d in [&dir, &killed] {
        // The reader may create its own lock file, and so take the lock, but write no
        // other.
        std::fs::remove_file(d.join("LOCK")).unwrap();
        for entry in std::fs::read_dir(d).unwrap() {
            mode(&entry.unwrap().path(), 0o444);
        }
        mode(d, 0o777);
    }
    mode(tmp.path(), 0o755);
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_read_only_open_needs_no_write_access",
            "--test-threads=1",
        ])
        .env("ENGRAM_READER_CHILD", &dir)
        .status()
        .unwrap();
    assert!(status.success(), "the reader failed");
}

/// The child of [`a_read_only_open_needs_no_write_access`].
fn read_without_write_access(dir: &std::path::Path) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // As root, become a user who does not own the files (nobody) and so may not write
        // them. SAFETY: plain syscalls; glibc applies them to every thread of the process.
        assert_eq!(unsafe { libc::setgid(65534) }, 0);
        // SAFETY: as above.
        assert_eq!(unsafe { libc::setuid(65534) }, 0);
    }
    let eps = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "eps"))
        .unwrap();
    assert!(
        std::fs::OpenOptions::new().write(true).open(&eps).is_err(),
        "the system refuses this user writes"
    );
    let read_only = Options {
        read_only: true,
        ..opts()
    };
    let db = Engram::open(dir, read_only.clone()).unwrap();
    let snap = db.begin_read().unwrap();
    assert_eq!(snap.episode_count(), 20);
    assert_eq!(snap.episode(19).unwrap().unwrap().embedding(), vector(19));
    snap.verify().unwrap();
    // A writer cannot open it, and says why.
    assert!(matches!(Engram::open(dir, opts()), Err(Error::Io { .. })));
    // Left by a killed writer, the commit lives in the log only, which this reader may not
    // replay: it reads the newest commit record's version (the creation's), not the head's,
    // whose bytes a power loss could have taken from the data files.
    let killed = Engram::open(dir.with_file_name("killed"), read_only).unwrap();
    let snap = killed.begin_read().unwrap();
    assert_eq!((snap.txn(), snap.episode_count()), (0, 0));
    snap.verify().unwrap();
}

#[test]
fn a_read_only_handle_follows_a_head_file_written_anew() {
    let dir = tempfile::tempdir().unwrap();
    let db = Engram::open(dir.path(), opts()).unwrap();
    let ro_opts = Options {
        read_only: true,
        ..opts()
    };
    let ro = Engram::open(dir.path(), ro_opts).unwrap();
    let commit = |seed| {
        let mut tx = db.begin_write().unwrap();
        tx.insert_episode(&episode(&vector(seed), b"x", None))
            .unwrap();
        tx.commit().unwrap();
    };
    commit(1);
    assert_eq!(ro.begin_read().unwrap().episode_count(), 1);
    std::fs::remove_file(dir.path().join("head")).unwrap();
    commit(2);
    commit(3);
    // The name is checked again at most every 100 ms.
    std::thread::sleep(std::time::Duration::from_millis(150));
    assert_eq!(ro.begin_read().unwrap().episode_count(), 3);
    commit(4);
    assert_eq!(ro.begin_read().unwrap().episode_count(), 4);
}

#[test]
fn backup_is_a_consistent_openable_copy() {
    let dir = tempfile::tempdir().unwrap();
    let db = Engram::open(dir.path().join("db"), opts()).unwrap();
    let mut tx = db.begin_write().unwrap();
    for i in 0..100 {
        tx.insert_episode(&episode(&vector(i), b"p", Some(format!("k{i}").as_bytes())))
            .unwrap();
    }
    let c = tx
        .insert_concept(&ConceptInput {
            centroid: &vector(1),
            label: "c",
        })
        .unwrap();
    tx.bind(5, c, 0.4).unwrap();
    tx.commit().unwrap();
    let mut tx = db.begin_write().unwrap();
    tx.delete_episode(6).unwrap();
    tx.commit().unwrap();
    db.backup(dir.path().join("copy")).unwrap();
    let mut tx = db.begin_write().unwrap(); // after the backup: not in it
    tx.delete_episode(7).unwrap();
    tx.commit().unwrap();
    let copy = Engram::open(dir.path().join("copy"), opts()).unwrap();
    let snap = copy.begin_read().unwrap();
    assert_eq!(snap.episode_count(), 99);
    assert!(snap.episode(6).unwrap().is_none());
    assert!(snap.episode(7).unwrap().is_some());
    assert_eq!(snap.bindings_of_concept(c).unwrap()[0].episode, 5);
    assert_eq!(snap.episode_by_key(b"k50").unwrap().unwrap().id(), 50);
    let mut tx = copy.begin_write().unwrap();
    tx.insert_episode(&episode(&vector(1), b"", None)).unwrap();
    tx.commit().unwrap();
    assert!(
        db.backup(dir.path().join("copy")).is_err(),
        "refuses a non-empty destination"
    );
}

/// Everything a snapshot reads, as comparable values: each episode with its key, expiry and
/// recorded accesses, each concept with its formation figures and bindings, the agents'
/// times to live and the networks' weights.
fn everything(snap: &engram_core::ReadTxn) -> Vec<String> {
    let mut out = Vec::new();
    for e in snap.episodes() {
        let e = e.unwrap();
        let bits: Vec<u32> = e.embedding().iter().map(|x| x.to_bits()).collect();
        out.push(format!(
            "episode {} {} {} {bits:?} {:?} {:?} {:?} {:?} {} {:?}",
            e.id(),
            e.agent(),
            e.timestamp(),
            e.payload().unwrap(),
            e.key().unwrap(),
            e.expires_at().unwrap(),
            e.last_access().unwrap(),
            e.access_count().unwrap(),
            snap.bindings_of_episode(e.id()).unwrap().len(),
        ));
    }
    for c in snap.concepts() {
        let c = c.unwrap();
        let bits: Vec<u32> = c.centroid().iter().map(|x| x.to_bits()).collect();
        out.push(format!(
            "concept {} {bits:?} {} {} {} {} {:?}",
            c.id(),
            c.label().unwrap(),
            c.members(),
            c.coherence(),
            c.version_txn(),
            snap.bindings_of_concept(c.id()).unwrap(),
        ));
    }
    for (agent, name) in snap.networks() {
        out.push(format!("ttl {agent} {:?}", snap.agent_ttl(agent)));
        for t in snap.network(agent, &name).unwrap().unwrap().tensors() {
            let t = t.unwrap();
            let mut w = vec![0f32; t.shape.iter().product()];
            t.dequantize_into(&mut w).unwrap();
            out.push(format!(
                "network {agent} {name} {} {:?} {w:?}",
                t.name, t.shape
            ));
        }
    }
    out
}

#[test]
fn backup_as_changes_the_settings_and_keeps_everything_else() {
    let dir = tempfile::tempdir().unwrap();
    let model = |m: &str| Options {
        model: Some(m.into()),
        ..opts()
    };
    let db = Engram::open(dir.path().join("db"), model("m1")).unwrap();
    let mut tx = db.begin_write().unwrap();
    tx.set_agent_ttl(7, Some(1 << 55)).unwrap();
    for i in 0..300 {
        let (v, key) = (vector(i), format!("k{i}"));
        let input = episode(&v, b"payload", (i % 3 == 0).then_some(key.as_bytes()));
        tx.insert_episode(&input).unwrap();
    }
    let c = tx
        .insert_concept(&ConceptInput {
            centroid: &vector(1),
            label: "placed",
        })
        .unwrap();
    tx.bind(5, c, 0.4).unwrap();
    tx.bind(9, c, 0.7).unwrap();
    let w: Vec<f32> = (0..4 * 32).map(|i| (i as f32 * 0.37).sin()).collect();
    let tensor = TensorInput {
        name: "w0",
        shape: &[4, 32],
        data: &w,
        importance: None,
    };
    tx.put_network(7, "policy", &[tensor], QuantScheme::Q4)
        .unwrap();
    tx.delete_episode(6).unwrap();
    tx.commit().unwrap();
    form_unbound(&db, 4);
    let cue = Cue {
        embedding: &vector(40),
        filter: Filter::default(),
    };
    let recall = RecallParams {
        record_access: true,
        ..Default::default()
    };
    db.begin_read().unwrap().recall(&cue, &recall).unwrap();
    db.persist_accesses().unwrap();
    let source = db.begin_read().unwrap();
    // Something of each kind to carry over: accesses, expiries, keys, formed concepts.
    let eps: Vec<_> = source.episodes().map(Result::unwrap).collect();
    assert!(eps.iter().any(|e| e.access_count().unwrap() > 0));
    assert!(eps.iter().all(|e| e.expires_at().unwrap().is_some()));
    assert_eq!(
        eps.iter().filter(|e| e.key().unwrap().is_some()).count(),
        99,
        "one of them deleted"
    );
    assert!(source.concepts().any(|c| c.unwrap().members() > 0));

    // Int8 mirror added, another metric and model: the same contents.
    let wide = dir.path().join("int8-dot");
    let changed = Manifest {
        metric: Metric::Dot,
        model: Some("m2".into()),
        int8_mirror: true,
        ..db.manifest().clone()
    };
    db.backup_as(&wide, &changed).unwrap();
    assert!(matches!(
        Engram::open(&wide, model("m1")),
        Err(Error::ModelMismatch { .. })
    ));
    let copy = Engram::open(&wide, model("m2")).unwrap();
    assert_eq!(copy.manifest(), &changed);
    let snap = copy.begin_read().unwrap();
    assert_eq!(everything(&snap), everything(&source));
    snap.verify().unwrap();
    // Ranked by dot product now, and the new int8 mirror finds the same best episodes.
    let query = vector(77);
    let dot = |v: &[f32]| v.iter().zip(&query).map(|(a, b)| a * b).sum::<f32>();
    let mut by_dot: Vec<(f32, u64)> = snap
        .episodes()
        .map(|e| e.map(|e| (dot(e.embedding()), e.id())).unwrap())
        .collect();
    by_dot.sort_by(|a, b| b.0.total_cmp(&a.0));
    let want: Vec<u64> = by_dot[..10].iter().map(|h| h.1).collect();
    let exact = snap.search(&query, 10, &Filter::default()).unwrap();
    let int8 = snap
        .search_int8(&query, 10, &Filter::default(), 300)
        .unwrap();
    for hits in [&exact, &int8] {
        assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), want);
    }
    assert_ne!(
        source.search(&query, 10, &Filter::default()).unwrap(),
        exact,
        "the source ranks by cosine"
    );

    // And back: the mirror dropped, its file gone, the contents still the same.
    let narrow = dir.path().join("no-int8");
    copy.backup_as(&narrow, &db.manifest().clone()).unwrap();
    let back = Engram::open(&narrow, model("m1")).unwrap();
    let snap = back.begin_read().unwrap();
    assert_eq!(everything(&snap), everything(&source));
    assert!(
        snap.search_int8(&query, 10, &Filter::default(), 10)
            .is_err()
    );
    let names = std::fs::read_dir(&narrow).unwrap();
    assert!(
        !names
            .map(|n| n.unwrap().file_name())
            .any(|n| n.to_string_lossy().ends_with(".i8"))
    );
    snap.verify().unwrap();

    // A copy cannot change the dimension or take a model name no database can hold.
    for bad in [
        Manifest {
            dimension: DIM + 1,
            ..changed.clone()
        },
        Manifest {
            model: Some("m".repeat(257)),
            ..changed.clone()
        },
    ] {
        let dest = dir.path().join("refused");
        assert!(matches!(
            db.backup_as(&dest, &bad),
            Err(Error::InvalidArgument(_))
        ));
        assert!(!dest.exists(), "nothing is written");
    }
}

#[test]
fn empty_payloads_and_labels_read_back_in_a_fresh_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = Engram::open(dir.path(), opts()).unwrap();
    let mut tx = db.begin_write().unwrap();
    let e = tx.insert_episode(&episode(&vector(1), b"", None)).unwrap();
    let c = tx
        .insert_concept(&ConceptInput {
            centroid: &vector(1),
            label: "",
        })
        .unwrap();
    tx.commit().unwrap();
    let snap = db.begin_read().unwrap();
    assert_eq!(snap.episode(e).unwrap().unwrap().payload().unwrap(), b"");
    assert_eq!(snap.concept(c).unwrap().unwrap().label().unwrap(), "");
}

/// A heap blob records its length in 32 bits: payloads, keys and labels longer than 4 GiB
/// are refused at the call, not stored cut and read back as corruption. The 4 GiB buffers
/// are never written, so they cost address space, not memory.
#[cfg(target_pointer_width = "64")]
#[test]
fn blobs_over_4_gib_are_refused_and_leave_the_transaction_usable() {
    let dir = tempfile::tempdir().unwrap();
    let db = Engram::open(dir.path(), opts()).unwrap();
    let huge = vec![0u8; (1 << 32) + 1];
    let label = String::from_utf8(huge).unwrap();
    let mut tx = db.begin_write().unwrap();
    let c = tx
        .insert_concept(&ConceptInput {
            centroid: &vector(1),
            label: "c",
        })
        .unwrap();
    fn refused<T>(r: Result<T, Error>) -> bool {
        matches!(r, Err(Error::InvalidArgument(m)) if m.contains("4 GiB"))
    }
    assert!(refused(tx.insert_concept(&ConceptInput {
        centroid: &vector(1),
        label: &label,
    })));
    assert!(refused(tx.update_concept(c, &vector(2), Some(&label))));
    assert!(refused(tx.insert_episode(&episode(
        &vector(3),
        label.as_bytes(),
        None
    ))));
    assert!(refused(tx.insert_episode(&episode(
        &vector(3),
        b"",
        Some(label.as_bytes())
    ))));
    drop(label);
    let e = tx
        .insert_episode(&episode(&vector(4), b"kept", None))
        .unwrap();
    tx.commit().unwrap();
    let snap = db.begin_read().unwrap();
    assert_eq!(snap.concept_count(), 1);
    assert_eq!(snap.episode_count(), 1);
    assert_eq!(
        snap.episode(e).unwrap().unwrap().payload().unwrap(),
        b"kept"
    );
    snap.verify().unwrap();
}

/// Recovery removes data files no commit names (an interrupted compaction's), whatever
/// their number's width, and never a file of the user's that merely looks numbered.
#[test]
fn reopening_removes_only_our_unnamed_files() {
    let dir = tempfile::tempdir().unwrap();
    let db = Engram::open(dir.path(), opts()).unwrap();
    let mut tx = db.begin_write().unwrap();
    let e = tx
        .insert_episode(&episode(&vector(1), b"kept", None))
        .unwrap();
    tx.commit().unwrap();
    drop(db);
    let ours = ["000099.eps", "1000000.etab", "MANIFEST.tmp"];
    let theirs = [
        "000123.notes",
        "notes.tmp",
        "000001",
        "12.eps",
        "000001.eps.bak",
    ];
    for name in ours.iter().chain(&theirs) {
        std::fs::write(dir.path().join(name), b"x").unwrap();
    }
    let db = Engram::open(dir.path(), opts()).unwrap();
    for name in ours {
        assert!(!dir.path().join(name).exists(), "{name} left behind");
    }
    for name in theirs {
        assert!(dir.path().join(name).exists(), "{name} removed");
    }
    let snap = db.begin_read().unwrap();
    assert_eq!(
        snap.episode(e).unwrap().unwrap().payload().unwrap(),
        b"kept"
    );
}

/// A directory of format 7 to 10 opens: upgraded in place (by a writer, or by a read-only
/// opener with no writer alive), every record read back, and again after a crash in the
/// middle of the upgrade (the new record, head, log and binding file written, the
/// MANIFEST not yet). Beside a live writer, which only an older build could be, a
/// read-only opener refuses it.
#[test]
fn older_format_directories_are_upgraded_in_place() {
    for version in [7, 8, 9, 10] {
        upgrade_in_place(version);
    }
}

fn upgrade_in_place(version: u32) {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old");
    let db = Engram::open(&old, opts()).unwrap();
    let mut tx = db.begin_write().unwrap();
    let c = tx
        .insert_concept(&ConceptInput {
            centroid: &vector(100),
            label: "c",
        })
        .unwrap();
    let ids: Vec<u64> = (0..20)
        .map(|i| {
            let key = [i as u8];
            let e = tx
                .insert_episode(&episode(&vector(i), &key, Some(&key)))
                .unwrap();
            tx.bind(e, c, 0.5).unwrap();
            e
        })
        .collect();
    tx.commit().unwrap();
    let mut tx = db.begin_write().unwrap();
    tx.unbind(ids[1], c).unwrap(); // a stamp the rewritten binding file must keep
    tx.commit().unwrap();
    let mut tx = db.begin_write().unwrap();
    tx.delete_episode(ids[0]).unwrap(); // redone by the upgrade's recovery
    tx.commit().unwrap();
    drop(db);
    formats::downgrade(&old, version);
    let check = |path: &std::path::Path, read_only: bool| {
        let db = Engram::open(
            path,
            Options {
                read_only,
                ..opts()
            },
        )
        .unwrap();
        assert_eq!(formats::format_of(path), engram_core::FORMAT_VERSION);
        let snap = db.begin_read().unwrap();
        assert_eq!(snap.episode_ids().unwrap(), ids[1..]);
        assert_eq!(snap.episode_by_key(&[7]).unwrap().unwrap().id(), ids[7]);
        assert_eq!(snap.concept_fan_count(c).unwrap(), 18);
        assert_eq!(snap.binding_strength(ids[1], c).unwrap(), None);
        assert_eq!(snap.binding_strength(ids[2], c).unwrap(), Some(0.5));
        snap.verify().unwrap();
        db
    };
    let copy = |to: &str| formats::copy_dir(&old, &dir.path().join(to));
    let (read_only, interrupted, beside_writer) = (copy("ro"), copy("cut"), copy("locked"));
    let upgraded = copy("upgraded");
    // A damaged old binding record stops the upgrade (which rewrites them, formats 7 to 9)
    // with an error naming it, and leaves the old directory as it was.
    let damaged = copy("damaged");
    if version < 10 {
        let old_bnd = std::fs::read_dir(&damaged)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "bnd"))
            .unwrap();
        let mut b = std::fs::read(&old_bnd).unwrap();
        b[64 * 5 + 3] ^= 0x10;
        std::fs::write(&old_bnd, &b).unwrap();
        let r = Engram::open(&damaged, opts());
        assert!(
            matches!(&r, Err(Error::Corruption { file, offset, .. }) if *file == old_bnd && *offset == 64 * 5),
            "{:?}",
            r.err()
        );
        assert_eq!(formats::format_of(&damaged), version);
    }
    // A writer upgrades, and writes on.
    let db = check(&old, false);
    let mut tx = db.begin_write().unwrap();
    tx.insert_episode(&episode(&vector(50), b"after", None))
        .unwrap();
    tx.commit().unwrap();
    drop(db);
    assert_eq!(
        Engram::open(&old, opts())
            .unwrap()
            .begin_read()
            .unwrap()
            .episode_count(),
        20
    );
    check(&read_only, true);
    // Interrupted before the MANIFEST: the new format's record of the upgrade (txn 4, in
    // the commit file the newest old record is not in), its head, its empty log and its
    // binding file beside the old directory.
    drop(check(&upgraded, false));
    let bnd = |d: &std::path::Path| -> Vec<std::ffi::OsString> {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().ends_with(".bnd"))
            .collect();
        v.sort();
        v
    };
    let (old_bnd, new_bnd) = (bnd(&interrupted), bnd(&upgraded));
    if version < 10 {
        assert_ne!(old_bnd, new_bnd, "the upgrade rewrites the binding file");
    }
    let mut written = new_bnd.clone();
    written.extend(["commit.0", "commit.1", "head", "wal"].map(Into::into));
    for name in written {
        std::fs::copy(upgraded.join(&name), interrupted.join(&name)).unwrap();
    }
    assert_eq!(formats::format_of(&interrupted), version);
    check(&interrupted, false);
    assert_eq!(
        bnd(&interrupted),
        new_bnd,
        "the old binding file is removed"
    );
    let lock = std::fs::File::open(beside_writer.join("LOCK")).unwrap();
    lock.lock().unwrap();
    let r = Engram::open(
        &beside_writer,
        Options {
            read_only: true,
            ..opts()
        },
    );
    assert!(
        matches!(r, Err(Error::FormatVersion { found, .. }) if found == version),
        "{:?}",
        r.err()
    );
}
