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

use engram_core::fault::{self, Fault, IoOp};
use engram_core::{ConceptInput, Engram, EpisodeInput, Options};
use engram_fixtures::Rng;

const DIM: usize = 16;
const PER_BATCH: u64 = 20;
const PAGE: usize = 4096;

fn opts() -> Options {
    Options {
        dimension: Some(DIM),
        ..Options::default()
    }
}

fn key(batch: u64, i: u64) -> String {
    format!("b{batch}-{i}")
}

fn batch(db: &Engram, b: u64) -> engram_core::Result<()> {
    let mut tx = db.begin_write()?;
    let c = tx.insert_concept(&ConceptInput {
        centroid: &[b as f32 + 1.0; DIM],
        label: "c",
    })?;
    for i in 0..PER_BATCH {
        let v: Vec<f32> = (0..DIM).map(|d| (b * 100 + i + d as u64) as f32).collect();
        let k = key(b, i);
        let e = tx.insert_episode(&EpisodeInput {
            agent: b,
            timestamp: i as i64,
            embedding: &v,
            payload: k.as_bytes(),
            key: Some(k.as_bytes()),
        })?;
        tx.bind(e, c, 0.5)?;
    }
    if b >= 2
        && let Some(id) = db
            .begin_read()?
            .episode_by_key(key(b - 2, 0).as_bytes())?
            .map(|e| e.id())
    {
        tx.delete_episode(id)?;
    }
    tx.commit()?;
    if b % 4 == 3 {
        db.compact()?;
    }
    Ok(())
}

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

fn complete_batches(dir: &Path) -> u64 {
    let db = Engram::open(dir, opts()).expect("reopen after power loss");
    let snap = db.begin_read().unwrap();
    snap.verify().expect("the recovered database verifies");
    let mut n = 0;
    while snap.episode_by_key(key(n, 1).as_bytes()).unwrap().is_some() {
        for i in 1..PER_BATCH {
            assert!(
                snap.episode_by_key(key(n, i).as_bytes()).unwrap().is_some(),
                "batch {n} partial"
            );
        }
        n += 1;
    }
    for i in 0..PER_BATCH {
        assert!(
            snap.episode_by_key(key(n, i).as_bytes()).unwrap().is_none(),
            "batch {n} partly visible"
        );
    }
    n
}

#[test]
fn recovery_survives_dropped_and_torn_unsynced_pages() {
    let images: Arc<Mutex<HashMap<PathBuf, Vec<u8>>>> = Arc::default();
    let sink = images.clone();
    fault::on_sync(Some(Box::new(move |p: &Path| {
        if let Ok(bytes) = std::fs::read(p) {
            sink.lock().unwrap().insert(p.to_path_buf(), bytes);
        }
    })));
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(7);
    let trials: u64 = std::env::var("ENGRAM_POWER_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let (mut mid_commit, mut extra) = (0, 0);
    for trial in 0..trials {
        let dir = tmp.path().join(format!("db-{trial}"));
        images.lock().unwrap().clear();
        let db = Engram::open(&dir, opts()).unwrap();
        let batches = 1 + rng.next_u64() % 8;
        // Half the trials cut the power in the middle of the last batch's writes.
        let cut_mid = rng.next_u64().is_multiple_of(2);
        let mut acked = 0;
        for b in 0..batches {
            if cut_mid && b == batches - 1 {
                fault::arm(IoOp::Write, 1 + rng.next_u64() % 12, Fault::ShortWrite);
            }
            match batch(&db, b) {
                Ok(()) => acked = b + 1,
                Err(_) => break,
            }
        }
        let (_, fired) = fault::disarm();
        mid_commit += u64::from(fired.is_some());
        let image = images.lock().unwrap().clone();
        // The power fails with the process still running: no destructor gets to sync.
        std::mem::forget(db);
        let crashed = tmp.path().join(format!("crashed-{trial}"));
        crash_image(&dir, &crashed, &image, &mut rng);
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
