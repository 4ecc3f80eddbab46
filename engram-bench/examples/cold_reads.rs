//! Point reads whose pages are not in the page cache, against one `pread` of the same
//! bytes: `episode(id)` of 768-d episodes (3,104-byte slots, most straddling two pages) and
//! `payload()` of payloads spanning several pages. Each read is the first of its record
//! through a fresh read-only handle, after the file was dropped from the page cache; also the
//! same first read with the file in the page cache. Medians of 100 reads, three rounds.
//! `cargo run --release -p engram-bench --example cold_reads [KiB…]` (default 8 16 64 200)
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use engram_bench::lookup::drop_file_from_page_cache;
use engram_core::{Engram, Episode, EpisodeInput, Options};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn file_of(dir: &Path, kind: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == kind))
        .unwrap()
}

fn read_only(dir: &Path) -> Engram {
    let opts = Options {
        read_only: true,
        ..Options::default()
    };
    Engram::open(dir, opts).unwrap()
}

/// The database in `dir` of `n` episodes of `dim` floats and `payload` bytes each.
fn create(dir: &Path, n: u64, dim: usize, payload: usize) {
    let _ = std::fs::remove_dir_all(dir);
    let opts = Options {
        dimension: Some(dim),
        ..Options::default()
    };
    let db = Engram::open(dir, opts).unwrap();
    let mut tx = db.begin_write().unwrap();
    for i in 0..n {
        let embedding: Vec<f32> = (0..dim)
            .map(|j| ((i as usize * 7 + j) % 13) as f32)
            .collect();
        let payload: Vec<u8> = (0..payload)
            .map(|j| ((j as u64 * 7 + i) % 251) as u8)
            .collect();
        let ep = EpisodeInput {
            agent: 0,
            timestamp: i as i64,
            embedding: &embedding,
            payload: &payload,
            key: None,
        };
        tx.insert_episode(&ep).unwrap();
    }
    tx.commit().unwrap();
}

/// Median µs per `read` of every 7th episode from `round` on (so that no neighbour is read
/// ahead by chance), the first of each through a fresh handle, with `file` dropped from the
/// page cache first when `cold`.
fn first_reads(
    dir: &Path,
    file: &Path,
    cold: bool,
    round: u64,
    read: impl Fn(&Episode<'_>) -> f32,
) -> f64 {
    let db = read_only(dir);
    let snap = db.begin_read().unwrap();
    // Table entries (and, for payloads, records) are read before the file is dropped: what
    // is timed is the first read of the pages the record or payload lies in.
    snap.episode_ids().unwrap();
    let ids: Vec<u64> = (round..snap.episode_count()).step_by(7).take(100).collect();
    let eps: Vec<Episode<'_>> = match file.extension().is_some_and(|x| x == "heap") {
        true => ids
            .iter()
            .map(|&id| snap.episode(id).unwrap().unwrap())
            .collect(),
        false => Vec::new(),
    };
    if cold {
        drop_file_from_page_cache(file).unwrap();
    }
    let mut times = Vec::new();
    for (i, &id) in ids.iter().enumerate() {
        let t = Instant::now();
        let x = match eps.get(i) {
            Some(ep) => read(ep),
            None => read(&snap.episode(id).unwrap().unwrap()),
        };
        std::hint::black_box(x);
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    median(times)
}

/// Where the records or payloads `at` points to of the episodes [`first_reads`] reads lie in
/// their file, as offsets from episode 0's (the first in its file): a `pread` of each one's
/// bytes there reads the same pages.
fn offsets(dir: &Path, round: u64, n: u64, at: impl Fn(&Episode<'_>) -> *const u8) -> Vec<u64> {
    let db = read_only(dir);
    let snap = db.begin_read().unwrap();
    let at = |id| at(&snap.episode(id).unwrap().unwrap()) as u64;
    (round..n)
        .step_by(7)
        .take(100)
        .map(|id| at(id) - at(0))
        .collect()
}

/// Median µs per `pread` of `len` bytes at each of `offsets`, the file dropped from the page
/// cache first.
fn preads(file: &Path, offsets: &[u64], len: usize) -> f64 {
    drop_file_from_page_cache(file).unwrap();
    let f = std::fs::File::open(file).unwrap();
    let mut buf = vec![0u8; len];
    let mut times = Vec::new();
    for &off in offsets {
        let t = Instant::now();
        f.read_exact_at(&mut buf, off).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    median(times)
}

fn report(what: &str, rounds: Vec<(f64, f64, f64)>) {
    let pick = |f: fn(&(f64, f64, f64)) -> f64| median(rounds.iter().map(f).collect());
    println!(
        "{what}: cold {:.0} µs (one pread of it {:.0} µs); first read with the file in memory {:.2} µs",
        pick(|r| r.0),
        pick(|r| r.1),
        pick(|r| r.2)
    );
}

fn main() {
    let sizes: Vec<usize> = match std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<Vec<usize>, _>>()
    {
        Ok(v) if !v.is_empty() => v,
        Ok(_) => vec![8, 16, 64, 200],
        Err(e) => panic!("sizes in KiB: {e}"),
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/engram-bench/cold-reads");

    let dir = root.join("episodes");
    create(&dir, 20_000, 768, 16);
    let eps = file_of(&dir, "eps");
    let sum = |e: &Episode<'_>| e.embedding().iter().sum::<f32>();
    let rounds = (0..3)
        .map(|r| {
            let offsets = offsets(&dir, r, 20_000, |e| e.embedding().as_ptr().cast());
            (
                first_reads(&dir, &eps, true, r, sum),
                preads(&eps, &offsets, 3104),
                first_reads(&dir, &eps, false, r, sum),
            )
        })
        .collect();
    report("episode(id), 768-d", rounds);

    for kib in sizes {
        let dir = root.join(format!("payloads-{kib}k"));
        let n = (1000u64).min((256 << 10) / kib as u64).max(700);
        create(&dir, n, 8, kib << 10);
        let heap = file_of(&dir, "heap");
        let len = |e: &Episode<'_>| e.payload().unwrap().len() as f32;
        let rounds = (0..3)
            .map(|r| {
                let offsets = offsets(&dir, r, n, |e| e.payload().unwrap().as_ptr());
                (
                    first_reads(&dir, &heap, true, r, len),
                    preads(&heap, &offsets, kib << 10),
                    first_reads(&dir, &heap, false, r, len),
                )
            })
            .collect();
        report(&format!("payload() of {kib} KiB"), rounds);
    }
}
