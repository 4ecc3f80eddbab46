//! Group commit: episode inserts from concurrent threads share one transaction and its
//! fsync. A small commit costs its sync (~140 µs on this project's machines: one device
//! flush), hardly its bytes, so threads each committing alone wait one sync each in turn;
//! queued behind the commit in progress, they are committed together by the first of them
//! (the leader, as LevelDB's writers are) when it ends.

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::store::db::Engram;
use crate::store::write::{EpisodeInput, Ttl};

/// A group stops growing past this many bytes of embeddings, payloads and keys (the
/// request that crosses it included), so no caller waits behind an unbounded commit.
const GROUP_BYTES: usize = 8 << 20;

/// Callers waiting to be committed, and the outcomes of those committed.
#[derive(Default)]
pub(crate) struct GroupQueue {
    state: Mutex<Queue>,
    /// Signalled whenever a group's outcomes are posted.
    posted: Condvar,
}

#[derive(Default)]
struct Queue {
    next_ticket: u64,
    waiting: VecDeque<Request>,
    outcomes: HashMap<u64, Outcome>,
    /// A caller is leading a group (from before it waits for the writer to its outcomes).
    leading: bool,
}

/// One call's episodes.
struct Request {
    ticket: u64,
    /// Copied when the call queues behind another (the leader, another thread, inserts
    /// them); `None` when the call leads at once and inserts its own from the caller's slice.
    episodes: Option<Vec<Owned>>,
    ttl: Ttl,
    /// Concepts (and strengths) each of the call's episodes is bound to.
    concepts: Vec<(u64, f32)>,
    bytes: usize,
}

struct Owned {
    /// The embedding's norm, from the check the call passed.
    norm: f32,
    agent: u64,
    timestamp: i64,
    embedding: Vec<f32>,
    payload: Vec<u8>,
    key: Option<Vec<u8>>,
}

impl Owned {
    fn input(&self) -> EpisodeInput<'_> {
        EpisodeInput {
            agent: self.agent,
            timestamp: self.timestamp,
            embedding: &self.embedding,
            payload: &self.payload,
            key: self.key.as_deref(),
        }
    }
}

/// What a call asks for its episodes besides storing them.
#[derive(Clone, Copy)]
struct Call<'a> {
    ttl: Ttl,
    concepts: &'a [(u64, f32)],
}

/// A queued call's own copy of its episodes, with the norms its check computed.
fn owned(episodes: &[EpisodeInput<'_>], norms: &[f32]) -> Vec<Owned> {
    episodes
        .iter()
        .zip(norms)
        .map(|(e, &norm)| Owned {
            norm,
            agent: e.agent,
            timestamp: e.timestamp,
            embedding: e.embedding.to_vec(),
            payload: e.payload.to_vec(),
            key: e.key.map(<[u8]>::to_vec),
        })
        .collect()
}

enum Outcome {
    Done(Result<Vec<u64>>),
    /// The leader panicked (a bug): its followers panic too, as a joined thread's would.
    Panicked(String),
}

impl Queue {
    /// With no one queued or leading, a call pushed now leads from then on (its caller
    /// holding the queue's lock until it does): its episodes need no copy.
    fn leads_now(&self) -> bool {
        self.waiting.is_empty() && !self.leading
    }

    fn push(&mut self, episodes: Option<Vec<Owned>>, call: Call<'_>, bytes: usize) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.waiting.push_back(Request {
            ticket,
            episodes,
            ttl: call.ttl,
            concepts: call.concepts.to_vec(),
            bytes,
        });
        ticket
    }

    /// The requests at the front, up to [`GROUP_BYTES`] (at least one).
    fn take_group(&mut self) -> Vec<Request> {
        let mut bytes = 0;
        let mut group = Vec::new();
        while bytes < GROUP_BYTES
            && let Some(r) = self.waiting.pop_front()
        {
            bytes += r.bytes;
            group.push(r);
        }
        group
    }
}

impl Engram {
    /// Inserts `episodes` and commits them: when this returns `Ok` (their ids, in order)
    /// they are durable, as after [`WriteTxn::commit`](crate::WriteTxn::commit). Threads
    /// calling this at the same time share commits (group commit): while one commit syncs,
    /// the calls arriving queue up, and the first of them commits them all in one
    /// transaction when it ends. So `n` threads each recording an event as it happens pay
    /// about one commit's wait each, not `n`. Each call's episodes are committed whole, with
    /// its neighbours' in the same transaction: a failed commit (an I/O error) fails every
    /// call it carried, and after a reopen shows all of them or none.
    ///
    /// A call that has to wait copies its episodes for the leader; one that finds no call
    /// queued or leading commits straight from the slice given, so one large call costs what
    /// a [`WriteTxn`](crate::WriteTxn) of the same inserts does.
    ///
    /// The episodes live as long as their agents' default times to live say
    /// ([`Ttl::AgentDefault`]). Bad input (a wrong dimension, a non-finite value, an empty
    /// key) is refused before anything is queued, and stores none of the call's episodes.
    /// `Error::WriteInProgress` if this thread holds the write transaction.
    ///
    /// ```
    /// use engram_core::{Engram, EpisodeInput, Options};
    /// # fn main() -> engram_core::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = Engram::open(dir.path(), Options { dimension: Some(2), ..Options::default() })?;
    /// let ids = std::thread::scope(|s| {
    ///     let agents: Vec<_> = (0..4u64)
    ///         .map(|agent| {
    ///             let db = &db;
    ///             s.spawn(move || {
    ///                 let ep = EpisodeInput { agent, timestamp: 0, embedding: &[1.0, 0.0], payload: b"seen", key: None };
    ///                 db.insert_episodes(&[ep])
    ///             })
    ///         })
    ///         .collect();
    ///     agents.into_iter().map(|a| a.join().unwrap()).collect::<engram_core::Result<Vec<_>>>()
    /// })?;
    /// let snap = db.begin_read()?;
    /// assert!(ids.iter().flatten().all(|&id| snap.episode(id).unwrap().is_some()));
    /// # Ok(()) }
    /// ```
    pub fn insert_episodes(&self, episodes: &[EpisodeInput<'_>]) -> Result<Vec<u64>> {
        self.insert_episodes_with_ttl(episodes, Ttl::AgentDefault)
    }

    /// [`Engram::insert_episodes`] with a chosen time to live for all of them (see
    /// [`WriteTxn::insert_episode_with_ttl`](crate::WriteTxn::insert_episode_with_ttl)).
    pub fn insert_episodes_with_ttl(
        &self,
        episodes: &[EpisodeInput<'_>],
        ttl: Ttl,
    ) -> Result<Vec<u64>> {
        let call = Call { ttl, concepts: &[] };
        self.insert_grouped(episodes, call)
    }

    /// [`Engram::insert_episodes`], each episode bound to every `(concept, strength)` of
    /// `concepts` in the same commit, as [`WriteTxn::bind`](crate::WriteTxn::bind) binds:
    /// events recorded against what the agent already knows, by threads sharing commits.
    /// A concept that is not live when the call's group commits fails this call alone with
    /// `NotFound`, storing none of its episodes; the other calls of the group commit. A
    /// concept listed twice, a non-finite strength, or an episodes-only handle is refused
    /// before anything is queued.
    pub fn insert_bound_episodes(
        &self,
        episodes: &[EpisodeInput<'_>],
        concepts: &[(u64, f32)],
    ) -> Result<Vec<u64>> {
        self.require_dual()?;
        for (i, &(concept, strength)) in concepts.iter().enumerate() {
            if !strength.is_finite() {
                return Err(Error::NonFinite {
                    what: "binding strength",
                    index: i,
                    value: strength,
                });
            }
            if concepts[..i].iter().any(|&(c, _)| c == concept) {
                return Err(Error::InvalidArgument(format!(
                    "concept {concept} is listed twice"
                )));
            }
        }
        let call = Call {
            ttl: Ttl::AgentDefault,
            concepts,
        };
        self.insert_grouped(episodes, call)
    }

    fn insert_grouped(&self, episodes: &[EpisodeInput<'_>], call: Call<'_>) -> Result<Vec<u64>> {
        self.check_can_write()?;
        call.ttl.check()?;
        let norms = episodes
            .iter()
            .map(|e| e.check(&self.info))
            .collect::<Result<Vec<f32>>>()?;
        if episodes.is_empty() {
            return Ok(Vec::new());
        }
        let bytes = episodes
            .iter()
            .map(|e| e.embedding.len() * 4 + e.payload.len() + e.key.map_or(0, <[u8]>::len))
            .sum();
        let queue = &self.group;
        let mut q = queue.state.lock();
        let copy = match q.leads_now() {
            true => None,
            // Copied without the queue's lock, which other callers need to queue: a large
            // call's copy took tens of milliseconds. (If it could lead by then, it leads
            // from its copy.)
            false => {
                drop(q);
                let copy = owned(episodes, &norms);
                q = queue.state.lock();
                Some(copy)
            }
        };
        let ticket = q.push(copy, call, bytes);
        loop {
            if let Some(outcome) = q.outcomes.remove(&ticket) {
                return match outcome {
                    Outcome::Done(r) => r,
                    Outcome::Panicked(msg) => {
                        panic!("the thread committing this call's group panicked: {msg}")
                    }
                };
            }
            if !q.leading && q.waiting.front().is_some_and(|r| r.ticket == ticket) {
                break;
            }
            queue.posted.wait(&mut q);
        }
        q.leading = true;
        drop(q);
        let mut group = Vec::new();
        let own = (episodes, norms.as_slice());
        let result = catch_unwind(AssertUnwindSafe(|| self.commit_group(&mut group, own)));
        let mut q = queue.state.lock();
        q.leading = false;
        let mine = match result {
            Ok(Ok(ids)) => {
                let mut mine = Ok(Vec::new());
                for (r, ids) in group.iter().zip(ids) {
                    match r.ticket == ticket {
                        true => mine = ids,
                        false => _ = q.outcomes.insert(r.ticket, Outcome::Done(ids)),
                    }
                }
                mine
            }
            Ok(Err(e)) => {
                for r in group.iter().filter(|r| r.ticket != ticket) {
                    q.outcomes
                        .insert(r.ticket, Outcome::Done(Err(e.replicate())));
                }
                Err(e)
            }
            Err(panic) => {
                // Before it took its group, this caller's request is still at the front.
                q.waiting.retain(|r| r.ticket != ticket);
                for r in group.iter().filter(|r| r.ticket != ticket) {
                    let msg = panic_message(panic.as_ref());
                    q.outcomes.insert(r.ticket, Outcome::Panicked(msg));
                }
                drop(q);
                queue.posted.notify_all();
                resume_unwind(panic);
            }
        };
        drop(q);
        queue.posted.notify_all();
        mine
    }

    /// Waits for the write transaction, then takes the front of the queue into `group` (the
    /// leader's own request first: no one else takes from the queue while it leads), inserts
    /// and commits it; a request holding no copy is the leader's, whose episodes (and their
    /// checked norms) are `own`.
    /// Returns each request's ids, or its own error (a concept to bind that is not live);
    /// an error of the transaction is every request's.
    fn commit_group(
        &self,
        group: &mut Vec<Request>,
        (own, norms): (&[EpisodeInput<'_>], &[f32]),
    ) -> Result<Vec<Result<Vec<u64>>>> {
        let tx = self.begin_write();
        *group = self.group.state.lock().take_group();
        let mut tx = tx?;
        let mut ids = Vec::with_capacity(group.len());
        for (i, r) in group.iter().enumerate() {
            // Checked in this transaction, before any of the call's episodes is stored.
            if let Some(e) = r
                .concepts
                .iter()
                .find_map(|&(c, _)| tx.require_concept(c).err())
            {
                match e {
                    Error::NotFound { .. } => {
                        ids.push(Err(e));
                        continue;
                    }
                    e => return Err(e),
                }
            }
            let mut one = Vec::with_capacity(r.episodes.as_ref().map_or(own.len(), Vec::len));
            match &r.episodes {
                Some(copied) => {
                    for e in copied {
                        one.push(tx.insert_checked(&e.input(), r.ttl, e.norm)?);
                    }
                }
                None => {
                    debug_assert_eq!(i, 0, "only the leader's own request holds no copy");
                    for (e, &norm) in own.iter().zip(norms) {
                        one.push(tx.insert_checked(e, r.ttl, norm)?);
                    }
                }
            }
            for &id in &one {
                for &(concept, strength) in &r.concepts {
                    tx.bind(id, concept, strength)?;
                }
            }
            ids.push(Ok(one));
        }
        if ids.iter().any(Result::is_ok) {
            tx.commit()?;
        }
        Ok(ids)
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(s), _) => s.to_string(),
        (_, Some(s)) => s.clone(),
        _ => "(no message)".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use crate::{Engram, EpisodeInput, Options};

    fn ep(embedding: &[f32]) -> EpisodeInput<'_> {
        EpisodeInput {
            agent: 7,
            timestamp: 1,
            embedding,
            payload: b"event",
            key: None,
        }
    }

    #[test]
    fn a_bound_call_naming_a_dead_concept_fails_alone_in_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options {
            dimension: Some(4),
            ..Options::default()
        };
        let db = Engram::open(dir.path(), opts).unwrap();
        let mut tx = db.begin_write().unwrap();
        let centroid = crate::ConceptInput {
            centroid: &[0.0, 0.0, 1.0, 0.0],
            label: "c",
        };
        let (live, dead) = (
            tx.insert_concept(&centroid).unwrap(),
            tx.insert_concept(&centroid).unwrap(),
        );
        tx.commit().unwrap();
        let mut tx = db.begin_write().unwrap();
        tx.delete_concept(dead).unwrap();
        tx.commit().unwrap();
        let before = db.begin_read().unwrap().txn();
        let held = db.begin_write().unwrap();
        let results: Vec<crate::Result<Vec<u64>>> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..3)
                .map(|t| {
                    let db = &db;
                    s.spawn(move || {
                        let (a, b) = ([t as f32, 1.0, 0.0, 0.0], [t as f32, 2.0, 0.0, 0.0]);
                        let concepts: &[(u64, f32)] = match t {
                            1 => &[(live, 0.5), (dead, 0.5)],
                            _ => &[(live, 0.5)],
                        };
                        db.insert_bound_episodes(&[ep(&a), ep(&b)], concepts)
                    })
                })
                .collect();
            queued(&db, 3);
            drop(held);
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert!(matches!(results[1], Err(crate::Error::NotFound { id, .. }) if id == dead));
        let snap = db.begin_read().unwrap();
        assert_eq!(snap.txn(), before + 1, "one commit for the group");
        assert_eq!(snap.episode_count(), 4, "nothing of the failed call");
        assert_eq!(snap.concept_fan_count(live).unwrap(), 4);
        for r in [&results[0], &results[2]] {
            for &id in r.as_ref().unwrap() {
                assert_eq!(snap.binding_strength(id, live).unwrap(), Some(0.5));
            }
        }
        assert!(db.group.state.lock().outcomes.is_empty());
    }

    #[test]
    fn calls_queued_behind_a_commit_share_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options {
            dimension: Some(4),
            ..Options::default()
        };
        let db = Engram::open(dir.path(), opts).unwrap();
        let before = db.begin_read().unwrap().txn();
        let mut held = db.begin_write().unwrap();
        held.insert_episode(&ep(&[1.0; 4])).unwrap();
        let calls: Vec<Vec<u64>> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    let db = &db;
                    s.spawn(move || {
                        let (a, b) = ([t as f32, 1.0, 0.0, 0.0], [t as f32, 2.0, 0.0, 0.0]);
                        db.insert_episodes(&[ep(&a), ep(&b)]).unwrap()
                    })
                })
                .collect();
            // All four queue: the first to arrive leads and waits for the held writer.
            queued(&db, 4);
            held.commit().unwrap();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let snap = db.begin_read().unwrap();
        assert_eq!(
            snap.txn(),
            before + 2,
            "one commit for the held transaction, one for the group"
        );
        let mut all: Vec<u64> = calls.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (1..9).collect::<Vec<u64>>());
        for ids in &calls {
            let (a, b) = (
                snap.episode(ids[0]).unwrap().unwrap(),
                snap.episode(ids[1]).unwrap().unwrap(),
            );
            assert_eq!(
                (a.embedding()[1], b.embedding()[1]),
                (1.0, 2.0),
                "in the call's order"
            );
            assert_eq!(
                a.embedding()[0],
                b.embedding()[0],
                "the call's own episodes"
            );
        }
        assert!(db.group.state.lock().outcomes.is_empty());
    }

    /// Waits until `n` calls are queued.
    fn queued(db: &Engram, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while db.group.state.lock().waiting.len() < n {
            assert!(Instant::now() < deadline, "the calls never queued");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// A leader that panics while committing (here in the caller's own clock) makes every
    /// call of its group panic too, rather than wait forever; the queue goes on working.
    #[test]
    fn a_panic_while_committing_a_group_reaches_every_call_in_it() {
        static PANIC_AT: AtomicU64 = AtomicU64::new(u64::MAX);
        let clock = crate::Clock::new(|| {
            let left = PANIC_AT.fetch_sub(1, Ordering::SeqCst);
            assert!(left != 1, "the clock stopped");
            1
        });
        let dir = tempfile::tempdir().unwrap();
        let opts = Options {
            dimension: Some(4),
            clock,
            ..Options::default()
        };
        let db = Engram::open(dir.path(), opts).unwrap();
        let held = db.begin_write().unwrap();
        let panicked: Vec<String> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..3)
                .map(|_| s.spawn(|| db.insert_episodes(&[ep(&[1.0; 4])])))
                .collect();
            queued(&db, 3);
            // The leader's transaction reads the clock as it begins, then as it commits.
            PANIC_AT.store(2, Ordering::SeqCst);
            drop(held);
            let joined = threads.into_iter().map(|t| t.join());
            joined
                .map(|r| match r.expect_err("every call panics") {
                    p if p.is::<String>() => *p.downcast::<String>().unwrap(),
                    p => p.downcast_ref::<&str>().unwrap().to_string(),
                })
                .collect()
        });
        let relayed = panicked
            .iter()
            .filter(|m| m.contains("the thread committing this call's group panicked"))
            .count();
        assert_eq!(relayed, 2, "{panicked:?}");
        PANIC_AT.store(u64::MAX, Ordering::SeqCst);
        assert_eq!(db.insert_episodes(&[ep(&[2.0; 4])]).unwrap(), vec![0]);
        assert_eq!(db.begin_read().unwrap().episode_count(), 1);
    }
}
