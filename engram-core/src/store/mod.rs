//! The durable mmap store: the database directory and everything in it.
//!
//! Data flows one way: `file` (bytes, maps) → `records` and `meta` (validated layouts) →
//! `snapshot` (visibility rules, zero-copy views) → `write`/`db` (the engine API).

mod access;
mod clock;
mod compact;
mod create;
mod db;
mod expiry;
pub mod fault;
mod file;
mod form;
mod group;
mod keys;
mod meta;
mod network;
mod recall;
mod records;
mod redo;
mod search;
mod snapshot;
mod tables;
mod verify;
mod wal;
mod write;

pub use clock::Clock;
pub use compact::Reclaimable;
pub use db::{
    DEFAULT_CONCEPT_CACHE_ENTRIES, DEFAULT_DIMENSION, DEFAULT_STRENGTH_CACHE_ENTRIES, Engram,
    Options,
};
pub use form::{ConsolidationParams, ConsolidationReport, FormationParams, FormationReport};
pub use meta::{FORMAT_VERSION, Manifest};
pub use network::{Network, PAGE, Tensor, TensorInput};
/// Bytes one binding stores in its `.bnd` record (`docs/format.md`).
pub const BINDING_RECORD_BYTES: u64 = records::binding::SIZE;
pub use recall::{Activated, Cue, Decay, Provenance, RecallParams};
pub use search::{Filter, Hit, Recalled};
pub use snapshot::{BindingInfo, Concept, Episode, ReadTxn};
pub use verify::VerifyReport;
pub use write::{ConceptInput, EpisodeInput, Ttl, WriteTxn};
