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
