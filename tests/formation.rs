//! Concept formation and consolidation through the database: clusters written as concepts
//! and bindings, checked against the generator's ground truth, across reopen, compaction,
//! thread counts and cancellation.

use std::collections::HashMap;
use std::ops::ControlFlow;

use engram_core::cluster::{self, Count, Params, Phase, adjusted_rand_index};
use engram_core::{
    ConsolidationParams, Engram, EpisodeInput, Error, Filter, FormationParams, Options,
};
use engram_fixtures::clustered;

const DIM: usize = 64;

fn open(dir: &std::path::Path) -> Engram {
    let opts = Options {
        dimension: Some(DIM),
        ..Options::default()
    };
    Engram::open(dir, opts).unwrap()
}

/// Inserts the rows as episodes of `agent`, payload "t{label} #{i}"; returns their ids.
fn insert(db: &Engram, data: &[f32], labels: &[u32], agent: u64) -> Vec<u64> {
    let mut tx = db.begin_write().unwrap();
    let ids = data
        .chunks_exact(DIM)
        .zip(labels)
        .enumerate()
        .map(|(i, (row, l))| {
            let payload = format!("t{l} #{i}");
            tx.insert_episode(&EpisodeInput {
                agent,
                timestamp: i as i64,
                embedding: row,
                payload: payload.as_bytes(),
                key: None,
            })
            .unwrap()
        })
        .collect();
    tx.commit().unwrap();
    ids
}

fn k_params(k: usize) -> Params {
    Params {
        count: Count::K(k),
        min_size: 1,
        ..Params::default()
    }
}

fn formation(filter: &Filter, clustering: Params) -> FormationParams<'_> {
    FormationParams {
        filter,
        unbound_only: false,
        clustering,
        progress: None,
    }
}

/// Each episode's concept (u32::MAX if unbound), by position in `ids`.
fn concept_of(db: &Engram, ids: &[u64]) -> Vec<u32> {
    let snap = db.begin_read().unwrap();
    ids.iter()
        .map(|&e| match snap.bindings_of_episode(e).unwrap()[..] {
            [] => u32::MAX,
            [b] => b.concept as u32,
            ref more => panic!("episode {e} bound {} times", more.len()),
        })
        .collect()
}

#[test]
fn formed_concepts_match_the_ground_truth_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let (m, truth) = clustered(3_000, 15, DIM, 1.0, 1);
    let filter = Filter::default();
    let (ids, report) = {
        let db = open(dir.path());
        let ids = insert(&db, &m.data, &truth, 1);
        let report = db.form_concepts(&formation(&filter, k_params(15))).unwrap();
        (ids, report)
    };
    assert_eq!(
        (report.concepts.len(), report.episodes, report.bound),
        (15, 3_000, 3_000)
    );
    db_checks(&open(dir.path()), &ids, &truth, &report.concepts);
    // Compaction keeps members, coherence, centroids and bindings.
    let db = open(dir.path());
    db.compact().unwrap();
    db_checks(&db, &ids, &truth, &report.concepts);
}

fn db_checks(db: &Engram, ids: &[u64], truth: &[u32], concepts: &[u64]) {
    let report = db.begin_read().unwrap().verify().unwrap();
    assert_eq!(
        (report.live_concepts, report.live_bindings),
        (concepts.len() as u64, ids.len() as u64)
    );
    let found = concept_of(db, ids);
    let ari = adjusted_rand_index(&found, truth);
    assert!(ari >= 0.95, "ARI {ari}");
    let snap = db.begin_read().unwrap();
    for &c in concepts {
        let concept = snap.concept(c).unwrap().unwrap();
        let members = snap.bindings_of_concept(c).unwrap();
        assert_eq!(concept.members(), members.len() as u64);
        assert_eq!(snap.concept_fan_count(c).unwrap(), members.len());
        let norm: f32 = concept.centroid().iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        // Strength = cosine to the centroid; coherence = their mean.
        let mut total = 0.0;
        for b in &members {
            let e = snap.episode(b.episode).unwrap().unwrap();
            let cos = cosine(e.embedding(), concept.centroid());
            assert!((cos - b.strength).abs() < 1e-4, "{cos} vs {}", b.strength);
            total += b.strength;
        }
        let mean = total / members.len() as f32;
        assert!((mean - concept.coherence()).abs() < 1e-4);
        // The label is the payload of a member of the same true cluster as most members.
        let mut votes: HashMap<u32, usize> = HashMap::new();
        for b in &members {
            *votes.entry(truth[b.episode as usize]).or_default() += 1;
        }
        let majority = votes.into_iter().max_by_key(|&(_, n)| n).unwrap().0;
        let label = concept.label().unwrap();
        assert!(
            label.starts_with(&format!("t{majority} #")),
            "{label} for t{majority}"
        );
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[test]
fn threshold_mode_forms_about_the_true_number_of_concepts() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let (m, truth) = clustered(3_000, 30, DIM, 0.8, 2);
    let ids = insert(&db, &m.data, &truth, 1);
    let params = Params {
        // Members sit at cos ≈ 1/√(1 + 0.8²) = 0.78 of their centre: a merged pair of
        // clusters is ≈ 0.55 coherent.
        count: Count::Threshold {
            min_coherence: 0.68,
        },
        min_size: 5,
        ..Params::default()
    };
    let report = db
        .form_concepts(&formation(&Filter::default(), params))
        .unwrap();
    let n = report.concepts.len();
    assert!((27..=33).contains(&n), "{n} concepts for 30");
    let ari = adjusted_rand_index(&concept_of(&db, &ids), &truth);
    assert!(ari >= 0.9, "ARI {ari}");
}

#[test]
fn filter_and_unbound_only_choose_the_episodes() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let (m, truth) = clustered(1_000, 5, DIM, 0.5, 3);
    let half = 500 * DIM;
    let first = insert(&db, &m.data[..half], &truth[..500], 1);
    let second = insert(&db, &m.data[half..], &truth[500..], 2);
    let agent1 = Filter {
        agent: Some(1),
        time: None,
    };
    let r = db.form_concepts(&formation(&agent1, k_params(5))).unwrap();
    assert_eq!(r.episodes, 500);
    assert!(concept_of(&db, &first).iter().all(|&c| c != u32::MAX));
    assert!(concept_of(&db, &second).iter().all(|&c| c == u32::MAX));
    // Unbound only: agent 2's episodes, and a time window within them.
    let window = Filter {
        agent: None,
        time: Some(0..250),
    };
    let p = FormationParams {
        unbound_only: true,
        ..formation(&window, k_params(5))
    };
    let r = db.form_concepts(&p).unwrap();
    assert_eq!(r.episodes, 250);
    let bound = concept_of(&db, &second);
    assert!(bound[..250].iter().all(|&c| c != u32::MAX));
    assert!(bound[250..].iter().all(|&c| c == u32::MAX));
    // Nothing chosen: no concepts.
    let r = db.form_concepts(&p).unwrap();
    assert_eq!((r.episodes, r.concepts.len()), (0, 0));
}

#[test]
fn consolidation_binds_new_episodes_and_updates_concepts_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let (m, truth) = clustered(2_000, 8, DIM, 0.8, 4);
    let half = 1_000 * DIM;
    let old = insert(&db, &m.data[..half], &truth[..1_000], 1);
    db.form_concepts(&formation(&Filter::default(), k_params(8)))
        .unwrap();
    let new = insert(&db, &m.data[half..], &truth[1_000..], 1);
    let before = db.begin_read().unwrap();
    let params = ConsolidationParams {
        min_similarity: 0.5,
        filter: Filter::default(),
    };
    let r = db.consolidate(&params).unwrap();
    assert_eq!((r.pending, r.bound, r.concepts_updated), (1_000, 1_000, 8));
    // New episodes join the concept of their true cluster's old members.
    let all: Vec<u64> = old.iter().chain(&new).copied().collect();
    let ari = adjusted_rand_index(&concept_of(&db, &all), &truth);
    assert!(ari >= 0.95, "ARI {ari}");
    let snap = db.begin_read().unwrap();
    for c in snap.concept_ids().unwrap() {
        let concept = snap.concept(c).unwrap().unwrap();
        let members = snap.bindings_of_concept(c).unwrap();
        assert_eq!(concept.members(), members.len() as u64);
        assert!(concept.members() > before.concept(c).unwrap().unwrap().members());
        // The updated centroid is the normalized mean of all members' directions, and the
        // coherence their mean cosine to it.
        let mut sum = vec![0f64; DIM];
        for b in &members {
            let e = snap.episode(b.episode).unwrap().unwrap();
            let n = e
                .embedding()
                .iter()
                .map(|x| f64::from(*x).powi(2))
                .sum::<f64>()
                .sqrt();
            for (s, x) in sum.iter_mut().zip(e.embedding()) {
                *s += f64::from(*x) / n;
            }
        }
        let norm = sum.iter().map(|x| x * x).sum::<f64>().sqrt();
        for (c, s) in concept.centroid().iter().zip(&sum) {
            assert!((f64::from(*c) - s / norm).abs() < 1e-4);
        }
        assert!((f64::from(concept.coherence()) - norm / members.len() as f64).abs() < 1e-4);
    }
    // Nothing left to do; a threshold outside [-1, 1] is no cosine.
    assert_eq!(db.consolidate(&params).unwrap().pending, 0);
    for min_similarity in [2.0, -2.0, f32::NAN] {
        let bad = ConsolidationParams {
            min_similarity,
            ..params.clone()
        };
        assert!(matches!(
            db.consolidate(&bad),
            Err(Error::InvalidArgument(_))
        ));
    }
}

#[test]
fn same_seed_same_concepts_at_any_thread_count() {
    let (m, truth) = clustered(2_000, 10, DIM, 1.2, 5);
    let run = |threads: usize| {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let ids = insert(&db, &m.data, &truth, 1);
        let filter = Filter::default();
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| db.form_concepts(&formation(&filter, k_params(10))).unwrap());
        let snap = db.begin_read().unwrap();
        let centroids: Vec<u32> = snap
            .concept_ids()
            .unwrap()
            .into_iter()
            .flat_map(|c| snap.concept(c).unwrap().unwrap().centroid().to_vec())
            .map(f32::to_bits)
            .collect();
        (centroids, concept_of(&db, &ids))
    };
    assert_eq!(run(1), run(3));
}

#[test]
fn cancelled_formation_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let (m, truth) = clustered(1_000, 5, DIM, 1.0, 6);
    insert(&db, &m.data, &truth, 1);
    let filter = Filter::default();
    let stop = |p: &cluster::Progress| match p.phase {
        Phase::Iterating => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    };
    let mut tx = db.begin_write().unwrap();
    let p = FormationParams {
        progress: Some(&stop),
        ..formation(&filter, k_params(5))
    };
    assert!(matches!(tx.form_concepts(&p), Err(Error::Cancelled)));
    tx.commit().unwrap();
    let snap = db.begin_read().unwrap();
    assert_eq!((snap.concept_count(), snap.binding_count()), (0, 0));
}

#[test]
fn episodes_only_handles_refuse_formation() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path());
    let db = Engram::open(
        dir.path(),
        Options {
            dimension: Some(DIM),
            episodes_only: true,
            ..Options::default()
        },
    )
    .unwrap();
    let filter = Filter::default();
    let err = db
        .form_concepts(&formation(&filter, k_params(2)))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

/// `Engram::form_concepts` clusters without the writer: a commit made while it clusters
/// (here from its own progress callback, which would get `WriteInProgress` if the writer
/// were held) goes through, and the formation leaves out what that commit changed: an
/// episode deleted is bound to nothing, one bound meanwhile is not bound again
/// (`unbound_only`), and each concept counts the members it was given.
#[test]
fn formation_clusters_while_commits_go_on() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let (m, truth) = clustered(1_000, 5, DIM, 1.0, 8);
    let ids = insert(&db, &m.data, &truth, 1);
    let mut tx = db.begin_write().unwrap();
    let hand = tx
        .insert_concept(&engram_core::ConceptInput {
            centroid: &m.data[..DIM],
            label: "by hand",
        })
        .unwrap();
    tx.commit().unwrap();
    let (deleted, bound) = (ids[10], ids[20]);
    let committed = AtomicBool::new(false);
    let meanwhile = |p: &cluster::Progress| {
        if p.phase == Phase::Iterating && !committed.swap(true, Ordering::SeqCst) {
            let mut tx = db.begin_write().unwrap();
            tx.delete_episode(deleted).unwrap();
            tx.bind(bound, hand, 0.5).unwrap();
            let late = tx
                .insert_episode(&EpisodeInput {
                    agent: 1,
                    timestamp: 0,
                    embedding: &m.data[..DIM],
                    payload: b"late",
                    key: None,
                })
                .unwrap();
            tx.commit().unwrap();
            assert_eq!(late, ids.len() as u64);
        }
        ControlFlow::Continue(())
    };
    let filter = Filter::default();
    let report = db
        .form_concepts(&FormationParams {
            unbound_only: true,
            progress: Some(&meanwhile),
            ..formation(&filter, k_params(5))
        })
        .unwrap();
    assert!(committed.load(Ordering::SeqCst));
    // Clustered as of the snapshot: all 1,000; written: all but the two changed since.
    assert_eq!((report.episodes, report.bound), (1_000, 998));
    let snap = db.begin_read().unwrap();
    snap.verify().unwrap();
    assert_eq!(snap.episode_fan_count(bound).unwrap(), 1);
    assert!(snap.episode(deleted).unwrap().is_none());
    assert!(snap.episode(ids.len() as u64).unwrap().is_some());
    let members: u64 = report
        .concepts
        .iter()
        .map(|&c| {
            let n = snap.concept(c).unwrap().unwrap().members();
            assert_eq!(n, snap.concept_fan_count(c).unwrap() as u64);
            n
        })
        .sum();
    assert_eq!(members, 998);
    assert_eq!(snap.binding_count(), 999);
}
