//! The crate's error type.

use std::path::PathBuf;

/// What can go wrong loading a pretrained checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `config.json` is not what the architecture needs.
    #[error("{path}: key '{key}': {problem}")]
    Config {
        /// The file.
        path: PathBuf,
        /// The offending key.
        key: String,
        /// What was expected.
        problem: String,
    },
    /// A safetensors file could not be parsed.
    #[error("{path}: {problem}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The checkpoint lacks tensors the model needs.
    #[error("{path}: missing {}: {}", if .missing.len() == 1 { "tensor" } else { "tensors" }, .missing.join(", "))]
    Missing {
        /// The file.
        path: PathBuf,
        /// The model's parameter paths (Hugging Face names), with their shapes.
        missing: Vec<String>,
    },
    /// A tensor's shape differs from the model's.
    #[error("{path}: tensor '{key}' has shape {found:?}, the model expects {expected:?} (for '{param}')")]
    Shape {
        /// The file.
        path: PathBuf,
        /// The checkpoint key.
        key: String,
        /// The model parameter it maps to.
        param: String,
        /// The model's shape (in the checkpoint's layout).
        expected: Vec<usize>,
        /// The checkpoint's shape.
        found: Vec<usize>,
    },
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
