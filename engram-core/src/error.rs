//! The one error type of the public API.

use std::path::PathBuf;

/// Everything that can go wrong in engram. Each variant is a situation a caller can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O call failed.
    #[error("I/O error during {op} on {path}: {source}")]
    Io {
        /// The call that failed (`open`, `write`, `fsync`, …).
        op: &'static str,
        /// The file or directory it was about.
        path: PathBuf,
        #[source]
        /// What the operating system said.
        source: std::io::Error,
    },
    /// Another writer (in this or another process) holds the database's writer lock.
    #[error("database {path} is locked by another writer")]
    Locked {
        /// The database directory.
        path: PathBuf,
    },
    /// The directory exists but is not an engram database.
    #[error("{path} is not an engram database: {reason}")]
    NotADatabase {
        /// The directory.
        path: PathBuf,
        /// What is missing or foreign.
        reason: String,
    },
    /// The database was written by a newer (or unknown) format version.
    #[error("unsupported format version {found} (this build reads version {supported})")]
    FormatVersion {
        /// The version the MANIFEST states.
        found: u32,
        /// The one this build reads.
        supported: u32,
    },
    /// An embedding or a reopen does not match the database's fixed dimension.
    #[error("dimension mismatch: database has {expected}, got {found}")]
    DimensionMismatch {
        /// The database's dimension.
        expected: usize,
        /// The one given.
        found: usize,
    },
    /// The database was created for another embedding model.
    #[error("embedding model mismatch: database has {expected:?}, got {found:?}")]
    ModelMismatch {
        /// The database's model.
        expected: String,
        /// The one given.
        found: String,
    },
    /// A value is NaN or infinite.
    #[error("{what} has a non-finite value {value} at index {index}")]
    NonFinite {
        /// What held the value (`embedding`, `query`, `weights`, …).
        what: &'static str,
        /// Position of the first bad value.
        index: usize,
        /// The bad value.
        value: f32,
    },
    /// No live node or binding with that id.
    #[error("{kind} {id} not found")]
    NotFound {
        /// `episode`, `concept`, `binding` or `network`.
        kind: &'static str,
        /// The id asked for (for a network, its agent).
        id: u64,
    },
    /// A file's bytes do not check out (checksum, bounds or structure).
    #[error("corruption in {file} at offset {offset}: {detail}")]
    Corruption {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the damage (or of the record holding it).
        offset: u64,
        /// What does not check out.
        detail: String,
    },
    /// The handle was opened read-only.
    #[error("database was opened read-only")]
    ReadOnly,
    /// The calling thread already holds this handle's write transaction (a `WriteTxn` it has
    /// not committed or dropped), and what it asked for needs it: waiting would be forever.
    #[error("this thread already holds the database's write transaction; commit or drop it first")]
    WriteInProgress,
    /// An earlier I/O error made the handle refuse writes; reopen the database.
    #[error("an earlier I/O error poisoned this handle; reopen the database")]
    Poisoned,
    /// A progress callback asked a long operation to stop; nothing it would have written was.
    #[error("cancelled by the progress callback")]
    Cancelled,
    /// An argument is outside what the API accepts.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// `Result` with engram's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// `Err(NonFinite)` at the first NaN or infinity of `v`.
    pub(crate) fn check_finite(what: &'static str, v: &[f32]) -> Result<()> {
        match v.iter().position(|x| !x.is_finite()) {
            Some(index) => Err(Error::NonFinite {
                what,
                index,
                value: v[index],
            }),
            None => Ok(()),
        }
    }
}

#[cfg_attr(not(unix), allow(dead_code))] // used by the store, which needs unix
impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        file: impl Into<PathBuf>,
        offset: u64,
        detail: impl Into<String>,
    ) -> Self {
        Error::Corruption {
            file: file.into(),
            offset,
            detail: detail.into(),
        }
    }
}
