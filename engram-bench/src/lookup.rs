//! Concept lookup by id, the way users benchmark it: a database of `n` concepts, streams
//! of ids, and the three states a lookup can find its concept in (cached, warm, cold).

use std::fs::File;
use std::path::Path;
use std::time::Instant;

use engram_core::{ConceptInput, Engram, Options, ReadTxn};
use engram_fixtures::Matrix;
use hdrhistogram::Histogram;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Writes `n` concepts (centroids from the real fixture rows, cycled) in commits of 10,000.
pub fn build_concepts(dir: &Path, n: usize, real: &Matrix) -> Result<(), BoxError> {
    let _ = std::fs::remove_dir_all(dir);
    let db = Engram::open(dir, Options::default())?;
    let mut id = 0;
    while id < n {
        let mut tx = db.begin_write()?;
        for _ in 0..10_000.min(n - id) {
            let label = format!("concept-{id}");
            tx.insert_concept(&ConceptInput {
                centroid: real.row(id % real.rows),
                label: &label,
            })?;
            id += 1;
        }
        tx.commit()?;
    }
    Ok(())
}

/// Opens a benchmark database with a concept cache of `cache` entries.
pub fn open(dir: &Path, cache: usize) -> Result<Engram, BoxError> {
    Ok(Engram::open(
        dir,
        Options {
            concept_cache_entries: cache,
            ..Options::default()
        },
    )?)
}

/// What one timed lookup does after finding the concept: read every float of the centroid
/// (eight independent sums, so the read and not a chain of adds is what is timed).
pub fn read_fully(v: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for c in v.chunks_exact(8) {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + v.chunks_exact(8).remainder().iter().sum::<f32>()
}

/// [`read_fully`] over little-endian floats as stored on disk (what peers hand back as bytes).
pub fn read_fully_le(b: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    for c in b.chunks_exact(32) {
        for (a, x) in acc.iter_mut().zip(c.chunks_exact(4)) {
            *a += f32::from_le_bytes([x[0], x[1], x[2], x[3]]);
        }
    }
    acc.iter().sum()
}

/// The cached path: the handle's LRU (a miss decodes from the map and fills it).
pub fn cached(snap: &ReadTxn, id: u64) -> f32 {
    let c = snap.lookup_concept(id).expect("lookup").expect("exists");
    read_fully(c.centroid())
}

/// The mapped path: the zero-copy view of the record in the file, no cache.
pub fn mapped(snap: &ReadTxn, id: u64) -> f32 {
    let c = snap.concept(id).expect("lookup").expect("exists");
    read_fully(c.centroid())
}

/// Times `f` on every id of `ids`, one call at a time, into a histogram of nanoseconds.
pub fn time_each(ids: &[u64], mut f: impl FnMut(u64) -> f32) -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid bounds");
    let mut sink = 0f32;
    for &id in ids {
        let t = Instant::now();
        sink += f(id);
        h.saturating_record(t.elapsed().as_nanos() as u64);
    }
    std::hint::black_box(sink);
    h
}

/// Runs `f` over `ids` split across `threads` threads, each timing its own calls, after an
/// untimed pass over the same ids when `warm_up` is set. Returns the merged histogram and the
/// wall time of the timed pass (all threads), in seconds.
pub fn time_threads(
    ids: &[u64],
    threads: usize,
    warm_up: bool,
    f: impl Fn(u64) -> f32 + Sync,
) -> (Histogram<u64>, f64) {
    let chunk = ids.len().div_ceil(threads);
    let barrier = std::sync::Barrier::new(threads);
    let (hists, secs): (Vec<_>, Vec<_>) = std::thread::scope(|s| {
        let handles: Vec<_> = ids
            .chunks(chunk)
            .map(|part| {
                let (f, barrier) = (&f, &barrier);
                s.spawn(move || {
                    if warm_up {
                        std::hint::black_box(part.iter().map(|&id| f(id)).sum::<f32>());
                    }
                    barrier.wait();
                    let t = Instant::now();
                    let h = time_each(part, f);
                    (h, t.elapsed().as_secs_f64())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("benchmark thread"))
            .unzip()
    });
    let mut all = Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid bounds");
    for h in &hists {
        all.add(h).expect("same bounds");
    }
    (all, secs.into_iter().fold(0.0, f64::max))
}

/// Lookups per second of `f` over `ids` on `threads` threads, untimed per call (the
/// throughput a caller sees, without the clock reads).
pub fn throughput(ids: &[u64], threads: usize, f: impl Fn(u64) -> f32 + Sync) -> f64 {
    let chunk = ids.len().div_ceil(threads);
    let barrier = std::sync::Barrier::new(threads + 1);
    let t = std::thread::scope(|s| {
        for part in ids.chunks(chunk) {
            let (f, barrier) = (&f, &barrier);
            s.spawn(move || {
                barrier.wait();
                std::hint::black_box(part.iter().map(|&id| f(id)).sum::<f32>());
            });
        }
        barrier.wait();
        Instant::now()
    });
    ids.len() as f64 / t.elapsed().as_secs_f64()
}

/// Drops every file of the database directory from the page cache (written back first), so
/// the next read of any page goes to the disk.
pub fn drop_from_page_cache(dir: &Path) -> Result<(), BoxError> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() {
            drop_file_from_page_cache(&path)?;
        }
    }
    Ok(())
}

/// Drops one file from the page cache (written back first). Pages a live map has mapped
/// stay: drop a file before mapping it, or before the map's first read of the pages.
pub fn drop_file_from_page_cache(path: &Path) -> Result<(), BoxError> {
    let f = File::open(path)?;
    f.sync_data()?;
    drop_file(&f)
}

#[cfg(target_os = "linux")]
fn drop_file(f: &File) -> Result<(), BoxError> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open descriptor; the call only changes page cache residency.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc).into());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn drop_file(_: &File) -> Result<(), BoxError> {
    Err("dropping pages from the page cache needs posix_fadvise (Linux)".into())
}

/// The `.con` file of a benchmark database.
fn concept_file(dir: &Path) -> Result<std::path::PathBuf, BoxError> {
    Ok(std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "con"))
        .ok_or("no .con file")?)
}

/// The floor of a warm lookup: each id's centroid read straight from a plain map of the
/// `.con` file at `id × 4096` (no table, no checks, no version chain), page cache hot.
pub fn warm_map_floor(dir: &Path, ids: &[u64], dim: usize) -> Result<Histogram<u64>, BoxError> {
    let f = File::open(concept_file(dir)?)?;
    // SAFETY: the benchmark's own closed database; nothing writes the file while mapped.
    let map = unsafe { memmap2::Mmap::map(&f)? };
    let _ = map.advise(memmap2::Advice::Random);
    let read = |id: u64| {
        let at = id as usize * 4096;
        read_fully_le(&map[at..at + dim * 4])
    };
    std::hint::black_box(ids.iter().map(|&id| read(id)).sum::<f32>());
    Ok(time_each(ids, read))
}

/// Starts fetching every cache line of `bytes` at once.
fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for line in bytes.chunks(64) {
        // SAFETY: prefetch never faults and reads nothing architecturally; the address is
        // inside the live slice.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr().cast(),
            )
        };
    }
}

/// The floor of a cache hit: the same centroids (row `id % rows` of `real`, as
/// [`build_concepts`] stores them) read from one flat in-memory array, no lookup at all,
/// every line requested at once as a cache hit does, on 4 KiB pages or, with `huge`,
/// transparent huge pages (`MADV_HUGEPAGE`). Returns the histogram and the seconds of the
/// timed pass.
pub fn heap_floor(
    ids: &[u64],
    n: usize,
    real: &Matrix,
    huge: bool,
) -> Result<(Histogram<u64>, f64), BoxError> {
    let dim = real.dim;
    let mut map = memmap2::MmapMut::map_anon(n * dim * 4)?;
    if huge {
        map.advise(memmap2::Advice::HugePage)?;
    }
    for (id, row) in map.chunks_exact_mut(dim * 4).enumerate() {
        for (b, x) in row.chunks_exact_mut(4).zip(real.row(id % real.rows)) {
            b.copy_from_slice(&x.to_le_bytes());
        }
    }
    // As the cache's hit does, every line of the centroid is requested before it is read.
    let read = |id: u64| {
        let at = id as usize * dim * 4;
        let row = &map[at..at + dim * 4];
        prefetch(row);
        read_fully_le(row)
    };
    std::hint::black_box(ids.iter().map(|&id| read(id)).sum::<f32>());
    let t = Instant::now();
    let h = time_each(ids, read);
    Ok((h, t.elapsed().as_secs_f64()))
}

/// The floor of a cold lookup: one `pread` of each id's 4 KiB concept page straight from the
/// `.con` file (no table, no checks), after the same page cache drop.
pub fn cold_pread_floor(dir: &Path, ids: &[u64]) -> Result<Histogram<u64>, BoxError> {
    use std::os::unix::fs::FileExt;
    drop_from_page_cache(dir)?;
    let f = File::open(concept_file(dir)?)?;
    let mut buf = vec![0u8; 4096];
    let mut h = Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid bounds");
    for &id in ids {
        let t = Instant::now();
        f.read_exact_at(&mut buf, id * 4096)?;
        h.saturating_record(t.elapsed().as_nanos() as u64);
    }
    Ok(h)
}

/// Pages of the files under `dir` resident in the page cache (mincore over a fresh map).
pub fn resident_pages(dir: &Path) -> Result<u64, BoxError> {
    let mut pages = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let len = std::fs::metadata(&path)?.len() as usize;
        if !path.is_file() || len == 0 {
            continue;
        }
        let f = File::open(&path)?;
        // SAFETY: read-only map of a file nobody truncates during the benchmark; only its
        // residency is queried, its bytes are never read.
        let map = unsafe { memmap2::Mmap::map(&f)? };
        let mut vec = vec![0u8; len.div_ceil(4096)];
        // SAFETY: `vec` holds one byte per page of the mapping, as mincore requires.
        let rc = unsafe { libc::mincore(map.as_ptr() as *mut _, len, vec.as_mut_ptr()) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        pages += vec.iter().filter(|b| *b & 1 == 1).count() as u64;
    }
    Ok(pages)
}
