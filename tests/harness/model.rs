//! The model check shared by the proptest (`tests/model.rs`) and the `ops` fuzz target
//! (`fuzz/`): random sequences of insert/update/delete/bind/reinforce/forget/commit/abort/
//! reopen/compact/backup, networks put and deleted, episodes with a time to live and a clock that
//! moves, checked against a plain in-memory model after every step that publishes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use engram_core::quant::QuantScheme;
use engram_core::{
    Clock, ConceptInput, Engram, EpisodeInput, Error, Options, ReadTxn, TensorInput, Ttl,
};

/// Odd, so that every record has the padding before its root (`docs/format.md`).
pub const DIM: usize = 7;

#[derive(Clone, Debug)]
pub enum Step {
    Insert {
        seed: u8,
        key: Option<u8>,
    },
    /// An episode that expires `ttl` clock ticks after its transaction began (0: stored
    /// already expired).
    InsertExpiring {
        seed: u8,
        ttl: u8,
    },
    /// The clock moves on by `by` ticks (between transactions only).
    Tick {
        by: u8,
    },
    Concept {
        seed: u8,
    },
    Update {
        pick: u8,
        seed: u8,
        relabel: bool,
    },
    Bind {
        e: u8,
        c: u8,
        strength: u8,
    },
    Unbind {
        e: u8,
        c: u8,
    },
    DeleteEpisode {
        pick: u8,
    },
    DeleteConcept {
        pick: u8,
    },
    /// Adds `(delta - 128) / 64` to a pair's strength.
    Reinforce {
        e: u8,
        c: u8,
        delta: u8,
    },
    /// Forgets agent `1 + agent % 2`'s committed episodes with a timestamp before `before`.
    ForgetWhere {
        agent: u8,
        before: u8,
    },
    /// Stores (or replaces) network `name % 3` of agent `agent % 2`: one tensor whose
    /// length (1 to ~5,000 weights) and values follow `seed`.
    PutNetwork {
        agent: u8,
        name: u8,
        seed: u8,
    },
    DeleteNetwork {
        agent: u8,
        name: u8,
    },
    Commit,
    Abort,
    /// Close and open again; or, `killed`, open a copy of the files taken with the handle
    /// still open (as a `kill -9` leaves them: the write-ahead log not yet recorded) and go
    /// on in the copy.
    Reopen {
        killed: bool,
    },
    /// Compacts. With a transaction open, the compaction copies beside it, and it commits
    /// before the compaction takes the writer: the compaction must carry it into its copy.
    Compact,
    /// A backup of the last commit, taken beside any open transaction, with an int8 mirror
    /// or without, opened and checked against the committed model.
    Backup {
        int8: bool,
    },
    /// Two episodes (the first with the key, if any) through `Engram::insert_episodes`,
    /// committed by the call; refused with `WriteInProgress` while a transaction is open.
    /// With a concept id, through `Engram::insert_bound_episodes`, both bound to it:
    /// `NotFound`, and nothing stored, unless that concept is live.
    GroupInsert {
        seed: u8,
        key: Option<u8>,
        concept: Option<u8>,
    },
}

/// Steps decoded from arbitrary bytes, two per step (the fuzz target's input).
pub fn steps_from_bytes(data: &[u8]) -> Vec<Step> {
    data.chunks_exact(3)
        .map(|c| {
            let (a, b) = (c[1], c[2]);
            match c[0] % 14 {
                0..=2 => Step::Insert {
                    seed: a,
                    key: (b < 12).then_some(b),
                },
                3 => Step::InsertExpiring {
                    seed: a,
                    ttl: b % 5,
                },
                4 => Step::Concept { seed: a },
                5 => Step::Update {
                    pick: a,
                    seed: b,
                    relabel: b % 2 == 0,
                },
                6 => Step::Bind {
                    e: a,
                    c: b,
                    strength: a ^ b,
                },
                7 => Step::Unbind { e: a, c: b },
                8 => Step::DeleteEpisode { pick: a },
                9 => Step::DeleteConcept { pick: a },
                10 => Step::Commit,
                11 => match a % 4 {
                    0 => Step::Abort,
                    1 => Step::Reopen { killed: b % 2 == 0 },
                    2 => Step::Compact,
                    _ => Step::Backup { int8: b % 2 == 0 },
                },
                12 => Step::Tick { by: b % 3 },
                _ => match a % 4 {
                    0 => Step::Reinforce {
                        e: b,
                        c: a / 4,
                        delta: a ^ b,
                    },
                    1 => Step::ForgetWhere {
                        agent: a / 4,
                        before: b % 6,
                    },
                    2 => Step::Commit,
                    _ => Step::GroupInsert {
                        seed: b,
                        key: (a < 48).then_some(a % 12),
                        concept: (b % 4 == 0).then_some(a % 6),
                    },
                },
            }
        })
        .collect()
}

#[derive(Clone, Default, Debug)]
struct Model {
    /// Stored episodes, expired or not until a commit reaps them.
    episodes: BTreeMap<u64, (u8, Option<u8>)>,
    /// Expiry clock time of the episodes that have one.
    expiry: BTreeMap<u64, i64>,
    concepts: BTreeMap<u64, (u8, String)>,
    bindings: BTreeMap<(u64, u64), f32>,
    /// (agent, name) → the seed of its weights.
    networks: BTreeMap<(u64, String), u8>,
    next_episode: u64,
    next_concept: u64,
}

/// Episodes spread over two agents and four timestamps, for `forget_where`.
fn agent(seed: u8) -> u64 {
    1 + u64::from(seed % 2)
}

fn timestamp(seed: u8) -> i64 {
    i64::from(seed / 2 % 4)
}

fn vector(seed: u8) -> Vec<f32> {
    (0..DIM)
        .map(|i| f32::from(seed) + i as f32 * 0.25)
        .collect()
}

fn network_key(agent: u8, name: u8) -> (u64, String) {
    (u64::from(agent % 2), format!("net{}", name % 3))
}

/// Weights that F16 holds exactly, over 1 to 13 pages.
fn weights(seed: u8) -> Vec<f32> {
    (0..1 + usize::from(seed) * 20)
        .map(|i| f32::from(seed) + (i % 64) as f32 * 0.25)
        .collect()
}

fn pick(map_keys: Vec<u64>, p: u8) -> Option<u64> {
    (!map_keys.is_empty()).then(|| map_keys[p as usize % map_keys.len()])
}

impl Model {
    fn visible(&self, id: u64, now: i64) -> bool {
        self.episodes.contains_key(&id) && self.expiry.get(&id).is_none_or(|&t| t > now)
    }

    /// What a commit (or a compaction) at clock `now` does: delete the expired episodes.
    fn reap(&mut self, now: i64) {
        let gone: Vec<u64> = self
            .expiry
            .iter()
            .filter(|&(_, &t)| t <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            self.delete(id);
        }
    }

    /// A stored episode and a concept picked by two bytes, if there are both.
    fn pair(&self, e: u8, c: u8) -> Option<(u64, u64)> {
        Some((
            pick(self.episodes.keys().copied().collect(), e)?,
            pick(self.concepts.keys().copied().collect(), c)?,
        ))
    }

    fn delete(&mut self, id: u64) {
        self.episodes.remove(&id);
        self.expiry.remove(&id);
        self.bindings.retain(|(be, _), _| *be != id);
    }
}

fn check(db: &Engram, m: &Model) {
    check_snapshot(&db.begin_read().unwrap(), m);
}

/// Everything a snapshot answers, through the caches and the fan-count index and around
/// them, equals the model.
fn check_snapshot(snap: &ReadTxn, m: &Model) {
    let now = snap.now();
    assert_eq!(
        snap.episode_ids().unwrap(),
        m.episodes
            .keys()
            .copied()
            .filter(|&id| m.visible(id, now))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        snap.concept_ids().unwrap(),
        m.concepts.keys().copied().collect::<Vec<_>>()
    );
    // The read-ahead passes visit the same nodes, each as `episode` / `concept` reads it.
    let visited: Vec<(u64, Vec<f32>)> = snap
        .episodes()
        .map(|e| e.map(|e| (e.id(), e.embedding().to_vec())).unwrap())
        .collect();
    let expected: Vec<(u64, Vec<f32>)> = m
        .episodes
        .iter()
        .filter(|&(&id, _)| m.visible(id, now))
        .map(|(&id, &(seed, _))| (id, vector(seed)))
        .collect();
    assert_eq!(visited, expected);
    // Reversed, they go down from the newest over the same nodes.
    let down: Vec<u64> = snap.episodes().rev().map(|e| e.unwrap().id()).collect();
    assert!(down.iter().rev().eq(expected.iter().map(|(id, _)| id)));
    let concepts: Vec<u64> = snap.concepts().map(|c| c.unwrap().id()).collect();
    assert_eq!(concepts, m.concepts.keys().copied().collect::<Vec<_>>());
    let down: Vec<u64> = snap.concepts().rev().map(|c| c.unwrap().id()).collect();
    assert!(down.iter().rev().eq(&concepts));
    assert_eq!(snap.episode_count(), m.episodes.len() as u64);
    assert_eq!(snap.binding_count(), m.bindings.len() as u64);
    for (&id, &(seed, key)) in &m.episodes {
        if !m.visible(id, now) {
            // Expired, not yet reaped: invisible to every read, still counted.
            assert!(snap.episode(id).unwrap().is_none());
            assert!(matches!(
                snap.episode_fan_count(id),
                Err(Error::NotFound { .. })
            ));
            for &c in m.concepts.keys() {
                assert!(snap.binding_strength(id, c).is_err());
            }
            continue;
        }
        let ep = snap.episode(id).unwrap().unwrap();
        assert_eq!(ep.expires_at().unwrap(), m.expiry.get(&id).copied());
        assert_eq!(ep.embedding(), vector(seed).as_slice());
        assert_eq!(ep.payload().unwrap(), &[seed]);
        assert_eq!((ep.agent(), ep.timestamp()), (agent(seed), timestamp(seed)));
        if let Some(k) = key {
            assert_eq!(snap.episode_by_key(&[k]).unwrap().unwrap().id(), id);
        }
        let mut got: Vec<(u64, f32)> = snap
            .bindings_of_episode(id)
            .unwrap()
            .iter()
            .map(|b| (b.concept, b.strength))
            .collect();
        got.sort_by_key(|x| x.0);
        let want: Vec<(u64, f32)> = m
            .bindings
            .iter()
            .filter(|((e, _), _)| *e == id)
            .map(|((_, c), s)| (*c, *s))
            .collect();
        assert_eq!(got, want, "bindings of episode {id}");
        for _ in 0..2 {
            // The first count may fill the index, the second reads it.
            assert_eq!(
                snap.episode_fan_count(id).unwrap(),
                want.len(),
                "fan of {id}"
            );
        }
        for (c, strength) in want {
            for _ in 0..2 {
                assert_eq!(snap.binding_strength(id, c).unwrap(), Some(strength));
            }
        }
        for &c in m.concepts.keys() {
            if !m.bindings.contains_key(&(id, c)) {
                assert_eq!(snap.binding_strength(id, c).unwrap(), None);
            }
        }
    }
    for (&id, (seed, label)) in &m.concepts {
        let c = snap.concept(id).unwrap().unwrap();
        assert_eq!(c.centroid(), vector(*seed).as_slice());
        assert_eq!(c.label().unwrap(), label);
        let fan = m.bindings.keys().filter(|(_, c)| *c == id).count();
        for _ in 0..2 {
            assert_eq!(
                snap.concept_fan_count(id).unwrap(),
                fan,
                "fan of concept {id}"
            );
            let cached = snap.lookup_concept(id).unwrap().unwrap();
            assert_eq!(cached.centroid(), vector(*seed).as_slice());
            assert_eq!(cached.label(), label);
        }
    }
    assert_eq!(
        snap.networks(),
        m.networks.keys().cloned().collect::<Vec<_>>()
    );
    for ((agent, name), &seed) in &m.networks {
        let net = snap.network(*agent, name).unwrap().unwrap();
        let w = net.tensor("w").unwrap().unwrap();
        let want = weights(seed);
        let mut got = vec![0f32; want.len()];
        w.dequantize_into(&mut got).unwrap();
        assert_eq!(got, want, "network {agent}/{name}");
    }
    let empty: Vec<u64> = m
        .concepts
        .keys()
        .copied()
        .filter(|&id| !m.bindings.keys().any(|&(_, c)| c == id))
        .collect();
    assert_eq!(snap.empty_concept_count(), empty.len() as u64);
    assert_eq!(snap.empty_concepts().unwrap(), empty);
    let next = m.next_concept;
    assert!(snap.lookup_concept(next).unwrap().is_none());
    assert!(snap.concept_fan_count(next).is_err());
    for k in 0..12u8 {
        let owner = m
            .episodes
            .iter()
            .find(|&(&id, v)| v.1 == Some(k) && m.visible(id, now))
            .map(|(id, _)| *id);
        assert_eq!(snap.episode_by_key(&[k]).unwrap().map(|e| e.id()), owner);
    }
}

pub fn run(steps: Vec<Step>) {
    let dir = tempfile::tempdir().unwrap();
    let time = Arc::new(AtomicI64::new(0));
    let opts = Options {
        dimension: Some(DIM),
        concept_cache_entries: 3, // small enough to evict
        strength_cache_entries: 5,
        clock: Clock::new({
            let time = time.clone();
            move || time.load(Ordering::SeqCst)
        }),
        ..Options::default()
    };
    let now = || time.load(Ordering::SeqCst);
    let mut path = dir.path().to_path_buf();
    let mut kills = 0;
    let mut db = Some(Engram::open(&path, opts.clone()).unwrap());
    let mut committed = Model::default();
    let mut pending = committed.clone();
    let mut tx = None;
    let mut backups = 0;
    for s in steps {
        let d = db.as_ref().unwrap();
        let needs_tx = !matches!(
            s,
            Step::Commit
                | Step::Abort
                | Step::Reopen { .. }
                | Step::Compact
                | Step::Tick { .. }
                | Step::Backup { .. }
                | Step::GroupInsert { .. }
        );
        if needs_tx && tx.is_none() {
            tx = Some(d.begin_write().unwrap());
        }
        match s {
            Step::Insert { seed, key } => {
                let t = tx.as_mut().unwrap();
                let k = key.map(|k| [k]);
                let id = t
                    .insert_episode(&EpisodeInput {
                        agent: agent(seed),
                        timestamp: timestamp(seed),
                        embedding: &vector(seed),
                        payload: &[seed],
                        key: k.as_ref().map(|k| &k[..]),
                    })
                    .unwrap();
                let existing = key.and_then(|k| {
                    pending
                        .episodes
                        .iter()
                        .find(|&(&id, v)| v.1 == Some(k) && pending.visible(id, now()))
                });
                match existing {
                    Some((&eid, _)) => assert_eq!(id, eid, "idempotent key"),
                    None => {
                        assert_eq!(id, pending.next_episode);
                        pending.next_episode += 1;
                        pending.episodes.insert(id, (seed, key));
                    }
                }
            }
            Step::InsertExpiring { seed, ttl } => {
                let t = tx.as_mut().unwrap();
                let input = EpisodeInput {
                    agent: agent(seed),
                    timestamp: timestamp(seed),
                    embedding: &vector(seed),
                    payload: &[seed],
                    key: None,
                };
                let id = t
                    .insert_episode_with_ttl(
                        &input,
                        match ttl {
                            0 => Ttl::At(now()),
                            d => Ttl::After(i64::from(d)),
                        },
                    )
                    .unwrap();
                assert_eq!(id, pending.next_episode);
                pending.next_episode += 1;
                pending.episodes.insert(id, (seed, None));
                pending.expiry.insert(id, now() + i64::from(ttl));
            }
            Step::Tick { by } => {
                // The clock moves between transactions (a transaction reads it once).
                if tx.is_none() {
                    time.fetch_add(i64::from(by), Ordering::SeqCst);
                    check(d, &committed);
                }
            }
            Step::Concept { seed } => {
                let label = format!("c{seed}");
                let id = tx
                    .as_mut()
                    .unwrap()
                    .insert_concept(&ConceptInput {
                        centroid: &vector(seed),
                        label: &label,
                    })
                    .unwrap();
                assert_eq!(id, pending.next_concept);
                pending.next_concept += 1;
                pending.concepts.insert(id, (seed, label));
            }
            Step::Update {
                pick: p,
                seed,
                relabel,
            } => {
                if let Some(c) = pick(pending.concepts.keys().copied().collect(), p) {
                    let label = format!("u{seed}");
                    tx.as_mut()
                        .unwrap()
                        .update_concept(c, &vector(seed), relabel.then_some(label.as_str()))
                        .unwrap();
                    let entry = pending.concepts.get_mut(&c).unwrap();
                    entry.0 = seed;
                    if relabel {
                        entry.1 = label;
                    }
                }
            }
            Step::Bind { e, c, strength } => {
                let Some((e, c)) = pending.pair(e, c) else {
                    continue;
                };
                let s = f32::from(strength) / 255.0;
                let r = tx.as_mut().unwrap().bind(e, c, s);
                if pending.visible(e, now()) {
                    r.unwrap();
                    pending.bindings.insert((e, c), s);
                } else {
                    assert!(matches!(r, Err(Error::NotFound { .. })), "bind expired {e}");
                }
            }
            Step::Unbind { e, c } => {
                let Some((e, c)) = pending.pair(e, c) else {
                    continue;
                };
                let r = tx.as_mut().unwrap().unbind(e, c);
                let bound = pending.visible(e, now()) && pending.bindings.remove(&(e, c)).is_some();
                assert_eq!(r.is_ok(), bound);
            }
            Step::DeleteEpisode { pick: p } => {
                if let Some(e) = pick(pending.episodes.keys().copied().collect(), p) {
                    let r = tx.as_mut().unwrap().delete_episode(e);
                    if pending.visible(e, now()) {
                        r.unwrap();
                        pending.delete(e);
                    } else {
                        assert!(
                            matches!(r, Err(Error::NotFound { .. })),
                            "delete expired {e}"
                        );
                    }
                }
            }
            Step::DeleteConcept { pick: p } => {
                if let Some(c) = pick(pending.concepts.keys().copied().collect(), p) {
                    tx.as_mut().unwrap().delete_concept(c).unwrap();
                    pending.concepts.remove(&c);
                    pending.bindings.retain(|(_, bc), _| *bc != c);
                }
            }
            Step::Reinforce { e, c, delta } => {
                let Some((e, c)) = pending.pair(e, c) else {
                    continue;
                };
                let delta = (f32::from(delta) - 128.0) / 64.0;
                let r = tx.as_mut().unwrap().reinforce(e, c, delta);
                let visible = pending.visible(e, now());
                match pending.bindings.get_mut(&(e, c)) {
                    Some(s) if visible => {
                        *s = (*s + delta).max(0.0);
                        assert_eq!(r.unwrap(), *s);
                    }
                    _ => assert!(
                        matches!(r, Err(Error::NotFound { .. })),
                        "reinforce {e} {c}"
                    ),
                }
            }
            Step::ForgetWhere { agent: a, before } => {
                let a = agent(a);
                let before = i64::from(before);
                let n = tx.as_mut().unwrap().forget_where(a, before).unwrap();
                // What the transaction's base held, and this transaction has not deleted.
                let gone: Vec<u64> = committed
                    .episodes
                    .iter()
                    .filter(|&(&id, &(seed, _))| {
                        agent(seed) == a
                            && timestamp(seed) < before
                            && committed.visible(id, now())
                            && pending.episodes.contains_key(&id)
                    })
                    .map(|(&id, _)| id)
                    .collect();
                assert_eq!(n, gone.len() as u64, "forget_where({a}, {before})");
                for id in gone {
                    pending.delete(id);
                }
            }
            Step::PutNetwork { agent, name, seed } => {
                let key = network_key(agent, name);
                let w = weights(seed);
                let tensor = TensorInput {
                    name: "w",
                    shape: &[w.len()],
                    data: &w,
                    importance: None,
                };
                tx.as_mut()
                    .unwrap()
                    .put_network(key.0, &key.1, &[tensor], QuantScheme::F16)
                    .unwrap();
                pending.networks.insert(key, seed);
            }
            Step::DeleteNetwork { agent, name } => {
                let key = network_key(agent, name);
                let r = tx.as_mut().unwrap().delete_network(key.0, &key.1);
                match pending.networks.remove(&key) {
                    Some(_) => r.unwrap(),
                    None => assert!(matches!(r, Err(Error::NotFound { .. })), "{key:?}"),
                }
            }
            Step::GroupInsert { seed, key, concept } => {
                let k = key.map(|k| [k]);
                let second = seed.wrapping_add(1);
                let (v0, v1) = (vector(seed), vector(second));
                let episodes = [
                    EpisodeInput {
                        agent: agent(seed),
                        timestamp: timestamp(seed),
                        embedding: &v0,
                        payload: &[seed],
                        key: k.as_ref().map(|k| &k[..]),
                    },
                    EpisodeInput {
                        agent: agent(second),
                        timestamp: timestamp(second),
                        embedding: &v1,
                        payload: &[second],
                        key: None,
                    },
                ];
                let strength = f32::from(seed) / 255.0;
                let r = match concept {
                    Some(c) => d.insert_bound_episodes(&episodes, &[(u64::from(c), strength)]),
                    None => d.insert_episodes(&episodes),
                };
                if tx.is_some() {
                    assert!(matches!(r, Err(Error::WriteInProgress)), "{r:?}");
                    continue;
                }
                if let Some(c) = concept.map(u64::from)
                    && !pending.concepts.contains_key(&c)
                {
                    assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}");
                    check(d, &committed);
                    continue;
                }
                let ids = r.unwrap();
                let existing = key.and_then(|k| {
                    pending
                        .episodes
                        .iter()
                        .find(|&(&id, v)| v.1 == Some(k) && pending.visible(id, now()))
                        .map(|(&id, _)| id)
                });
                match existing {
                    Some(eid) => assert_eq!(ids[0], eid, "idempotent key"),
                    None => {
                        assert_eq!(ids[0], pending.next_episode);
                        pending.next_episode += 1;
                        pending.episodes.insert(ids[0], (seed, key));
                    }
                }
                assert_eq!(ids[1], pending.next_episode);
                pending.next_episode += 1;
                pending.episodes.insert(ids[1], (second, None));
                if let Some(c) = concept {
                    for &id in &ids {
                        pending.bindings.insert((id, u64::from(c)), strength);
                    }
                }
                pending.reap(now());
                committed = pending.clone();
                check(d, &committed);
            }
            Step::Commit => {
                if let Some(t) = tx.take() {
                    // A snapshot of the previous commit, warmed before and read after this
                    // one: what the commit changes in the caches must not leak into it.
                    let before = d.begin_read().unwrap();
                    check_snapshot(&before, &committed);
                    t.commit().unwrap();
                    pending.reap(now());
                    check(d, &pending);
                    check_snapshot(&before, &committed);
                    committed = pending.clone();
                }
                check(d, &committed);
            }
            Step::Abort => {
                tx = None;
                pending = committed.clone();
                check(d, &committed);
            }
            Step::Reopen { killed } => {
                tx = None;
                pending = committed.clone();
                if killed {
                    kills += 1;
                    let copy = dir.path().join(format!("killed-{kills}"));
                    std::fs::create_dir(&copy).unwrap();
                    for e in std::fs::read_dir(&path).unwrap() {
                        let e = e.unwrap();
                        if e.file_type().unwrap().is_file() && e.file_name() != "LOCK" {
                            std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
                        }
                    }
                    path = copy;
                }
                drop(db.take()); // release the writer lock before reopening
                db = Some(Engram::open(&path, opts.clone()).unwrap());
                check(db.as_ref().unwrap(), &committed);
            }
            Step::Compact => {
                match tx.take() {
                    None => d.compact().unwrap(),
                    Some(t) => {
                        engram_core::fault::hold_compaction();
                        std::thread::scope(|s| {
                            let compaction = s.spawn(|| d.compact());
                            engram_core::fault::await_compaction();
                            let committed = t.commit();
                            engram_core::fault::release_compaction();
                            committed.unwrap();
                            compaction.join().unwrap().unwrap();
                        });
                        pending.reap(now());
                        committed = pending.clone();
                    }
                }
                committed.reap(now());
                pending = committed.clone();
                check(d, &committed);
            }
            Step::Backup { int8 } => {
                backups += 1;
                let dest = dir.path().join(format!("backup-{backups}"));
                let manifest = engram_core::Manifest {
                    int8_mirror: int8,
                    ..d.manifest().clone()
                };
                d.backup_as(&dest, &manifest).unwrap();
                let copy = Engram::open(&dest, opts.clone()).unwrap();
                assert_eq!(copy.manifest(), &manifest);
                // The copy drops what had expired by its snapshot's clock, as compaction
                // does.
                let mut copied = committed.clone();
                copied.reap(now());
                check(&copy, &copied);
                let report = copy.begin_read().unwrap().verify().unwrap();
                assert_eq!(report.networks, copied.networks.len() as u64);
            }
        }
    }
}
