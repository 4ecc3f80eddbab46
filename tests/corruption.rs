//! Flipped bytes and truncations in every file kind: opening and reading give a clear error
//! or the last good commit, never a panic.

use std::path::{Path, PathBuf};

use engram_core::{ConceptInput, Engram, EpisodeInput, Error, Options};

const DIM: usize = 32;

fn opts() -> Options {
    Options {
        dimension: Some(DIM),
        int8_mirror: Some(true),
        ..Options::default()
    }
}

fn build(dir: &Path) {
    commit_rounds(&Engram::open(dir, opts()).unwrap());
}

/// Three transactions (txns 1 to 3), each with a concept, 40 keyed episodes bound to it
/// and a network; the third deletes an episode and updates a concept.
fn commit_rounds(db: &Engram) {
    for round in 0..3u64 {
        let mut tx = db.begin_write().unwrap();
        let c = tx
            .insert_concept(&ConceptInput {
                centroid: &[round as f32; DIM],
                label: "c",
            })
            .unwrap();
        for i in 0..40u64 {
            let v: Vec<f32> = (0..DIM).map(|d| (i * 3 + d as u64) as f32).collect();
            let k = format!("{round}-{i}");
            let e = tx
                .insert_episode(&EpisodeInput {
                    agent: round,
                    timestamp: i as i64,
                    embedding: &v,
                    payload: k.as_bytes(),
                    key: Some(k.as_bytes()),
                })
                .unwrap();
            tx.bind(e, c, 0.5).unwrap();
        }
        let w: Vec<f32> = (0..3 * 40).map(|i| (i as f32 * 0.1).sin()).collect();
        let tensor = engram_core::TensorInput {
            name: "w",
            shape: &[3, 40],
            data: &w,
            importance: Some(&w),
        };
        let scheme = engram_core::quant::QuantScheme::Mixed { f16: 0.3, q8: 0.3 };
        tx.put_network(round, "policy", &[tensor], scheme).unwrap();
        if round == 2 {
            tx.delete_episode(3).unwrap();
            tx.update_concept(0, &[9.0; DIM], Some("c2")).unwrap();
        }
        tx.commit().unwrap();
    }
}

/// Reads everything reachable; returns the first error. Must never panic.
fn read_all(dir: &Path) -> Result<u64, Error> {
    let db = Engram::open(dir, opts())?;
    let snap = db.begin_read()?;
    let mut n = 0;
    for id in snap.episode_ids()? {
        let ep = snap.episode(id)?.ok_or(Error::NotFound {
            kind: "episode",
            id,
        })?;
        n += ep.embedding().len() as u64 + ep.payload()?.len() as u64;
        let _ = ep.key()?;
        n += snap.bindings_of_episode(id)?.len() as u64;
    }
    for id in snap.concept_ids()? {
        let c = snap.concept(id)?.ok_or(Error::NotFound {
            kind: "concept",
            id,
        })?;
        n += c.label()?.len() as u64 + snap.concept_fan_count(id)? as u64;
    }
    snap.episode_by_key(b"1-7")?;
    // The scans read every slot and every int8 row.
    let q = [0.5f32; DIM];
    n += snap.search(&q, 5, &engram_core::Filter::default())?.len() as u64;
    n += snap
        .search_int8(&q, 5, &engram_core::Filter::default(), 20)?
        .len() as u64;
    n += snap.search_concepts(&q, 2)?.len() as u64;
    for (agent, name) in snap.networks() {
        let net = snap.network(agent, &name)?.ok_or(Error::NotFound {
            kind: "network",
            id: agent,
        })?;
        for t in net.tensors() {
            let t = t?;
            let mut w = vec![0f32; t.shape.iter().product()];
            t.dequantize_into(&mut w)?;
            n += w.len() as u64;
        }
    }
    Ok(n)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut f: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.ends_with("LOCK"))
        .collect();
    f.sort();
    f
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in files(from) {
        std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
    }
}

#[test]
fn flipped_bytes_in_any_file_never_panic_and_checksummed_data_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    build(&good);
    read_all(&good).unwrap();
    let mut caught = 0;
    let mut trials = 0;
    for file in files(&good) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let len = std::fs::metadata(&file).unwrap().len();
        // Only the committed prefix matters; the rest is preallocated capacity.
        let used = len.min(match name.rsplit('.').next().unwrap() {
            "eps" | "con" => 121 * 256,
            "i8" => 121 * 128,
            _ => 16 << 10,
        });
        let step = (used / 37).max(1) | 1;
        let mut off = 0;
        while off < used {
            let case = tmp.path().join(format!("case-{trials}"));
            copy_dir(&good, &case);
            let target = case.join(&name);
            let mut bytes = std::fs::read(&target).unwrap();
            bytes[off as usize] ^= 0x5a;
            std::fs::write(&target, &bytes).unwrap();
            let outcome = std::panic::catch_unwind(|| read_all(&case));
            let outcome = outcome.unwrap_or_else(|_| panic!("panic: {name} byte {off} flipped"));
            trials += 1;
            match outcome {
                Err(
                    Error::Corruption { .. }
                    | Error::NotADatabase { .. }
                    | Error::FormatVersion { .. },
                ) => caught += 1,
                Err(Error::NotFound { .. }) => caught += 1, // a damaged table word hid a node
                Err(e) => panic!("{name} byte {off}: unexpected error kind {e}"),
                Ok(_) => {}
            }
            // Slots are 256 bytes at 32-d: a 200-byte archive, its crc32c, padding. Every flip
            // in a live slot's checked bytes is reported (slot 3 was deleted).
            // int8 rows are 128 bytes at 32-d: 32 codes and 36 checked bytes of fields + crc,
            // and the int8 scan reads every row.
            let (row, at) = (off / 128, off % 128);
            if name.ends_with(".i8") && row < 120 && at < 32 + 36 {
                assert!(
                    matches!(read_all(&case), Err(Error::Corruption { .. })),
                    "{name} byte {off}: flip in a checksummed int8 row not reported"
                );
            }
            // Three commits wrote one network each, a page apiece (zero-completed), every page
            // checksummed and read by read_all.
            if name.ends_with(".pages") && off < 3 * 4096 {
                assert!(
                    matches!(read_all(&case), Err(Error::Corruption { .. })),
                    "{name} byte {off}: flip in a checksummed page not reported"
                );
            }
            let (slot, within) = (off / 256, off % 256);
            if name.ends_with(".eps") && slot < 120 && slot != 3 && within < 204 {
                assert!(
                    matches!(read_all(&case), Err(Error::Corruption { .. })),
                    "{name} byte {off}: flip in a checksummed slot not reported"
                );
            }
            std::fs::remove_dir_all(&case).unwrap();
            off += step;
        }
    }
    eprintln!("{trials} flips, {caught} reported as errors, none panicked");
    assert!(caught > 0);
}

/// Txn 1 (which created the key index) wrote a commit record; txns 2 and 3 were committed
/// by write-ahead log entries following it. As a `kill -9` leaves it (copied with the
/// handle open), the directory opens at txn 3: the log replayed. With the log's last entry
/// damaged, txn 2 is what is left. With the newest commit record damaged, the previous
/// one (the creation's) is valid, but the log's entries show a newer record was durable:
/// the open reports the damage rather than losing the commits silently.
#[test]
fn a_damaged_newest_commit_record_falls_back_to_the_previous_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live");
    let db = Engram::open(&live, opts()).unwrap();
    commit_rounds(&db);
    let dir = tmp.path().join("killed");
    copy_dir(&live, &dir);
    drop(db);
    assert_eq!(
        std::fs::metadata(live.join("wal")).unwrap().len(),
        0,
        "a close empties the log"
    );
    let txn_of = |name: &str| {
        let b = std::fs::read(dir.join(name)).unwrap();
        u64::from_le_bytes(b[16..24].try_into().unwrap())
    };
    assert_eq!((txn_of("commit.0"), txn_of("commit.1")), (0, 1));
    // Each open on a copy with one file damaged.
    let check = |damaged: Option<(&str, usize)>, txn, episodes| {
        let copy = tmp.path().join(format!("copy-{txn}"));
        copy_dir(&dir, &copy);
        if let Some((name, at)) = damaged {
            let mut bytes = std::fs::read(copy.join(name)).unwrap();
            bytes[at] ^= 1;
            std::fs::write(copy.join(name), &bytes).unwrap();
        }
        let db = Engram::open(&copy, opts())?;
        let snap = db.begin_read().unwrap();
        assert_eq!((snap.txn(), snap.episode_count()), (txn, episodes));
        snap.verify()
    };
    check(None, 3, 119).unwrap(); // round 3 deleted one episode
    let log = std::fs::read(dir.join("wal")).unwrap();
    let entries: Vec<usize> = (0..log.len())
        .step_by(4096)
        .filter(|&at| log[at..].starts_with(b"EGWL"))
        .collect();
    assert_eq!(entries.len(), 2, "one entry per commit after the first");
    check(Some(("wal", entries[1] + 40)), 2, 80).unwrap();
    let r = check(Some(("commit.1", 20)), 0, 0);
    assert!(
        matches!(&r, Err(Error::Corruption { file, .. }) if file.ends_with("wal")),
        "{r:?}"
    );
}

#[test]
fn truncated_files_give_errors_not_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    build(&good);
    let mut errors = 0;
    for file in files(&good) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let len = std::fs::metadata(&file).unwrap().len();
        for cut in [0, 1, len / 3, len.saturating_sub(1)] {
            let case = tmp.path().join(format!("t-{name}-{cut}"));
            copy_dir(&good, &case);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(case.join(&name))
                .unwrap();
            f.set_len(cut.min(len)).unwrap();
            let r = std::panic::catch_unwind(|| read_all(&case))
                .unwrap_or_else(|_| panic!("panic: {name} truncated to {cut}"));
            if r.is_err() {
                errors += 1;
            }
            std::fs::remove_dir_all(&case).unwrap();
        }
    }
    assert!(errors > 0);
}

#[test]
fn verify_checks_what_reads_never_touch() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    build(&good);
    read_all(&good).unwrap();
    {
        let db = Engram::open(&good, opts()).unwrap();
        let snap = db.begin_read().unwrap();
        let r = snap.verify().unwrap();
        // 120 episode slots + their 120 int8 rows + 4 concept versions.
        assert_eq!(
            (r.slots, r.live_episodes, r.live_concepts, r.live_bindings),
            (244, 119, 3, 119)
        );
        assert_eq!(r.blobs, 119 * 2 + 3);
    }
    // A deleted episode's slot (3; only scans read it) and a superseded concept version
    // (slot 0 of .con; no read reaches it) are checked by verify.
    for (ext, off, reads_see_it) in [("eps", 3 * 256 + 10, true), ("con", 17, false)] {
        let case = tmp.path().join(format!("case-{ext}"));
        copy_dir(&good, &case);
        let target = files(&case)
            .into_iter()
            .find(|f| f.extension().is_some_and(|e| e == ext))
            .unwrap();
        let mut bytes = std::fs::read(&target).unwrap();
        bytes[off] ^= 0x21;
        std::fs::write(&target, &bytes).unwrap();
        assert_eq!(read_all(&case).is_err(), reads_see_it, "{ext}");
        let db = Engram::open(&case, opts()).unwrap();
        let err = db.begin_read().unwrap().verify().unwrap_err();
        assert!(matches!(err, Error::Corruption { .. }), "{ext}: {err}");
    }
}

/// A node table's directory of id runs (format 9) is checked at open: a flip in any of its
/// runs or its checksum is `Corruption`, as is a table file cut inside it; its padding is
/// never read.
#[test]
fn a_damaged_table_directory_is_refused_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    let db = Engram::open(&good, opts()).unwrap();
    let mut tx = db.begin_write().unwrap();
    let ids: Vec<u64> = (0..30u64)
        .map(|i| {
            let v: Vec<f32> = (0..DIM).map(|d| (i + d as u64) as f32).collect();
            tx.insert_episode(&EpisodeInput {
                agent: 0,
                timestamp: 0,
                embedding: &v,
                payload: b"p",
                key: None,
            })
            .unwrap()
        })
        .collect();
    tx.commit().unwrap();
    let mut tx = db.begin_write().unwrap();
    for &id in &ids[1..20] {
        tx.delete_episode(id).unwrap();
    }
    tx.commit().unwrap();
    db.compact().unwrap(); // episode 0 is a run of its own, 20.. the tail
    drop(db);
    let expected = read_all(&good).unwrap();
    let table = files(&good)
        .into_iter()
        .find(|p| p.extension().is_some_and(|x| x == "etab"))
        .unwrap();
    let name = table.file_name().unwrap().to_owned();
    let bytes = std::fs::read(&table).unwrap();
    assert_eq!(bytes.len(), 64 + 11 * 48, "a 64-byte directory, 11 entries");
    for off in 0..64 {
        let case = tmp.path().join(format!("flip-{off}"));
        copy_dir(&good, &case);
        let mut b = bytes.clone();
        b[off] ^= 0x5a;
        std::fs::write(case.join(&name), &b).unwrap();
        let outcome = read_all(&case);
        if off < 16 + 4 {
            assert!(
                matches!(outcome, Err(Error::Corruption { .. })),
                "byte {off}: {outcome:?}"
            );
        } else {
            assert_eq!(outcome.unwrap(), expected, "padding byte {off}");
        }
        std::fs::remove_dir_all(&case).unwrap();
    }
    let case = tmp.path().join("cut");
    copy_dir(&good, &case);
    std::fs::write(case.join(&name), &bytes[..12]).unwrap();
    assert!(matches!(read_all(&case), Err(Error::Corruption { .. })));
}

/// A file missing from the directory (deleted by hand, a bad copy) is never a crash state:
/// every file a commit names, and both commit records, exist from the creation on. Each
/// missing one is an error for a writer and a read-only open alike, and the open removes
/// nothing: put back, the database reads as before. (A missing commit record was skipped:
/// the open fell back to the other record, lost the newest commits and deleted the files
/// only they named.) The head and the lock file are rebuilt.
#[test]
fn a_missing_file_is_an_error_and_the_open_removes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    build(&good);
    let want = read_all(&good).unwrap();
    for file in files(&good) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let case = tmp.path().join(format!("m-{name}"));
        copy_dir(&good, &case);
        std::fs::remove_file(case.join(&name)).unwrap();
        if name == "head" {
            assert_eq!(read_all(&case).unwrap(), want);
            continue;
        }
        let left = files(&case);
        for read_only in [false, true] {
            let r = Engram::open(
                &case,
                Options {
                    read_only,
                    ..opts()
                },
            )
            .and_then(|db| db.begin_read().map(|s| s.episode_count()));
            assert!(r.is_err(), "{name} missing, read-only {read_only}: {r:?}");
            assert_eq!(files(&case), left, "{name} missing: the open removed files");
        }
        std::fs::copy(&file, case.join(&name)).unwrap();
        assert_eq!(read_all(&case).unwrap(), want, "{name} put back");
    }
}
