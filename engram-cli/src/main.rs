//! `engram`: open a database directory to create, inspect (counts, episodes, concepts), load,
//! export, search, cluster, verify, compact, back up and benchmark it. Human-readable output by
//! default, `--json` for machines; long work shows a progress bar on a terminal and stays
//! quiet when piped.

/// `println!` that ends the process quietly when the reader went away (`engram … | head`).
macro_rules! say {
    ($($t:tt)*) => { $crate::out(format_args!($($t)*)) };
}

mod concepts;
mod episodes;
mod networks;
mod vectors;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand, ValueEnum};
use engram_core::cluster::{Count, Params, Phase};
use engram_core::quant::BlockKind;
use engram_core::{
    DEFAULT_CONCEPT_CACHE_ENTRIES, DEFAULT_STRENGTH_CACHE_ENTRIES, Engram, EpisodeInput,
    FORMAT_VERSION, Filter, FormationParams, Manifest, Metric, Options, Reclaimable,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    name = "engram",
    version,
    about = "engram database directories from the command line"
)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create an empty database.
    Init {
        dir: PathBuf,
        #[arg(long, default_value_t = 768)]
        dim: usize,
        #[arg(long, value_enum, default_value_t = MetricArg::Cosine)]
        metric: MetricArg,
        /// Name of the embedding model (checked by later opens that name one).
        #[arg(long)]
        model: Option<String>,
        /// Keep an int8 mirror of the embeddings for `search --int8`.
        #[arg(long)]
        int8: bool,
    },
    /// Counts, sizes per file, settings and the last commit.
    Stats { dir: PathBuf },
    /// Per agent: live episodes, their time span, payload bytes, how many expire, the
    /// agent's default time to live and its networks (reads every episode). With --agent
    /// and --ttl, first sets (or with `none` clears) that agent's default time to live, in
    /// one commit.
    Agents {
        dir: PathBuf,
        #[arg(long, requires = "ttl")]
        agent: Option<u64>,
        /// In the database clock's unit (Unix microseconds unless the writer set its own):
        /// how long that agent's episodes inserted from now on live, or `none`. Episodes
        /// already stored keep their expiry.
        #[arg(long, requires = "agent", allow_negative_numbers = true)]
        ttl: Option<String>,
    },
    /// Load vectors (.npy float32, .fvecs, or raw .f32 with --dim) as episodes, all in one
    /// transaction: a bad file commits nothing. In a fresh database row i gets id i.
    Import {
        dir: PathBuf,
        #[arg(long)]
        vectors: PathBuf,
        /// One payload per line (`id<TAB>text` or `text`), line i for row i.
        #[arg(long, conflicts_with = "episodes")]
        payloads: Option<PathBuf>,
        /// One JSON object per line for row i, as `export --episodes` writes: agent,
        /// timestamp, expires_at, key (or key_hex), payload (or payload_hex); all optional.
        #[arg(long)]
        episodes: Option<PathBuf>,
        /// Dimension of a raw .f32 file.
        #[arg(long)]
        dim: Option<usize>,
        #[arg(long, default_value_t = 0)]
        agent: u64,
        /// Write `old id<TAB>new id` for each --episodes line that gives an id, to a new
        /// file, synced before the commit: what `concepts import --id-map` translates
        /// bindings through.
        #[arg(long, requires = "episodes")]
        id_map: Option<PathBuf>,
    },
    /// Write the live episodes, ascending by id, to new files: their embeddings as vectors
    /// (.npy, .fvecs or .f32, by the extension) and, with --episodes, their other fields as
    /// JSON Lines, row for row; `import --vectors V --episodes E` loads them into another
    /// database (say one created with other settings).
    Export {
        dir: PathBuf,
        #[arg(long)]
        vectors: PathBuf,
        #[arg(long)]
        episodes: Option<PathBuf>,
        /// Only this agent's episodes.
        #[arg(long)]
        agent: Option<u64>,
    },
    /// Exact top-k of each query row.
    Search {
        dir: PathBuf,
        #[arg(long)]
        queries: PathBuf,
        #[arg(short, default_value_t = 10)]
        k: usize,
        /// Scan the int8 mirror, rescoring 10·k candidates in f32.
        #[arg(long)]
        int8: bool,
        /// Recall through the 8 nearest concepts' bound episodes (takes no filter).
        #[arg(long, conflicts_with_all = ["agent", "from", "until"])]
        via_concepts: bool,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Spreading-activation recall for each query row: seeds by similarity, then activation
    /// along bindings divided by fan^alpha; each result with its provenance.
    Recall {
        dir: PathBuf,
        #[arg(long)]
        queries: PathBuf,
        #[arg(short, default_value_t = 10)]
        k: usize,
        #[arg(long, default_value_t = 2)]
        hops: usize,
        #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
        fan_alpha: f32,
        /// Which episodes seed the recall (concepts then reach any).
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// One episode, by id or by its unique key: agent, timestamp, expiry, accesses, payload
    /// and the concepts it is bound to.
    Episode {
        dir: PathBuf,
        #[arg(required_unless_present = "key", conflicts_with = "key")]
        id: Option<u64>,
        /// The episode's unique key (UTF-8), instead of its id.
        #[arg(long)]
        key: Option<String>,
    },
    /// List episodes, the newest first (by id, the order they were recorded in): id, agent,
    /// timestamp and the start of the payload (with --json, each as `export --episodes`
    /// writes it); --first lists the oldest. Reads only as far back as it needs.
    Episodes {
        dir: PathBuf,
        /// How many of the newest to list.
        #[arg(long, default_value_t = 20, conflicts_with = "first")]
        last: usize,
        /// List this many of the oldest instead, oldest first.
        #[arg(long)]
        first: Option<usize>,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Delete one episode (--episode) or an agent's episodes older than a time (--agent and
    /// --before), in one transaction.
    Forget {
        dir: PathBuf,
        #[arg(long, conflicts_with_all = ["agent", "before"], required_unless_present = "agent")]
        episode: Option<u64>,
        #[arg(long, requires = "before")]
        agent: Option<u64>,
        /// A timestamp in the episodes' own unit; negative ones are allowed.
        #[arg(long, allow_negative_numbers = true)]
        before: Option<i64>,
    },
    /// The agents' stored networks: every (agent, name) with its size, or with --agent and
    /// --name one network's tensors (shape, blocks per encoding, bytes, weight range);
    /// --tensor --out writes one tensor's weights, --export / --import move networks
    /// between databases block for block.
    Networks {
        dir: PathBuf,
        #[arg(long, requires = "name")]
        agent: Option<u64>,
        #[arg(long, requires = "agent")]
        name: Option<String>,
        /// With --out: write this tensor's weights, dequantized, to a new vector file.
        #[arg(long, requires_all = ["name", "out"])]
        tensor: Option<String>,
        /// The file (.npy, .fvecs, .f32): one row per row of the tensor (its leading
        /// dimensions flattened), its last dimension across.
        #[arg(long, requires = "tensor")]
        out: Option<PathBuf>,
        /// Write every network (or --agent's --name) to a new JSON Lines file, blocks as
        /// stored.
        #[arg(long, conflicts_with_all = ["tensor", "import"])]
        export: Option<PathBuf>,
        /// Store the networks of a JSON Lines file (as --export writes it) block for block,
        /// in one transaction: a bad line stores nothing.
        #[arg(long, conflicts_with_all = ["agent", "tensor"])]
        import: Option<PathBuf>,
    },
    /// Form, list and show concepts.
    Concepts {
        #[command(subcommand)]
        cmd: ConceptsCmd,
    },
    /// Check every checksum and invariant; exits non-zero on any problem.
    Verify { dir: PathBuf },
    /// Rewrite the files with live records only.
    Compact { dir: PathBuf },
    /// A consistent copy of the last commit, taken while writers go on; optionally into a
    /// database with another metric, model name or int8 mirror (ids, concepts, bindings,
    /// networks and all else kept).
    Backup {
        dir: PathBuf,
        dest: PathBuf,
        #[arg(long, value_enum)]
        metric: Option<MetricArg>,
        /// The copy's embedding model name.
        #[arg(long, conflicts_with = "no_model")]
        model: Option<String>,
        /// The copy records no model name.
        #[arg(long)]
        no_model: bool,
        /// The copy keeps an int8 mirror (for `search --int8`).
        #[arg(long, conflicts_with = "no_int8")]
        int8: bool,
        /// The copy keeps no int8 mirror.
        #[arg(long)]
        no_int8: bool,
    },
    /// Concept lookup latency on this database (mapped and cached, uniform ids).
    Bench {
        dir: PathBuf,
        /// Timed lookups per case (1 to 100 million; each keeps an 8-byte latency).
        #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
        lookups: u64,
    },
}

#[derive(Subcommand)]
enum ConceptsCmd {
    /// Cluster episodes into concepts: --k N (spherical k-means) or --min-coherence X.
    Form {
        dir: PathBuf,
        #[arg(
            long,
            conflicts_with = "min_coherence",
            required_unless_present = "min_coherence"
        )]
        k: Option<usize>,
        /// A cosine in [-1, 1].
        #[arg(long, allow_negative_numbers = true)]
        min_coherence: Option<f32>,
        #[arg(long, default_value_t = 2)]
        min_size: usize,
        #[arg(long, default_value_t = 20)]
        iterations: usize,
        #[arg(long, default_value_t = 0x5eed)]
        seed: u64,
        /// Only episodes bound to no concept yet.
        #[arg(long)]
        unbound_only: bool,
        #[command(flatten)]
        filter: FilterArgs,
    },
    List {
        dir: PathBuf,
    },
    /// One concept: centroid norm, members, coherence, fan count, top members.
    Show {
        dir: PathBuf,
        id: u64,
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
    /// Every live concept as JSON Lines (label, formation figures, centroid, bindings),
    /// into a new file.
    Export {
        dir: PathBuf,
        out: PathBuf,
    },
    /// Concepts from JSON Lines (as `concepts export` writes them; formed by any tool), each
    /// bound to this database's episodes as its line says, in one transaction: a bad line
    /// commits nothing.
    Import {
        dir: PathBuf,
        file: PathBuf,
        /// Translate each binding's episode id through this map (`old<TAB>new` per line, as
        /// `import --id-map` writes it): for concepts exported from the database the
        /// episodes were exported from.
        #[arg(long)]
        id_map: Option<PathBuf>,
    },
}

/// Which episodes a command considers.
#[derive(Args)]
struct FilterArgs {
    /// Only this agent's episodes.
    #[arg(long)]
    agent: Option<u64>,
    /// Only episodes with a timestamp at or after this one.
    #[arg(long, allow_negative_numbers = true)]
    from: Option<i64>,
    /// Only episodes with a timestamp before this one.
    #[arg(long, allow_negative_numbers = true)]
    until: Option<i64>,
}

impl FilterArgs {
    fn filter(&self) -> Res<Filter> {
        let time = match (self.from, self.until) {
            (None, None) => None,
            (from, until) => {
                let range = from.unwrap_or(i64::MIN)..until.unwrap_or(i64::MAX);
                if range.is_empty() {
                    return Err(format!(
                        "--from {} is not before --until {}",
                        range.start, range.end
                    ));
                }
                Some(range)
            }
        };
        Ok(Filter {
            agent: self.agent,
            time,
        })
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum MetricArg {
    Cosine,
    Dot,
    L2,
}

impl From<MetricArg> for Metric {
    fn from(m: MetricArg) -> Metric {
        match m {
            MetricArg::Cosine => Metric::Cosine,
            MetricArg::Dot => Metric::Dot,
            MetricArg::L2 => Metric::L2,
        }
    }
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Format {
    Text,
    /// `query_row<TAB>id1<TAB>…<TAB>idk`, best first.
    Tsv,
    Json,
}

type Res<T> = Result<T, String>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if cli.json {
                say!("{}", json!({ "error": e }));
            } else {
                eprintln!("engram: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

fn out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if let Err(e) = writeln!(std::io::stdout().lock(), "{args}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("engram: writing output: {e}");
        std::process::exit(1);
    }
}

fn err(e: engram_core::Error) -> String {
    e.to_string()
}

/// Opens an existing database beside any writer, without taking the writer lock.
fn open_read_only(dir: &Path) -> Res<Engram> {
    let opts = Options {
        create_if_missing: false,
        read_only: true,
        ..Options::default()
    };
    Engram::open(dir, opts).map_err(err)
}

/// Opens an existing database (never creates one).
fn open(dir: &Path) -> Res<Engram> {
    Engram::open(
        dir,
        Options {
            create_if_missing: false,
            ..Options::default()
        },
    )
    .map_err(err)
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

fn emit(json_out: bool, value: Value, text: impl FnOnce()) {
    if json_out {
        say!("{value}");
    } else {
        text();
    }
}

fn run(cli: &Cli) -> Res<()> {
    let j = cli.json;
    match &cli.cmd {
        Cmd::Init {
            dir,
            dim,
            metric,
            model,
            int8,
        } => {
            if dir.exists()
                && std::fs::read_dir(dir)
                    .map_err(|e| e.to_string())?
                    .next()
                    .is_some()
            {
                return Err(format!("{} exists and is not empty", dir.display()));
            }
            let metric = Metric::from(*metric);
            let opts = Options {
                dimension: Some(*dim),
                metric: Some(metric),
                model: model.clone(),
                int8_mirror: Some(*int8),
                ..Options::default()
            };
            Engram::open(dir, opts).map_err(err)?;
            emit(j, json!({ "created": dir, "dimension": dim }), || {
                say!("created {} ({dim}-d, {metric:?})", dir.display())
            });
        }
        Cmd::Stats { dir } => stats(dir, j)?,
        Cmd::Agents { dir, agent, ttl } => {
            if let (Some(agent), Some(ttl)) = (agent, ttl) {
                set_agent_ttl(dir, *agent, ttl)?;
            }
            agents(dir, j)?
        }
        Cmd::Import {
            dir,
            vectors,
            payloads,
            episodes,
            dim,
            agent,
            id_map,
        } => {
            let rows = match (payloads, episodes) {
                (Some(p), _) => Meta::Payloads(vectors::payloads(p)?),
                (None, Some(e)) => Meta::episodes(e)?,
                (None, None) => Meta::None,
            };
            import(dir, vectors, rows, *dim, *agent, id_map.as_deref(), j)?
        }
        Cmd::Export {
            dir,
            vectors,
            episodes,
            agent,
        } => export(dir, vectors, episodes.as_deref(), *agent, j)?,
        Cmd::Search {
            dir,
            queries,
            k,
            int8,
            via_concepts,
            format,
            filter,
        } => search(
            dir,
            queries,
            *k,
            (*int8, *via_concepts),
            &filter.filter()?,
            if j { Format::Json } else { *format },
        )?,
        Cmd::Concepts { cmd } => concepts(cmd, j)?,
        Cmd::Networks {
            dir,
            agent,
            name,
            tensor,
            out,
            export,
            import,
        } => {
            let one = agent.zip(name.as_deref());
            match (tensor.as_deref().zip(out.as_deref()), export, import) {
                (_, _, Some(file)) => import_networks(dir, file, j)?,
                (_, Some(file), _) => export_networks(dir, one, file, j)?,
                (Some(to), ..) => {
                    let net = one.ok_or("--tensor needs --agent and --name")?;
                    write_tensor(dir, net, to, j)?
                }
                _ => networks(dir, one, j)?,
            }
        }
        Cmd::Recall {
            dir,
            queries,
            k,
            hops,
            fan_alpha,
            filter,
        } => {
            let filter = filter.filter()?;
            let db = open_read_only(dir)?;
            let snap = db.begin_read().map_err(err)?;
            let q = vectors::read(queries, Some(db.manifest().dimension))?;
            let params = engram_core::RecallParams {
                k: *k,
                seed_episodes: *k,
                hops: *hops,
                fan_alpha: *fan_alpha,
                ..Default::default()
            };
            let mut all = Vec::new();
            for i in 0..q.rows() {
                let cue = engram_core::Cue {
                    embedding: q.row(i),
                    filter: filter.clone(),
                };
                let r = snap.recall(&cue, &params).map_err(err)?;
                let via = |v: engram_core::Provenance| match v {
                    engram_core::Provenance::Direct => "direct".to_string(),
                    engram_core::Provenance::Concept(c) => format!("concept {c}"),
                };
                if j {
                    all.push(json!({ "query": i, "recalled": r.iter().map(|a| json!({ "episode": a.episode, "activation": a.activation, "via": via(a.via) })).collect::<Vec<_>>() }));
                } else {
                    say!("query {i}:");
                    for (rank, a) in r.iter().enumerate() {
                        say!(
                            "  {:>3}. episode {:<10} activation {:.4}  {:<12}  {}",
                            rank + 1,
                            a.episode,
                            a.activation,
                            via(a.via),
                            preview(&snap, a.episode)?
                        );
                    }
                }
            }
            if j {
                say!("{}", Value::Array(all));
            }
        }
        Cmd::Episode { dir, id, key } => show_episode(dir, *id, key.as_deref(), j)?,
        Cmd::Episodes {
            dir,
            last,
            first,
            filter,
        } => list_episodes(dir, first.map_or((*last, true), |n| (n, false)), filter, j)?,
        Cmd::Forget {
            dir,
            episode,
            agent,
            before,
        } => {
            let db = open(dir)?;
            let mut tx = db.begin_write().map_err(err)?;
            let n = match (episode, agent, before) {
                (Some(id), _, _) => {
                    tx.delete_episode(*id).map_err(err)?;
                    1
                }
                (None, Some(a), Some(t)) => tx.forget_where(*a, *t).map_err(err)?,
                _ => return Err("give --episode ID, or --agent A --before T".into()),
            };
            tx.commit().map_err(err)?;
            emit(j, json!({ "forgotten": n }), || say!("forgot {n} episodes"));
        }
        Cmd::Verify { dir } => {
            let db = open_read_only(dir)?;
            let t = Instant::now();
            let bar = ProgressBar::new_spinner().with_message("verifying every record");
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            let r = db
                .begin_read()
                .map_err(err)?
                .verify()
                .map_err(|e| format!("verify failed: {e}"));
            bar.finish_and_clear();
            let r = r?;
            emit(
                j,
                json!({ "ok": true, "slots": r.slots, "episodes": r.live_episodes, "concepts": r.live_concepts,
                        "bindings": r.live_bindings, "blobs": r.blobs, "networks": r.networks, "pages": r.pages }),
                || {
                    say!(
                        "ok: {} slots, {} episodes, {} concepts, {} bindings, {} blobs, {} networks in {} pages checked in {:.2} s",
                        r.slots,
                        r.live_episodes,
                        r.live_concepts,
                        r.live_bindings,
                        r.blobs,
                        r.networks,
                        r.pages,
                        t.elapsed().as_secs_f64()
                    )
                },
            );
        }
        Cmd::Compact { dir } => {
            let db = open(dir)?;
            let before = dir_bytes(dir);
            let bar = ProgressBar::new_spinner().with_message("compacting");
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            db.compact().map_err(err)?;
            bar.finish_and_clear();
            let after = dir_bytes(dir);
            emit(
                j,
                json!({ "bytes_before": before, "bytes_after": after }),
                || say!("compacted: {before} → {after} bytes"),
            );
        }
        Cmd::Backup {
            dir,
            dest,
            metric,
            model,
            no_model,
            int8,
            no_int8,
        } => {
            let db = open_read_only(dir)?;
            let was = db.manifest();
            let manifest = Manifest {
                metric: metric.map_or(was.metric, Metric::from),
                model: match (model, no_model) {
                    (Some(m), _) => Some(m.clone()),
                    (None, true) => None,
                    (None, false) => was.model.clone(),
                },
                int8_mirror: (was.int8_mirror || *int8) && !no_int8,
                ..was.clone()
            };
            db.backup_as(dest, &manifest).map_err(err)?;
            let changed = [
                (manifest.metric != was.metric).then(|| format!("metric {:?}", manifest.metric)),
                (manifest.model != was.model).then(|| match &manifest.model {
                    Some(m) => format!("model {m}"),
                    None => "no model".into(),
                }),
                (manifest.int8_mirror != was.int8_mirror).then(|| match manifest.int8_mirror {
                    true => "int8 mirror added".into(),
                    false => "int8 mirror dropped".into(),
                }),
            ];
            let changed: Vec<String> = changed.into_iter().flatten().collect();
            emit(
                j,
                json!({ "backup": dest, "changed": changed }),
                || match changed.is_empty() {
                    true => say!("backed up to {}", dest.display()),
                    false => say!("backed up to {} ({})", dest.display(), changed.join(", ")),
                },
            );
        }
        Cmd::Bench { dir, lookups } => bench(dir, *lookups as usize, j)?,
    }
    Ok(())
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn stats(dir: &Path, j: bool) -> Res<()> {
    let db = open_read_only(dir)?;
    let snap = db.begin_read().map_err(err)?;
    let m = db.manifest();
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .filter_map(|e| {
            Some((
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().ok()?.len(),
            ))
        })
        .collect();
    files.sort();
    let r = snap.reclaimable();
    let v = json!({
        "dir": dir, "format_version": FORMAT_VERSION, "dimension": m.dimension, "metric": format!("{:?}", m.metric),
        "model": m.model, "int8_mirror": m.int8_mirror, "last_commit": snap.txn(),
        "episodes": snap.episode_count(), "concepts": snap.concept_count(), "bindings": snap.binding_count(),
        "networks": snap.network_count(), "network_bytes": snap.network_storage(), "empty_concepts": snap.empty_concept_count(),
        "concept_cache_entries": DEFAULT_CONCEPT_CACHE_ENTRIES, "strength_cache_entries": DEFAULT_STRENGTH_CACHE_ENTRIES,
        "reclaimable": { "episodes": r.episodes, "concept_versions": r.concept_versions, "bindings": r.bindings, "bytes": r.bytes },
        "files": files.iter().map(|(n, b)| json!({ "name": n, "bytes": b })).collect::<Vec<_>>(),
    });
    emit(j, v, || {
        say!(
            "{}: engram format {FORMAT_VERSION}, {}-d, {:?}{}{}",
            dir.display(),
            m.dimension,
            m.metric,
            m.model
                .as_ref()
                .map(|s| format!(", model {s}"))
                .unwrap_or_default(),
            if m.int8_mirror { ", int8 mirror" } else { "" }
        );
        say!("last commit: txn {}", snap.txn());
        let empty = snap.empty_concept_count();
        if empty > 0 {
            say!("{empty} concepts have no live binding left (all members forgotten)");
        }
        say!(
            "episodes {}  concepts {}  bindings {}  networks {} ({} bytes)",
            snap.episode_count(),
            snap.concept_count(),
            snap.binding_count(),
            snap.network_count(),
            snap.network_storage()
        );
        if r != Reclaimable::default() {
            say!(
                "`engram compact` would free {} bytes of records: {} episodes, {} concept versions, {} bindings (and their heap blobs)",
                r.bytes,
                r.episodes,
                r.concept_versions,
                r.bindings
            );
        }
        say!(
            "cache defaults: {DEFAULT_CONCEPT_CACHE_ENTRIES} concepts, {DEFAULT_STRENGTH_CACHE_ENTRIES} binding strengths"
        );
        for (n, b) in &files {
            say!("  {n:<16} {b:>14} bytes");
        }
    });
    Ok(())
}

/// What an import knows of each row besides its vector.
enum Meta {
    None,
    Payloads(Vec<Vec<u8>>),
    Episodes {
        name: String,
        lines: std::io::Lines<std::io::BufReader<std::fs::File>>,
        read: usize,
    },
}

impl Meta {
    fn episodes(path: &Path) -> Res<Meta> {
        let name = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|e| format!("{name}: {e}"))?;
        let lines = std::io::BufRead::lines(std::io::BufReader::with_capacity(1 << 20, file));
        Ok(Meta::Episodes {
            name,
            lines,
            read: 0,
        })
    }

    /// Row `n`'s fields; `None` once the file describing the rows has run out.
    fn row(&mut self, n: usize, agent: u64) -> Res<Option<episodes::Fields>> {
        let plain = |payload: Vec<u8>| episodes::Fields {
            id: None,
            agent,
            timestamp: n as i64,
            ttl: engram_core::Ttl::AgentDefault,
            key: None,
            payload,
        };
        match self {
            Meta::None => Ok(Some(plain(Vec::new()))),
            // Each payload is read once: moved out, not copied (the count stays for `check`).
            Meta::Payloads(p) => Ok(p.get_mut(n).map(std::mem::take).map(plain)),
            Meta::Episodes { name, lines, read } => {
                let Some(line) = lines.next() else {
                    return Ok(None);
                };
                *read += 1;
                let at = |e| format!("{name}: line {}: {e}", n + 1);
                episodes::parse(&line.map_err(|e| at(e.to_string()))?, n, agent)
                    .map(Some)
                    .map_err(at)
            }
        }
    }

    /// After `n` vectors: the rows described must be exactly those.
    fn check(self, n: usize) -> Res<()> {
        let (what, count) = match self {
            Meta::None => return Ok(()),
            Meta::Payloads(p) => ("payload lines".to_string(), p.len()),
            Meta::Episodes { name, lines, read } => {
                (format!("lines in {name}"), read + lines.count())
            }
        };
        match count == n {
            true => Ok(()),
            false => Err(format!("{count} {what} for {n} vectors")),
        }
    }
}

fn import(
    dir: &Path,
    path: &Path,
    mut meta: Meta,
    dim: Option<usize>,
    agent: u64,
    id_map: Option<&Path>,
    j: bool,
) -> Res<()> {
    let db = open(dir)?;
    let expected = db.manifest().dimension;
    let mut rows = vectors::open(path, Some(dim.unwrap_or(expected)))?;
    let bar = progress(rows.len_hint(), "importing");
    let t = Instant::now();
    // One row in memory at a time; any bad row drops the transaction, committing nothing.
    // A row whose key is already stored gets that episode back: it is counted, not stored.
    let before = db.begin_read().map_err(err)?;
    let mut tx = db.begin_write().map_err(err)?;
    let mut row = Vec::new();
    let (mut n, mut stored, mut known) = (0, None::<(u64, u64)>, 0);
    // (the id a line gives, the id its episode has here), for --id-map.
    let mut renamed = Vec::new();
    while rows.next_into(&mut row)? {
        // Past the payloads the rows are only counted, for the message below.
        if let Some(f) = meta.row(n, agent)? {
            let input = EpisodeInput {
                agent: f.agent,
                timestamp: f.timestamp,
                embedding: &row,
                payload: &f.payload,
                key: f.key.as_deref(),
            };
            let id = tx
                .insert_episode_with_ttl(&input, f.ttl)
                .map_err(|e| format!("row {n}: {e}"))?;
            if let Some(old) = f.id.filter(|_| id_map.is_some()) {
                renamed.push((old, id));
            }
            let new = match stored {
                // New ids only grow: a smaller one is an episode stored before.
                Some((_, last)) => id > last,
                None => f.key.is_none() || before.episode(id).map_err(err)?.is_none(),
            };
            match (new, &mut stored) {
                (false, _) => known += 1,
                (true, Some((_, last))) => *last = id,
                (true, None) => stored = Some((id, id)),
            }
        }
        n += 1;
        if n % 1024 == 0 {
            bar.set_position(n as u64);
        }
    }
    meta.check(n)?;
    // The map is durable before the commit, so that a committed import always has one.
    if let Some(path) = id_map {
        write_lines(path, |line| {
            renamed
                .iter()
                .try_for_each(|(old, new)| line(&format!("{old}\t{new}")))
        })?;
    }
    // An empty file changes nothing, so it costs no commit (and no syncs).
    if n > 0 {
        bar.set_message("committing");
        if let Err(e) = tx.commit() {
            if let Some(path) = id_map {
                let _ = std::fs::remove_file(path);
            }
            return Err(err(e));
        }
    }
    bar.finish_and_clear();
    let count = stored.map_or(0, |(a, b)| b - a + 1);
    let secs = t.elapsed().as_secs_f64();
    emit(
        j,
        json!({ "rows": n, "imported": count, "already_stored": known, "first_id": stored.map(|s| s.0),
                "last_id": stored.map(|s| s.1), "seconds": secs }),
        || {
            match stored {
                Some((a, b)) => say!("imported {count} episodes as ids {a}..={b} in {secs:.2} s"),
                None if n == 0 => say!("the file holds no vectors; nothing imported"),
                None => say!("nothing imported"),
            }
            if known > 0 {
                say!("{known} rows named a key already stored: each got that episode back");
            }
        },
    );
    Ok(())
}

fn export(
    dir: &Path,
    vectors: &Path,
    episodes: Option<&Path>,
    agent: Option<u64>,
    j: bool,
) -> Res<()> {
    let db = open_read_only(dir)?;
    let snap = db.begin_read().map_err(err)?;
    let t = Instant::now();
    let wanted = |e: &engram_core::Episode<'_>| agent.is_none_or(|a| e.agent() == a);
    // The vector file's header states the row count: count first (the table alone
    // without --agent; with it, a first pass that also brings the records into memory).
    let count = match agent {
        None => snap.episode_ids().map_err(err)?.len(),
        Some(_) => {
            let mut n = 0;
            for ep in snap.episodes() {
                n += usize::from(wanted(&ep.map_err(err)?));
            }
            n
        }
    };
    let mut out = vectors::Writer::create(vectors, db.manifest().dimension, count as u64)?;
    let mut lines = match episodes {
        None => None,
        Some(p) => match std::fs::File::create_new(p) {
            Ok(f) => Some(std::io::BufWriter::with_capacity(1 << 20, f)),
            Err(e) => {
                let _ = std::fs::remove_file(vectors);
                return Err(format!("{}: {e}", p.display()));
            }
        },
    };
    let bar = progress(count as u64, "exporting");
    let written = (|| -> Res<()> {
        let mut n = 0;
        for ep in snap.episodes() {
            let ep = ep.map_err(err)?;
            if !wanted(&ep) {
                continue;
            }
            // `out` refuses rows past `count`: the snapshot is stable, so none come.
            out.row(ep.embedding())?;
            if let (Some(w), Some(p)) = (&mut lines, episodes) {
                let line = episodes::to_line(&ep).map_err(err)?;
                std::io::Write::write_all(w, line.as_bytes())
                    .and_then(|()| std::io::Write::write_all(w, b"\n"))
                    .map_err(|e| format!("{}: {e}", p.display()))?;
            }
            n += 1;
            if n % 1024 == 0 {
                bar.set_position(n);
            }
        }
        out.finish()?;
        if let (Some(w), Some(p)) = (lines, episodes) {
            let f = w
                .into_inner()
                .map_err(|e| format!("{}: {}", p.display(), e.error()))?;
            f.sync_all().map_err(|e| format!("{}: {e}", p.display()))?;
        }
        Ok(())
    })();
    bar.finish_and_clear();
    if let Err(e) = written {
        // Half a file is worse than none: the caller would load it.
        let _ = std::fs::remove_file(vectors);
        if let Some(p) = episodes {
            let _ = std::fs::remove_file(p);
        }
        return Err(e);
    }
    emit(
        j,
        json!({ "exported": count, "txn": snap.txn(), "vectors": vectors, "episodes": episodes, "seconds": t.elapsed().as_secs_f64() }),
        || {
            say!(
                "exported {} episodes (as of txn {}) in {:.2} s",
                count,
                snap.txn(),
                t.elapsed().as_secs_f64()
            )
        },
    );
    Ok(())
}

/// Creates `out`, which must not exist, has `fill` write it line by line, and syncs it; if
/// anything fails, removes it, so that no partial file is left to be read as whole.
fn write_lines(
    out: &Path,
    fill: impl FnOnce(&mut dyn FnMut(&str) -> Res<()>) -> Res<()>,
) -> Res<()> {
    let io = |e: std::io::Error| format!("{}: {e}", out.display());
    let file = std::fs::File::create_new(out).map_err(io)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let written = fill(&mut |line: &str| {
        std::io::Write::write_all(&mut w, line.as_bytes())
            .and_then(|()| std::io::Write::write_all(&mut w, b"\n"))
            .map_err(io)
    })
    .and_then(|()| {
        let f = w.into_inner().map_err(|e| io(e.into_error()))?;
        f.sync_all().map_err(io)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(out);
    }
    written
}

fn export_concepts(dir: &Path, out: &Path, j: bool) -> Res<()> {
    let db = open_read_only(dir)?;
    let snap = db.begin_read().map_err(err)?;
    let (mut count, mut bound) = (0u64, 0u64);
    write_lines(out, |line| {
        for c in snap.concepts() {
            let c = c.map_err(err)?;
            let mut bindings = snap.bindings_of_concept(c.id()).map_err(err)?;
            line(&concepts::to_line(&c, &mut bindings).map_err(err)?)?;
            count += 1;
            bound += bindings.len() as u64;
        }
        Ok(())
    })?;
    emit(
        j,
        json!({ "exported": count, "bindings": bound, "txn": snap.txn() }),
        || {
            say!(
                "exported {count} concepts with {bound} bindings (txn {})",
                snap.txn()
            )
        },
    );
    Ok(())
}

/// An `old<TAB>new` id map, as `import --id-map` writes it.
fn read_id_map(path: &Path) -> Res<HashMap<u64, u64>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut map = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let bad = || {
            format!(
                "{}, line {}: not `old id<TAB>new id`",
                path.display(),
                i + 1
            )
        };
        let (old, new) = line.split_once('\t').ok_or_else(bad)?;
        map.insert(
            old.parse().map_err(|_| bad())?,
            new.parse().map_err(|_| bad())?,
        );
    }
    Ok(map)
}

/// The non-empty lines of JSON Lines file `path`, each parsed by `parse`, with its number
/// (from 1) for the errors a later step finds in it; a parse error names its line.
fn parse_lines<T>(path: &Path, parse: fn(&str) -> Result<T, String>) -> Res<Vec<(usize, T)>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut parsed = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if !line.trim().is_empty() {
            parsed.push((i + 1, parse(line).map_err(|e| at_line(path, i + 1, e))?));
        }
    }
    Ok(parsed)
}

fn at_line(path: &Path, line: usize, e: String) -> String {
    format!("{}, line {line}: {e}", path.display())
}

fn import_concepts(dir: &Path, file: &Path, id_map: Option<&Path>, j: bool) -> Res<()> {
    let lines = parse_lines(file, concepts::parse)?;
    let map = id_map.map(read_id_map).transpose()?;
    if lines.is_empty() {
        emit(j, json!({ "imported": 0 }), || {
            say!("no concepts in {}", file.display())
        });
        return Ok(());
    }
    let db = open(dir)?;
    let mut tx = db.begin_write().map_err(err)?;
    let mut ids = Vec::new();
    let mut bound = 0u64;
    for (line, f) in lines {
        let at = |e: String| at_line(file, line, e);
        let input = engram_core::ConceptInput {
            centroid: &f.centroid,
            label: &f.label,
        };
        let id = tx.insert_concept(&input).map_err(|e| at(err(e)))?;
        for &(episode, strength) in &f.bindings {
            let episode = match &map {
                None => episode,
                Some(m) => *m
                    .get(&episode)
                    .ok_or_else(|| at(format!("episode {episode} is not in the id map")))?,
            };
            tx.bind(episode, id, strength).map_err(|e| at(err(e)))?;
        }
        bound += f.bindings.len() as u64;
        ids.push(id);
    }
    tx.commit().map_err(err)?;
    let (first, last) = (ids[0], ids[ids.len() - 1]);
    emit(
        j,
        json!({ "imported": ids.len(), "first_id": first, "last_id": last, "bindings": bound }),
        || {
            say!(
                "imported {} concepts as ids {first}..={last} with {bound} bindings",
                ids.len()
            )
        },
    );
    Ok(())
}

/// The first 80 characters of episode `id`'s payload, on one line, for text output.
fn preview(snap: &engram_core::ReadTxn, id: u64) -> Res<String> {
    let ep = snap
        .episode(id)
        .map_err(err)?
        .ok_or(format!("episode {id} vanished"))?;
    Ok(one_line(&String::from_utf8_lossy(
        ep.payload().map_err(err)?,
    )))
}

/// The first 80 characters of `text`, control characters as spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .take(80)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn search(
    dir: &Path,
    queries: &Path,
    k: usize,
    (int8, via): (bool, bool),
    filter: &Filter,
    format: Format,
) -> Res<()> {
    let db = open_read_only(dir)?;
    let snap = db.begin_read().map_err(err)?;
    let q = vectors::read(queries, Some(db.manifest().dimension))?;
    let mut all = Vec::new();
    for i in 0..q.rows() {
        let hits: Vec<(u64, f32, Option<u64>)> = if via {
            snap.recall_via_concepts(q.row(i), 8, k)
                .map_err(err)?
                .into_iter()
                .map(|r| (r.episode, r.score, Some(r.concept)))
                .collect()
        } else if int8 {
            snap.search_int8(q.row(i), k, filter, 10 * k)
                .map_err(err)?
                .into_iter()
                .map(|h| (h.id, h.score, None))
                .collect()
        } else {
            snap.search(q.row(i), k, filter)
                .map_err(err)?
                .into_iter()
                .map(|h| (h.id, h.score, None))
                .collect()
        };
        match format {
            Format::Tsv => {
                let ids: Vec<String> = hits.iter().map(|h| h.0.to_string()).collect();
                say!("{i}\t{}", ids.join("\t"));
            }
            Format::Text => {
                say!("query {i}:");
                for (rank, (id, score, via)) in hits.iter().enumerate() {
                    let via = via.map(|c| format!("  via concept {c}")).unwrap_or_default();
                    let text = preview(&snap, *id)?;
                    say!(
                        "  {:>3}. episode {id:<10} score {score:.4}{via}  {text}",
                        rank + 1
                    );
                }
            }
            Format::Json => all.push(json!({
                "query": i,
                "hits": hits.iter().map(|(id, s, c)| json!({ "id": id, "score": s, "concept": c })).collect::<Vec<_>>(),
            })),
        }
    }
    if format == Format::Json {
        say!("{}", Value::Array(all));
    }
    Ok(())
}

fn concepts(cmd: &ConceptsCmd, j: bool) -> Res<()> {
    match cmd {
        ConceptsCmd::Form {
            dir,
            k,
            min_coherence,
            min_size,
            iterations,
            seed,
            unbound_only,
            filter,
        } => {
            let filter = filter.filter()?;
            let db = open(dir)?;
            let count = match (k, min_coherence) {
                (Some(k), _) => Count::K(*k),
                (None, Some(c)) => Count::Threshold { min_coherence: *c },
                (None, None) => return Err("give --k or --min-coherence".into()),
            };
            let bar = progress(*iterations as u64, "forming");
            let report_progress = |p: &engram_core::cluster::Progress| {
                match p.phase {
                    Phase::Iterating => {
                        bar.set_message(format!(
                            "k-means, {} concepts, objective {:.4}",
                            p.clusters, p.objective
                        ));
                        bar.set_position(p.step as u64);
                    }
                    phase => bar.set_message(format!("{phase:?}: {} clusters", p.clusters)),
                }
                std::ops::ControlFlow::Continue(())
            };
            let t = Instant::now();
            let r = db
                .form_concepts(&FormationParams {
                    filter: &filter,
                    unbound_only: *unbound_only,
                    clustering: Params {
                        count,
                        min_size: *min_size,
                        max_iterations: *iterations,
                        seed: *seed,
                        max_points_per_cluster: None,
                    },
                    progress: Some(&report_progress),
                })
                .map_err(err)?;
            bar.finish_and_clear();
            emit(
                j,
                json!({ "concepts": r.concepts, "episodes": r.episodes, "bound": r.bound, "iterations": r.iterations,
                        "objective": r.objective, "seconds": t.elapsed().as_secs_f64() }),
                || {
                    say!(
                        "formed {} concepts from {} episodes ({} bound, {} left unbound) in {:.2} s; mean cosine to centroid {:.4}",
                        r.concepts.len(),
                        r.episodes,
                        r.bound,
                        r.episodes - r.bound,
                        t.elapsed().as_secs_f64(),
                        r.objective
                    )
                },
            );
        }
        ConceptsCmd::Export { dir, out } => export_concepts(dir, out, j)?,
        ConceptsCmd::Import { dir, file, id_map } => {
            import_concepts(dir, file, id_map.as_deref(), j)?
        }
        ConceptsCmd::List { dir } => {
            let db = open_read_only(dir)?;
            let snap = db.begin_read().map_err(err)?;
            let mut rows = Vec::new();
            for c in snap.concepts() {
                let c = c.map_err(err)?;
                let id = c.id();
                rows.push((
                    id,
                    c.members(),
                    c.coherence(),
                    snap.concept_fan_count(id).map_err(err)?,
                    c.label().map_err(err)?.to_string(),
                ));
            }
            emit(
                j,
                Value::Array(rows.iter().map(|(id, m, h, f, l)| json!({ "id": id, "members": m, "coherence": h, "fan": f, "label": l })).collect()),
                || {
                    say!("{:>8} {:>8} {:>9} {:>6}  label", "id", "members", "coherence", "fan");
                    for (id, m, h, f, l) in &rows {
                        say!("{id:>8} {m:>8} {h:>9.4} {f:>6}  {l}");
                    }
                },
            );
        }
        ConceptsCmd::Show { dir, id, top } => {
            let db = open_read_only(dir)?;
            let snap = db.begin_read().map_err(err)?;
            let c = snap
                .concept(*id)
                .map_err(err)?
                .ok_or(format!("no concept {id}"))?;
            let norm = l2_norm(c.centroid());
            let mut members = snap.bindings_of_concept(*id).map_err(err)?;
            members.sort_by(|a, b| {
                b.strength
                    .total_cmp(&a.strength)
                    .then(a.episode.cmp(&b.episode))
            });
            let fan = members.len();
            members.truncate(*top);
            let mut shown = Vec::new();
            for b in &members {
                shown.push((b.episode, b.strength, preview(&snap, b.episode)?));
            }
            let label = c.label().map_err(err)?.to_string();
            emit(
                j,
                json!({ "id": id, "label": label, "centroid_norm": norm, "members": c.members(), "coherence": c.coherence(),
                        "fan": fan, "version_txn": c.version_txn(),
                        "top": shown.iter().map(|(e, s, t)| json!({ "episode": e, "strength": s, "payload": t })).collect::<Vec<_>>() }),
                || {
                    say!("concept {id}: {label}");
                    say!(
                        "  centroid norm {norm:.6}, {} members, coherence {:.4}, fan count {fan}, written by txn {}",
                        c.members(),
                        c.coherence(),
                        c.version_txn()
                    );
                    for (e, s, t) in &shown {
                        say!("  {s:.4}  episode {e:<8} {t}");
                    }
                },
            );
        }
    }
    Ok(())
}

fn l2_norm(v: &[f32]) -> f64 {
    v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt()
}

/// What `engram agents` tells of one agent's episodes.
#[derive(Default)]
struct AgentEpisodes {
    count: u64,
    first: Option<i64>,
    last: Option<i64>,
    payload_bytes: u64,
    expiring: u64,
}

/// Sets (`none`: clears) `agent`'s default time to live, committed.
fn set_agent_ttl(dir: &Path, agent: u64, ttl: &str) -> Res<()> {
    let ttl = match ttl {
        "none" => None,
        t => Some(
            t.parse::<i64>()
                .map_err(|_| format!("--ttl {t:?}: not a whole number of clock units, nor none"))?,
        ),
    };
    let db = open(dir)?;
    let mut tx = db.begin_write().map_err(err)?;
    tx.set_agent_ttl(agent, ttl).map_err(err)?;
    tx.commit().map_err(err)
}

fn agents(dir: &Path, j: bool) -> Res<()> {
    let db = open_read_only(dir)?;
    let snap = db.begin_read().map_err(err)?;
    let mut by_agent: std::collections::BTreeMap<u64, AgentEpisodes> = Default::default();
    for ep in snap.episodes() {
        let ep = ep.map_err(err)?;
        let a = by_agent.entry(ep.agent()).or_default();
        a.count += 1;
        let t = ep.timestamp();
        a.first = Some(a.first.map_or(t, |f| f.min(t)));
        a.last = Some(a.last.map_or(t, |l| l.max(t)));
        a.payload_bytes += ep.payload().map_err(err)?.len() as u64;
        a.expiring += u64::from(ep.expires_at().map_err(err)?.is_some());
    }
    let networks = snap.networks();
    for (agent, _) in &networks {
        by_agent.entry(*agent).or_default();
    }
    for (agent, _) in snap.agent_ttls() {
        by_agent.entry(agent).or_default();
    }
    let rows: Vec<_> = by_agent
        .iter()
        .map(|(&agent, e)| {
            let nets: Vec<&str> = networks
                .iter()
                .filter(|(a, _)| *a == agent)
                .map(|(_, n)| n.as_str())
                .collect();
            (agent, e, snap.agent_ttl(agent), nets)
        })
        .collect();
    emit(
        j,
        json!(
            rows.iter()
                .map(
                    |(agent, e, ttl, nets)| json!({ "agent": agent, "episodes": e.count,
            "first_timestamp": e.first, "last_timestamp": e.last, "payload_bytes": e.payload_bytes,
            "expiring": e.expiring, "default_ttl": ttl, "networks": nets })
                )
                .collect::<Vec<_>>()
        ),
        || {
            say!(
                "{:>10} {:>10} {:>21} {:>21} {:>12} {:>9} {:>12}  networks",
                "agent",
                "episodes",
                "first timestamp",
                "last timestamp",
                "payload B",
                "expiring",
                "default TTL"
            );
            let or_dash = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
            for (agent, e, ttl, nets) in &rows {
                let line = format!(
                    "{agent:>10} {:>10} {:>21} {:>21} {:>12} {:>9} {:>12}  {}",
                    e.count,
                    or_dash(e.first),
                    or_dash(e.last),
                    e.payload_bytes,
                    e.expiring,
                    or_dash(*ttl),
                    nets.join(", ")
                );
                say!("{}", line.trim_end());
            }
        },
    );
    Ok(())
}

fn export_networks(dir: &Path, one: Option<(u64, &str)>, out: &Path, j: bool) -> Res<()> {
    let db = open_read_only(dir)?;
    let snap = db.begin_read().map_err(err)?;
    let chosen: Vec<(u64, String)> = match one {
        Some((agent, name)) => vec![(agent, name.to_string())],
        None => snap.networks(),
    };
    let mut bytes = 0u64;
    write_lines(out, |line| {
        for (agent, name) in &chosen {
            let net = snap
                .network(*agent, name)
                .map_err(err)?
                .ok_or(format!("agent {agent} has no network {name:?}"))?;
            line(&networks::to_line(*agent, name, &net).map_err(err)?)?;
            bytes += net.bytes() as u64;
        }
        Ok(())
    })?;
    let n = chosen.len();
    emit(j, json!({ "exported": n, "bytes": bytes }), || {
        say!("exported {n} networks ({bytes} bytes of blocks)")
    });
    Ok(())
}

fn import_networks(dir: &Path, file: &Path, j: bool) -> Res<()> {
    let lines = parse_lines(file, networks::parse)?;
    if lines.is_empty() {
        emit(j, json!({ "imported": 0 }), || {
            say!("no networks in {}", file.display())
        });
        return Ok(());
    }
    let db = open(dir)?;
    let mut tx = db.begin_write().map_err(err)?;
    for (line, f) in &lines {
        let at = |e: String| at_line(file, *line, e);
        let tensors = f
            .tensors
            .iter()
            .map(|(name, shape, scheme, bytes)| {
                let blocks = engram_core::quant::Blocks::view(bytes, shape, *scheme)
                    .map_err(|e| at(format!("tensor {name}: {}", err(e))))?;
                Ok(engram_core::Tensor {
                    name,
                    shape,
                    blocks,
                })
            })
            .collect::<Res<Vec<_>>>()?;
        tx.put_network_tensors(f.agent, &f.name, &tensors)
            .map_err(|e| at(err(e)))?;
    }
    tx.commit().map_err(err)?;
    let n = lines.len();
    emit(j, json!({ "imported": n }), || {
        say!("imported {n} networks")
    });
    Ok(())
}

/// Writes tensor `tensor` of network `name` of agent `agent`, dequantized, to `out`.
fn write_tensor(
    dir: &Path,
    (agent, name): (u64, &str),
    (tensor, out): (&str, &Path),
    j: bool,
) -> Res<()> {
    let db = open_read_only(dir)?;
    let snap = db.begin_read().map_err(err)?;
    let net = snap
        .network(agent, name)
        .map_err(err)?
        .ok_or(format!("agent {agent} has no network {name:?}"))?;
    let t = net
        .tensor(tensor)
        .map_err(err)?
        .ok_or(format!("network {name:?} has no tensor {tensor:?}"))?;
    let (rows, cols) = (t.blocks.rows(), t.blocks.cols());
    let mut w = vec![0f32; rows * cols];
    t.dequantize_into(&mut w).map_err(err)?;
    let mut file = vectors::Writer::create(out, cols, rows as u64)?;
    for row in w.chunks_exact(cols.max(1)) {
        file.row(row)?;
    }
    file.finish()?;
    emit(
        j,
        json!({ "tensor": tensor, "shape": t.shape, "rows": rows, "cols": cols, "out": out }),
        || {
            say!(
                "wrote {tensor} {:?} as {rows} x {cols} to {}",
                t.shape,
                out.display()
            )
        },
    );
    Ok(())
}

fn networks(dir: &Path, one: Option<(u64, &str)>, j: bool) -> Res<()> {
    let db = open_read_only(dir)?;
    let snap = db.begin_read().map_err(err)?;
    let Some((agent, name)) = one else {
        let mut all = Vec::new();
        for (agent, name) in snap.networks() {
            let net = snap
                .network(agent, &name)
                .map_err(err)?
                .ok_or(format!("network {agent}/{name} vanished"))?;
            let tensors = net.tensors().count();
            all.push((agent, name, tensors, net.bytes(), net.version_txn()));
        }
        emit(
            j,
            json!(all.iter().map(|(a, n, t, b, txn)| json!({ "agent": a, "name": n, "tensors": t, "bytes": b, "txn": txn })).collect::<Vec<_>>()),
            || {
                if all.is_empty() {
                    say!("no networks stored");
                    return;
                }
                say!("{:>10}  {:<24} {:>7} {:>12}  txn", "agent", "name", "tensors", "bytes");
                for (a, n, t, b, txn) in &all {
                    say!("{a:>10}  {n:<24} {t:>7} {b:>12}  {txn}");
                }
            },
        );
        return Ok(());
    };
    let net = snap
        .network(agent, name)
        .map_err(err)?
        .ok_or(format!("agent {agent} has no network {name:?}"))?;
    let mut tensors = Vec::new();
    for t in net.tensors() {
        let t = t.map_err(err)?;
        let mut counts = [0usize; 3];
        for kind in t.blocks.kinds() {
            counts[match kind {
                BlockKind::Q8 => 0,
                BlockKind::Q4 => 1,
                BlockKind::F16 => 2,
            }] += 1;
        }
        let mut w = vec![0f32; t.blocks.rows() * t.blocks.cols()];
        t.dequantize_into(&mut w).map_err(err)?;
        let (lo, hi) = w
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
                (lo.min(x), hi.max(x))
            });
        let mean_abs = w.iter().map(|x| f64::from(x.abs())).sum::<f64>() / w.len().max(1) as f64;
        tensors.push((t.name, t.shape, counts, lo, hi, mean_abs));
    }
    emit(
        j,
        json!({ "agent": agent, "name": name, "txn": net.version_txn(), "bytes": net.bytes(),
                "tensors": tensors.iter().map(|(n, s, c, lo, hi, m)| json!({ "name": n, "shape": s,
                    "blocks": { "q8": c[0], "q4": c[1], "f16": c[2] }, "min": lo, "max": hi, "mean_abs": m })).collect::<Vec<_>>() }),
        || {
            say!(
                "network {name:?} of agent {agent}: {} bytes, stored by txn {}",
                net.bytes(),
                net.version_txn()
            );
            for (n, s, c, lo, hi, m) in &tensors {
                say!(
                    "  {n:<20} {:<14} blocks q8 {} q4 {} f16 {}  weights {lo:.4}..{hi:.4}, mean |w| {m:.4}",
                    format!("{s:?}"),
                    c[0],
                    c[1],
                    c[2]
                );
            }
        },
    );
    Ok(())
}

/// Up to `count` episodes passing `filter`, the newest first (`newest`) or the oldest.
fn list_episodes(
    dir: &Path,
    (count, newest): (usize, bool),
    filter: &FilterArgs,
    j: bool,
) -> Res<()> {
    let filter = filter.filter()?;
    let db = open_read_only(dir)?;
    let snap = db.begin_read().map_err(err)?;
    let pass: Box<dyn Iterator<Item = _>> = match newest {
        true => Box::new(snap.episodes().rev()),
        false => Box::new(snap.episodes()),
    };
    // Each as `export --episodes` writes it, and its text line.
    let mut rows = Vec::new();
    for ep in pass {
        if rows.len() == count {
            break;
        }
        let ep = ep.map_err(err)?;
        if !filter.accepts(&ep) {
            continue;
        }
        let payload = String::from_utf8_lossy(ep.payload().map_err(err)?);
        let line = format!(
            "{:>10}  {:>8}  {:>20}  {}",
            ep.id(),
            ep.agent(),
            ep.timestamp(),
            one_line(&payload)
        );
        rows.push((episodes::to_json(&ep).map_err(err)?, line));
    }
    let (objects, lines): (Vec<Value>, Vec<String>) = rows.into_iter().unzip();
    emit(j, Value::Array(objects), || {
        say!("{:>10}  {:>8}  {:>20}  payload", "id", "agent", "timestamp");
        for line in &lines {
            say!("{line}");
        }
        if lines.is_empty() {
            say!("(no episodes)");
        }
    });
    Ok(())
}

fn show_episode(dir: &Path, id: Option<u64>, key: Option<&str>, j: bool) -> Res<()> {
    let db = open_read_only(dir)?;
    let snap = db.begin_read().map_err(err)?;
    let ep = match (id, key) {
        (Some(id), _) => snap
            .episode(id)
            .map_err(err)?
            .ok_or(format!("no episode {id}"))?,
        (None, Some(k)) => snap
            .episode_by_key(k.as_bytes())
            .map_err(err)?
            .ok_or(format!("no episode with key {k:?}"))?,
        (None, None) => return Err("give an episode id or --key".into()),
    };
    let id = ep.id();
    let norm = l2_norm(ep.embedding());
    let payload = ep.payload().map_err(err)?;
    let text = String::from_utf8_lossy(payload);
    let key = ep.key().map_err(err)?.map(String::from_utf8_lossy);
    let (expires, last, count) = (
        ep.expires_at().map_err(err)?,
        ep.last_access().map_err(err)?,
        ep.access_count().map_err(err)?,
    );
    let mut bindings = snap.bindings_of_episode(id).map_err(err)?;
    bindings.sort_by(|a, b| {
        b.strength
            .total_cmp(&a.strength)
            .then(a.concept.cmp(&b.concept))
    });
    let mut bound = Vec::new();
    for b in bindings {
        let c = snap
            .concept(b.concept)
            .map_err(err)?
            .ok_or(format!("concept {} vanished", b.concept))?;
        bound.push((b.concept, b.strength, c.label().map_err(err)?.to_string()));
    }
    emit(
        j,
        json!({ "id": id, "agent": ep.agent(), "timestamp": ep.timestamp(), "key": key, "expires_at": expires,
                "last_access": last, "access_count": count, "embedding_norm": norm,
                "payload_bytes": payload.len(), "payload": text,
                "bindings": bound.iter().map(|(c, s, l)| json!({ "concept": c, "strength": s, "label": l })).collect::<Vec<_>>() }),
        || {
            say!(
                "episode {id}: agent {}, timestamp {}",
                ep.agent(),
                ep.timestamp()
            );
            if let Some(k) = &key {
                say!("  key {k:?}");
            }
            say!(
                "  embedding norm {norm:.6}; {}; {}",
                expires.map_or("never expires".into(), |t| format!("expires at {t}")),
                match last {
                    Some(t) => format!("{count} accesses, the last at {t}"),
                    None => "never accessed".into(),
                }
            );
            say!("  payload, {} bytes: {text}", payload.len());
            say!("  bound to {} concepts", bound.len());
            for (c, s, l) in &bound {
                say!("  {s:.4}  concept {c:<8} {l}");
            }
        },
    );
    Ok(())
}

fn bench(dir: &Path, lookups: usize, j: bool) -> Res<()> {
    let db = open_read_only(dir)?;
    let snap = db.begin_read().map_err(err)?;
    let ids = snap.concept_ids().map_err(err)?;
    if ids.is_empty() {
        return Err("the database has no concepts (form some with `engram concepts form`)".into());
    }
    // Uniform ids from a fixed xorshift stream, so runs compare.
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let stream: Vec<u64> = (0..lookups)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ids[(s % ids.len() as u64) as usize]
        })
        .collect();
    let mut results = serde_json::Map::new();
    for (name, cached) in [("mapped", false), ("cached", true)] {
        let mut sink = 0f32;
        for &id in &stream {
            sink += read(&snap, id, cached)?; // warm: page cache and concept cache
        }
        let mut ns: Vec<u64> = Vec::with_capacity(stream.len());
        for &id in &stream {
            let t = Instant::now();
            sink += read(&snap, id, cached)?;
            ns.push(t.elapsed().as_nanos() as u64);
        }
        std::hint::black_box(sink);
        ns.sort_unstable();
        let q = |p: f64| ns[((ns.len() - 1) as f64 * p).round() as usize];
        let row = json!({ "p50_ns": q(0.5), "p90_ns": q(0.9), "p99_ns": q(0.99), "p999_ns": q(0.999), "max_ns": q(1.0) });
        if !j {
            say!(
                "concept lookup, {name:<6} ({} concepts, {lookups} uniform lookups, centroid read fully): p50 {} ns  p90 {} ns  p99 {} ns  p99.9 {} ns  max {} ns",
                ids.len(),
                q(0.5),
                q(0.9),
                q(0.99),
                q(0.999),
                q(1.0)
            );
        }
        results.insert(name.into(), row);
    }
    if j {
        say!("{}", Value::Object(results));
    }
    Ok(())
}

/// One concept lookup with its centroid read fully.
fn read(snap: &engram_core::ReadTxn, id: u64, cached: bool) -> Res<f32> {
    let sum = |v: &[f32]| v.iter().sum::<f32>();
    Ok(if cached {
        sum(snap
            .lookup_concept(id)
            .map_err(err)?
            .ok_or("concept vanished")?
            .centroid())
    } else {
        sum(snap
            .concept(id)
            .map_err(err)?
            .ok_or("concept vanished")?
            .centroid())
    })
}
