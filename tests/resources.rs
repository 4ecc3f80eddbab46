//! A handle gives back everything it took when dropped: after many open → write → search →
//! compact → backup → read-only open → drop cycles, the process holds the same descriptors,
//! threads and memory maps as after the first few. Linux only (it counts through `/proc`);
//! alone in its own test binary, so no other test's handles are counted.
#![cfg(target_os = "linux")]

use engram_core::{ConceptInput, Engram, EpisodeInput, Filter, Options};

const DIM: usize = 16;

fn entries(dir: &str) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

fn maps() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

/// (descriptors, threads, maps) held by this process now.
fn held() -> (usize, usize, usize) {
    (entries("/proc/self/fd"), entries("/proc/self/task"), maps())
}

fn cycle(root: &std::path::Path, round: i64) {
    let opts = Options {
        dimension: Some(DIM),
        ..Options::default()
    };
    let dir = root.join(format!("db{}", round % 3));
    let v: Vec<f32> = (0..DIM).map(|d| (d as i64 + round) as f32).collect();
    let db = Engram::open(&dir, opts.clone()).unwrap();
    let mut tx = db.begin_write().unwrap();
    let key = format!("k{round}");
    let e = tx
        .insert_episode(&EpisodeInput {
            agent: 1,
            timestamp: round,
            embedding: &v,
            payload: b"x",
            key: Some(key.as_bytes()),
        })
        .unwrap();
    let c = tx
        .insert_concept(&ConceptInput {
            centroid: &v,
            label: "c",
        })
        .unwrap();
    tx.bind(e, c, 0.5).unwrap();
    tx.commit().unwrap();
    let snap = db.begin_read().unwrap();
    snap.search(&v, 3, &Filter::default()).unwrap();
    snap.lookup_concept(c).unwrap().unwrap();
    if round % 5 == 0 {
        db.compact().unwrap();
    }
    if round % 7 == 0 {
        let to = root.join(format!("backup{round}"));
        db.backup(&to).unwrap();
        std::fs::remove_dir_all(&to).unwrap();
    }
    let reader = Engram::open(
        &dir,
        Options {
            read_only: true,
            ..opts
        },
    )
    .unwrap();
    assert!(reader.begin_read().unwrap().episode(e).unwrap().is_some());
}

#[test]
fn dropped_handles_give_back_descriptors_threads_and_maps() {
    let tmp = tempfile::tempdir().unwrap();
    // Warm-up: rayon's pool and the allocator's arenas are made once per process.
    for round in 0..10 {
        cycle(tmp.path(), round);
    }
    let before = held();
    for round in 10..110 {
        cycle(tmp.path(), round);
    }
    let after = held();
    assert_eq!(
        after.0, before.0,
        "descriptors (before, after): {before:?} {after:?}"
    );
    assert_eq!(
        after.1, before.1,
        "threads (before, after): {before:?} {after:?}"
    );
    // A leaked handle would keep a dozen maps per cycle; a few may come from the allocator.
    assert!(
        after.2 <= before.2 + 4,
        "maps (before, after): {before:?} {after:?}"
    );
}
