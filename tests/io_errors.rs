//! A write that fails with an I/O error (here: the file-size limit, which fails writes like a
//! full disk) returns an error, poisons the handle, and loses nothing that was committed.

use std::process::Command;

use engram_core::{Engram, EpisodeInput, Error, Options};

const DIM: usize = 256;

fn opts() -> Options {
    Options {
        dimension: Some(DIM),
        ..Options::default()
    }
}

fn insert_batch(db: &Engram, batch: u64) -> engram_core::Result<()> {
    let mut tx = db.begin_write()?;
    for i in 0..100u64 {
        let v = vec![(batch * 100 + i) as f32; DIM];
        tx.insert_episode(&EpisodeInput {
            agent: batch,
            timestamp: i as i64,
            embedding: &v,
            payload: &batch.to_le_bytes(),
            key: None,
        })?;
    }
    tx.commit()
}

/// Runs in a child with RLIMIT_FSIZE lowered; prints how many batches committed.
#[test]
fn full_disk_child() {
    let Ok(dir) = std::env::var("ENGRAM_FSIZE_CHILD") else {
        return;
    };
    // SAFETY: plain libc calls in a single-threaded child before any file work: ignore
    // SIGXFSZ so an over-limit write fails with EFBIG instead of killing the process.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let limit = libc::rlimit {
            rlim_cur: 6 << 20,
            rlim_max: 6 << 20,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
    let db = Engram::open(&dir, opts()).unwrap();
    let mut committed = 0;
    let err = loop {
        match insert_batch(&db, committed) {
            Ok(()) => committed += 1,
            Err(e) => break e,
        }
        assert!(committed < 10_000, "the limit never hit");
    };
    assert!(
        matches!(err, Error::Io { .. }),
        "expected an I/O error, got {err}"
    );
    // The handle refuses further writes rather than guess what reached the disk.
    assert!(matches!(db.begin_write(), Err(Error::Poisoned)));
    assert!(matches!(db.compact(), Err(Error::Poisoned)));
    // Reads of committed data still work.
    assert_eq!(db.begin_read().unwrap().episode_count(), committed * 100);
    println!("COMMITTED {committed}");
}

#[test]
fn an_io_error_poisons_the_handle_and_loses_no_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    drop(Engram::open(&dir, opts()).unwrap());
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "full_disk_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ENGRAM_FSIZE_CHILD", &dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed: u64 = stdout
        .lines()
        .find_map(|l| l.split("COMMITTED ").nth(1))
        .unwrap_or_else(|| panic!("child did not report: {stdout}"))
        .trim()
        .parse()
        .unwrap();
    assert!(committed > 0);
    // Reopened without the limit: exactly the committed batches, intact; writes work again.
    let db = Engram::open(&dir, opts()).unwrap();
    let snap = db.begin_read().unwrap();
    assert_eq!(snap.episode_count(), committed * 100);
    for id in [0, committed * 100 - 1] {
        let ep = snap.episode(id).unwrap().unwrap();
        assert_eq!(ep.embedding(), vec![id as f32; DIM].as_slice());
    }
    insert_batch(&db, committed).unwrap();
}
