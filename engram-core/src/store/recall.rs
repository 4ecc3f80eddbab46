//! Recall by spreading activation: a cue activates its most similar episodes and concepts,
//! and activation spreads along bindings, divided by the source's fan (Anderson's fan
//! effect), for a bounded number of hops.

use std::collections::{BTreeMap, HashMap};

use crate::error::{Error, Result};
use crate::store::search::Filter;
use crate::store::snapshot::ReadTxn;

/// What to recall from.
#[derive(Clone, Debug)]
pub struct Cue<'a> {
    /// The cue's embedding (the database's dimension).
    pub embedding: &'a [f32],
    /// Only episodes passing this filter are seeds or results (activation still spreads
    /// through the others' concepts).
    pub filter: Filter,
}

/// How activation spreads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecallParams {
    /// Episodes returned.
    pub k: usize,
    /// Seed episodes: the most similar ones (at least `k` are taken).
    pub seed_episodes: usize,
    /// Seed concepts: the most similar ones.
    pub seed_concepts: usize,
    /// Edge traversals along bindings (episode → concept is one hop, → episode two); 0 is
    /// direct recall, exactly the top-k by similarity.
    pub hops: usize,
    /// Fan-effect exponent α: activation passed along an edge is the source's activation ×
    /// the binding strength (clamped to [0, 1]) ÷ fan(source)^α. 0 turns the fan effect off,
    /// 0.5 divides by the square root, 1 by the fan itself.
    pub fan_alpha: f32,
    /// Activations below this are not spread further nor returned.
    pub threshold: f32,
    /// Bindings traversed at most (bounded work per query); the strongest sources spread
    /// first, so a cut drops the weakest paths.
    pub max_edges: usize,
    /// Scaling of each episode's final activation by its age (off by default).
    pub decay: Decay,
    /// Record an access (the snapshot's clock time, one count) to every returned episode.
    /// Recorded accesses wait in memory and are persisted by the handle's next commit
    /// ([`crate::Engram::persist_accesses`] commits them alone); read-only handles refuse.
    pub record_access: bool,
}

/// How an episode's activation fades with its age, `now − timestamp` in the caller's time
/// unit (ages below 0 count as 0). Applied at recall time; nothing stored changes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decay {
    /// No fading.
    Off,
    /// × 0.5^(age / half_life).
    HalfLife {
        /// The present, in timestamp units.
        now: i64,
        /// Age at which activation halves (> 0).
        half_life: f64,
    },
    /// × (1 + age / scale)^(−exponent), the power law of forgetting.
    PowerLaw {
        /// The present, in timestamp units.
        now: i64,
        /// How fast it fades (≥ 0).
        exponent: f64,
        /// Age at which fading starts to bite (> 0).
        scale: f64,
    },
}

impl Decay {
    fn factor(self, timestamp: i64) -> f32 {
        let age = |now: i64| now.saturating_sub(timestamp).max(0) as f64;
        match self {
            Decay::Off => 1.0,
            Decay::HalfLife { now, half_life } => 0.5f64.powf(age(now) / half_life) as f32,
            Decay::PowerLaw {
                now,
                exponent,
                scale,
            } => (1.0 + age(now) / scale).powf(-exponent) as f32,
        }
    }

    fn valid(self) -> bool {
        match self {
            Decay::Off => true,
            Decay::HalfLife { half_life, .. } => half_life.is_finite() && half_life > 0.0,
            Decay::PowerLaw {
                exponent, scale, ..
            } => exponent.is_finite() && exponent >= 0.0 && scale.is_finite() && scale > 0.0,
        }
    }
}

impl Default for RecallParams {
    fn default() -> Self {
        RecallParams {
            k: 10,
            seed_episodes: 10,
            seed_concepts: 4,
            hops: 2,
            fan_alpha: 1.0,
            threshold: 1e-3,
            max_edges: 100_000,
            decay: Decay::Off,
            record_access: false,
        }
    }
}

/// How a recalled episode got its activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provenance {
    /// It was a seed: its activation is its similarity to the cue.
    Direct,
    /// Its strongest path arrived through this concept.
    Concept(u64),
}

/// A recalled episode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Activated {
    /// The episode.
    pub episode: u64,
    /// Its activation: the strongest path from a seed (a node keeps the maximum over its
    /// incoming paths, so activation never grows along a path).
    pub activation: f32,
    /// Where that activation came from.
    pub via: Provenance,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Node {
    Episode(u64),
    Concept(u64),
}

#[derive(Clone, Copy)]
struct State {
    activation: f32,
    via: Provenance,
}

impl ReadTxn {
    /// Recalls episodes for `cue`: seeds are the `seed_episodes` most similar episodes and the
    /// `seed_concepts` most similar concepts (activation = similarity); for `hops` rounds,
    /// every node activated in the previous round passes activation to its bound neighbours
    /// (see [`RecallParams::fan_alpha`]), strongest sources first. Returns the `k` most
    /// activated episodes, ties by id. Deterministic for a snapshot and parameters.
    ///
    /// ```
    /// use engram_core::{ConceptInput, Cue, Engram, EpisodeInput, Filter, Options, Provenance, RecallParams};
    /// # fn main() -> engram_core::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = Engram::open(dir.path(), Options { dimension: Some(2), ..Options::default() })?;
    /// let mut tx = db.begin_write()?;
    /// let tide = tx.insert_episode(&EpisodeInput { agent: 1, timestamp: 0, embedding: &[1.0, 0.0], payload: b"tides", key: None })?;
    /// let moon = tx.insert_episode(&EpisodeInput { agent: 1, timestamp: 1, embedding: &[0.0, 1.0], payload: b"moon", key: None })?;
    /// let sea = tx.insert_concept(&ConceptInput { centroid: &[0.0, 1.0], label: "the sea" })?;
    /// tx.bind(tide, sea, 1.0)?;
    /// tx.bind(moon, sea, 1.0)?;
    /// tx.commit()?;
    /// // The cue is about tides; "moon" shares no direction with it but is reached through "the sea".
    /// let params = RecallParams { k: 2, seed_episodes: 1, seed_concepts: 0, hops: 2, fan_alpha: 1.0, ..RecallParams::default() };
    /// let r = db.begin_read()?.recall(&Cue { embedding: &[1.0, 0.0], filter: Filter::default() }, &params)?;
    /// assert_eq!((r[0].episode, r[0].via), (tide, Provenance::Direct));
    /// assert_eq!((r[1].episode, r[1].via), (moon, Provenance::Concept(sea)));
    /// assert!((r[1].activation - 0.5).abs() < 1e-5); // 1.0 × 1.0 ÷ fan(tide) 1, × 1.0 ÷ fan(sea) 2
    /// # Ok(()) }
    /// ```
    pub fn recall(&self, cue: &Cue<'_>, params: &RecallParams) -> Result<Vec<Activated>> {
        let bad = if !(params.fan_alpha.is_finite() && params.fan_alpha >= 0.0) {
            Some(format!(
                "fan_alpha {} is not a finite value ≥ 0",
                params.fan_alpha
            ))
        } else if !params.threshold.is_finite() {
            Some(format!("threshold {} is not finite", params.threshold))
        } else if !params.decay.valid() {
            Some(format!(
                "{:?}: a half-life and a scale must be finite and positive, an exponent finite and ≥ 0",
                params.decay
            ))
        } else {
            None
        };
        if let Some(why) = bad {
            return Err(Error::InvalidArgument(why));
        }
        let access_log = match (params.record_access, &self.access) {
            (false, _) => None,
            (true, Some(log)) => Some(log),
            (true, None) => return Err(Error::ReadOnly),
        };
        let mut state: HashMap<Node, State> = HashMap::new();
        let seeds = params.seed_episodes.max(params.k);
        for hit in self.search(cue.embedding, seeds, &cue.filter)? {
            state.insert(
                Node::Episode(hit.id),
                State {
                    activation: hit.score,
                    via: Provenance::Direct,
                },
            );
        }
        if params.hops > 0 {
            for hit in self.search_concepts(cue.embedding, params.seed_concepts)? {
                state.insert(
                    Node::Concept(hit.id),
                    State {
                        activation: hit.score,
                        via: Provenance::Direct,
                    },
                );
            }
        }
        let mut frontier: Vec<Node> = state.keys().copied().collect();
        let mut edges = 0usize;
        for _ in 0..params.hops {
            // Strongest sources first (ties by node), so a cut at max_edges is deterministic
            // and drops the weakest paths.
            frontier.sort_by(|a, b| {
                state[b]
                    .activation
                    .total_cmp(&state[a].activation)
                    .then(a.cmp(b))
            });
            let mut next: BTreeMap<Node, ()> = BTreeMap::new();
            'sources: for &u in &frontier {
                let act = state[&u].activation;
                if act < params.threshold {
                    continue;
                }
                let bindings = match u {
                    Node::Episode(e) => self.bindings_of_episode(e)?,
                    Node::Concept(c) => self.bindings_of_concept(c)?,
                };
                let fan = (bindings.len() as f32).max(1.0);
                let share = act / fan.powf(params.fan_alpha);
                for b in &bindings {
                    if edges == params.max_edges {
                        break 'sources;
                    }
                    edges += 1;
                    let passed = share * b.strength.clamp(0.0, 1.0);
                    if passed < params.threshold {
                        continue;
                    }
                    let (v, via) = match u {
                        Node::Episode(_) => {
                            (Node::Concept(b.concept), Provenance::Concept(b.concept))
                        }
                        Node::Concept(c) => (Node::Episode(b.episode), Provenance::Concept(c)),
                    };
                    let better = state.get(&v).is_none_or(|s| passed > s.activation);
                    if better {
                        state.insert(
                            v,
                            State {
                                activation: passed,
                                via,
                            },
                        );
                        next.insert(v, ());
                    }
                }
            }
            frontier = next.into_keys().collect();
            if frontier.is_empty() {
                break;
            }
        }
        let mut out = Vec::new();
        for (node, s) in &state {
            let Node::Episode(e) = *node else { continue };
            if s.activation < params.threshold && s.via != Provenance::Direct {
                continue;
            }
            if s.via != Provenance::Direct && !self.passes(e, &cue.filter)? {
                continue;
            }
            let activation = match params.decay {
                Decay::Off => s.activation,
                d => match self.episode(e)? {
                    Some(ep) => s.activation * d.factor(ep.timestamp()),
                    None => continue,
                },
            };
            out.push(Activated {
                episode: e,
                activation,
                via: s.via,
            });
        }
        out.sort_by(|a, b| {
            b.activation
                .total_cmp(&a.activation)
                .then(a.episode.cmp(&b.episode))
        });
        out.truncate(params.k);
        if let Some(log) = access_log {
            log.record(out.iter().map(|a| a.episode), self.now);
        }
        Ok(out)
    }

    /// Concepts with no live binding left (all their members forgotten or unbound), which
    /// `delete_concept` can remove. One fan-index probe per concept.
    pub fn empty_concepts(&self) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        for id in self.concept_ids()? {
            if self.concept_fan_count(id)? == 0 {
                out.push(id);
            }
        }
        Ok(out)
    }

    fn passes(&self, episode: u64, filter: &Filter) -> Result<bool> {
        if filter.agent.is_none() && filter.time.is_none() {
            return Ok(true);
        }
        let Some(ep) = self.episode(episode)? else {
            return Ok(false);
        };
        Ok(filter.agent.is_none_or(|a| a == ep.agent())
            && filter
                .time
                .as_ref()
                .is_none_or(|t| t.contains(&ep.timestamp())))
    }
}
