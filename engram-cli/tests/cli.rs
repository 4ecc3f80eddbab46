//! The `engram` binary as a user runs it: import → search → concepts → verify → compact →
//! backup → bench on the shipped fixture, `--json` parsed back, and bad files refused with
//! nothing committed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn engram(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_engram"))
        .args(args)
        .output()
        .expect("engram runs")
}

/// Runs and expects success; returns stdout.
fn ok(args: &[&str]) -> String {
    let out = engram(args);
    assert!(
        out.status.success(),
        "engram {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(&all)).expect("valid JSON")
}

/// Runs and expects failure; returns stderr.
fn fails(args: &[&str]) -> String {
    let out = engram(args);
    assert!(!out.status.success(), "engram {args:?} should have failed");
    String::from_utf8(out.stderr).unwrap()
}

fn sample(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/real-mpnet-sample")
        .join(file)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A new 2-d database written through the library, for what the binary reads of it.
fn two_dimensional(dir: &Path) -> engram_core::Engram {
    let opts = engram_core::Options {
        dimension: Some(2),
        ..engram_core::Options::default()
    };
    engram_core::Engram::open(dir, opts).unwrap()
}

/// A new database at `dir` holding the shipped sample's 4,000 vectors as episodes 0..4000
/// (agent 0, row i at time i), through the binary.
fn sample_database(dir: &Path) {
    ok(&["init", s(dir)]);
    ok(&["import", s(dir), "--vectors", s(&sample("vectors.npy"))]);
}

/// A read-only library handle on `dir`, to check what the binary wrote.
fn read_only(dir: &Path) -> engram_core::Engram {
    let opts = engram_core::Options {
        read_only: true,
        ..engram_core::Options::default()
    };
    engram_core::Engram::open(dir, opts).unwrap()
}

/// A float32 .npy of `rows` rows of `dim`.
fn write_npy(path: &Path, dim: usize, data: &[f32]) {
    let rows = data.len() / dim;
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(header.len() as u16).to_le_bytes());
    b.extend_from_slice(header.as_bytes());
    for x in data {
        b.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}

/// Rows of the shipped sample (768-d), read back through the CLI's own format.
fn sample_rows(ids: &[usize]) -> Vec<f32> {
    let bytes = std::fs::read(sample("vectors.npy")).unwrap();
    let start = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    ids.iter()
        .flat_map(|&i| {
            bytes[start + i * 768 * 4..start + (i + 1) * 768 * 4]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn a_user_session_from_import_to_bench() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    ok(&["init", s(&db)]);
    let imported = json(&[
        "import",
        s(&db),
        "--vectors",
        s(&sample("vectors.npy")),
        "--payloads",
        s(&sample("texts.tsv")),
    ]);
    assert_eq!(
        (
            imported["imported"].as_u64(),
            imported["first_id"].as_u64(),
            imported["last_id"].as_u64()
        ),
        (Some(4000), Some(0), Some(3999))
    );
    let stats = json(&["stats", s(&db)]);
    assert_eq!(stats["episodes"], 4000);
    assert_eq!(stats["dimension"], 768);

    // Row i of the file is episode i: its own vector finds it first.
    let queries = tmp.path().join("q.npy");
    write_npy(&queries, 768, &sample_rows(&[5, 17, 3999]));
    let tsv = ok(&[
        "search",
        s(&db),
        "--queries",
        s(&queries),
        "-k",
        "3",
        "--format",
        "tsv",
    ]);
    let lines: Vec<Vec<&str>> = tsv.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 3);
    for (line, (row, id)) in lines.iter().zip([("0", "5"), ("1", "17"), ("2", "3999")]) {
        assert_eq!((line[0], line[1], line.len()), (row, id, 4));
    }
    let hits = json(&["search", s(&db), "--queries", s(&queries), "-k", "2"]);
    assert_eq!(hits[1]["hits"][0]["id"], 17);
    // Readable output shows each hit's payload, on its line.
    let text = ok(&["search", s(&db), "--queries", s(&queries), "-k", "1"]);
    let first = text.lines().nth(1).unwrap();
    assert!(
        first.contains("episode 5 ") && first.contains("Battery Monitor is a battery monitor"),
        "{text}"
    );

    let formed = json(&["concepts", "form", s(&db), "--k", "8", "--min-size", "1"]);
    assert_eq!(formed["concepts"].as_array().unwrap().len(), 8);
    assert_eq!(formed["bound"], 4000);
    let list = json(&["concepts", "list", s(&db)]);
    assert_eq!(list.as_array().unwrap().len(), 8);
    let members: u64 = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["members"].as_u64().unwrap())
        .sum();
    assert_eq!(members, 4000);
    let shown = json(&["concepts", "show", s(&db), "0", "--top", "3"]);
    assert!((shown["centroid_norm"].as_f64().unwrap() - 1.0).abs() < 1e-4);
    assert_eq!(shown["top"].as_array().unwrap().len(), 3);
    // Episode 5 as the import stored it, bound to the concept that lists it as a member.
    let ep = json(&["episode", s(&db), "5"]);
    assert_eq!(
        (ep["agent"].as_u64(), ep["timestamp"].as_i64()),
        (Some(0), Some(5))
    );
    assert!(
        ep["payload"]
            .as_str()
            .unwrap()
            .starts_with("Battery Monitor is")
    );
    assert!((ep["embedding_norm"].as_f64().unwrap() - 1.0).abs() < 1e-3);
    let bound = ep["bindings"].as_array().unwrap();
    assert_eq!(bound.len(), 1);
    let c = bound[0]["concept"].to_string();
    let members = json(&["concepts", "show", s(&db), &c, "--top", "4000"]);
    assert!(
        members["top"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["episode"] == 5)
    );
    assert!(ok(&["episode", s(&db), "5"]).contains("bound to 1 concepts"));
    assert!(fails(&["episode", s(&db), "4000"]).contains("no episode 4000"));
    assert!(fails(&["episode", s(&db), "--key", "k"]).contains("no episode with key"));
    let via = json(&[
        "search",
        s(&db),
        "--queries",
        s(&queries),
        "-k",
        "2",
        "--via-concepts",
    ]);
    assert!(via[0]["hits"][0]["concept"].is_u64());

    let recalled = json(&[
        "recall",
        s(&db),
        "--queries",
        s(&queries),
        "-k",
        "3",
        "--hops",
        "2",
    ]);
    assert_eq!(recalled[2]["recalled"][0]["episode"], 3999);
    assert_eq!(recalled[2]["recalled"][0]["via"], "direct");
    assert!(
        ok(&[
            "recall",
            s(&db),
            "--queries",
            s(&queries),
            "--fan-alpha",
            "0.5"
        ])
        .contains("activation")
    );

    // Negative values reach the library's checks (clap took them for flags).
    let e = fails(&[
        "recall",
        s(&db),
        "--queries",
        s(&queries),
        "--fan-alpha",
        "-1",
    ]);
    assert!(e.contains("fan_alpha -1"), "{e}");
    let e = fails(&["concepts", "form", s(&db), "--min-coherence", "-5"]);
    assert!(e.contains("min_coherence -5 is not a cosine"), "{e}");

    let verified = json(&["verify", s(&db)]);
    assert_eq!(
        (verified["ok"].as_bool(), verified["bindings"].as_u64()),
        (Some(true), Some(4000))
    );
    json(&["compact", s(&db)]);
    let backup = tmp.path().join("copy");
    json(&["backup", s(&db), s(&backup)]);
    assert_eq!(json(&["verify", s(&backup)])["episodes"], 4000);
    let bench = json(&["bench", s(&db), "--lookups", "2000"]);
    assert!(
        bench["cached"]["p99_ns"].as_u64().unwrap() > 0
            && bench["mapped"]["p50_ns"].as_u64().unwrap() > 0
    );
    // Out-of-range lookup counts are refused by name, not by a panic.
    for n in ["0", "18446744073709551615"] {
        let err = fails(&["bench", s(&db), "--lookups", n]);
        assert!(
            err.contains("--lookups") && !err.contains("panicked"),
            "{err}"
        );
    }
    assert!(ok(&["stats", s(&db)]).contains("episodes 4000"));
    // Forget one episode, then agent 0's first hundred (import stamps row i with time i).
    assert_eq!(
        json(&["forget", s(&db), "--episode", "3999"])["forgotten"],
        1
    );
    assert_eq!(
        json(&["forget", s(&db), "--agent", "0", "--before", "-5"])["forgotten"],
        0
    );
    assert_eq!(
        json(&["forget", s(&db), "--agent", "0", "--before", "100"])["forgotten"],
        100
    );
    assert_eq!(json(&["verify", s(&db)])["episodes"], 3899);
    // The forgotten episodes and their bindings wait for the next compaction.
    let reclaimable = &json(&["stats", s(&db)])["reclaimable"];
    assert_eq!(
        (&reclaimable["episodes"], &reclaimable["bindings"]),
        (&Value::from(101), &Value::from(101))
    );
    assert!(ok(&["stats", s(&db)]).contains("101 episodes"));
    json(&["compact", s(&db)]);
    assert_eq!(json(&["stats", s(&db)])["reclaimable"]["bytes"], 0);
}

#[test]
fn bad_files_are_refused_with_the_row_and_nothing_is_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    ok(&["init", s(&db), "--dim", "4"]);
    let good: Vec<f32> = (0..12).map(|i| i as f32).collect();

    let truncated = tmp.path().join("t.npy");
    write_npy(&truncated, 4, &good);
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 6]).unwrap();
    let e = fails(&["import", s(&db), "--vectors", s(&truncated)]);
    assert!(e.contains("truncated") && e.contains("row 2"), "{e}");

    let nan = tmp.path().join("nan.npy");
    let mut bad = good.clone();
    bad[9] = f32::NAN;
    write_npy(&nan, 4, &bad);
    let e = fails(&["import", s(&db), "--vectors", s(&nan)]);
    assert!(e.contains("row 2") && e.contains("column 1"), "{e}");

    let wide = tmp.path().join("wide.npy");
    write_npy(&wide, 3, &good);
    let e = fails(&["import", s(&db), "--vectors", s(&wide)]);
    assert!(e.contains("3 dimensions, expected 4"), "{e}");

    let raw = tmp.path().join("v.f32");
    std::fs::write(
        &raw,
        good.iter()
            .flat_map(|x| x.to_le_bytes())
            .take(44)
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let e = fails(&["import", s(&db), "--vectors", s(&raw)]);
    assert!(e.contains("incomplete"), "{e}");

    let mut f64s = b"\x93NUMPY\x01\x00".to_vec();
    let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 4), }\n";
    f64s.extend_from_slice(&(header.len() as u16).to_le_bytes());
    f64s.extend_from_slice(header.as_bytes());
    f64s.extend_from_slice(&[0u8; 32]);
    let doubles = tmp.path().join("d.npy");
    std::fs::write(&doubles, f64s).unwrap();
    assert!(fails(&["import", s(&db), "--vectors", s(&doubles)]).contains("<f8"));

    // fvecs with a row of another dimension.
    let mut fv = Vec::new();
    for (d, n) in [(4i32, 4), (4, 4), (3, 3)] {
        fv.extend_from_slice(&d.to_le_bytes());
        for _ in 0..n {
            fv.extend_from_slice(&1f32.to_le_bytes());
        }
    }
    let fvecs = tmp.path().join("v.fvecs");
    std::fs::write(&fvecs, &fv).unwrap();
    assert!(fails(&["import", s(&db), "--vectors", s(&fvecs)]).contains("row 2 has 3 dimensions"));

    // Payload lines that do not match the rows, either way (the rows are streamed: the
    // count is only known at the end, and nothing may have been committed by then).
    let lines = tmp.path().join("p.tsv");
    let good_npy = tmp.path().join("g.npy");
    write_npy(&good_npy, 4, &good);
    for text in ["a\nb\n", "a\nb\nc\nd\n"] {
        std::fs::write(&lines, text).unwrap();
        let e = fails(&[
            "import",
            s(&db),
            "--vectors",
            s(&good_npy),
            "--payloads",
            s(&lines),
        ]);
        assert!(e.contains("payload lines for 3 vectors"), "{e}");
    }

    // A file with no rows is no error, and commits nothing either.
    let empty = tmp.path().join("e.npy");
    write_npy(&empty, 4, &[]);
    assert_eq!(
        json(&["import", s(&db), "--vectors", s(&empty)])["imported"],
        0
    );

    let stats = json(&["stats", s(&db)]);
    assert_eq!(stats["episodes"], 0, "nothing partial committed");
    assert_eq!(stats["last_commit"], 0, "no commit at all");

    // The good formats import, with stable ids.
    std::fs::write(&fvecs, &fv[..2 * 20]).unwrap();
    assert_eq!(
        json(&["import", s(&db), "--vectors", s(&fvecs)])["last_id"],
        1
    );
    std::fs::write(
        &raw,
        good.iter()
            .flat_map(|x| x.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    assert_eq!(
        json(&["import", s(&db), "--vectors", s(&raw), "--dim", "4"])["first_id"],
        2
    );
    assert_eq!(json(&["stats", s(&db)])["episodes"], 5);
    // A missing database is an error, not a new directory.
    assert!(fails(&["stats", s(&tmp.path().join("nope"))]).contains("nope"));
    assert!(!tmp.path().join("nope").exists());
}

#[test]
fn verify_fails_on_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    ok(&["init", s(&db), "--dim", "4"]);
    let v = tmp.path().join("v.npy");
    write_npy(&v, 4, &(0..40).map(|i| i as f32 + 1.0).collect::<Vec<_>>());
    ok(&["import", s(&db), "--vectors", s(&v)]);
    ok(&["verify", s(&db)]);
    let eps = std::fs::read_dir(&db)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "eps"))
        .unwrap();
    let mut bytes = std::fs::read(&eps).unwrap();
    bytes[70] ^= 1;
    std::fs::write(&eps, bytes).unwrap();
    let e = fails(&["verify", s(&db)]);
    assert!(e.contains("checksum"), "{e}");
}

/// What a library user stored (a key, a time to live, binary payload, accesses, two
/// bindings) is what `engram episode` shows, by key as by id.
#[test]
fn an_episode_written_by_the_library_shows_by_key() {
    use engram_core::{
        Clock, ConceptInput, Cue, Engram, EpisodeInput, Filter, Options, RecallParams, Ttl,
    };
    let tmp = tempfile::tempdir().unwrap();
    let opts = Options {
        dimension: Some(2),
        clock: Clock::new(|| 1_000),
        ..Options::default()
    };
    let id = {
        let db = Engram::open(tmp.path(), opts).unwrap();
        let mut tx = db.begin_write().unwrap();
        let id = tx
            .insert_episode_with_ttl(
                &EpisodeInput {
                    agent: 7,
                    timestamp: -3,
                    embedding: &[3.0, 4.0],
                    payload: b"bytes \xff here",
                    key: Some("msg-1".as_bytes()),
                },
                // The CLI reads with the real clock: an expiry in 2096 (µs).
                Ttl::At(4_000_000_000_000_000),
            )
            .unwrap();
        for (label, strength) in [("weak", 0.25), ("strong", 0.75)] {
            let c = tx
                .insert_concept(&ConceptInput {
                    centroid: &[1.0, 0.0],
                    label,
                })
                .unwrap();
            tx.bind(id, c, strength).unwrap();
        }
        tx.commit().unwrap();
        let cue = Cue {
            embedding: &[3.0, 4.0],
            filter: Filter::default(),
        };
        let params = RecallParams {
            record_access: true,
            ..RecallParams::default()
        };
        db.begin_read().unwrap().recall(&cue, &params).unwrap();
        db.persist_accesses().unwrap();
        id
    };
    let dir = s(tmp.path());
    let ep = json(&["episode", dir, "--key", "msg-1"]);
    assert_eq!(ep, json(&["episode", dir, &id.to_string()]));
    assert_eq!(ep["id"], id);
    assert_eq!(
        (ep["agent"].as_u64(), ep["timestamp"].as_i64()),
        (Some(7), Some(-3))
    );
    assert_eq!(ep["key"], "msg-1");
    assert_eq!(ep["expires_at"], 4_000_000_000_000_000i64);
    assert_eq!(
        (ep["access_count"].as_u64(), ep["last_access"].as_i64()),
        (Some(1), Some(1_000))
    );
    assert_eq!(ep["embedding_norm"], 5.0);
    assert_eq!(
        (ep["payload_bytes"].as_u64(), ep["payload"].as_str()),
        (Some(12), Some("bytes \u{fffd} here"))
    );
    let labels: Vec<&str> = ep["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["strong", "weak"], "strongest first");
    let text = ok(&["episode", dir, "--key", "msg-1"]);
    assert!(
        text.contains("expires at 4000000000000000")
            && text.contains("1 accesses, the last at 1000"),
        "{text}"
    );
}

/// Everything a library user stored about an episode (agent, timestamp, expiry, key, any
/// payload bytes, the embedding to the bit) survives `export` then `import` into a database
/// created with other settings, in every vector format; `--agent` exports one agent; an
/// export never overwrites a file, and a bad line commits nothing.
#[test]
fn export_then_import_moves_episodes_exactly() {
    use engram_core::{Engram, EpisodeInput, Options, Ttl};
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let payloads: [&[u8]; 4] = [
        b"plain",
        b"tab\tand\nnewline \"quoted\"",
        b"\xff\x00binary",
        b"",
    ];
    let keys: [Option<&[u8]>; 4] = [Some(b"k-0"), None, Some(b"\xfe\xff"), None];
    {
        let db = Engram::open(
            &src,
            Options {
                dimension: Some(3),
                ..Options::default()
            },
        )
        .unwrap();
        let mut tx = db.begin_write().unwrap();
        for i in 0..12u64 {
            let e = [
                i as f32 * 0.1 - 0.3,
                f32::MIN_POSITIVE * i as f32,
                1.0 / (i as f32 + 1.0),
            ];
            let key = keys[i as usize % 4].map(|k| [k, &i.to_le_bytes()].concat());
            let input = EpisodeInput {
                agent: i % 3,
                timestamp: i as i64 * 1_000 - 5_000,
                embedding: &e,
                payload: payloads[i as usize % 4],
                key: key.as_deref(),
            };
            // An expiry far in the future (µs), so the CLI's real clock keeps them all.
            let ttl = match i % 2 {
                0 => Ttl::At(4_000_000_000_000_000 + i as i64),
                _ => Ttl::Never,
            };
            tx.insert_episode_with_ttl(&input, ttl).unwrap();
        }
        tx.commit().unwrap();
        let mut tx = db.begin_write().unwrap();
        tx.delete_episode(4).unwrap();
        tx.commit().unwrap();
    }
    let read_back = |dir: &Path| {
        let db = read_only(dir);
        let snap = db.begin_read().unwrap();
        let ids = snap.episode_ids().unwrap();
        ids.iter()
            .map(|&id| {
                let ep = snap.episode(id).unwrap().unwrap();
                (
                    ep.agent(),
                    ep.timestamp(),
                    ep.expires_at().unwrap(),
                    ep.key().unwrap().map(<[u8]>::to_vec),
                    ep.payload().unwrap().to_vec(),
                    ep.embedding()
                        .iter()
                        .map(|x| x.to_bits())
                        .collect::<Vec<_>>(),
                )
            })
            .collect::<Vec<_>>()
    };
    let rows = read_back(&src);
    assert_eq!(rows.len(), 11);
    for ext in ["npy", "fvecs", "f32"] {
        let vectors = tmp.path().join(format!("out.{ext}"));
        let episodes = tmp.path().join(format!("out-{ext}.jsonl"));
        let r = json(&[
            "export",
            s(&src),
            "--vectors",
            s(&vectors),
            "--episodes",
            s(&episodes),
        ]);
        assert_eq!(r["exported"], 11);
        let dest = tmp.path().join(format!("dest-{ext}"));
        ok(&["init", s(&dest), "--dim", "3", "--int8", "--metric", "dot"]);
        ok(&[
            "import",
            s(&dest),
            "--vectors",
            s(&vectors),
            "--dim",
            "3",
            "--episodes",
            s(&episodes),
        ]);
        assert_eq!(read_back(&dest), rows, "{ext}");
        ok(&["verify", s(&dest)]);
    }
    // One agent's episodes only.
    let (v1, e1) = (tmp.path().join("a1.npy"), tmp.path().join("a1.jsonl"));
    ok(&[
        "export",
        s(&src),
        "--agent",
        "1",
        "--vectors",
        s(&v1),
        "--episodes",
        s(&e1),
    ]);
    let one = tmp.path().join("one");
    ok(&["init", s(&one), "--dim", "3"]);
    ok(&["import", s(&one), "--vectors", s(&v1), "--episodes", s(&e1)]);
    let want: Vec<_> = rows.iter().filter(|r| r.0 == 1).cloned().collect();
    assert_eq!(read_back(&one), want);
    // Loading it again stores the rows without a key anew; a row with a key gets the
    // episode stored the first time back, and is reported so.
    let again = json(&["import", s(&one), "--vectors", s(&v1), "--episodes", s(&e1)]);
    let keyed = want.iter().filter(|r| r.3.is_some()).count() as u64;
    assert!(keyed > 0 && keyed < want.len() as u64);
    assert_eq!(again["rows"], want.len() as u64);
    assert_eq!(again["already_stored"], keyed);
    assert_eq!(again["imported"], want.len() as u64 - keyed);
    let text = ok(&["import", s(&one), "--vectors", s(&v1), "--episodes", s(&e1)]);
    assert!(
        text.contains(&format!("{keyed} rows named a key already stored")),
        "{text}"
    );
    let mut after = want.clone();
    after.extend(want.iter().filter(|r| r.3.is_none()).cloned());
    after.extend(want.iter().filter(|r| r.3.is_none()).cloned());
    assert_eq!(read_back(&one), after);
    // Never over an existing file, and nothing left behind when refused.
    let e = fails(&["export", s(&src), "--vectors", s(&v1)]);
    assert!(e.contains("exists"), "{e}");
    let fresh = tmp.path().join("fresh.npy");
    let e = fails(&[
        "export",
        s(&src),
        "--vectors",
        s(&fresh),
        "--episodes",
        s(&e1),
    ]);
    assert!(e.contains("exists"), "{e}");
    assert!(!fresh.exists());
    // A bad line, a missing line or one too many: the import commits nothing.
    let text = std::fs::read_to_string(&e1).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for (name, body, why) in [
        (
            "typo",
            text.replacen("\"timestamp\"", "\"timestmap\"", 1),
            "line 1: unknown field \"timestmap\"",
        ),
        ("short", lines[1..].join("\n"), "lines in"),
        ("long", format!("{text}{{}}\n"), "lines in"),
        (
            "hex",
            text.replacen("\"payload\"", "\"payload_hex\"", 1),
            "line 1: payload_hex",
        ),
    ] {
        let bad = tmp.path().join(format!("{name}.jsonl"));
        std::fs::write(&bad, body).unwrap();
        let e = fails(&[
            "import",
            s(&one),
            "--vectors",
            s(&v1),
            "--episodes",
            s(&bad),
        ]);
        assert!(e.contains(why), "{name}: {e}");
        assert_eq!(read_back(&one), after, "{name}: nothing committed");
    }
}

/// `engram networks` lists what agents stored and shows one network's tensors as the library
/// wrote them: shape, blocks per encoding, and the range of the weights read back.
#[test]
fn networks_are_listed_and_shown() {
    use engram_core::TensorInput;
    use engram_core::quant::QuantScheme;
    let tmp = tempfile::tempdir().unwrap();
    let dir = s(tmp.path());
    let w: Vec<f32> = (0..4 * 40).map(|i| (i as f32 - 80.0) / 64.0).collect();
    let imp: Vec<f32> = (0..4 * 40).map(|i| (i / 40) as f32).collect();
    {
        let db = two_dimensional(tmp.path());
        let mut tx = db.begin_write().unwrap();
        let t = |name, importance| TensorInput {
            name,
            shape: &[4, 40],
            data: &w,
            importance,
        };
        tx.put_network(
            3,
            "policy",
            &[t("w0", None), t("w1", None)],
            QuantScheme::Q8,
        )
        .unwrap();
        let mixed = QuantScheme::Mixed {
            f16: 0.25,
            q8: 0.25,
        };
        tx.put_network(9, "value", &[t("v", Some(&imp[..]))], mixed)
            .unwrap();
        tx.commit().unwrap();
    }
    let empty = tempfile::tempdir().unwrap();
    drop(two_dimensional(empty.path()));
    assert_eq!(ok(&["networks", s(empty.path())]), "no networks stored\n");
    assert_eq!(json(&["networks", s(empty.path())]), serde_json::json!([]));
    let list = json(&["networks", dir]);
    let names: Vec<(u64, &str, u64)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["agent"].as_u64().unwrap(),
                n["name"].as_str().unwrap(),
                n["tensors"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(names, [(3, "policy", 2), (9, "value", 1)]);
    // 4 rows of 40 weights: 2 blocks per row, 8 blocks; Q8 blocks are 34 bytes.
    let policy = json(&["networks", dir, "--agent", "3", "--name", "policy"]);
    assert_eq!(policy["bytes"], 2 * 8 * 34);
    let t0 = &policy["tensors"][0];
    assert_eq!(
        (t0["name"].as_str(), t0["shape"].clone()),
        (Some("w0"), serde_json::json!([4, 40]))
    );
    assert_eq!(
        t0["blocks"],
        serde_json::json!({ "q8": 8, "q4": 0, "f16": 0 })
    );
    let (lo, hi) = (t0["min"].as_f64().unwrap(), t0["max"].as_f64().unwrap());
    assert!(
        (lo + 1.25).abs() < 0.01 && (hi - 79.0 / 64.0).abs() < 0.01,
        "{lo}..{hi}"
    );
    // The most important quarter of blocks (the last row's two) in F16, the next in Q8.
    let value = json(&["networks", dir, "--agent", "9", "--name", "value"]);
    assert_eq!(
        value["tensors"][0]["blocks"],
        serde_json::json!({ "q8": 2, "q4": 4, "f16": 2 })
    );
    let text = ok(&["networks", dir, "--agent", "9", "--name", "value"]);
    assert!(text.contains("blocks q8 2 q4 4 f16 2"), "{text}");
    let e = fails(&["networks", dir, "--agent", "9", "--name", "policy"]);
    assert!(e.contains("agent 9 has no network \"policy\""), "{e}");
    assert!(fails(&["networks", dir, "--agent", "9"]).contains("--name"));

    // One tensor's weights out, dequantized, as the library reads them.
    let out = tmp.path().join("v.npy");
    let args = [
        "networks", dir, "--agent", "9", "--name", "value", "--tensor", "v",
    ];
    let written = json(&[&args[..], &["--out", s(&out)]].concat());
    assert_eq!(
        (written["rows"].as_u64(), written["cols"].as_u64()),
        (Some(4), Some(40))
    );
    let bytes = std::fs::read(&out).unwrap();
    let header =
        std::str::from_utf8(&bytes[10..10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize])
            .unwrap();
    assert!(header.contains("'shape': (4, 40)"), "{header}");
    let got: Vec<f32> = bytes[10 + header.len()..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let db = read_only(tmp.path());
    let snap = db.begin_read().unwrap();
    let mut want = vec![0f32; 160];
    let net = snap.network(9, "value").unwrap().unwrap();
    net.tensor("v")
        .unwrap()
        .unwrap()
        .dequantize_into(&mut want)
        .unwrap();
    assert_eq!(got, want);
    assert!(fails(&[&args[..], &["--out", s(&out)]].concat()).contains("exists"));
    let mut missing = args;
    missing[7] = "nope";
    let e = fails(&[&missing[..], &["--out", s(&tmp.path().join("n.npy"))]].concat());
    assert!(e.contains("has no tensor \"nope\""), "{e}");
    assert!(fails(&[&args[..]].concat()).contains("--out"));

    // Every network out as stored, and into another database block for block.
    let dump = tmp.path().join("nets.jsonl");
    let out = json(&["networks", dir, "--export", s(&dump)]);
    assert_eq!(
        (out["exported"].as_u64(), out["bytes"].as_u64()),
        (Some(2), Some(2 * 8 * 34 + 8 + 2 * 64 + 2 * 34 + 4 * 18))
    );
    assert!(fails(&["networks", dir, "--export", s(&dump)]).contains("exists"));
    let other = tempfile::tempdir().unwrap();
    drop(two_dimensional(other.path()));
    assert_eq!(
        json(&["networks", s(other.path()), "--import", s(&dump)])["imported"],
        2
    );
    assert_eq!(json(&["networks", s(other.path())]), list);
    let show = |d: &str| json(&["networks", d, "--agent", "9", "--name", "value"]);
    let (a, b) = (show(dir), show(s(other.path())));
    assert_eq!((&a["tensors"], &a["bytes"]), (&b["tensors"], &b["bytes"]));
    let copied = tmp.path().join("copied.npy");
    let args2 = [
        "networks",
        s(other.path()),
        "--agent",
        "9",
        "--name",
        "value",
        "--tensor",
        "v",
        "--out",
        s(&copied),
    ];
    ok(&args2);
    assert_eq!(std::fs::read(&copied).unwrap(), bytes);
    // One agent's network only; a line whose blocks do not fit its shape stores nothing.
    let one = tmp.path().join("one.jsonl");
    ok(&[
        "networks",
        dir,
        "--agent",
        "3",
        "--name",
        "policy",
        "--export",
        s(&one),
    ]);
    let line = std::fs::read_to_string(&one).unwrap();
    assert!(line.starts_with("{\"agent\":3,\"name\":\"policy\"") && line.lines().count() == 1);
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        format!(
            "{line}{}",
            line.replace("\"shape\":[4,40]", "\"shape\":[5,40]")
        ),
    )
    .unwrap();
    let fresh = tempfile::tempdir().unwrap();
    drop(two_dimensional(fresh.path()));
    let e = fails(&["networks", s(fresh.path()), "--import", s(&bad)]);
    assert!(e.contains("line 2: tensor w0"), "{e}");
    assert_eq!(json(&["networks", s(fresh.path())]), serde_json::json!([]));
    std::fs::write(&bad, "\n").unwrap();
    assert_eq!(
        json(&["networks", s(fresh.path()), "--import", s(&bad)])["imported"],
        0
    );
}

/// `engram agents` sums each agent's live episodes (count, time span, payload bytes, how
/// many expire) beside its default time to live and its networks, agents with networks
/// only included; `--agent A --ttl T|none` sets or clears a default time to live.
#[test]
fn agents_are_summed_from_their_episodes() {
    use engram_core::quant::QuantScheme;
    use engram_core::{EpisodeInput, TensorInput, Ttl};
    let tmp = tempfile::tempdir().unwrap();
    let dir = s(tmp.path());
    {
        let db = two_dimensional(tmp.path());
        let mut tx = db.begin_write().unwrap();
        // An expiry far in the future (µs), so the CLI's real clock keeps them all.
        tx.set_agent_ttl(1, Some(4_000_000_000_000_000)).unwrap();
        for (agent, timestamp, payload, ttl) in [
            (1, 50, &b"abc"[..], Ttl::AgentDefault),
            (1, -7, b"de", Ttl::Never),
            (1, 20, b"", Ttl::Never),
            (2, 9, b"0123456789", Ttl::Never),
            (2, 10, b"gone", Ttl::Never),
        ] {
            let input = EpisodeInput {
                agent,
                timestamp,
                embedding: &[1.0, 0.0],
                payload,
                key: None,
            };
            tx.insert_episode_with_ttl(&input, ttl).unwrap();
        }
        tx.delete_episode(4).unwrap();
        let w = TensorInput {
            name: "w",
            shape: &[1, 32],
            data: &[0.5; 32],
            importance: None,
        };
        tx.put_network(3, "policy", &[w], QuantScheme::Q8).unwrap();
        tx.put_network(1, "critic", &[w], QuantScheme::Q8).unwrap();
        tx.commit().unwrap();
    }
    let v = json(&["agents", dir]);
    assert_eq!(
        v,
        serde_json::json!([
            { "agent": 1, "episodes": 3, "first_timestamp": -7, "last_timestamp": 50, "payload_bytes": 5,
              "expiring": 1, "default_ttl": 4_000_000_000_000_000i64, "networks": ["critic"] },
            { "agent": 2, "episodes": 1, "first_timestamp": 9, "last_timestamp": 9, "payload_bytes": 10,
              "expiring": 0, "default_ttl": null, "networks": [] },
            { "agent": 3, "episodes": 0, "first_timestamp": null, "last_timestamp": null, "payload_bytes": 0,
              "expiring": 0, "default_ttl": null, "networks": ["policy"] },
        ])
    );
    let text = ok(&["agents", dir]);
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(
        text.lines().nth(3).unwrap().trim_start().starts_with("3 "),
        "{text}"
    );

    // --agent --ttl sets a default time to live (an agent with nothing else is listed for
    // it), `none` clears one, and a bad value commits nothing.
    let ttl_of = |v: &Value, agent: u64| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|a| a["agent"] == agent)
            .map(|a| a["default_ttl"].clone())
    };
    let v = json(&["agents", dir, "--agent", "5", "--ttl", "86400000000"]);
    assert_eq!(ttl_of(&v, 5), Some(serde_json::json!(86_400_000_000i64)));
    let v = json(&["agents", dir, "--agent", "1", "--ttl", "none"]);
    assert_eq!(ttl_of(&v, 1), Some(Value::Null));
    for bad in ["soon", "0", "-3"] {
        let e = fails(&["agents", dir, "--agent", "5", "--ttl", bad]);
        assert!(
            e.contains("ttl") || e.contains("time to live"),
            "{bad}: {e}"
        );
    }
    fails(&["agents", dir, "--ttl", "5"]);
    let v = json(&["agents", dir]);
    assert_eq!(ttl_of(&v, 5), Some(serde_json::json!(86_400_000_000i64)));
    let db = read_only(tmp.path());
    assert_eq!(db.begin_read().unwrap().agent_ttls(), [(5, 86_400_000_000)]);
}

#[test]
fn backup_copies_into_other_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, wide, narrow) = (
        tmp.path().join("db"),
        tmp.path().join("int8"),
        tmp.path().join("plain"),
    );
    sample_database(&db);
    ok(&["concepts", "form", s(&db), "--k", "5"]);
    let copied = json(&[
        "backup",
        s(&db),
        s(&wide),
        "--int8",
        "--metric",
        "dot",
        "--model",
        "mpnet",
    ]);
    assert_eq!(
        copied["changed"],
        serde_json::json!(["metric Dot", "model mpnet", "int8 mirror added"])
    );
    let stats = json(&["stats", s(&wide)]);
    assert_eq!(
        (&stats["metric"], &stats["model"], &stats["int8_mirror"]),
        (&"Dot".into(), &"mpnet".into(), &true.into())
    );
    let concepts = |dir: &Path| json(&["concepts", "list", s(dir)]);
    assert_eq!(concepts(&wide), concepts(&db));
    // The new mirror answers, and agrees with the exact scan.
    let queries = tmp.path().join("q.npy");
    write_npy(&queries, 768, &sample_rows(&[5, 17, 3999]));
    let search = |dir: &Path, int8: bool| {
        let mut args = vec![
            "search",
            s(dir),
            "--queries",
            s(&queries),
            "--format",
            "tsv",
        ];
        args.extend(int8.then_some("--int8"));
        ok(&args)
    };
    assert_eq!(search(&wide, true), search(&wide, false));

    // And back, the mirror and model dropped.
    let copied = json(&["backup", s(&wide), s(&narrow), "--no-int8", "--no-model"]);
    assert_eq!(
        copied["changed"],
        serde_json::json!(["no model", "int8 mirror dropped"])
    );
    assert!(
        fails(&["search", s(&narrow), "--queries", s(&queries), "--int8"]).contains("int8 mirror")
    );
    assert_eq!(concepts(&narrow), concepts(&db));
    assert_eq!(json(&["verify", s(&narrow)])["episodes"], 4000);
    let err = fails(&[
        "backup",
        s(&db),
        s(&tmp.path().join("x")),
        "--int8",
        "--no-int8",
    ]);
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn search_recall_and_formation_take_an_agent_and_a_time_range() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    // Import stamps row i with time i; the second half goes to agent 9.
    sample_database(&db);
    let lib = engram_core::Engram::open(&db, engram_core::Options::default()).unwrap();
    let mut tx = lib.begin_write().unwrap();
    tx.forget_where(0, 2000).unwrap();
    for row in sample_rows(&(0..2000).collect::<Vec<_>>()).chunks(768) {
        let ep = engram_core::EpisodeInput {
            agent: 9,
            timestamp: 10_000,
            embedding: row,
            payload: b"",
            key: None,
        };
        tx.insert_episode(&ep).unwrap();
    }
    tx.commit().unwrap();
    drop(lib);
    let queries = tmp.path().join("q.npy");
    write_npy(&queries, 768, &sample_rows(&[5, 150, 2500]));
    let ids = |args: &[&str]| -> Vec<u64> {
        let mut all = vec!["search", s(&db), "--queries", s(&queries), "-k", "5"];
        all.extend_from_slice(args);
        json(&all)
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|q| q["hits"].as_array().unwrap().clone())
            .map(|h| h["id"].as_u64().unwrap())
            .collect()
    };
    // Agent 0 kept rows 2000..4000 (ids and times alike); agent 9 has ids 4000.. at 10,000.
    let window = ids(&["--from", "2100", "--until", "2200"]);
    assert_eq!(window.len(), 15);
    assert!(
        window.iter().all(|id| (2100..2200).contains(id)),
        "{window:?}"
    );
    assert!(ids(&["--agent", "9"]).iter().all(|&id| id >= 4000));
    assert!(ids(&["--agent", "3"]).is_empty());
    assert!(ids(&["--until", "-1"]).is_empty());
    // Row 5's own vector is agent 9's episode 4005: found first unless filtered out.
    assert_eq!(ids(&["--agent", "9"])[0], 4005);
    assert_ne!(ids(&["--agent", "0"])[0], 4005);

    let recalled = json(&[
        "recall",
        s(&db),
        "--queries",
        s(&queries),
        "--hops",
        "0",
        "--agent",
        "0",
    ]);
    for q in recalled.as_array().unwrap() {
        for r in q["recalled"].as_array().unwrap() {
            assert!(
                (2000..4000).contains(&r["episode"].as_u64().unwrap()),
                "{r}"
            );
        }
    }
    let formed = json(&[
        "concepts",
        "form",
        s(&db),
        "--k",
        "4",
        "--agent",
        "9",
        "--until",
        "20000",
    ]);
    assert_eq!(formed["episodes"], 2000, "{formed}");

    let err = fails(&[
        "search",
        s(&db),
        "--queries",
        s(&queries),
        "--from",
        "7",
        "--until",
        "7",
    ]);
    assert!(err.contains("--from 7 is not before --until 7"), "{err}");
    let err = fails(&[
        "search",
        s(&db),
        "--queries",
        s(&queries),
        "--via-concepts",
        "--agent",
        "1",
    ]);
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn concepts_move_between_databases_over_the_same_episodes() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, twin) = (tmp.path().join("db"), tmp.path().join("twin"));
    sample_database(&db);
    // The same episodes under the same ids, without concepts.
    ok(&["backup", s(&db), s(&twin)]);
    ok(&["concepts", "form", s(&db), "--k", "6"]);
    // And one placed by hand, with a label that needs escaping and a strength of its own.
    let lib = engram_core::Engram::open(&db, engram_core::Options::default()).unwrap();
    let mut tx = lib.begin_write().unwrap();
    let centroid: Vec<f32> = (0..768).map(|i| (i as f32 * 0.37).sin() / 17.0).collect();
    let input = engram_core::ConceptInput {
        centroid: &centroid,
        label: "tab\there \"quoted\"",
    };
    let hand = tx.insert_concept(&input).unwrap();
    tx.bind(3, hand, -0.25).unwrap();
    tx.commit().unwrap();
    drop(lib);

    let file = tmp.path().join("c.jsonl");
    let out = json(&["concepts", "export", s(&db), s(&file)]);
    assert_eq!(
        (out["exported"].as_u64(), out["bindings"].as_u64()),
        (Some(7), Some(4001))
    );
    assert!(fails(&["concepts", "export", s(&db), s(&file)]).contains("exists"));
    let imported = json(&["concepts", "import", s(&twin), s(&file)]);
    assert_eq!(
        (
            imported["imported"].as_u64(),
            imported["first_id"].as_u64(),
            imported["bindings"].as_u64()
        ),
        (Some(7), Some(0), Some(4001))
    );
    // Centroids bit for bit, labels, and every binding with its strength.
    let (a, b) = (read_only(&db), read_only(&twin));
    let (a, b) = (a.begin_read().unwrap(), b.begin_read().unwrap());
    for id in 0..7 {
        let (ca, cb) = (
            a.concept(id).unwrap().unwrap(),
            b.concept(id).unwrap().unwrap(),
        );
        let bits = |c: &[f32]| c.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(ca.centroid()), bits(cb.centroid()), "concept {id}");
        assert_eq!(ca.label().unwrap(), cb.label().unwrap());
        let mut ba = a.bindings_of_concept(id).unwrap();
        let mut bb = b.bindings_of_concept(id).unwrap();
        ba.sort_by_key(|x| x.episode);
        bb.sort_by_key(|x| x.episode);
        assert_eq!(ba, bb, "concept {id}");
    }
    assert_eq!(b.binding_strength(3, hand).unwrap(), Some(-0.25));
    b.verify().unwrap();

    // A bad line anywhere commits nothing, and names its line.
    let lines = std::fs::read_to_string(&file).unwrap();
    let bad = tmp.path().join("bad.jsonl");
    let broken = [
        (r#"{"centroid": [1, 2]}"#, "dimension mismatch"),
        (r#"{"centroid": "x"}"#, "centroid is not an array"),
        (r#"{"label": "no centroid"}"#, "no centroid"),
    ];
    for (line, why) in broken {
        std::fs::write(&bad, format!("{lines}{line}\n")).unwrap();
        let e = fails(&["concepts", "import", s(&twin), s(&bad)]);
        assert!(e.contains("line 8") && e.contains(why), "{e}");
    }
    let unknown = lines.replacen("[[", "[[4000000,1],[", 1);
    std::fs::write(&bad, unknown).unwrap();
    let e = fails(&["concepts", "import", s(&twin), s(&bad)]);
    assert!(e.contains("line 1: episode 4000000 not found"), "{e}");
    std::fs::write(&bad, "\n").unwrap();
    assert_eq!(
        json(&["concepts", "import", s(&twin), s(&bad)])["imported"],
        0
    );
    assert_eq!(json(&["stats", s(&twin)])["concepts"], 7);
}

/// Episodes and concepts out of one database and into a new one, whose ids differ (the
/// source had gaps): the import's id map carries each binding to its episode's new id.
#[test]
fn an_id_map_carries_bindings_across_renumbered_episodes() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, new) = (tmp.path().join("db"), tmp.path().join("new"));
    sample_database(&db);
    ok(&["forget", s(&db), "--agent", "0", "--before", "100"]);
    ok(&["concepts", "form", s(&db), "--k", "4"]);
    let path = |name: &str| tmp.path().join(name);
    let (v, e, c, m) = (
        path("v.npy"),
        path("e.jsonl"),
        path("c.jsonl"),
        path("map.tsv"),
    );
    ok(&["export", s(&db), "--vectors", s(&v), "--episodes", s(&e)]);
    ok(&["concepts", "export", s(&db), s(&c)]);
    ok(&["init", s(&new)]);
    // A map needs the ids the episodes file gives.
    let err = fails(&["import", s(&new), "--vectors", s(&v), "--id-map", s(&m)]);
    assert!(err.contains("--episodes"), "{err}");
    let imported = json(&[
        "import",
        s(&new),
        "--vectors",
        s(&v),
        "--episodes",
        s(&e),
        "--id-map",
        s(&m),
    ]);
    assert_eq!(imported["imported"], 3900);
    let map: std::collections::HashMap<u64, u64> = std::fs::read_to_string(&m)
        .unwrap()
        .lines()
        .map(|l| {
            let (a, b) = l.split_once('\t').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect();
    assert_eq!((map.len(), map[&100], map[&3999]), (3900, 0, 3899));
    // Without it the old ids name episodes past the new database's (3999 > 3899).
    let err = fails(&["concepts", "import", s(&new), s(&c)]);
    assert!(
        err.contains("line 1: episode") && err.contains("not found"),
        "{err}"
    );
    assert_eq!(
        json(&["concepts", "import", s(&new), s(&c), "--id-map", s(&m)])["bindings"],
        3900
    );

    let (a, b) = (read_only(&db), read_only(&new));
    let (a, b) = (a.begin_read().unwrap(), b.begin_read().unwrap());
    for id in 0..4 {
        let mut want: Vec<u64> = a
            .bindings_of_concept(id)
            .unwrap()
            .iter()
            .map(|x| map[&x.episode])
            .collect();
        let mut got: Vec<u64> = b
            .bindings_of_concept(id)
            .unwrap()
            .iter()
            .map(|x| x.episode)
            .collect();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want, "concept {id}");
    }
    for (&old, &now) in map.iter().take(50) {
        let (x, y) = (
            a.episode(old).unwrap().unwrap(),
            b.episode(now).unwrap().unwrap(),
        );
        assert_eq!(
            (x.embedding(), x.payload().unwrap()),
            (y.embedding(), y.payload().unwrap())
        );
    }
    // A map that lacks an episode is refused by line, and nothing is stored.
    let short = path("short.tsv");
    std::fs::write(&short, "100\t0\n").unwrap();
    let err = fails(&["concepts", "import", s(&new), s(&c), "--id-map", s(&short)]);
    assert!(
        err.contains("line 1: episode") && err.contains("is not in the id map"),
        "{err}"
    );
    std::fs::write(&short, "100 0\n").unwrap();
    let err = fails(&["concepts", "import", s(&new), s(&c), "--id-map", s(&short)]);
    assert!(err.contains("line 1: not `old id<TAB>new id`"), "{err}");
    assert_eq!(json(&["stats", s(&new)])["concepts"], 4);
}

/// `engram episodes` lists the newest first (or, with --first, the oldest), filtered, with
/// payloads; deleted episodes are skipped.
#[test]
fn episodes_lists_the_newest_first_filtered() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = two_dimensional(&dir);
    let mut tx = db.begin_write().unwrap();
    for i in 0..50u64 {
        let payload = match i {
            45 => vec![0xff, 0],
            _ => format!("event {i}\nsecond line").into_bytes(),
        };
        tx.insert_episode(&engram_core::EpisodeInput {
            agent: i % 3,
            timestamp: i as i64 * 10,
            embedding: &[1.0, i as f32],
            payload: &payload,
            key: (i == 47).then_some(b"k47".as_slice()),
        })
        .unwrap();
    }
    tx.delete_episode(49).unwrap();
    tx.commit().unwrap();
    drop(db);
    let ids = |v: &Value| -> Vec<u64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_u64().unwrap())
            .collect()
    };
    // JSON: each as `export --episodes` writes it (bytes that are not UTF-8 in hex).
    let newest = json(&["episodes", s(&dir), "--last", "4"]);
    assert_eq!(ids(&newest), [48, 47, 46, 45]);
    assert_eq!(newest[1]["key"], "k47");
    assert_eq!(newest[1]["payload"], "event 47\nsecond line");
    assert_eq!(newest[0]["timestamp"], 480);
    assert!(newest[0]["expires_at"].is_null());
    assert_eq!(newest[3]["payload_hex"], "ff00");
    // Agent 1's newest in a window, and the oldest of all.
    let agent = json(&[
        "episodes",
        s(&dir),
        "--agent",
        "1",
        "--until",
        "400",
        "--last",
        "2",
    ]);
    assert_eq!(ids(&agent), [37, 34]);
    assert_eq!(
        ids(&json(&[
            "episodes",
            s(&dir),
            "--first",
            "2",
            "--from",
            "15"
        ])),
        [2, 3]
    );
    assert_eq!(
        ids(&json(&["episodes", s(&dir), "--agent", "7"])),
        Vec::<u64>::new()
    );
    // Text: a header, then one line per episode, its payload on that line.
    let text = ok(&["episodes", s(&dir), "--last", "2"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[1].trim_start().starts_with("48") && lines[1].ends_with("event 48 second line"));
    assert!(fails(&["episodes", s(&dir), "--from", "5", "--until", "5"]).contains("--from"));
    fails(&["episodes", s(&dir), "--first", "1", "--last", "1"]);
}
