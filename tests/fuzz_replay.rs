//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the same harness the
//! cargo-fuzz targets run, on stable and in every test run: no input may panic.
//! `cargo +nightly fuzz run <target>` (in `fuzz/`) searches for new ones.

#[allow(dead_code)]
#[path = "harness/files.rs"]
mod files;
#[allow(dead_code)]
#[path = "harness/model.rs"]
mod model;

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut inputs: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no corpus for {target}");
    inputs
}

/// Runs every input of `target`'s corpus, on a few threads (the inputs wait on fsyncs more
/// than they compute).
fn replay(target: &str, run: impl Fn(&[u8]) + Sync) {
    let inputs = corpus(target);
    let chunk = inputs.len().div_ceil(4);
    std::thread::scope(|s| {
        for part in inputs.chunks(chunk) {
            let run = &run;
            s.spawn(move || {
                for (path, bytes) in part {
                    let caught =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(bytes)));
                    assert!(caught.is_ok(), "{} panicked", path.display());
                }
            });
        }
    });
    eprintln!("{target}: {} inputs replayed", inputs.len());
}

#[test]
fn open_dir_corpus() {
    replay("open_dir", files::open_dir);
}

#[test]
fn records_corpus() {
    replay("records", files::records);
}

#[test]
fn ops_corpus() {
    replay("ops", |b| model::run(model::steps_from_bytes(b)));
}
