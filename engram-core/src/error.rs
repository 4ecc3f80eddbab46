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
    /// The same error again, for each caller of a commit several callers shared: an I/O
    /// error keeps its OS error code (or its kind and message).
    pub(crate) fn replicate(&self) -> Error {
        match self {
            Error::Io { op, path, source } => Error::Io {
                op,
                path: path.clone(),
                source: match source.raw_os_error() {
                    Some(code) => std::io::Error::from_raw_os_error(code),
                    None => std::io::Error::new(source.kind(), source.to_string()),
                },
            },
            Error::Locked { path } => Error::Locked { path: path.clone() },
            Error::NotADatabase { path, reason } => Error::NotADatabase {
                path: path.clone(),
                reason: reason.clone(),
            },
            &Error::FormatVersion { found, supported } => Error::FormatVersion { found, supported },
            &Error::DimensionMismatch { expected, found } => {
                Error::DimensionMismatch { expected, found }
            }
            Error::ModelMismatch { expected, found } => Error::ModelMismatch {
                expected: expected.clone(),
                found: found.clone(),
            },
            &Error::NonFinite { what, index, value } => Error::NonFinite { what, index, value },
            &Error::NotFound { kind, id } => Error::NotFound { kind, id },
            Error::Corruption {
                file,
                offset,
                detail,
            } => Error::corrupt(file.clone(), *offset, detail.clone()),
            Error::ReadOnly => Error::ReadOnly,
            Error::WriteInProgress => Error::WriteInProgress,
            Error::Poisoned => Error::Poisoned,
            Error::Cancelled => Error::Cancelled,
            Error::InvalidArgument(s) => Error::InvalidArgument(s.clone()),
        }
    }

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

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn a_replicated_error_reads_the_same() {
        let io = Error::io("fsync", "/db/x", std::io::Error::from_raw_os_error(28));
        let copy = io.replicate();
        assert_eq!(copy.to_string(), io.to_string());
        let Error::Io { source, .. } = copy else {
            panic!("not Io")
        };
        assert_eq!(source.raw_os_error(), Some(28));
        let other = Error::io("write", "/db/y", std::io::Error::other("short write"));
        assert_eq!(other.replicate().to_string(), other.to_string());
        for e in [
            Error::Poisoned,
            Error::corrupt("/db/z", 12, "bad crc"),
            Error::DimensionMismatch {
                expected: 4,
                found: 3,
            },
        ] {
            assert_eq!(e.replicate().to_string(), e.to_string());
        }
    }
}
