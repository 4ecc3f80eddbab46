//! Readers verify their snapshots while a writer commits, grows files and compacts; a
//! reader process follows a writer process.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use engram_core::{Engram, EpisodeInput, Options, ReadTxn};

const DIM: usize = 32;
const BATCH: u64 = 200;

fn opts() -> Options {
    Options {
        dimension: Some(DIM),
        ..Options::default()
    }
}

fn vector(id: u64) -> Vec<f32> {
    (0..DIM as u64).map(|d| (id * 7 + d) as f32).collect()
}

/// Every committed batch adds BATCH episodes and deletes the oldest live one; a snapshot must
/// show exactly that shape, with every embedding intact.
fn verify(snap: &ReadTxn) -> u64 {
    let ids = snap.episode_ids().unwrap();
    let txn_batches = snap.txn();
    assert_eq!(ids.len() as u64, snap.episode_count());
    for &id in &ids {
        let ep = snap.episode(id).unwrap().unwrap();
        assert_eq!(
            ep.embedding(),
            vector(id).as_slice(),
            "snapshot {txn_batches} id {id}"
        );
        assert_eq!(ep.payload().unwrap(), &id.to_le_bytes());
    }
    ids.len() as u64
}

/// Batch b inserts ids b*BATCH.. (ids are dense and never reused once committed) and
/// deletes the oldest live episode; after n batches n*BATCH - n episodes are live.
fn write_batches(db: &Engram, from: u64, to: u64, compact_every: u64) {
    for b in from..to {
        let mut tx = db.begin_write().unwrap();
        for i in 0..BATCH {
            let id = b * BATCH + i;
            let got = tx
                .insert_episode(&EpisodeInput {
                    agent: 0,
                    timestamp: id as i64,
                    embedding: &vector(id),
                    payload: &id.to_le_bytes(),
                    key: None,
                })
                .unwrap();
            assert_eq!(got, id);
        }
        let committed = db.begin_read().unwrap().episode_ids().unwrap();
        let oldest = committed.first().copied().unwrap_or(b * BATCH);
        tx.delete_episode(oldest).unwrap();
        tx.commit().unwrap();
        if compact_every > 0 && b % compact_every == compact_every - 1 {
            db.compact().unwrap();
        }
    }
}

#[test]
fn reader_threads_see_consistent_snapshots_during_commits_growth_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Engram::open(dir.path(), opts()).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let checks = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (db, done, checks) = (db.clone(), done.clone(), checks.clone());
            std::thread::spawn(move || {
                let mut held: Vec<ReadTxn> = Vec::new();
                while !done.load(Ordering::Acquire) {
                    let snap = db.begin_read().unwrap();
                    verify(&snap);
                    held.push(snap);
                    if held.len() > 4 {
                        // Old snapshots must still read correctly after compactions.
                        verify(&held.remove(0));
                    }
                    checks.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    write_batches(&db, 0, 40, 8);
    done.store(true, Ordering::Release);
    for r in readers {
        r.join().unwrap();
    }
    assert!(checks.load(Ordering::Relaxed) > 3);
    let snap = db.begin_read().unwrap();
    assert_eq!(verify(&snap), 40 * BATCH - 40);
}

#[test]
fn reader_child() {
    let Ok(dir) = std::env::var("ENGRAM_READER_CHILD") else {
        return;
    };
    let db = Engram::open(
        &dir,
        Options {
            read_only: true,
            ..opts()
        },
    )
    .unwrap();
    let mut last_txn = 0;
    let mut seen = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let snap = db.begin_read().unwrap();
        verify(&snap);
        assert!(snap.txn() >= last_txn, "snapshots go forward");
        if snap.txn() > last_txn {
            seen += 1;
        }
        last_txn = snap.txn();
        if snap.episode_count() == 30 * BATCH - 30 {
            println!("READER-OK versions={seen}");
            return;
        }
    }
    panic!("reader never saw the final version");
}

#[test]
fn a_reader_process_follows_a_writer_process() {
    let dir = tempfile::tempdir().unwrap();
    let db = Engram::open(dir.path(), opts()).unwrap();
    write_batches(&db, 0, 1, 0);
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "reader_child", "--nocapture", "--test-threads=1"])
        .env("ENGRAM_READER_CHILD", dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    write_batches(&db, 1, 30, 10);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("READER-OK"),
        "{stdout}"
    );
}

#[test]
fn backups_taken_while_a_writer_commits_and_compacts_are_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Engram::open(dir.path().join("db"), opts()).unwrap());
    write_batches(&db, 0, 2, 0);
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || write_batches(&db, 2, 30, 6))
    };
    let mut sizes = Vec::new();
    for k in 0..6 {
        let dest = dir.path().join(format!("backup-{k}"));
        db.backup(&dest).unwrap();
        let copy = Engram::open(&dest, opts()).unwrap();
        let snap = copy.begin_read().unwrap();
        let live = verify(&snap);
        assert_eq!(
            live % (BATCH - 1),
            0,
            "backup {k} holds a partial batch: {live}"
        );
        sizes.push(live);
    }
    writer.join().unwrap();
    assert!(sizes.windows(2).all(|w| w[0] <= w[1]), "{sizes:?}");
}

#[test]
fn reopening_while_another_thread_spawns_processes_never_reports_locked() {
    // A child forked by another thread holds a copy of our lock descriptor until its exec;
    // a drop-then-reopen must not mistake that for a second writer.
    let tmp = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let spawner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut spawned = 0u64;
            while !stop.load(Ordering::Acquire) {
                Command::new("true").status().unwrap();
                spawned += 1;
            }
            spawned
        })
    };
    for i in 0..150 {
        let dir = tmp.path().join(i.to_string());
        drop(Engram::open(&dir, opts()).unwrap()); // create
        drop(Engram::open(&dir, opts()).unwrap()); // reopen right after a close
    }
    stop.store(true, Ordering::Release);
    assert!(spawner.join().unwrap() > 0);
}

/// A thread holding the write transaction that asks for it again gets `WriteInProgress`
/// instead of waiting on itself forever; its transaction is untouched and commits, and
/// another thread asking meanwhile waits for that commit as before.
#[test]
fn a_thread_asking_for_the_writer_it_holds_gets_an_error_not_a_hang() {
    use engram_core::{ConsolidationParams, Error, Filter};
    let dir = tempfile::tempdir().unwrap();
    let db = Engram::open(dir.path(), opts()).unwrap();
    let mut tx = db.begin_write().unwrap();
    let id = tx
        .insert_episode(&EpisodeInput {
            agent: 0,
            timestamp: 0,
            embedding: &vector(0),
            payload: b"held",
            key: None,
        })
        .unwrap();
    let waited = AtomicBool::new(false);
    std::thread::scope(|s| {
        let other = s.spawn(|| {
            let tx = db.begin_write().unwrap();
            waited.store(true, Ordering::SeqCst);
            // It sees the episode: it got the writer after the commit.
            assert_eq!(tx.episode_fan_count(id).unwrap(), 0);
        });
        assert!(matches!(db.begin_write(), Err(Error::WriteInProgress)));
        assert!(matches!(db.compact(), Err(Error::WriteInProgress)));
        assert!(matches!(db.persist_accesses(), Err(Error::WriteInProgress)));
        let queued = EpisodeInput {
            agent: 0,
            timestamp: 0,
            embedding: &vector(1),
            payload: b"",
            key: None,
        };
        assert!(matches!(
            db.insert_episodes(&[queued]),
            Err(Error::WriteInProgress)
        ));
        let params = ConsolidationParams {
            min_similarity: 0.5,
            filter: Filter::default(),
        };
        assert!(matches!(
            db.consolidate(&params),
            Err(Error::WriteInProgress)
        ));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !waited.load(Ordering::SeqCst),
            "the other thread still waits"
        );
        tx.commit().unwrap();
        other.join().unwrap();
    });
    assert!(db.begin_read().unwrap().episode(id).unwrap().is_some());
    // Released with the transaction: this thread may write again, and compact.
    db.begin_write().unwrap().commit().unwrap();
    db.compact().unwrap();
}

/// Threads recording events with `insert_episodes` each get their own ids, in call order,
/// for episodes committed with the bytes they gave, while readers verify snapshots.
#[test]
fn threads_inserting_episodes_each_get_their_own_committed_ids() {
    const THREADS: u64 = 8;
    const CALLS: u64 = 40;
    let dir = tempfile::tempdir().unwrap();
    let db = Engram::open(dir.path(), opts()).unwrap();
    // The episode thread t's call c stores as its i-th: a vector and payload naming all three.
    let tag = |t: u64, c: u64, i: u64| (t * 1_000 + c) * 10 + i;
    let before = db.begin_read().unwrap().txn();
    let ids: Vec<Vec<(u64, u64)>> = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            // Every snapshot holds whole calls only: each call's episodes share a timestamp
            // and number 1 to 3 (call c of thread t stores 1 + (t + c) % 3 of them).
            for _ in 0..50 {
                let snap = db.begin_read().unwrap();
                let mut calls: std::collections::HashMap<i64, u64> = Default::default();
                for id in snap.episode_ids().unwrap() {
                    *calls
                        .entry(snap.episode(id).unwrap().unwrap().timestamp())
                        .or_default() += 1;
                }
                for (&call, &n) in &calls {
                    let (t, c) = (call as u64 / 1_000, call as u64 % 1_000);
                    assert_eq!(n, 1 + (t + c) % 3, "call {c} of thread {t} is partial");
                }
            }
        });
        let writers: Vec<_> = (0..THREADS)
            .map(|t| {
                let db = &db;
                s.spawn(move || {
                    let mut mine = Vec::new();
                    for c in 0..CALLS {
                        let n = 1 + (t + c) % 3;
                        let vectors: Vec<Vec<f32>> = (0..n).map(|i| vector(tag(t, c, i))).collect();
                        let payloads: Vec<[u8; 8]> =
                            (0..n).map(|i| tag(t, c, i).to_le_bytes()).collect();
                        let inputs: Vec<EpisodeInput> = (0..n as usize)
                            .map(|i| EpisodeInput {
                                agent: t,
                                timestamp: (t * 1_000 + c) as i64,
                                embedding: &vectors[i],
                                payload: &payloads[i],
                                key: None,
                            })
                            .collect();
                        let got = db.insert_episodes(&inputs).unwrap();
                        assert_eq!(got.len() as u64, n);
                        mine.extend(got.into_iter().zip((0..n).map(|i| tag(t, c, i))));
                    }
                    mine
                })
            })
            .collect();
        let ids = writers.into_iter().map(|w| w.join().unwrap()).collect();
        reader.join().unwrap();
        ids
    });
    let snap = db.begin_read().unwrap();
    let all: Vec<(u64, u64)> = ids.iter().flatten().copied().collect();
    let distinct: std::collections::BTreeSet<u64> = all.iter().map(|&(id, _)| id).collect();
    assert_eq!(distinct.len(), all.len(), "ids given twice");
    assert_eq!(snap.episode_count(), all.len() as u64);
    for &(id, tag) in &all {
        let ep = snap.episode(id).unwrap().unwrap();
        assert_eq!(ep.embedding(), vector(tag).as_slice());
        assert_eq!(ep.payload().unwrap(), &tag.to_le_bytes());
    }
    for thread in &ids {
        assert!(
            thread.windows(2).all(|w| w[0].0 < w[1].0),
            "a thread's calls commit in order"
        );
    }
    let commits = snap.txn() - before;
    assert!(commits <= THREADS * CALLS, "{commits} commits");
    eprintln!("{} calls in {commits} commits", THREADS * CALLS);
}

/// `insert_episodes` refuses bad input before queueing it, stores nothing of a refused
/// call, and keeps the rest of what `WriteTxn::insert_episode` promises (keys, times to live).
#[test]
fn insert_episodes_refuses_bad_input_and_keeps_insert_semantics() {
    use engram_core::{Error, Ttl};
    let dir = tempfile::tempdir().unwrap();
    let db = Engram::open(dir.path(), opts()).unwrap();
    let good = vector(1);
    fn ep<'a>(embedding: &'a [f32], key: Option<&'a [u8]>) -> EpisodeInput<'a> {
        EpisodeInput {
            agent: 3,
            timestamp: 0,
            embedding,
            payload: b"p",
            key,
        }
    }
    let txn = db.begin_read().unwrap().txn();
    let short = vec![1.0; DIM - 1];
    let mut nan = vector(2);
    nan[5] = f32::NAN;
    assert!(matches!(
        db.insert_episodes(&[ep(&good, None), ep(&short, None)]),
        Err(Error::DimensionMismatch { .. })
    ));
    assert!(matches!(
        db.insert_episodes(&[ep(&nan, None)]),
        Err(Error::NonFinite { index: 5, .. })
    ));
    assert!(matches!(
        db.insert_episodes(&[ep(&good, Some(b""))]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        db.insert_episodes_with_ttl(&[ep(&good, None)], Ttl::After(0)),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(db.insert_episodes(&[]).unwrap(), Vec::<u64>::new());
    let snap = db.begin_read().unwrap();
    assert_eq!(
        (snap.txn(), snap.episode_count()),
        (txn, 0),
        "nothing committed"
    );

    // A key already stored, or given twice, names the first episode.
    let first = db.insert_episodes(&[ep(&good, Some(b"k"))]).unwrap();
    let again = db
        .insert_episodes(&[
            ep(&vector(3), Some(b"k")),
            ep(&vector(4), Some(b"j")),
            ep(&vector(5), Some(b"j")),
        ])
        .unwrap();
    assert_eq!(again[0], first[0]);
    assert_eq!(again[1], again[2]);
    // A time to live in the past: stored, never visible.
    let gone = db
        .insert_episodes_with_ttl(&[ep(&vector(6), None)], Ttl::At(0))
        .unwrap();
    let snap = db.begin_read().unwrap();
    assert!(snap.episode(gone[0]).unwrap().is_none());
    assert_eq!(snap.episode_count(), 2);
    drop(snap);
    drop(db);

    let reader = Engram::open(
        dir.path(),
        Options {
            read_only: true,
            ..opts()
        },
    )
    .unwrap();
    assert!(matches!(
        reader.insert_episodes(&[ep(&good, None)]),
        Err(Error::ReadOnly)
    ));
}

/// Threads recording events bound to concepts they know share commits: every episode of
/// every call is bound to each of the call's concepts with its strength, fan counts add up,
/// and bad requests are refused before anything is queued.
#[test]
fn threads_inserting_bound_episodes_bind_every_episode() {
    use engram_core::{ConceptInput, Error};
    const THREADS: u64 = 8;
    const CALLS: u64 = 30;
    let dir = tempfile::tempdir().unwrap();
    let db = Engram::open(dir.path(), opts()).unwrap();
    let mut tx = db.begin_write().unwrap();
    let concepts: Vec<u64> = (0..2)
        .map(|c| {
            tx.insert_concept(&ConceptInput {
                centroid: &vector(100 + c),
                label: "known",
            })
            .unwrap()
        })
        .collect();
    tx.commit().unwrap();
    let ep = |v: &[f32]| -> Vec<f32> { v.to_vec() };
    let calls: Vec<Vec<u64>> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let (db, concepts) = (&db, &concepts);
                s.spawn(move || {
                    let mut ids = Vec::new();
                    for c in 0..CALLS {
                        let (a, b) = (ep(&vector(t * 100 + c)), ep(&vector(t * 100 + c + 50)));
                        let input = |v| EpisodeInput {
                            agent: t,
                            timestamp: c as i64,
                            embedding: v,
                            payload: b"event",
                            key: None,
                        };
                        let bound = [(concepts[0], 0.5), (concepts[1], 0.25)];
                        ids.extend(
                            db.insert_bound_episodes(&[input(&a), input(&b)], &bound)
                                .unwrap(),
                        );
                    }
                    ids
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let snap = db.begin_read().unwrap();
    let n = (THREADS * CALLS * 2) as usize;
    assert_eq!(snap.episode_count(), n as u64);
    assert!(snap.txn() < 1 + THREADS * CALLS, "calls shared commits");
    for &c in &concepts {
        assert_eq!(snap.concept_fan_count(c).unwrap(), n);
    }
    for &id in calls.iter().flatten() {
        assert_eq!(snap.binding_strength(id, concepts[0]).unwrap(), Some(0.5));
        assert_eq!(snap.binding_strength(id, concepts[1]).unwrap(), Some(0.25));
        assert_eq!(snap.episode_fan_count(id).unwrap(), 2);
    }
    snap.verify().unwrap();
    drop(snap);

    // Refused before anything is queued: a non-finite strength, a concept listed twice,
    // and any bound call on an episodes-only handle. A concept that is not live fails the
    // call at its commit, storing none of its episodes.
    let v = vector(7);
    let one = [EpisodeInput {
        agent: 1,
        timestamp: 0,
        embedding: &v,
        payload: b"p",
        key: None,
    }];
    let txn = db.begin_read().unwrap().txn();
    assert!(matches!(
        db.insert_bound_episodes(&one, &[(concepts[0], f32::NAN)]),
        Err(Error::NonFinite { .. })
    ));
    assert!(matches!(
        db.insert_bound_episodes(&one, &[(concepts[0], 0.5), (concepts[0], 0.1)]),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(db.begin_read().unwrap().txn(), txn, "nothing committed");
    assert!(matches!(
        db.insert_bound_episodes(&one, &[(999, 0.5)]),
        Err(Error::NotFound { id: 999, .. })
    ));
    let snap = db.begin_read().unwrap();
    assert_eq!(
        (snap.txn(), snap.episode_count()),
        (txn, n as u64),
        "nothing committed"
    );
    drop(snap);
    drop(db);
    let single = Engram::open(
        dir.path(),
        Options {
            episodes_only: true,
            ..opts()
        },
    )
    .unwrap();
    assert!(matches!(
        single.insert_bound_episodes(&one, &[(concepts[0], 0.5)]),
        Err(Error::InvalidArgument(_))
    ));
}

/// A compaction copies from a snapshot while the writer goes on, then carries what was
/// committed meanwhile into its copy: every commit stands, whatever it changed (inserts,
/// deletes of episodes already copied, bindings, concept updates), across compactions
/// running back to back beside the writer, and after a reopen.
#[test]
fn commits_made_while_compactions_copy_are_kept() {
    use engram_core::ConceptInput;
    const BATCHES: u64 = 60;
    const PER: u64 = 50;
    let dir = tempfile::tempdir().unwrap();
    let db = Engram::open(dir.path(), opts()).unwrap();
    let mut tx = db.begin_write().unwrap();
    let concepts: Vec<u64> = (0..4)
        .map(|c| {
            let centroid = vector(1_000_000 + c);
            let input = ConceptInput {
                centroid: &centroid,
                label: "v0",
            };
            tx.insert_concept(&input).unwrap()
        })
        .collect();
    tx.commit().unwrap();
    let writing = AtomicBool::new(true);
    let (during, compactions) = (AtomicU64::new(0), AtomicU64::new(0));
    let compacting = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while writing.load(Ordering::Acquire) {
                compacting.store(true, Ordering::Release);
                db.compact().unwrap();
                compacting.store(false, Ordering::Release);
                compactions.fetch_add(1, Ordering::Relaxed);
            }
        });
        for b in 0..BATCHES {
            let mut tx = db.begin_write().unwrap();
            for i in 0..PER {
                let id = b * PER + i;
                let input = EpisodeInput {
                    agent: 0,
                    timestamp: id as i64,
                    embedding: &vector(id),
                    payload: &id.to_le_bytes(),
                    key: Some(&id.to_be_bytes()),
                };
                assert_eq!(tx.insert_episode(&input).unwrap(), id);
                tx.bind(id, concepts[(id % 4) as usize], 0.5).unwrap();
            }
            // One in five of the previous batch's episodes goes: copied ones, most often.
            if b > 0 {
                for id in ((b - 1) * PER..b * PER).step_by(5) {
                    tx.delete_episode(id).unwrap();
                }
            }
            let c = concepts[(b % 4) as usize];
            tx.update_concept(c, &vector(2_000_000 + b), Some(&format!("v{b}")))
                .unwrap();
            tx.commit().unwrap();
            if compacting.load(Ordering::Acquire) {
                during.fetch_add(1, Ordering::Relaxed);
            }
        }
        writing.store(false, Ordering::Release);
    });
    eprintln!(
        "{} compactions; {} of {BATCHES} commits returned while one ran",
        compactions.load(Ordering::Relaxed),
        during.load(Ordering::Relaxed)
    );
    let check = |db: &Engram| {
        let snap = db.begin_read().unwrap();
        let report = snap.verify().unwrap();
        let deleted = |id: u64| id.is_multiple_of(5) && id < (BATCHES - 1) * PER;
        let live: Vec<u64> = (0..BATCHES * PER).filter(|&id| !deleted(id)).collect();
        assert_eq!(snap.episode_ids().unwrap(), live);
        assert_eq!(report.live_bindings, live.len() as u64);
        for &id in &live {
            let ep = snap.episode(id).unwrap().unwrap();
            assert_eq!(ep.embedding(), vector(id).as_slice());
            assert_eq!(ep.payload().unwrap(), &id.to_le_bytes());
            let by_key = snap.episode_by_key(&id.to_be_bytes()).unwrap().unwrap();
            assert_eq!(by_key.id(), id);
            let bound = snap.bindings_of_episode(id).unwrap();
            assert_eq!(bound.len(), 1);
            assert_eq!(bound[0].concept, concepts[(id % 4) as usize]);
        }
        for (i, &c) in concepts.iter().enumerate() {
            let last = (0..BATCHES).rev().find(|b| b % 4 == i as u64).unwrap();
            let concept = snap.concept(c).unwrap().unwrap();
            assert_eq!(concept.label().unwrap(), format!("v{last}"));
            assert_eq!(concept.centroid(), vector(2_000_000 + last).as_slice());
            let fan = live.iter().filter(|&&id| id % 4 == i as u64).count();
            assert_eq!(snap.concept_fan_count(c).unwrap(), fan);
        }
    };
    check(&db);
    drop(db);
    check(&Engram::open(dir.path(), opts()).unwrap());
}
