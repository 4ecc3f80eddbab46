//! Fault injection at every write, fsync, growth and map site the store reaches: after an
//! injected ENOSPC, EIO or short write the call returns an error, the handle refuses writes
//! (or stays usable), reads of committed data go on, and a reopen finds every acknowledged
//! commit whole, nothing partial, and a database that verifies.
//!
//! The injection plan is process-wide: the tests take turns.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;

#[path = "harness/formats.rs"]
mod formats;
mod workload;

use engram_core::fault::{self, Fault, IoOp};
use engram_core::{Engram, Error};
use workload::{batch, complete_batches, key, opts};

const BATCHES: u64 = 6;

static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn every_injected_fault_is_an_error_and_loses_no_commit() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // A dry run counts the calls of each kind the workload makes, by site.
    let tmp = tempfile::tempdir().unwrap();
    let dry = tmp.path().join("dry");
    drop(Engram::open(&dry, opts()).unwrap());
    fault::arm(IoOp::Write, u64::MAX, Fault::Io);
    let db = Engram::open(&dry, opts()).unwrap();
    for b in 0..BATCHES {
        batch(&db, b).unwrap();
    }
    drop(db);
    let (seen, fired) = fault::disarm();
    assert!(fired.is_none());
    let mut per_op: BTreeMap<IoOp, u64> = BTreeMap::new();
    for &(op, _, n) in &seen {
        *per_op.entry(op).or_default() += n;
    }
    let sites: BTreeSet<(IoOp, &str)> = seen.iter().map(|&(op, site, _)| (op, site)).collect();

    let mut fired_at: BTreeMap<(IoOp, &str), u64> = BTreeMap::new();
    let mut trials = 0;
    for (&op, &calls) in &per_op {
        let faults: &[Fault] = if op == IoOp::Write {
            &[Fault::NoSpace, Fault::Io, Fault::ShortWrite]
        } else {
            &[Fault::NoSpace, Fault::Io]
        };
        // Every call of the first batches, then a sample of the rest (the calls repeat per batch).
        let nths: Vec<u64> = (1..=calls).filter(|&n| n <= 40 || n % 7 == 0).collect();
        for &f in faults {
            for &nth in &nths {
                trials += 1;
                let dir = tmp.path().join(format!("case-{trials}"));
                drop(Engram::open(&dir, opts()).unwrap());
                let db = Engram::open(&dir, opts()).unwrap();
                fault::arm(op, nth, f);
                let mut acked = 0;
                let mut failure = None;
                for b in 0..BATCHES {
                    match batch(&db, b) {
                        Ok(()) => acked = b + 1,
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    }
                }
                let (_, site) = fault::disarm();
                let Some(site) = site else {
                    assert!(failure.is_none());
                    continue;
                };
                *fired_at.entry((op, site)).or_default() += 1;
                let Some(err) = failure else {
                    // Only the published head may fail unnoticed: it is advisory (other
                    // processes' hint, rebuilt by recovery), so its commit stands.
                    assert_eq!(
                        site, "write_unsynced",
                        "{op:?} #{nth} ({f:?}): no call returned an error"
                    );
                    drop(db);
                    assert_eq!(complete_batches(&dir), BATCHES);
                    continue;
                };
                assert!(
                    matches!(err, Error::Io { .. } | Error::Poisoned),
                    "{op:?} #{nth} at {site}: {err}"
                );
                // After the failure: writes are refused (poisoned) or still work, never half.
                match db.begin_write() {
                    Err(Error::Poisoned) => {}
                    Ok(tx) => drop(tx),
                    Err(e) => panic!("{op:?} #{nth} at {site}: begin_write said {e}"),
                }
                // Committed data stays readable through the handle.
                if acked > 0 {
                    let snap = db.begin_read().unwrap();
                    assert!(
                        snap.episode_by_key(key(acked - 1, 1).as_bytes())
                            .unwrap()
                            .is_some()
                    );
                }
                drop(db);
                // Reopen: every acknowledged batch; the failed one only if its commit record
                // was durable before the error (an error after the commit point).
                let found = complete_batches(&dir);
                assert!(
                    found == acked || found == acked + 1,
                    "{op:?} #{nth} ({f:?}) at {site}: {acked} acked, {found} found"
                );
                std::fs::remove_dir_all(&dir).unwrap();
            }
        }
    }
    eprintln!(
        "{trials} injected runs over {} call sites; faults fired at:",
        sites.len()
    );
    for ((op, site), n) in &fired_at {
        eprintln!("  {op:?} {site}: {n}");
    }
    let unreached: Vec<_> = sites.iter().filter(|s| !fired_at.contains_key(s)).collect();
    assert!(
        unreached.is_empty(),
        "sites the workload reaches but no fault hit: {unreached:?}"
    );
}

fn listing(dir: &Path) -> BTreeSet<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// A compaction or backup that fails while writing its copy (on a full disk, say) removes
/// the copy's files at once: they would hold the very space the disk lacks, until a reopen.
/// Nothing the handle reads changed, so it goes on writing.
#[test]
fn a_failed_compaction_or_backup_leaves_no_partial_files() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let mut db = Engram::open(&dir, opts()).unwrap();
    // Two batches: no compaction yet (the workload compacts after every third).
    for b in 0..2 {
        batch(&db, b).unwrap();
    }
    let mut failed = BTreeMap::new();
    for op in [IoOp::Write, IoOp::Sync] {
        for nth in 1.. {
            let files = listing(&dir);
            fault::arm(op, nth, Fault::NoSpace);
            let result = db.compact();
            let (_, site) = fault::disarm();
            match site {
                None => {
                    result.unwrap();
                    break; // past the compaction's last call of this kind
                }
                Some("compact") => {
                    assert!(result.is_err(), "{op:?} #{nth}");
                    assert_eq!(listing(&dir), files, "{op:?} #{nth}: files left behind");
                    // Before its record: the handle goes on writing, and compacting.
                    db.begin_write().unwrap().commit().unwrap();
                    *failed.entry(op).or_insert(0) += 1;
                }
                // At or after the commit record: the new files may be the durable ones.
                Some(_) => {}
            }
            drop(db);
            assert_eq!(complete_batches(&dir), 2, "{op:?} #{nth}");
            db = Engram::open(&dir, opts()).unwrap();
        }
        // A plain backup, and one into other settings (the int8 mirror flipped: one file
        // more, or one fewer, to write).
        for flip in [false, true] {
            let mut manifest = db.manifest().clone();
            manifest.int8_mirror ^= flip;
            for nth in 1.. {
                let dest = tmp.path().join(format!("backup-{op:?}-{flip}-{nth}"));
                fault::arm(op, nth, Fault::NoSpace);
                let result = db.backup_as(&dest, &manifest);
                let (_, site) = fault::disarm();
                if site.is_none() {
                    result.unwrap();
                    assert_eq!(complete_batches(&dest), 2);
                    break;
                }
                assert!(result.is_err(), "backup, {op:?} #{nth} at {site:?}");
                assert_eq!(listing(&dest), BTreeSet::new(), "backup, {op:?} #{nth}");
                *failed.entry(op).or_insert(0) += 1;
            }
        }
    }
    // Both kinds of call failed somewhere in each (the loops above ran past the first).
    assert!(
        failed[&IoOp::Write] >= 2 && failed[&IoOp::Sync] >= 2,
        "{failed:?}"
    );
}

/// Creating a database that fails at any of its writes, syncs or maps (a full disk) is an
/// error, and the directory is not left unusable: the next open creates the database.
/// A crash leaves the same files, so it opens too. Anything the creation could not have
/// written (a foreign file, a data file that is not empty, as a partial backup's, a `head`
/// that is not ours) still makes the open refuse the directory, and touch nothing.
#[test]
fn a_creation_that_fails_anywhere_opens_the_next_time() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let mut failed = 0;
    for op in [IoOp::Write, IoOp::Sync, IoOp::Grow, IoOp::Map] {
        for nth in 1.. {
            let dir = tmp.path().join(format!("{op:?}-{nth}"));
            fault::arm(op, nth, Fault::NoSpace);
            let first = Engram::open(&dir, opts());
            let (_, site) = fault::disarm();
            if site.is_none() {
                first.unwrap();
                break;
            }
            drop(first); // an error, or (at the last syncs) a database already in place
            failed += 1;
            let db = Engram::open(&dir, opts()).unwrap_or_else(|e| panic!("{op:?} #{nth}: {e}"));
            let mut tx = db.begin_write().unwrap();
            tx.insert_episode(&engram_core::EpisodeInput {
                agent: 0,
                timestamp: 0,
                embedding: &[1.0; workload::DIM],
                payload: b"",
                key: None,
            })
            .unwrap();
            tx.commit().unwrap();
            assert_eq!(db.begin_read().unwrap().verify().unwrap().live_episodes, 1);
        }
    }
    assert!(failed >= 20, "{failed} failing calls");

    // Leftovers of a creation beside a foreign file, with data in a data file, or beside
    // a file of one of creation's names that creation would not have written: refused.
    for (name, bytes) in [
        ("notes.txt", &b""[..]),
        ("000001.eps", b"data"),
        ("head", b"a person's own notes"),
    ] {
        let dir = tmp.path().join(format!("foreign-{name}"));
        fault::arm(IoOp::Sync, 9, Fault::NoSpace); // at the first commit slot
        assert!(Engram::open(&dir, opts()).is_err());
        fault::disarm();
        std::fs::write(dir.join(name), bytes).unwrap();
        let before = listing(&dir);
        assert!(matches!(
            Engram::open(&dir, opts()),
            Err(Error::NotADatabase { .. })
        ));
        assert_eq!(listing(&dir), before, "{name}: the directory was touched");
    }
}

/// A fault at any write, sync or map call of an upgrade from format 9 (its binding file
/// rewritten, its new commit record, head and MANIFEST) fails the open with an I/O error
/// and loses nothing: the next open, with no fault, upgrades the directory and finds every
/// batch. (A fault at the head, which is advisory, may go unnoticed.)
#[test]
fn a_failed_upgrade_is_an_error_and_the_next_open_upgrades() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const BATCHES: u64 = 4;
    let tmp = tempfile::tempdir().unwrap();
    let template = tmp.path().join("template");
    let db = Engram::open(&template, opts()).unwrap();
    for b in 0..BATCHES {
        batch(&db, b).unwrap();
    }
    drop(db);
    formats::downgrade(&template, 9);
    let copy = |name: &str| formats::copy_dir(&template, &tmp.path().join(name));
    let dry = copy("dry");
    fault::arm(IoOp::Write, u64::MAX, Fault::Io);
    drop(Engram::open(&dry, opts()).unwrap());
    let (seen, _) = fault::disarm();
    assert!(
        seen.iter().any(|&(_, site, _)| site == "rewrite_bindings"),
        "{seen:?}"
    );
    let mut per_op: BTreeMap<IoOp, u64> = BTreeMap::new();
    for &(op, _, n) in &seen {
        *per_op.entry(op).or_default() += n;
    }
    let mut fired_at: BTreeSet<&str> = BTreeSet::new();
    let mut trials = 0;
    for (&op, &calls) in &per_op {
        for f in [Fault::NoSpace, Fault::Io, Fault::ShortWrite] {
            for nth in 1..=calls {
                trials += 1;
                let dir = copy(&format!("case-{trials}"));
                fault::arm(op, nth, f);
                let opened = Engram::open(&dir, opts());
                let (_, site) = fault::disarm();
                match (site, opened) {
                    (None, Ok(_)) => {}
                    (Some("write_unsynced"), Ok(_)) => {}
                    (Some(site), Err(e)) => {
                        assert!(
                            matches!(e, Error::Io { .. }),
                            "{op:?} #{nth} ({f:?}) at {site}: {e}"
                        );
                        fired_at.insert(site);
                    }
                    (site, r) => panic!("{op:?} #{nth} ({f:?}) at {site:?}: {:?}", r.err()),
                }
                assert_eq!(complete_batches(&dir), BATCHES, "{op:?} #{nth} ({f:?})");
                assert_eq!(formats::format_of(&dir), engram_core::FORMAT_VERSION);
                std::fs::remove_dir_all(&dir).unwrap();
            }
        }
    }
    eprintln!("{trials} trials; fired at {fired_at:?}");
    assert!(fired_at.contains("rewrite_bindings"), "{fired_at:?}");
}

/// A group commit that fails (at any of its writes or syncs) fails every call it carried,
/// each with the error itself (or `Poisoned`, for a call that came after), and a reopen
/// shows each call whole or not at all, and the calls that shared the failed commit alike.
#[test]
fn a_failed_group_commit_fails_every_call_it_carried() {
    use engram_core::EpisodeInput;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let vector =
        |call: u64, i: u64| -> Vec<f32> { (0..16).map(|d| (call * 10 + i + d) as f32).collect() };
    let mut grouped = 0;
    let mut sites = BTreeSet::new();
    for op in [IoOp::Write, IoOp::Sync] {
        for nth in 1..=6 {
            let dir = tmp.path().join(format!("{op:?}-{nth}"));
            let db = Engram::open(&dir, opts()).unwrap();
            let held = db.begin_write().unwrap();
            let results: Vec<engram_core::Result<Vec<u64>>> = std::thread::scope(|s| {
                let calls: Vec<_> = (0..4u64)
                    .map(|call| {
                        let db = &db;
                        s.spawn(move || {
                            let (keys, vectors): (Vec<String>, Vec<Vec<f32>>) = (0..3)
                                .map(|i| (format!("c{call}-{i}"), vector(call, i)))
                                .unzip();
                            let inputs: Vec<EpisodeInput> = (0..3)
                                .map(|i| EpisodeInput {
                                    agent: call,
                                    timestamp: 0,
                                    embedding: &vectors[i],
                                    payload: b"queued",
                                    key: Some(keys[i].as_bytes()),
                                })
                                .collect();
                            db.insert_episodes(&inputs)
                        })
                    })
                    .collect();
                // Let the calls queue behind the held transaction, then fail the group's commit.
                std::thread::sleep(std::time::Duration::from_millis(200));
                fault::arm(op, nth, Fault::NoSpace);
                drop(held);
                calls.into_iter().map(|c| c.join().unwrap()).collect()
            });
            let (_, site) = fault::disarm();
            let Some(site) = site else {
                assert!(
                    results.iter().all(Result::is_ok),
                    "{op:?} #{nth}: no fault, yet an error"
                );
                continue;
            };
            sites.insert((op, site));
            let mut failed_with_it = 0;
            for r in &results {
                match r {
                    Err(Error::Io { source, .. }) if source.raw_os_error() == Some(28) => {
                        failed_with_it += 1
                    }
                    Err(Error::Poisoned) => {}
                    Ok(_) if site == "write_unsynced" => {} // the advisory head: the commit stands
                    other => panic!("{op:?} #{nth} at {site}: {other:?}"),
                }
            }
            grouped += usize::from(failed_with_it > 1);
            drop(db);
            let db = Engram::open(&dir, opts()).unwrap();
            let snap = db.begin_read().unwrap();
            let present: Vec<bool> = (0..4u64)
                .map(|call| {
                    let here: Vec<bool> = (0..3)
                        .map(|i| {
                            snap.episode_by_key(format!("c{call}-{i}").as_bytes())
                                .unwrap()
                                .is_some()
                        })
                        .collect();
                    assert!(
                        here.iter().all(|&h| h == here[0]),
                        "{op:?} #{nth} at {site}: call {call} partial"
                    );
                    here[0]
                })
                .collect();
            for (r, &p) in results.iter().zip(&present) {
                if matches!(r, Err(Error::Poisoned)) {
                    assert!(!p, "{op:?} #{nth}: a refused call was stored");
                }
            }
            let shared: Vec<bool> = results
                .iter()
                .zip(&present)
                .filter(|(r, _)| matches!(r, Err(Error::Io { .. })))
                .map(|(_, &p)| p)
                .collect();
            assert!(
                shared.iter().all(|&p| p == shared[0]),
                "{op:?} #{nth} at {site}: one commit, split"
            );
            let stored = present.iter().filter(|&&p| p).count() as u64;
            assert_eq!(snap.verify().unwrap().live_episodes, stored * 3);
        }
    }
    eprintln!("faults fired at {sites:?}; {grouped} failed commits carried several calls");
    assert!(grouped > 0, "no failed commit carried more than one call");
}
