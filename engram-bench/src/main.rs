//! `engram-bench`: loads the shipped fixture into a database directory, then measures the
//! store against redb and LMDB (heed) in one run, with the disk's own bandwidth beside them.
//! Prints a table and writes `target/engram-bench/report.json`.
//!
//! Usage: `engram-bench [--jobs concepts,dual,store,writers,kernels,search,quant,recall,cluster,soak] [--concept-sizes A,B,C]
//! [--episodes N] [--open-sizes A,B] [--dir PATH]`

use std::fs::File;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use engram_bench::lookup::{read_fully, read_fully_le};
use engram_core::{Engram, EpisodeInput, Options, WriteTxn};
use engram_fixtures::{Matrix, Rng, read_npy_f32, real_sample_dir};
use redb::ReadableDatabase;
use serde_json::{Value, json};

const COMMIT: usize = 1_000;
const PAYLOAD: usize = 16;

struct Args {
    episodes: usize,
    open_sizes: Vec<usize>,
    concept_sizes: Vec<usize>,
    jobs: Vec<String>,
    dir: PathBuf,
    /// Reports to merge and plot instead of running jobs.
    plot: Vec<PathBuf>,
}

const JOBS: [&str; 10] = [
    "concepts", "dual", "store", "writers", "kernels", "search", "quant", "recall", "cluster",
    "soak",
];
/// Jobs run only when named: minutes of k-means beside faiss, forming 1,000 concepts, and a
/// million-operation soak.
const OPT_IN: [&str; 3] = ["cluster", "recall", "soak"];

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        episodes: 100_000,
        open_sizes: vec![100_000],
        concept_sizes: vec![10_000, 100_000, 1_000_000],
        jobs: JOBS
            .iter()
            .filter(|j| !OPT_IN.contains(j))
            .map(|j| j.to_string())
            .collect(),
        dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/engram-bench"),
        plot: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--episodes" => {
                a.episodes = value()?.parse().map_err(|e| format!("--episodes: {e}"))?
            }
            "--open-sizes" => {
                a.open_sizes = value()?
                    .split(',')
                    .map(|s| s.parse().map_err(|e| format!("--open-sizes: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--concept-sizes" => {
                a.concept_sizes = value()?
                    .split(',')
                    .map(|s| s.parse().map_err(|e| format!("--concept-sizes: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--jobs" => {
                a.jobs = value()?.split(',').map(str::to_string).collect();
                if let Some(j) = a.jobs.iter().find(|j| !JOBS.contains(&j.as_str())) {
                    return Err(format!("unknown job {j}; jobs are {}", JOBS.join(",")));
                }
            }
            "--dir" => a.dir = PathBuf::from(value()?),
            "--plot" => a.plot = value()?.split(',').map(PathBuf::from).collect(),
            "-h" | "--help" => {
                println!(
                    "engram-bench [--jobs {}] [--concept-sizes A,B,C] [--episodes N] [--open-sizes A,B] [--dir PATH]\n       engram-bench --plot REPORT.json[,REPORT.json…] [--dir PATH]   (plots of saved reports, merged)",
                    JOBS.join(",")
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("engram-bench: {e}");
        std::process::exit(2)
    });
    if let Err(e) = run(&args) {
        eprintln!("engram-bench: {e}");
        std::process::exit(1);
    }
}

mod cluster;
mod concept;
mod dual;
mod heap;
mod plots;
mod quant;
mod recall;
mod search;
mod soak;
mod writers;

#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

type BoxError = Box<dyn std::error::Error>;

fn run(args: &Args) -> Result<(), BoxError> {
    std::fs::create_dir_all(&args.dir)?;
    if !args.plot.is_empty() {
        let mut merged = serde_json::Map::new();
        for p in &args.plot {
            if let Value::Object(m) = serde_json::from_slice(&std::fs::read(p)?)? {
                merged.extend(m);
            }
        }
        for p in plots::write_all(&Value::Object(merged), &args.dir.join("plots"))? {
            println!("plot written to {}", p.display());
        }
        return Ok(());
    }
    let real = read_npy_f32(&real_sample_dir().join("vectors.npy"))?;
    let mut report = serde_json::Map::new();
    println!("engram-bench on {} ({} cores)", host(), cores());

    let job = |name: &str| args.jobs.iter().any(|j| j == name);
    fixture_job(args, &real, &mut report)?;
    if job("concepts") {
        concept::concept_job(&args.dir, &args.concept_sizes, &real, &mut report)
            .map_err(|e| e.to_string())?;
    }
    if job("dual") {
        dual::dual_job(&args.dir, &real, args.episodes, &mut report).map_err(|e| e.to_string())?;
    }
    if job("store") {
        store_job(args, &real, &mut report)?;
    }
    if job("writers") {
        writers::writers_job(&args.dir, &real, &mut report)?;
    }
    if job("kernels") {
        search::kernels_job(&mut report)?;
    }
    if job("search") {
        search::search_job(&args.dir, &mut report)?;
    }
    if job("quant") {
        quant::quant_job(&args.dir, &mut report)?;
    }
    if job("recall") {
        recall::recall_job(&args.dir, &mut report)?;
    }
    if job("soak") {
        soak::soak_job(&args.dir, &mut report)?;
    }
    if job("cluster") {
        cluster::cluster_job(&args.dir, &real, &mut report)?;
    }

    let out = args.dir.join("report.json");
    let report = Value::Object(report);
    std::fs::write(&out, serde_json::to_string_pretty(&report)?)?;
    println!("\nreport written to {}", out.display());
    for p in plots::write_all(&report, &args.dir.join("plots"))? {
        println!("plot written to {}", p.display());
    }
    Ok(())
}

/// The shipped fixture loaded into a database directory, and read back.
fn fixture_job(
    args: &Args,
    real: &Matrix,
    report: &mut serde_json::Map<String, Value>,
) -> Result<(), BoxError> {
    let dir = args.dir.join("fixture-db");
    let _ = std::fs::remove_dir_all(&dir);
    let texts = std::fs::read_to_string(real_sample_dir().join("texts.tsv"))?;
    let t = Instant::now();
    let db = Engram::open(
        &dir,
        Options {
            model: Some("all-mpnet-base-v2".into()),
            ..Options::default()
        },
    )?;
    let mut tx = db.begin_write()?;
    for (i, line) in texts.lines().enumerate().take(real.rows) {
        let text = line.split_once('\t').map_or(line, |(_, t)| t);
        tx.insert_episode(&EpisodeInput {
            agent: 0,
            timestamp: i as i64,
            embedding: real.row(i),
            payload: text.as_bytes(),
            key: Some(format!("debian-desc-{i}").as_bytes()),
        })?;
    }
    tx.commit()?;
    let load_ms = ms(t);
    let snap = db.begin_read()?;
    let lat = sample_gets(real.rows, 20_000, |id| {
        let ep = snap.episode(id).unwrap().unwrap();
        read_fully(ep.embedding()) + ep.payload().unwrap().len() as f32
    });
    println!(
        "\nfixture: {} real 768-d embeddings loaded into {} in {load_ms:.0} ms; episode get p50 {} ns, p99 {} ns",
        real.rows,
        dir.display(),
        lat.p(0.5),
        lat.p(0.99)
    );
    report.insert(
        "fixture".into(),
        json!({ "episodes": real.rows, "load_ms": load_ms, "get_p50_ns": lat.p(0.5) }),
    );
    Ok(())
}

fn record(real: &Matrix, id: usize) -> (Vec<f32>, [u8; PAYLOAD]) {
    let mut payload = [0u8; PAYLOAD];
    payload[..8].copy_from_slice(&(id as u64).to_le_bytes());
    (real.row(id % real.rows).to_vec(), payload)
}

/// The same 3,104-byte value for redb and LMDB: embedding, agent, timestamp, payload.
fn value_bytes(real: &Matrix, id: usize) -> Vec<u8> {
    let (v, payload) = record(real, id);
    let mut b = Vec::with_capacity(3_104);
    for x in &v {
        b.extend_from_slice(&x.to_le_bytes());
    }
    b.extend_from_slice(&7u64.to_le_bytes());
    b.extend_from_slice(&(id as i64).to_le_bytes());
    b.extend_from_slice(&payload);
    b
}

fn engram_ingest(dir: &Path, real: &Matrix, n: usize) -> Result<f64, BoxError> {
    let _ = std::fs::remove_dir_all(dir);
    settle();
    let db = Engram::open(dir, Options::default())?;
    let t = Instant::now();
    for start in (0..n).step_by(COMMIT) {
        let mut tx = db.begin_write()?;
        for id in start..(start + COMMIT).min(n) {
            insert_record(&mut tx, real, id)?;
        }
        tx.commit()?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

/// Stores record `id` as the episode every engram ingest of the report writes.
fn insert_record(tx: &mut WriteTxn<'_>, real: &Matrix, id: usize) -> engram_core::Result<u64> {
    insert_padded(tx, real, id, 0)
}

/// [`insert_record`] with `extra` zero bytes appended to the payload.
fn insert_padded(
    tx: &mut WriteTxn<'_>,
    real: &Matrix,
    id: usize,
    extra: usize,
) -> engram_core::Result<u64> {
    let (v, p) = record(real, id);
    let mut payload = p.to_vec();
    payload.resize(PAYLOAD + extra, 0);
    tx.insert_episode(&EpisodeInput {
        agent: 7,
        timestamp: id as i64,
        embedding: &v,
        payload: &payload,
        key: None,
    })
}

const REDB_TABLE: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("episodes");

fn redb_ingest(path: &Path, real: &Matrix, n: usize) -> Result<f64, BoxError> {
    let _ = std::fs::remove_file(path);
    settle();
    let db = redb::Database::create(path)?;
    let t = Instant::now();
    for start in (0..n).step_by(COMMIT) {
        let w = db.begin_write()?; // default durability: fsync at commit
        {
            let mut table = w.open_table(REDB_TABLE)?;
            for id in start..(start + COMMIT).min(n) {
                table.insert(id as u64, value_bytes(real, id).as_slice())?;
            }
        }
        w.commit()?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

type LmdbDb<'e> =
    heed::Database<'e, heed::types::U64<heed::byteorder::BigEndian>, heed::types::Bytes>;

/// A fresh LMDB environment sized for `n` records, and its one database.
fn lmdb_env(dir: &Path, n: usize) -> Result<(heed::Env, LmdbDb<'static>), BoxError> {
    std::fs::create_dir_all(dir)?;
    let size = ((n as u64 * 3_400) + (1 << 30)).next_multiple_of(1 << 20);
    // SAFETY: the environment directory is private to this benchmark and opened once at a
    // time, which is heed's requirement for `open`.
    let env = unsafe {
        heed::EnvOpenOptions::new()
            .map_size(size as usize)
            .max_dbs(1)
            .open(dir)?
    };
    let w = env.write_txn()?;
    let db: LmdbDb<'static> = env
        .create_databases_and_commit(w, |dbo, w| {
            dbo.create_database(w, None)
                .map(heed::CommitOrAbort::<_, ()>::Commit)
        })?
        .unwrap_commit();
    Ok((env, db))
}

/// Ingests into a fresh LMDB environment; with `gets`, also times random reads of it.
fn lmdb_ingest(
    dir: &Path,
    real: &Matrix,
    n: usize,
    gets: usize,
) -> Result<(f64, Option<Latencies>), BoxError> {
    let _ = std::fs::remove_dir_all(dir);
    settle();
    let (env, db) = lmdb_env(dir, n)?;
    let t = Instant::now();
    for start in (0..n).step_by(COMMIT) {
        let mut w = env.write_txn()?; // default flags: fsync at commit
        for id in start..(start + COMMIT).min(n) {
            db.put(&mut w, &(id as u64), &value_bytes(real, id))?;
        }
        w.commit()?;
    }
    let rps = n as f64 / t.elapsed().as_secs_f64();
    if gets == 0 {
        return Ok((rps, None));
    }
    warm(dir)?;
    let r = env.read_txn()?;
    let lat = sample_gets(n, gets, |id| {
        read_fully_le(&db.get(&r, &id).unwrap().unwrap()[..3_072])
    });
    Ok((rps, Some(lat)))
}

/// Gives every timed run the same start: the previous run's dirty pages written back (so no
/// engine pays for another's writeback) and, where permitted (root on Linux), the page cache
/// emptied (so no engine pays to evict another's gigabytes). Returns whether it was emptied.
fn settle() -> bool {
    let _ = std::process::Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "1").is_ok()
}

/// Reads every file under `path` once, so "warm" reads find their pages in the page cache.
fn warm(path: &Path) -> Result<(), BoxError> {
    let files: Vec<PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    let mut buf = vec![0u8; 1 << 20];
    for f in files {
        let mut file = File::open(f)?;
        while std::io::Read::read(&mut file, &mut buf)? > 0 {}
    }
    Ok(())
}

/// The disk's sequential write bandwidth when every commit-sized chunk is fsynced.
fn disk_bandwidth(dir: &Path, bytes: usize) -> Result<f64, BoxError> {
    settle();
    let path = dir.join("disk-bandwidth.tmp");
    let chunk = vec![0x5au8; COMMIT * 3_104];
    let mut f = File::create(&path)?;
    // Allocate and sync the blocks first, as engram's files are before each commit lands.
    f.write_all(&vec![0u8; bytes.next_multiple_of(chunk.len())])?;
    f.sync_all()?;
    f.seek(std::io::SeekFrom::Start(0))?;
    let t = Instant::now();
    let mut written = 0;
    while written < bytes {
        f.write_all(&chunk)?;
        f.sync_data()?;
        written += chunk.len();
    }
    let bw = written as f64 / t.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    Ok(bw)
}

fn store_job(
    args: &Args,
    real: &Matrix,
    report: &mut serde_json::Map<String, Value>,
) -> Result<(), BoxError> {
    let n = args.episodes;
    let clean = if settle() {
        "each timed run starts after sync and an emptied page cache"
    } else {
        "each timed run starts after sync; the page cache could not be emptied here"
    };
    println!(
        "\nstore: {n} episodes of 768-d f32 (3,104 B records), commits of {COMMIT}, each engine fsyncing at commit;\n  {clean}"
    );
    let mut rows = Vec::new();
    let (mut ours, mut redb_r, mut lmdb_r, mut disk) = (vec![], vec![], vec![], vec![]);
    for _ in 0..3 {
        disk.push(disk_bandwidth(&args.dir, (n * 3_104).min(512 << 20))?);
        ours.push(engram_ingest(&args.dir.join("ingest-engram"), real, n)?);
        redb_r.push(redb_ingest(&args.dir.join("ingest.redb"), real, n)?);
        lmdb_r.push(lmdb_ingest(&args.dir.join("ingest-lmdb"), real, n, 0)?.0);
    }
    let runs = |v: &[f64], unit: f64| {
        v.iter()
            .map(|x| format!("{:.0}", x / unit))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "  runs (medians below): engram [{}]k/s, redb [{}]k/s, LMDB [{}]k/s, disk [{}] MB/s",
        runs(&ours, 1e3),
        runs(&redb_r, 1e3),
        runs(&lmdb_r, 1e3),
        runs(&disk, 1e6)
    );
    let runs_json = json!({ "engram": ours.clone(), "redb": redb_r.clone(), "lmdb": lmdb_r.clone(), "disk_bps": disk.clone() });
    let (ours, redb_m, lmdb_m, disk) = (median(ours), median(redb_r), median(lmdb_r), median(disk));
    // Bytes engram writes per episode: its 3,200-byte slot, a 24-byte table entry and the
    // 16-byte payload.
    let ours_bw = ours * (3_200.0 + 24.0 + 16.0);
    rows.push(format!(
        "  ingest engram      {:>10.0} episodes/s  ({:.2} GB/s written)",
        ours,
        ours_bw / 1e9
    ));
    rows.push(format!(
        "  ingest redb 4      {:>10.0} records/s   (engram {:.2}x)",
        redb_m,
        ours / redb_m
    ));
    rows.push(format!(
        "  ingest LMDB (heed) {:>10.0} records/s   (engram {:.2}x)",
        lmdb_m,
        ours / lmdb_m
    ));
    rows.push(format!(
        "  disk seq. write with fsync per 3.1 MB: {:.2} GB/s; engram reaches {:.0} %",
        disk / 1e9,
        100.0 * ours_bw / disk
    ));
    for r in &rows {
        println!("{r}");
    }

    // Open time and resident memory, at each size (the largest reuses nothing).
    let mut open = serde_json::Map::new();
    let mut open_1m = None;
    for &size in &args.open_sizes {
        let dir = args.dir.join(format!("open-{size}"));
        if size == n {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::rename(args.dir.join("ingest-engram"), &dir)?;
        } else {
            engram_ingest(&dir, real, size)?;
        }
        let file_bytes: u64 = std::fs::read_dir(&dir)?
            .map(|e| {
                e.map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                    .unwrap_or(0)
            })
            .sum();
        let mut times = Vec::new();
        let mut rss = Vec::new();
        for _ in 0..7 {
            let before = resident_bytes();
            let t = Instant::now();
            let db = Engram::open(&dir, Options::default())?;
            let snap = db.begin_read()?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            rss.push(resident_bytes().saturating_sub(before) as f64);
            assert_eq!(snap.episode_count(), size as u64);
        }
        let (open_ms, rss) = (median(times), rss.into_iter().fold(0.0, f64::max));
        println!(
            "  open {size:>8} episodes: {open_ms:.3} ms (median of 7), resident at most +{:.0} KiB = {:.4} % of {:.0} MB of files",
            rss / 1024.0,
            100.0 * rss / file_bytes as f64,
            file_bytes as f64 / 1e6
        );
        open.insert(
            size.to_string(),
            json!({ "open_ms": open_ms, "resident_pct_of_files": 100.0 * rss / file_bytes as f64 }),
        );
        if size == 1_000_000 {
            open_1m = Some(open_ms);
        }
    }

    // Random gets, page cache warm, embedding summed: engram vs LMDB vs redb.
    let biggest = *args.open_sizes.iter().max().unwrap_or(&n);
    let db = Engram::open(args.dir.join(format!("open-{biggest}")), Options::default())?;
    warm(&args.dir.join(format!("open-{biggest}")))?;
    let snap = db.begin_read()?;
    // First read of each record by this handle: its checksum is verified on the way.
    let first_get = first_reads(biggest, 50_000, |id| {
        read_fully(snap.episode(id).unwrap().unwrap().embedding())
    });
    let ours_get = sample_gets(biggest, 200_000, |id| {
        read_fully(snap.episode(id).unwrap().unwrap().embedding())
    });
    let floor_get = raw_mmap_floor(&args.dir.join(format!("open-{biggest}")), biggest)?;
    let lmdb_get = lmdb_ingest(&args.dir.join("ingest-lmdb"), real, n, 200_000)?
        .1
        .ok_or("no lmdb gets")?;
    warm(&args.dir.join("ingest.redb"))?;
    let rdb = redb::Database::open(args.dir.join("ingest.redb"))?;
    let rt = rdb.begin_read()?;
    let table = rt.open_table(REDB_TABLE)?;
    let redb_get = sample_gets(n, 200_000, |id| {
        read_fully_le(&table.get(id).unwrap().unwrap().value()[..3_072])
    });
    for (name, l) in [
        ("raw mmap", &floor_get),
        ("engram first read", &first_get),
        ("engram", &ours_get),
        ("LMDB", &lmdb_get),
        ("redb", &redb_get),
    ] {
        println!(
            "  random get + sum, warm, {name:<7} p50 {:>5} ns  p99 {:>6} ns",
            l.p(0.5),
            l.p(0.99)
        );
    }
    report.insert(
        "store".into(),
        json!({
            "episodes": n,
            "page_cache_emptied_between_runs": clean.contains("emptied page"),
            "ingest_eps": ours,
            "ingest_runs": runs_json,
            "ingest_redb_rps": redb_m,
            "ingest_lmdb_rps": lmdb_m,
            "ingest_vs_redb": ours / redb_m,
            "ingest_vs_lmdb": ours / lmdb_m,
            "disk_write_bps": disk,
            "ingest_fraction_of_disk": ours_bw / disk,
            "open": open,
            "open_1m_ms": open_1m,
            "episode_get_p50_ns": ours_get.p(0.5),
            "episode_get_p99_ns": ours_get.p(0.99),
            "episode_first_get_p50_ns": first_get.p(0.5),
            "episode_first_get_p99_ns": first_get.p(0.99),
            "lmdb_get_p50_ns": lmdb_get.p(0.5),
            "raw_mmap_get_p50_ns": floor_get.p(0.5),
            "redb_get_p50_ns": redb_get.p(0.5),
        }),
    );
    let _ = std::fs::remove_file(args.dir.join("ingest.redb"));
    let _ = std::fs::remove_dir_all(args.dir.join("ingest-lmdb"));
    Ok(())
}

/// The floor: the same fixed-stride slots read straight from a map, no lookup, no checks.
fn raw_mmap_floor(dir: &Path, n: usize) -> Result<Latencies, BoxError> {
    let eps = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "eps"))
        .ok_or("no .eps file")?;
    let file = File::open(eps)?;
    // SAFETY: the benchmark's own closed database; nothing writes the file while mapped.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    let _ = map.advise(memmap2::Advice::Random);
    Ok(sample_gets(n, 200_000, |id| {
        let at = id as usize * 3_200;
        read_fully_le(&map[at..at + 3_072])
    }))
}

/// Bytes of the files in a database directory.
fn dir_bytes(dir: &Path) -> Result<u64, std::io::Error> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        total += e?.metadata()?.len();
    }
    Ok(total)
}

struct Latencies(Vec<u64>);

impl Latencies {
    fn p(&self, q: f64) -> u64 {
        self.0[((self.0.len() - 1) as f64 * q).round() as usize]
    }
}

/// Times `f` once on each of `samples` distinct random ids (page cache warm, but each id new
/// to the process).
fn first_reads(n: usize, samples: usize, mut f: impl FnMut(u64) -> f32) -> Latencies {
    let mut rng = Rng::new(7);
    let mut ids: Vec<u64> = (0..n as u64).collect();
    for i in (1..ids.len()).rev() {
        ids.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    let mut sink = 0f32;
    let mut out: Vec<u64> = ids
        .iter()
        .take(samples)
        .map(|&id| {
            let t = Instant::now();
            sink += f(id);
            t.elapsed().as_nanos() as u64
        })
        .collect();
    std::hint::black_box(sink);
    out.sort_unstable();
    Latencies(out)
}

/// Times `f` on uniformly random ids, one call at a time.
fn sample_gets(n: usize, samples: usize, mut f: impl FnMut(u64) -> f32) -> Latencies {
    let mut rng = Rng::new(42);
    let mut sink = 0f32;
    for _ in 0..samples / 10 {
        sink += f(rng.next_u64() % n as u64); // warm the page cache
    }
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let id = rng.next_u64() % n as u64;
        let t = Instant::now();
        sink += f(id);
        out.push(t.elapsed().as_nanos() as u64);
    }
    std::hint::black_box(sink);
    out.sort_unstable();
    Latencies(out)
}

/// A fresh database at `path` holding `rows` (of `dim` floats) as agent 1's episodes, row i
/// stamped with time i, in one commit.
fn episodes_db<'r>(
    path: &Path,
    dim: usize,
    rows: impl Iterator<Item = &'r [f32]>,
) -> Result<Engram, BoxError> {
    let _ = std::fs::remove_dir_all(path);
    let db = Engram::open(
        path,
        Options {
            dimension: Some(dim),
            ..Options::default()
        },
    )?;
    let mut tx = db.begin_write()?;
    for (i, row) in rows.enumerate() {
        tx.insert_episode(&EpisodeInput {
            agent: 1,
            timestamp: i as i64,
            embedding: row,
            payload: b"",
            key: None,
        })?;
    }
    tx.commit()?;
    Ok(db)
}

/// Runs `python3 engram-bench/SCRIPT ARGS…` and parses the JSON it prints; when it fails
/// (no faiss installed, say), the last line of its stderr is the error.
fn python_json(script: &str, args: &[&std::ffi::OsStr]) -> Result<Value, BoxError> {
    let out = std::process::Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(script))
        .args(args)
        .output()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(err
            .lines()
            .last()
            .unwrap_or("python3 failed")
            .to_string()
            .into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn host() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}
