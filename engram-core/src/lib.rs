//! engram: an embedded dual-memory storage engine.
//!
//! A database directory holds **episodes** (events with an embedding, a timestamp and a
//! payload) and **concepts** (centroids bound to episodes by weighted bindings), in
//! memory-mapped files read zero-copy, with durable commits and crash recovery.
//!
//! ```
//! use engram_core::{ConceptInput, Engram, EpisodeInput, Options};
//! # fn main() -> engram_core::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! let db = Engram::open(dir.path().join("memory"), Options { dimension: Some(4), ..Options::default() })?;
//! let mut tx = db.begin_write()?;
//! let e = tx.insert_episode(&EpisodeInput {
//!     agent: 7, timestamp: 1_700_000_000, embedding: &[0.1, 0.2, 0.3, 0.4],
//!     payload: b"user asked about tides", key: None,
//! })?;
//! let c = tx.insert_concept(&ConceptInput { centroid: &[0.1, 0.2, 0.3, 0.4], label: "tides" })?;
//! tx.bind(e, c, 0.83)?;
//! tx.commit()?; // durable when it returns
//!
//! let snap = db.begin_read()?;
//! let ep = snap.episode(e)?.expect("committed");
//! assert_eq!(ep.embedding(), &[0.1, 0.2, 0.3, 0.4]); // borrowed from the mapped file
//! assert_eq!(snap.concept_fan_count(c)?, 1);
//! # Ok(()) }
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod cluster;
#[cfg(unix)]
mod concept;
mod error;
mod metric;
#[cfg(unix)]
mod prefetch;
pub mod quant;
pub mod similarity;
#[cfg(unix)]
mod store;

#[cfg(unix)]
pub use concept::{ConceptState, Stats};
pub use error::{Error, Result};
pub use metric::Metric;
#[cfg(unix)]
pub use store::*;
