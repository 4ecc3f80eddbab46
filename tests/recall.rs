//! Spreading-activation recall: exact activations on hand-built graphs, the fan effect
//! flipping an order, hops = 0 equal to top-k, filters, and (proptest) activation never
//! growing along a path.

use engram_core::cluster::{Count, Params};
use engram_core::{
    ConceptInput, Cue, Engram, EpisodeInput, Filter, FormationParams, Options, Provenance,
    RecallParams,
};
use proptest::prelude::*;

const DIM: usize = 4;

fn open(dir: &std::path::Path) -> Engram {
    Engram::open(
        dir,
        Options {
            dimension: Some(DIM),
            ..Options::default()
        },
    )
    .unwrap()
}

fn axis(i: usize) -> [f32; DIM] {
    let mut v = [0f32; DIM];
    v[i] = 1.0;
    v
}

fn episode(tx: &mut engram_core::WriteTxn<'_>, v: &[f32], agent: u64) -> u64 {
    tx.insert_episode(&EpisodeInput {
        agent,
        timestamp: 0,
        embedding: v,
        payload: b"",
        key: None,
    })
    .unwrap()
}

fn cue(v: &[f32]) -> Cue<'_> {
    Cue {
        embedding: v,
        filter: Filter::default(),
    }
}

#[test]
fn activations_on_a_hand_built_graph_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut tx = db.begin_write().unwrap();
    let a = episode(&mut tx, &axis(0), 1); // the cue's own direction: similarity 1
    let b = episode(&mut tx, &axis(1), 1); // orthogonal: similarity 0
    let c = episode(&mut tx, &axis(2), 1);
    let x = tx
        .insert_concept(&ConceptInput {
            centroid: &axis(3),
            label: "x",
        })
        .unwrap();
    tx.bind(a, x, 0.8).unwrap();
    tx.bind(b, x, 0.5).unwrap();
    tx.bind(c, x, 1.0).unwrap();
    tx.commit().unwrap();
    let snap = db.begin_read().unwrap();
    let params = RecallParams {
        k: 3,
        seed_episodes: 1,
        seed_concepts: 0,
        hops: 2,
        ..RecallParams::default()
    };
    // α = 1: A (1.0) → X: 1.0 × 0.8 / fan(A)=1 = 0.8 → ÷ fan(X)=3: C 0.8/3 × 1.0, B 0.8/3 × 0.5.
    let r = snap.recall(&cue(&axis(0)), &params).unwrap();
    let got: Vec<(u64, f32, Provenance)> =
        r.iter().map(|x| (x.episode, x.activation, x.via)).collect();
    assert_eq!(
        got.iter().map(|g| (g.0, g.2)).collect::<Vec<_>>(),
        vec![
            (a, Provenance::Direct),
            (c, Provenance::Concept(x)),
            (b, Provenance::Concept(x))
        ]
    );
    for (g, want) in got.iter().zip([1.0, 0.8 / 3.0, 0.4 / 3.0]) {
        assert!((g.1 - want).abs() < 1e-5, "{g:?} vs {want}");
    }
    // α = 0: no division by fan.
    let r = snap
        .recall(
            &cue(&axis(0)),
            &RecallParams {
                fan_alpha: 0.0,
                ..params
            },
        )
        .unwrap();
    for (g, want) in r.iter().zip([1.0, 0.8, 0.4]) {
        assert!((g.activation - want).abs() < 1e-5, "{g:?} vs {want}");
    }
    // One hop reaches only the concept: the episodes keep their direct similarity.
    let r = snap
        .recall(&cue(&axis(0)), &RecallParams { hops: 1, ..params })
        .unwrap();
    assert!(r.iter().all(|x| x.via == Provenance::Direct));
    // Work bounded: one binding traversed, so nothing past the concept.
    let r = snap
        .recall(
            &cue(&axis(0)),
            &RecallParams {
                max_edges: 1,
                ..params
            },
        )
        .unwrap();
    assert!(r.iter().all(|x| x.via == Provenance::Direct));
}

#[test]
fn the_fan_effect_flips_an_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut tx = db.begin_write().unwrap();
    let s = episode(&mut tx, &axis(0), 1);
    let t1 = episode(&mut tx, &axis(1), 1);
    let t2 = episode(&mut tx, &axis(2), 1);
    let x1 = tx
        .insert_concept(&ConceptInput {
            centroid: &axis(3),
            label: "crowded",
        })
        .unwrap();
    let x2 = tx
        .insert_concept(&ConceptInput {
            centroid: &axis(3),
            label: "focused",
        })
        .unwrap();
    tx.bind(s, x1, 1.0).unwrap();
    tx.bind(s, x2, 0.9).unwrap();
    tx.bind(t1, x1, 1.0).unwrap();
    tx.bind(t2, x2, 1.0).unwrap();
    for _ in 0..4 {
        let other = episode(&mut tx, &axis(3), 1);
        tx.bind(other, x1, 1.0).unwrap(); // x1's fan: 6
    }
    tx.commit().unwrap();
    let snap = db.begin_read().unwrap();
    let rank = |alpha: f32| {
        let params = RecallParams {
            k: 10,
            seed_episodes: 1,
            seed_concepts: 0,
            hops: 2,
            fan_alpha: alpha,
            ..RecallParams::default()
        };
        let r = snap.recall(&cue(&axis(0)), &params).unwrap();
        let pos = |e| r.iter().position(|x| x.episode == e).unwrap();
        (pos(t1), pos(t2))
    };
    let (t1_plain, t2_plain) = rank(0.0);
    assert!(
        t1_plain < t2_plain,
        "without the fan effect the stronger binding wins"
    );
    let (t1_fan, t2_fan) = rank(1.0);
    assert!(
        t2_fan < t1_fan,
        "with it, the crowded concept's share is smaller"
    );
}

#[test]
fn zero_hops_is_exact_top_k_and_filters_hold() {
    let dir = tempfile::tempdir().unwrap();
    let db = Engram::open(
        dir.path(),
        Options {
            dimension: Some(32),
            ..Options::default()
        },
    )
    .unwrap();
    let (m, _) = engram_fixtures::clustered(600, 6, 32, 0.8, 3);
    let mut tx = db.begin_write().unwrap();
    for (i, row) in m.data.chunks_exact(32).enumerate() {
        episode(&mut tx, row, (i % 2) as u64);
    }
    tx.commit().unwrap();
    db.form_concepts(&FormationParams {
        filter: &Filter::default(),
        unbound_only: false,
        clustering: Params {
            count: Count::K(6),
            min_size: 1,
            ..Params::default()
        },
        progress: None,
    })
    .unwrap();
    let snap = db.begin_read().unwrap();
    for q in 0..20 {
        let query = m.row(q * 29);
        let top = snap.search(query, 10, &Filter::default()).unwrap();
        let r = snap
            .recall(
                &cue(query),
                &RecallParams {
                    hops: 0,
                    k: 10,
                    ..RecallParams::default()
                },
            )
            .unwrap();
        assert_eq!(
            r.iter()
                .map(|x| (x.episode, x.activation))
                .collect::<Vec<_>>(),
            top.iter().map(|h| (h.id, h.score)).collect::<Vec<_>>()
        );
        // Spreading through concepts (which bind both agents' episodes) keeps to the agent
        // asked for.
        let only = Cue {
            embedding: query,
            filter: Filter {
                agent: Some(1),
                time: None,
            },
        };
        let r = snap
            .recall(
                &only,
                &RecallParams {
                    k: 30,
                    ..RecallParams::default()
                },
            )
            .unwrap();
        assert!(r.iter().all(|x| x.episode % 2 == 1), "agent filter");
    }
    assert!(
        snap.recall(
            &cue(m.row(0)),
            &RecallParams {
                fan_alpha: -1.0,
                ..RecallParams::default()
            }
        )
        .is_err()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// On random graphs: a spread activation never exceeds the strongest seed's (strengths
    /// are ≤ 1 and fans ≥ 1), and every result reached through a concept is bound to it.
    #[test]
    fn activation_never_grows_along_a_path(
        binds in proptest::collection::vec((0u8..12, 0u8..4, 0.0f32..1.5), 1..40),
        alpha in 0.0f32..1.5,
        hops in 0usize..4,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let mut tx = db.begin_write().unwrap();
        let eps: Vec<u64> = (0..12).map(|i| {
            let v = [1.0 + i as f32, (i % 3) as f32, (i % 5) as f32, 1.0];
            episode(&mut tx, &v, 1)
        }).collect();
        let cons: Vec<u64> = (0..4).map(|i| tx.insert_concept(&ConceptInput { centroid: &axis(i), label: "" }).unwrap()).collect();
        for &(e, c, s) in &binds {
            tx.bind(eps[e as usize], cons[c as usize], s).unwrap();
        }
        tx.commit().unwrap();
        let snap = db.begin_read().unwrap();
        let q = [1.0, 0.5, 0.0, 0.2];
        let params = RecallParams { k: 12, seed_episodes: 2, seed_concepts: 2, hops, fan_alpha: alpha, threshold: 0.0, ..RecallParams::default() };
        let seeds = snap.search(&q, 12, &Filter::default()).unwrap();
        let concepts = snap.search_concepts(&q, 2).unwrap();
        let top = seeds.iter().chain(&concepts).map(|h| h.score).fold(f32::MIN, f32::max);
        for r in snap.recall(&cue(&q), &params).unwrap() {
            prop_assert!(r.activation <= top + 1e-6);
            if let Provenance::Concept(c) = r.via {
                prop_assert!(hops >= 1);
                prop_assert!(snap.binding_strength(r.episode, c).unwrap().is_some());
            }
        }
    }
}

#[test]
fn decay_fades_old_episodes_at_recall_time() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut tx = db.begin_write().unwrap();
    let old = tx
        .insert_episode(&EpisodeInput {
            agent: 1,
            timestamp: 0,
            embedding: &[1.0, 0.1, 0.0, 0.0],
            payload: b"",
            key: None,
        })
        .unwrap();
    let new = tx
        .insert_episode(&EpisodeInput {
            agent: 1,
            timestamp: 1_000,
            embedding: &[1.0, 0.3, 0.0, 0.0],
            payload: b"",
            key: None,
        })
        .unwrap();
    tx.commit().unwrap();
    let snap = db.begin_read().unwrap();
    let q = [1.0, 0.0, 0.0, 0.0];
    let plain = RecallParams {
        k: 2,
        hops: 0,
        ..RecallParams::default()
    };
    let r = snap.recall(&cue(&q), &plain).unwrap();
    assert_eq!(
        (r[0].episode, r[1].episode),
        (old, new),
        "more similar first"
    );
    let halving = RecallParams {
        decay: engram_core::Decay::HalfLife {
            now: 1_000,
            half_life: 1_000.0,
        },
        ..plain
    };
    let d = snap.recall(&cue(&q), &halving).unwrap();
    assert_eq!(
        (d[0].episode, d[1].episode),
        (new, old),
        "the old one fades below the new"
    );
    assert!(
        (d[1].activation - r[0].activation / 2.0).abs() < 1e-6,
        "one half-life halves it"
    );
    assert!(
        (d[0].activation - r[1].activation).abs() < 1e-6,
        "age 0 keeps it"
    );
    let power = RecallParams {
        decay: engram_core::Decay::PowerLaw {
            now: 1_000,
            exponent: 1.0,
            scale: 1_000.0,
        },
        ..plain
    };
    let p = snap.recall(&cue(&q), &power).unwrap();
    assert!(
        (p.iter().find(|a| a.episode == old).unwrap().activation - r[0].activation / 2.0).abs()
            < 1e-6
    );
    let bad = RecallParams {
        decay: engram_core::Decay::HalfLife {
            now: 0,
            half_life: 0.0,
        },
        ..plain
    };
    assert!(snap.recall(&cue(&q), &bad).is_err());
}

#[test]
fn reinforce_and_forget_where() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut tx = db.begin_write().unwrap();
    let eps: Vec<u64> = (0..10)
        .map(|i| {
            tx.insert_episode(&EpisodeInput {
                agent: i % 2,
                timestamp: i as i64,
                embedding: &axis(0),
                payload: b"",
                key: None,
            })
            .unwrap()
        })
        .collect();
    let c = tx
        .insert_concept(&ConceptInput {
            centroid: &axis(0),
            label: "c",
        })
        .unwrap();
    for &e in &eps {
        tx.bind(e, c, 0.5).unwrap();
    }
    tx.commit().unwrap();
    let mut tx = db.begin_write().unwrap();
    assert_eq!(tx.reinforce(eps[3], c, 0.25).unwrap(), 0.75);
    assert_eq!(tx.reinforce(eps[4], c, -2.0).unwrap(), 0.0, "floored at 0");
    // Non-finite deltas are refused (a NaN used to floor the strength to 0 silently).
    for delta in [f32::NAN, f32::NEG_INFINITY, f32::INFINITY] {
        assert!(matches!(
            tx.reinforce(eps[5], c, delta),
            Err(engram_core::Error::NonFinite { .. })
        ));
    }
    assert_eq!(
        tx.reinforce(eps[5], c, 0.0).unwrap(),
        0.5,
        "unchanged by the refusals"
    );
    assert!(matches!(
        tx.reinforce(eps[3], c + 1, 0.1),
        Err(engram_core::Error::NotFound { .. })
    ));
    tx.commit().unwrap();
    let snap = db.begin_read().unwrap();
    assert_eq!(snap.binding_strength(eps[3], c).unwrap(), Some(0.75));
    assert_eq!(snap.binding_strength(eps[4], c).unwrap(), Some(0.0));
    assert_eq!(
        snap.concept_fan_count(c).unwrap(),
        10,
        "reinforcing keeps the fan"
    );
    // Agent 0's episodes before t = 6: ids 0, 2, 4, in one commit.
    let mut tx = db.begin_write().unwrap();
    assert_eq!(tx.forget_where(0, 6).unwrap(), 3);
    tx.commit().unwrap();
    drop(snap);
    drop(db);
    let db = open(dir.path());
    let snap = db.begin_read().unwrap();
    let live: Vec<u64> = snap.episode_ids().unwrap();
    assert_eq!(live, vec![1, 3, 5, 6, 7, 8, 9]);
    assert_eq!(snap.concept_fan_count(c).unwrap(), 7);
    snap.verify().unwrap();
    assert!(snap.empty_concepts().unwrap().is_empty());
    assert_eq!(db.stats().empty_concepts, 0);
    // Forget every member: the concept is reported empty and can go.
    let mut tx = db.begin_write().unwrap();
    assert_eq!(
        tx.forget_where(0, i64::MAX).unwrap() + tx.forget_where(1, i64::MAX).unwrap(),
        7
    );
    tx.commit().unwrap();
    assert_eq!(db.begin_read().unwrap().empty_concepts().unwrap(), vec![c]);
    assert_eq!(db.stats().empty_concepts, 1);
    let mut tx = db.begin_write().unwrap();
    tx.delete_concept(c).unwrap();
    tx.commit().unwrap();
    assert_eq!(db.stats().empty_concepts, 0);
    db.begin_read().unwrap().verify().unwrap();
}
