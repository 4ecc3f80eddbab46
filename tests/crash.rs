//! Crash consistency: a child process commits batches and acknowledges each on stdout; the
//! parent SIGKILLs it at random moments (during commits and compactions), reopens, and
//! checks that every acknowledged batch is there, whole (episodes, concept, bindings, a
//! network version, a `forget_where` of the previous batch's scratch episodes, and an
//! episode whose time to live ends two batches later), and no partial batch is visible.
//! `ENGRAM_CRASH_KILLS=N` (or `ENGRAM_SOAK_KILLS=N`) runs N kills (default 60).
//! A second child creates databases in a loop, and every directory a kill leaves opens.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use engram_core::quant::QuantScheme;
use engram_core::{Clock, ConceptInput, Engram, EpisodeInput, Options, TensorInput, Ttl};

/// The database clock: the child sets it to the batch it writes, the checker to the number
/// of complete batches.
static NOW: AtomicI64 = AtomicI64::new(0);
/// Agent of batch n's scratch episodes: `SCRATCH + n`; `SCRATCH - 1` owns the expiring ones.
const SCRATCH: u64 = 1 << 40;

const DIM: usize = 64;
const BATCH: u64 = 100;

fn opts() -> Options {
    Options {
        dimension: Some(DIM),
        clock: Clock::new(|| NOW.load(Ordering::SeqCst)),
        ..Options::default()
    }
}

fn vector(batch: u64, i: u64) -> Vec<f32> {
    (0..DIM as u64)
        .map(|d| ((batch * 1_000 + i * 13 + d) % 101) as f32 / 101.0)
        .collect()
}

fn key(batch: u64, i: u64) -> String {
    format!("b{batch}-{i}")
}

/// Checks the database; returns the number of complete batches (the next to write).
/// Batch n also deletes episode 0 of batch n - 3, in the same commit.
fn verify(dir: &std::path::Path) -> u64 {
    let db = Engram::open(dir, opts()).expect("reopen after kill");
    let snap = db.begin_read().unwrap();
    let present = |b: u64| snap.episode_by_key(key(b, 1).as_bytes()).unwrap().is_some();
    let mut batch = 0;
    while present(batch) {
        let label = format!("batch {batch}");
        let deleted_by_later = present(batch + 3);
        let mut concept = None;
        for i in 0..BATCH {
            let ep = snap.episode_by_key(key(batch, i).as_bytes()).unwrap();
            if i == 0 && deleted_by_later {
                assert!(
                    ep.is_none(),
                    "delete committed with batch {} is missing",
                    batch + 3
                );
                continue;
            }
            let ep = ep.unwrap_or_else(|| panic!("batch {batch} is partial: episode {i} missing"));
            assert_eq!(ep.embedding(), vector(batch, i).as_slice());
            assert_eq!(ep.payload().unwrap(), label.as_bytes());
            let b = snap.bindings_of_episode(ep.id()).unwrap();
            assert_eq!(b.len(), 1, "batch {batch} episode {i} bindings");
            concept = Some(b[0].concept);
        }
        let c = concept.unwrap();
        assert_eq!(snap.concept(c).unwrap().unwrap().label().unwrap(), label);
        let fan = BATCH as usize - usize::from(deleted_by_later);
        assert_eq!(
            snap.concept_fan_count(c).unwrap(),
            fan,
            "batch {batch} fan count"
        );
        batch += 1;
    }
    // Batch n also stores agent n % 5's network, all weights n: the newest complete batch of
    // each agent wins, and nothing of a partial batch shows.
    for agent in 0..5u64 {
        let newest = (0..batch).rev().find(|b| b % 5 == agent);
        let net = snap.network(agent, "policy").unwrap();
        match (newest, net) {
            (None, None) => {}
            (Some(b), Some(net)) => {
                let t = net.tensor("w").unwrap().expect("tensor w");
                let mut w = [0f32; 64];
                t.dequantize_into(&mut w).unwrap();
                assert!(
                    w.iter().all(|&x| x == b as f32),
                    "agent {agent}: {} for batch {b}",
                    w[0]
                );
            }
            (b, n) => panic!(
                "agent {agent}: newest batch {b:?}, network present {}",
                n.is_some()
            ),
        }
    }
    // Scratch episodes: batch n stores s{n}-0..2 (timestamps 0..2) and forgets the previous
    // batch's two older ones in the same commit; t{n} expires at clock n + 2.
    NOW.store(batch as i64, Ordering::SeqCst);
    let now = db.begin_read().unwrap();
    let has = |k: String| now.episode_by_key(k.as_bytes()).unwrap().is_some();
    for b in 0..batch {
        let forgotten = b + 1 < batch;
        for t in 0..3 {
            let expect = t == 2 || !forgotten;
            assert_eq!(has(format!("s{b}-{t}")), expect, "scratch s{b}-{t}");
        }
        assert_eq!(
            has(format!("t{b}")),
            b + 2 > batch,
            "ttl episode of batch {b}"
        );
    }
    for later in batch..batch + 3 {
        assert!(!has(format!("t{later}")) && !has(format!("s{later}-2")));
        for i in 0..BATCH {
            assert!(
                snap.episode_by_key(key(later, i).as_bytes())
                    .unwrap()
                    .is_none(),
                "batch {later} partially visible"
            );
        }
    }
    batch
}

/// The child: writes batches forever from `ENGRAM_CRASH_START`, printing `ACK n` after each
/// commit returns. Does nothing in a normal test run.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var("ENGRAM_CRASH_CHILD") else {
        return;
    };
    let mut batch: u64 = std::env::var("ENGRAM_CRASH_START")
        .unwrap()
        .parse()
        .unwrap();
    let db = Engram::open(&dir, opts()).unwrap();
    loop {
        let label = format!("batch {batch}");
        NOW.store(batch as i64, Ordering::SeqCst);
        let mut tx = db.begin_write().unwrap();
        for t in 0..3 {
            let k = format!("s{batch}-{t}");
            let ep = EpisodeInput {
                agent: SCRATCH + batch,
                timestamp: t,
                embedding: &vector(batch, 1_000),
                payload: b"",
                key: Some(k.as_bytes()),
            };
            tx.insert_episode(&ep).unwrap();
        }
        if batch > 0 {
            assert_eq!(tx.forget_where(SCRATCH + batch - 1, 2).unwrap(), 2);
        }
        let k = format!("t{batch}");
        let ep = EpisodeInput {
            agent: SCRATCH - 1,
            timestamp: 0,
            embedding: &vector(batch, 1_001),
            payload: b"",
            key: Some(k.as_bytes()),
        };
        tx.insert_episode_with_ttl(&ep, Ttl::At(batch as i64 + 2))
            .unwrap();
        let c = tx
            .insert_concept(&ConceptInput {
                centroid: &vector(batch, 0),
                label: &label,
            })
            .unwrap();
        for i in 0..BATCH {
            let v = vector(batch, i);
            let k = key(batch, i);
            let e = tx
                .insert_episode(&EpisodeInput {
                    agent: batch,
                    timestamp: batch as i64,
                    embedding: &v,
                    payload: label.as_bytes(),
                    key: Some(k.as_bytes()),
                })
                .unwrap();
            tx.bind(e, c, 0.5).unwrap();
        }
        let weights = [batch as f32; 64];
        let tensor = TensorInput {
            name: "w",
            shape: &[2, 32],
            data: &weights,
            importance: None,
        };
        tx.put_network(batch % 5, "policy", &[tensor], QuantScheme::F16)
            .unwrap();
        if batch >= 3 {
            let snap = db.begin_read().unwrap();
            if let Some(old) = snap.episode_by_key(key(batch - 3, 0).as_bytes()).unwrap() {
                let id = old.id();
                drop(snap);
                tx.delete_episode(id).unwrap();
            }
        }
        tx.commit().unwrap();
        println!("ACK {batch}");
        if batch % 7 == 6 {
            db.compact().unwrap();
            println!("COMPACTED {batch}");
        }
        batch += 1;
    }
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Runs this binary's test `name` as a child with `env` set; a reader thread sends what
/// `parse` makes of each line it prints.
fn spawn_child<T: Send + 'static>(
    name: &str,
    env: &[(&str, String)],
    parse: fn(&str) -> Option<T>,
) -> (Child, Receiver<T>, JoinHandle<()>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(t) = parse(&line) {
                let _ = tx.send(t);
            }
        }
    });
    (child, rx, reader)
}

/// SIGKILLs a child that must still be running, and waits for its reader to finish.
fn sigkill(n: usize, mut child: Child, reader: JoinHandle<()>) {
    if let Some(status) = child.try_wait().unwrap() {
        panic!("kill {n}: the child stopped by itself ({status}); rerun it alone to see why");
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap();
}

#[test]
fn acknowledged_commits_survive_sigkill_and_partial_ones_never_show() {
    let kills: usize = std::env::var("ENGRAM_CRASH_KILLS")
        .or_else(|_| std::env::var("ENGRAM_SOAK_KILLS"))
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    drop(Engram::open(&dir, opts()).unwrap());
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test seed {seed}");
    let mut acked_total = 0;
    for kill in 0..kills {
        let start = verify(&dir);
        assert!(
            start >= acked_total,
            "kill {kill}: acked {acked_total} batches, found {start}"
        );
        let env = [
            ("ENGRAM_CRASH_CHILD", dir.display().to_string()),
            ("ENGRAM_CRASH_START", start.to_string()),
        ];
        let parse = |line: &str| line.split("ACK ").nth(1).map(|n| n.parse::<u64>().unwrap());
        let (child, rx, reader) = spawn_child("crash_child", &env, parse);
        // Wait for the child to be writing, then kill it after a random delay.
        let delay = Duration::from_micros(xorshift(&mut seed) % 60_000);
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut acked = None;
        // First ack proves the child is past open; then a random delay.
        while acked.is_none() && Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(n) => acked = Some(n),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        std::thread::sleep(delay);
        sigkill(kill, child, reader);
        acked = rx.try_iter().last().or(acked);
        if let Some(n) = acked {
            acked_total = n + 1;
        }
    }
    let end = verify(&dir);
    assert!(end >= acked_total);
    eprintln!("{kills} kills survived; {end} batches present, {acked_total} acknowledged");
}

/// The child of the creation test: creates databases `0`, `1`, ... under a directory until
/// killed, printing `CREATED n` after each open returns. Does nothing in a normal run.
#[test]
fn create_child() {
    let Ok(root) = std::env::var("ENGRAM_CREATE_CHILD") else {
        return;
    };
    println!("READY");
    for n in 0u64.. {
        drop(Engram::open(std::path::Path::new(&root).join(n.to_string()), opts()).unwrap());
        println!("CREATED {n}");
    }
}

/// A process killed while it creates a database leaves a directory that opens: the next
/// open starts the creation again (or finds it finished).
#[test]
fn a_creation_killed_at_any_moment_opens_the_next_time() {
    let tmp = tempfile::tempdir().unwrap();
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut interrupted = 0;
    for kill in 0..20 {
        let root = tmp.path().join(kill.to_string());
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "create_child", "--nocapture", "--test-threads=1"])
            .env("ENGRAM_CREATE_CHILD", &root)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Past the test harness's own lines.
        assert!(
            lines
                .by_ref()
                .map_while(Result::ok)
                .any(|l| l.ends_with("READY"))
        );
        std::thread::sleep(Duration::from_micros(xorshift(&mut seed) % 20_000));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let created = lines
            .map_while(Result::ok)
            .filter(|l| l.starts_with("CREATED"))
            .count();
        let dirs = std::fs::read_dir(&root).map_or(0, |d| d.count());
        // The last directory is the one being created when the kill came, if any.
        assert!(dirs <= created + 1, "{dirs} directories, {created} created");
        interrupted += usize::from(dirs == created + 1);
        for n in 0..dirs {
            let db = Engram::open(root.join(n.to_string()), opts())
                .unwrap_or_else(|e| panic!("kill {kill}, database {n}: {e}"));
            assert_eq!(db.begin_read().unwrap().episode_count(), 0);
        }
    }
    eprintln!("{interrupted} of 20 kills interrupted a creation");
}

/// Threads of the group-commit child, and episodes per call.
const GROUP_THREADS: u64 = 4;
const PER_CALL: u64 = 3;

fn group_key(t: u64, call: u64, i: u64) -> String {
    format!("g{t}-{call}-{i}")
}

/// The calls of each group-commit thread found after a kill: a prefix of its calls, each
/// whole and intact, and nothing of the calls after it.
fn verify_groups(dir: &std::path::Path) -> Vec<u64> {
    let db = Engram::open(dir, opts()).expect("reopen after kill");
    let snap = db.begin_read().unwrap();
    let get = |t, call, i| {
        snap.episode_by_key(group_key(t, call, i).as_bytes())
            .unwrap()
    };
    (0..GROUP_THREADS)
        .map(|t| {
            let mut calls = 0;
            while get(t, calls, 0).is_some() {
                for i in 0..PER_CALL {
                    let ep = get(t, calls, i)
                        .unwrap_or_else(|| panic!("thread {t} call {calls} partial: {i} missing"));
                    assert_eq!(ep.embedding(), vector(t * 100_000 + calls, i).as_slice());
                    assert_eq!(ep.agent(), t);
                }
                calls += 1;
            }
            for later in calls..calls + 3 {
                for i in 0..PER_CALL {
                    assert!(
                        get(t, later, i).is_none(),
                        "thread {t} call {later} out of order"
                    );
                }
            }
            calls
        })
        .collect()
}

/// The group-commit child: `GROUP_THREADS` threads each record calls of `PER_CALL` episodes
/// with `insert_episodes`, from the counts in `ENGRAM_GROUP_START`, printing `ACK t call`
/// after each returns, while one more thread compacts again and again: a kill lands in a
/// compaction's copy, its catch-up or its commit as often as between them. Does nothing in
/// a normal test run.
#[test]
fn group_child() {
    let Ok(dir) = std::env::var("ENGRAM_GROUP_CHILD") else {
        return;
    };
    let starts: Vec<u64> = std::env::var("ENGRAM_GROUP_START")
        .unwrap()
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    let db = Engram::open(&dir, opts()).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            loop {
                db.compact().unwrap();
            }
        });
        for (t, &start) in starts.iter().enumerate() {
            let db = &db;
            let t = t as u64;
            s.spawn(move || {
                for call in start.. {
                    let (keys, vectors): (Vec<String>, Vec<Vec<f32>>) = (0..PER_CALL)
                        .map(|i| (group_key(t, call, i), vector(t * 100_000 + call, i)))
                        .unzip();
                    let inputs: Vec<EpisodeInput> = (0..PER_CALL as usize)
                        .map(|i| EpisodeInput {
                            agent: t,
                            timestamp: call as i64,
                            embedding: &vectors[i],
                            payload: b"group",
                            key: Some(keys[i].as_bytes()),
                        })
                        .collect();
                    db.insert_episodes(&inputs).unwrap();
                    println!("ACK {t} {call}");
                }
            });
        }
    });
}

/// Calls acknowledged by `insert_episodes` from several threads (commits shared between
/// them) survive SIGKILL, and no call is ever partly there.
#[test]
fn group_commits_acknowledged_survive_sigkill() {
    let kills: usize = std::env::var("ENGRAM_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    drop(Engram::open(&dir, opts()).unwrap());
    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ std::process::id() as u64;
    let mut acked = vec![0u64; GROUP_THREADS as usize];
    for kill in 0..kills {
        let found = verify_groups(&dir);
        for t in 0..GROUP_THREADS as usize {
            assert!(
                found[t] >= acked[t],
                "kill {kill}: thread {t} acked {} calls, found {}",
                acked[t],
                found[t]
            );
        }
        let starts: Vec<String> = found.iter().map(u64::to_string).collect();
        let env = [
            ("ENGRAM_GROUP_CHILD", dir.display().to_string()),
            ("ENGRAM_GROUP_START", starts.join(",")),
        ];
        let parse = |line: &str| {
            let mut it = line.strip_prefix("ACK ")?.split(' ');
            let t: usize = it.next()?.parse().unwrap();
            Some((t, it.next()?.parse::<u64>().unwrap()))
        };
        let (child, rx, reader) = spawn_child("group_child", &env, parse);
        // The first ack proves the child is past open; then a random delay.
        let first = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the child acknowledged nothing");
        std::thread::sleep(Duration::from_micros(xorshift(&mut seed) % 40_000));
        sigkill(kill, child, reader);
        for (t, call) in std::iter::once(first).chain(rx.try_iter()) {
            acked[t] = acked[t].max(call + 1);
        }
    }
    let found = verify_groups(&dir);
    assert!(found.iter().zip(&acked).all(|(f, a)| f >= a));
    eprintln!("{kills} kills survived; calls per thread found {found:?}, acknowledged {acked:?}");
}
