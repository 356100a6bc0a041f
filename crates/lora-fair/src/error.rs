//! The one error type of the crate.

/// Invalid LoRA settings or adapters.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting outside its domain.
    #[error("invalid LoRA setting: {0}")]
    Setting(String),
    /// Tensors whose shapes do not fit the layer.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// An adapter file that cannot be read or written, or is not a peft LoRA adapter.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong (names the key where there is one).
        message: String,
    },
}

/// Result alias of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
