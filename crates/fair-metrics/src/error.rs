//! The one error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong in `fair-metrics`.
///
/// Input errors name the place (file, line, column) and what was expected, so that a command
/// line tool can print them as they are.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or stream could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file (or `-` for standard input/output).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A CSV cell, row or header is not what was expected.
    #[error("{file}:{line}: column '{column}': {message}")]
    Csv {
        /// The file name as given by the user (`-` for standard input).
        file: String,
        /// 1-based line number (the header is line 1).
        line: u64,
        /// The column name from the header.
        column: String,
        /// What was found and what was expected.
        message: String,
    },
    /// A CSV problem that is not tied to one cell (empty file, missing column, ragged row).
    #[error("{file}:{line}: {message}")]
    CsvStructure {
        /// The file name as given by the user.
        file: String,
        /// 1-based line number.
        line: u64,
        /// What was found and what was expected.
        message: String,
    },
    /// Inputs given through the library API are inconsistent (lengths, values, options).
    #[error("invalid input: {0}")]
    Invalid(String),
}

/// Result alias of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
