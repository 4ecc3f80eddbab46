use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};

use engram_fixtures::clustered;

use super::*;

fn k_params(k: usize) -> Params {
    Params {
        count: Count::K(k),
        min_size: 1,
        ..Params::default()
    }
}

/// Mean cosine of each true cluster's points to their normalized mean, the smallest of them.
fn least_true_coherence(data: &[f32], dim: usize, labels: &[u32], k: usize) -> f32 {
    let mut sums = vec![0f64; k * dim];
    let mut sizes = vec![0usize; k];
    for (row, &l) in data.chunks_exact(dim).zip(labels) {
        sizes[l as usize] += 1;
        for (s, x) in sums[l as usize * dim..].iter_mut().zip(row) {
            *s += f64::from(*x);
        }
    }
    (0..k)
        .map(|j| {
            let norm = sums[j * dim..(j + 1) * dim]
                .iter()
                .map(|x| x * x)
                .sum::<f64>()
                .sqrt();
            (norm / sizes[j] as f64) as f32
        })
        .fold(f32::INFINITY, f32::min)
}

#[test]
fn ari_of_identical_and_relabelled_partitions_is_one() {
    let a = [0, 0, 1, 1, 2, 2];
    assert_eq!(adjusted_rand_index(&a, &a), 1.0);
    assert!((adjusted_rand_index(&a, &[5, 5, 9, 9, 7, 7]) - 1.0).abs() < 1e-12);
    assert!(adjusted_rand_index(&a, &[0, 1, 2, 0, 1, 2]) < 0.0);
}

#[test]
fn k_given_recovers_well_separated_clusters() {
    // Spread 1: noise as large as the signal, so two members of a cluster are as far apart
    // as a member from its centre and plain k-means++ seeding misses clusters.
    for (n, k, dim) in [(4_000, 20, 128), (2_000, 10, 768)] {
        let (m, truth) = clustered(n, k, dim, 1.0, 11);
        let points = Points::dense(&m.data, dim).unwrap();
        for seed in 1..=4 {
            let params = Params {
                seed,
                ..k_params(k)
            };
            let c = cluster(&points, &params, None).unwrap();
            let ari = adjusted_rand_index(&c.labels, &truth);
            assert!(ari >= 0.95, "ARI {ari} at n={n} k={k} d={dim} seed {seed}");
        }
        let c = cluster(&points, &k_params(k), None).unwrap();
        assert_eq!(c.len(), k);
        assert_eq!(c.sizes.iter().sum::<usize>(), n);
    }
}

#[test]
fn centroids_coherence_and_similarities_agree() {
    let (m, _) = clustered(1_500, 8, 64, 1.2, 3);
    let points = Points::dense(&m.data, 64).unwrap();
    let c = cluster(&points, &k_params(8), None).unwrap();
    for j in 0..c.len() {
        let centroid = &c.centroids[j * 64..(j + 1) * 64];
        let norm: f32 = centroid.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        let members: Vec<usize> = (0..c.labels.len())
            .filter(|&p| c.labels[p] == j as u32)
            .collect();
        assert_eq!(members.len(), c.sizes[j]);
        let mean = members.iter().map(|&p| c.similarity[p]).sum::<f32>() / members.len() as f32;
        assert!(
            (mean - c.coherence[j]).abs() < 1e-4,
            "{mean} vs {}",
            c.coherence[j]
        );
        for &p in &members {
            let direct = points.cosine(p, centroid);
            assert!((direct - c.similarity[p]).abs() < 1e-5);
        }
    }
    let objective = c.similarity.iter().map(|&s| f64::from(s)).sum::<f64>() / 1_500.0;
    assert!((c.objective() - objective).abs() < 1e-9);
}

#[test]
fn threshold_mode_finds_the_number_of_clusters() {
    let (n, k, dim) = (4_000, 25, 128);
    let (m, truth) = clustered(n, k, dim, 1.0, 5);
    // Two true clusters together are about 1/√2 as coherent as one: a threshold between.
    let min_coherence = 0.85 * least_true_coherence(&m.data, dim, &truth, k);
    let points = Points::dense(&m.data, dim).unwrap();
    let params = Params {
        count: Count::Threshold { min_coherence },
        min_size: 5,
        ..Params::default()
    };
    let c = cluster(&points, &params, None).unwrap();
    let found = c.len() as f64;
    assert!(
        (found - k as f64).abs() <= 0.1 * k as f64,
        "{found} concepts for {k}"
    );
    let ari = adjusted_rand_index(&c.labels, &truth);
    assert!(ari >= 0.9, "ARI {ari}");
    assert!(c.coherence.iter().all(|&h| h >= min_coherence));
}

#[test]
fn threshold_mode_leaves_incoherent_points_unassigned() {
    // Nearly uniform directions: no 3 of them reach a coherence of 0.9.
    let (m, _) = clustered(300, 1, 64, 100.0, 9);
    let points = Points::dense(&m.data, 64).unwrap();
    let params = Params {
        count: Count::Threshold { min_coherence: 0.9 },
        min_size: 3,
        ..Params::default()
    };
    let c = cluster(&points, &params, None).unwrap();
    assert_eq!(c.len(), 0);
    assert!(c.labels.iter().all(|&l| l == UNASSIGNED));
    assert_eq!(c.objective(), 0.0);
}

#[test]
fn same_seed_same_clusters_at_any_thread_count() {
    let (m, _) = clustered(3_000, 12, 96, 1.5, 21);
    let points = Points::dense(&m.data, 96).unwrap();
    let run = |threads: usize, params: Params| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| cluster(&points, &params, None).unwrap())
    };
    let threshold = Params {
        count: Count::Threshold { min_coherence: 0.5 },
        ..Params::default()
    };
    for params in [k_params(12), threshold] {
        let (a, b) = (run(1, params), run(3, params));
        assert_eq!(a.labels, b.labels);
        assert_eq!(
            a.centroids.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            b.centroids.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        let other_seed = run(3, Params { seed: 99, ..params });
        assert_eq!(other_seed.len(), a.len());
    }
}

#[test]
fn sampled_training_assigns_every_point() {
    let (m, truth) = clustered(5_000, 10, 64, 1.0, 4);
    let points = Points::dense(&m.data, 64).unwrap();
    let params = Params {
        max_points_per_cluster: Some(40),
        ..k_params(10)
    };
    let c = cluster(&points, &params, None).unwrap();
    assert!(c.labels.iter().all(|&l| l != UNASSIGNED));
    assert!(adjusted_rand_index(&c.labels, &truth) >= 0.95);
}

#[test]
fn progress_reports_and_cancels() {
    let (m, _) = clustered(2_000, 10, 64, 2.0, 8);
    let points = Points::dense(&m.data, 64).unwrap();
    let seen = AtomicUsize::new(0);
    let count = |p: &Progress| {
        if p.phase == Phase::Iterating {
            assert!(p.step <= p.of && p.objective > 0.0);
            seen.fetch_add(1, Ordering::Relaxed);
        }
        ControlFlow::Continue(())
    };
    let done = cluster(&points, &k_params(10), Some(&count)).unwrap();
    assert_eq!(seen.load(Ordering::Relaxed), done.iterations);
    let stop = |p: &Progress| match p.phase {
        Phase::Iterating if p.step == 2 => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    };
    assert!(matches!(
        cluster(&points, &k_params(10), Some(&stop)),
        Err(Error::Cancelled)
    ));
}

#[test]
fn degenerate_inputs() {
    let points = Points::dense(&[], 4).unwrap();
    assert!(cluster(&points, &k_params(3), None).unwrap().is_empty());
    // More clusters than points, and repeated points.
    let data = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0];
    let points = Points::dense(&data, 2).unwrap();
    let c = cluster(&points, &k_params(5), None).unwrap();
    assert_eq!(c.len(), 2);
    assert_eq!(c.labels[0], c.labels[1]);
    assert_ne!(c.labels[0], c.labels[2]);
    assert!(matches!(
        cluster(&points, &k_params(0), None),
        Err(Error::InvalidArgument(_))
    ));
    let bad = Params {
        count: Count::Threshold {
            min_coherence: f32::NAN,
        },
        ..Params::default()
    };
    assert!(matches!(
        cluster(&points, &bad, None),
        Err(Error::InvalidArgument(_))
    ));
    for bad in [
        Params {
            max_points_per_cluster: Some(0),
            ..k_params(1)
        },
        Params {
            min_size: 0,
            ..k_params(1)
        },
        Params {
            max_iterations: 0,
            ..k_params(1)
        },
    ] {
        assert!(matches!(
            cluster(&points, &bad, None),
            Err(Error::InvalidArgument(_))
        ));
    }
    assert!(matches!(
        Points::dense(&[1.0, f32::NAN], 2),
        Err(Error::NonFinite { index: 1, .. })
    ));
    assert!(matches!(
        Points::dense(&[0.0, 0.0], 2),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        Points::dense(&[1.0, 2.0, 3.0], 2),
        Err(Error::InvalidArgument(_))
    ));
    // Too long for f32 sums; the longest accepted rows still cluster.
    assert!(matches!(
        Points::dense(&[1.0, 0.0, f32::MAX, f32::MAX], 2),
        Err(Error::InvalidArgument(_))
    ));
    let long = [7e17, 7e17, 1.0, 0.0, -7e17, 7e17];
    let c = cluster(&Points::dense(&long, 2).unwrap(), &k_params(2), None).unwrap();
    assert!(c.objective().is_finite());
}

#[test]
fn members_that_cancel_out_form_no_cluster() {
    // Opposite directions: their mean has no direction, so the cluster is dropped rather
    // than given a meaningless (or a stale) centroid.
    let data = [1.0, 0.0, -1.0, 0.0];
    let points = Points::dense(&data, 2).unwrap();
    let c = cluster(&points, &k_params(1), None).unwrap();
    assert!(c.is_empty());
    assert!(c.labels.iter().all(|&l| l == UNASSIGNED));
    // Beside a coherent pair, only the pair's cluster is kept.
    let data = [1.0, 0.0, -1.0, 0.0, 0.0, 1.0, 0.0, 1.0];
    let points = Points::dense(&data, 2).unwrap();
    let c = cluster(&points, &k_params(2), None).unwrap();
    for j in 0..c.len() {
        let norm: f32 = c.centroids[j * 2..j * 2 + 2]
            .iter()
            .map(|x| x * x)
            .sum::<f32>()
            .sqrt();
        assert!(
            (norm - 1.0).abs() < 1e-5,
            "every kept centroid is a unit vector"
        );
        assert!(c.coherence[j] > 0.0);
    }
}

/// Lloyd with every point rescored against every centroid each iteration: the reference
/// for the bounded version in `kmeans::lloyd`.
fn lloyd_rescoring_all(
    points: &Points<'_>,
    members: &[u32],
    mut centroids: Vec<f32>,
    max_iterations: usize,
) -> (Vec<u32>, Vec<f32>, usize) {
    let (d, k) = (points.dim(), centroids.len() / points.dim());
    let mut previous: Option<Vec<u32>> = None;
    for iteration in 0.. {
        let (labels, _) = points.nearest(members, &centroids);
        if iteration == max_iterations || previous.as_ref() == Some(&labels) {
            return (labels, centroids, iteration);
        }
        let (sums, sizes) = kmeans::sums(points, members, &labels, k);
        assert!(
            sizes.iter().all(|&s| s > 0),
            "the reference does not reseed"
        );
        for (c, s) in centroids.chunks_exact_mut(d).zip(sums.chunks_exact(d)) {
            kmeans::normalize_into(s, c);
        }
        previous = Some(labels);
    }
    unreachable!("the loop returns")
}

#[test]
fn bounded_lloyd_gives_the_labels_of_full_rescoring() {
    // Overlapping clusters so that many points sit near a boundary and cross it late,
    // after the bounds took over; 768-d like real embeddings, and a low dimension.
    for (dim, spread, seed) in [(768, 2.0, 3u64), (64, 1.5, 8), (32, 4.0, 5), (16, 8.0, 6)] {
        let (m, _) = clustered(3_000, 15, dim, spread, seed);
        let points = Points::dense(&m.data, dim).unwrap();
        let all: Vec<u32> = (0..3_000).collect();
        let seeds = seed::kmeans_parallel(&points, &all, 15, seed, &Ctl(None)).unwrap();
        let run = kmeans::lloyd(&points, &all, seeds.clone(), 40, &Ctl(None)).unwrap();
        let (labels, centroids, iterations) = lloyd_rescoring_all(&points, &all, seeds, 40);
        assert!(
            iterations > 2,
            "the bound is exercised only after the first iterations"
        );
        assert_eq!(run.iterations, iterations, "{dim}-d");
        assert_eq!(run.assignment.labels, labels, "{dim}-d");
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&run.centroids), bits(&centroids), "{dim}-d");
    }
}

#[test]
fn an_assignment_carried_past_a_few_moved_centroids_equals_a_fresh_one() {
    let (m, _) = clustered(3_000, 12, 64, 1.5, 13);
    let points = Points::dense(&m.data, 64).unwrap();
    let all: Vec<u32> = (0..3_000).collect();
    let seeds = seed::kmeans_parallel(&points, &all, 12, 13, &Ctl(None)).unwrap();
    let run = kmeans::lloyd(&points, &all, seeds, 40, &Ctl(None)).unwrap();
    // Move three centroids onto the directions of three points, as a swap does.
    let mut centroids = run.centroids.clone();
    let moved = [1usize, 5, 9];
    for (j, p) in moved.iter().zip([17usize, 1_234, 2_900]) {
        kmeans::normalize_into(points.row(p), &mut centroids[j * 64..(j + 1) * 64]);
    }
    let carried = run
        .assignment
        .clone()
        .after_moving(&points, &all, &centroids, &moved);
    let fresh = kmeans::Assignment::full(&points, &all, &centroids);
    assert_eq!(carried.labels, fresh.labels);
    let changed = carried
        .labels
        .iter()
        .zip(&run.assignment.labels)
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        changed > 0,
        "the moves must take points from their old clusters"
    );
}
