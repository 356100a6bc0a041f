//! The one error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong reading or writing a dataset. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An npz or npy file is corrupt, truncated or of an unsupported kind.
    #[error("{path}: {message}")]
    Npz {
        /// The file.
        path: PathBuf,
        /// What is wrong (names the array key where there is one).
        message: String,
    },
    /// A CSV file has a problem at a line.
    #[error("{path}:{line}: {message}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A dataset folder or a setting is not what was expected.
    #[error("{0}")]
    Invalid(String),
}

/// Result alias of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
