//! Forgetting by time and remembering use: episodes' time to live (per episode and per
//! agent default) hides them from every read from their expiry on, across reopen and
//! compaction; commits reap them; recalls' recorded accesses are persisted by the next
//! commit and survive a reopen.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use engram_core::{
    Clock, ConceptInput, Cue, Engram, EpisodeInput, Error, Filter, Options, RecallParams, Ttl,
};

const DIM: usize = 4;

struct Db {
    time: Arc<AtomicI64>,
    opts: Options,
}

impl Db {
    fn new() -> Self {
        let time = Arc::new(AtomicI64::new(1_000));
        let clock = Clock::new({
            let time = time.clone();
            move || time.load(Ordering::SeqCst)
        });
        let opts = Options {
            dimension: Some(DIM),
            int8_mirror: Some(true),
            clock,
            ..Options::default()
        };
        Db { time, opts }
    }

    fn open(&self, dir: &std::path::Path) -> Engram {
        Engram::open(dir, self.opts.clone()).unwrap()
    }

    fn set(&self, t: i64) {
        self.time.store(t, Ordering::SeqCst);
    }
}

fn input<'a>(agent: u64, v: &'a [f32], key: Option<&'a [u8]>) -> EpisodeInput<'a> {
    EpisodeInput {
        agent,
        timestamp: 0,
        embedding: v,
        payload: b"p",
        key,
    }
}

const V: [f32; DIM] = [1.0, 0.5, 0.25, 0.0];

/// Bytes of the directory's files of kind `kind` (`etab`, `ctab`).
fn table_bytes(dir: &std::path::Path, kind: &str) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == kind))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

/// Every read path's answer about `id` in one snapshot: get, by key, exact search, int8
/// search, recall, the concept's bindings, the id listing, the binding's strength (cached
/// after its first read) and the episode's fan count.
fn visible_everywhere(db: &Engram, id: u64, key: &[u8], concept: u64) -> [bool; 9] {
    let snap = db.begin_read().unwrap();
    let cue = Cue {
        embedding: &V,
        filter: Filter::default(),
    };
    [
        snap.episode(id).unwrap().is_some(),
        snap.episode_by_key(key).unwrap().is_some(),
        snap.search(&V, 10, &Filter::default())
            .unwrap()
            .iter()
            .any(|h| h.id == id),
        snap.search_int8(&V, 10, &Filter::default(), 10)
            .unwrap()
            .iter()
            .any(|h| h.id == id),
        snap.recall(&cue, &RecallParams::default())
            .unwrap()
            .iter()
            .any(|a| a.episode == id),
        snap.bindings_of_concept(concept)
            .unwrap()
            .iter()
            .any(|b| b.episode == id),
        snap.episode_ids().unwrap().contains(&id),
        snap.binding_strength(id, concept)
            .is_ok_and(|s| s == Some(1.0)),
        snap.episode_fan_count(id).is_ok_and(|n| n == 1),
    ]
}

#[test]
fn an_expired_episode_is_invisible_to_every_read_across_reopen_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Db::new();
    let (short, long, c);
    {
        let db = clock.open(dir.path());
        let mut tx = db.begin_write().unwrap();
        short = tx
            .insert_episode_with_ttl(&input(1, &V, Some(b"short")), Ttl::After(500))
            .unwrap();
        long = tx
            .insert_episode_with_ttl(&input(1, &V, Some(b"long")), Ttl::At(10_000))
            .unwrap();
        c = tx
            .insert_concept(&ConceptInput {
                centroid: &V,
                label: "c",
            })
            .unwrap();
        tx.bind(short, c, 1.0).unwrap();
        tx.bind(long, c, 1.0).unwrap();
        tx.commit().unwrap();

        let before = db.begin_read().unwrap();
        assert_eq!(
            before
                .episode(short)
                .unwrap()
                .unwrap()
                .expires_at()
                .unwrap(),
            Some(1_500)
        );
        assert_eq!(visible_everywhere(&db, short, b"short", c), [true; 9]);
        clock.set(1_499);
        assert_eq!(visible_everywhere(&db, short, b"short", c), [true; 9]);
        clock.set(1_500);
        assert_eq!(visible_everywhere(&db, short, b"short", c), [false; 9]);
        assert_eq!(visible_everywhere(&db, long, b"long", c), [true; 9]);
        // A snapshot is a point in time: the one taken before the expiry still sees it.
        assert!(before.episode(short).unwrap().is_some());
        // Writers see what readers see: it cannot be bound or deleted any more.
        let mut tx = db.begin_write().unwrap();
        assert!(matches!(
            tx.delete_episode(short),
            Err(Error::NotFound { .. })
        ));
        assert!(matches!(
            tx.bind(short, c, 1.0),
            Err(Error::NotFound { .. })
        ));
        drop(tx);
        // Not reaped yet: counts are the committed ones.
        assert_eq!(db.begin_read().unwrap().episode_count(), 2);
        assert_eq!(db.begin_read().unwrap().concept_fan_count(c).unwrap(), 2);
    }
    // Reopened later: still invisible.
    {
        let db = clock.open(dir.path());
        assert_eq!(visible_everywhere(&db, short, b"short", c), [false; 9]);
        assert_eq!(visible_everywhere(&db, long, b"long", c), [true; 9]);
        // The next commit reaps it: deleted with its binding, counts and fans follow.
        db.begin_write().unwrap().commit().unwrap();
        let snap = db.begin_read().unwrap();
        assert_eq!(snap.episode_count(), 1);
        assert_eq!(snap.binding_count(), 1);
        assert_eq!(snap.concept_fan_count(c).unwrap(), 1);
        snap.verify().unwrap();
        // Even a clock turned back cannot bring a reaped episode back.
        clock.set(0);
        assert!(db.begin_read().unwrap().episode(short).unwrap().is_none());
        clock.set(1_500);
        // The key is free again.
        let mut tx = db.begin_write().unwrap();
        let again = tx.insert_episode(&input(1, &V, Some(b"short"))).unwrap();
        assert_ne!(again, short);
        tx.commit().unwrap();
        assert_eq!(
            db.begin_read()
                .unwrap()
                .episode_by_key(b"short")
                .unwrap()
                .map(|e| e.id()),
            Some(again)
        );
    }
    // Compaction after the long one expires, with no commit in between: it is dropped
    // there, its slot reclaimed, and it stays gone after a reopen.
    clock.set(10_000);
    {
        let db = clock.open(dir.path());
        // Slots on disk: three episodes (reaped, expired, re-keyed), each with its int8
        // row, and the concept.
        assert_eq!(db.begin_read().unwrap().verify().unwrap().slots, 3 + 3 + 1);
        db.compact().unwrap();
        let snap = db.begin_read().unwrap();
        assert_eq!(snap.episode_count(), 1);
        assert_eq!(snap.binding_count(), 0);
        assert_eq!(snap.concept_fan_count(c).unwrap(), 0);
        assert_eq!(snap.empty_concepts().unwrap(), vec![c]);
        assert_eq!(db.stats().empty_concepts, 1);
        // Only the re-keyed episode's slot and row and the concept are left.
        assert_eq!(snap.verify().unwrap().slots, 1 + 1 + 1);
    }
    clock.set(0);
    let db = clock.open(dir.path());
    assert_eq!(visible_everywhere(&db, long, b"long", c), [false; 9]);
    db.begin_read().unwrap().verify().unwrap();
}

#[test]
fn agent_default_ttl_persists_and_applies_to_new_episodes_only() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Db::new();
    let (before, after, other, explicit);
    {
        let db = clock.open(dir.path());
        let mut tx = db.begin_write().unwrap();
        before = tx.insert_episode(&input(7, &V, None)).unwrap();
        tx.set_agent_ttl(7, Some(100)).unwrap();
        assert!(matches!(
            tx.set_agent_ttl(7, Some(0)),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            tx.insert_episode_with_ttl(&input(7, &V, None), Ttl::After(-5)),
            Err(Error::InvalidArgument(_))
        ));
        // Set in this transaction, used by this transaction.
        after = tx.insert_episode(&input(7, &V, None)).unwrap();
        other = tx.insert_episode(&input(8, &V, None)).unwrap();
        explicit = tx
            .insert_episode_with_ttl(&input(7, &V, None), Ttl::Never)
            .unwrap();
        tx.commit().unwrap();
    }
    // Reopen and compact: the default survives both.
    {
        let db = clock.open(dir.path());
        assert_eq!(db.begin_read().unwrap().agent_ttl(7), Some(100));
        db.compact().unwrap();
    }
    let db = clock.open(dir.path());
    let snap = db.begin_read().unwrap();
    assert_eq!(snap.agent_ttl(7), Some(100));
    assert_eq!(snap.agent_ttl(8), None);
    let expiry = |id| snap.episode(id).unwrap().unwrap().expires_at().unwrap();
    assert_eq!(expiry(before), None);
    assert_eq!(expiry(after), Some(1_100));
    assert_eq!(expiry(other), None);
    assert_eq!(expiry(explicit), None);
    // New episodes of agent 7 get the default from the writer's clock.
    clock.set(5_000);
    let mut tx = db.begin_write().unwrap();
    let late = tx.insert_episode(&input(7, &V, None)).unwrap();
    tx.set_agent_ttl(7, None).unwrap();
    let cleared = tx.insert_episode(&input(7, &V, None)).unwrap();
    tx.commit().unwrap();
    let snap = db.begin_read().unwrap();
    assert!(snap.episode(after).unwrap().is_none(), "expired at 1,100");
    assert_eq!(
        snap.episode(late).unwrap().unwrap().expires_at().unwrap(),
        Some(5_100)
    );
    assert_eq!(
        snap.episode(cleared)
            .unwrap()
            .unwrap()
            .expires_at()
            .unwrap(),
        None
    );
    assert_eq!(snap.agent_ttl(7), None);
}

#[test]
fn recalls_record_accesses_that_the_next_commit_persists() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Db::new();
    let (hit, miss);
    {
        let db = clock.open(dir.path());
        let mut tx = db.begin_write().unwrap();
        hit = tx.insert_episode(&input(1, &V, None)).unwrap();
        miss = tx
            .insert_episode(&input(1, &[0.0, 0.0, 0.0, 1.0], None))
            .unwrap();
        tx.commit().unwrap();
        let params = RecallParams {
            k: 1,
            hops: 0,
            record_access: true,
            ..RecallParams::default()
        };
        let cue = Cue {
            embedding: &V,
            filter: Filter::default(),
        };
        clock.set(2_000);
        let snap = db.begin_read().unwrap();
        snap.recall(&cue, &params).unwrap();
        clock.set(3_000);
        let snap = db.begin_read().unwrap();
        snap.recall(&cue, &params).unwrap();
        // Recorded, not yet persisted: reads are read-only.
        assert_eq!(db.stats().pending_accesses, 1);
        let ep = snap.episode(hit).unwrap().unwrap();
        assert_eq!(
            (ep.last_access().unwrap(), ep.access_count().unwrap()),
            (None, 0)
        );
        // Without record_access nothing is recorded.
        snap.recall(
            &cue,
            &RecallParams {
                k: 1,
                hops: 0,
                ..RecallParams::default()
            },
        )
        .unwrap();
        db.persist_accesses().unwrap();
        assert_eq!(db.stats().pending_accesses, 0);
        let snap = db.begin_read().unwrap();
        let ep = snap.episode(hit).unwrap().unwrap();
        assert_eq!(
            (ep.last_access().unwrap(), ep.access_count().unwrap()),
            (Some(3_000), 2)
        );
        // A later batch adds to the count; an earlier clock does not move the time back.
        clock.set(2_500);
        db.begin_read().unwrap().recall(&cue, &params).unwrap();
        let mut tx = db.begin_write().unwrap();
        tx.insert_episode(&input(2, &V, None)).unwrap();
        tx.commit().unwrap();
    }
    let db = clock.open(dir.path());
    let snap = db.begin_read().unwrap();
    let ep = snap.episode(hit).unwrap().unwrap();
    assert_eq!(
        (ep.last_access().unwrap(), ep.access_count().unwrap()),
        (Some(3_000), 3)
    );
    let never = snap.episode(miss).unwrap().unwrap();
    assert_eq!(never.access_count().unwrap(), 0);
    // Compaction keeps the statistics.
    db.compact().unwrap();
    let ep_after = db.begin_read().unwrap();
    let ep = ep_after.episode(hit).unwrap().unwrap();
    assert_eq!(
        (ep.last_access().unwrap(), ep.access_count().unwrap()),
        (Some(3_000), 3)
    );
    ep_after.verify().unwrap();
    drop(db);
    // A read-only handle cannot record.
    let ro = Engram::open(
        dir.path(),
        Options {
            read_only: true,
            ..clock.opts.clone()
        },
    )
    .unwrap();
    let cue = Cue {
        embedding: &V,
        filter: Filter::default(),
    };
    let params = RecallParams {
        record_access: true,
        ..RecallParams::default()
    };
    assert!(matches!(
        ro.begin_read().unwrap().recall(&cue, &params),
        Err(Error::ReadOnly)
    ));
}

#[test]
fn an_episode_stored_already_expired_is_never_visible_and_reaped_by_its_own_commit() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Db::new();
    let db = clock.open(dir.path());
    let mut tx = db.begin_write().unwrap();
    let c = tx
        .insert_concept(&ConceptInput {
            centroid: &V,
            label: "c",
        })
        .unwrap();
    let gone = tx
        .insert_episode_with_ttl(&input(1, &V, Some(b"gone")), Ttl::At(1_000))
        .unwrap();
    let kept = tx
        .insert_episode_with_ttl(&input(1, &V, None), Ttl::At(1_001))
        .unwrap();
    // The transaction itself no longer sees it: it cannot be bound, and its key is free.
    assert!(matches!(tx.bind(gone, c, 1.0), Err(Error::NotFound { .. })));
    tx.bind(kept, c, 1.0).unwrap();
    let again = tx.insert_episode(&input(1, &V, Some(b"gone"))).unwrap();
    assert_ne!(again, gone);
    tx.commit().unwrap();
    let snap = db.begin_read().unwrap();
    assert!(snap.episode(gone).unwrap().is_none());
    assert_eq!(
        snap.episode_count(),
        2,
        "reaped by the commit that stored it"
    );
    assert_eq!(
        snap.episode_by_key(b"gone").unwrap().map(|e| e.id()),
        Some(again)
    );
    snap.verify().unwrap();
}

/// A clock at either end of i64 cannot reach the store's sentinels: at `i64::MAX` an
/// episode with no time to live stays visible (it once hid every episode), and an access
/// recorded at `i64::MIN` reads back as an access, not as "never".
#[test]
fn a_clock_at_the_ends_of_its_range_keeps_the_sentinels_apart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Db::new();
    let db = clock.open(dir.path());
    let mut tx = db.begin_write().unwrap();
    let forever = tx.insert_episode(&input(1, &V, None)).unwrap();
    let brief = tx
        .insert_episode_with_ttl(&input(1, &V, None), Ttl::After(10))
        .unwrap();
    tx.commit().unwrap();
    let cue = Cue {
        embedding: &V,
        filter: Filter::default(),
    };
    let params = RecallParams {
        hops: 0,
        record_access: true,
        ..RecallParams::default()
    };
    // The clock runs backwards first: nothing has expired at i64::MIN.
    for t in [i64::MIN, i64::MAX] {
        clock.set(t);
        let snap = db.begin_read().unwrap();
        let ids: Vec<u64> = snap
            .search(&V, 5, &Filter::default())
            .unwrap()
            .iter()
            .map(|h| h.id)
            .collect();
        let expected = match t {
            i64::MAX => vec![forever],
            _ => vec![forever, brief],
        };
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, expected, "clock {t}");
        assert_eq!(snap.episode_ids().unwrap(), expected, "clock {t}");
        assert_eq!(snap.recall(&cue, &params).unwrap().len(), expected.len());
        db.persist_accesses().unwrap();
        let e = db.begin_read().unwrap();
        let e = e.episode(forever).unwrap().unwrap();
        assert_eq!(e.expires_at().unwrap(), None, "clock {t}");
        let at = e.last_access().unwrap().expect("an access was recorded");
        assert_eq!(at, t.clamp(i64::MIN + 1, i64::MAX - 1));
    }
    db.begin_read().unwrap().verify().unwrap();
}

/// A sliding window: each tick stores a batch that lives three ticks. Every commit reaps
/// exactly the batch whose time ran out, whether the writer's expiry queue was filled by its
/// first reap or by the commits after it, across deletes, a compaction and a reopen.
#[test]
fn a_sliding_time_to_live_window_is_reaped_batch_by_batch() {
    const BATCH: u64 = 10;
    let dir = tempfile::tempdir().unwrap();
    let clock = Db::new();
    let mut db = clock.open(dir.path());
    // Episodes of each batch still stored (tick → count).
    let mut batches = std::collections::BTreeMap::new();
    // Episode slots in the files: compaction keeps the live ones' only.
    let mut slots = 0;
    for tick in 0..40i64 {
        clock.set(1_000 + tick);
        match tick {
            15 => {
                db.compact().unwrap();
                let snap = db.begin_read().unwrap();
                assert_eq!(snap.reclaimable().episodes, 0);
                slots = snap.episode_count();
            }
            25 => {
                drop(db);
                db = clock.open(dir.path());
            }
            _ => {}
        }
        let mut tx = db.begin_write().unwrap();
        let first = (0..BATCH)
            .map(|_| tx.insert_episode_with_ttl(&input(1, &V, None), Ttl::After(3)))
            .collect::<Result<Vec<_>, _>>()
            .unwrap()[0];
        batches.insert(tick, BATCH);
        if tick % 7 == 0 && tick > 0 {
            // An entry the queue holds whose episode goes another way.
            tx.delete_episode(first - BATCH).unwrap();
            *batches.get_mut(&(tick - 1)).unwrap() -= 1;
        }
        tx.commit().unwrap();
        batches.retain(|&t, _| t + 3 > tick);
        let snap = db.begin_read().unwrap();
        let stored: u64 = batches.values().sum();
        assert_eq!(snap.episode_count(), stored, "tick {tick}");
        assert_eq!(snap.episode_ids().unwrap().len() as u64, stored);
        slots += BATCH;
        // Reaped (and deleted) episodes are what the next compaction gives back.
        assert_eq!(snap.reclaimable().episodes, slots - stored, "tick {tick}");
    }
    db.begin_read().unwrap().verify().unwrap();
}

/// Compaction drops the table entries of a leading run of ids no longer stored: a database
/// that forgets its oldest episodes (or concepts) keeps no bytes for them, while every id
/// it still holds, and every id after, reads and writes as before, across a reopen.
#[test]
fn compaction_drops_the_table_entries_of_forgotten_leading_ids() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Db::new();
    let db = clock.open(dir.path());
    let mut tx = db.begin_write().unwrap();
    let first = tx
        .insert_concept(&ConceptInput {
            centroid: &V,
            label: "first",
        })
        .unwrap();
    let kept_c = tx
        .insert_concept(&ConceptInput {
            centroid: &V,
            label: "kept",
        })
        .unwrap();
    let fleeting: Vec<u64> = (0..20)
        .map(|_| {
            tx.insert_episode_with_ttl(&input(1, &V, None), Ttl::After(2))
                .unwrap()
        })
        .collect();
    tx.bind(fleeting[3], kept_c, 0.5).unwrap();
    let kept: Vec<u64> = (0..10)
        .map(|i| tx.insert_episode(&input(2, &V, Some(&[i]))).unwrap())
        .collect();
    tx.bind(kept[0], kept_c, 0.7).unwrap();
    tx.commit().unwrap();
    clock.set(1_005);
    let mut tx = db.begin_write().unwrap();
    tx.delete_concept(first).unwrap();
    tx.commit().unwrap(); // reaps the 20
    db.compact().unwrap();
    let table_bytes = |kind| table_bytes(dir.path(), kind);
    assert_eq!(
        table_bytes("etab"),
        10 * 48,
        "only the kept episodes' entries"
    );
    assert_eq!(table_bytes("ctab"), 48, "only the kept concept's entry");
    drop(db);
    let db = clock.open(dir.path());
    let snap = db.begin_read().unwrap();
    assert_eq!(snap.episode_ids().unwrap(), kept);
    assert_eq!(snap.concept_ids().unwrap(), vec![kept_c]);
    let found: Vec<u64> = snap
        .search_concepts(&V, 5)
        .unwrap()
        .iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(
        found,
        vec![kept_c],
        "concept search starts at the table's first id"
    );
    assert!(snap.episode(fleeting[3]).unwrap().is_none());
    assert!(snap.concept(first).unwrap().is_none());
    assert!(snap.lookup_concept(first).unwrap().is_none());
    assert_eq!(snap.concept_fan_count(kept_c).unwrap(), 1);
    assert_eq!(snap.episode_by_key(&[4]).unwrap().unwrap().id(), kept[4]);
    snap.verify().unwrap();
    drop(snap);
    let mut tx = db.begin_write().unwrap();
    assert!(matches!(
        tx.delete_episode(fleeting[0]),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        tx.bind(fleeting[1], kept_c, 1.0),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        tx.bind(kept[1], first, 1.0),
        Err(Error::NotFound { .. })
    ));
    let next = tx.insert_episode(&input(3, &V, None)).unwrap();
    assert_eq!(next, kept[9] + 1, "ids go on from the last assigned");
    tx.bind(next, kept_c, 0.9).unwrap();
    tx.delete_episode(kept[0]).unwrap();
    tx.commit().unwrap();
    let snap = db.begin_read().unwrap();
    assert_eq!(snap.concept_fan_count(kept_c).unwrap(), 1);
    assert_eq!(snap.episode_count(), 10);
    snap.verify().unwrap();
    // A backup of the trimmed tables (the deleted first kept episode trims one more id).
    let copy = tempfile::tempdir().unwrap();
    db.backup(copy.path()).unwrap();
    let restored = clock.open(copy.path());
    let snap = restored.begin_read().unwrap();
    assert_eq!(snap.episode_ids().unwrap()[0], kept[1]);
    assert_eq!(
        snap.episode(next).unwrap().unwrap().payload().unwrap(),
        b"p"
    );
    assert_eq!(snap.concept_fan_count(kept_c).unwrap(), 1);
    snap.verify().unwrap();
}

/// Compaction keeps the entries of ids still stored between forgotten ones, and only
/// those: an episode (and a concept) kept forever from the start, among thousands that
/// expire or are deleted, leaves the tables a few entries long. Every kept id reads,
/// binds, deletes and records accesses as before, through commits whose redo names it,
/// a reopen, a second compaction and a backup; forgotten ids between them are `NotFound`.
#[test]
fn compaction_keeps_only_the_table_entries_of_stored_ids_among_forgotten_ones() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Db::new();
    let db = clock.open(dir.path());
    let mut pinned = Vec::new();
    let mut forgotten = Vec::new();
    let mut concepts = Vec::new();
    for round in 0..4u8 {
        let mut tx = db.begin_write().unwrap();
        // One pinned episode and concept per round, the rest fleeting or deleted.
        pinned.push(tx.insert_episode(&input(1, &V, Some(&[round]))).unwrap());
        concepts.push(
            tx.insert_concept(&ConceptInput {
                centroid: &V,
                label: "kept",
            })
            .unwrap(),
        );
        for _ in 0..4 {
            let gone = tx
                .insert_concept(&ConceptInput {
                    centroid: &V,
                    label: "gone",
                })
                .unwrap();
            tx.delete_concept(gone).unwrap();
        }
        for i in 0..1_000u32 {
            let e = if i % 2 == 0 {
                tx.insert_episode_with_ttl(&input(2, &V, None), Ttl::After(2))
                    .unwrap()
            } else {
                tx.insert_episode(&input(3, &V, None)).unwrap()
            };
            forgotten.push(e);
        }
        tx.bind(*pinned.last().unwrap(), concepts[0], 0.5).unwrap();
        tx.commit().unwrap();
        let mut tx = db.begin_write().unwrap();
        for &e in forgotten.iter().rev().take(1_000).filter(|&&e| e % 2 == 0) {
            let _ = tx.delete_episode(e);
        }
        tx.commit().unwrap();
    }
    // Everything but the pinned nodes goes: the odd-agent episodes deleted now.
    clock.set(1_010);
    let mut tx = db.begin_write().unwrap();
    for &e in &forgotten {
        if tx.episode_fan_count(e).is_ok() {
            tx.delete_episode(e).unwrap();
        }
    }
    tx.commit().unwrap();
    let tail = {
        let mut tx = db.begin_write().unwrap();
        let t = tx.insert_episode(&input(4, &V, None)).unwrap();
        tx.commit().unwrap();
        t
    };
    db.compact().unwrap();
    let table_bytes = |kind| table_bytes(dir.path(), kind);
    // The 4 pinned episodes are 4 runs (a 4 × 16-byte directory and its checksum, padded
    // to 128 bytes) with an entry each, then the tail's one entry: not 4,005 entries.
    assert_eq!(table_bytes("etab"), 128 + 5 * 48);
    // Each kept concept is followed by 4 deleted ones: 4 runs of one, an empty tail.
    assert_eq!(table_bytes("ctab"), 128 + 4 * 48);

    let check = |db: &Engram, expect_fan: usize| {
        let snap = db.begin_read().unwrap();
        let mut ids = pinned.clone();
        ids.push(tail);
        assert_eq!(snap.episode_ids().unwrap(), ids);
        assert_eq!(snap.concept_ids().unwrap(), concepts);
        for (round, &p) in pinned.iter().enumerate() {
            assert_eq!(
                snap.episode_by_key(&[round as u8]).unwrap().unwrap().id(),
                p
            );
        }
        for &e in forgotten.iter().step_by(97) {
            assert!(snap.episode(e).unwrap().is_none(), "{e}");
            assert!(matches!(
                snap.episode_fan_count(e),
                Err(Error::NotFound { .. })
            ));
        }
        assert_eq!(snap.concept_fan_count(concepts[0]).unwrap(), expect_fan);
        let found: Vec<u64> = snap
            .search_concepts(&V, 10)
            .unwrap()
            .iter()
            .map(|h| h.id)
            .collect();
        assert_eq!(found.len(), concepts.len());
        snap.verify().unwrap();
    };
    check(&db, 4);
    // Writes naming ids in the runs: an unbind (a redo op on the binding), a delete, a
    // concept's new version and a persisted access (redo ops on run entries), a bind (a
    // head stamp).
    let moved = [0.0, 1.0, 0.0, 0.0];
    assert_eq!(
        db.begin_read()
            .unwrap()
            .lookup_concept(concepts[1])
            .unwrap()
            .unwrap()
            .centroid(),
        V
    );
    let mut tx = db.begin_write().unwrap();
    tx.update_concept(concepts[1], &moved, Some("moved"))
        .unwrap();
    tx.unbind(pinned[1], concepts[0]).unwrap();
    tx.bind(pinned[2], concepts[3], 0.25).unwrap();
    assert!(matches!(
        tx.bind(forgotten[10], concepts[1], 1.0),
        Err(Error::NotFound { .. })
    ));
    tx.commit().unwrap();
    let snap = db.begin_read().unwrap();
    let cue = Cue {
        embedding: &V,
        filter: Filter::default(),
    };
    let params = RecallParams {
        record_access: true,
        ..RecallParams::default()
    };
    assert!(!snap.recall(&cue, &params).unwrap().is_empty());
    drop(snap);
    db.persist_accesses().unwrap();
    check(&db, 3);
    drop(db);
    let db = clock.open(dir.path());
    check(&db, 3);
    let snap = db.begin_read().unwrap();
    let c = snap.lookup_concept(concepts[1]).unwrap().unwrap();
    assert_eq!((c.centroid(), c.label()), (&moved[..], "moved"));
    assert!(
        snap.episode(pinned[0])
            .unwrap()
            .unwrap()
            .access_count()
            .unwrap()
            > 0
    );
    assert_eq!(snap.concept_fan_count(concepts[3]).unwrap(), 1);
    drop(snap);
    // A second compaction over tables with runs, and a backup of them; a read-only handle
    // follows both (a new table file's directory read, an old one's kept).
    let ro = Engram::open(
        dir.path(),
        Options {
            read_only: true,
            ..clock.opts.clone()
        },
    )
    .unwrap();
    check(&ro, 3);
    db.compact().unwrap();
    check(&db, 3);
    check(&ro, 3);
    let copy = tempfile::tempdir().unwrap();
    db.backup(copy.path()).unwrap();
    check(&clock.open(copy.path()), 3);
    let mut tx = db.begin_write().unwrap();
    tx.delete_episode(pinned[3]).unwrap();
    let next = tx.insert_episode(&input(5, &V, None)).unwrap();
    assert_eq!(next, tail + 1, "ids go on from the last assigned");
    tx.commit().unwrap();
    let snap = ro.begin_read().unwrap();
    assert!(snap.episode(pinned[3]).unwrap().is_none());
    assert!(snap.episode(next).unwrap().is_some());
    drop((snap, ro, db));
    let db = clock.open(dir.path());
    let snap = db.begin_read().unwrap();
    assert!(snap.episode(pinned[3]).unwrap().is_none());
    assert_eq!(snap.episode_count(), 5);
    snap.verify().unwrap();
}
