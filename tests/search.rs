//! Exact search, batch search, concept search and recall through concepts, checked against
//! brute force computed with the scalar reference kernel.

use engram_core::similarity::{Kernel, Rows};
use engram_core::{ConceptInput, Engram, EpisodeInput, Error, Filter, Hit, Metric, Options};
use engram_fixtures::clustered;

const DIM: usize = 64;

fn open(dir: &std::path::Path, metric: Metric) -> Engram {
    Engram::open(
        dir,
        Options {
            dimension: Some(DIM),
            metric: Some(metric),
            ..Options::default()
        },
    )
    .unwrap()
}

/// Brute force: the scalar reference over every (id, vector, agent, time) that passes.
fn brute(
    metric: Metric,
    q: &[f32],
    live: &[(u64, Vec<f32>, u64, i64)],
    k: usize,
    f: &Filter,
) -> Vec<u64> {
    let mut scored: Vec<(f32, u64)> = live
        .iter()
        .filter(|(_, _, a, t)| {
            f.agent.is_none_or(|x| x == *a) && f.time.as_ref().is_none_or(|r| r.contains(t))
        })
        .map(|(id, v, _, _)| {
            let mut s = [0f32];
            Kernel::Scalar
                .scores(metric, q, Rows::dense(v, DIM), &mut s)
                .unwrap();
            (s[0], *id)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|x| x.1).collect()
}

/// Inserts every row of `data` as an episode of agent 0 (ids follow row order).
fn insert_all(tx: &mut engram_core::WriteTxn<'_>, data: &engram_fixtures::Matrix) {
    for i in 0..data.rows {
        let e = EpisodeInput {
            agent: 0,
            timestamp: 0,
            embedding: data.row(i),
            payload: b"",
            key: None,
        };
        tx.insert_episode(&e).unwrap();
    }
}

fn ids(hits: &[Hit]) -> Vec<u64> {
    hits.iter().map(|h| h.id).collect()
}

#[test]
fn search_is_exact_for_every_metric_kernel_filter_and_after_deletes_and_compaction() {
    let (data, _) = clustered(3_000, 20, DIM, 0.5, 11);
    for metric in [Metric::Cosine, Metric::Dot, Metric::L2] {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), metric);
        let mut live = Vec::new();
        let mut tx = db.begin_write().unwrap();
        for i in 0..data.rows {
            let (agent, t) = (i as u64 % 3, i as i64);
            let id = tx
                .insert_episode(&EpisodeInput {
                    agent,
                    timestamp: t,
                    embedding: data.row(i),
                    payload: b"",
                    key: None,
                })
                .unwrap();
            live.push((id, data.row(i).to_vec(), agent, t));
        }
        tx.commit().unwrap();
        let mut tx = db.begin_write().unwrap();
        for id in (0..3_000).step_by(7) {
            tx.delete_episode(id).unwrap();
        }
        tx.commit().unwrap();
        live.retain(|(id, ..)| id % 7 != 0);
        let filters = [
            Filter::default(),
            Filter {
                agent: Some(1),
                time: None,
            },
            Filter {
                agent: None,
                time: Some(500..1_500),
            },
        ];
        for round in 0..2 {
            let snap = db.begin_read().unwrap();
            for qi in [3usize, 1_000, 2_999] {
                let q = data.row(qi);
                for f in &filters {
                    let want = brute(metric, q, &live, 10, f);
                    for kernel in Kernel::available() {
                        let got = snap.search_with(kernel, q, 10, f).unwrap();
                        assert_eq!(ids(&got), want, "{metric:?} {kernel:?} {f:?} round {round}");
                        assert!(got.windows(2).all(|w| w[0].score >= w[1].score));
                    }
                }
            }
            db.compact().unwrap();
        }
    }
}

#[test]
fn batch_search_equals_one_query_at_a_time() {
    let (data, _) = clustered(2_500, 10, DIM, 0.6, 5);
    for metric in [Metric::Cosine, Metric::Dot, Metric::L2] {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), metric);
        let mut tx = db.begin_write().unwrap();
        insert_all(&mut tx, &data);
        tx.delete_episode(17).unwrap();
        tx.commit().unwrap();
        let snap = db.begin_read().unwrap();
        let queries: Vec<&[f32]> = (0..40).map(|i| data.row(i * 61)).collect();
        let batch = snap.search_batch(&queries, 7, &Filter::default()).unwrap();
        let nobody = Filter {
            agent: Some(1),
            time: None,
        };
        let filtered = snap.search_batch(&queries, 7, &nobody).unwrap();
        assert!(
            filtered.iter().all(Vec::is_empty),
            "every episode is agent 0's"
        );
        for (q, got) in queries.iter().zip(&batch) {
            let one = snap.search(q, 7, &Filter::default()).unwrap();
            assert_eq!(ids(got), ids(&one), "{metric:?}");
            for (a, b) in got.iter().zip(&one) {
                assert!(
                    (a.score - b.score).abs() <= 1e-4 * (1.0 + b.score.abs()),
                    "{metric:?} {a:?} {b:?}"
                );
            }
        }
    }
}

#[test]
fn concept_search_and_recall_through_concepts_follow_the_bindings() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), Metric::Cosine);
    let axis =
        |i: usize| -> Vec<f32> { (0..DIM).map(|d| if d == i { 1.0 } else { 0.0 }).collect() };
    let mix = |i: usize, j: usize, w: f32| -> Vec<f32> {
        (0..DIM)
            .map(|d| {
                if d == i {
                    1.0
                } else if d == j {
                    w
                } else {
                    0.0
                }
            })
            .collect()
    };
    let mut tx = db.begin_write().unwrap();
    let tides = tx
        .insert_concept(&ConceptInput {
            centroid: &axis(0),
            label: "tides",
        })
        .unwrap();
    let music = tx
        .insert_concept(&ConceptInput {
            centroid: &axis(1),
            label: "music",
        })
        .unwrap();
    let ep = |tx: &mut engram_core::WriteTxn<'_>, v: &[f32]| {
        tx.insert_episode(&EpisodeInput {
            agent: 0,
            timestamp: 0,
            embedding: v,
            payload: b"",
            key: None,
        })
        .unwrap()
    };
    let close = ep(&mut tx, &mix(0, 2, 0.1)); // very similar to the query
    let far = ep(&mut tx, &mix(0, 2, 2.0)); // less similar, but strongly bound
    let other = ep(&mut tx, &axis(1));
    tx.bind(close, tides, 0.2).unwrap();
    tx.bind(far, tides, 1.0).unwrap();
    tx.bind(other, music, 1.0).unwrap();
    tx.commit().unwrap();
    let snap = db.begin_read().unwrap();
    let q = axis(0);
    let c = snap.search_concepts(&q, 2).unwrap();
    assert_eq!(ids(&c), vec![tides, music]);
    assert!((c[0].score - 1.0).abs() < 1e-6 && c[1].score.abs() < 1e-6);
    let r = snap.recall_via_concepts(&q, 1, 10).unwrap();
    assert_eq!(
        r.iter().map(|x| x.episode).collect::<Vec<_>>(),
        vec![far, close],
        "strength reorders"
    );
    assert!(r.iter().all(|x| x.concept == tides));
    let sim_far = 1.0 / (1.0f32 + 4.0).sqrt();
    assert!((r[0].score - sim_far).abs() < 1e-5 && (r[0].similarity - sim_far).abs() < 1e-5);
    // Through both concepts, every bound episode comes back once.
    assert_eq!(snap.recall_via_concepts(&q, 2, 10).unwrap().len(), 3);
}

#[test]
fn bad_queries_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), Metric::Cosine);
    let snap = db.begin_read().unwrap();
    assert!(matches!(
        snap.search(&[1.0; 3], 5, &Filter::default()),
        Err(Error::DimensionMismatch { .. })
    ));
    let mut q = vec![0.5f32; DIM];
    q[9] = f32::NAN;
    assert!(matches!(
        snap.search(&q, 5, &Filter::default()),
        Err(Error::NonFinite { index: 9, .. })
    ));
    assert!(matches!(
        snap.search_concepts(&q, 5),
        Err(Error::NonFinite { .. })
    ));
    assert!(
        snap.search(&[0.5; DIM], 5, &Filter::default())
            .unwrap()
            .is_empty(),
        "empty database"
    );
    assert!(
        snap.search(&[0.5; DIM], 0, &Filter::default())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn int8_mirror_recalls_at_least_99_percent_of_exact_top_10_on_real_embeddings() {
    let dir = tempfile::tempdir().unwrap();
    let sample = engram_fixtures::real_sample_dir();
    let data = engram_fixtures::read_npy_f32(&sample.join("vectors.npy")).unwrap();
    let queries = engram_fixtures::read_npy_f32(&sample.join("queries.npy")).unwrap();
    let db = Engram::open(
        dir.path(),
        Options {
            int8_mirror: Some(true),
            ..Options::default()
        },
    )
    .unwrap();
    let mut tx = db.begin_write().unwrap();
    insert_all(&mut tx, &data);
    tx.commit().unwrap();
    let snap = db.begin_read().unwrap();
    let (mut found, mut total) = (0, 0);
    for qi in 0..queries.rows {
        let q = queries.row(qi);
        let exact = ids(&snap.search(q, 10, &Filter::default()).unwrap());
        let approx = snap.search_int8(q, 10, &Filter::default(), 100).unwrap();
        found += approx.iter().filter(|h| exact.contains(&h.id)).count();
        total += exact.len();
        // Rescored hits carry exact f32 scores.
        let ep = snap.episode(approx[0].id).unwrap().unwrap();
        let want = engram_core::similarity::cosine(q, ep.embedding()).unwrap();
        assert!((approx[0].score - want).abs() < 1e-6);
    }
    let recall = found as f64 / total as f64;
    eprintln!(
        "int8 recall@10 on {} real queries: {recall:.4}",
        queries.rows
    );
    assert!(recall >= 0.99, "recall@10 {recall}");
}

#[test]
fn int8_mirror_follows_deletes_compaction_and_reopen_and_is_opt_in() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = clustered(2_000, 10, DIM, 0.5, 3);
    let opts = Options {
        dimension: Some(DIM),
        int8_mirror: Some(true),
        ..Options::default()
    };
    {
        let db = Engram::open(dir.path(), opts.clone()).unwrap();
        let mut tx = db.begin_write().unwrap();
        insert_all(&mut tx, &data);
        tx.delete_episode(42).unwrap();
        tx.commit().unwrap();
        db.compact().unwrap();
    }
    let db = Engram::open(
        dir.path(),
        Options {
            dimension: Some(DIM),
            ..Options::default()
        },
    )
    .unwrap();
    let snap = db.begin_read().unwrap();
    let hits = snap
        .search_int8(data.row(42), 5, &Filter::default(), 50)
        .unwrap();
    assert!(hits.iter().all(|h| h.id != 42), "deleted episode returned");
    let hits = snap
        .search_int8(data.row(7), 1, &Filter::default(), 50)
        .unwrap();
    assert_eq!(hits[0].id, 7, "an episode finds itself");
    drop((snap, db));
    let err = Engram::open(
        dir.path(),
        Options {
            int8_mirror: Some(false),
            ..opts
        },
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("int8 mirror"), "{err}");

    let plain = tempfile::tempdir().unwrap();
    let db = open(plain.path(), Metric::Cosine);
    let snap = db.begin_read().unwrap();
    assert!(matches!(
        snap.search_int8(&[0.1; DIM], 5, &Filter::default(), 50),
        Err(Error::InvalidArgument(_))
    ));
}
