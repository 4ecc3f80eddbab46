//! Power-loss simulation: the store reports every completed fsync (`fault::on_sync`), so the
//! test knows what each file held when it was last made durable. At a random moment — after
//! a commit returned, or in the middle of one (a write cut short by an injected error) —
//! "the power fails": every 4 KiB page written since its file's last fsync is kept, dropped
//! or torn at a random 512-byte boundary, and the result is opened. Recovery must land on
//! the last commit whose `commit()` returned (or the one being written, if its record was
//! durable), with every batch whole and the database verifying.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

mod workload;

use engram_core::fault::{self, Fault, IoOp};
use engram_core::{ConceptInput, Engram, EpisodeInput};
use engram_fixtures::Rng;
use workload::{DIM, batch, complete_batches, opts};

const PAGE: usize = 4096;

/// The sync observer and fault plan are process-wide: one test at a time uses them.
static SERIAL: Mutex<()> = Mutex::new(());

/// The directory as a power cut could leave it: per file, each page that differs from its
/// last durable image is kept, dropped (the image's bytes, zeros past its end) or torn.
fn crash_image(dir: &Path, to: &Path, images: &HashMap<PathBuf, Vec<u8>>, rng: &mut Rng) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let now = std::fs::read(&path).unwrap();
        // A file installed by rename (the MANIFEST) was made durable under its .tmp name.
        let tmp_name = path.with_file_name(format!(
            "{}.tmp",
            path.file_name().unwrap().to_string_lossy()
        ));
        let before = images
            .get(&path)
            .or_else(|| images.get(&tmp_name))
            .cloned()
            .unwrap_or_default();
        let mut out = now.clone();
        for start in (0..now.len()).step_by(PAGE) {
            let end = (start + PAGE).min(now.len());
            let old: Vec<u8> = (start..end)
                .map(|i| before.get(i).copied().unwrap_or(0))
                .collect();
            if old == now[start..end] {
                continue;
            }
            match rng.next_u64() % 3 {
                0 => {}                                     // the page reached the disk
                1 => out[start..end].copy_from_slice(&old), // it did not
                _ => {
                    // Torn at a sector boundary: the new first part, the old rest.
                    let cut = start + 512 * (1 + (rng.next_u64() as usize % 7));
                    if cut < end {
                        out[cut..end].copy_from_slice(&old[cut - start..]);
                    }
                }
            }
        }
        std::fs::write(to.join(path.file_name().unwrap()), out).unwrap();
    }
}

/// Each file's bytes as of its last completed fsync, kept current from now on.
type Images = Arc<Mutex<HashMap<PathBuf, Vec<u8>>>>;

fn record_durable_images() -> Images {
    let images: Images = Arc::default();
    let sink = images.clone();
    fault::on_sync(Some(Box::new(move |p: &Path| {
        if let Ok(bytes) = std::fs::read(p) {
            sink.lock().unwrap().insert(p.to_path_buf(), bytes);
        }
    })));
    images
}

#[test]
fn recovery_survives_dropped_and_torn_unsynced_pages() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let images = record_durable_images();
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(7);
    let trials: u64 = std::env::var("ENGRAM_POWER_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(80);
    let (mut mid_commit, mut extra) = (0, 0);
    for trial in 0..trials {
        let dir = tmp.path().join(format!("db-{trial}"));
        images.lock().unwrap().clear();
        let db = Engram::open(&dir, opts()).unwrap();
        let batches = 1 + rng.next_u64() % 8;
        // Half the trials cut the power in the middle of the last batch: at one of its
        // writes, or at one of its syncs (the log entry or commit record may be written).
        let cut_mid = rng.next_u64().is_multiple_of(2);
        let mut acked = 0;
        for b in 0..batches {
            if cut_mid && b == batches - 1 {
                match rng.next_u64().is_multiple_of(2) {
                    true => fault::arm(IoOp::Write, 1 + rng.next_u64() % 12, Fault::ShortWrite),
                    false => fault::arm(IoOp::Sync, 1 + rng.next_u64() % 4, Fault::Io),
                }
            }
            match batch(&db, b) {
                Ok(()) => acked = b + 1,
                Err(_) => break,
            }
        }
        let (_, fired) = fault::disarm();
        mid_commit += u64::from(fired.is_some());
        let image = images.lock().unwrap().clone();
        // The power fails with the process still running: the image is cut before the
        // handle's destructor can sync anything. Only then is the handle dropped, so
        // trials do not pile up its descriptors, maps and threads (leaking them hit a
        // 1,024-descriptor limit after ~95 trials).
        let crashed = tmp.path().join(format!("crashed-{trial}"));
        crash_image(&dir, &crashed, &image, &mut rng);
        drop(db);
        std::fs::remove_dir_all(&dir).unwrap();
        let found = complete_batches(&crashed);
        assert!(
            found == acked || found == acked + 1,
            "trial {trial}: {acked} acknowledged, {found} recovered"
        );
        extra += u64::from(found == acked + 1);
        std::fs::remove_dir_all(&crashed).unwrap();
    }
    fault::on_sync(None);
    eprintln!(
        "{trials} power cuts ({mid_commit} in the middle of a commit's writes): every acknowledged commit recovered; {extra} times the commit in flight was durable too"
    );
}

/// Commits of one event each go into the write-ahead log, and their bytes reach the data
/// files' disk blocks only at the next checkpoint (when the log is full: 1,024 such
/// commits). A cut anywhere, after one or two wraps of the log, must find every
/// acknowledged one. (No keys: the key index's growth would checkpoint too.)
#[test]
fn small_commits_survive_power_loss_across_log_wraps() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let images = record_durable_images();
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(13);
    let payload = |i: u64| vec![(i % 251) as u8; 3_000];
    for trial in 0..3u64 {
        let dir = tmp.path().join(format!("db-{trial}"));
        images.lock().unwrap().clear();
        let db = Engram::open(&dir, opts()).unwrap();
        let commits = 1_100 + rng.next_u64() % 1_400;
        for i in 0..commits {
            let v: Vec<f32> = (0..DIM).map(|d| (i + d as u64) as f32).collect();
            db.insert_episodes(&[EpisodeInput {
                agent: 1,
                timestamp: i as i64,
                embedding: &v,
                payload: &payload(i),
                key: None,
            }])
            .unwrap();
        }
        let image = images.lock().unwrap().clone();
        let crashed = tmp.path().join(format!("crashed-{trial}"));
        crash_image(&dir, &crashed, &image, &mut rng);
        drop(db); // after the cut, as above
        std::fs::remove_dir_all(&dir).unwrap();
        // The log wrapped: a full log made a commit write a record (the creation's is txn 0).
        let record_txn = |name: &str| {
            let b = std::fs::read(crashed.join(name)).unwrap();
            b.get(16..24)
                .map_or(0, |w| u64::from_le_bytes(w.try_into().unwrap()))
        };
        assert!(record_txn("commit.0").max(record_txn("commit.1")) >= 1_000);
        let db = Engram::open(&crashed, opts()).unwrap();
        let snap = db.begin_read().unwrap();
        snap.verify().expect("the database verifies");
        assert_eq!(snap.episode_count(), commits, "trial {trial}");
        for i in 0..commits {
            let e = snap.episode(i).unwrap();
            let e = e.unwrap_or_else(|| panic!("trial {trial}: commit {i} of {commits} lost"));
            assert_eq!(
                e.payload().unwrap(),
                &payload(i)[..],
                "trial {trial}: commit {i}"
            );
        }
        drop(db);
        std::fs::remove_dir_all(&crashed).unwrap();
    }
    fault::on_sync(None);
}

/// Head stamps of committed nodes are synced only at checkpoints (every ~16k bindings), so
/// cuts after many binding commits must find every head either on disk (stamped before the
/// last checkpoint) or re-derived from the binding records after it.
#[test]
fn list_heads_survive_power_loss_across_checkpoints() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const PER_COMMIT: u64 = 5_000;
    let images = record_durable_images();
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(11);
    for trial in 0..6u64 {
        let dir = tmp.path().join(format!("db-{trial}"));
        images.lock().unwrap().clear();
        let db = Engram::open(&dir, opts()).unwrap();
        let mut tx = db.begin_write().unwrap();
        let concepts: Vec<u64> = (0..3)
            .map(|c| {
                tx.insert_concept(&ConceptInput {
                    centroid: &[c as f32 + 1.0; DIM],
                    label: "c",
                })
                .unwrap()
            })
            .collect();
        tx.commit().unwrap();
        // 4–7 commits: past the checkpoint after ~16k bindings, then a few after it.
        let commits = 4 + trial % 4;
        for b in 0..commits {
            let mut tx = db.begin_write().unwrap();
            for i in 0..PER_COMMIT {
                let v: Vec<f32> = (0..DIM).map(|d| (b + i + d as u64) as f32).collect();
                let e = tx
                    .insert_episode(&EpisodeInput {
                        agent: 1,
                        timestamp: (b * PER_COMMIT + i) as i64,
                        embedding: &v,
                        payload: b"",
                        key: None,
                    })
                    .unwrap();
                // Each concept is bound in every third commit only, so some heads last
                // moved before the checkpoint and some after it.
                tx.bind(e, concepts[(b % 3) as usize], 0.5).unwrap();
            }
            tx.commit().unwrap();
        }
        let image = images.lock().unwrap().clone();
        let crashed = tmp.path().join(format!("crashed-{trial}"));
        crash_image(&dir, &crashed, &image, &mut rng);
        drop(db); // after the cut, as above
        std::fs::remove_dir_all(&dir).unwrap();
        let db = Engram::open(&crashed, opts()).unwrap();
        let snap = db.begin_read().unwrap();
        snap.verify().expect("the database verifies");
        let bound = commits * PER_COMMIT;
        assert_eq!(db.stats().bindings, bound, "trial {trial}");
        for (k, &c) in concepts.iter().enumerate() {
            let commits_binding = (0..commits).filter(|b| b % 3 == k as u64).count();
            let fan = snap.concept_fan_count(c).unwrap();
            assert_eq!(fan, commits_binding * PER_COMMIT as usize, "trial {trial}");
        }
        drop(db);
        std::fs::remove_dir_all(&crashed).unwrap();
    }
    fault::on_sync(None);
}
